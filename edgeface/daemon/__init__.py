"""The field unit's daemon (``edgeface run``): the pipeline, its supervision, status, retention, systemd.

    from edgeface.daemon import Daemon
    code = Daemon(config).run()      # until SIGTERM or the source ends; drains; 0 on a clean stop

See :mod:`edgeface.daemon.pipeline` for the stages and guarantees, docs/field-unit.md for operating it.
"""

from .pipeline import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, Daemon, Summary

__all__ = ["EXIT_CONFIG", "EXIT_FAILED", "EXIT_OK", "Daemon", "Summary"]
