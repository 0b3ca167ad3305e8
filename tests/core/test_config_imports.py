"""Where the configuration is declared, and that assembling it never trips over an import cycle.

The owners' ``settings.py`` import the config package's field helper, and the config package imports
them back (lazily, on first use of ``Config``) to assemble ``Config``. That works whatever a process
imports first as long as nothing that importing an owner's package runs needs ``Config`` at import
time: such modules take it for annotations only (``TYPE_CHECKING``) or import it inside a function.
"""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from edgeface.config import Config

PACKAGE = Path(__file__).resolve().parents[2] / "edgeface"
OWNERS = ("vision", "gallery", "outbox", "mqtt", "server", "capture", "daemon", "protect", "doctor")


def test_sections_are_declared_by_their_packages() -> None:
    """Each section class lives in the package that owns it; the config package only assembles them."""
    owners = {f.name: type(getattr(Config(), f.name)).__module__ for f in dataclasses.fields(Config)}
    assert owners == {
        "logging": "edgeface.config.core",
        "device": "edgeface.config.core",
        **{
            name: "edgeface.vision.settings"
            for name in ("image", "runtime", "models", "detect", "quality", "align", "embed")
        },
        "gallery": "edgeface.gallery.settings",
        "enroll": "edgeface.gallery.settings",
        "outbox": "edgeface.outbox.settings",
        "protect": "edgeface.protect.settings",
        "mqtt": "edgeface.mqtt.settings",
        "ingest": "edgeface.mqtt.settings",
        "server": "edgeface.server.settings",
        "capture": "edgeface.capture.settings",
        **{name: "edgeface.daemon.settings" for name in ("run", "dedup", "retention", "status", "commands")},
        "doctor": "edgeface.doctor.settings",
    }
    assert type(Config().capture.folder).__module__ == "edgeface.capture.settings"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_time_imports(path: Path, known: set[str]) -> tuple[set[str], set[str]]:
    """edgeface modules ``path`` imports when it is imported (top level, not under TYPE_CHECKING): those it
    names, and those that run (with the packages above them)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If):
                if "TYPE_CHECKING" not in ast.unparse(node.test):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for h in node.handlers:
                    visit(h.body)
                visit(node.orelse)
                visit(node.finalbody)
            elif isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    out.add(sub if sub in known else base)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    runs = set()
    for m in out:  # importing a.b.c runs a and a.b first
        parts = m.split(".")
        runs.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {m for m in out if m in known and m != name}, {m for m in runs if m in known and m != name}


def test_nothing_an_owner_package_runs_at_import_needs_config() -> None:
    """From every owner's package and settings module (and edgeface itself), follow what runs at import
    time: none of it may import the config package's assembled names (only its .fields and .core)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts}
    known = set(modules)
    named, runs = {}, {}
    for name, path in modules.items():
        named[name], runs[name] = _import_time_imports(path, known)
    roots = ["edgeface", *(f"edgeface.{o}" for o in OWNERS), *(f"edgeface.{o}.settings" for o in OWNERS)]
    seen: dict[str, str] = {}
    todo = [(r, r) for r in roots]
    while todo:
        mod, via = todo.pop()
        if mod in seen or mod.startswith("edgeface.config"):
            continue
        seen[mod] = via
        todo += [(d, f"{via} -> {d}") for d in runs[mod]]
    wrong = sorted(via for mod, via in seen.items() if "edgeface.config" in named[mod])
    assert wrong == [], "needs Config while the config package may be assembling it: " + "; ".join(wrong)


@pytest.mark.parametrize(
    "first",
    [
        "edgeface.config",
        "edgeface.config.fields",
        "edgeface.config.core",
        *(f"edgeface.{o}.settings" for o in OWNERS),
        *(f"edgeface.{o}" for o in OWNERS),
        "edgeface.vision.engine",
        "edgeface.daemon.wiring",
        "edgeface.cli",
    ],
)
def test_any_import_order_works(first: str) -> None:
    """Whichever module a process imports first, Config ends up complete."""
    code = f"import importlib; importlib.import_module({first!r}); from edgeface.config import Config; Config()"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr[-2000:]


def test_server_settings_need_no_server_libraries() -> None:
    """A field unit has neither Flask nor SQLAlchemy, yet loads the whole configuration."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('flask', 'sqlalchemy', 'alembic'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from edgeface.config import load_config\n"
        "print(load_config(env={}).server.port)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0 and r.stdout.strip() == "8480", r.stderr[-2000:]
