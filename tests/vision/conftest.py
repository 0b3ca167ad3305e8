from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeface.vision.cards import find_card
from edgeface.vision.imageio import load_image
from edgeface.vision.models.blazeface import BlazeFaceDetector
from edgeface.vision.settings import DetectConfig, RuntimeConfig


@pytest.fixture(scope="session")
def detector() -> BlazeFaceDetector:
    return BlazeFaceDetector(find_card("blazeface-short-range"), RuntimeConfig(num_threads=2), DetectConfig())


@pytest.fixture(scope="session")
def obama(images_dir: Path) -> np.ndarray:
    return load_image(images_dir / "obama.jpg")
