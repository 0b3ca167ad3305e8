"""LFW names that are one person are merged only when asked, and every listed name exists in LFW."""

from __future__ import annotations

from pathlib import Path

from edgeface.evaluation import lfw


def test_duplicates_merge_only_when_asked(lfw_root: Path) -> None:
    plain, merged = lfw.people(lfw_root), lfw.people(lfw_root, merge_duplicates=True)
    assert set(lfw.DUPLICATES) | set(lfw.DUPLICATES.values()) <= set(plain)  # every name is a real LFW name
    assert not set(lfw.DUPLICATES) & set(merged) and len(merged) == len(plain) - len(lfw.DUPLICATES)
    for alias, name in lfw.DUPLICATES.items():
        assert merged[name] == sorted(plain[name] + plain[alias])
    assert sum(map(len, merged.values())) == sum(map(len, plain.values()))
