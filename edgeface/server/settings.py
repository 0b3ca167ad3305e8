"""The central server's configuration section (``[server]``). Imports neither Flask nor SQLAlchemy, so
the field unit (which has neither) can load a configuration. Assembled into :class:`edgeface.config.Config`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config.fields import section, setting


@dataclass(frozen=True)
class ServerRetentionConfig:
    """How long the centre keeps results, their face crops and review records (``edgeface server purge``
    deletes what is past them; nothing is deleted on its own). Days count from when the server received a
    result, or from its last review decision for decided ones; 0 keeps that kind until the policy changes."""

    results_days: int = setting(
        0, "Days an undecided result (pending or awaiting a second reviewer) is kept; 0: kept.", min=0
    )
    reviewed_days: int = setting(
        0,
        "Days a result a reviewer rejected or marked unknown is kept, with its review records, after the "
        "last decision; 0: kept.",
        min=0,
    )
    confirmed_days: int = setting(
        0,
        "Days a confirmed identification is kept, with its crop and review records, after its confirmation; "
        "0: kept (the default: an identification is the record a case is closed on).",
        min=0,
    )
    crops_days: int = setting(
        0,
        "Days the probe face crop of an unconfirmed result is kept; after that the crop is removed and the "
        "text record stays as long as its own retention says; 0: crops kept as long as their result.",
        min=0,
    )
    keep_open_cases: bool = setting(
        True,
        "Results tagged with a case that is not closed (`edgeface server close-case`) are kept whole; the "
        "days of a closed case's results count from its closure at the earliest.",
    )
    export_dir: Path | None = setting(
        None,
        "Folder `edgeface server purge` exports what it deletes to before deleting it (one subfolder per run, "
        "mode 0700).",
        unset="<server.data_dir>/purged",
    )
    batch: int = setting(
        5000,
        "Most results (and most crops) one purge transaction deletes; `edgeface server purge` runs batches until "
        "nothing is due, each its own transaction, export folder and audit entry. On SQLite ingest waits for "
        "each batch (`edgeface bench purge` measures how long).",
        min=1,
    )


@dataclass(frozen=True)
class ServerConfig:
    """The central server (``edgeface server``): web application, database, gallery publishing, accounts."""

    database_url: str = setting(
        "sqlite:////var/lib/edgeface/server.sqlite3",
        "SQLAlchemy database URL: sqlite:////absolute/path.sqlite3 (one host) or "
        "postgresql+psycopg://user@host/edgeface (several server hosts; see deploy/postgresql.md).",
    )
    data_dir: Path = setting(
        Path("/var/lib/edgeface/server"),
        "Server files: uploaded enrollment images, the enrollment workspace, the publish folder.",
    )
    signing_key: Path = setting(
        Path("/etc/edgeface/gallery-signing.pem"),
        "Ed25519 key that signs gallery bundles (mode 0600; `edgeface gallery keygen`).",
    )
    public_url: str = setting(
        "",
        "Base URL devices reach this server at (e.g. https://edgeface.example.org); the gallery "
        "announcement points them to <public_url>/bundles/. Required to publish a gallery (the request's "
        "Host header is never used).",
    )
    embedders: tuple[str, ...] = setting(
        [],
        "Embedder model ids the fleet runs (cards in models.dir): each publication re-embeds every enrolled "
        "image with each (cached per image and model) and publishes a bundle per model under "
        "<publish>/<model-id>/; the first is also served at the root for units that predate per-model folders. "
        "Adding one re-embeds everything at the next publication. Empty: models.embedder only.",
    )
    host: str = setting("127.0.0.1", "Address the web application listens on (put a TLS proxy in front).")
    port: int = setting(8480, "TCP port of the web application.", min=0, max=65535)
    threads: int = setting(8, "Web request threads per server process.", min=1, max=256)
    ingest_workers: int = setting(
        1,
        "Ingest workers started by `edgeface server run` (processes on the MQTT 5 shared subscription).",
        min=0,
        max=64,
    )
    two_person_rule: bool = setting(
        False, "A confirmation counts only once a second, different reviewer confirmed the same identity."
    )
    command_ttl_s: int = setting(
        3 * 86400,
        "Seconds a signed command to a unit (wipe, lock, unlock, revoke) stays valid: a unit offline longer "
        "refuses it as expired when it comes back (the broker keeps it for the unit's session meanwhile).",
        min=60,
        max=30 * 86400,
    )
    cookie_secure: bool = setting(
        True, "Send session cookies only over HTTPS (turn off only for loopback tests without TLS)."
    )
    session_idle_s: int = setting(1800, "Log a user out after this many seconds without a request.", min=60)
    session_max_s: int = setting(43200, "Log a user out this many seconds after login, active or not.", min=300)
    login_max_failures: int = setting(
        5, "Failed logins per user name within login_window_s before further attempts are refused.", min=1
    )
    login_max_failures_ip: int = setting(
        20, "Failed logins per client address within login_window_s before it is refused.", min=1
    )
    login_window_s: int = setting(900, "Window of the login rate limits (seconds).", min=10)
    trusted_proxies: int = setting(
        0,
        "Reverse proxies in front of the server whose X-Forwarded-For/-Proto are believed (0: none).",
        min=0,
        max=5,
    )
    max_upload_bytes: int = setting(20 * 1024**2, "Largest upload (enrollment images) per request, bytes.", min=1024)
    metrics_token: str = setting(
        "",
        "Bearer token a Prometheus scraper sends to GET /metrics (at least 32 random characters, e.g. `openssl "
        "rand -hex 32`; in Prometheus: authorization.credentials_file). Empty: /metrics answers 404.",
    )
    rejected_keep: int = setting(1000, "Malformed MQTT messages kept (first bytes) for inspection.", min=0)
    retention: ServerRetentionConfig = section(ServerRetentionConfig)  # [server.retention]
