"""``edgeface gallery ...``: keys, building and publishing bundles, verifying, serving, syncing, wiping.

Exit codes: 0 success; 1 a bundle was refused or a sync failed (the message says why); 2 usage or
configuration error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from ..errors import BundleRejected, GalleryError
from .app import EXIT_FAILED, AppContext, emit_json, pass_app

json_flag = click.option("--json", "as_json", is_flag=True, help="Print one JSON object (for scripts).")
trusted_option = click.option(
    "--trusted-key",
    "trusted",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Central public key (PEM); default: gallery.trusted_keys. Repeatable.",
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def _out(record: dict[str, Any], as_json: bool, text: str) -> None:
    if as_json:
        emit_json(record)
    else:
        click.echo(text)


def _plain(d: dict[str, Any]) -> str:
    """A small mapping as text for people ("kind annoy, trees 50"), not a Python dict."""
    return ", ".join(f"{k} {_plain(v) if isinstance(v, dict) else v}" for k, v in d.items()) or "none"


@click.group("gallery")
def gallery_group() -> None:
    """The gallery: signed bundles (central side) and the unit's installed, encrypted copy."""


@gallery_group.command("keygen")
@click.option(
    "--signing-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a new Ed25519 signing key here (central server; mode 0600) ...",
)
@click.option(
    "--public-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="... and its public key here (copy it to every unit, gallery.trusted_keys).",
)
@click.option(
    "--device-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a new 32-byte device encryption key here (a unit; mode 0600).",
)
def keygen(signing_key: Path | None, public_key: Path | None, device_key: Path | None) -> None:
    """Create keys. Never overwrites an existing key file."""
    from ..gallery import signing
    from ..gallery.crypto import generate_key_file

    if not (signing_key or device_key):
        raise click.UsageError("give --signing-key and --public-key, or --device-key")
    if signing_key:
        if not public_key:
            raise click.UsageError("--signing-key needs --public-key")
        kid = signing.generate_keypair(signing_key, public_key)
        click.echo(f"signing key {signing_key} (key id {kid}); public key {public_key}")
    if device_key:
        if device_key.exists():
            raise click.UsageError(f"{device_key} already exists; refusing to overwrite a key")
        generate_key_file(device_key)
        click.echo(f"device key {device_key}")


@gallery_group.command("build")
@click.option(
    "--publish",
    "publish_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Publish folder (served to units): the new version, its deltas and latest.json go here.",
)
@click.option(
    "--signing-key",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The central Ed25519 signing key (PEM, mode 0600).",
)
@click.option(
    "--workspace",
    type=click.Path(file_okay=False, path_type=Path),
    help="Enrollment workspace (default: enroll.workspace).",
)
@click.option("--delta-depth", default=3, show_default=True, help="Write deltas from this many previous versions.")
@click.option("--keep", default=5, show_default=True, help="Keep this many full versions in the publish folder.")
@json_flag
@pass_app
def build(
    app: AppContext,
    publish_dir: Path,
    signing_key: Path,
    workspace: Path | None,
    delta_depth: int,
    keep: int,
    as_json: bool,
) -> None:
    """Build and sign the next gallery version from everything enrolled, with deltas, and publish it."""
    from ..gallery import signing
    from ..gallery.delta import summarise
    from ..gallery.enroll import Workspace, settings_key
    from ..gallery.publish import publish_for, publish_lock
    from ..vision.engine import Engine

    key = signing.load_private_key(signing_key)
    engine = Engine(app.config)
    card = engine.embedder_card
    from ..protect.sealed_sqlite import enroll_sealer

    ws = Workspace(workspace or app.config.enroll.workspace, create=False, sealer=enroll_sealer(app.config))
    try:
        vectors, entries, identities = ws.content(settings_key(engine, app.config.enroll.second_face_ratio))
    finally:
        ws.close()
    if not entries:
        raise GalleryError(
            f"nothing enrolled in {ws.dir.resolve()} with this embedder and these settings; run "
            "`edgeface enroll` first (with the same configuration)"
        )
    with publish_lock(publish_dir):
        pub = publish_for(
            publish_dir,
            card,
            vectors=vectors,
            entries=entries,
            identities=identities,
            signer=key,
            target_fpir=app.config.gallery.target_fpir,
            delta_depth=delta_depth,
            keep=keep,
            pointer_ttl_s=app.config.gallery.pointer_ttl_s,
        )
    m = pub.manifest
    rec: dict[str, Any] = {
        "version": m.gallery_version,
        "dir": str(pub.dir),
        "count": m.count,
        "identities": m.identities,
        "bytes": m.total_bytes,
        "deltas": [summarise(s, m) for s in pub.deltas.values()],
    }
    _out(
        rec,
        as_json,
        f"published gallery version {m.gallery_version}: {m.count} images of {m.identities} "
        f"identities, {m.total_bytes} bytes, in {pub.dir}"
        + "".join(
            f"\n  delta from {d['base_version']}: {d['delta_bytes']} bytes ({100 * d['fraction']:.2f}%)"
            for d in rec["deltas"]
        ),
    )


