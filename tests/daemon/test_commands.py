"""The unit's checks on the centre's commands (edgeface.daemon.commands, edgeface.mqtt.signed), with real
Ed25519 keys and the real state file: what is applied, what is refused and why, what survives a restart,
the capture gate, and the dead-man switch. The same path over a real broker and server is in
test_commands_centre.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgeface.capture import EndOfSource, Frame, Source
from edgeface.config import Config, load_config
from edgeface.daemon.commands import STATE_FILE, GatedSource, UnitCommands
from edgeface.errors import EdgefaceError
from edgeface.gallery import signing
from edgeface.mqtt import payloads, signed
from edgeface.mqtt.validate import schema_errors

UNIT = "unit-a"
T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def central(tmp_path: Path) -> Ed25519PrivateKey:
    """The centre's signing key; its public half is what the unit trusts."""
    signing.generate_keypair(tmp_path / "central.pem", tmp_path / "central.pub")
    return signing.load_private_key(tmp_path / "central.pem")


def unit_config(tmp_path: Path, **sets: Any) -> Config:
    pairs = {
        "run.state_dir": str(tmp_path / "state"),
        "commands.trusted_keys": json.dumps([str(tmp_path / "central.pub")]),
        **{k: str(v) for k, v in sets.items()},
    }
    return load_config(None, env={}, overrides=[f"{k}={v}" for k, v in pairs.items()])


def command(name: str, key: Ed25519PrivateKey | None, *, seq: int, to: str = UNIT, expires: float = T0 + 600) -> Any:
    doc = payloads.command_payload(name, issued_at=T0, expires_at=expires)
    doc.update(device_id=to, seq=seq)
    return signed.sign(doc, key) if key is not None else doc


def make(tmp_path: Path, clock: Clock, **sets: Any) -> tuple[UnitCommands, list[dict[str, Any]]]:
    replies: list[dict[str, Any]] = []
    return UnitCommands(unit_config(tmp_path, **sets), UNIT, replies.append, now=clock), replies


def test_lock_and_unlock_are_applied_replied_and_the_lock_survives_a_restart(
    tmp_path: Path, central: Ed25519PrivateKey
) -> None:
    clock = Clock()
    unit, replies = make(tmp_path, clock)
    assert not unit.locked
    lock = command("lock", central, seq=1)
    assert unit.handle(lock) is True
    assert unit.locked
    assert replies[-1]["outcome"] == "applied" and replies[-1]["command_id"] == lock["id"] and replies[-1]["seq"] == 1
    assert schema_errors(replies[-1], "reply") == []
    saved = json.loads((tmp_path / "state" / STATE_FILE).read_text())
    assert saved["locked"] is True and saved["highest_seq"] == 1 and saved["lock_reason"] == "lock"

    again, replies2 = make(tmp_path, clock)  # the daemon restarted
    assert again.locked and again.state.highest_seq == 1
    assert again.handle(command("unlock", central, seq=2)) is True
    assert not again.locked and replies2[-1]["outcome"] == "applied"
    assert not make(tmp_path, clock)[0].locked


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("unsigned", "unsigned"),
        ("wrongly_signed", "bad_signature"),
        ("tampered", "bad_signature"),
        ("mis_addressed", "wrong_target"),
        ("expired", "expired"),
        ("replayed", "replay"),
        ("no_seq", "malformed"),
    ],
)
def test_a_bad_command_is_refused_with_its_reason_and_changes_nothing(
    tmp_path: Path, central: Ed25519PrivateKey, case: str, reason: str
) -> None:
    clock = Clock()
    unit, replies = make(tmp_path, clock)
    assert unit.handle(command("lock", central, seq=5)) and unit.handle(command("unlock", central, seq=6))
    doc = {
        "unsigned": lambda: command("lock", None, seq=7),
        "wrongly_signed": lambda: command("lock", Ed25519PrivateKey.generate(), seq=7),
        "tampered": lambda: {**command("lock", central, seq=7), "seq": 8},
        "mis_addressed": lambda: command("lock", central, seq=7, to="unit-b"),
        "expired": lambda: command("lock", central, seq=7, expires=T0 - 1),
        "replayed": lambda: command("lock", central, seq=5),
        "no_seq": lambda: signed.sign({k: v for k, v in command("lock", None, seq=7).items() if k != "seq"}, central),
    }[case]()
    assert unit.handle(doc) is False
    assert not unit.locked and unit.state.highest_seq == 6
    last = replies[-1]
    assert (last["outcome"], last["reason"], last["command_id"]) == ("refused", reason, doc["id"])
    assert schema_errors(last, "reply") == []


def test_a_command_signed_by_an_untrusted_key_is_refused_when_no_key_is_configured(tmp_path: Path) -> None:
    clock = Clock()
    replies: list[dict[str, Any]] = []
    config = load_config(None, env={}, overrides=[f"run.state_dir={tmp_path / 'state'}"])
    unit = UnitCommands(config, UNIT, replies.append, now=clock)
    assert unit.handle(command("lock", Ed25519PrivateKey.generate(), seq=1)) is False
    assert replies[-1]["reason"] == "bad_signature" and not unit.locked


def test_a_verified_wipe_locks_at_once_and_waits_for_the_main_loop(tmp_path: Path, central: Ed25519PrivateKey) -> None:
    unit, replies = make(tmp_path, Clock())
    wipe = command("wipe", central, seq=1)
    assert unit.handle(wipe) is True
    assert unit.locked and replies == []  # the reply comes with the wipe's report
    assert unit.take_wipe() == wipe and unit.take_wipe() is None


