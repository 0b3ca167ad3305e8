"""The JSON API (/api/v1, issue 16 item 4), route by route and role by role.

The routes are enumerated from the app's url_map; every one must have a case in RIGHT_ROLE below (a new
route without one fails :func:`test_every_api_route_has_a_case`). Each is called unauthenticated (401),
with a token of the wrong role (403), with a revoked or expired token, a deactivated user's token or a
session cookie and its CSRF token (401: cookies do not open the API), and with the right role (its 2xx
and what it did). Every answer, refusals included, is validated against the schema the OpenAPI document
gives for its route and status. Real models, the public-domain portraits of tests/images.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from sqlalchemy import select, update

from edgeface.gallery.signing import generate_keypair
from edgeface.server import api_tokens, audit, auth
from edgeface.server.access import API, PUBLIC, rule_of
from edgeface.server.ingest import DbResultStore
from edgeface.server.openapi import document
from edgeface.server.tables import api_tokens as api_tokens_table
from edgeface.server.tables import images, reviews
from edgeface.testing.mqttload import sample_result

from .conftest import Browser, make_user, server_config
from .test_gallery_admin import IMAGES
from .test_migrations import postgres  # noqa: F401  (the module's PostgreSQL cluster fixture)

DOC = document()
PARAM = re.compile(r"<(?:[^:>]+:)?([^>]+)>")
SAMPLE = {"IntegerConverter": 1, "PathConverter": "a/b"}


@pytest.fixture
def config(tmp_path: Path) -> Any:
    # The sweeps below send hundreds of refused tokens from one address: the per-address limit is tested
    # on its own (test_bad_tokens_are_rate_limited_per_address).
    return server_config(tmp_path, **{"server.login_max_failures_ip": 100000})


def api_routes(app: Any) -> list[tuple[str, str, Any]]:
    """(key 'METHOD /api/v1/path/{param}', sample url, access) for every /api/v1 rule and method."""
    out = []
    with app.test_request_context():
        from flask import url_for

        for rule in app.url_map.iter_rules():
            if not rule.rule.startswith("/api/"):
                continue
            args = {a: SAMPLE.get(type(rule._converters[a]).__name__, "x") for a in rule.arguments}
            path = PARAM.sub(r"{\1}", rule.rule)
            for m in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                out.append((f"{m} {path}", url_for(rule.endpoint, **args), rule_of(app.view_functions[rule.endpoint])))
    return out


def check(resp: Any, key: str) -> Any:
    """Validate an answer against what the document says ``key`` answers with that status; its JSON."""
    method, path = key.split(" ", 1)
    spec = DOC["paths"][path][method.lower()]["responses"].get(str(resp.status_code))
    assert spec is not None, f"{key} answered {resp.status_code}, which its document does not list: {resp.data[:300]!r}"
    if "$ref" in spec:
        spec = DOC["components"]["responses"][spec["$ref"].rsplit("/", 1)[1]]
    (media, content), *_ = spec["content"].items()
    if media == "application/json":
        assert resp.mimetype == "application/json", (key, resp.mimetype)
        schema = {**content["schema"], "components": DOC["components"]}
        jsonschema.validate(resp.get_json(), schema, cls=jsonschema.Draft202012Validator)
        return resp.get_json()
    assert resp.mimetype.startswith(media.rstrip("*")), (key, resp.mimetype, media)
    return None


def call(client: Any, key: str, url: str, token: str | None = None, **kw: Any) -> Any:
    headers = dict(kw.pop("headers", {}))
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return client.open(url, method=key.split(" ", 1)[0], headers=headers, **kw)


@pytest.fixture
def tokens(db: Any, users: dict[str, auth.User]) -> dict[str, str]:
    with db.write() as conn:
        return {r: api_tokens.create_token(conn, users[r], f"{r} token")[1] for r in ("reviewer", "admin")}


# -- who may call what ---------------------------------------------------------------------------------


def test_every_api_route_has_a_case(app: Any) -> None:
    keys = {k for k, _, _ in api_routes(app)}
    assert keys == {k for k, _ in RIGHT_ROLE}, "add the new route to RIGHT_ROLE (and to the OpenAPI document)"
    assert len(keys) >= 19


def test_every_api_route_is_an_api_route(app: Any) -> None:
    """Bearer-only: no /api/ route is a page's (session) or a device's route; only the document is public."""
    kinds = {k: acc.kind for k, _, acc in api_routes(app)}
    assert {k for k, kind in kinds.items() if kind == PUBLIC} == {"GET /api/v1/openapi.json"}
    assert {kind for kind in kinds.values()} == {API, PUBLIC}


def test_unauthenticated_refused_everywhere(app: Any) -> None:
    client = app.test_client()
    for key, url, acc in api_routes(app):
        if acc.kind == PUBLIC:
            continue
        for headers in (
            {},
            {"Authorization": "Bearer"},
            {"Authorization": "Basic dW5pdC1hOng="},
            {"Accept": "text/html"},
        ):
            r = call(client, key, url, headers=headers)
            assert r.status_code == 401, (key, headers, r.status_code)
            assert r.headers["WWW-Authenticate"].startswith("Bearer"), key
            assert check(r, key)["error"] == "unauthorized"


def test_wrong_role_refused_everywhere(app: Any, tokens: dict[str, str]) -> None:
    client, checked = app.test_client(), 0
    for key, url, acc in api_routes(app):
        for role, token in tokens.items():
            if acc.kind == API and role not in acc.roles:
                r = call(client, key, url, token, json={})
                assert r.status_code == 403, (key, role, r.status_code)
                assert role in check(r, key)["detail"]
                checked += 1
    assert checked >= 12


def test_refused_tokens_and_cookies_everywhere(app: Any, db: Any, users: Any, as_admin: Browser) -> None:
    """Revoked, expired, unknown and deactivated users' tokens: 401; a logged-in browser session with its
    CSRF token opens no API route (the API does not read cookies, so a page cannot be made to call it)."""
    both = make_user(db, "bo", "reviewer", "admin")
    gone = make_user(db, "gus", "reviewer", "admin")
    with db.write() as conn:
        revoked_info, revoked = api_tokens.create_token(conn, both, "revoked")
        api_tokens.revoke_token(conn, revoked_info.id)
        expired_info, expired = api_tokens.create_token(conn, both, "expired", expires_in_s=3600)
        conn.execute(
            update(api_tokens_table).where(api_tokens_table.c.id == expired_info.id).values(expires_at=time.time() - 1)
        )
        _, disabled = api_tokens.create_token(conn, gone, "its user is disabled")
        auth.set_user(conn, gone.id, active=False)
    client = app.test_client()
    for key, url, acc in api_routes(app):
        if acc.kind == PUBLIC:
            continue
        for token in (revoked, expired, disabled, revoked + "x", "efk_" + "A" * 43):
            r = call(client, key, url, token)
            assert r.status_code == 401 and 'error="invalid_token"' in r.headers["WWW-Authenticate"], (key, token)
            check(r, key)
        r = call(as_admin.client, key, url, headers={"X-CSRF-Token": as_admin.csrf}, data={"csrf_token": as_admin.csrf})
        assert r.status_code == 401, (key, "session cookie", r.status_code)


def test_confirm_as_a_new_person(app: Any, db: Any, tokens: dict[str, str]) -> None:
    """A reviewer names someone the gallery does not hold: an identity pending enrollment, found after."""
    import random

    (doc,) = [sample_result("unit-a", random.Random(3), match_share=1.0)]
    DbResultStore(db).add([doc])
    client, key = app.test_client(), "POST /api/v1/results/{rid}/decisions"
    r = call(
        client,
        key,
        f"/api/v1/results/{doc['id']}/decisions",
        tokens["reviewer"],
        json={"verdict": "confirm", "new_person": "Jo Doe"},
    )
    out = check(r, key)
    assert r.status_code == 201 and out["status"] == "confirmed" and out["identity"].startswith("jo-doe-")
    assert out["next_pending"] is None  # nothing else waits
    found = check(
        call(client, "GET /api/v1/identities", "/api/v1/identities?q=jo%20doe", tokens["admin"]),
        "GET /api/v1/identities",
    )
    assert found["identities"] == [{"id": out["identity"], "name": "Jo Doe", "status": "pending", "images": 0}]
    wrong = call(
        client,
        key,
        f"/api/v1/results/{doc['id']}/decisions",
        tokens["reviewer"],
        json={"verdict": "confirm", "identity": 7},
    )
    assert wrong.status_code == 400 and check(wrong, key)["error"] == "bad_request"
    missing = call(client, key, "/api/v1/results/nope/decisions", tokens["reviewer"], json={"verdict": "reject"})
    assert missing.status_code == 404
    check(missing, key)


def test_errors_under_the_api_are_json(app: Any, tokens: dict[str, str]) -> None:
    """Routing's own refusals too: no such route, a method the route lacks, a body over the upload limit."""
    client = app.test_client()
    for method, url, status in (("GET", "/api/v1/nothing", 404), ("GET", "/api/v1/publish", 405)):
        r = client.open(url, method=method, headers={"Authorization": f"Bearer {tokens['admin']}"})
        assert r.status_code == status and r.mimetype == "application/json", (url, r.status_code)
        assert set(r.get_json()) == {"error", "detail"}
    big = b"x" * (app.config["MAX_CONTENT_LENGTH"] + 1)
    r = client.post("/api/v1/search", data=big, headers={"Authorization": f"Bearer {tokens['reviewer']}"})
    assert r.status_code == 413 and check(r, "POST /api/v1/search")["error"] == "request_entity_too_large"


