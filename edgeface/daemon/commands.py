"""The unit's side of the centre's signed commands: verify, act, report back; the lock; the dead-man switch.

* Every ``wipe``, ``lock``, ``unlock`` and ``revoke`` is checked by :func:`edgeface.mqtt.signed.check`
  (signature by a trusted central key, addressed to this unit, not expired, ``seq`` above the highest
  accepted) before anything happens; the accepted ``seq`` is written to disk *before* acting, so a crash
  half-way never lets the same command run twice.
* Each command gets one reply (applied, refused with the reason, or failed), put in the outbox on the
  unit's ``replies`` topic: it reaches the centre, where it is audited, whenever the link is up. A wipe's
  reply is sent after the wipe (the outbox is gone then) on a connection of its own.
* Locked (``lock``, ``revoke``, or the dead-man switch): the capture source is closed and nothing is read
  (:class:`GatedSource`); what is in the pipeline finishes and the outbox keeps draining. The lock is kept
  in ``<run.state_dir>/commands.json`` and holds across restarts until a signed ``unlock``.
* Dead-man switch (``commands.dead_man_s``, off by default): a unit that has not been connected to the
  centre's broker for that long locks itself.

The state file holds no personal data (sequence numbers, the lock, times). Someone holding the SD card can
edit it; nothing stored beside the data can prevent that without a secure element.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..capture import Frame, Source
from ..errors import EdgefaceError, GalleryKeyError
from ..logs import get_logger

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from ..config import Config

log = get_logger(__name__)

STATE_FILE = "commands.json"
CONTACT_WRITE_S = 60.0  # last_contact is written to disk at most this often


@dataclass
class CommandState:
    """What the unit remembers of the centre's commands (``<run.state_dir>/commands.json``)."""

    highest_seq: int = 0
    locked: bool = False
    lock_reason: str = ""  # "lock" (a command), "revoke", "dead_man"
    locked_at: float | None = None
    last_contact: float | None = None  # last time the unit was connected to the centre's broker

    @classmethod
    def load(cls, path: Path) -> CommandState:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as e:
            # Fail closed: a damaged file must not unlock a locked unit or reset the replay guard.
            raise EdgefaceError(
                f"{path} cannot be read ({e}); the unit will not start without its command state (lock and "
                "replay guard). Restore it, or delete it to start unlocked with no commands accepted yet."
            ) from e
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    def save(self, path: Path) -> None:
        """Atomically (a temporary file, fsync, rename)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(asdict(self), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


class UnitCommands:
    """Verifies and applies the centre's commands for one unit (see the module docstring).

    ``send_reply(doc)`` stores a reply for the centre (the outbox, normally); the daemon's main loop
    calls :meth:`tick` and performs a verified wipe it gets from :meth:`take_wipe`.
    """

    def __init__(
        self,
        config: Config,
        device_id: str,
        send_reply: Callable[[dict[str, Any]], None],
        *,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.device_id = device_id
        self.send_reply = send_reply
        self.now = now
        self.path = Path(config.run.state_dir) / STATE_FILE
        self.state = CommandState.load(self.path)
        if self.state.last_contact is None:  # first start: the dead-man clock starts now
            self.state.last_contact = now()
            self.state.save(self.path)
        self._lock = threading.Lock()
        self._unlocked = threading.Event()
        if not self.state.locked:
            self._unlocked.set()
        self._wipe: dict[str, Any] | None = None
        self._contact_written = now()
        self._trusted: list[Ed25519PublicKey] | None = None

    # -- what the rest of the daemon asks ------------------------------------------------------------

    @property
    def locked(self) -> bool:
        return not self._unlocked.is_set()

    def wait_unlocked(self, timeout: float) -> bool:
        return self._unlocked.wait(timeout)

    def take_wipe(self) -> dict[str, Any] | None:
        """A verified wipe command waiting for the main loop (once)."""
        with self._lock:
            doc, self._wipe = self._wipe, None
        return doc

    # -- commands (the publisher's thread) ---------------------------------------------------------------

    def handle(self, doc: dict[str, Any]) -> bool:
        """Verify a privileged or signed command, apply it, and reply with the outcome; True when accepted
        (a signed ``capture`` or ``sync_gallery`` is then the caller's to carry out)."""
        from ..mqtt import signed

        command = str(doc.get("command", ""))
        with self._lock:
            try:
                seq = signed.check(
                    doc,
                    device_id=self.device_id,
                    trusted=self._trusted_keys(),
                    highest_seq=self.state.highest_seq,
                    now=self.now(),
                )
            except signed.CommandRefused as e:
                log.warning("command.refused", id=doc.get("id"), command=command, reason=e.reason, error=str(e))
                self.reply(doc, "refused", e.reason, str(e))
                return False
            previous, self.state.highest_seq = self.state.highest_seq, seq
            try:
                self.state.save(self.path)  # before acting: a crash half-way never runs it twice
            except OSError as e:
                self.state.highest_seq = previous
                log.error("command.state_unwritable", id=doc.get("id"), path=str(self.path), error=str(e))
                self.reply(doc, "failed", "error", f"the replay guard cannot be written ({e}); not acted on")
                return False
            log.warning("command.accepted", id=doc["id"], command=command, seq=seq)
            if command == "wipe":
                self._wipe = doc
                self._set_lock(True, "wipe")
                return True  # the main loop wipes and replies
            if command in ("lock", "revoke"):
                self._set_lock(True, command)
            elif command == "unlock":
                self._set_lock(False, "")
        self.reply(doc, "applied", "", self._describe())
        return True

    def reply(
        self, doc: dict[str, Any], outcome: str, reason: str, detail: str, report: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Build the reply to ``doc`` and hand it to ``send_reply``; returns it."""
        from ..mqtt.signed import reply_payload

        out = reply_payload(
            device_id=self.device_id,
            command=doc,
            outcome=outcome,
            reason=reason,
            detail=detail,
            report=report,
            ts=self.now(),
        )
        try:
            self.send_reply(out)
        except EdgefaceError as e:  # the outcome stands; the centre just does not hear of it
            log.error("command.reply_failed", id=out["command_id"], error=str(e))
        return out

    # -- the lock and the dead-man switch (main loop) ---------------------------------------------------

    def tick(self, connected: bool) -> None:
        """Record contact with the centre; lock when ``commands.dead_man_s`` passed without any."""
        now = self.now()
        with self._lock:
            if connected:
                self.state.last_contact = now
                if now - self._contact_written >= CONTACT_WRITE_S:
                    self._contact_written = now
                    self.state.save(self.path)
                return
            limit = self.config.commands.dead_man_s
            last = self.state.last_contact or now
            if limit > 0 and not self.state.locked and now - last > limit:
                log.error(
                    "command.dead_man_lock",
                    silent_s=round(now - last),
                    dead_man_s=limit,
                    hint="the unit has not reached the centre; a signed 'unlock' from the centre lifts the lock",
                )
                self._set_lock(True, "dead_man")

    def _set_lock(self, locked: bool, reason: str) -> None:
        s = self.state
        s.locked, s.lock_reason = locked, reason
        s.locked_at = self.now() if locked else None
        try:
            s.save(self.path)
        except OSError as e:  # applied in memory all the same; a restart would not remember it
            log.error("command.state_unwritable", path=str(self.path), error=str(e), locked=locked)
        if locked:
            self._unlocked.clear()
            log.warning("unit.locked", reason=reason, hint="capture stopped; the outbox keeps draining")
        else:
            self._unlocked.set()
            log.warning("unit.unlocked")

    def _describe(self) -> str:
        s = self.state
        return f"locked ({s.lock_reason})" if s.locked else "unlocked"

    def _trusted_keys(self) -> list[Ed25519PublicKey]:
        if self._trusted is None:
            from ..gallery.signing import load_trusted

            paths = self.config.commands.trusted_keys or self.config.gallery.trusted_keys
            try:
                self._trusted = load_trusted(paths) if paths else []
            except GalleryKeyError as e:
                log.error("command.no_trusted_key", error=str(e))
                self._trusted = []
        return self._trusted


def perform_wipe(commands: UnitCommands, doc: dict[str, Any]) -> Any:
    """Carry out a verified wipe (:func:`edgeface.protect.wipe.wipe_unit`) once the daemon closed everything,
    keep the unit locked (``commands.json`` written again: the lock and the replay guard, nothing personal),
    then send the report to the centre on a connection of its own; returns the WipeReport."""
    from ..protect.wipe import WipeReport, wipe_unit

    try:
        report = wipe_unit(commands.config)
    except Exception as e:  # noqa: BLE001 - the centre must hear that the wipe broke, and how
        log.exception("command.wipe_failed", error=str(e))
        report = WipeReport(ok=False, not_destroyed=[f"the wipe stopped: {type(e).__name__}: {e}"])
    state = commands.state
    state.locked, state.lock_reason, state.locked_at = True, "wipe", commands.now()
    try:  # stay locked: systemd restarts the unit, which must not come back capturing (nothing personal here)
        state.save(commands.path)
    except OSError as e:
        report.not_destroyed.append(f"the lock could not be kept after the wipe ({e}): the unit may capture again")
        report.ok = False
    outcome, reason = ("applied", "") if report.ok else ("failed", "error")
    detail = "wiped" if report.ok else "; ".join(report.not_destroyed)[:2000]
    commands.send_reply = functools.partial(_send_direct, commands.config, commands.device_id)
    commands.reply(doc, outcome, reason, detail, report.as_dict())
    return report


def _send_direct(config: Config, device_id: str, doc: dict[str, Any]) -> None:
    """Publish a reply at once (after a wipe there is no outbox to hold it)."""
    if not config.mqtt.host:
        log.warning("command.reply_not_sent", id=doc["command_id"], why="mqtt.host is empty")
        return
    from ..mqtt import payloads, topics
    from ..mqtt.link import LinkSettings
    from ..mqtt.oneshot import publish_once

    settings = LinkSettings.from_config(config.mqtt, config.mqtt.client_id or device_id)
    data = payloads.encode(doc, "reply")
    sent = publish_once(settings, topics.replies_topic(device_id), data, timeout=config.commands.wipe_reply_timeout_s)
    if sent.ok:
        log.info("command.reply_sent", id=doc["command_id"], outcome=doc["outcome"])
    else:
        log.error("command.reply_not_sent", id=doc["command_id"], why=sent.why)


class GatedSource(Source):
    """A capture source that reads nothing while the unit is locked (a live one is closed: camera off)."""

    def __init__(self, inner: Source, commands: UnitCommands) -> None:
        super().__init__(inner.name)
        self.kind = inner.kind  # type: ignore[misc]  # the wrapped source's kind, per instance
        self.live = inner.live
        self.inner = inner
        self.commands = commands
        self._open = False
        self._held: Frame | None = None

    def open(self) -> None:
        if not self.commands.locked:
            self.inner.open()
            self._open = True

    def read(self, timeout: float) -> Frame | None:
        if self.commands.locked:
            if self._open and self.inner.live:
                self.inner.close()
                self._open = False
            self.commands.wait_unlocked(min(timeout, 0.5))
            return None
        if self._held is not None:
            held, self._held = self._held, None
            return held
        if not self._open:
            self.inner.open()
            self._open = True
        frame = self.inner.read(timeout)
        if frame is not None and self.commands.locked:  # locked while the read waited
            if not self.inner.live:
                self._held = frame  # a file: handed over once unlocked (a camera's frame is just dropped)
            return None
        return frame

    def close(self) -> None:
        self._open = False
        self.inner.close()

    def done(self, frame: Frame, outcome: Any) -> None:
        self.inner.done(frame, outcome)

    def shutdown(self) -> None:
        self._open = False
        self.inner.shutdown()

    def describe(self) -> dict[str, Any]:
        out = self.inner.describe()
        out["locked"] = self.commands.locked
        return out


__all__ = ["STATE_FILE", "CommandState", "GatedSource", "UnitCommands", "perform_wipe"]
