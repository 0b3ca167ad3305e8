"""Enrollment (central side): images with provenance in, quality-checked embeddings in a workspace out.

Sources: a folder per identity (``root/<identity>/*.jpg``) with provenance given once for the run, or a
CSV manifest with a row per image (``identity,image[,name,source,consent,enrolled_by]``; image paths
relative to the CSV). Every enrolled image records its source, consent or legal basis, who enrolled it
and when. An image that fails the quality gate, shows no face or several faces of similar size is
reported with its reasons, never dropped silently. Near-duplicates (cosine similarity at or above
``enroll.duplicate_similarity``) are flagged: within one identity they add nothing; across identities
they usually mean a labelling error.

The workspace is one SQLite file; on a unit with a device key, one sealed file decrypted into memory
(edgeface/protect/sealed_sqlite.py). Results are cached by the image's SHA-256 and the settings that
change an embedding (embedder file, detector, quality and detection limits), so re-running over the same
folder embeds nothing again.
"""

from __future__ import annotations

import csv
import dataclasses
import getpass
import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import EdgefaceError, ImageError, ModelError
from ..logs import get_logger
from ..vision.engine import Engine

if TYPE_CHECKING:
    from ..protect.sealed import Sealer

log = get_logger(__name__)

DB_NAME = "enrollment.sqlite"
SEALED_NAME = DB_NAME + ".sealed"  # the workspace on a unit with a device key (docs/protection.md)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


@dataclass(frozen=True)
class EnrollItem:
    identity: str
    image: Path
    consent: str  # consent or legal basis, e.g. "written consent 2025-03-01" or "court order 123/25"
    source: str  # where the image came from
    enrolled_by: str
    name: str | None = None


@dataclass
class ImageResult:
    item: EnrollItem
    status: str  # "enrolled" (new or updated), "unchanged", "refused", "error"
    sha256: str = ""
    reasons: list[str] = field(default_factory=list)
    quality: dict[str, Any] | None = None
    embedded: bool = False  # False when the cache answered
    duplicates: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "identity": self.item.identity,
            "image": str(self.item.image),
            "sha256": self.sha256,
            "status": self.status,
            "reasons": self.reasons,
            "embedded": self.embedded,
            "duplicates": self.duplicates,
            "quality": self.quality,
        }


@dataclass
class EnrollReport:
    results: list[ImageResult]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {
            "images": len(self.results),
            "embedded": sum(r.embedded for r in self.results),
            "flagged_duplicates": sum(bool(r.duplicates) for r in self.results),
        }
        for r in self.results:
            out[r.status] = out.get(r.status, 0) + 1
        return out


# -- sources --------------------------------------------------------------------------------------------


def read_folder(
    root: Path, *, consent: str, source: str | None = None, enrolled_by: str | None = None
) -> list[EnrollItem]:
    """``root/<identity>/<image>``: the folder name is the identity id (underscores read as spaces in
    the display name)."""
    root = Path(root)
    if not consent.strip():
        raise EdgefaceError("enrollment needs the consent or legal basis for the images (--consent)")
    by = enrolled_by or getpass.getuser()
    items = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        for img in sorted(q for q in d.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES):
            items.append(EnrollItem(d.name, img, consent, source or str(root), by, d.name.replace("_", " ")))
    return items


def read_csv(
    path: Path, *, consent: str | None = None, source: str | None = None, enrolled_by: str | None = None
) -> list[EnrollItem]:
    """One row per image; columns ``identity`` and ``image`` required, the others default to the flags."""
    path = Path(path)
    items = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"identity", "image"} - set(reader.fieldnames or [])
        if missing:
            raise EdgefaceError(
                f"{path}: missing column(s) {', '.join(sorted(missing))}; expected "
                "identity,image[,name,source,consent,enrolled_by]"
            )
        for n, row in enumerate(reader, start=2):
            c = (row.get("consent") or consent or "").strip()
            if not c:
                raise EdgefaceError(
                    f"{path} line {n}: no consent or legal basis (fill the consent column or pass --consent)"
                )
            ident = (row.get("identity") or "").strip()
            if not ident:
                raise EdgefaceError(f"{path} line {n}: empty identity")
            items.append(
                EnrollItem(
                    ident,
                    (path.parent / row["image"].strip()),
                    c,
                    (row.get("source") or source or str(path)).strip(),
                    (row.get("enrolled_by") or enrolled_by or getpass.getuser()).strip(),
                    (row.get("name") or "").strip() or None,
                )
            )
    return items