def test_a_token_does_not_open_the_pages(app: Any, tokens: dict[str, str]) -> None:
    """Bearer tokens are for /api/ only: a page's route ignores them (no session, so the login)."""
    client = app.test_client()
    for url in ("/review", "/gallery", "/account", "/audit"):
        for token in tokens.values():
            r = client.get(url, headers={"Authorization": f"Bearer {token}", "Accept": "text/html"})
            assert r.status_code == 302 and r.headers["Location"].startswith("/login"), (url, r.status_code)
    r = client.post("/account/tokens", data={"name": "x"}, headers={"Authorization": f"Bearer {tokens['admin']}"})
    assert r.status_code == 401


def test_a_token_holds_its_users_roles_now_narrowed_by_its_own(app: Any, db: Any) -> None:
    both, rey = make_user(db, "bo", "reviewer", "admin"), make_user(db, "rey", "reviewer")
    with db.write() as conn:
        _, narrow = api_tokens.create_token(conn, both, "reviewer only", ["reviewer"])
        _, full = api_tokens.create_token(conn, both, "all roles")
        with pytest.raises(auth.AccountError, match="only roles its user holds"):
            api_tokens.create_token(conn, rey, "too much", ["admin"])
    client = app.test_client()
    publications = "GET /api/v1/publications"
    assert call(client, publications, "/api/v1/publications", narrow).status_code == 403
    assert call(client, "GET /api/v1/results", "/api/v1/results", narrow).status_code == 200
    assert call(client, publications, "/api/v1/publications", full).status_code == 200
    with db.write() as conn:  # the admin role removed from the user: gone from every token at once
        auth.set_user(conn, both.id, roles=["reviewer"])
    assert call(client, publications, "/api/v1/publications", full).status_code == 403
    assert call(client, "GET /api/v1/results", "/api/v1/results", full).status_code == 200


