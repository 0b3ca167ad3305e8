"""The recognition chain's configuration sections: image limits, the TFLite runtime, which models, and the
detect, quality, align and embed stages. Assembled into :class:`edgeface.config.Config` by the config package."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from ..config.fields import setting


@dataclass(frozen=True)
class ImageConfig:
    """Limits on image input; anything larger is refused before it is decoded."""

    max_pixels: int = setting(
        50_000_000,
        "Refuse images with more pixels than this, read from the header before decoding "
        "(decompression-bomb guard). 50 MP covers every phone and camera sensor in use.",
        min=1,
    )
    max_bytes: int = setting(64 * 1024 * 1024, "Refuse image files larger than this many bytes.", min=1)


BackendName = Literal["cpu", "edgetpu", "gpu", "external"]
ModelRole = Literal["detector", "landmarks", "embedder"]


@dataclass(frozen=True)
class RuntimeConfig:
    """The TFLite runtime: threads, XNNPACK and the accelerator backend, for all models or per model.

    A model whose backend cannot be loaded runs on the CPU (with a ``model.backend_fallback`` warning
    naming the model, the backend and why), unless ``fallback = false``."""

    backend: BackendName = setting(
        "cpu",
        "Inference backend for every model not given its own below: 'cpu' (XNNPACK), 'edgetpu' (Coral, "
        "libedgetpu.so.1), 'gpu' (TFLite GPU delegate), 'external' (any delegate library given in delegate_path).",
    )
    detector_backend: BackendName | None = setting(
        None, "Backend of the face detector (values as backend).", unset="runtime.backend"
    )
    landmarks_backend: BackendName | None = setting(
        None, "Backend of the landmark (face-mesh) model (values as backend).", unset="runtime.backend"
    )
    embedder_backend: BackendName | None = setting(
        None,
        "Backend of the face embedder (values as backend). An embedder card compiled for one backend "
        "(a [variant] with backend = 'edgetpu') needs that one.",
        unset="the embedder card's variant.backend, else runtime.backend",
    )
    fallback: bool = setting(
        True,
        "When a model's backend cannot be loaded (no device, no delegate library), run that model on the CPU "
        "and log why; false: refuse to start instead.",
    )
    num_threads: int = setting(2, "CPU threads per interpreter.", min=1, max=64)
    xnnpack: bool = setting(True, "Use the XNNPACK CPU kernels (faster on ARM and x86; turn off to debug).")
    delegate_path: str = setting(
        "",
        "Delegate shared library. Required for 'external'; overrides the default library name for "
        "'edgetpu' (libedgetpu.so.1) and 'gpu' (libtensorflowlite_gpu_delegate.so).",
    )
    delegate_options: dict[str, str] = setting({}, "Options passed to the delegate, as a TOML table.")

    def backend_for(self, role: ModelRole) -> BackendName | None:
        """The backend configured for one model role, or None when it follows ``backend``."""
        chosen: BackendName | None = getattr(self, f"{role}_backend")
        return chosen

    def with_backend(self, backend: BackendName) -> RuntimeConfig:
        """This runtime configuration with every model on ``backend`` (what one model is loaded with)."""
        return replace(self, backend=backend, detector_backend=None, landmarks_backend=None, embedder_backend=None)


@dataclass(frozen=True)
class ModelsConfig:
    """Which models to use; each is found by its card (``<id>.toml``) in ``dir``."""

    dir: Path | None = setting(None, "Folder of model cards and files.", unset="the bundled models")
    detector: str = setting("blazeface-short-range", "Model id of the face detector.")
    embedder: str = setting("mobilefacenet-v1-int8", "Model id of the face embedder.")
    verify_sha256: bool = setting(True, "Check each model file against the SHA-256 in its card at load.")


@dataclass(frozen=True)
class DetectConfig:
    """Face detection. Thresholds left unset are the detector card's calibrated values."""

    min_score: float | None = setting(
        None, "Detection score threshold (0-1).", min=0.0, max=1.0, unset="the detector card's calibrated value"
    )
    nms_iou: float | None = setting(
        None,
        "Overlap above which detections are merged (0-1).",
        min=0.0,
        max=1.0,
        unset="the detector card's calibrated value",
    )
    confident_score: float | None = setting(
        None,
        "In 'fallback' rotation mode, an upright face scoring this high ends the search; below it the "
        "other rotations are tried too and the best orientation of each face kept.",
        min=0.0,
        max=1.0,
        unset="the detector card's calibrated value",
    )
    max_faces: int = setting(32, "Keep at most this many faces per image (highest scores first).", min=1)
    rotations: tuple[int, ...] = setting(
        [0, 90, 270, 180],
        "In-plane rotations (degrees clockwise, multiples of 90) tried in this order, for photos of "
        "people lying down or taken with the camera sideways.",
    )
    rotation_mode: Literal["fallback", "all"] = setting(
        "fallback",
        "'fallback': try the next rotation only while no face is found (fast); 'all': run every "
        "rotation and merge (finds people in several orientations in one photo, 4x the cost).",
    )


@dataclass(frozen=True)
class QualityConfig:
    """The quality gate: a face failing any limit is refused, with the reason recorded."""

    min_score: float = setting(0.6, "Lowest detection score accepted.", min=0.0, max=1.0)
    min_face_px: float = setting(
        40.0, "Smallest face accepted, as the distance between the eye centres times 2.5 (px).", min=0.0
    )
    min_sharpness: float = setting(
        15.0, "Lowest variance of the Laplacian on the face, rescaled to 112 px wide (blur check).", min=0.0
    )
    max_yaw: float = setting(60.0, "Largest head turn left/right, estimated from keypoints (deg).", min=0, max=90)
    max_pitch: float = setting(45.0, "Largest head tilt up/down, estimated from keypoints (deg).", min=0, max=90)


@dataclass(frozen=True)
class AlignConfig:
    """Alignment of faces onto the embedder's chip template."""

    refine: bool = setting(
        True,
        "Refine the detector's keypoints with the face-mesh landmark model when the embedder's card has a "
        "landmark template (closer to the alignment the embedder was trained with; one more small model).",
    )


@dataclass(frozen=True)
class EmbedConfig:
    """Face embedding."""

    flip_fusion: bool | None = setting(
        None,
        "Add the embedding of the mirrored chip to each face's (about +0.2 points of LFW accuracy for twice "
        "the embedding time). Gallery and probes must agree.",
        unset="the embedder card's choice",
    )
    batch_size: int = setting(8, "Chips per interpreter call when several faces are embedded at once.", min=1, max=64)
