"""Where a photo was taken: its own EXIF GPS tags, the unit's GPS receiver (gpsd), or a configured place.

:class:`Locator` asks the sources in the order ``capture.location.sources`` lists them and takes the
first that knows: by default the photo's EXIF (where a phone or camera with GPS took it), then gpsd
(where the unit is now: right for a camera on the unit, approximate for photos copied in later), then
the static setting (a unit set up at one site). Each result says which one it used.

gpsd is read with a small client of its JSON protocol (``?WATCH={"enable":true,"json":true}``, TPV
reports; https://gpsd.io/gpsd_json.html) in a background thread that reconnects quietly: a unit
without a receiver simply has no gpsd fix. A fix older than ``max_age_s`` is not used.
"""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..logs import get_logger
from .settings import CaptureLocationConfig

log = get_logger(__name__)

GPS_IFD = 0x8825  # EXIF's GPS information sub-directory
MAX_LINE = 64 * 1024  # a gpsd report is a few hundred bytes; a longer line is not gpsd


@dataclass(frozen=True)
class Location:
    """A place: latitude and longitude (WGS 84 degrees), accuracy in metres when known, and its source
    ('exif', 'gpsd' or 'static')."""

    lat: float
    lon: float
    accuracy_m: float | None
    source: str

    def as_dict(self) -> dict[str, Any]:
        """The result payload's ``location`` object."""
        out: dict[str, Any] = {"lat": round(self.lat, 7), "lon": round(self.lon, 7), "source": self.source}
        if self.accuracy_m is not None:
            out["accuracy_m"] = round(self.accuracy_m, 1)
        return out


def _valid(lat: float, lon: float) -> bool:
    return math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180


def _degrees(value: Any, ref: Any, negative: str) -> float:
    d, m, s = (float(v) for v in value)  # Pillow's IFDRational; 0/0 is NaN
    deg = d + m / 60.0 + s / 3600.0
    ref_text = ref.decode("ascii", "replace") if isinstance(ref, bytes) else str(ref or "")
    return -deg if ref_text.strip().upper().startswith(negative) else deg


