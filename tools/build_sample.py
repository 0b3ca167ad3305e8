#!/usr/bin/env python3
"""Build the embedded default's sample data in edgeface/_sample/ (what `edgeface run` uses unconfigured).

    python tools/build_sample.py [--astronaut PATH]

* photos/: four public-domain photos, shrunk to at most 800 px (one blurred on purpose so the demo
  shows a refusal), from tests/images/ and NASA's portrait of Eileen Collins (skimage/data/astronaut.png
  in the scikit-image wheel; found in an installed scikit-image, or pass --astronaut);
* gallery/: a signed gallery bundle of two people (Barack Obama from tests/images/obama.jpg, Joe Biden
  from tests/images/biden.jpg), built with the default embedder through the real enrollment and
  publishing code;
* demo-signing-DEMO-ONLY.pub: the public key that signed it. A fresh key pair is made on every run and
  the private key is thrown away: the demo key signs this sample and nothing else, and a unit that
  trusts it is refused by `edgeface run`;
* PROVENANCE.md: where every shipped photo comes from, with SHA-256.

Rebuild when the default embedder model changes (tests/daemon/test_demo.py fails with a message saying so).
The script checks the result: the demo must give match, match, no_match, refused.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgeface.config import load_config  # noqa: E402  (the repository's edgeface, put on the path above)
from edgeface.gallery import signing  # noqa: E402
from edgeface.gallery.enroll import EnrollItem, Workspace, enroll, settings_key  # noqa: E402
from edgeface.gallery.publish import publish_for  # noqa: E402
from edgeface.vision.engine import Engine  # noqa: E402

SAMPLE = REPO / "edgeface" / "_sample"
IMAGES = REPO / "tests" / "images"
MAX_SIDE = 800
CONSENT = "public-domain official portrait, used as sample data"

PHOTOS = [  # (output name, source, what the demo should decide)
    ("01-obama-address-to-congress.jpg", IMAGES / "obama2.jpg", "match"),
    ("02-obama-white-house.jpg", IMAGES / "obama3.jpg", "match"),
    ("03-eileen-collins-nasa.jpg", None, "no_match"),  # the astronaut: not enrolled
    ("04-blurred-obama.jpg", IMAGES / "obama2.jpg", "refused"),
]
ENROLLED = [("barack-obama", "Barack Obama", IMAGES / "obama.jpg"), ("joe-biden", "Joe Biden", IMAGES / "biden.jpg")]

PROVENANCE = """# Sample data: provenance and licence

Shipped in the package so that `edgeface run` with no configuration shows the whole loop. Built by
`tools/build_sample.py`; rebuild it rather than editing these files.

## Photos (`photos/`)

Public-domain works, shrunk to at most {max_side} px (and one blurred) by the build script:

| file | subject and source | licence | SHA-256 |
| --- | --- | --- | --- |
{rows}

* `obama2.jpg`, `obama3.jpg` (and `obama.jpg`, `biden.jpg` below): official White House photographs,
  works of the US federal government, public domain in the United States (17 U.S.C. § 105); copied from
  the `face_recognition` 1.3.0 source distribution, see `tests/images/PROVENANCE.md`.
* The astronaut: NASA's official portrait of Eileen Collins (NASA photo GPN-2000-001177), public domain
  as a NASA work; taken from `skimage/data/astronaut.png` in the scikit-image 0.26.0 wheel, whose
  documentation records it as public domain ("Image of the astronaut Eileen Collins, from NASA").
  She is not enrolled in the sample gallery: the demo shows a "no match".

## Gallery (`gallery/`)

A signed gallery bundle (format of docs/gallery.md) of two identities, each enrolled from one photo:
Barack Obama (`tests/images/obama.jpg`), Joe Biden (`tests/images/biden.jpg`). The bundle holds
embeddings and provenance, not the photos. It is tied to the embedder `{embedder}` (SHA-256
`{embedder_sha}`).

## Demo signing key (`demo-signing-DEMO-ONLY.pub`)

