"""The central server: ingest workers, human review, audit log, gallery publishing, fleet view, accounts.

Flask (a WSGI framework: it mounts the gallery's WSGI file server as it is, renders plain HTML that
works without JavaScript, and is what the team already knows) over SQLAlchemy 2 Core, so the same code
runs on SQLite (one host) and PostgreSQL (several hosts), with Alembic migrations.

Modules, one job each:

``db``          engine, transactions (SQLite: WAL, one writer at a time), migrations
``tables``      the schema (the Alembic migrations create exactly this)
``audit``       the append-only, hash-chained audit log and its verification
``auth``        password hashing (argon2id), sessions, CSRF, login rate limits, device credentials
``access``      the per-route access declarations every view must carry (checked for every request)
``ingest``      the MQTT ingest workers storing results and device status into the database
``review``      the review queue: filters, decisions, the two-person rule, export, the images a review shows
``people``      which accounts are one person; role grants a second administrator approves
``accounts``    user administration and one's own account page
``gallery_admin`` enrollment uploads, build + sign + publish, announcement, history
``fleet``       devices, their status and credentials
``retention``   what [server.retention] says is past its time; the purge (export first, audited)
``case_state``  the case tag a stored result carries; which cases are closed (close-case, reopen-case)
``retention_export`` the folder a purge writes what it deletes to before deleting it
``rejected``    malformed MQTT messages the ingest refused, summarised for the fleet page
``app``         the application factory; ``run`` starts the web server and ingest workers

A match is a lead, never an identification: the review queue exists so a person decides.
"""