def exif_location(path: Path) -> Location | None:
    """The GPS position in the photo's EXIF (GPSLatitude/GPSLongitude with their N/S, E/W references,
    and GPSHPositioningError as the accuracy); None without one, when the receiver marked it void
    (GPSStatus 'V'), or when the file has no readable EXIF."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            gps = img.getexif().get_ifd(GPS_IFD)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None  # the decoder refuses such a file with its reason; the place is simply unknown
    if not gps or 2 not in gps or 4 not in gps:
        return None
    status = gps.get(9)
    if isinstance(status, (str, bytes)) and (status.decode() if isinstance(status, bytes) else status)[:1] == "V":
        return None
    try:
        lat = _degrees(gps[2], gps.get(1), "S")
        lon = _degrees(gps[4], gps.get(3), "W")
        err = float(gps[31]) if 31 in gps else None
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not _valid(lat, lon):
        return None
    return Location(lat, lon, err if err is not None and math.isfinite(err) and err >= 0 else None, "exif")


def static_location(cfg: CaptureLocationConfig) -> Location | None:
    """The configured place (``capture.location.lat``/``lon``), None when not set."""
    if cfg.lat is None or cfg.lon is None:
        return None
    return Location(float(cfg.lat), float(cfg.lon), cfg.accuracy_m, "static")


def tpv_location(report: dict[str, Any]) -> Location | None:
    """A position from one gpsd TPV report: needs a 2D or 3D fix (``mode`` >= 2) and lat/lon. The
    accuracy is ``eph`` (horizontal error estimate, gpsd 3.20+) or the larger of ``epx``/``epy``."""
    if report.get("class") != "TPV" or not isinstance(report.get("mode"), int) or report["mode"] < 2:
        return None
    lat, lon = report.get("lat"), report.get("lon")
    if not isinstance(lat, (int, float)) or not isinstance(lon, (int, float)) or not _valid(lat, lon):
        return None
    err = report.get("eph")
    if not isinstance(err, (int, float)):
        xy = [report.get(k) for k in ("epx", "epy")]
        err = max((float(v) for v in xy if isinstance(v, (int, float))), default=None)
    return Location(float(lat), float(lon), float(err) if err is not None else None, "gpsd")


class GpsdClient:
    """Keeps the newest fix from gpsd at ``host:port`` (a background thread; reconnects with backoff)."""

    def __init__(self, host: str, port: int, *, retry_max_s: float = 30.0) -> None:
        self.host, self.port = host, port
        self.retry_max_s = retry_max_s
        self._fix: tuple[Location, float] | None = None  # (location, monotonic time received)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread = threading.Thread(target=self._run, name="edgeface-gpsd", daemon=True)
        self.connected = threading.Event()
        self.reports = 0

    def start(self) -> GpsdClient:
        self._thread.start()
        return self

    def latest(self, max_age_s: float) -> Location | None:
        """The newest fix if it is at most ``max_age_s`` old, else None."""
        with self._lock:
            fix = self._fix
        if fix is None or time.monotonic() - fix[1] > max_age_s:
            return None
        return fix[0]

    def close(self) -> None:
        self._stop.set()
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        delay, told = 0.5, False
        while not self._stop.is_set():
            try:
                self._session()
                delay = 0.5
            except OSError as e:
                if not told:  # once: a unit without a receiver is normal
                    log.info("capture.gpsd_unavailable", host=self.host, port=self.port, error=str(e))
                    told = True
            self.connected.clear()
            self._stop.wait(delay)
            delay = min(self.retry_max_s, delay * 2)

    def _session(self) -> None:
        with socket.create_connection((self.host, self.port), timeout=5) as sock:
            self._sock = sock
            try:
                sock.sendall(b'?WATCH={"enable":true,"json":true};\n')
                sock.settimeout(2.0)
                self.connected.set()
                log.info("capture.gpsd_connected", host=self.host, port=self.port)
                buf = b""
                while not self._stop.is_set():
                    try:
                        chunk = sock.recv(4096)
                    except TimeoutError:
                        continue
                    if not chunk:
                        raise ConnectionResetError("gpsd closed the connection")
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        self._line(line)
                    if len(buf) > MAX_LINE:
                        raise ConnectionResetError("gpsd sent a line too long to be a report")
            finally:
                self._sock = None

    def _line(self, line: bytes) -> None:
        try:
            report = json.loads(line)
        except ValueError:
            return
        if not isinstance(report, dict):
            return
        loc = tpv_location(report)
        if loc is not None:
            with self._lock:
                self._fix = (loc, time.monotonic())
            self.reports += 1


class Locator:
    """The place of each frame, from the sources ``capture.location.sources`` lists, first that knows."""

    def __init__(self, cfg: CaptureLocationConfig, gpsd: GpsdClient | None = None) -> None:
        self.cfg = cfg
        self.sources = tuple(cfg.sources)
        self.gpsd = gpsd
        if gpsd is None and "gpsd" in self.sources:
            self.gpsd = GpsdClient(cfg.gpsd_host, cfg.gpsd_port).start()
        self._static = static_location(cfg)

    def locate(self, path: Path | None) -> Location | None:
        """Where the frame from ``path`` (None: a camera frame, no EXIF) was taken, or None."""
        for source in self.sources:
            loc: Location | None = None
            if source == "exif" and path is not None:
                loc = exif_location(path)
            elif source == "gpsd" and self.gpsd is not None:
                loc = self.gpsd.latest(self.cfg.gpsd_max_age_s)
            elif source == "static":
                loc = self._static
            if loc is not None:
                return loc
        return None

    def close(self) -> None:
        if self.gpsd is not None:
            self.gpsd.close()
