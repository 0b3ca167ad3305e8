"""``edgeface config``: print the defaults, check a file, show the effective settings."""

from __future__ import annotations

import json

import click

from ..config import Config, as_dict, log_notices, to_toml
from .app import AppContext, pass_app


@click.group("config")
@click.pass_context
def config_group(ctx: click.Context) -> None:
    """Inspect and check the configuration."""
    app = ctx.find_object(AppContext)
    if app is not None and ctx.invoked_subcommand != "check":
        log_notices(app.notices)


@config_group.command("defaults")
def defaults() -> None:
    """Print a complete configuration file with every setting documented."""
    click.echo(to_toml(Config()))


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def show(app: AppContext, as_json: bool) -> None:
    """Print the effective configuration (file + environment + --set), validated."""
    if as_json:
        click.echo(json.dumps(as_dict(app.config), indent=2))
    else:
        click.echo(to_toml(app.config, docs=False))


@config_group.command("check")
@pass_app
def check(app: AppContext) -> None:
    """Validate the configuration and exit 0 if it is valid (errors exit 2 with the key named).

    Old names (a section that moved, "" for an unset setting) are still read; each is listed with what
    to rename.
    """
    where = app.config_path or "built-in defaults"
    if not app.notices:
        click.echo(f"ok: {where} is valid")
        return
    click.echo(f"ok: {where} is valid, but says {len(app.notices)} thing(s) the old way (still read); update them:")
    for note in app.notices:
        click.echo(f"  - {note}")
