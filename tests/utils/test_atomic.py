"""Atomic outputs (weaksam/utils/atomic.py): all or nothing, old output kept on failure."""

from __future__ import annotations

import json

import pytest

from weaksam.utils.atomic import atomic_dir, atomic_path, write_json


def _names(d):
    return sorted(p.name for p in d.iterdir())


def test_atomic_path_success_replaces_and_keeps_suffix(tmp_path):
    target = tmp_path / "sub" / "out.json"
    with atomic_path(target) as tmp:
        assert tmp.suffix == ".json" and tmp.parent == target.parent and tmp != target
        tmp.write_text("new")
        assert not target.exists()  # nothing visible until the end
    assert target.read_text() == "new"
    assert _names(target.parent) == ["out.json"]


def test_atomic_path_failure_keeps_old_file_and_leaves_nothing(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
        tmp.write_text("half written")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert _names(tmp_path) == ["out.txt"]
    fresh = tmp_path / "fresh.txt"
    with pytest.raises(KeyboardInterrupt), atomic_path(fresh) as tmp:
        tmp.write_text("x")
        raise KeyboardInterrupt
    assert not fresh.exists() and _names(tmp_path) == ["out.txt"]


def test_atomic_dir(tmp_path):
    target = tmp_path / "outs"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(ValueError), atomic_dir(target) as tmp:
        (tmp / "new.txt").write_text("new")
        raise ValueError
    assert _names(target) == ["old.txt"] and _names(tmp_path) == ["outs"]
    with atomic_dir(target) as tmp:
        (tmp / "new.txt").write_text("new")
    assert _names(target) == ["new.txt"]  # replaced whole, old file gone
    assert _names(tmp_path) == ["outs"]   # no temporary or .old folder left


def test_write_json_sorted_and_stable(tmp_path):
    p = tmp_path / "m.json"
    write_json(p, {"b": 1, "a": [1.5, None]})
    first = p.read_bytes()
    assert json.loads(first) == {"a": [1.5, None], "b": 1}
    assert first.index(b'"a"') < first.index(b'"b"') and first.endswith(b"\n")
    write_json(p, {"a": [1.5, None], "b": 1})
    assert p.read_bytes() == first
