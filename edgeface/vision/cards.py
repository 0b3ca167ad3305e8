"""Model cards: the contract between a model file and the code that runs it.

Each model in the models folder has a card ``<id>.toml`` beside its ``.tflite`` file. The code reads
everything model-specific (input size, colour order, normalisation, output tensors, anchors, alignment
template, thresholds) from the card, so a user can drop in another model by adding a card.
The format is documented in ``models/README.md``.

A card is typed by its task: a :class:`ModelCard` carries the common fields and exactly one task spec,
:class:`DetectorSpec` (``card.detector``), :class:`EmbedderSpec` (``card.embedder``, with its
:class:`AlignmentSpec`) or :class:`LandmarksSpec` (``card.landmarks``).

An embedder card names the *embedding space* its vectors live in (``embedding_space``, default: its id):
galleries are tied to the space, not to one file. A card with a ``[variant]`` table describes another
runtime's form of a reference model (an Edge TPU compiled file, say): its own file and hash, the
reference's id and hash, the backend it needs, and how closely it reproduces the reference
(:class:`VariantSpec`). It shares the reference's space, so galleries built with the reference serve it.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import ModelError, UnknownModel

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CARD_VERSION = 1


def bundled_models_dir() -> Path:
    """The models that ship with edgeface: inside the installed package, or the repo's ``models/``."""
    package = Path(__file__).resolve().parent.parent  # edgeface/
    inside = package / "_models"
    if inside.is_dir():
        return inside
    return package.parent / "models"


@dataclass(frozen=True)
class InputSpec:
    width: int
    height: int
    colour: Literal["RGB", "BGR"]
    scale: float  # model input = pixel (0..255) * scale + offset
    offset: float
    resize: Literal["letterbox", "stretch", "none"]


@dataclass(frozen=True)
class DetectorSpec:
    family: Literal["blazeface"]
    regressors: str  # output tensor names
    scores: str
    keypoints: tuple[str, ...]
    strides: tuple[int, ...]
    anchor_offset: tuple[float, float]
    interpolated_scale_aspect_ratio: float
    box_scale: float
    raw_score_clip: float
    min_score: float
    nms_iou: float
    confident_score: float  # a face this sure, upright, ends the search over rotations


@dataclass(frozen=True)
class AlignmentSpec:
    width: int
    height: int
    template: dict[str, tuple[float, float]]  # detector keypoint name -> chip pixel coordinates
    # dense landmark index -> chip pixel coordinates, for faces refined by ``landmark_model``
    landmark_template: dict[int, tuple[float, float]] = field(default_factory=dict)
    landmark_model: str = ""


@dataclass(frozen=True)
class FidelitySpec:
    """How closely a variant reproduces its reference: cosine of their outputs on the same inputs."""

    min_cosine: float
    mean_cosine: float
    measured: str  # on what, with which runtime and hardware (a stand-in delegate is not hardware)


@dataclass(frozen=True)
class VariantSpec:
    """This model file is another runtime's form of the reference card's model (same computation, own hash)."""

    of: str  # the reference card's id
    of_sha256: str  # the reference model file's SHA-256
    backend: Literal["cpu", "edgetpu", "gpu", "external"] | None  # the backend the file needs; None: any
    fidelity: FidelitySpec | None  # required for embedders
    batch: int = 0  # 0: any batch size; N: the file's input batch is fixed at N (compiled files)


@dataclass(frozen=True)
class EmbedderSpec:
    output: str
    dim: int
    metric: Literal["cosine"]
    alignment: AlignmentSpec
    thresholds: dict[str, float]  # e.g. {"cosine": 0.5} similarity at which two faces are "same"
    flip_fusion: bool = False  # embed = normalise(f(chip) + f(mirrored chip)); thresholds assume it
    # FAR of one impostor comparison at each similarity (ascending similarity, descending FAR)
    impostor_tail: tuple[np.ndarray, np.ndarray] | None = None
    space: str = ""  # the embedding space; load_card fills it (the card's id when the card names none)


@dataclass(frozen=True)
class LandmarksSpec:
    points: str  # output tensor names
    presence: str
    count: int
    roi_scale: float = 1.5  # crop side = roi_scale x the detection box's longer side
    min_presence: float = 0.5  # below this face-presence probability the refinement is not used


@dataclass(frozen=True)
class ModelCard:
    id: str
    task: Literal["detector", "embedder", "landmarks"]
    name: str
    file: str
    sha256: str
    licence: str
    input: InputSpec
    path: Path  # the card file
    detector: DetectorSpec | None = None  # exactly one of these three, by task
    embedder: EmbedderSpec | None = None
    landmarks: LandmarksSpec | None = None
    variant: VariantSpec | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def model_path(self) -> Path:
        return self.path.parent / self.file

    @property
    def space_sha256(self) -> frozenset[str]:
        """The model files this card knows to be in its embedding space: its own and its reference's."""
        return frozenset({self.sha256} | ({self.variant.of_sha256} if self.variant else set()))

    def read_model(self, verify: bool = True) -> bytes:
        """The model file's bytes, checked against the card's SHA-256."""
        try:
            content = self.model_path.read_bytes()
        except OSError as e:
            raise ModelError(
                f"model {self.id}: cannot read {self.model_path} ({e}). Rebuild it as its card's "
                "[provenance] section says, or point models.dir at a folder that has it."
            ) from e
        if verify:
            digest = hashlib.sha256(content).hexdigest()
            if digest != self.sha256:
                raise ModelError(
                    f"model {self.id}: {self.model_path} has SHA-256 {digest}, but its card says "
                    f"{self.sha256}. The file is corrupt or was replaced; restore it, or update the card "
                    "if you changed the model on purpose."
                )
        return content


