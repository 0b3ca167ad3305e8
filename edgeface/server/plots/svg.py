"""Small SVG charts written as text: a histogram with a threshold line, stacked bars, horizontal bars.

No plotting library: the pages' Content-Security-Policy forbids inline styles and outside sources, and
these few shapes need none. Colours come from CSS classes (``static/plots.css``) and ``currentColor``,
so the charts follow the page's light or dark scheme. Every text is escaped; every bar carries its count
(``data-count``, and a ``<title>`` a pointer shows) so the figures can be read without guessing from
heights, by a person and by the tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 28, 48


@dataclass(frozen=True)
class Series:
    """One coloured series: ``css`` is its class in plots.css (``s-confirmed``...), ``values`` one per
    bin or label."""

    name: str
    css: str
    values: Sequence[int]


def esc(text: object) -> str:
    """Text or an attribute value, escaped for XML (quotes too)."""
    return escape(str(text), quote=True)


def num(x: float) -> str:
    """A coordinate as short text (two decimals are plenty at this size)."""
    return f"{x:.2f}".rstrip("0").rstrip(".")


def nice_max(n: float) -> int:
    """The y axis' top: at least ``n``, rounded up to 1, 2 or 5 times a power of ten (at least 1)."""
    if n <= 1:
        return 1
    p = 10 ** math.floor(math.log10(n))
    for m in (1, 2, 5, 10):
        if m * p >= n:
            return int(m * p)
    return int(10 * p)  # pragma: no cover - the loop ends at 10 * p >= n


