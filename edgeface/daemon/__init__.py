"""The field unit's daemon (``edgeface run``): the pipeline, its supervision, status, retention, systemd.

    from edgeface.daemon import Daemon
    code = Daemon(config).run()      # until SIGTERM or the source ends; drains; 0 on a clean stop

One module per job:

=================  ==========================================================================
``service``        :class:`Daemon`: start, tick, drain, exit code; signals, READY/STOPPING
``wiring``         every collaborator created in one place (:func:`open_unit`) and closed in reverse
``capture_loop``   the capture thread: source (re)opened with backoff, bounded frame queue, triggers
``pipeline``       the stages infer -> match -> sink, results into the outbox, frames completed
``steps``          the per-frame steps the stages run (shared with ``edgeface.identify``)
``fusion``         a track's faces fused (quality-weighted) and matched once more when it ends
``stages``         a supervised group of threads over a bounded inbox (restart, retry, give up)
``supervisor``     restarts of every thread, progress, the systemd watchdog rule
``snapshot``       the status document and gauges, built from typed parts every interval
``status``         the status file and what ``edgeface status`` shows (daemon running or not)
``summary``        what a run did (:class:`Summary`), counted from several threads
``gallery_holder`` the gallery the match stage searches, reopened after a sync
``work``           what travels through the queues (:class:`~.work.FrameJob`, :class:`~.work.Observation`)
``dedup``          track/dedup: one result per person per time window
``results``        result payloads (deterministic UUIDv7 ids), face crops
``retention``      saved crops/frames and imported photos, deleted after delivery
``metrics``        counters, gauges, rates, the error log; ``endpoint``: /metrics and /status on loopback
``sdnotify``       systemd's notify protocol; ``demo``: the bundled demo configuration
=================  ==========================================================================

See docs/field-unit.md for operating it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers and editors; at run time the names load on first use
    from .service import EXIT_CONFIG as EXIT_CONFIG
    from .service import EXIT_FAILED as EXIT_FAILED
    from .service import EXIT_OK as EXIT_OK
    from .service import Daemon as Daemon
    from .summary import Summary as Summary

# Importing a settings module (``edgeface.daemon.settings``, which the configuration loads for every
# command) must not pull in the whole package, so the names below load when first used (PEP 562).
_EXPORTS = {
    "Daemon": "service",
    "EXIT_CONFIG": "service",
    "EXIT_FAILED": "service",
    "EXIT_OK": "service",
    "Summary": "summary",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Daemon", "EXIT_CONFIG", "EXIT_FAILED", "EXIT_OK", "Summary"]