def test_a_damaged_state_file_stops_the_unit_rather_than_unlocking_it(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / STATE_FILE).write_text("{not json")
    with pytest.raises(EdgefaceError, match="command state"):
        make(tmp_path, Clock())


def test_the_dead_man_switch_locks_a_unit_out_of_contact_and_only_unlock_lifts_it(
    tmp_path: Path, central: Ed25519PrivateKey
) -> None:
    clock = Clock()
    unit, replies = make(tmp_path, clock, **{"commands.dead_man_s": 100})
    unit.tick(connected=True)
    clock.t += 99
    unit.tick(connected=False)
    assert not unit.locked
    clock.t += 2
    unit.tick(connected=False)
    assert unit.locked and unit.state.lock_reason == "dead_man"
    clock.t += 10
    unit.tick(connected=True)  # reaching the centre again does not lift it
    assert unit.locked and make(tmp_path, clock, **{"commands.dead_man_s": 100})[0].locked
    assert unit.handle(command("unlock", central, seq=1))
    assert not unit.locked


def test_the_dead_man_switch_is_off_by_default(tmp_path: Path) -> None:
    clock = Clock()
    unit, _ = make(tmp_path, clock)
    assert unit.config.commands.dead_man_s == 0
    clock.t += 365 * 86400
    unit.tick(connected=False)
    assert not unit.locked


class Camera(Source):
    """A live source counting opens, closes and reads."""

    kind = "camera"

    def __init__(self) -> None:
        super().__init__("cam")
        self.opened = False
        self.reads = 0

    def open(self) -> None:
        self.opened = True

    def read(self, timeout: float) -> Frame | None:
        if not self.opened:
            raise EndOfSource("read while closed")
        self.reads += 1
        return Frame(source=self.name, key=str(self.reads), captured_at=T0, seq=self.next_seq())

    def close(self) -> None:
        self.opened = False


def test_a_locked_unit_closes_its_camera_and_reads_nothing_until_unlocked(
    tmp_path: Path, central: Ed25519PrivateKey
) -> None:
    unit, _ = make(tmp_path, Clock())
    cam = Camera()
    gate = GatedSource(cam, unit)
    assert gate.kind == "camera" and gate.live
    gate.open()
    assert gate.read(0.1) is not None and cam.reads == 1
    unit.handle(command("lock", central, seq=1))
    assert gate.read(0.05) is None
    assert not cam.opened and cam.reads == 1 and gate.describe()["locked"] is True
    unit.handle(command("unlock", central, seq=2))
    assert gate.read(0.1) is not None and cam.opened and cam.reads == 2


class Folder(Camera):
    """Files: not live. ``during_read`` runs inside read(), as a lock arriving while the source waits."""

    kind = "folder"
    live = False

    def __init__(self) -> None:
        super().__init__()
        self.during_read: Any = None

    def read(self, timeout: float) -> Frame | None:
        if self.during_read is not None:
            self.during_read()
            self.during_read = None
        return super().read(timeout)


@pytest.mark.parametrize("live", [False, True])
def test_a_frame_read_while_the_lock_arrived_is_held_back_until_unlocked(
    tmp_path: Path, central: Ed25519PrivateKey, live: bool
) -> None:
    unit, _ = make(tmp_path, Clock())
    src = Folder()
    src.live = live
    gate = GatedSource(src, unit)
    gate.open()
    src.during_read = lambda: unit.handle(command("lock", central, seq=1))
    assert gate.read(0.1) is None and src.reads == 1  # read, but the unit is locked now: not handed over
    assert gate.read(0.05) is None and src.reads == 1
    unit.handle(command("unlock", central, seq=2))
    frame = gate.read(0.1)
    assert frame is not None
    # a file is handed over after the unlock (never lost); a camera's stale frame is dropped for a new one
    assert frame.key == ("2" if live else "1") and src.reads == (2 if live else 1)


def test_signed_only_refuses_an_unsigned_capture_and_accepts_a_signed_one(
    tmp_path: Path, central: Ed25519PrivateKey
) -> None:
    unit, replies = make(tmp_path, Clock(), **{"commands.signed_only": "true"})
    plain = payloads.command_payload("capture", args={"tag": "case-7"})
    assert unit.handle(plain) is False and replies[-1]["reason"] == "unsigned"
    doc = payloads.command_payload("capture", args={"tag": "case-7"}, expires_at=T0 + 60)
    doc.update(device_id=UNIT, seq=1)
    assert unit.handle(signed.sign(doc, central)) is True  # the caller then takes the picture
    assert replies[-1]["outcome"] == "applied" and not unit.locked and unit.state.highest_seq == 1


def test_a_command_whose_replay_guard_cannot_be_written_is_not_acted_on(
    tmp_path: Path, central: Ed25519PrivateKey
) -> None:
    unit, replies = make(tmp_path, Clock())
    assert unit.handle(command("unlock", central, seq=3))
    unit.path = tmp_path / "missing" / "dir" / STATE_FILE
    (tmp_path / "missing").write_text("a file where the folder should be")
    assert unit.handle(command("lock", central, seq=4)) is False
    assert not unit.locked and unit.state.highest_seq == 3
    assert (replies[-1]["outcome"], replies[-1]["reason"]) == ("failed", "error")
