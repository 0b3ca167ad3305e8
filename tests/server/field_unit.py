"""A field unit's work for one photo, as the browser test runs it in its own process: identify the
largest face against the installed (synced) gallery and queue the result in the outbox, with a face
crop, exactly as the daemon would. ``edgeface outbox drain`` then sends it.

    python tests/server/field_unit.py --config unit.toml PHOTO
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from edgeface.config import load_config
from edgeface.daemon.results import _candidates as candidates_payload
from edgeface.gallery.store import GalleryStore
from edgeface.gallery.switch import open_pair
from edgeface.mqtt import enqueue_result, payloads
from edgeface.outbox import Outbox
from edgeface.vision.engine import Engine


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("photo")
    args = ap.parse_args()
    # the model and gallery the daemon would run: a pending embedder switch keeps the old pair (switch.py)
    config = load_config(args.config)
    config = open_pair(config).config(config)
    engine = Engine(config)
    gallery = GalleryStore.from_config(config.gallery, config.models).open()
    if gallery is None:
        print("no gallery installed", file=sys.stderr)
        return 1
    image = engine.load_image(args.photo)
    faces = sorted(engine.detect_and_assess(image), key=lambda f: f.face.width * f.face.height, reverse=True)
    best = faces[0]
    x0, y0, x1, y1 = (round(v) for v in best.face.box)
    crop = np.ascontiguousarray(image[max(0, y0) : y1, max(0, x0) : x1])
    decision = gallery.identify(engine.embed(engine.align(image, best.face)))
    matched = decision.match is not None
    doc = payloads.result_payload(
        device_id=config.device.id,
        decision="match" if matched else "no_match",
        candidates=candidates_payload(decision, matched),  # raw cosine, and normalised where the gallery has it
        threshold=decision.threshold,
        quality=best.quality,
        gallery_version=gallery.version,
        model_id=engine.embedder_card.id,
        crop=payloads.crop_payload(crop, max_bytes=config.mqtt.max_crop_bytes),
        face_box=best.face.box,
        source=f"camera import: {args.photo.rsplit('/', 1)[-1]}",
        location={"lat": 38.8977, "lon": -77.0365, "accuracy_m": 25.0},
    )
    doc["frames_fused"] = 1  # one photo: one face decided, as the daemon says it
    if decision.space != "cosine":
        doc["score_space"] = decision.space
    box = Outbox(config.outbox.path)
    try:
        enqueue_result(box, doc, max_payload_bytes=config.mqtt.max_payload_bytes)
    finally:
        box.close()
        gallery.close()
    print(
        json.dumps(
            {
                "id": doc["id"],
                "decision": doc["decision"],
                "candidates": [(c["identity_id"], round(c["score"], 4)) for c in doc["candidates"]],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