def test_bad_tokens_are_rate_limited_per_address(tmp_path: Path, users: Any) -> None:
    from edgeface.server.app import create_app
    from edgeface.server.db import Database

    cfg = server_config(tmp_path / "limited", **{"server.login_max_failures_ip": "3"})
    db = Database(cfg.server.database_url)
    db.migrate()
    try:
        rita = make_user(db, "rita", "reviewer")
        with db.write() as conn:
            _, good = api_tokens.create_token(conn, rita, "good")
        client = create_app(cfg, db=db, migrate=False).test_client()
        key, url = "GET /api/v1/results", "/api/v1/results"
        assert call(client, key, url, good).status_code == 200
        for _ in range(3):
            assert call(client, key, url, "efk_guess").status_code == 401
        r = call(client, key, url, good)  # the address is refused for the window, a good token too
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
        check(r, key)
        with db.read() as conn:
            assert api_tokens.too_many_failures(conn, "127.0.0.1", max_ip=3, window_s=900)
    finally:
        db.dispose()


# -- the right role: each route does what it says -------------------------------------------------------


@dataclass
class World:
    client: Any
    db: Any
    tokens: dict[str, str]
    ids: dict[str, Any] = field(default_factory=dict)

    def call(self, key: str, role: str | None, url: str | None = None, **kw: Any) -> Any:
        return call(self.client, key, url or key.split(" ", 1)[1], self.tokens[role] if role else None, **kw)