**DEMO ONLY.** The public half of a key pair made by the build script, whose private half was
discarded after signing this sample. It is the trust anchor of the demo's gallery store and nothing
else: `edgeface run` refuses a configuration that lists it in `gallery.trusted_keys`.
"""


def find_astronaut() -> Path | None:
    try:
        import skimage  # type: ignore[import-not-found]

        p = Path(skimage.__file__).parent / "data" / "astronaut.png"
        return p if p.exists() else None
    except ImportError:
        for p in (Path("/tmp/skd/skimage/data/astronaut.png"),):
            if p.exists():
                return p
    return None


def shrink(path: Path) -> np.ndarray:
    img = Image.open(path).convert("RGB")
    img.thumbnail((MAX_SIDE, MAX_SIDE), Image.LANCZOS)
    return np.asarray(img)


def jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=88, optimize=True)
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--astronaut", type=Path, help="astronaut.png from the scikit-image wheel")
    args = ap.parse_args()
    astronaut = args.astronaut or find_astronaut()
    if astronaut is None or not astronaut.exists():
        print(
            "astronaut.png not found: pass --astronaut PATH (skimage/data/astronaut.png in the scikit-image wheel)",
            file=sys.stderr,
        )
        return 2
    config = load_config(None, env={})
    engine = Engine(config)
    card = engine.embedder_card

    photos = SAMPLE / "photos"
    if photos.exists():
        shutil.rmtree(photos)
    photos.mkdir(parents=True)
    rows = []
    for name, src, _ in PHOTOS:
        src = src or astronaut
        rgb = shrink(src)
        if "blurred" in name:
            rgb = cv2.GaussianBlur(rgb, (0, 0), 6)
        data = jpeg(rgb)
        (photos / name).write_bytes(data)
        what = {
            "01": "Barack Obama, address to Congress (White House photo; `tests/images/obama2.jpg`)",
            "02": "Barack Obama (White House photo; `tests/images/obama3.jpg`)",
            "03": "Eileen Collins, NASA astronaut portrait (`skimage/data/astronaut.png`)",
            "04": "`01-...` blurred (Gaussian, sigma 6 px) to show a quality refusal",
        }[name[:2]]
        rows.append(f"| {name} | {what} | public domain | {sha(data)} |")

    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        ws = Workspace(t / "workspace")
        items = [
            EnrollItem(i, p, CONSENT, "tests/images (public domain)", "tools/build_sample.py", n)
            for i, n, p in ENROLLED
        ]
        report = enroll(engine, ws, items)
        if report.counts().get("enrolled") != len(ENROLLED):
            print(f"enrollment failed: {[r.to_dict() for r in report.results]}", file=sys.stderr)
            return 1
        vectors, entries, identities = ws.content(settings_key(engine, config.enroll.second_face_ratio))
        ws.close()
        signing.generate_keypair(t / "demo.pem", t / "demo.pub")
        pub = publish_for(
            t / "publish",
            card,
            vectors=vectors,
            entries=entries,
            identities=identities,
            signer=signing.load_private_key(t / "demo.pem"),
            target_fpir=config.gallery.target_fpir,
        )
        gallery = SAMPLE / "gallery"
        if gallery.exists():
            shutil.rmtree(gallery)
        shutil.copytree(pub.dir, gallery)
        for f in gallery.iterdir():
            f.chmod(0o644)  # readable by the service user whoever installs the package
        note = (
            "# DEMO ONLY: verifies the sample gallery bundled with edgeface (tools/build_sample.py).\n"
            "# Its private key was discarded. Never list this key in gallery.trusted_keys on a unit.\n"
        )
        (SAMPLE / "demo-signing-DEMO-ONLY.pub").write_text(note + (t / "demo.pub").read_text())
    (SAMPLE / "PROVENANCE.md").write_text(
        PROVENANCE.format(max_side=MAX_SIDE, rows="\n".join(rows), embedder=card.id, embedder_sha=card.sha256)
    )
    return check(config)


def check(config: object) -> int:
    """Run the demo pipeline on the new sample and compare the decisions with what PHOTOS expects."""
    from edgeface.daemon import Daemon, demo

    with tempfile.TemporaryDirectory() as tmp:
        cfg = demo.demo_config(directory=Path(tmp))
        demo.install_sample_gallery(cfg)
        d = Daemon(cfg, install_signals=False)
        if d.run() != 0:
            print("the demo run failed", file=sys.stderr)
            return 1
        got = {r["source"]: r["decision"] for r in d.summary.recent}
    want = {name: decision for name, _, decision in PHOTOS}
    print("demo decisions:", got)
    if got != want:
        print(f"unexpected decisions: want {want}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