@gallery_group.command("refresh")
@click.option(
    "--publish",
    "publish_dir",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The publish folder served to units.",
)
@click.option(
    "--signing-key",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The central Ed25519 signing key (PEM, mode 0600).",
)
@click.option(
    "--ttl",
    "ttl_s",
    type=click.IntRange(min=600),
    default=None,
    help="Seconds the pointer stays valid (default: gallery.pointer_ttl_s).",
)
@json_flag
@pass_app
def refresh(app: AppContext, publish_dir: Path, signing_key: Path, ttl_s: int | None, as_json: bool) -> None:
    """Re-sign latest.json with a new expiry, without publishing a new version.

    Units refuse a pointer past its expires_at (a mirror must not keep them on an old gallery), so a
    publisher that does not publish often runs this from cron, e.g. daily:
    `edgeface gallery refresh --publish /srv/gallery --signing-key /etc/edgeface/central.pem`.
    """
    from ..gallery import signing
    from ..gallery.publish import publish_lock, refresh_pointer

    key = signing.load_private_key(signing_key)
    with publish_lock(publish_dir):
        ptr = refresh_pointer(publish_dir, key, ttl_s or app.config.gallery.pointer_ttl_s)
    _out(
        {
            "version": ptr.version,
            "signed_at": ptr.signed_at,
            "expires_at": ptr.expires_at,
            "pointer": str(publish_dir / "latest.json"),
        },
        as_json,
        f"re-signed {publish_dir / 'latest.json'}: gallery version {ptr.version}, valid until {ptr.expires_at}",
    )


def _trusted(app: AppContext, trusted: tuple[Path, ...]) -> list[Ed25519PublicKey]:
    from ..gallery.signing import load_trusted

    return load_trusted(list(trusted) or list(app.config.gallery.trusted_keys))


@gallery_group.command("verify")
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@trusted_option
@click.option("--embedder-sha256", help="Also require this embedder model SHA-256 (a unit's model).")
@json_flag
@pass_app
def verify(
    app: AppContext, directory: Path, trusted: tuple[Path, ...], embedder_sha256: str | None, as_json: bool
) -> None:
    """Check a bundle folder (or a publish folder: its signed latest.json, unexpired, and the version it
    points to) completely: signatures, every file.

    Exit status 1 with the reason if a unit would refuse it.
    """
    from ..gallery.bundle import verify_bundle
    from ..gallery.publish import POINTER, read_pointer, verify_pointer

    keys = _trusted(app, trusted)
    ptr = read_pointer(directory)
    target = directory / ptr.bundle if ptr else directory
    try:
        if ptr is not None:
            ptr = verify_pointer((directory / POINTER).read_bytes(), keys, str(directory / POINTER))
        vb = verify_bundle(target, keys, embedder_sha256=embedder_sha256)
    except BundleRejected as e:
        _out(
            {"ok": False, "dir": str(target), "reason": e.reason, "error": str(e)},
            as_json,
            f"REFUSED ({e.reason}): {e}",
        )
        raise click.exceptions.Exit(EXIT_FAILED) from None
    m = vb.manifest
    expires = {"pointer_expires_at": ptr.expires_at} if ptr is not None else {}
    _out(
        {
            "ok": True,
            "dir": str(target),
            "version": m.gallery_version,
            "key_id": vb.key_id,
            "files": len(m.files),
            **expires,
        },
        as_json,
        f"ok: {target} is gallery version {m.gallery_version}, signed by key {vb.key_id}, {len(m.files)} files "
        "match the manifest" + (f"; {POINTER} valid until {ptr.expires_at}" if ptr is not None else ""),
    )