def _multipart(**fields: Any) -> dict[str, Any]:
    return {"data": fields, "content_type": "multipart/form-data"}


def _photo(name: str) -> tuple[Any, str]:
    return (open(IMAGES / name, "rb"), name)


def _openapi(w: World) -> Any:
    return w.call("GET /api/v1/openapi.json", None)


def _enroll(w: World) -> Any:
    fields = {"name": "Barack Obama", "source": "tests/images (PROVENANCE.md)", "consent": "public domain portrait"}
    r = w.call(
        "POST /api/v1/identities/{ident}/images",
        "admin",
        "/api/v1/identities/obama/images",
        **_multipart(images=[_photo("obama.jpg")], **fields),
    )
    doc = r.get_json()
    assert doc["identity"] == "obama" and [x["status"] for x in doc["report"]] == ["enrolled"]
    refused = w.call(  # the page's checks: no consent, nothing stored
        "POST /api/v1/identities/{ident}/images",
        "admin",
        "/api/v1/identities/obama/images",
        **_multipart(images=[_photo("obama2.jpg")], source="x"),
    )
    assert (
        refused.status_code == 400 and "consent" in check(refused, "POST /api/v1/identities/{ident}/images")["detail"]
    )
    return r


def _identities(w: World) -> Any:
    r = w.call("GET /api/v1/identities", "reviewer", "/api/v1/identities?q=OBA")
    assert r.get_json()["identities"] == [{"id": "obama", "name": "Barack Obama", "status": "enrolled", "images": 1}]
    return r


def _identity(w: World) -> Any:
    r = w.call("GET /api/v1/identities/{ident}", "admin", "/api/v1/identities/obama")
    (img,) = r.get_json()["images"]
    assert img["status"] == "enrolled" and img["consent"] == "public domain portrait" and img["result_id"] is None
    w.ids["image"] = img["id"]
    return r


def _image(w: World) -> Any:
    r = w.call("GET /api/v1/images/{image_id}", "admin", f"/api/v1/images/{w.ids['image']}")
    assert r.data == (IMAGES / "obama.jpg").read_bytes()
    with w.db.read() as conn:
        (entry,) = audit.entries(conn, action="images.view")
    assert entry.actor == "ada" and entry.details == {"images": [w.ids["image"]]}
    return r


def _publish(w: World) -> Any:
    r = w.call("POST /api/v1/publish", "admin")
    assert r.get_json()["version"] == 1 and r.get_json()["identities"] == 1
    return r


def _publications(w: World) -> Any:
    r = w.call("GET /api/v1/publications", "admin")
    assert [p["version"] for p in r.get_json()["publications"]] == [1]
    return r


def _search(w: World) -> Any:
    r = w.call("POST /api/v1/search", "reviewer", **_multipart(photo=_photo("obama2.jpg")))
    (face,) = r.get_json()["faces"]
    assert face["verdict"] == "match" and face["candidates"][0]["identity"] == "obama"
    with w.db.read() as conn:
        (entry,) = audit.entries(conn, action="search.photo")
    assert entry.actor == "rita" and entry.details["gallery_version"] == 1
    return r


def _results(w: World) -> Any:
    r = w.call("GET /api/v1/results", "reviewer", "/api/v1/results?per_page=2&page=2")
    doc = r.get_json()
    assert doc["total"] == w.ids["pending"] and doc["page"] == 2 and len(doc["results"]) == 2
    assert doc["filters"] == {"status": "pending", "decision": "match"}
    everything = w.call("GET /api/v1/results", "reviewer", "/api/v1/results?status=all&decision=all&per_page=200")
    assert everything.get_json()["total"] == w.ids["all"]
    bad = w.call("GET /api/v1/results", "reviewer", "/api/v1/results?per_page=0")
    assert bad.status_code == 400
    check(bad, "GET /api/v1/results")
    return r


