#!/usr/bin/env python3
"""Write the card of a variant model file (an Edge TPU compiled embedder), its fidelity measured on the spot.

Runs the reference embedder on the CPU and the variant on its backend over the same aligned chips, and
writes ``<id>.toml`` beside the variant file: the reference's card with the variant's id, file and SHA-256
and a ``[variant]`` table (reference id and hash, backend, fixed batch, min and mean cosine). Copy both
files into the unit's ``models.dir`` and set ``models.embedder`` to the id (edgeface/vision/variants.py).

Run it on a unit with the accelerator attached (the figure must come from the hardware):

    python models/make_variant_card.py --reference mobilefacenet-v1-int8 \\
        --file /opt/edgeface/models/mobilefacenet_v1_int8_b1_edgetpu.tflite --id mobilefacenet-v1-int8-edgetpu \\
        --backend edgetpu --batch 1 --chips tests/vision/fixtures/mobilefacenet \\
        --made-with "edgetpu_compiler 16.0 -s -o . mobilefacenet_v1_int8_b1.tflite" --hardware "Coral USB, Pi 5"

``--chips`` is a folder of aligned RGB chips of the embedder's input size (the fixtures above are 18
public-domain ones; more, from your own enrolment photos, give a firmer figure).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from edgeface.vision.cards import find_card  # noqa: E402
from edgeface.vision.settings import RuntimeConfig  # noqa: E402
from edgeface.vision.variants import make_variant_card  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reference", required=True, help="the reference card's id (in --models-dir)")
    ap.add_argument("--models-dir", type=Path, help="folder of the reference card (default: the bundled models)")
    ap.add_argument("--file", type=Path, required=True, help="the variant model file")
    ap.add_argument("--id", required=True, help="the variant card's id")
    ap.add_argument("--backend", default="edgetpu", choices=("cpu", "edgetpu", "gpu", "external"))
    ap.add_argument("--batch", type=int, default=1, help="the file's fixed input batch (0: any)")
    ap.add_argument("--chips", type=Path, required=True, help="folder of aligned chips (PNG/JPEG)")
    ap.add_argument("--delegate-path", default="", help="the delegate library, if not the backend's default")
    ap.add_argument("--made-with", default="", help="how the file was made (the compile command)")
    ap.add_argument("--hardware", default="", help="where the fidelity is measured (device, host)")
    args = ap.parse_args()

    from PIL import Image

    paths = sorted(p for p in args.chips.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not paths:
        ap.error(f"no chips in {args.chips}")
    chips = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])
    reference = find_card(args.reference, args.models_dir, task="embedder")
    card = make_variant_card(
        reference,
        args.file,
        model_id=args.id,
        backend=args.backend,
        batch=args.batch,
        chips=chips,
        runtime=RuntimeConfig(delegate_path=args.delegate_path),
        made_with=args.made_with,
        hardware=args.hardware,
    )
    assert card.variant is not None and card.variant.fidelity is not None
    f = card.variant.fidelity
    print(f"{card.path}: {card.id}, sha256 {card.sha256[:12]}, space {card.embedder.space if card.embedder else '?'}")
    print(f"fidelity to {reference.id}: min cosine {f.min_cosine:.6f}, mean {f.mean_cosine:.6f} ({f.measured})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