@gallery_group.command("inspect")
@click.argument("directory", required=False, type=click.Path(file_okay=False, exists=True, path_type=Path))
@json_flag
@pass_app
def inspect(app: AppContext, directory: Path | None, as_json: bool) -> None:
    """Show a bundle's manifest (a folder, a publish folder, or by default the unit's installed gallery)."""
    from ..gallery.bundle import MANIFEST
    from ..gallery.manifest import Manifest
    from ..gallery.publish import read_pointer

    state: dict[str, Any] = {}
    switching: dict[str, Any] = {}
    if directory is None:
        from ..gallery.switch import switch_info

        root = app.config.gallery.dir
        info = switch_info(app.config)  # `current` is the running model's gallery, also while a switch waits
        switching = info if info.get("pending") else {}
        link = root / "current"
        if not link.is_symlink():
            raise GalleryError(f"no gallery installed in {root} (gallery.dir); run `edgeface gallery sync`")
        directory = link.resolve()
        sp = root / "sync-state.json"
        state = json.loads(sp.read_text()) if sp.exists() else {}
    ptr = read_pointer(directory)
    if ptr:
        directory = directory / ptr.bundle
    m = Manifest.from_bytes((directory / MANIFEST).read_bytes(), str(directory / MANIFEST))
    rec = {
        "dir": str(directory),
        "signed": (directory / "manifest.sig").exists(),
        **m.to_dict(),
        "total_bytes": m.total_bytes,
    }
    if state:
        rec["sync"] = state
    if switching:
        rec["switch"] = switching
    if as_json:
        emit_json(rec)
        return
    click.echo(
        f"{directory}\n  gallery version {m.gallery_version}, created {m.created}"
        f"{'' if rec['signed'] else ' (UNSIGNED)'}\n"
        f"  embedder {m.embedder.id} sha256 {m.embedder.sha256[:16]}..., {m.embedder.dim}-d {m.embedder.metric}, "
        f"threshold {m.threshold}\n  {m.count} images of {m.identities} identities, "
        f"index {_plain(m.index)}\n  {m.total_bytes} bytes:"
    )
    for name, f in sorted(m.files.items()):
        click.echo(f"    {name:20s} {f.size:>12d}  {f.sha256[:16]}...")
    if state.get("last_check"):
        import time

        click.echo(
            f"  last sync check {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(state['last_check']))} "
            f"UTC: {state.get('last_result', {}).get('status')}"
        )
    if switching:
        click.echo(_switch_line(switching))


def _switch_line(info: dict[str, Any]) -> str:
    """One line on a pending embedder switch (gallery/switch.py), for people."""
    last = info.get("last_sync") or {}
    return (
        f"  embedder switch pending: answering with {info['running']} and this gallery; told to run "
        f"{info['desired']}, whose gallery is "
        + (
            "verified: the daemon's next start switches both"
            if info.get("ready")
            else "not here yet"
            + (f" (last sync: {last.get('status')}, {last.get('reason') or last.get('message')})" if last else "")
        )
    )


@gallery_group.command("serve")
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8470, show_default=True, help="TCP port (0 picks a free one).")
def serve(directory: Path, host: str, port: int) -> None:
    """Serve a publish folder to units over HTTP (ETag, 304, byte ranges). Put TLS in front of it."""
    from ..gallery.serve import make_gallery_server

    server = make_gallery_server(directory, host, port)
    click.echo(f"serving {directory} on http://{host}:{server.server_port}/", err=True)
    sys.stderr.flush()
    try:
        server.serve_forever()
    finally:
        server.server_close()


