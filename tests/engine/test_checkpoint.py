"""Fingerprinted checkpoints: resume on a match only, atomic save, unreadable files named."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from weaksam.engine import checkpoint
from weaksam.engine.checkpoint import (
    fingerprint,
    load_state,
    resume_state,
    save_state,
    source_digest,
)
from weaksam.errors import InputError


def test_fingerprint_depends_on_settings_and_file_bytes(tmp_path):
    f = tmp_path / "pgt.json"
    f.write_text("a")
    base = fingerprint({"lr": 0.1, "seed": 0}, files=(f,))
    assert base == fingerprint({"seed": 0, "lr": 0.1}, files=(f,))  # key order is irrelevant
    assert base != fingerprint({"lr": 0.2, "seed": 0}, files=(f,))
    f.write_text("b")
    assert base != fingerprint({"lr": 0.1, "seed": 0}, files=(f,))
    # a tuple of parts hashes as its JSON list: the retraining stages' fingerprints
    assert fingerprint(("run", 0)) == fingerprint(["run", 0])


def test_matching_fingerprint_resumes_other_starts_fresh(tmp_path):
    path = tmp_path / "ckpt" / "last.pt"
    assert resume_state(path, "fp") is None  # no checkpoint yet
    save_state(path, {"model": {"w": torch.ones(2)}, "epoch": 3, "fingerprint": "fp"})
    state = resume_state(path, "fp")
    assert state is not None and state["epoch"] == 3
    assert torch.equal(state["model"]["w"], torch.ones(2))
    assert resume_state(path, "other") is None
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary file left


def test_equal_states_give_equal_bytes(tmp_path):
    state = {"model": {"w": torch.arange(4.0)}, "epoch": 0, "fingerprint": "fp"}
    save_state(tmp_path / "a" / "last.pt", state)
    save_state(tmp_path / "b" / "last.pt", state)
    assert (tmp_path / "a" / "last.pt").read_bytes() == (tmp_path / "b" / "last.pt").read_bytes()


def test_truncated_checkpoint_is_an_input_error_naming_the_file(tmp_path):
    path = tmp_path / "last.pt"
    save_state(path, {"model": {"w": torch.ones(100)}, "epoch": 0, "fingerprint": "fp"})
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(InputError, match=r"last\.pt: cannot read WSIS checkpoint"):
        resume_state(path, "fp", "WSIS checkpoint")


def test_a_checkpoint_that_is_not_a_dict_is_an_input_error(tmp_path):
    path = tmp_path / "x.pt"
    torch.save([1, 2], path)
    with pytest.raises(InputError, match=r"x\.pt: not a training checkpoint \(a dict\)"):
        load_state(path)


def test_source_digest_covers_every_module_of_the_project(tmp_path):
    def tree(name: str, files: dict[str, str]) -> Path:
        root = tmp_path / name
        for rel, text in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        return root

    base = {"weaksam/a.py": "x = 1\n", "weaksam/sub/b.py": "", "pipeline/s.py": "y = 2\n"}
    ref = source_digest(tree("ref", base))
    assert ref == source_digest(tree("same", base))  # paths relative to the root
    assert ref == source_digest(tree("cache", {**base, "weaksam/__pycache__/a.pyc": "z"}))
    assert ref != source_digest(tree("edit", {**base, "weaksam/sub/b.py": "# edit\n"}))
    assert ref != source_digest(tree("new", {**base, "pipeline/t.py": ""}))
    assert ref != source_digest(tree("move", {"weaksam/a2.py": "x = 1\n", "weaksam/sub/b.py": "",
                                              "pipeline/s.py": "y = 2\n"}))
    assert len(source_digest()) == 64  # the project this test runs in


def test_fingerprint_changes_with_the_code(monkeypatch):
    """A checkpoint of other code is not resumed: an edit reruns the stage from the start."""
    before = fingerprint({"lr": 0.1})
    monkeypatch.setattr(checkpoint, "source_digest", lambda: "0" * 64)
    assert fingerprint({"lr": 0.1}) != before