def _pending(w: World) -> Any:
    r = w.call("GET /api/v1/results/pending-count", "reviewer")
    assert r.get_json() == {"pending": w.ids["pending"], "awaiting_second": 0}
    return r


def _result(w: World) -> Any:
    r = w.call("GET /api/v1/results/{rid}", "reviewer", f"/api/v1/results/{w.ids['crop']}")
    doc = r.get_json()
    assert doc["id"] == w.ids["crop"] and doc["has_crop"] and "crop" not in doc["payload"]
    assert len(doc["candidates"]) == 5 and doc["reviews"] == []
    return r


def _crop(w: World) -> Any:
    r = w.call("GET /api/v1/results/{rid}/crop.jpg", "reviewer", f"/api/v1/results/{w.ids['crop']}/crop.jpg")
    assert r.data[:2] == b"\xff\xd8"
    return r


def _decide(w: World) -> Any:
    key, url = "POST /api/v1/results/{rid}/decisions", f"/api/v1/results/{w.ids['crop']}/decisions"
    bad = w.call(key, "reviewer", url, json={"verdict": "maybe"})
    assert bad.status_code == 400
    check(bad, key)
    r = w.call(key, "reviewer", url, json={"verdict": "confirm", "identity": "obama", "comment": "same face"})
    doc = r.get_json()
    assert (
        doc["status"] == "confirmed" and doc["identity"] == "obama" and doc["next_pending"] not in (None, w.ids["crop"])
    )
    with w.db.read() as conn:
        rows = conn.execute(
            select(reviews.c.verdict, reviews.c.identity_id).where(reviews.c.result_id == w.ids["crop"])
        )
        assert [tuple(x) for x in rows] == [("confirm", "obama")]
        (entry,) = audit.entries(conn, action="review.confirm")
    assert entry.actor == "rita" and entry.subject == w.ids["crop"]
    return r


def _learn(w: World) -> Any:
    key, url = "POST /api/v1/results/{rid}/gallery-image", f"/api/v1/results/{w.ids['crop']}/gallery-image"
    r = w.call(key, "admin", url, json={"legal_basis": "confirmed match, case file 7"})
    doc = r.get_json()
    assert doc["identity_id"] == "obama" and doc["status"] in ("enrolled", "unchanged")
    with w.db.read() as conn:
        assert conn.execute(select(images.c.result_id).where(images.c.id == doc["image_id"])).scalar() == w.ids["crop"]
    again = w.call(key, "admin", url, json={"legal_basis": "again"})
    assert again.status_code == 409
    check(again, key)
    return r


def _cases(w: World) -> Any:
    r = w.call("GET /api/v1/cases", "reviewer")
    assert [c["tag"] for c in r.get_json()["cases"]] == ["case-7/body-2"]
    return r


def _case(w: World) -> Any:
    r = w.call("GET /api/v1/cases/{tag}", "reviewer", "/api/v1/cases/case-7/body-2")
    assert [x["id"] for x in r.get_json()["results"]] == [w.ids["crop"]]
    missing = w.call("GET /api/v1/cases/{tag}", "reviewer", "/api/v1/cases/nothing")
    assert missing.status_code == 404
    check(missing, "GET /api/v1/cases/{tag}")
    return r


def _audit(w: World) -> Any:
    r = w.call("GET /api/v1/audit", "reviewer", "/api/v1/audit?limit=2")
    doc = r.get_json()
    assert doc["verify"]["ok"] and len(doc["entries"]) == 2 and doc["next_before"] == doc["entries"][-1]["seq"]
    older = w.call("GET /api/v1/audit", "reviewer", f"/api/v1/audit?before={doc['next_before']}&action=enroll")
    assert {e["action"] for e in older.get_json()["entries"]} == {"enroll.image"}
    return r


def _devices(w: World) -> Any:
    r = w.call("GET /api/v1/devices", "reviewer")
    assert r.get_json()["latest_gallery_version"] == 1
    assert "unit-z" in {d["device_id"] for d in r.get_json()["devices"]}
    return r


