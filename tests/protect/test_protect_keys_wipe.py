"""The device key as protection finds it, sealed files and saved images, and the wipe's refusals."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

import numpy as np
import pytest

from edgeface.config import Config, load_config
from edgeface.daemon.retention import Retention
from edgeface.errors import GalleryKeyError
from edgeface.outbox import Outbox
from edgeface.protect.keys import load_unit_key, own_key_file, sealer_for
from edgeface.protect.sealed import Sealer, SealError, is_sealed
from edgeface.protect.wipe import wipe_unit


def unit(tmp_path: Path, *extra: str) -> Config:
    return load_config(
        None,
        env={},
        overrides=[
            f"outbox.path={tmp_path / 'outbox.sqlite3'}",
            f"run.state_dir={tmp_path / 'state'}",
            f"retention.dir={tmp_path / 'media'}",
            f"gallery.dir={tmp_path / 'gallery'}",
            f"enroll.workspace={tmp_path / 'enrollment'}",
            *extra,
        ],
    )


def test_a_unit_with_no_key_configured_makes_its_own_once(tmp_path: Path) -> None:
    config = unit(tmp_path)
    key = load_unit_key(config, environ={})
    own = own_key_file(config)
    assert key.path == own and key.source == "own-file" and stat.S_IMODE(own.stat().st_mode) == 0o600
    assert load_unit_key(config, environ={}).key == key.key  # the same key at the next start


def test_a_configured_key_that_is_missing_is_an_error_never_replaced(tmp_path: Path) -> None:
    stick = tmp_path / "usb" / "device.key"  # removable media, not inserted
    config = unit(tmp_path, f"gallery.key_file={stick}")
    with pytest.raises(GalleryKeyError, match="does not exist"):
        load_unit_key(config, environ={})
    assert not stick.exists() and not own_key_file(config).exists()


def test_without_create_key_the_unit_refuses_to_start_keyless(tmp_path: Path) -> None:
    config = unit(tmp_path, "protect.create_key=false")
    with pytest.raises(GalleryKeyError, match="no device key is configured"):
        sealer_for(config, "outbox")
    assert sealer_for(unit(tmp_path, "protect.encrypt=false"), "outbox") is None


def test_the_environment_key_is_used_and_sub_keys_differ_by_purpose(tmp_path: Path) -> None:
    key = secrets.token_bytes(32)
    config = unit(tmp_path)
    got = load_unit_key(config, environ={"EDGEFACE_GALLERY_KEY": key.hex()})
    assert got.key == key and got.source == "environment" and not own_key_file(config).exists()
    blob = Sealer(key, "outbox").seal(b"x")
    with pytest.raises(SealError):
        Sealer(key, "media").open(blob)


def test_a_sealed_file_opens_only_under_its_own_name(tmp_path: Path) -> None:
    s = Sealer(secrets.token_bytes(32), "media")
    a = tmp_path / "a.jpg"
    s.write_file(a, b"\xff\xd8\xff secret face")
    assert s.read_file(a) == b"\xff\xd8\xff secret face" and b"secret" not in a.read_bytes()
    os.rename(a, tmp_path / "b.jpg")
    with pytest.raises(SealError, match="b.jpg"):
        s.read_file(tmp_path / "b.jpg")


def test_saved_images_are_sealed_and_open_with_the_key(tmp_path: Path) -> None:
    config = unit(tmp_path, "retention.save=crop")
    image = np.random.default_rng(0).integers(0, 255, (64, 48, 3)).astype(np.uint8)
    with Outbox.for_unit(config) as box:
        ret = Retention(config, box)
        path = ret.save(image, "01890000-0000-7000-8000-000000000001", 0.0)
        assert path is not None
        data = path.read_bytes()
        assert is_sealed(data) and b"\xff\xd8\xff" not in data and b"JFIF" not in data
        assert ret.read(path).startswith(b"\xff\xd8\xff")
        ret.close()


def test_the_wipe_refuses_a_home_folder_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home" / "operator"
    home.mkdir(parents=True)
    (home / "keep.txt").write_text("not the unit's")
    monkeypatch.setenv("HOME", str(home))
    config = unit(tmp_path, f"retention.dir={home}")
    load_unit_key(config, environ={})
    report = wipe_unit(config, environ={})
    assert not report.ok and any("home folder" in x for x in report.not_destroyed)
    assert (home / "keep.txt").exists() and not own_key_file(config).exists()  # the key still went first


def test_a_credential_is_reported_as_not_destroyed(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "edgeface-gallery-key").write_bytes(secrets.token_bytes(32))
    report = wipe_unit(unit(tmp_path), environ={"CREDENTIALS_DIRECTORY": str(creds)})
    assert not report.ok and not (creds / "edgeface-gallery-key").exists()
    assert any("LoadCredentialEncrypted" in x for x in report.not_destroyed)
    assert report.as_dict()["ok"] is False


def test_wiping_under_a_running_daemon_is_reported_incomplete(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys
    import time

    config = unit(tmp_path)
    load_unit_key(config, environ={})
    daemon = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # stands in for the daemon
    try:
        state = Path(config.run.state_dir)
        state.mkdir(parents=True)
        status = {"state": "running", "pid": daemon.pid, "updated_at": time.time(), "interval_s": 5}
        (state / "status.json").write_text(json.dumps(status))
        sets = [f"outbox.path={config.outbox.path}", f"run.state_dir={state}", f"retention.dir={tmp_path / 'media'}"]
        sets += [f"gallery.dir={tmp_path / 'gallery'}", f"enroll.workspace={tmp_path / 'enrollment'}"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFACE_")}
        r = subprocess.run(
            [sys.executable, "-m", "edgeface", *(a for s in sets for a in ("--set", s)), "unit", "wipe", "--yes"],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )
    finally:
        daemon.kill()
        daemon.wait()
    assert r.returncode == 1 and f"pid {daemon.pid}" in r.stderr and "WIPE INCOMPLETE" in r.stdout
    assert not own_key_file(config).exists() and not state.exists()  # everything else was still destroyed


def test_the_wipe_overwrites_files_before_it_deletes_them(tmp_path: Path) -> None:
    """Read through a descriptor opened before the wipe (as a block left on the disk would be): not the data."""
    config = unit(tmp_path)
    load_unit_key(config, environ={})
    state = Path(config.run.state_dir)
    state.mkdir(parents=True)
    secret = b"Zebulon Quartermaine 0.812345 " * 100
    (state / "left.bin").write_bytes(secret)
    Path(config.outbox.path).write_bytes(secret)
    held = [open(state / "left.bin", "rb"), open(config.outbox.path, "rb")]  # noqa: SIM115 - read after the wipe
    try:
        report = wipe_unit(config, environ={})
        assert report.ok and str(state) in report.destroyed and str(config.outbox.path) in report.destroyed
        for f in held:
            data = f.read()
            assert len(data) == len(secret) and b"Zebulon" not in data
    finally:
        for f in held:
            f.close()
    assert not state.exists() and not Path(config.outbox.path).exists()


def test_the_wipe_reports_every_path_it_destroyed_and_each_note_that_applies(tmp_path: Path) -> None:
    """The report lists each key source and data path it destroyed, in order, with the notes that apply."""
    config = unit(
        tmp_path,
        "protect.encrypt=false",
        "capture.source=folder",
        f"capture.folder.path={tmp_path / 'inbox'}",
    )
    load_unit_key(config, environ={})
    own = own_key_file(config)
    outbox = Path(config.outbox.path)
    side = [outbox.with_name(outbox.name + s) for s in ("-wal", "-shm", "-journal")]
    big = b"Zebulon " * (300 * 1024)  # 2.4 MB: overwritten in several 1 MiB writes
    for p in [outbox, *side]:
        p.write_bytes(b"Zebulon row")
    dirs = [tmp_path / "state", tmp_path / "media", tmp_path / "gallery", tmp_path / "enrollment"]
    for d in dirs:
        (d / "sub" / "deeper").mkdir(parents=True)
        (d / "sub" / "deeper" / "big.bin").write_bytes(big)
        (d / "empty.bin").write_bytes(b"")
        (d / "top.txt").write_text("Zebulon")
    (tmp_path / "state" / "link").symlink_to(tmp_path / "inbox")  # a link: removed, its target untouched
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "photo.jpg").write_bytes(b"face")
    held = open(dirs[0] / "sub" / "deeper" / "big.bin", "rb")  # noqa: SIM115 - read after the wipe
    try:
        report = wipe_unit(config, environ={})
        data = held.read()
    finally:
        held.close()
    assert len(data) == len(big) and b"Zebulon" not in data and data != bytes(len(big))
    assert report.destroyed == [f"device key {own}", *map(str, [outbox, *side, *dirs])]
    assert report.ok is True and report.not_destroyed == []
    assert report.notes == [
        "protect.encrypt or gallery.encrypt is off: some data was stored in plaintext and was overwritten and "
        "deleted, not crypto-erased (flash storage may keep old blocks readable)",
        f"photos in capture.folder.path ({tmp_path / 'inbox'}) are the unit's input and were not touched: delete "
        "them too if they show faces (capture.folder.delete_processed removes each once its results left the unit)",
    ]
    assert report.as_dict() == {"ok": True, "destroyed": report.destroyed, "not_destroyed": [], "notes": report.notes}
    assert not own.parent.exists()  # the unit's own key folder, empty once the key is gone
    assert not any(p.exists() or p.is_symlink() for p in [outbox, *side, *dirs])
    assert (tmp_path / "inbox" / "photo.jpg").read_bytes() == b"face"


def test_the_wipe_keeps_what_it_does_not_own_and_says_when_no_key_was_found(tmp_path: Path) -> None:
    """No key anywhere: a note; the enrollment workspace left when asked; a key folder with other files kept."""
    config = unit(tmp_path, "capture.source=opencv")  # not a folder of photos: no note about them
    own = own_key_file(config)
    own.parent.mkdir(parents=True)
    (own.parent / "other.pem").write_text("not the unit's key")
    (tmp_path / "enrollment").mkdir()
    (tmp_path / "enrollment" / "face.jpg").write_bytes(b"face")
    report = wipe_unit(config, environ={}, enrollment=False)
    assert report.ok and report.destroyed == [] and report.not_destroyed == []
    assert report.notes == [
        "no device key was found at any configured source: if the key is kept elsewhere, destroy it there"
    ]
    assert (own.parent / "other.pem").exists() and (tmp_path / "enrollment" / "face.jpg").exists()
    assert report.as_dict() == {"ok": True, "destroyed": [], "not_destroyed": [], "notes": report.notes}


def test_the_wipe_of_a_key_in_the_environment_is_incomplete_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """...and the journal says so too: after a wipe it is the unit's only record of what happened."""
    config = unit(tmp_path, "capture.source=opencv")
    report = wipe_unit(config, environ={"EDGEFACE_GALLERY_KEY": secrets.token_bytes(32).hex()})
    lines = [r for r in caplog.records if r.name == "edgeface.protect.wipe"]
    assert [(r.levelname, r.getMessage()) for r in lines] == [("WARNING", "unit.wiped")]
    assert lines[0].edgeface_fields == {"ok": False, "destroyed": 0, "not_destroyed": report.not_destroyed}
    assert report.ok is False and report.destroyed == [] and report.notes == []
    assert len(report.not_destroyed) == 1 and "$EDGEFACE_GALLERY_KEY" in report.not_destroyed[0]
    assert report.as_dict()["not_destroyed"] == report.not_destroyed


