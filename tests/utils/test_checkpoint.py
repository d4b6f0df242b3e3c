"""Tests for weaksam/utils/checkpoint.py: errors name the file; a good file round-trips."""

from __future__ import annotations

import pytest
import torch

from weaksam.errors import InputError
from weaksam.utils.checkpoint import read_checkpoint


def test_round_trip(tmp_path) -> None:
    p = tmp_path / "ok.pt"
    torch.save({"w": torch.arange(3.0)}, p)
    assert torch.equal(read_checkpoint(p)["w"], torch.arange(3.0))


def test_missing_file_names_it(tmp_path) -> None:
    p = tmp_path / "absent.pt"
    with pytest.raises(InputError, match="absent.pt.*SAM checkpoint not found"):
        read_checkpoint(p, "SAM checkpoint")


def test_corrupt_file_names_it(tmp_path) -> None:
    p = tmp_path / "bad.pt"
    p.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="bad.pt.*cannot read checkpoint"):
        read_checkpoint(p)
