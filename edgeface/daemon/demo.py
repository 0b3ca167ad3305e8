"""The embedded default: ``edgeface run`` with no configuration runs the whole loop on bundled samples.

The sample folder (``edgeface/_sample/photos``: public-domain portraits, see its PROVENANCE.md) is
processed once against the sample gallery (``edgeface/_sample/gallery``: two people, built and signed
by ``tools/build_sample.py``), and the results are queued offline in an outbox under the user's state
folder, sealed at rest like a unit's (gallery and outbox payloads under a device key made for the demo in
``keys/``). The gallery goes through the real trust path: it is verified against the bundled **demo**
public key and installed into a demo gallery store. The demo key signs nothing but the sample; a unit
configured to trust it is refused (:func:`refuse_demo_key`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from ..config import Config, load_config
from ..errors import ConfigError
from ..logs import get_logger

log = get_logger(__name__)

SAMPLE = Path(__file__).resolve().parent.parent / "_sample"
PHOTOS = SAMPLE / "photos"
GALLERY = SAMPLE / "gallery"
DEMO_KEY = SAMPLE / "demo-signing-DEMO-ONLY.pub"
DEVICE_ID = "demo-unit"


def demo_dir(env: dict[str, str] | None = None) -> Path:
    """Where the demo keeps its outbox and state: $EDGEFACE_DEMO_DIR, else $XDG_STATE_HOME/edgeface/demo."""
    env = dict(os.environ if env is None else env)
    if env.get("EDGEFACE_DEMO_DIR"):
        return Path(env["EDGEFACE_DEMO_DIR"])
    base = Path(env["XDG_STATE_HOME"]) if env.get("XDG_STATE_HOME") else Path.home() / ".local" / "state"
    return base / "edgeface" / "demo"


def wants_demo(config_path: str | None, overrides: Sequence[str], env: dict[str, str] | None = None) -> bool:
    """True when nothing configures this run: no file, no EDGEFACE_<SECTION>__<KEY>, no --set (logging aside)."""
    env = dict(os.environ if env is None else env)
    if config_path or env.get("EDGEFACE_CONFIG"):
        return False
    if any(k.startswith("EDGEFACE_") and "__" in k and not k.startswith("EDGEFACE_LOGGING__") for k in env):
        return False
    return all(o.strip().startswith("logging.") for o in overrides)


def demo_config(overrides: Sequence[str] = (), *, directory: Path | None = None, fresh: bool = True) -> Config:
    """The demo's configuration, with the user's ``--set`` overrides on top.

    ``fresh``: clear the last demo's state first (each demo run starts clean); ``edgeface status`` reads
    the last run's state instead.
    """
    d = directory or demo_dir()
    if fresh:
        d.mkdir(parents=True, exist_ok=True)
        for name in ("state", "gallery", "media", "keys", "outbox.sqlite3", "outbox.sqlite3-wal", "outbox.sqlite3-shm"):
            p = d / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    settings = [
        "capture.source=folder",
        f"capture.folder.path={PHOTOS}",
        "capture.folder.once=true",
        "capture.folder.settle_s=0",
        "capture.folder.poll_s=0.05",
        "capture.folder.recursive=false",
        f"gallery.dir={d / 'gallery'}",
        "gallery.encrypt=true",
        f"gallery.key_file={demo_key_file(d)}",
        f'gallery.trusted_keys=["{DEMO_KEY}"]',
        "gallery.sync_url=",
        f"outbox.path={d / 'outbox.sqlite3'}",
        f"run.state_dir={d / 'state'}",
        f"retention.dir={d / 'media'}",
        f"device.id={DEVICE_ID}",
        "mqtt.host=",
        "status.metrics_port=0",
        "status.interval_s=1",
        "dedup.window_s=0",
    ]
    config = load_config(None, overrides=[*settings, *overrides])
    key = config.gallery.key_file
    if fresh and key is not None and not key.exists() and config.gallery.encrypt:
        from ..gallery.crypto import generate_key_file

        key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        generate_key_file(key)
    return config


def demo_key_file(directory: Path) -> Path:
    """The demo's device key: beside its data, as on a unit with no TPM (see docs/protection.md)."""
    return directory / "keys" / "device.key"


def install_sample_gallery(config: Config) -> int:
    """Verify the bundled sample gallery against the demo key and install it; returns its version."""
    from ..errors import BundleRejected
    from ..gallery.bundle import MANIFEST, SIGNATURE
    from ..gallery.manifest import Manifest
    from ..gallery.store import GalleryStore

    store = GalleryStore.from_config(config.gallery, config.models)
    version = Manifest.from_bytes((GALLERY / MANIFEST).read_bytes()).gallery_version
    if store.installed_version() >= version:
        return store.installed_version()
    staged = store.staging(version)
    sink = store.sink(staged)  # sealed with the device key, as a sync writes it; the manifest stays clear
    for f in GALLERY.iterdir():
        if f.is_file() and f.name in (MANIFEST, SIGNATURE):
            shutil.copyfile(f, staged / f.name)
        elif f.is_file():
            sink.write(f.name, [f.read_bytes()])
    try:
        store.install(staged)
    except BundleRejected as e:
        hint = (
            " Rebuild it for the current embedder with `python tools/build_sample.py`."
            if e.reason == "embedder_mismatch"
            else ""
        )
        raise BundleRejected(e.reason, f"the bundled sample gallery was refused: {e}.{hint}") from e
    return version


def refuse_demo_key(config: Config) -> None:
    """A real unit must not trust the demo key (its private half is not secret-kept: it signs samples)."""
    if not DEMO_KEY.exists():
        return
    demo = DEMO_KEY.read_bytes().strip()
    for path in config.gallery.trusted_keys:
        try:
            same = Path(path).read_bytes().strip() == demo
        except OSError:
            continue  # a missing key file is reported where keys are loaded
        if same:
            raise ConfigError(
                f"gallery.trusted_keys includes {path}, the DEMO signing key of the bundled sample "
                "gallery; a unit must trust only its central server's key"
            )