@pytest.mark.parametrize("folder", ["/", "/srv", "/usr/lib"])
def test_the_wipe_refuses_a_top_level_folder(folder: str) -> None:
    """A folder with fewer than three parts (/srv, /) is a slip in the configuration, never wiped whole.
    Asked of the check itself: a wipe of a real top-level folder, under a broken check, would delete it."""
    from edgeface.protect.wipe import _refused_root

    why = _refused_root(Path(folder))
    if folder == "/usr/lib":
        assert why is None
    else:
        assert why == f"{folder} is a top-level or home folder: not wiped; fix the setting that names it"


def test_a_path_that_cannot_be_examined_is_reported_not_destroyed(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("a file where a folder is expected")
    config = unit(tmp_path, f"retention.dir={tmp_path / 'afile' / 'media'}")
    report = wipe_unit(config, environ={})
    assert report.ok is False and len(report.not_destroyed) == 1
    assert report.not_destroyed == [
        f"{tmp_path / 'afile' / 'media'}: cannot be examined (Not a directory); delete it as root"
    ]


def test_the_wipe_destroys_the_key_sources_configured_under_other_names(tmp_path: Path) -> None:
    """Not only the default names: the configured key file, environment variable and credential."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "site-key").write_bytes(secrets.token_bytes(32))
    (creds / "edgeface-gallery-key").write_bytes(b"not this unit's credential")
    key_file = tmp_path / "etc" / "unit.key"
    key_file.parent.mkdir()
    key_file.write_bytes(secrets.token_bytes(32))
    config = unit(
        tmp_path, f"gallery.key_file={key_file}", "gallery.key_env=SITE_KEY", "gallery.key_credential=site-key"
    )
    environ = {"CREDENTIALS_DIRECTORY": str(creds), "SITE_KEY": "00" * 32, "EDGEFACE_GALLERY_KEY": "11" * 32}
    report = wipe_unit(config, environ=environ)
    assert not key_file.exists() and not (creds / "site-key").exists()
    assert (creds / "edgeface-gallery-key").exists()
    assert report.destroyed[:2] == [f"device key {creds / 'site-key'}", f"device key {key_file}"]
    assert len(report.not_destroyed) == 2 and "'site-key'" in report.not_destroyed[0]
    assert "$SITE_KEY" in report.not_destroyed[1] and report.ok is False


def test_what_cannot_be_deleted_is_reported_with_why_and_what_to_do(tmp_path: Path) -> None:
    """Root deletes almost anything, so the failures are staged: a folder where the key file should be,
    and the erase steps given a path they cannot delete (a read-only mount on a real unit)."""
    from edgeface.protect.wipe import WipeReport, _erase_file, _remove_dir

    config = unit(tmp_path, "capture.source=opencv")
    own = own_key_file(config)
    (own / "inside").mkdir(parents=True)  # not a file: unlink fails
    report = wipe_unit(config, environ={})
    assert report.ok is False and own.is_dir()
    assert report.not_destroyed == [f"device key {own} could not be deleted (Is a directory): shred -u {own}"]
    staged = WipeReport()
    (tmp_path / "full" / "sub").mkdir(parents=True)
    _remove_dir(tmp_path / "full", staged)  # not empty
    _erase_file(tmp_path / "full", staged)  # a folder, not a file
    _remove_dir(tmp_path / "absent", staged)  # already gone: nothing to report
    _erase_file(tmp_path / "absent.bin", staged)
    assert staged.not_destroyed == [
        f"{tmp_path / 'full'}: folder not removed (Directory not empty)",
        f"{tmp_path / 'full'}: could not be deleted (Is a directory); delete it as root",
    ]
    again = WipeReport(not_destroyed=[f"{tmp_path / 'full'}/sub: could not be deleted"])
    _remove_dir(tmp_path / "full", again)  # its content already reported: the folder is not reported again
    assert len(again.not_destroyed) == 1 and staged.ok and staged.destroyed == []


def test_the_wipe_overwrites_even_a_one_byte_file_and_never_the_target_of_a_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder three levels from the root (/tmp/x) is wiped; a link inside it is removed, its target kept."""
    import shutil
    import tempfile

    import edgeface.protect.wipe as wipe

    monkeypatch.setattr(wipe.secrets, "token_bytes", lambda n: b"\0" * n)  # a known overwrite, not chance
    state = Path(tempfile.mkdtemp(prefix="edgeface-wipe-", dir="/tmp"))
    assert len(state.parts) == 3
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"keep me")
    (state / "one.bin").write_bytes(b"Z")
    (state / "link.txt").symlink_to(outside)
    config = unit(tmp_path, f"run.state_dir={state}", "capture.source=opencv")
    held = open(state / "one.bin", "rb")  # noqa: SIM115 - read after the wipe
    try:
        report = wipe_unit(config, environ={})
        assert held.read() == b"\0"
    finally:
        held.close()
        shutil.rmtree(state, ignore_errors=True)  # gone already, unless the wipe failed
    assert report.ok and str(state) in report.destroyed and not state.exists()
    assert outside.read_bytes() == b"keep me"