# -- the workspace --------------------------------------------------------------------------------------


class Workspace:
    """The enrollment database: cached results per image, enrolled entries with provenance, identities."""

    def __init__(self, directory: Path, *, create: bool = True, sealer: Sealer | None = None) -> None:
        """``sealer`` (a unit with a device key, :func:`edgeface.protect.sealed_sqlite.enroll_sealer`): the
        database lives in memory and is sealed to ``enrollment.sqlite.sealed`` on :meth:`close`."""
        self.dir = Path(directory).expanduser()
        self.sealer = sealer
        plain, sealed = self.dir / DB_NAME, self.dir / SEALED_NAME
        if sealer is None and sealed.is_file() and not plain.is_file():
            raise EdgefaceError(
                f"the enrollment workspace at {self.dir.resolve()} is sealed under a unit's device key: open it "
                "on that unit with its key configured (gallery.key_file, $gallery.key_env or the systemd "
                "credential) and protect.encrypt on"
            )
        if not create and not (plain.is_file() or sealed.is_file()):
            raise EdgefaceError(
                f"no enrollment workspace at {self.dir.resolve()}: run `edgeface enroll` first, or "
                "point --workspace (or enroll.workspace) at the one you enrolled into"
            )
        self.dir.mkdir(parents=True, exist_ok=True)
        if sealer is not None:
            from ..protect.sealed_sqlite import open_sealed

            self.db = open_sealed(sealed, sealer, plaintext=plain)
        else:
            self.db = sqlite3.connect(plain)
            self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript("""
            CREATE TABLE IF NOT EXISTS results (sha256 TEXT, settings TEXT, status TEXT, reasons TEXT,
                quality TEXT, vector BLOB, PRIMARY KEY (sha256, settings));
            CREATE TABLE IF NOT EXISTS entries (identity TEXT, image TEXT, settings TEXT, path TEXT,
                source TEXT, consent TEXT, enrolled_by TEXT, enrolled_at TEXT, quality TEXT,
                PRIMARY KEY (identity, image));
            CREATE TABLE IF NOT EXISTS identities (id TEXT PRIMARY KEY, name TEXT);
        """)

    def close(self) -> None:
        """Close the database; a sealed one is first written back whole (nothing is saved before this)."""
        try:
            if self.sealer is not None:
                from ..protect.sealed_sqlite import save_sealed

                save_sealed(self.db, self.dir / SEALED_NAME, self.sealer)
        finally:
            self.db.close()

    def cached(self, sha: str, settings: str) -> tuple[str, list[str], dict[str, Any] | None, np.ndarray | None] | None:
        row = self.db.execute(
            "SELECT status, reasons, quality, vector FROM results WHERE sha256=? AND settings=?", (sha, settings)
        ).fetchone()
        if row is None:
            return None
        vec = np.frombuffer(row[3], np.float32).copy() if row[3] is not None else None
        return row[0], json.loads(row[1]), json.loads(row[2]) if row[2] else None, vec

    def remember(
        self,
        sha: str,
        settings: str,
        status: str,
        reasons: list[str],
        quality: dict[str, Any] | None,
        vector: np.ndarray | None,
    ) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO results VALUES (?,?,?,?,?,?)",
            (
                sha,
                settings,
                status,
                json.dumps(reasons),
                json.dumps(quality) if quality else None,
                None if vector is None else np.asarray(vector, np.float32).tobytes(),
            ),
        )

    def upsert_entry(self, item: EnrollItem, sha: str, settings: str, quality: dict[str, Any] | None) -> bool:
        """Add or update an entry; returns False when it was already there unchanged."""
        cur = self.db.execute(
            "SELECT source, consent, enrolled_by, settings, path FROM entries WHERE identity=? AND image=?",
            (item.identity, sha),
        ).fetchone()
        new = (item.source, item.consent, item.enrolled_by, settings, str(item.image))
        if cur == new:
            return False
        if cur is None:
            self.db.execute(
                "INSERT INTO entries VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    item.identity,
                    sha,
                    settings,
                    str(item.image),
                    item.source,
                    item.consent,
                    item.enrolled_by,
                    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    json.dumps(quality) if quality else None,
                ),
            )
        else:  # provenance updated: keep when it was first enrolled
            self.db.execute(
                "UPDATE entries SET source=?, consent=?, enrolled_by=?, settings=?, path=? "
                "WHERE identity=? AND image=?",
                (*new, item.identity, sha),
            )
        name = item.name or item.identity
        self.db.execute(
            "INSERT INTO identities VALUES (?,?) ON CONFLICT(id) DO UPDATE SET name=excluded.name",
            (item.identity, name),
        )
        return True

    def remove_identity(self, identity: str) -> int:
        n = self.db.execute("DELETE FROM entries WHERE identity=?", (identity,)).rowcount
        self.db.execute("DELETE FROM identities WHERE id=?", (identity,))
        self.db.commit()
        return n

    def file_of(self, identity: str, image: str) -> str | None:
        """The file an enrolled image was read from (as given to ``enroll``), for messages."""
        row = self.db.execute("SELECT path FROM entries WHERE identity = ? AND image = ?", (identity, image)).fetchone()
        return str(row[0]) if row and row[0] else None

    def content(self, settings: str | None = None) -> tuple[np.ndarray, list[dict[str, Any]], list[dict[str, Any]]]:
        """(vectors, entries, identities) of everything enrolled, ready for ``publish``."""
        rows = self.db.execute(
            "SELECT e.identity, e.image, e.source, e.consent, e.enrolled_by, e.enrolled_at, r.vector "
            "FROM entries e JOIN results r ON r.sha256 = e.image AND r.settings = e.settings "
            "WHERE r.vector IS NOT NULL"
            + (" AND e.settings = ?" if settings else "")
            + " ORDER BY e.enrolled_at, e.identity, e.image",
            (settings,) if settings else (),
        ).fetchall()
        entries = [
            {"identity": r[0], "image": r[1], "source": r[2], "consent": r[3], "enrolled_by": r[4], "enrolled_at": r[5]}
            for r in rows
        ]
        vectors = np.stack([np.frombuffer(r[6], np.float32) for r in rows]) if rows else np.zeros((0, 0), np.float32)
        used = {e["identity"] for e in entries}
        identities = [
            {"id": i, "name": n} for i, n in self.db.execute("SELECT id, name FROM identities ORDER BY id") if i in used
        ]
        return vectors, entries, identities


