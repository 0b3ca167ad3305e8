"""``edgeface broker rules``: the broker's access rules (Mosquitto's dynamic security plugin file)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from .app import AppContext, pass_app


@click.group("broker")
def broker() -> None:
    """The MQTT broker's configuration (deploy/mosquitto/)."""


def _secret(path: Path) -> str:
    text = path.read_text(encoding="utf-8").splitlines()
    if not text or not text[0]:
        raise click.BadParameter(f"{path} is empty: put the password on its first line")
    return text[0]


@broker.command("rules")
@click.option("--unit", "units", multiple=True, metavar="ID", help="A unit's device id (its certificate CN). Repeat.")
@click.option(
    "--units-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Device ids, one per line ('#' comments).",
)
@click.option(
    "--password-unit",
    "password_units",
    multiple=True,
    metavar="ID=FILE",
    help="A unit on the password listener, with the file holding its password. Repeat.",
)
@click.option(
    "--server",
    "servers",
    multiple=True,
    default=("edgeface-server",),
    show_default=True,
    help="Central server certificate CN. Repeat.",
)
@click.option(
    "--ingest",
    "ingest",
    multiple=True,
    default=("edgeface-ingest",),
    show_default=True,
    help="Ingest worker certificate CN. Repeat.",
)
@click.option(
    "--admin-password-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Also create the 'dynsec-admin' account, which may change the rules at run time (mosquitto_ctrl).",
)
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write dynamic-security.json (mode 0600), e.g. /var/lib/mosquitto/dynamic-security.json.",
)
@pass_app
def rules(
    app: AppContext,
    units: tuple[str, ...],
    units_file: Path | None,
    password_units: tuple[str, ...],
    servers: tuple[str, ...],
    ingest: tuple[str, ...],
    admin_password_file: Path | None,
    out: Path,
) -> None:
    """Write the broker's rules: each unit may publish only its own results and status and subscribe only
    to its own commands and the gallery announcement; the ingest may take the shared results
    subscription of ingest.group; anyone not listed may do nothing.

    Write it while Mosquitto is stopped (the plugin rewrites the file when rules change at run time);
    add units to a running broker with mosquitto_ctrl (deploy/mosquitto/README.md).
    """
    from ..mqtt import dynsec

    ids = list(units)
    if units_file is not None:
        ids += [line.split("#")[0].strip() for line in units_file.read_text().splitlines()]
        ids = [i for i in ids if i]
    passwords = {}
    for item in password_units:
        name, sep, file = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r}: use ID=FILE", param_hint="--password-unit")
        passwords[name] = _secret(Path(file))
    doc = dynsec.build(
        ids,
        passwords=passwords,
        servers=servers,
        ingest=ingest,
        group=app.config.ingest.group,
        admin_password=_secret(admin_password_file) if admin_password_file else None,
    )
    tmp = out.with_name(out.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, out)
    click.echo(
        f"wrote {out}: {len(doc['clients'])} identities ({len(set(ids) | set(passwords))} units), "
        f"{len(doc['roles'])} roles; default: deny"
    )
