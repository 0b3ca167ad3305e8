"""The field unit's daemon (``edgeface run``): the pipeline, its supervision, status, retention, systemd.

    from edgeface.daemon import Daemon
    code = Daemon(config).run()      # until SIGTERM or the source ends; drains; 0 on a clean stop

One module per job:

=================  ==========================================================================
``service``        :class:`Daemon`: start, tick, drain, exit code; signals, READY/STOPPING
``wiring``         every collaborator created in one place (:func:`open_unit`) and closed in reverse
``capture_loop``   the capture thread: source (re)opened with backoff, bounded frame queue, triggers
``pipeline``       the stages infer -> match -> sink, results into the outbox, frames completed
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

from .service import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, Daemon
from .summary import Summary

__all__ = ["EXIT_CONFIG", "EXIT_FAILED", "EXIT_OK", "Daemon", "Summary"]
