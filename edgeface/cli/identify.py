"""``edgeface identify``: who each face in each image may be, judged as the unit judges it.

The faces go through :func:`edgeface.identify`, which runs the daemon's own per-frame steps
(:mod:`edgeface.daemon.steps`) against the installed gallery, opened as the daemon opens it
(configuration, device key, trusted keys), or against a published bundle folder (``--bundle``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from ..errors import ConfigError, GalleryKeyError
from ..vision.engine import Engine
from .app import AppContext, emit_json, fail, pass_app
from .inputs import expand_images, for_each_image

if TYPE_CHECKING:
    from ..gallery.match import Gallery

MANIFEST = "manifest.json"  # what makes a folder a bundle (edgeface/gallery/bundle.py)


@click.command("identify")
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image on stdout (JSON Lines).")
@click.option(
    "--bundle",
    type=click.Path(path_type=Path),
    help="Search this published bundle folder (one version, with manifest.json) instead of the installed gallery.",
)
@click.option(
    "--trusted-key",
    "trusted_keys",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Public key (PEM) the --bundle must be signed with (repeatable; default: gallery.trusted_keys).",
)
@click.option("--top-k", type=click.IntRange(1, 100), help="Candidates per face, best first (gallery.top_k).")
@click.option("--threads", type=int, help="Interpreter threads (runtime.num_threads).")
@pass_app
def identify_cmd(
    app: AppContext,
    images: tuple[str, ...],
    as_json: bool,
    bundle: Path | None,
    trusted_keys: tuple[Path, ...],
    top_k: int | None,
    threads: int | None,
) -> None:
    """Each face in IMAGES (files or folders): its quality verdict, the gallery's candidates with their
    scores, and the decision, exactly as `edgeface run` would decide it.

    The installed gallery is used (gallery.dir, decrypted with the device key, checked against
    gallery.trusted_keys) unless --bundle names a published one. A match is a lead for a person to
    confirm. Exit status 1 if any image could not be read (the others are still reported) or the gallery
    was refused, 2 for a wrong option or setting (a missing --bundle folder, no trusted or device key).
    """
    from ..api import identify, open_gallery

    config = app.with_overrides(**{"runtime.num_threads": threads})
    if bundle is None:
        # The model the daemon runs with the installed gallery: during a change of model, the old one until
        # the daemon's next start completes the switch (gallery/switch.py); nothing is switched here.
        from ..gallery.switch import choose

        config = choose(config).config(config)
    engine = Engine(config)
    keys = list(trusted_keys) or list(config.gallery.trusted_keys)
    if bundle is not None:
        _check_bundle(bundle, keys)
    if trusted_keys and bundle is None:
        raise click.UsageError("--trusted-key goes with --bundle (the installed gallery uses gallery.trusted_keys)")
    _ = engine.embedder  # load (and verify) the model before opening the gallery or reading any image
    try:
        gallery = open_gallery(bundle, trusted_keys=keys if bundle is not None else None, engine=engine)
    except GalleryKeyError as e:  # no device key or no trusted keys: what the configuration says is wrong
        raise fail(ConfigError(str(e))) from None
    try:

        def describe(path: Path, image: np.ndarray) -> dict[str, Any]:
            found = identify(image, gallery=gallery, top_k=top_k, engine=engine)
            return {
                "width": image.shape[1],
                "height": image.shape[0],
                "gallery_version": gallery.version,
                "model": engine.embedder_card.id,
                "faces": [who.to_dict() for who in found],
            }

        for_each_image(engine, expand_images(images), "identify", describe, lambda r: _print(r, as_json, gallery))
    finally:
        gallery.close()


def _check_bundle(bundle: Path, keys: list[Path]) -> None:
    """Usage errors a user can fix at once, before any model loads."""
    if not bundle.is_dir():
        raise click.BadParameter(
            f"{bundle}: no such folder; give the folder of one published bundle version (it holds {MANIFEST})",
            param_hint="--bundle",
        )
    if not (bundle / MANIFEST).is_file():
        inside = sorted(p.parent.name for p in bundle.glob(f"*/{MANIFEST}"))
        hint = f"; the bundles inside it: {', '.join(inside[-3:])} (pass one of them)" if inside else ""
        raise click.BadParameter(f"{bundle} is not a bundle folder (no {MANIFEST}){hint}", param_hint="--bundle")
    if not keys:
        raise click.UsageError(
            "a --bundle is checked against the central server's public key: pass --trusted-key central.pub, "
            "or set gallery.trusted_keys"
        )


def _print(record: dict[str, Any], as_json: bool, gallery: Gallery) -> None:
    if as_json:
        emit_json(record)
        return
    if "error" in record:
        click.echo(f"{record['image']}: ERROR {record['error']}")
        return
    faces = record["faces"]
    click.echo(f"{record['image']}: {len(faces)} face(s), gallery version {gallery.version} ({len(gallery)} entries)")
    for i, f in enumerate(faces):
        click.echo(f"  face {i}: {_verdict(f)}")


def _verdict(face: dict[str, Any]) -> str:
    d = face["decision"]
    if d is None:
        return "refused (" + "; ".join(face["quality"]["reasons"]) + ")"
    space = d.get("space", "cosine")  # the score the threshold applies to
    thr = f"threshold {d['threshold']:.3f}" + (f" ({space})" if space != "cosine" else "")
    cands = ", ".join(f"{c['identity']} {_score(c)}" for c in d["candidates"])
    if d["match"] is not None:
        m = d["match"]
        name = f"{m['name']} ({m['identity']})" if m["name"] != m["identity"] else m["identity"]
        return f"MATCH {name} {_score(m)} at {thr}; candidates: {cands}"
    return f"no match at {thr}; nearest: {cands or 'nobody (empty gallery)'}"


def _score(candidate: dict[str, Any]) -> str:
    """The raw cosine, and any other score the gallery gives next to it (the normalised one)."""
    extra = [f"{k} {v:.3f}" for k, v in candidate.items() if k not in ("identity", "name", "score", "row") and _num(v)]
    return f"{candidate['score']:.3f}" + (f" ({', '.join(extra)})" if extra else "")


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