def _device_credential(w: World) -> Any:
    r = w.call("POST /api/v1/devices", "admin", json={"device_id": "unit-z"})
    assert r.get_json()["device_id"] == "unit-z"
    w.ids["device_token"] = r.get_json()["token"]
    with w.db.read() as conn:
        assert auth.check_device(conn, "unit-z", w.ids["device_token"])
    return r


def _device_revoke(w: World) -> Any:
    r = w.call("POST /api/v1/devices/{device_id}/revoke", "admin", "/api/v1/devices/unit-z/revoke")
    assert r.get_json()["known"] and not r.get_json()["command_sent"]  # no broker configured in these tests
    with w.db.read() as conn:
        assert not auth.check_device(conn, "unit-z", w.ids["device_token"])
    return r


# In the order they run: later cases use what earlier ones made (enrolled, published, decided).
RIGHT_ROLE: list[tuple[str, tuple[int, Callable[[World], Any]]]] = [
    ("GET /api/v1/openapi.json", (200, _openapi)),
    ("POST /api/v1/identities/{ident}/images", (201, _enroll)),
    ("GET /api/v1/identities", (200, _identities)),
    ("GET /api/v1/identities/{ident}", (200, _identity)),
    ("GET /api/v1/images/{image_id}", (200, _image)),
    ("POST /api/v1/publish", (201, _publish)),
    ("GET /api/v1/publications", (200, _publications)),
    ("POST /api/v1/search", (200, _search)),
    ("GET /api/v1/results", (200, _results)),
    ("GET /api/v1/results/pending-count", (200, _pending)),
    ("GET /api/v1/results/{rid}", (200, _result)),
    ("GET /api/v1/results/{rid}/crop.jpg", (200, _crop)),
    ("POST /api/v1/results/{rid}/decisions", (201, _decide)),
    ("POST /api/v1/results/{rid}/gallery-image", (201, _learn)),
    ("GET /api/v1/cases", (200, _cases)),
    ("GET /api/v1/cases/{tag}", (200, _case)),
    ("GET /api/v1/audit", (200, _audit)),
    ("POST /api/v1/devices", (201, _device_credential)),
    ("GET /api/v1/devices", (200, _devices)),
    ("POST /api/v1/devices/{device_id}/revoke", (200, _device_revoke)),
]


def _add_results(db: Any) -> dict[str, Any]:
    """Six pending matches (one with a face crop of obama2.jpg and a case tag), two non-matches."""
    import random

    from edgeface import api
    from edgeface.mqtt import payloads

    img = api.load_image(IMAGES / "obama2.jpg")
    (face,) = api.detect_faces(img)
    x0, y0, x1, y1 = (int(v) for v in face.box)
    m = (x1 - x0) // 2
    crop = payloads.crop_payload(img[max(0, y0 - m) : y1 + m, max(0, x0 - m) : x1 + m], max_bytes=20_000)
    rng = random.Random(5)
    docs = [sample_result("unit-a", rng, match_share=1.0) for _ in range(5)]
    docs += [sample_result("unit-b", rng, match_share=0.0) for _ in range(2)]
    with_crop = sample_result("unit-a", rng, match_share=1.0, crop=crop)
    with_crop["case"] = {"tag": "case-7/body-2", "source": "qr"}
    DbResultStore(db).add([*docs, with_crop])
    return {"crop": with_crop["id"], "pending": 6, "all": 8}


def test_every_route_with_the_right_role(app: Any, config: Any, db: Any, tokens: dict[str, str]) -> None:
    generate_keypair(config.server.signing_key, config.server.signing_key.with_suffix(".pub"))
    w = World(app.test_client(), db, tokens, _add_results(db))
    for key, (status, case) in RIGHT_ROLE:
        r = case(w)
        assert r.status_code == status, (key, r.status_code, r.data[:500])
        check(r, key)
        assert "Set-Cookie" not in r.headers or key.endswith("openapi.json"), key  # no session is ever opened


# -- tokens on the account page and the command line -----------------------------------------------------


