"""Track and dedup: one result per person, source and window, carrying the best capture."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from edgeface.capture import Frame
from edgeface.daemon.dedup import Tracker
from edgeface.daemon.results import build_result, result_id
from edgeface.daemon.work import FrameJob, Observation
from edgeface.gallery.match import Candidate, Decision
from edgeface.vision.faces import Face
from edgeface.vision.quality import Quality, Refusal

RNG = np.random.default_rng(0)
PEOPLE = {name: v / np.linalg.norm(v) for name, v in (("ann", RNG.normal(size=128)), ("bob", RNG.normal(size=128)))}


def person(name: str, noise: float = 0.05) -> np.ndarray:
    v = PEOPLE[name] + RNG.normal(size=128) * noise / np.sqrt(128)
    return (v / np.linalg.norm(v)).astype(np.float32)


def obs(
    t: float,
    name: str | None,
    *,
    score: float = 0.9,
    box: tuple = (10, 10, 110, 110),
    source: str = "cam0",
    job: FrameJob | None = None,
    index: int = 0,
    match: str | None = None,
    refused: bool = False,
) -> Observation:
    job = job or FrameJob(Frame(source=source, key=f"{source}:{t}", captured_at=t, seq=int(t * 10)))
    face = Face(box, np.zeros((6, 2), np.float32), ("a",) * 6, score, 0)
    refusals = (Refusal("yaw", 70, 60),) if refused else ()
    q = Quality(score, 120.0, 300.0, 0.0, 0.0, 0.0, refusals)
    decision = None
    if match:
        cand = Candidate(match, match.title(), 0.95, 0)
        decision = Decision(cand, [cand], 0.9)
    return Observation(
        job,
        index,
        face,
        q,
        None if refused or name is None else person(name),
        decision=decision,
        threshold=0.9,
        gallery_version=3,
    )


def feed(tracker: Tracker, observations: list[Observation]) -> list:
    out = []
    for o in observations:
        out += tracker.tick(o.source, o.captured_at)
        out += tracker.add(o)
    return out


def test_same_person_in_consecutive_frames_is_one_result_with_the_best_capture() -> None:
    tr = Tracker(window_s=5.0, similarity=0.8, iou_min=0.3)
    frames = [obs(100 + i * 0.5, "ann", score=s) for i, s in enumerate((0.7, 0.95, 0.8, 0.75))]
    assert feed(tr, frames) == []  # the window is still open
    closed = tr.tick("cam0", 105.1)  # capture time passes the window
    assert len(closed) == 1 and len(closed[0].members) == 4
    assert closed[0].best is frames[1]  # the best-quality capture is what the result carries
    assert len(tr) == 0


def test_two_people_two_sources_and_a_new_window_are_separate() -> None:
    tr = Tracker(window_s=5.0, similarity=0.8, iou_min=0.3)
    job = FrameJob(Frame(source="cam0", key="k", captured_at=100.0, seq=1))
    a = obs(100, "ann", job=job, index=0)
    b = obs(100, "bob", job=job, index=1, box=(200, 10, 300, 110))
    other_cam = obs(100.5, "ann", source="cam1")
    later = obs(106, "ann")
    closed = feed(tr, [a, b, other_cam])
    assert closed == [] and len(tr) == 3
    closed = feed(tr, [later])  # 6 s later on cam0: both cam0 tracks close, ann starts a new one
    assert sorted(len(t.members) for t in closed) == [1, 1] and len(tr) == 2
    assert {t.source for t in tr.close_all()} == {"cam0", "cam1"}


def test_faces_of_one_frame_never_merge_even_if_alike() -> None:
    tr = Tracker(window_s=5.0, similarity=0.0, iou_min=0.0)  # would merge anything
    job = FrameJob(Frame(source="cam0", key="k", captured_at=100.0, seq=1))
    feed(tr, [obs(100, "ann", job=job, index=0), obs(100, "ann", job=job, index=1)])
    assert len(tr) == 2


def test_gallery_identity_and_position_join_tracks() -> None:
    tr = Tracker(window_s=5.0, similarity=0.99, iou_min=0.3)  # embeddings alone would not merge these
    m1 = obs(100, "ann", match="ann")
    m2 = obs(101, "bob", match="ann")  # the gallery says ann (different embedding): same track
    refused = obs(101.5, None, refused=True, box=(12, 12, 112, 112))  # no embedding: joins by overlap
    feed(tr, [m1, m2, refused])
    (track,) = tr.close_all()
    assert len(track.members) == 3 and track.identity == "ann"
    assert track.best in (m1, m2)  # a passed face beats a refused one


def test_window_zero_emits_every_face_and_idle_sources_flush() -> None:
    assert len(feed(Tracker(0.0, 0.8, 0.3), [obs(100, "ann"), obs(100.1, "ann")])) == 2
    tr = Tracker(window_s=2.0, similarity=0.8, iou_min=0.3)
    feed(tr, [obs(100, "ann")])
    assert tr.idle(now=10**9) and len(tr) == 0  # the source went silent for longer than the window


def test_result_ids_are_stable_uuid7_and_payloads_follow_the_contract() -> None:
    o = obs(1_700_000_000.25, "ann", match="ann")
    assert result_id("unit-a", o) == result_id("unit-a", o)  # same frame, same face: same id
    assert result_id("unit-a", o) != result_id("unit-b", o)
    tr = Tracker(0.0, 0.8, 0.3)
    (track,) = feed(tr, [o])
    doc = build_result(track, device_id="unit-a", model_id="m", include_crop=False, max_crop_bytes=16384)
    from edgeface.mqtt import payloads

    payloads.check(doc, "result")
    assert doc["decision"] == "match" and doc["candidates"][0]["identity_id"] == "ann"
    assert doc["captured_at"].startswith("2023-11-14T22:13:20.25")
    (refused,) = feed(Tracker(0.0, 0.8, 0.3), [obs(5.0, None, refused=True)])
    doc = build_result(refused, device_id="unit-a", model_id="m", include_crop=False, max_crop_bytes=16384)
    payloads.check(doc, "result")
    assert doc["decision"] == "refused" and doc["refusal_reasons"] == ["yaw 70 > limit 60"]


def test_a_track_fuses_its_passed_faces_weighted_by_quality() -> None:
    from edgeface.daemon.fusion import fuse, fusion_weight

    tr = Tracker(window_s=5.0, similarity=0.5, iou_min=0.3)
    faces = [obs(100, "ann", score=0.95), obs(100.5, "ann", score=0.6), obs(101, None, refused=True)]
    feed(tr, faces)
    (track,) = tr.close_all()
    assert track.fused.frames == 2  # the refused face has no embedding: not fused
    w = [fusion_weight(o.quality) for o in faces[:2]]
    assert w[0] > w[1]  # the detector's confidence is part of the weight
    e = np.stack([o.embedding for o in faces[:2] if o.embedding is not None])
    assert np.allclose(track.fused.template, fuse(e, w), atol=1e-6)
    assert not np.allclose(fuse(e, w), fuse(e), atol=1e-4)  # weighted, not a plain mean
    assert np.linalg.norm(track.fused.template) == pytest.approx(1.0, abs=1e-6)


def test_the_final_match_searches_the_fused_template_only_for_two_or_more_faces() -> None:
    from edgeface.daemon.fusion import final_match

    calls: list[np.ndarray] = []

    def search(e: np.ndarray) -> tuple:
        calls.append(e)
        cand = SimpleNamespace(identity="ann", name="Ann", score=0.97, row=0)
        return SimpleNamespace(match=cand, candidates=[cand], threshold=0.9), 4, 0.9

    (one,) = feed(Tracker(0.0, 0.8, 0.3), [obs(100, "ann", match="ann")])
    m = final_match(one.best, one.fused, search)
    assert calls == [] and m.frames == 1 and m.decision is one.best.decision and m.gallery_version == 3
    tr = Tracker(5.0, 0.5, 0.3)
    feed(tr, [obs(100, "ann", match="ann"), obs(100.5, "ann")])
    (two,) = tr.close_all()
    m = final_match(two.best, two.fused, search)
    assert len(calls) == 1 and np.allclose(calls[0], two.fused.template)
    assert m.frames == 2 and m.gallery_version == 4 and m.decision.candidates[0].score == 0.97
    (refused,) = feed(Tracker(0.0, 0.8, 0.3), [obs(100, None, refused=True)])
    assert final_match(refused.best, refused.fused, search).frames == 0 and len(calls) == 1


def test_a_failed_fused_search_still_gives_the_track_a_result() -> None:
    from edgeface.daemon.fusion import final_match
    from edgeface.mqtt import payloads

    def broken(e: np.ndarray) -> tuple:
        raise RuntimeError("index closed")

    tr = Tracker(5.0, 0.5, 0.3)
    feed(tr, [obs(100, "ann", match="ann", score=0.95), obs(100.5, "ann")])
    (track,) = tr.close_all()
    track.final = final_match(track.best, track.fused, broken)
    assert track.final.frames == 1 and track.final.decision is track.best.decision  # the best capture stands in
    doc = build_result(track, device_id="unit-a", model_id="m", include_crop=False, max_crop_bytes=16384)
    payloads.check(doc, "result")
    assert doc["decision"] == "match" and doc["frames_fused"] == 1


def test_a_track_keeps_only_its_best_captures_crop() -> None:
    tr = Tracker(5.0, 0.5, 0.3)
    faces = [obs(100, "ann", score=0.7), obs(100.5, "ann", score=0.95), obs(101, "ann", score=0.8)]
    for o in faces:
        o.crop = np.zeros((4, 4, 3), np.uint8)
    feed(tr, faces)
    (track,) = tr.close_all()
    assert track.best is faces[1] and [o.crop is not None for o in faces] == [False, True, False]


def test_a_result_decided_on_normalised_scores_carries_both_scores() -> None:
    """A normalised bundle decides on S-norm scores: the payload says so, ranks by them and keeps each raw cosine."""
    from edgeface.errors import PayloadError
    from edgeface.mqtt import payloads

    ann, bob = Candidate("ann", "Ann", 0.91, 0, normalised=4.2), Candidate("bob", "Bob", 0.93, 1, normalised=3.1)
    o = obs(100, "ann")
    o.decision = Decision(ann, [ann, bob], 3.5, space="normalised")
    (track,) = feed(Tracker(0.0, 0.8, 0.3), [o])
    doc = build_result(track, device_id="unit-a", model_id="m", include_crop=False, max_crop_bytes=16384)
    payloads.check(doc, "result")  # raw scores out of order is fine: the decision was on the normalised ones
    assert doc["score_space"] == "normalised" and doc["threshold"] == 3.5 and doc["decision"] == "match"
    assert [(c["score"], c["normalised"]) for c in doc["candidates"]] == [(0.91, 4.2), (0.93, 3.1)]

    o2 = obs(101, "bob")
    o2.decision = Decision(None, [bob], 3.1, space="normalised")  # at the threshold but not matched
    (track,) = feed(Tracker(0.0, 0.8, 0.3), [o2])
    doc = build_result(track, device_id="unit-a", model_id="m", include_crop=False, max_crop_bytes=16384)
    payloads.check(doc, "result")
    assert doc["decision"] == "no_match" and doc["candidates"][0]["normalised"] < 3.1
    del doc["candidates"][0]["normalised"]
    with pytest.raises(PayloadError, match="normalised"):
        payloads.check(doc, "result")
