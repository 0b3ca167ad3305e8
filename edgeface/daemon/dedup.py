"""Track and dedup: the same person seen in consecutive frames becomes one result per time window.

A track belongs to one source. A face joins a track of its source when the gallery matched it to the
same identity, or its embedding is as similar as ``similarity`` to the track's (mean) embedding, or
(a refused face, which has no embedding) its box overlaps the track's last box by ``iou``. Two faces
of one frame never share a track. A track is emitted, as its best capture (:func:`capture_rank`), when
its window ends: ``window_s`` of capture time after its first face (the source's clock is the newest
capture time seen from it), or when its source has been silent for ``window_s`` of wall time, or at
shutdown. ``window_s = 0`` emits every face at once. An emitted track is final: its faces' embeddings
are fused (:mod:`~edgeface.daemon.fusion`) and matched once more before its result goes to the outbox.

Time comes from the frames, not the processing: a folder of photos dedups by when they were taken.

Separate photos are not one sighting: unless ``dedup.merge_photos`` is set, each photo of the folder
source gives one result per face, and the frames of one trigger (``capture.frames_per_trigger``) are
tracked among themselves only, so two triggers never fold into one result (:func:`group_of`). The
tracks of a trigger end when the next trigger's faces arrive, when its window ends, or when the source
has been silent for ``window_s``. Only a continuous camera's stream is tracked across frames by time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .fusion import FinalMatch, FusedTemplate
from .work import FrameJob, Observation


@dataclass(eq=False)
class Track:
    source: str
    opened_at: float  # capture time of the first face
    best: Observation
    members: list[Observation] = field(default_factory=list)
    embedding: np.ndarray | None = None  # normalised mean of the members' embeddings
    identity: str | None = None  # gallery identity, if any member matched
    last_box: tuple[float, float, float, float] | None = None
    fused: FusedTemplate = field(default_factory=FusedTemplate)  # quality-weighted, for the final match
    final: FinalMatch | None = None  # set when the track is emitted (the pipeline's final match)
    group: Any = None  # the trigger burst its faces come from (None: a continuous stream), see group_of

    @property
    def jobs(self) -> list[FrameJob]:
        return list({id(m.job): m.job for m in self.members}.values())

    def add(self, obs: Observation) -> None:
        self.members.append(obs)
        if obs is not self.best:  # only the best capture's crop or frame is kept (memory per track bounded)
            if obs.rank > self.best.rank:
                self.best.image = self.best.crop = None
                self.best = obs
            else:
                obs.image = obs.crop = None
        if obs.embedding is not None:
            self.fused.add(obs.embedding, obs.quality)
            e = obs.embedding.astype(np.float32)
            mean = e if self.embedding is None else self.embedding * (len(self.members) - 1) + e
            self.embedding = mean / max(float(np.linalg.norm(mean)), 1e-12)
        match = obs.decision.match if obs.decision is not None else None
        if match is not None and self.identity is None:
            self.identity = match.identity
        self.last_box = obs.face.box


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


PHOTO = "photo"  # group_of: a photo on its own, each face its own result at once


def group_of(obs: Observation, merge_photos: bool) -> Any:
    """Which faces ``obs`` may share a track with: :data:`PHOTO` (none: a folder photo, or a trigger of
    one frame), ``("burst", n)`` (the frames of trigger n), or None (a continuous stream, by window)."""
    if merge_photos:
        return None
    meta = obs.job.frame.meta
    if "burst" in meta:
        return PHOTO if int(meta.get("burst_size", 1)) <= 1 else ("burst", meta["burst"])
    return PHOTO if "rel" in meta else None


class Tracker:
    """Open tracks per source; :meth:`add` and :meth:`tick` return the tracks whose window ended.
    ``merge_photos`` tracks folder photos and trigger captures by window like a stream (see the module
    docstring); off, each photo and each trigger stands alone."""

    def __init__(self, window_s: float, similarity: float, iou_min: float, *, merge_photos: bool = False) -> None:
        self.window_s = window_s
        self.similarity = similarity
        self.iou_min = iou_min
        self.merge_photos = merge_photos
        self._tracks: dict[str, list[Track]] = {}
        self._clock: dict[str, float] = {}  # newest capture time per source
        self._heard: dict[str, float] = {}  # monotonic time of the last frame per source

    def __len__(self) -> int:
        return sum(len(v) for v in self._tracks.values())

    def tick(self, source: str, captured_at: float, now: float | None = None) -> list[Track]:
        """A frame from ``source`` was taken at ``captured_at``: close the tracks its time has passed."""
        self._heard[source] = time.monotonic() if now is None else now
        clock = max(self._clock.get(source, captured_at), captured_at)
        self._clock[source] = clock
        tracks = self._tracks.get(source, [])
        done = [t for t in tracks if clock >= t.opened_at + self.window_s]
        if done:
            self._tracks[source] = [t for t in tracks if t not in done]
        return done

    def add(self, obs: Observation) -> list[Track]:
        """Place a face (call :meth:`tick` for its frame first); returns tracks to emit now."""
        group = group_of(obs, self.merge_photos)
        if self.window_s <= 0 or group == PHOTO:
            t = Track(obs.source, obs.captured_at, obs, group=group)
            t.add(obs)
            return [t]
        tracks = self._tracks.setdefault(obs.source, [])
        ended = [t for t in tracks if t.group != group]  # another trigger's faces: that capture is over
        if ended:
            tracks[:] = [t for t in tracks if t.group == group]
        track = self._find(tracks, obs)
        if track is None:
            track = Track(obs.source, obs.captured_at, obs, group=group)
            tracks.append(track)
        track.add(obs)
        return ended

    def _find(self, tracks: list[Track], obs: Observation) -> Track | None:
        usable = [t for t in tracks if obs.job not in t.jobs and obs.captured_at < t.opened_at + self.window_s]
        match = obs.decision.match if obs.decision is not None else None
        if match is not None:
            for t in usable:
                if t.identity == match.identity:
                    return t
        best, best_score = None, -2.0
        if obs.embedding is not None:
            for t in usable:
                if t.embedding is None:
                    continue
                if t.identity is not None and match is not None and t.identity != match.identity:
                    continue  # the gallery says these are two different people
                s = float(t.embedding @ obs.embedding)
                if s >= self.similarity and s > best_score:
                    best, best_score = t, s
            if best is not None:
                return best
        for t in usable:  # by position: refused faces, or a track that has no embedding yet
            if t.last_box is None or (obs.embedding is not None and t.embedding is not None):
                continue
            o = iou(t.last_box, obs.face.box)
            if o >= self.iou_min and o > best_score:
                best, best_score = t, o
        return best

    def idle(self, now: float | None = None) -> list[Track]:
        """Close the tracks of sources that sent no frame for ``window_s`` seconds of wall time."""
        now = time.monotonic() if now is None else now
        out: list[Track] = []
        for source, tracks in self._tracks.items():
            if tracks and now - self._heard.get(source, now) >= self.window_s:
                out.extend(tracks)
                self._tracks[source] = []
        return out

    def close_all(self) -> list[Track]:
        out = [t for tracks in self._tracks.values() for t in tracks]
        self._tracks.clear()
        return out
