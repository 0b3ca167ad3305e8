"""The probe face crop travels with each result by default, and the centre's ingest accepts it."""

from __future__ import annotations

import base64
import random

import numpy as np
import pytest

from edgeface.config import load_config
from edgeface.mqtt import payloads
from edgeface.testing.mqttload import sample_result


def test_a_unit_sends_the_crop_by_default() -> None:
    mqtt = load_config(None, env={}).mqtt
    assert mqtt.include_crop is True and mqtt.max_crop_bytes == 16384


@pytest.mark.parametrize("max_crop_bytes", [16384, 65536])  # the default cap, and the most it may be set to
def test_a_worst_case_crop_at_the_cap_fits_the_ingest_limit(max_crop_bytes: int) -> None:
    """Noise compresses worst of all; at either cap the result still passes the ingest's default size limit
    and its checks (the same decode the ingest runs)."""
    limit = load_config(None, env={}).mqtt.max_payload_bytes
    noise = np.random.default_rng(1).integers(0, 256, (320, 320, 3)).astype(np.uint8)
    crop = payloads.crop_payload(noise, max_bytes=max_crop_bytes)
    jpeg = base64.b64decode(crop["data"])
    assert jpeg.startswith(b"\xff\xd8") and 8000 < len(jpeg) <= max_crop_bytes  # 160 px of noise: ~12-16 KB
    doc = sample_result("unit-a", random.Random(3), match_share=1.0, crop=crop)
    data = payloads.encode_result(doc, max_bytes=limit)  # what the unit checks before queueing
    assert len(data) <= limit
    assert payloads.decode(data, "result", max_bytes=limit)["crop"] == crop  # what the ingest checks
