"""The README's exit codes and `config defaults`, as a user meets them: Ctrl-C is 130 (said on stderr, no
traceback), and the printed defaults are the configuration edgeface runs with when given no file."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from edgeface.cli import cli
from edgeface.config import load_config


def test_ctrl_c_exits_130_without_a_traceback(lfw_root: Path) -> None:
    images = sorted((lfw_root / "images").glob("A*/*.jpg"))[:400]
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeface", "detect", "--json", *map(str, images)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # Ctrl-C as a terminal delivers it: a suite started in the background (`cmd &`, no job control)
        # runs with SIGINT ignored, which the child would inherit and exit 0 after all 400 images.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the command is running: its first image is reported
        assert first.startswith(b"{"), proc.stderr.read() if proc.stderr else b""
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err.decode(errors="replace")[-2000:]
    assert b"edgeface: interrupted" in err and b"Traceback" not in err


def test_config_defaults_are_the_configuration_without_a_file(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["config", "defaults"])
    assert r.exit_code == 0, r.output
    p = tmp_path / "defaults.toml"
    p.write_text(r.stdout)
    from_file, built_in = load_config(p, env={}), load_config(None, env={})
    # ('~' in a default path is expanded when read from a file and kept in the built-in default; the
    # users of such paths expand it, so they are compared expanded)
    assert _expanded(dataclasses.asdict(from_file)) == _expanded(dataclasses.asdict(built_in))


def _expanded(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _expanded(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return type(v)(_expanded(x) for x in v)
    return v.expanduser() if isinstance(v, Path) else v