def test_account_page_creates_shows_once_and_revokes_tokens(app: Any, db: Any, as_reviewer: Browser) -> None:
    r = as_reviewer.post("/account/tokens", {"name": "nightly export", "expires_days": "30"})
    page = r.get_data(as_text=True)
    assert r.status_code == 201, page[-1500:]
    token = re.search(r'id="new-token-value">([^<]+)<', page).group(1)  # type: ignore[union-attr]
    assert token.startswith("efk_") and "nightly export" in page and page.count(token) == 1
    assert page.count('id="api-tokens"') == 1
    assert token not in as_reviewer.get("/account").get_data(as_text=True)  # shown once
    client = app.test_client()
    assert call(client, "GET /api/v1/results", "/api/v1/results", token).status_code == 200
    with db.read() as conn:
        (row,) = conn.execute(select(api_tokens_table)).all()
        (entry,) = audit.entries(conn, action="api_token.create")
    assert row.token_hash == auth.token_hash(token) and token not in str(tuple(row))
    assert 29 * 86400 < row.expires_at - row.created_at <= 30 * 86400 and row.last_used_at is not None
    assert entry.actor == "rita" and token not in str(entry.details) and entry.details["name"] == "nightly export"

    asked = as_reviewer.post("/account/tokens", {"name": "too much", "roles": "admin"})
    assert asked.status_code == 302 and "only+roles+its+user+holds" in asked.headers["Location"]
    assert as_reviewer.client.post("/account/tokens", data={"name": "no csrf"}).status_code == 403
    for days in ("0", "99999", "1.5"):
        bad = as_reviewer.post("/account/tokens", {"name": "odd expiry", "expires_days": days})
        assert bad.status_code == 302 and "error=" in bad.headers["Location"], days

    assert as_reviewer.post(f"/account/tokens/{row.id}/revoke").status_code == 302
    assert call(client, "GET /api/v1/results", "/api/v1/results", token).status_code == 401
    with db.read() as conn:
        assert [e.details["token_id"] for e in audit.entries(conn, action="api_token.revoke")] == [row.id]


def test_a_user_cannot_revoke_someone_elses_token(db: Any, users: Any, as_reviewer2: Browser) -> None:
    with db.write() as conn:
        info, _ = api_tokens.create_token(conn, users["reviewer"], "rita's")
    assert as_reviewer2.post(f"/account/tokens/{info.id}/revoke").status_code == 404
    with db.read() as conn:
        assert api_tokens.list_tokens(conn)[0].revoked_at is None


