"""Stage helpers of pipeline/wsod.py: proposal sources (Table 4 filters) and per-image prep."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.wsod import load_source, prepare_boxes
from weaksam.errors import InputError
from weaksam.proposals.store import ImageProposals, ProposalSet, save_proposals


def _props() -> ProposalSet:
    ps = ProposalSet(["dense", "cam_fine", "cam_coarse", "cross"])
    ps.images[7] = ImageProposals(
        np.array([[0, 0, 10, 10], [-5, 2, 30, 40], [3, 3, 4, 20], [1, 1, 9, 9], [2, 2, 8, 8]],
                 np.float32),
        np.array([0.5, 0.9, 0.99, 0.5, 0.7], np.float32),
        np.array([0, 1, 2, 3, 0], np.uint8))
    ps.images[8] = ImageProposals.empty()
    return ps


def test_prepare_boxes_clips_filters_and_caps_by_score():
    ps = _props()
    b = prepare_boxes(ps, 7, width=20, height=20, cap=3, min_size=2)
    # box 2 is 1 px wide -> dropped; box 1 clipped to the 20 x 20 image; order by score,
    # ties (0.5, 0.5) in file order; cap 3 keeps the three best
    assert b.tolist() == [[0, 2, 20, 20], [2, 2, 8, 8], [0, 0, 10, 10]]
    assert b.dtype == np.float32
    assert prepare_boxes(ps, 8, 20, 20, 3, 2).shape == (0, 4)
    assert prepare_boxes(ps, 99, 20, 20, 3, 2).shape == (0, 4)  # image absent from the file


def test_load_source_filters_weaksam_by_table4_variant(tmp_path):
    save_proposals(tmp_path / "weaksam" / "trainval.npz", _props())
    dense = load_source("dense", "trainval", tmp_path)
    assert len(dense.images[7]) == 2
    dfc = load_source("dense_fine_coarse", "trainval", tmp_path)
    assert len(dfc.images[7]) == 4
    assert len(load_source("weaksam", "trainval", tmp_path).images[7]) == 5
    with pytest.raises(InputError, match="ss/trainval.npz: proposals file not found"):
        load_source("ss", "trainval", tmp_path)
