"""Old configuration files still load: flat capture sections are read into the nested ones, and "" for
an unset optional setting is read as unset; each is a notice that says exactly what to rename."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeface.config import Config, load_config, to_toml
from edgeface.errors import ConfigError

OLD_FILE = """\
[capture]
source = "opencv"
[capture_folder]
path = "photos"
once = true
[capture_opencv]
device = "rtsp://cam/stream"
[capture_picamera2]
width = 640
"""


def test_old_flat_sections_are_read_into_the_nested_ones(tmp_path: Path) -> None:
    p = tmp_path / "old.toml"
    p.write_text(OLD_FILE)
    notices: list[str] = []
    cfg = load_config(p, env={}, notices=notices)
    assert cfg.capture.source == "opencv"
    assert cfg.capture.folder.path == tmp_path / "photos" and cfg.capture.folder.once is True
    assert cfg.capture.opencv.device == "rtsp://cam/stream" and cfg.capture.picamera2.width == 640
    assert notices == [
        "capture_folder.path is now capture.folder.path; rename [capture_folder] to [capture.folder]",
        "capture_folder.once is now capture.folder.once; rename [capture_folder] to [capture.folder]",
        "capture_opencv.device is now capture.opencv.device; rename [capture_opencv] to [capture.opencv]",
        "capture_picamera2.width is now capture.picamera2.width; rename [capture_picamera2] to [capture.picamera2]",
    ]
    renamed = OLD_FILE.replace("[capture_", "[capture.")
    p.write_text(renamed)
    again: list[str] = []
    assert load_config(p, env={}, notices=again) == cfg and again == []


def test_nested_tables_in_any_toml_spelling(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[capture]\nfps = 5.0\nfolder = { poll_s = 0.5 }\nopencv.loop = true\n")
    cfg = load_config(p, env={})
    assert cfg.capture.fps == 5.0 and cfg.capture.folder.poll_s == 0.5 and cfg.capture.opencv.loop is True


def test_old_and_new_name_for_one_setting_is_an_error(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('[capture.folder]\npath = "/a"\n[capture_folder]\npath = "/b"\nonce = true\n')
    with pytest.raises(
        ConfigError,
        match=r"capture\.folder\.path is given twice \(from .*\), under its old and "
        r"its new name; keep \[capture\.folder\]",
    ):
        load_config(p, env={})
    p.write_text('[capture.folder]\npath = "/a"\n[capture_folder]\nonce = true\n')  # different settings: merged
    cfg = load_config(p, env={}, notices=[])
    assert cfg.capture.folder.path == Path("/a") and cfg.capture.folder.once is True


def test_old_names_in_the_environment_and_on_the_command_line() -> None:
    notices: list[str] = []
    env = {"EDGEFACE_CAPTURE_OPENCV__DEVICE": "/dev/video2", "EDGEFACE_CAPTURE__PICAMERA2__HEIGHT": "480"}
    cfg = load_config(env=env, overrides=["capture_folder.once=true", "capture.folder.poll_s=0.2"], notices=notices)
    assert cfg.capture.opencv.device == "/dev/video2" and cfg.capture.picamera2.height == 480
    assert cfg.capture.folder.once is True and cfg.capture.folder.poll_s == 0.2
    assert notices == [
        "capture_opencv.device is now capture.opencv.device; rename EDGEFACE_CAPTURE_OPENCV__DEVICE to "
        "EDGEFACE_CAPTURE__OPENCV__DEVICE",
        "capture_folder.once is now capture.folder.once; write --set capture.folder.once=...",
    ]


def test_precedence_holds_across_old_and_new_names(tmp_path: Path) -> None:
    p = tmp_path / "old.toml"
    p.write_text("[capture_folder]\npoll_s = 3.0\nsettle_s = 4.0\n")
    env = {"EDGEFACE_CAPTURE__FOLDER__POLL_S": "2.0", "EDGEFACE_CAPTURE_FOLDER__SETTLE_S": "1.0"}
    cfg = load_config(p, env=env, overrides=["capture_folder.poll_s=1.5", "capture.folder.poll_s=0.5"], notices=[])
    assert cfg.capture.folder.poll_s == 0.5  # the last --set wins, whichever name it uses
    assert cfg.capture.folder.settle_s == 1.0  # environment (old name) over the file (old name)
    with pytest.raises(
        ConfigError,
        match=r"capture\.folder\.once is given twice \(from environment\).*"
        r"keep EDGEFACE_CAPTURE__FOLDER__ONCE",
    ):
        load_config(env={"EDGEFACE_CAPTURE_FOLDER__ONCE": "1", "EDGEFACE_CAPTURE__FOLDER__ONCE": "0"})


def test_errors_name_the_setting_by_its_new_name(tmp_path: Path) -> None:
    p = tmp_path / "old.toml"
    p.write_text("[capture_folder]\npoll_s = 0\n")
    with pytest.raises(
        ConfigError,
        match=r"capture\.folder\.poll_s = 0 \(from .*\) is not valid: expected a number "
        r"in \[0\.01, 3600\]",
    ):
        load_config(p, env={}, notices=[])
    p.write_text('[capture_folder]\npth = "x"\n')
    with pytest.raises(
        ConfigError,
        match=r"unknown setting capture\.folder\.pth \(from .*\); settings in "
        r"\[capture\.folder\]: delete_processed, max_attempts",
    ):
        load_config(p, env={}, notices=[])
    with pytest.raises(ConfigError, match=r"\[capture\.folder\] \(from command line\) must be a table"):
        load_config(env={}, overrides=["capture.folder=3"])
    with pytest.raises(ConfigError, match=r"\[capture_folder\] \(from .*\) must be a table of settings"):
        p.write_text("capture_folder = 3\n")
        load_config(p, env={})


def test_config_defaults_write_the_nested_tables() -> None:
    text = to_toml(Config())
    assert "\n[capture.folder]\n" in text and "\n[capture.opencv]\n" in text and "\n[capture.picamera2]\n" in text
    assert "capture_folder" not in text and "capture_opencv" not in text and "capture_picamera2" not in text
    assert text.index("[capture]") < text.index("[capture.folder]") < text.index("[run]")


def test_old_empty_string_for_an_unset_optional_is_accepted_with_a_notice(tmp_path: Path) -> None:
    p = tmp_path / "old.toml"
    p.write_text('[detect]\nmin_score = ""\n[models]\ndir = ""\n[gallery]\nthreshold = 0.5\n')
    notices: list[str] = []
    cfg = load_config(p, env={}, notices=notices)
    assert cfg.detect.min_score is None and cfg.models.dir is None and cfg.gallery.threshold == 0.5
    assert len(notices) == 2
    assert notices[0].startswith(f'detect.min_score = "" (from {p}) leaves it unset (the detector card')
    assert '"" no longer means unset: delete the line' in notices[0]
    assert notices[1].startswith('models.dir = ""') and "(the bundled models)" in notices[1]


def test_notices_are_logged_when_not_collected(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    p = tmp_path / "old.toml"
    p.write_text('[embed]\nflip_fusion = ""\n')
    with caplog.at_level("WARNING", logger="edgeface.config"):
        assert load_config(p, env={}).embed.flip_fusion is None
    assert [r.getMessage() for r in caplog.records] == ["config.migrate"]