def test_token_commands(app: Any, config: Any, db: Any, users: Any, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from edgeface.cli.main import cli

    base = ["--set", f"server.database_url={config.server.database_url}", "server", "token"]
    out = tmp_path / "token"
    r = CliRunner().invoke(
        cli, [*base, "create", "ada", "--name", "deploy", "--role", "admin", "--token-file", str(out)]
    )
    assert r.exit_code == 0, r.output
    token = out.read_text().strip()
    assert oct(out.stat().st_mode & 0o777) == "0o600" and token not in r.output
    client = app.test_client()
    assert call(client, "GET /api/v1/publications", "/api/v1/publications", token).status_code == 200
    listed = CliRunner().invoke(cli, [*base, "list", "--user", "ada"])
    assert "\tada\tdeploy\tadmin\tactive\tlast used " in listed.stdout and token not in listed.output
    (entry,) = json.loads(CliRunner().invoke(cli, [*base, "list", "--json"]).stdout)["tokens"]
    assert entry["username"] == "ada" and entry["state"] == "active" and "token_hash" not in entry
    token_id = str(entry["id"])
    assert CliRunner().invoke(cli, [*base, "revoke", token_id]).exit_code == 0
    assert call(client, "GET /api/v1/publications", "/api/v1/publications", token).status_code == 401
    assert CliRunner().invoke(cli, [*base, "revoke", "999"]).exit_code != 0
    assert CliRunner().invoke(cli, [*base, "create", "rita", "--name", "x", "--role", "admin"]).exit_code != 0


def test_add_device_writes_its_token_privately_and_a_new_one_replaces_it(config: Any, db: Any, tmp_path: Path) -> None:
    """`edgeface server add-device`: the unit's bundle-download token, written 0600 (never echoed) or printed once;
    issuing again replaces the earlier token."""
    from click.testing import CliRunner

    from edgeface.cli.main import cli
    from edgeface.server import auth

    base = ["--set", f"server.database_url={config.server.database_url}", "server", "add-device", "unit-7"]
    out = tmp_path / "unit-token"
    r = CliRunner().invoke(cli, [*base, "--token-file", str(out)])
    assert r.exit_code == 0, r.output
    token = out.read_text().strip()
    assert oct(out.stat().st_mode & 0o777) == "0o600" and token not in r.output and str(out) in r.output
    with db.read() as conn:
        assert auth.check_device(conn, "unit-7", token)
        assert not auth.check_device(conn, "unit-7", token + "x")
    printed = CliRunner().invoke(cli, base)
    assert printed.exit_code == 0, printed.output
    second = printed.stdout.strip()
    with db.read() as conn:
        assert auth.check_device(conn, "unit-7", second)
        assert not auth.check_device(conn, "unit-7", token)  # replaced


def test_results_decisions_and_tokens_on_postgresql(postgres: str, tmp_path: Path) -> None:  # noqa: F811
    """The results listing, a result, decisions under the two-person rule (row locks), the pending count,
    cases (the database's JSON function), the audit export and token checks, on PostgreSQL."""
    import random

    from edgeface.server.app import create_app
    from edgeface.server.db import Database

    cfg = server_config(tmp_path, **{"server.database_url": postgres, "server.two_person_rule": "true"})
    db = Database(postgres)
    db.migrate()
    try:
        rita, rob = make_user(db, "pg-rita", "reviewer"), make_user(db, "pg-rob", "reviewer")
        with db.write() as conn:
            tok = {u.username: api_tokens.create_token(conn, u, "pg")[1] for u in (rita, rob)}
            revoked_info, revoked = api_tokens.create_token(conn, rita, "revoked")
            api_tokens.revoke_token(conn, revoked_info.id)
        rng = random.Random(9)
        docs = [sample_result("unit-pg", rng, match_share=1.0) for _ in range(3)]
        docs[0]["case"] = {"tag": "pg-case", "source": "folder"}
        DbResultStore(db).add(docs)
        client = create_app(cfg, db=db, migrate=False).test_client()
        first = docs[0]["id"]

        listed = call(client, "GET /api/v1/results", "/api/v1/results?device=unit-pg&per_page=2", tok["pg-rita"])
        page = check(listed, "GET /api/v1/results")
        assert page["total"] == 3 and len(page["results"]) == 2 and page["pages"] == 2
        one = check(
            call(client, "GET /api/v1/results/{rid}", f"/api/v1/results/{first}", tok["pg-rita"]),
            "GET /api/v1/results/{rid}",
        )
        top = one["candidates"][0]["identity_id"]

        key, url = "POST /api/v1/results/{rid}/decisions", f"/api/v1/results/{first}/decisions"
        r = call(client, key, url, tok["pg-rita"], json={"verdict": "confirm", "identity": top})
        assert r.status_code == 201 and check(r, key)["status"] == "awaiting_second"
        again = call(client, key, url, tok["pg-rita"], json={"verdict": "confirm", "identity": top})
        assert again.status_code == 409 and "second, different reviewer" in check(again, key)["detail"]
        counts = check(
            call(client, "GET /api/v1/results/pending-count", "/api/v1/results/pending-count", tok["pg-rob"]),
            "GET /api/v1/results/pending-count",
        )
        assert counts == {"pending": 2, "awaiting_second": 1}
        r = call(client, key, url, tok["pg-rob"], json={"verdict": "confirm", "identity": top})
        assert r.status_code == 201 and check(r, key)["status"] == "confirmed"

        cases = check(call(client, "GET /api/v1/cases", "/api/v1/cases", tok["pg-rob"]), "GET /api/v1/cases")
        assert cases["cases"] == [
            {"tag": "pg-case", "results": 1, "pending": 0, "last_captured": docs[0]["captured_at"]}
        ]
        exported = check(
            call(client, "GET /api/v1/audit", "/api/v1/audit?action=review", tok["pg-rob"]), "GET /api/v1/audit"
        )
        assert exported["verify"]["ok"] and [e["actor"] for e in exported["entries"]] == ["pg-rob", "pg-rita"]
        assert call(client, "GET /api/v1/results", "/api/v1/results", revoked).status_code == 401
    finally:
        db.dispose()