def test_a_file_that_cannot_be_deleted_is_reported_once_with_its_folders_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files named stuck.bin refuse deletion (as on a read-only mount): each is reported, and the folders
    holding them are left without a second report."""
    real_unlink = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if self.name == "stuck.bin":
            raise PermissionError(13, "Permission denied", str(self))
        real_unlink(self, missing_ok=missing_ok)

    config = unit(tmp_path, f"outbox.path={tmp_path / 'stuck.bin'}", "capture.source=opencv")
    state = tmp_path / "state"
    (state / "sub").mkdir(parents=True)
    (state / "sub" / "stuck.bin").write_bytes(b"x")
    (state / "gone.bin").write_bytes(b"y")
    (tmp_path / "stuck.bin").write_bytes(b"z")
    monkeypatch.setattr(Path, "unlink", unlink)
    report = wipe_unit(config, environ={})
    assert report.ok is False and not (state / "gone.bin").exists()
    assert report.not_destroyed == [
        f"{tmp_path / 'stuck.bin'}: could not be deleted (Permission denied); delete it as root",
        f"{state / 'sub' / 'stuck.bin'}: could not be deleted (Permission denied); delete it as root",
    ]
    assert str(state) not in report.destroyed and str(tmp_path / "stuck.bin") not in report.destroyed
