"""``edgeface config``: the documented defaults load back, and old files are read with what to update."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from edgeface.cli import cli


def test_config_defaults_pass_config_check(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["config", "defaults"])
    assert r.exit_code == 0, r.output
    p = tmp_path / "edgeface.toml"
    p.write_text(r.stdout)
    r = CliRunner().invoke(cli, ["--config", str(p), "config", "check"])
    assert r.exit_code == 0 and r.stdout == f"ok: {p} is valid\n" and r.stderr == "", r.output


def test_config_check_reports_what_an_old_file_says_the_old_way(tmp_path: Path) -> None:
    p = tmp_path / "old.toml"
    p.write_text('[gallery]\nsearch_k = ""\n')
    r = CliRunner().invoke(cli, ["--config", str(p), "config", "check"])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"ok: {p} is valid, but says 1 thing(s) the old way (still read); update them:\n")
    assert '  - gallery.search_k = "" (from ' in r.stdout and "delete the line" in r.stdout
    assert r.stderr == ""  # reported once, on stdout (not logged as well)


def test_other_commands_log_the_old_way_once(tmp_path: Path) -> None:
    p = tmp_path / "old.toml"
    p.write_text('[gallery]\nsearch_k = ""\n')
    r = CliRunner().invoke(cli, ["--config", str(p), "config", "show"])
    assert r.exit_code == 0, r.output
    assert r.stderr.count("config.migrate") == 1 and "gallery.search_k" in r.stderr
    assert "# search_k =   (unset: " in r.stdout


def test_config_check_names_each_renamed_section(tmp_path: Path) -> None:
    p = tmp_path / "old.toml"
    p.write_text("[capture_folder]\nonce = true\n[capture_opencv]\nloop = true\n")
    r = CliRunner().invoke(cli, ["--config", str(p), "config", "check"])
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[1:] == [
        "  - capture_folder.once is now capture.folder.once; rename [capture_folder] to [capture.folder]",
        "  - capture_opencv.loop is now capture.opencv.loop; rename [capture_opencv] to [capture.opencv]",
    ]
    r = CliRunner().invoke(cli, ["--config", str(p), "config", "show"])
    assert "\n[capture.folder]\n" in r.stdout and "once = true" in r.stdout and "capture_folder" not in r.stdout