class Frame:
    """The plotting area of one chart and its y scale (counts from 0 to ``ymax``)."""

    def __init__(self, ymax: float, *, width: int = WIDTH, height: int = HEIGHT) -> None:
        self.width, self.height = width, height
        self.x0, self.x1 = LEFT, width - RIGHT
        self.y0, self.y1 = height - BOTTOM, TOP  # y0: the baseline (SVG y grows downwards)
        self.ymax = nice_max(ymax)

    def y(self, count: float) -> float:
        return self.y0 - (self.y0 - self.y1) * count / self.ymax

    def open(self, title: str, kind: str) -> list[str]:
        return [
            f'<svg xmlns="http://www.w3.org/2000/svg" class="plot plot-{esc(kind)}" role="img" '
            f'viewBox="0 0 {self.width} {self.height}" width="{self.width}" height="{self.height}">',
            f"<title>{esc(title)}</title>",
            f'<text class="plot-title" x="{self.x0}" y="16" fill="currentColor">{esc(title)}</text>',
        ]

    def y_axis(self, label: str) -> list[str]:
        out = [
            f'<line class="axis" x1="{self.x0}" y1="{self.y0}" x2="{self.x1}" y2="{self.y0}" stroke="currentColor"/>'
        ]
        step = max(1, self.ymax // 4)
        for v in range(0, self.ymax + 1, step):
            y = num(self.y(v))
            out.append(f'<line class="grid" x1="{self.x0}" y1="{y}" x2="{self.x1}" y2="{y}" stroke="currentColor"/>')
            out.append(
                f'<text class="tick" x="{self.x0 - 4}" y="{y}" text-anchor="end" dominant-baseline="middle" '
                f'fill="currentColor">{v}</text>'
            )
        out.append(
            f'<text class="axis-label" x="12" y="{num((self.y0 + self.y1) / 2)}" text-anchor="middle" '
            f'transform="rotate(-90 12 {num((self.y0 + self.y1) / 2)})" fill="currentColor">{esc(label)}</text>'
        )
        return out

    def x_label(self, label: str) -> str:
        return (
            f'<text class="axis-label" x="{num((self.x0 + self.x1) / 2)}" y="{self.height - 6}" '
            f'text-anchor="middle" fill="currentColor">{esc(label)}</text>'
        )


def _bar(x: float, y: float, w: float, h: float, css: str, count: int, tip: str, extra: str = "") -> str:
    return (
        f'<rect class="bar {esc(css)}" x="{num(x)}" y="{num(y)}" width="{num(w)}" height="{num(h)}" '
        f'data-count="{count}"{extra}><title>{esc(tip)}</title></rect>'
    )


def legend(series: Sequence[Series], x: float, y: float) -> list[str]:
    out = []
    for s in series:
        out.append(f'<rect class="swatch {esc(s.css)}" x="{num(x)}" y="{num(y - 9)}" width="10" height="10"/>')
        out.append(f'<text class="legend" x="{num(x + 14)}" y="{num(y)}" fill="currentColor">{esc(s.name)}</text>')
        x += 24 + 7 * len(s.name)
    return out


def histogram(
    edges: Sequence[float],
    series: Sequence[Series],
    *,
    title: str,
    x_label: str,
    threshold: float | None = None,
    threshold_label: str = "threshold",
) -> str:
    """Counts per bin (``len(edges) - 1`` bins), the series side by side within each bin, and a vertical
    line at ``threshold`` on the same x scale as the bins' edges."""
    lo, hi = edges[0], edges[-1]
    frame = Frame(max([max(s.values, default=0) for s in series] or [0]))

    def x(v: float) -> float:
        return frame.x0 + (frame.x1 - frame.x0) * (v - lo) / (hi - lo)

    out = frame.open(title, "histogram") + frame.y_axis("count")
    nbins, k = len(edges) - 1, max(1, len(series))
    for i in range(nbins):
        left, right = x(edges[i]), x(edges[i + 1])
        w = (right - left - 2) / k
        for j, s in enumerate(series):
            c = s.values[i]
            y = frame.y(c)
            tip = f"{s.name}: {c} with score {edges[i]:.2f}–{edges[i + 1]:.2f}"
            extra = f' data-series="{esc(s.name)}" data-lo="{edges[i]:.4f}" data-hi="{edges[i + 1]:.4f}"'
            out.append(_bar(left + 1 + j * w, y, w, frame.y0 - y, s.css, c, tip, extra))
    for i in range(0, nbins + 1, max(1, nbins // 5)):
        out.append(
            f'<text class="tick" x="{num(x(edges[i]))}" y="{frame.y0 + 14}" text-anchor="middle" '
            f'fill="currentColor">{edges[i]:.2f}</text>'
        )
    if threshold is not None and lo <= threshold <= hi:
        tx = num(x(threshold))
        out.append(
            f'<line class="threshold" x1="{tx}" y1="{frame.y1}" x2="{tx}" y2="{frame.y0}" stroke="currentColor" '
            f'data-value="{threshold:.4f}"><title>{esc(threshold_label)} {threshold:.3f}</title></line>'
        )
        out.append(
            f'<text class="threshold-label" x="{tx}" y="{frame.y1 - 2}" text-anchor="middle" '
            f'fill="currentColor">{esc(threshold_label)} {threshold:.2f}</text>'
        )
    out += legend(series, frame.x1 - 160, frame.height - 6)
    out.append(frame.x_label(x_label))
    out.append("</svg>")
    return "\n".join(out)


def stacked_bars(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    y_label: str,
    ticks: Sequence[str] | None = None,
    height: int = HEIGHT,
) -> str:
    """One column per label (a day), the series stacked in it; each segment carries its own count.
    ``ticks`` are shorter texts for the x axis (a label's own text otherwise); about seven are written."""
    totals = [sum(s.values[i] for s in series) for i in range(len(labels))]
    frame = Frame(max(totals, default=0), height=height)
    ticks = ticks or labels
    out = frame.open(title, "stacked") + frame.y_axis(y_label)
    n = max(1, len(labels))
    step = (frame.x1 - frame.x0) / n
    w = max(1.0, min(28.0, step - 2))
    for i, label in enumerate(labels):
        left = frame.x0 + i * step + (step - w) / 2
        base = 0
        for s in series:
            c = s.values[i]
            if c:
                top, bottom = frame.y(base + c), frame.y(base)
                extra = f' data-series="{esc(s.name)}" data-label="{esc(label)}"'
                out.append(_bar(left, top, w, bottom - top, s.css, c, f"{label}: {c} {s.name}", extra))
            base += c
        if (n - 1 - i) % -(-n // 7) == 0:  # the last column always gets its tick
            out.append(
                f'<text class="tick" x="{num(left + w / 2)}" y="{frame.y0 + 14}" text-anchor="middle" '
                f'fill="currentColor">{esc(ticks[i])}</text>'
            )
    out += legend(series, frame.x0, frame.height - 8)
    out.append("</svg>")
    return "\n".join(out)


def hbars(
    labels: Sequence[str], values: Sequence[int], *, title: str, marked: str | None = None, note: str = ""
) -> str:
    """One horizontal bar per label with its count written at its end; the bar of ``marked`` gets the
    class ``marked`` (the latest gallery version, for instance) and ``note`` after its count."""
    row = 22
    height = TOP + row * max(1, len(labels)) + 16
    top = nice_max(max(values, default=0))
    x0, x1 = 150, WIDTH - 150
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot plot-hbars" role="img" '
        f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}">',
        f"<title>{esc(title)}</title>",
        f'<text class="plot-title" x="{LEFT}" y="16" fill="currentColor">{esc(title)}</text>',
    ]
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        y = TOP + i * row
        w = (x1 - x0) * v / top
        css = "s-marked" if label == marked else "s-plain"
        extra = f' data-label="{esc(label)}"'
        out.append(
            f'<text class="tick" x="{x0 - 6}" y="{y + row / 2}" text-anchor="end" dominant-baseline="middle" '
            f'fill="currentColor">{esc(label)}</text>'
        )
        out.append(_bar(x0, y + 3, max(w, 0.0), row - 6, css, v, f"{label}: {v}", extra))
        text = f"{v}" + (f" {note}" if label == marked and note else "")
        out.append(
            f'<text class="count" x="{num(x0 + w + 4)}" y="{y + row / 2}" dominant-baseline="middle" '
            f'fill="currentColor">{esc(text)}</text>'
        )
    out.append("</svg>")
    return "\n".join(out)