@gallery_group.command("sync")
@click.option("--url", help="Base URL of the publish folder (default: gallery.sync_url).")
@json_flag
@pass_app
def sync(app: AppContext, url: str | None, as_json: bool) -> None:
    """Fetch and install a newer gallery once (what the daemon does on its schedule).

    Exit status 0 when the unit is up to date afterwards, 1 when a bundle was refused or the download
    failed (the installed gallery is kept either way).
    """
    from ..gallery.store import GalleryStore
    from ..gallery.switch import choose, pending_store, switch_info
    from ..gallery.sync import sync_once
    from ..gallery.transport import auth_headers
    from ..mqtt.link import device_id_from

    g = app.config.gallery
    base = url or g.sync_url
    if not base:
        raise click.UsageError("no sync URL: pass --url or set gallery.sync_url")
    # As the daemon syncs: the running model's gallery, and while the unit is told to run another model, that
    # model's gallery beside it (gallery/switch.py). The swap itself is left to the daemon's next start: a
    # daemon running now holds the old model, and must never be handed a gallery built with another one.
    pair = choose(app.config)
    store = GalleryStore.from_config(g, pair.config(app.config).models)
    headers = (
        auth_headers(g.sync_username or device_id_from(app.config.device.id), g.sync_password_file)
        if g.sync_password_file
        else {}
    )
    opts: dict[str, Any] = {
        "timeout": g.sync_timeout_s,
        "ca_file": g.sync_ca_file,
        "max_bytes": g.sync_max_bytes,
        "headers": headers,
        "allow_insecure_http": g.allow_insecure_http,
    }
    r = sync_once(store, base, embedder_id=pair.active.id, **opts)
    rec, failed = r.to_dict(), r.status in ("refused", "failed")
    text = (
        f"{r.status}: installed version {r.installed}"
        + (f" (was {r.previous}, via {r.via}, {r.downloaded_bytes} bytes)" if r.status == "updated" else "")
        + (f" — {r.message}" if r.message and r.status in ("refused", "failed") else "")
    )
    if pair.switching:
        p = sync_once(pending_store(app.config, pair), base, embedder_id=pair.desired.id, **opts)
        rec["switch"] = {**switch_info(app.config), "result": p.to_dict()}
        failed = failed or p.status in ("refused", "failed")
        text += (
            f"\n{pair.desired.id} (switch pending): {p.status}, version {p.installed}"
            + (f" — {p.message}" if p.message and p.status in ("refused", "failed") else "")
            + "\n"
            + _switch_line(rec["switch"])
        )
    _out(rec, as_json, text)
    if failed:
        raise click.exceptions.Exit(EXIT_FAILED)


@gallery_group.command("wipe")
@click.option("--yes", is_flag=True, help="Really destroy the device key and the installed gallery.")
@json_flag
@pass_app
def wipe(app: AppContext, yes: bool, as_json: bool) -> None:
    """Crypto-erase the unit's gallery: destroy the device key first, then delete the data.

    Every configured key source is destroyed: the key file (whatever its permissions), the decrypted copy
    of a systemd credential. Exit status 1, with what to do, when any key or data could not be destroyed
    (a key in the environment, a credential's sealed source, a file that cannot be deleted).
    """
    from ..gallery.crypto import destroy_device_keys
    from ..gallery.store import GalleryStore

    if not yes:
        raise click.UsageError("this destroys the device key and the gallery; pass --yes to confirm")
    g = app.config.gallery
    keys = destroy_device_keys(g.key_file, g.key_env, g.key_credential)
    data = GalleryStore(g.dir, trusted=[]).wipe() if g.dir.exists() else {"data_left": []}
    left = cast("list[str]", data["data_left"])
    complete = keys.complete and not left
    rec = {
        "complete": complete,
        "dir": str(g.dir),
        "key_destroyed": bool(keys.destroyed) and keys.complete,
        "keys_destroyed": keys.destroyed,
        "keys_remaining": keys.remaining,
        "data_left": left,
    }
    lines = [f"wiped {g.dir}" if not left else f"could NOT delete everything in {g.dir}:"]
    lines += [f"  still there: {x}" for x in left]
    lines += [f"  key destroyed: {x}" for x in keys.destroyed]
    if not g.encrypt:
        lines.append(
            "  gallery.encrypt is off: the data was deleted, not crypto-erased (flash storage may keep old "
            "blocks readable)"
        )
    elif not keys.destroyed and keys.complete:
        lines.append(
            "  no device key found at the configured sources (gallery.key_file, $" + g.key_env + ", "
            f"credential '{g.key_credential}'): nothing to destroy; if the key is kept elsewhere, destroy "
            "it there"
        )
    lines += [f"  KEY NOT DESTROYED: {x}" for x in keys.remaining]
    if not complete:
        lines.append(
            "WIPE INCOMPLETE: "
            + (
                "the device key still exists, so the gallery data (and any copy of it) can still be decrypted; "
                if keys.remaining
                else ""
            )
            + "do the above, then run "
            "`edgeface gallery wipe --yes` again"
        )
    _out(rec, as_json, "\n".join(lines))
    if not complete:
        if as_json:
            click.echo("edgeface: WIPE INCOMPLETE: " + "; ".join(keys.remaining + left), err=True)
        raise click.exceptions.Exit(EXIT_FAILED)
