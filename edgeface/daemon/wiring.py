"""The one place where the daemon's collaborators are created (:func:`open_unit`) and closed
(:meth:`Unit.close`).

Created in this order, closed in the reverse one (also when start-up fails half-way: what was opened is
closed, nothing else): the capture source, the models (a probe :class:`Engine` for the embedder's card;
each inference thread makes its own with :attr:`Unit.new_engine`), the outbox, retention (orphans
removed), the gallery (opened now, so its errors are in the start-up log), the tracker, then the network:
the MQTT publisher (``mqtt.host``), the gallery sync thread (``gallery.sync_url``) and the loopback
metrics endpoint (``status.metrics_port``), each started as it is created.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..capture import Source, TriggerHub, make_source
from ..capture.tags import CaseTag, TagError, given_tag
from ..capture.triggers import request_dir
from ..logs import get_logger
from ..outbox import Outbox
from ..vision.engine import Engine
from .commands import GatedSource, UnitCommands
from .dedup import Tracker
from .endpoint import MetricsServer
from .gallery_holder import GalleryHolder, choose_pair
from .metrics import Metrics
from .retention import Retention
from .supervisor import PublisherSlot, SyncThread

if TYPE_CHECKING:
    from ..config import Config
    from ..mqtt import Publisher

log = get_logger(__name__)


@dataclass(eq=False)
class Unit:
    """Every collaborator of one run of the daemon (see the module docstring)."""

    config: Config
    device_id: str
    triggers: TriggerHub
    source: Source
    model_id: str  # the embedder's model id, in every result
    engine_threshold: float  # the embedder card's cosine threshold: used while no gallery is installed
    new_engine: Callable[[], Engine]  # one Engine per inference thread (a crashed one is not reused)
    outbox: Outbox
    retention: Retention
    gallery: GalleryHolder
    tracker: Tracker
    commands: UnitCommands
    publisher: PublisherSlot | None = None  # None: mqtt.host is empty
    sync: SyncThread | None = None  # None: gallery.sync_url is empty
    endpoint: MetricsServer | None = None  # None: status.metrics_port is 0
    _closing: ExitStack = field(default_factory=ExitStack, repr=False)

    def on_command(self, doc: dict[str, Any]) -> None:
        """An MQTT command addressed to this unit (schema-checked by the publisher). ``wipe``, ``lock``,
        ``unlock``, ``revoke`` and any signed command are verified first (:mod:`.commands`)."""
        from ..mqtt.signed import PRIVILEGED

        if doc["command"] in PRIVILEGED or "signature" in doc or self.config.commands.signed_only:
            if not self.commands.handle(doc) or doc["command"] in PRIVILEGED:
                return
        if doc["command"] == "capture" and self.commands.locked:
            log.info("command.capture_locked", id=doc.get("id"), hint="the unit is locked: nothing is captured")
        elif doc["command"] == "capture" and "command" in self.config.capture.triggers:
            self.triggers.fire("command", _command_tag(doc))
        elif doc["command"] == "sync_gallery" and self.sync is not None:
            self.sync.trigger()

    def on_announce(self, doc: dict[str, Any]) -> None:
        """The retained gallery announcement: sync if it names a newer gallery."""
        if self.sync is not None:
            self.sync.trigger(doc)

    def notify_publisher(self) -> None:
        if self.publisher is not None:
            self.publisher.notify()

    def stop_network(self, timeout_s: float) -> None:
        """At shutdown: give the publisher ``timeout_s`` to deliver (if connected), stop it and the sync."""
        if self.publisher is not None:
            pub = self.publisher.current
            if pub.stats.connected:
                pub.wait_drained(max(0.0, timeout_s))
            pub.stop()
        if self.sync is not None:
            self.sync.stop()

    def close(self) -> None:
        """Close everything :func:`open_unit` opened, in reverse order."""
        self._closing.close()


def open_unit(
    config: Config,
    *,
    device_id: str,
    metrics: Metrics,
    triggers: TriggerHub,
    status: Callable[[], dict[str, Any]],
    source: Source | None = None,
) -> Unit:
    """Create and start every collaborator (see the module docstring); on an error close what was opened."""
    with ExitStack() as closing:
        config, pair = choose_pair(config)  # the model to run and its gallery: gallery/switch.py
        state_dir = Path(config.run.state_dir)
        src = source or make_source(config, state_dir)
        closing.callback(src.shutdown)
        state_dir.mkdir(parents=True, exist_ok=True)
        triggers.request_dir = request_dir(state_dir)  # where `edgeface trigger --tag` leaves its tags
        card = Engine(config).embedder_card
        spec = card.embedder
        assert spec is not None
        engine_threshold = float(spec.thresholds.get("cosine", 0.0)) if spec.thresholds else 0.0
        outbox = Outbox.for_unit(config)  # payloads sealed with the device key (protect.encrypt)
        closing.callback(outbox.close)
        retention = Retention(config, outbox, metrics)
        closing.callback(retention.close)
        retention.remove_orphans()
        commands = UnitCommands(config, device_id, functools.partial(_queue_reply, outbox, device_id))
        src = GatedSource(src, commands)  # locked: nothing is captured (the outbox still drains)
        gallery = GalleryHolder(config, pair)
        closing.callback(gallery.close)
        gallery.current()  # open now: its errors belong in the start-up log
        unit = Unit(
            config=config,
            device_id=device_id,
            triggers=triggers,
            source=src,
            model_id=card.id,
            engine_threshold=engine_threshold,
            new_engine=functools.partial(Engine, config),
            outbox=outbox,
            retention=retention,
            gallery=gallery,
            tracker=_tracker(config, gallery, engine_threshold),
            commands=commands,
        )
        _start_network(unit, metrics, status, closing)
        unit._closing = closing.pop_all()  # from here on, Unit.close closes them
    return unit


def _tracker(config: Config, gallery: GalleryHolder, engine_threshold: float) -> Tracker:
    """Track/dedup: one person's faces are as similar as ``dedup.similarity`` (default: match threshold)."""
    d = config.dedup
    threshold = config.gallery.threshold
    if threshold is None and gallery.gallery is not None:
        threshold = gallery.gallery.manifest.threshold
    similarity = d.similarity if d.similarity is not None else (threshold or engine_threshold)
    return Tracker(d.window_s, similarity, d.iou, merge_photos=d.merge_photos)


