"""Fingerprinted checkpoints: resume on a match only, atomic save, unreadable files named."""

from __future__ import annotations

import pytest
import torch

from weaksam.engine.checkpoint import fingerprint, load_state, resume_state, save_state
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