def settings_key(engine: Engine, second_face_ratio: float) -> str:
    """What an embedding depends on besides the image; a change re-embeds everything."""
    cfg = engine.config
    doc = {
        "embedder": engine.embedder_card.sha256,
        "detector": cfg.models.detector,
        "quality": dataclasses.asdict(cfg.quality),
        "detect": dataclasses.asdict(cfg.detect),
        "second_face_ratio": second_face_ratio,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _process(
    engine: Engine, path: Path, second_face_ratio: float
) -> tuple[str, list[str], dict[str, Any] | None, np.ndarray | None]:
    image = engine.load_image(path)
    faces = engine.detect_and_assess(image)
    if not faces:
        return "refused", ["no face found"], None, None
    faces.sort(key=lambda f: max(f.face.width, f.face.height), reverse=True)
    best = faces[0]
    if len(faces) > 1:
        big, second = (max(f.face.width, f.face.height) for f in faces[:2])
        if second >= second_face_ratio * big:
            return (
                "refused",
                [f"{len(faces)} faces of similar size: an enrollment photo must show one person"],
                best.quality.to_dict(),
                None,
            )
    if not best.quality.passed:
        return "refused", best.quality.reasons, best.quality.to_dict(), None
    vec = engine.embed(engine.align(image, best.face))
    return "enrolled", [], best.quality.to_dict(), np.asarray(vec, np.float32)


def near_duplicate_threshold(engine: Engine) -> float:
    """The embedder card's near-duplicate cosine (between two photos of one person and a re-encoded copy)."""
    spec = engine.embedder_card.embedder
    value = spec.thresholds.get("near_duplicate") if spec is not None else None
    if value is None:
        raise ModelError(
            f"the embedder card {engine.embedder_card.id} has no [thresholds] near_duplicate; add it, or set "
            "enroll.duplicate_similarity"
        )
    return float(value)


def enroll(
    engine: Engine,
    workspace: Workspace,
    items: Sequence[EnrollItem],
    *,
    duplicate_similarity: float | None = None,
    second_face_ratio: float = 0.7,
    progress: Callable[[Sequence[EnrollItem]], Iterable[EnrollItem]] | None = None,
) -> EnrollReport:
    """Enroll ``items`` into ``workspace``: embed what is new, record provenance, report everything.

    ``duplicate_similarity`` defaults to the embedder card's ``[thresholds] near_duplicate``: where a
    re-encoded copy of one photo lands differs by model (dlib ~0.995, MobileFaceNet ~0.96)."""
    if duplicate_similarity is None:
        duplicate_similarity = near_duplicate_threshold(engine)
    settings = settings_key(engine, second_face_ratio)
    results: list[ImageResult] = []
    vectors: dict[int, np.ndarray] = {}
    for item in progress(items) if progress else items:
        res = ImageResult(item, "error")
        results.append(res)
        try:
            data = Path(item.image).read_bytes()
        except OSError as e:
            res.reasons = [f"cannot read: {e.strerror or e}"]
            continue
        res.sha256 = hashlib.sha256(data).hexdigest()
        hit = workspace.cached(res.sha256, settings)
        if hit is None:
            try:
                status, reasons, quality, vec = _process(engine, Path(item.image), second_face_ratio)
            except ImageError as e:
                status, reasons, quality, vec = "error", [str(e)], None, None
            if status != "error":
                workspace.remember(res.sha256, settings, status, reasons, quality, vec)
            res.embedded = vec is not None
        else:
            status, reasons, quality, vec = hit
        res.reasons, res.quality = reasons, quality
        if status != "enrolled" or vec is None:
            res.status = status
            log.warning("enroll.refused", image=str(item.image), identity=item.identity, reasons=reasons)
            continue
        changed = workspace.upsert_entry(item, res.sha256, settings, quality)
        res.status = "enrolled" if changed else "unchanged"
        vectors[len(results) - 1] = vec
        workspace.db.commit()
    _flag_duplicates(workspace, settings, results, vectors, duplicate_similarity)
    workspace.db.commit()
    report = EnrollReport(results)
    log.info("enroll.done", **report.counts())
    return report


def _flag_duplicates(
    workspace: Workspace, settings: str, results: list[ImageResult], vectors: dict[int, np.ndarray], threshold: float
) -> None:
    """Compare this run's images with every enrolled one (same embedding settings)."""
    if not vectors:
        return
    all_vecs, entries, _ = workspace.content(settings)
    if not len(entries):
        return
    keys = list(vectors)
    q = np.stack([vectors[k] for k in keys])
    sims = q @ all_vecs.T
    for qi, k in enumerate(keys):
        res = results[k]
        for j in np.flatnonzero(sims[qi] >= threshold):
            e = entries[int(j)]
            if e["image"] == res.sha256 and e["identity"] == res.item.identity:
                continue  # itself
            res.duplicates.append(
                {
                    "identity": e["identity"],
                    "image": e["image"],
                    "file": workspace.file_of(e["identity"], e["image"]),
                    "similarity": round(float(sims[qi, j]), 4),
                    "same_identity": e["identity"] == res.item.identity,
                    "exact": e["image"] == res.sha256,
                }
            )
        if res.duplicates:
            log.warning(
                "enroll.near_duplicate",
                image=str(res.item.image),
                identity=res.item.identity,
                like=[
                    f"{d['file'] or d['image'][:12]} ({d['identity']}, {d['similarity']})" for d in res.duplicates[:5]
                ],
            )
