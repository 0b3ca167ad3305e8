"""``edgeface server ...``: the central server (web application + ingest workers) and its accounts.

Needs the ``server`` extra: ``pip install 'edgeface[server]'`` (field units never do).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import EdgefaceError
from .app import AppContext, emit_json, pass_app, write_secret

if TYPE_CHECKING:
    from ..server.db import Database


def _need_extra() -> None:
    try:
        import alembic  # noqa: F401
        import argon2  # noqa: F401
        import flask  # noqa: F401
        import sqlalchemy  # noqa: F401
        import waitress  # noqa: F401
    except ImportError as e:
        raise EdgefaceError(
            f"the central server needs the 'server' extra ({e.name} is missing): pip install 'edgeface[server]'"
        ) from None


def _db(app: AppContext) -> Database:
    _need_extra()
    from ..server.db import Database

    db = Database(app.config.server.database_url)
    db.migrate()
    return db


@click.group("server")
def server_group() -> None:
    """The central server: review queue, audit log, gallery publishing, fleet view, ingest workers."""


@server_group.command("run")
@click.option("--host", help="Listen address (server.host).")
@click.option("--port", type=int, help="Listen port (server.port).")
@click.option(
    "--ingest-workers",
    type=int,
    help="Ingest workers, each a process on the shared subscription (server.ingest_workers; 0: web only).",
)
@click.option("--no-web", is_flag=True, help="Run only ingest worker(s), no web application.")
@click.option(
    "--worker-index",
    type=int,
    default=0,
    show_default=True,
    help="Index of this process's first worker (its MQTT client id is ingest.client_id-INDEX).",
)
@pass_app
def run(
    app: AppContext, host: str | None, port: int | None, ingest_workers: int | None, no_web: bool, worker_index: int
) -> None:
    """Migrate the database, then serve the web application and run the ingest workers until SIGTERM."""
    _need_extra()
    from ..server.run import run_server

    config = app.with_overrides(**{"server.host": host, "server.port": port})
    child_args: list[str] = []
    if app.config_path:
        child_args += ["--config", app.config_path]
    for s in app.overrides:
        child_args += ["--set", s]
    run_server(config, web=not no_web, ingest_workers=ingest_workers, worker_index=worker_index, child_args=child_args)


@server_group.command("migrate")
@pass_app
def migrate(app: AppContext) -> None:
    """Create or upgrade the database schema (run also at every start)."""
    db = _db(app)
    click.echo(f"database {db.url.render_as_string(hide_password=True)} is at the newest schema")
    db.dispose()


def _read_password(password_file: Path | None) -> str:
    if password_file is not None:
        lines = password_file.read_text(encoding="utf-8").splitlines()
        return lines[0] if lines else ""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    return click.prompt("password", hide_input=True, confirmation_prompt=True)


@server_group.command("add-user")
@click.argument("username")
@click.option(
    "--role",
    "roles",
    multiple=True,
    type=click.Choice(["reviewer", "admin"]),
    required=True,
    help="Role(s) of the user (repeatable).",
)
@click.option(
    "--password-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Read the password from this file's first line (default: prompt, or one line on stdin).",
)
@click.option(
    "--owner",
    help="The person the account belongs to (staff number or name; default: USERNAME). "
    "Accounts of one person never count as two under the two-person rule.",
)
@pass_app
def add_user(
    app: AppContext, username: str, roles: tuple[str, ...], password_file: Path | None, owner: str | None
) -> None:
    """Create a user (the first administrators are made this way).

    The roles are granted at once: whoever runs this controls the server. On the web, roles an
    administrator adds wait for a second administrator's approval.
    """
    from ..server import audit, auth

    db = _db(app)
    try:
        with db.write() as conn:
            u = auth.create_user(conn, username, _read_password(password_file), list(roles), owner=owner)
            audit.append(
                conn,
                "cli",
                "user.create",
                u.username,
                {"roles": sorted(u.roles), "owner": owner or u.username, "created_by": "command line"},
            )
    finally:
        db.dispose()
    click.echo(f"created user {u.username} with roles {', '.join(sorted(u.roles))}")


@server_group.command("add-device")
@click.argument("device_id")
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the token here (mode 0600) instead of printing it.",
)
@pass_app
def add_device(app: AppContext, device_id: str, token_file: Path | None) -> None:
    """Issue a bundle-download token for DEVICE_ID (replaces an earlier one). Shown once."""

    from ..server import audit, auth

    db = _db(app)
    try:
        with db.write() as conn:
            token = auth.issue_device_token(conn, device_id)
            audit.append(conn, "cli", "device.credential", device_id, {})
    finally:
        db.dispose()
    if token_file:
        write_secret(token_file, token)
        click.echo(f"token for {device_id} written to {token_file}; on the unit set gallery.sync_password_file")
    else:
        click.echo(token)


@server_group.command("purge")
@click.option("--dry-run", is_flag=True, help="Show what the policy would delete; delete and export nothing.")
@click.option(
    "--export",
    "export_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Export what goes into a new folder under this one before deleting (default: "
    "server.retention.export_dir, else <server.data_dir>/purged).",
)
@click.option("--no-export", is_flag=True, help="Delete without exporting first (recorded so in the audit log).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (with the ids that go).")
@pass_app
def purge(app: AppContext, dry_run: bool, export_dir: Path | None, no_export: bool, as_json: bool) -> None:
    """Delete results, face crops and review records past [server.retention]; export them first; audited.

    Confirmed identifications and results of open cases are kept as the policy says. Nothing is deleted
    unless retention days are set (all 0 by default).
    """
    from ..server import retention

    if no_export and export_dir is not None:
        raise click.UsageError("--export and --no-export exclude each other")
    cfg = app.config.server
    policy = retention.Policy.of(cfg.retention)
    where = None if no_export else (export_dir or cfg.retention.export_dir or cfg.data_dir / "purged")
    db = _db(app)
    try:
        if dry_run:
            with db.read() as conn:
                plans = [retention.plan(conn, policy, limit=2**62)]
            reports = []
        else:
            reports = retention.purge_all(db, policy, export_dir=where, limit=cfg.retention.batch)
            plans = [r.plan for r in reports]
    finally:
        db.dispose()
    total = retention.Plan.combined(plans)
    if as_json:
        if dry_run:
            emit_json({"dry_run": True, **total.as_dict(), "export": str(where) if where else None})
        else:
            emit_json({"dry_run": False, **total.summary(), "batches": [r.as_dict() for r in reports]})
        return
    verb = "would delete" if dry_run else "deleted"
    by = ", ".join(f"{n} {s}" for s, n in sorted(total.by_status().items())) or "none"
    click.echo(
        f"{verb} {len(total.results)} results ({by}) with {total.reviews} review records; {len(total.crops)} face crops"
    )
    click.echo(
        f"kept: {total.kept_case} results and {total.kept_case_crops} crops of open (or recently closed) cases, "
        f"{total.kept_confirmed} confirmed identifications older than results_days"
    )
    if not policy.results_days + policy.reviewed_days + policy.confirmed_days + policy.crops_days:
        click.echo("no retention days are set in [server.retention]: everything is kept")
    if dry_run:
        for d in total.results[:20]:
            click.echo(f"  result {d.id} {d.device_id} {d.review_status}" + (f" case {d.case}" if d.case else ""))
        if len(total.results) > 20:
            click.echo(f"  ... and {len(total.results) - 20} more (--json lists all)")
        click.echo(
            f"nothing deleted (dry run); a purge would export to a new folder under {where}"
            if where
            else "nothing deleted (dry run); a purge with --no-export would export nothing"
        )
        return
    for r in reports:
        click.echo(
            f"batch of {len(r.plan.results)} results, {len(r.plan.crops)} crops: "
            + (f"exported first to {r.export}" if r.export else "not exported (--no-export)")
            + f", audit entry {r.audit_seq} (retention.purge)"
        )


@server_group.command("close-case")
@click.argument("tag")
@click.option("--note", default="", help="Why, or on whose decision (kept in the audit log).")
@pass_app
def close_case(app: AppContext, tag: str, note: str) -> None:
    """Mark case TAG closed: from now its results fall under [server.retention] (they are kept while open)."""
    from ..server import case_state

    db = _db(app)
    try:
        with db.write() as conn:
            count = case_state.close_case(conn, tag, "cli", note)
    finally:
        db.dispose()
    tag = case_state.clean_tag(tag)
    click.echo(f"case {tag} closed ({count} results carry it); their retention counts from now")
    if not count:
        click.echo(f"warning: no result carries the case tag {tag!r}: check its spelling (reopen-case undoes this)")


@server_group.command("reopen-case")
@click.argument("tag")
@pass_app
def reopen_case(app: AppContext, tag: str) -> None:
    """Open case TAG again: its results are kept whole until it is closed."""
    from ..server import case_state

    db = _db(app)
    try:
        with db.write() as conn:
            case_state.reopen_case(conn, tag, "cli")
    finally:
        db.dispose()
    click.echo(f"case {tag} reopened")


@server_group.command("command")
@click.argument("device_id")
@click.argument("name", type=click.Choice(["lock", "unlock", "wipe", "capture", "sync_gallery"]))
@click.option("--tag", help="capture: the case or body tag of the picture.")
@click.option("--yes", is_flag=True, help="wipe: yes, destroy everything personal on the unit.")
@click.option("--wait", "wait_s", type=float, default=0.0, help="Seconds to wait for the unit's reply.")
@pass_app
def unit_command(app: AppContext, device_id: str, name: str, tag: str | None, yes: bool, wait_s: float) -> None:
    """Send DEVICE_ID a signed command (docs/server.md, Unit commands). Exit 1 when the broker did not take it,
    or when --wait saw it refused or failed (a reply needs `edgeface server run` listening)."""
    from ..server import commands

    if name == "wipe" and not yes:
        raise click.UsageError(f"a wipe destroys everything personal on {device_id}: add --yes")
    db = _db(app)
    try:
        doc, sent = commands.command(
            app.config, db, device_id, name, "cli", args={"tag": tag} if tag is not None else None
        )
        click.echo(
            f"{name} #{doc['seq']} ({doc['id']}) to {device_id}: " + ("sent" if sent.ok else f"not sent: {sent.why}")
        )
        state = commands.wait_reply(db, doc["id"], wait_s) if sent.ok and wait_s > 0 else None
    finally:
        db.dispose()
    if state is not None:
        click.echo(f"the unit replied: {state}")
    elif wait_s > 0 and sent.ok:
        click.echo(f"no reply within {wait_s:g} s (the unit may be offline: the broker keeps the command for it)")
    if not sent.ok or state in ("refused", "failed"):
        sys.exit(1)


@server_group.command("revoke")
@click.argument("device_id")
@pass_app
def revoke_device(app: AppContext, device_id: str) -> None:
    """Revoke DEVICE_ID: its downloads refused, a signed 'revoke' sent, its broker account cut off (exit 1 when
    the broker cut-off failed: then do it with mosquitto_ctrl, deploy/mosquitto/README.md)."""
    from ..server import commands

    db = _db(app)
    try:
        done = commands.revoke(app.config, db, device_id, "cli")
    finally:
        db.dispose()
    click.echo(f"{device_id}: gallery downloads refused" + ("" if done.known else " (no token was issued)"))
    click.echo("revoke command: " + ("sent" if done.told.ok else f"not sent: {done.told.why}"))
    click.echo(
        "broker: " + ("account disabled, role removed" if done.cut_off.ok else f"NOT cut off: {done.cut_off.why}")
    )
    if not done.cut_off.ok:
        sys.exit(1)


@click.group("audit")
def audit_group() -> None:
    """The central server's hash-chained audit log."""


@audit_group.command("verify")
@click.option("--expect", help="SEQ:HASH of an entry recorded elsewhere (e.g. from the journal): must be in the chain.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_app
def audit_verify(app: AppContext, expect: str | None, as_json: bool) -> None:
    """Recompute the audit chain. Exit status 1 if any entry was edited, deleted or reordered."""
    from ..server import audit

    anchor = None
    if expect:
        seq, _, h = expect.partition(":")
        if not seq.isdigit() or len(h) != 64:
            raise click.BadParameter("expected SEQ:HASH, e.g. 42:3f5a... (64 hex digits)", param_hint="--expect")
        anchor = (int(seq), h.lower())
    db = _db(app)
    try:
        with db.read() as conn:
            v = audit.verify(conn, expect=anchor)
    finally:
        db.dispose()
    if as_json:
        emit_json(v.as_dict())
    elif v.ok:
        click.echo(f"ok: {v.entries} entries, chain intact, head {v.head_seq}:{v.head_hash}")
    else:
        click.echo(f"BROKEN: {v.entries} entries checked", err=False)
        for p in v.problems:
            click.echo(f"  {p}")
    if not v.ok:
        raise click.exceptions.Exit(1)
