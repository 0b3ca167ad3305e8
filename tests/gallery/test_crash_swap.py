"""A unit that dies (SIGKILL) at any point of a sync keeps a working gallery, and the next sync finishes.

A child process runs a real sync against the real server with the store's ``checkpoint`` hook set to
kill itself at one chosen point (during the download, after it, after verification, after the move
into versions/, after the new symlink is made, after the swap). The parent then opens the store as a
restarted unit would and checks which version answers.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest
from gallery_helpers import Content

from edgeface.gallery.crypto import DeviceKey
from edgeface.gallery.publish import POINTER
from edgeface.gallery.sync import sync_once

CHILD = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from cryptography.hazmat.primitives import serialization
    from edgeface.gallery import store as store_mod
    from edgeface.gallery.crypto import DeviceKey
    from edgeface.gallery.sync import sync_once

    root, url, pub_pem, point, key_hex, emb = sys.argv[1:7]
    seen = {"n": 0}
    def checkpoint(name):
        if name == point:
            seen["n"] += 1
            if name != "downloading" or seen["n"] == 3:  # a few blocks into the download
                os.kill(os.getpid(), signal.SIGKILL)
    store_mod.checkpoint = checkpoint
    import edgeface.gallery.sync as sync_mod
    import edgeface.gallery.transport as transport_mod
    sync_mod.checkpoint = transport_mod.checkpoint = checkpoint
    trusted = [serialization.load_pem_public_key(Path(pub_pem).read_bytes())]
    store = store_mod.GalleryStore(Path(root), trusted=trusted, key=DeviceKey(bytes.fromhex(key_hex), "env"),
                                   embedder_sha256=emb)
    print(sync_once(store, url))
""")

POINTS_BEFORE_SWAP = ["downloading", "downloaded", "verified", "moved", "linked"]


# delta patch files are a few KiB (one block), so a delta has no point *during* its download to stop at
CASES = [("full", p) for p in [*POINTS_BEFORE_SWAP, "swapped"]] + [
    ("delta", p) for p in [*POINTS_BEFORE_SWAP[1:], "swapped"]
]


@pytest.mark.parametrize(("via", "point"), CASES)
def test_killed_mid_sync_leaves_a_working_gallery(tmp_path, signer, make_store, serve, point, via):
    from cryptography.hazmat.primitives import serialization

    base = Content(2500, seed=11)  # > 1 MiB of vectors, so "downloading" fires several times
    pub = tmp_path / "pub"
    base.publish(pub, signer)
    url, rec = serve(pub)
    key = DeviceKey(bytes(range(32)), "test")
    store = make_store(key)
    assert sync_once(store, url).installed == 1
    changed = base.change(25, 25) if via == "delta" else Content(2500, seed=12)
    changed.publish(pub, signer, delta_depth=1 if via == "delta" else 0)
    pem = tmp_path / "central.pub"
    pem.write_bytes(
        signer.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(store.root), url, str(pem), point, key.key.hex(), store.embedder_sha256],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr

    # the unit restarts: it opens whatever `current` points at
    expected = 2 if point == "swapped" else 1
    g = store.open()
    assert g is not None and g.version == expected
    probe = (changed if expected == 2 else base).vectors[-1]
    assert g.identify(probe).match is not None
    g.close()
    # and the next sync completes the switch (or finds nothing to do)
    seen = len(rec.requests)
    r = sync_once(store, url)
    assert r.installed == 2 and r.status in ("updated", "not_modified", "up_to_date"), r
    if point == "downloaded":  # it resumes with what the killed sync had fetched: no file is fetched again
        assert r.via == via, r
        signed = ("/delta.json", "/delta.sig", "/manifest.json", "/manifest.sig", "/" + POINTER)
        again = [q["path"] for q in rec.requests[seen:] if not q["path"].endswith(signed)]
        assert again == [], again
    g = store.open()
    assert g.version == 2 and g.identify(changed.vectors[-1]).match.identity == changed.entries[-1]["identity"]
    g.close()
    assert [d.name for d in (store.root / "versions").iterdir()] == ["v0000000002"]
