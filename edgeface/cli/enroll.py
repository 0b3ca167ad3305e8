"""``edgeface enroll``: images with provenance into the enrollment workspace (central side)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import click

from .app import EXIT_FAILED, AppContext, emit_json, pass_app, progress


@click.command("enroll")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--consent", help="Consent or legal basis for these images (required unless the CSV has it).")
@click.option("--source", "source_text", help="Where the images came from (default: the folder or CSV path).")
@click.option("--enrolled-by", help="Who enrolls them (default: the user name).")
@click.option(
    "--workspace",
    type=click.Path(file_okay=False, path_type=Path),
    help="Enrollment workspace (default: enroll.workspace).",
)
@click.option("--remove", "remove_ids", multiple=True, help="Remove this identity instead (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image, then a summary (JSON Lines).")
@pass_app
def enroll_cmd(
    app: AppContext,
    source: Path,
    consent: str | None,
    source_text: str | None,
    enrolled_by: str | None,
    workspace: Path | None,
    remove_ids: tuple[str, ...],
    as_json: bool,
) -> None:
    """Enroll SOURCE: a folder with one sub-folder of images per identity, or a CSV manifest
    (identity,image[,name,source,consent,enrolled_by]; image paths relative to the CSV).

    Re-running is incremental: images already processed with the same model and settings are not
    embedded again. On a unit with a device key configured the workspace is sealed at rest
    (docs/protection.md). Refused images are listed with their reasons; near-duplicates are flagged. Exit
    status 1 if any image was refused or unreadable (the others are enrolled).
    """
    from ..gallery.enroll import Workspace, enroll, read_csv, read_folder
    from ..protect.sealed_sqlite import enroll_sealer
    from ..vision.engine import Engine

    # on a unit (a device key configured) the workspace is sealed at rest; elsewhere plain SQLite
    ws = Workspace(workspace or app.config.enroll.workspace, sealer=enroll_sealer(app.config))
    try:
        if remove_ids:
            for ident in remove_ids:
                n = ws.remove_identity(ident)
                click.echo(f"removed {ident}: {n} image(s)")
            return
        if source.is_dir():
            items = read_folder(source, consent=consent or "", source=source_text, enrolled_by=enrolled_by)
        else:
            items = read_csv(source, consent=consent, source=source_text, enrolled_by=enrolled_by)

        def bar(seq: Iterable[Any]) -> Iterator[Any]:
            with progress(list(seq), "enrolling") as b:
                yield from b

        report = enroll(
            Engine(app.config),
            ws,
            items,
            duplicate_similarity=app.config.enroll.duplicate_similarity,
            second_face_ratio=app.config.enroll.second_face_ratio,
            progress=bar,
        )
    finally:
        ws.close()
    counts = report.counts()
    for r in report.results:
        if as_json:
            emit_json(r.to_dict())
        elif r.status in ("refused", "error") or r.duplicates:
            what = "; ".join(r.reasons) if r.reasons else ""
            dup = ", ".join(
                f"{d['file'] or d['image'][:12]} of {d['identity']} ({d['similarity']}"
                f"{', same image' if d['exact'] else ''})"
                for d in r.duplicates[:3]
            )
            click.echo(
                f"{r.item.image}: {r.status.upper()}{' — ' + what if what else ''}"
                f"{' — near-duplicate of ' + dup if dup else ''}"
            )
    if as_json:
        emit_json({"summary": counts})
    else:
        click.echo("summary: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if counts.get("refused", 0) or counts.get("error", 0):
        raise click.exceptions.Exit(EXIT_FAILED)