class _Reader:
    """Typed access to a card's TOML with errors naming the card and key."""

    def __init__(self, data: dict[str, Any], path: Path) -> None:
        self.data = data
        self.path = path

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        node: Any = self.data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                if default is not ...:
                    return default
                raise ModelError(f"model card {self.path}: missing {key}")
            node = node[part]
        if kind is float and isinstance(node, int) and not isinstance(node, bool):
            node = float(node)
        if not isinstance(node, kind) or (kind in (int, float) and isinstance(node, bool)):
            raise ModelError(f"model card {self.path}: {key} = {node!r} has the wrong type")
        return node

    def choice(self, key: str, allowed: tuple[str, ...], default: Any = ...) -> Any:
        value = self.get(key, str, default)
        if value is None and default is None:
            return None
        if value not in allowed:
            raise ModelError(f"model card {self.path}: {key} = {value!r}; allowed: {', '.join(allowed)}")
        return value

    def point(self, key: str) -> tuple[float, float]:
        v = self.get(key, list)
        if len(v) != 2 or not all(isinstance(x, (int, float)) for x in v):
            raise ModelError(f"model card {self.path}: {key} must be [x, y]")
        return (float(v[0]), float(v[1]))


def _impostor_tail(r: _Reader) -> tuple[np.ndarray, np.ndarray] | None:
    tail = r.get("thresholds.impostor_tail", dict, None)
    if tail is None:
        return None
    sims = np.asarray(r.get("thresholds.impostor_tail.similarity", list), dtype=np.float64)
    far = np.asarray(r.get("thresholds.impostor_tail.far", list), dtype=np.float64)
    if len(sims) != len(far) or len(sims) < 2 or np.any(np.diff(sims) <= 0) or np.any(np.diff(far) > 0):
        raise ModelError(
            f"model card {r.path}: thresholds.impostor_tail needs equally long lists, similarity ascending "
            "and far not increasing"
        )
    return sims, far


