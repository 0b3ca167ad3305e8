"""The top-level ``edgeface`` group: global options, configuration and logging set-up."""

from __future__ import annotations

from typing import Any

import click

from .. import __version__
from ..config import load_config, log_notices
from ..errors import EdgefaceError
from ..logs import configure_logging
from .app import AppContext, fail


class EdgefaceGroup(click.Group):
    """Turns edgeface errors raised anywhere in a command into a message and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EdgefaceError as e:
            raise fail(e) from None
        except KeyboardInterrupt:
            click.echo("edgeface: interrupted", err=True)
            raise click.exceptions.Exit(130) from None


@click.group(cls=EdgefaceGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edgeface")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="EDGEFACE_CONFIG",
    help="TOML configuration file (default: $EDGEFACE_CONFIG, else built-in defaults).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help="Override one setting, e.g. --set detect.min_score=0.6 (repeatable).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default=None,
    help="Override logging.level.",
)
@click.option("--log-json", is_flag=True, default=False, help="Write logs as JSON lines (logging.format=json).")
@click.pass_context
def cli(
    ctx: click.Context, config_path: str | None, overrides: tuple[str, ...], log_level: str | None, log_json: bool
) -> None:
    """Offline face identification for field units.

    A match is a lead, never an identification: every result is a list of candidates with scores
    for a person to confirm.
    """
    sets = list(overrides)
    if log_level:
        sets.append(f"logging.level={log_level}")
    if log_json:
        sets.append("logging.format=json")
    notices: list[str] = []
    try:
        config = load_config(config_path, overrides=sets, notices=notices)
    except EdgefaceError as e:
        raise fail(e) from None
    configure_logging(config.logging.level, config.logging.format)
    ctx.obj = AppContext(config=config, config_path=config_path, overrides=sets, notices=notices)
    if ctx.invoked_subcommand != "config":  # `config check` reports them itself, the others log them there
        log_notices(notices)


def _register() -> None:
    """Attach every command; each module defines its commands and imports nothing from here."""
    from . import broker, config_cmd, detect, embed, enroll, gallery, identify, ingest, outbox, run, server, status
    from . import doctor as doctor_cli
    from . import unit as unit_cli
    from .bench import bench
    from .server_tokens import token_group

    for command in (
        detect.detect_cmd,
        embed.embed_cmd,
        identify.identify_cmd,
        enroll.enroll_cmd,
        run.run_cmd,
        run.trigger_cmd,
        status.status_cmd,
        doctor_cli.doctor_cmd,
        config_cmd.config_group,
        gallery.gallery_group,
        outbox.outbox_group,
        unit_cli.unit_group,
        ingest.ingest,
        server.server_group,
        server.audit_group,
        broker.broker,
        bench,
    ):
        cli.add_command(command)
    server.server_group.add_command(token_group)


_register()
