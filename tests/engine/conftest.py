from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeface.config import DetectConfig, RuntimeConfig
from edgeface.detection import BlazeFaceDetector
from edgeface.imageio import load_image
from edgeface.modelcard import find_card


@pytest.fixture(scope="session")
def detector() -> BlazeFaceDetector:
    return BlazeFaceDetector(find_card("blazeface-short-range"), RuntimeConfig(num_threads=2), DetectConfig())


@pytest.fixture(scope="session")
def obama(images_dir: Path) -> np.ndarray:
    return load_image(images_dir / "obama.jpg")
