"""The gallery server's HTTP rules, checked over a real socket: ETag/304, Range/206/416, If-Range, safety."""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request

import pytest


def _get(url, headers=None):  # type: ignore[no-untyped-def]
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.fixture
def site(tmp_path, serve):  # type: ignore[no-untyped-def]
    root = tmp_path / "pub"
    (root / "v1").mkdir(parents=True)
    data = bytes(range(256)) * 40
    (root / "v1" / "vectors.npy").write_bytes(data)
    (root / "latest.json").write_text('{"version": 1}')
    (tmp_path / "secret").write_text("outside")
    url, _ = serve(root)
    return url, data


def test_etag_and_304(site):
    url, data = site
    code, h, body = _get(url + "v1/vectors.npy")
    assert code == 200 and body == data and h["ETag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert h["Accept-Ranges"] == "bytes"
    code, _, body = _get(url + "v1/vectors.npy", {"If-None-Match": h["ETag"]})
    assert code == 304 and body == b""
    code, _, _ = _get(url + "v1/vectors.npy", {"If-None-Match": '"other"'})
    assert code == 200


def test_ranges(site):
    url, data = site
    etag = _get(url + "v1/vectors.npy")[1]["ETag"]
    code, h, body = _get(url + "v1/vectors.npy", {"Range": "bytes=1000-"})
    assert code == 206 and body == data[1000:] and h["Content-Range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"
    code, _, body = _get(url + "v1/vectors.npy", {"Range": "bytes=10-19"})
    assert code == 206 and body == data[10:20]
    code, _, body = _get(url + "v1/vectors.npy", {"Range": "bytes=-5"})
    assert code == 206 and body == data[-5:]
    code, h, _ = _get(url + "v1/vectors.npy", {"Range": f"bytes={len(data)}-"})
    assert code == 416 and h["Content-Range"] == f"bytes */{len(data)}"
    # If-Range with the current ETag: the range; with a stale one: the whole (changed) file
    assert _get(url + "v1/vectors.npy", {"Range": "bytes=5-", "If-Range": etag})[0] == 206
    code, _, body = _get(url + "v1/vectors.npy", {"Range": "bytes=5-", "If-Range": '"stale"'})
    assert code == 200 and body == data


def test_only_files_inside_the_root(site):
    url, _ = site
    for path in ("../secret", "%2e%2e/secret", "v1/", "", ".hidden", "nope.json"):
        assert _get(url + path)[0] == 404, path
    req = urllib.request.Request(url + "latest.json", method="POST", data=b"x")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 405
    assert _get(url + "latest.json")[1]["Cache-Control"] == "no-cache"
