"""The vision package stands on its own: it imports nothing of edgeface but config, errors and logs,
and its modules import each other without cycles (checked from the source, module-level and deferred
imports alike)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

VISION = Path(__file__).resolve().parents[2] / "edgeface" / "vision"
ALLOWED_OUTSIDE = {"edgeface.config", "edgeface.config.fields", "edgeface.errors", "edgeface.logs"}


def _module(path: Path) -> str:
    rel = path.relative_to(VISION.parent.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The edgeface modules ``path`` imports (``from x import y`` counts as x, or x.y when that is a module)."""
    me = _module(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                out.add(sub if _exists(sub) else mod)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m == "edgeface" or m.startswith("edgeface.")}


def _exists(module: str) -> bool:
    rel = Path(*module.split("."))
    root = VISION.parent.parent
    return (root / rel).with_suffix(".py").is_file() or (root / rel / "__init__.py").is_file()


def _graph() -> dict[str, set[str]]:
    return {_module(p): _imports(p) for p in sorted(VISION.rglob("*.py"))}


def test_vision_imports_only_config_errors_and_logs_from_outside() -> None:
    outside = {
        (m, i)
        for m, deps in _graph().items()
        for i in deps
        if not i.startswith("edgeface.vision") and i not in ALLOWED_OUTSIDE
    }
    assert not outside, f"vision must not depend on the rest of edgeface: {sorted(outside)}"


def test_no_import_cycles_inside_vision() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if d not in graph:
                continue
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(d) :] + [d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m)


def test_each_vision_module_imports_on_its_own() -> None:
    """A fresh interpreter per module: no module relies on another having been imported first."""
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    for m in _graph():
        r = subprocess.run([sys.executable, "-c", code, m], check=False, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"{m}: {r.stderr[-2000:]}"
