"""``edgeface doctor``: a field technician's check of a unit, one line per check.

Each module checks one group of things and returns :class:`~edgeface.doctor.report.Check` records:
``platform`` (Python, packages), ``models`` (files and SHA-256, backend, inference time per model),
``camera`` (the configured capture source delivers frames), ``clock``, ``disk``, ``gallery`` (installed
bundle verified, its age and freshness), ``broker`` (connect + CONNACK with the unit's TLS identity) and
``watchdog`` (systemd). ``run.run_checks`` runs them; nothing here is imported at start-up (the
configuration loads ``settings`` only).
"""
