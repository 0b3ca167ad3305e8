"""Search by photo on the server (issue 16 item 3): a reviewer uploads a photo and sees the current
gallery's candidates with scores and aligned chips, decided by the units' engine and thresholds; audited.
Real models, the public-domain portraits of tests/images, an LFW face of someone not enrolled."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

from edgeface.gallery.signing import generate_keypair
from edgeface.server import audit

from .conftest import Browser, add_results
from .test_gallery_admin import IMAGES, _enroll


def _search(b: Browser, photo: Path) -> Any:
    return b.post("/search", {"photo": (open(photo, "rb"), photo.name)}, content_type="multipart/form-data")


def test_search_by_photo(config: Any, db: Any, as_admin: Browser, as_reviewer: Browser, lfw_root: Path) -> None:
    generate_keypair(config.server.signing_key, config.server.signing_key.with_suffix(".pub"))
    page = as_reviewer.get("/search").get_data(as_text=True)
    assert 'name="photo"' in page and 'enctype="multipart/form-data"' in page
    # nothing published yet: said, not a crash
    r = _search(as_reviewer, IMAGES / "obama2.jpg")
    assert r.status_code == 409 and "no gallery is published" in r.get_data(as_text=True)

    assert _enroll(as_admin, "obama", IMAGES / "obama.jpg").status_code == 200
    assert _enroll(as_admin, "biden", IMAGES / "biden.jpg").status_code == 200
    assert as_admin.post("/gallery/publish").status_code == 200

    r = _search(as_reviewer, IMAGES / "obama2.jpg")  # another photo of an enrolled person
    html = r.get_data(as_text=True)
    assert r.status_code == 200, html[-2000:]
    assert "1 face in the photo" in html and "compared with gallery 1" in html
    faces = re.findall(r'<section class="card search-face verdict-(\w+)">(.*?)</section>', html, re.S)
    assert [v for v, _ in faces] == ["match"]
    body = faces[0][1]
    first = re.search(r'<figure class="candidate is-match">.*?<span class="muted">([^<]+)</span>', body, re.S)
    assert first and first.group(1) == "obama"
    chips = re.findall(r'src="data:image/png;base64,([^"]+)"', body)
    assert len(chips) == 3  # the photo's face, obama's and biden's enrolled faces, aligned
    assert all(base64.b64decode(c)[:8] == b"\x89PNG\r\n\x1a\n" for c in chips)

    stranger = lfw_root / "images" / "AJ_Cook" / "AJ_Cook_0001.jpg"  # not enrolled
    html2 = _search(as_reviewer, stranger).get_data(as_text=True)
    assert re.findall(r'class="card search-face verdict-(\w+)"', html2) == ["no_match"]
    assert "is-match" not in html2

    with db.read() as conn:
        entries = audit.entries(conn, action="search.photo")
    assert len(entries) == 2 and {e.actor for e in entries} == {"rita"}
    newest, older = entries
    assert older.details["verdicts"] == ["match"] and older.details["candidates"][0][0][0] == "obama"
    assert older.details["gallery_version"] == 1 and len(older.subject) == 64  # the photo's SHA-256
    assert newest.details["verdicts"] == ["no_match"]


def test_search_refuses_what_is_not_a_photo(config: Any, as_reviewer: Browser) -> None:
    r = as_reviewer.post("/search", {"photo": (open(__file__, "rb"), "x.jpg")}, content_type="multipart/form-data")
    assert r.status_code == 422 and "not an image" in r.get_data(as_text=True)
    assert as_reviewer.post("/search", {}).status_code == 400


def test_search_with_a_results_face_crop(config: Any, db: Any, as_admin: Browser, as_reviewer: Browser) -> None:
    from edgeface import api
    from edgeface.mqtt import payloads

    generate_keypair(config.server.signing_key, config.server.signing_key.with_suffix(".pub"))
    assert _enroll(as_admin, "obama", IMAGES / "obama.jpg").status_code == 200
    assert _enroll(as_admin, "biden", IMAGES / "biden.jpg").status_code == 200
    assert as_admin.post("/gallery/publish").status_code == 200
    img = api.load_image(IMAGES / "obama2.jpg")
    (face,) = api.detect_faces(img)
    x0, y0, x1, y1 = (int(v) for v in face.box)
    m = (x1 - x0) // 2  # the margin a unit's crop keeps round the face
    crop = img[max(0, y0 - m) : y1 + m, max(0, x0 - m) : x1 + m]
    with_crop, without = (
        add_results(db, 1, crop=payloads.crop_payload(crop, max_bytes=20_000)),
        add_results(db, 1, seed=2),
    )

    html = as_reviewer.post("/search", {"result": with_crop[0]["id"]}).get_data(as_text=True)
    assert re.findall(r'class="card search-face verdict-(\w+)"', html) == ["match"]
    assert re.search(r'<figure class="candidate is-match">.*?<span class="muted">obama</span>', html, re.S)
    with db.read() as conn:
        (entry,) = audit.entries(conn, action="search.photo")
    assert entry.details["result"] == with_crop[0]["id"] and entry.details["verdicts"] == ["match"]

    r = as_reviewer.post("/search", {"result": without[0]["id"]})
    assert r.status_code == 404 and "no face crop" in r.get_data(as_text=True)
    assert as_reviewer.post("/search", {"result": "no-such-result"}).status_code == 404
