"""Deltas reproduce the target bundle byte for byte: removals, additions, renamed identities."""

from __future__ import annotations

import json

import numpy as np
from gallery_helpers import Content

from edgeface.gallery.bundle import ENTRIES, IDENTITIES, INDEX, LABELS, VECTORS, PlainDir
from edgeface.gallery.delta import DeltaSpec, apply_delta
from edgeface.gallery.manifest import Manifest


def _apply(pub, base_v, target_v, tmp_path, signer):  # type: ignore[no-untyped-def]
    base = pub / f"v{base_v:010d}"
    d = pub / "deltas" / f"{base_v}-{target_v}"
    spec = DeltaSpec.from_signed((d / "delta.json").read_bytes(), (d / "delta.sig").read_bytes(), [signer.public_key()])
    target = Manifest.from_bytes((d / "manifest.json").read_bytes())
    out = tmp_path / "applied"
    files, index_differs = apply_delta(
        np.load(base / VECTORS, mmap_mode="r"),
        (base / ENTRIES).read_bytes().splitlines(keepends=True),
        (base / IDENTITIES).read_bytes().splitlines(keepends=True),
        {n: d / n for n in spec.files},  # the patch files and those carried whole (normalisation)
        target,
        PlainDir(out),
    )
    return spec, target, files, index_differs, out


def test_delta_reproduces_target(tmp_path, signer):
    pub = tmp_path / "pub"
    v1 = Content(400, seed=21)
    v1.publish(pub, signer)
    v2 = v1.change(remove=7, add=5)
    v2.identities[10]["name"] = "Renamed Person"  # an identity edit travels as a put in place
    p2 = v2.publish(pub, signer)
    spec, target, files, index_differs, out = _apply(pub, 1, 2, tmp_path, signer)
    assert (spec.removed, spec.added) == (7, 5)
    assert not index_differs
    for name in (VECTORS, ENTRIES, IDENTITIES, LABELS, INDEX):
        assert (out / name).read_bytes() == (p2.dir / name).read_bytes(), name
    ops = [json.loads(x) for x in (pub / "deltas" / "1-2" / "identity_ops.ndjson").read_text().splitlines()]
    assert any(o["op"] == "put" and "Renamed Person" in o["line"] for o in ops)
    assert spec.total_bytes < 0.1 * target.total_bytes


def test_deltas_from_older_versions(tmp_path, signer):
    pub = tmp_path / "pub"
    v1 = Content(300, seed=22)
    v1.publish(pub, signer)
    v2 = v1.change(3, 3, seed=1)
    v2.publish(pub, signer)
    v3 = v2.change(2, 4, seed=2)
    p3 = v3.publish(pub, signer)
    assert set(p3.deltas) == {1, 2}
    _, _, files, _, out = _apply(pub, 1, 3, tmp_path, signer)
    assert (out / VECTORS).read_bytes() == (p3.dir / VECTORS).read_bytes()
    assert files[ENTRIES] == p3.manifest.files[ENTRIES]