def _command_tag(doc: dict[str, Any]) -> CaseTag | None:
    """The case tag of a ``capture`` command (``args.tag``); an unusable one is logged and left off."""
    tag = (doc.get("args") or {}).get("tag")
    try:
        return given_tag(tag if isinstance(tag, str) else None, "command")
    except TagError as e:
        log.error("command.capture_tag_refused", id=doc.get("id"), error=str(e), hint="the picture is taken untagged")
        return None


def _start_network(unit: Unit, metrics: Metrics, status: Callable[[], dict[str, Any]], closing: ExitStack) -> None:
    cfg = unit.config
    if cfg.mqtt.host:
        unit.publisher = PublisherSlot(functools.partial(_publisher, unit), metrics)
        closing.callback(unit.publisher.stop)
        unit.publisher.start()
    else:
        log.info("mqtt.off", hint="mqtt.host is empty: results wait in the outbox (edgeface outbox drain)")
    if cfg.gallery.sync_url:
        from ..gallery.sync import Syncer
        from ..gallery.transport import auth_headers

        g = cfg.gallery
        headers = auth_headers(g.sync_username or unit.device_id, g.sync_password_file) if g.sync_password_file else {}
        syncer = Syncer(
            unit.gallery.open_store(),
            g.sync_url,
            interval_s=g.sync_interval_s,
            timeout=g.sync_timeout_s,
            ca_file=g.sync_ca_file,
            max_bytes=g.sync_max_bytes,
            on_installed=lambda v: unit.gallery.changed.set(),
            headers=headers,
            allow_insecure_http=g.allow_insecure_http,
            embedder_id=unit.model_id,
            **unit.gallery.pending_sync(),
        )
        unit.sync = SyncThread(syncer, metrics)
        closing.callback(unit.sync.stop)
        unit.sync.start()
    if cfg.status.metrics_port:
        unit.endpoint = MetricsServer(cfg.status.metrics_host, cfg.status.metrics_port, metrics.render, status)
        closing.callback(unit.endpoint.stop)
        unit.endpoint.start()


def _queue_reply(outbox: Outbox, device_id: str, doc: dict[str, Any]) -> None:
    """A command's reply, stored in the outbox for the centre (sent first: a match's priority)."""
    from ..mqtt import payloads, topics
    from ..outbox.rows import Priority

    outbox.put(doc["id"], topics.replies_topic(device_id), payloads.encode(doc, "reply"), Priority.MATCH)


def _publisher(unit: Unit) -> Publisher:
    """The MQTT publisher (the first one, and each replacement of one that died)."""
    from ..mqtt import Publisher

    return Publisher.from_config(
        unit.config.mqtt,
        unit.config.device,
        unit.outbox,
        gallery_version=lambda: unit.gallery.version,
        model_id=unit.model_id,
        on_command=unit.on_command,
        on_announce=unit.on_announce,
    )