def _landmarks(data: dict[str, Any], path: Path) -> LandmarksSpec:
    spec = data.get("landmarks", {})
    try:
        return LandmarksSpec(
            points=str(spec["points"]),
            presence=str(spec["presence"]),
            count=int(spec["count"]),
            roi_scale=float(spec.get("roi_scale", 1.5)),
            min_presence=float(spec.get("min_presence", 0.5)),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ModelError(f"model card {path}: [landmarks] needs points, presence, count ({e})") from e


def _sha(r: _Reader, key: str) -> str:
    sha = str(r.get(key, str)).lower()
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ModelError(f"model card {r.path}: {key} must be 64 hex digits")
    return sha


def _variant(r: _Reader, task: str) -> VariantSpec | None:
    if r.get("variant", dict, None) is None:
        return None
    fidelity = None
    if r.get("variant.fidelity", dict, None) is not None:
        fidelity = FidelitySpec(
            min_cosine=r.get("variant.fidelity.min_cosine", float),
            mean_cosine=r.get("variant.fidelity.mean_cosine", float),
            measured=r.get("variant.fidelity.measured", str),
        )
        if not -1.0 <= fidelity.min_cosine <= fidelity.mean_cosine <= 1.0:
            raise ModelError(f"model card {r.path}: variant.fidelity needs -1 <= min_cosine <= mean_cosine <= 1")
    elif task == "embedder":
        raise ModelError(
            f"model card {r.path}: an embedder variant needs [variant.fidelity] (min_cosine, mean_cosine, measured): "
            "how closely it reproduces the reference's embeddings decides whether its galleries can be shared"
        )
    batch = r.get("variant.batch", int, 0)
    if batch < 0:
        raise ModelError(f"model card {r.path}: variant.batch must be 0 (any) or the fixed batch size")
    return VariantSpec(
        of=r.get("variant.of", str),
        of_sha256=_sha(r, "variant.of_sha256"),
        backend=r.choice("variant.backend", ("cpu", "edgetpu", "gpu", "external"), None),
        fidelity=fidelity,
        batch=batch,
    )


def load_card(path: str | Path) -> ModelCard:
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise ModelError(f"cannot read model card {p}: {e}") from e
    except tomllib.TOMLDecodeError as e:
        raise ModelError(f"model card {p} is not valid TOML: {e}") from e
    r = _Reader(data, p)
    version = r.get("card_version", int)
    if version != CARD_VERSION:
        raise ModelError(
            f"model card {p}: card_version {version} is not supported (this edgeface reads {CARD_VERSION})"
        )
    task = r.choice("task", ("detector", "embedder", "landmarks"))
    inp = InputSpec(
        width=r.get("input.width", int),
        height=r.get("input.height", int),
        colour=r.choice("input.colour", ("RGB", "BGR")),
        scale=r.get("input.scale", float),
        offset=r.get("input.offset", float),
        resize=r.choice("input.resize", ("letterbox", "stretch", "none")),
    )
    sha = _sha(r, "sha256")
    detector = embedder = landmarks = None
    if task == "landmarks":
        landmarks = _landmarks(data, p)
    elif task == "detector":
        detector = DetectorSpec(
            family=r.choice("detector.family", ("blazeface",)),
            regressors=r.get("detector.regressors", str),
            scores=r.get("detector.scores", str),
            keypoints=tuple(r.get("detector.keypoints", list)),
            strides=tuple(r.get("detector.strides", list)),
            anchor_offset=r.point("detector.anchor_offset"),
            interpolated_scale_aspect_ratio=r.get("detector.interpolated_scale_aspect_ratio", float),
            box_scale=r.get("detector.box_scale", float),
            raw_score_clip=r.get("detector.raw_score_clip", float),
            min_score=r.get("detector.min_score", float),
            nms_iou=r.get("detector.nms_iou", float),
            confident_score=r.get("detector.confident_score", float),
        )
    elif task == "embedder":
        template = {name: r.point(f"alignment.template.{name}") for name in r.get("alignment.template", dict)}
        if len(template) < 2:
            raise ModelError(f"model card {p}: alignment.template needs at least two keypoints")
        embedder = EmbedderSpec(
            output=r.get("embedding.output", str),
            dim=r.get("embedding.dim", int),
            metric=r.choice("embedding.metric", ("cosine",)),
            alignment=AlignmentSpec(
                width=inp.width,
                height=inp.height,
                template=template,
                landmark_template={
                    int(k): r.point(f"alignment.landmark_template.{k}")
                    for k in r.get("alignment.landmark_template", dict, {})
                },
                landmark_model=r.get("alignment.landmark_model", str, ""),
            ),
            thresholds={k: float(v) for k, v in r.get("thresholds", dict, {}).items() if isinstance(v, (int, float))},
            impostor_tail=_impostor_tail(r),
            flip_fusion=r.get("embedding.flip_fusion", bool, False),
            space=r.get("embedding_space", str, "") or r.get("id", str),
        )
    return ModelCard(
        id=r.get("id", str),
        task=task,
        name=r.get("name", str),
        file=r.get("file", str),
        sha256=sha,
        licence=r.get("licence.spdx", str),
        input=inp,
        path=p,
        detector=detector,
        embedder=embedder,
        landmarks=landmarks,
        variant=_variant(r, task),
        raw=data,
    )


def check_variant(variant: ModelCard, reference: ModelCard) -> None:
    """Refuse a variant card that does not match the reference card it names (hash, task, space, size)."""
    v = variant.variant
    if v is None or v.of != reference.id:
        raise ModelError(f"model {variant.id} is not a variant of {reference.id}")
    problems = []
    if v.of_sha256 != reference.sha256:
        problems.append(
            f"it names the reference file {v.of_sha256[:12]}, the card {reference.id} has {reference.sha256[:12]}"
        )
    if variant.task != reference.task:
        problems.append(f"it is a {variant.task}, the reference a {reference.task}")
    if variant.embedder and reference.embedder:
        if variant.embedder.space != reference.embedder.space:
            problems.append(
                f"embedding space {variant.embedder.space!r} vs the reference's {reference.embedder.space!r}"
            )
        if variant.embedder.dim != reference.embedder.dim:
            problems.append(f"{variant.embedder.dim}-d vs {reference.embedder.dim}-d")
    if problems:
        raise ModelError(
            f"model {variant.id} does not match its reference {reference.id}: " + "; ".join(problems) + ". "
            "Rebuild the variant from the reference file, or correct its card's [variant] table."
        )


def list_cards(models_dir: Path | None = None) -> list[ModelCard]:
    folder = models_dir or bundled_models_dir()
    return [load_card(p) for p in sorted(folder.glob("*.toml"))]


def find_card(model_id: str, models_dir: Path | None = None, task: str | None = None) -> ModelCard:
    """The card whose ``id`` is ``model_id`` (file ``<id>.toml`` in the models folder)."""
    folder = models_dir or bundled_models_dir()
    path = folder / f"{model_id}.toml"
    if not path.is_file():
        known = sorted(c.stem for c in folder.glob("*.toml"))
        raise UnknownModel(
            f"no model card {path}. Known models in {folder}: {', '.join(known) or 'none'}. "
            "Set models.detector / models.embedder to one of them, or add a card for your model."
        )
    card = load_card(path)
    if card.id != model_id:
        raise ModelError(f"model card {path} declares id {card.id!r}; the file name must be <id>.toml")
    if task and card.task != task:
        raise ModelError(f"model {model_id} is a {card.task}, not a {task}; check models.{task}")
    return card
