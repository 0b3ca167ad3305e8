"""The shape of the package, checked: no import cycles between modules, small modules, layers that point
one way, and a field unit's code that never needs the central server's libraries."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "edgeface"
MAX_LINES = 500
LONG_REASON = "Longer than 500 lines because"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """edgeface modules this module imports anywhere: at the top, inside functions (a deferred import is
    still a dependency), not under ``TYPE_CHECKING`` (annotations only)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for child in node.body for n in ast.walk(child))
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.add(sub if sub in known else base)
    return {m for m in out if m in known and m != name}


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {name: _imports(name, path, known) for name, path in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), i.e. the import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    import sys

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            strong(v)
    return out


def test_no_import_cycles_between_modules() -> None:
    cycles = _cycles(_graph())
    assert cycles == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_modules_are_small_or_say_why() -> None:
    long = []
    for name, path in _modules().items():
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_LINES and LONG_REASON not in text[:3000]:
            long.append(f"{name} ({len(text.splitlines())} lines)")
    assert long == [], f"over {MAX_LINES} lines with no '{LONG_REASON} ...' at the top: {long}"


def test_layers_point_one_way() -> None:
    """The recognition chain knows nothing of the daemon, the gallery, MQTT, the server or the CLI; the
    field unit's packages never import the server (its libraries are an optional extra)."""
    graph = _graph()
    rules = {
        "edgeface.vision": (
            "edgeface.daemon",
            "edgeface.gallery",
            "edgeface.mqtt",
            "edgeface.server",
            "edgeface.cli",
            "edgeface.outbox",
            "edgeface.capture",
            "edgeface.bench",
        ),
        "edgeface.outbox": ("edgeface.mqtt", "edgeface.daemon", "edgeface.server", "edgeface.cli"),
        "edgeface.mqtt": ("edgeface.daemon", "edgeface.server", "edgeface.cli"),
        "edgeface.gallery": ("edgeface.daemon", "edgeface.server", "edgeface.cli"),
        "edgeface.daemon": ("edgeface.server", "edgeface.cli"),
        "edgeface.capture": ("edgeface.daemon", "edgeface.server", "edgeface.cli"),
    }
    wrong = []
    for mod, deps in graph.items():
        for layer, forbidden in rules.items():
            if mod == layer or mod.startswith(layer + "."):
                wrong += [f"{mod} -> {d}" for d in deps if any(d == f or d.startswith(f + ".") for f in forbidden)]
    assert wrong == []


def test_every_command_starts_light() -> None:
    """The configuration loads every package's settings module, and every command loads the configuration:
    that must not pull in MQTT, the gallery's index and crypto, or the daemon (startup time and memory on
    a Raspberry Pi). Package ``__init__`` modules load their names on first use."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import edgeface.cli.main\n"
        "from edgeface.config import Config\n"
        "Config()\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'paho', 'annoy', 'cryptography', 'flask', "
        "'sqlalchemy', 'hypothesis'})\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('edgeface.daemon.', 'edgeface.gallery.', "
        "'edgeface.mqtt.')) and not m.endswith('.settings'))\n"
        "print(heavy, loaded)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert r.stdout.strip() == "[] []", r.stdout
