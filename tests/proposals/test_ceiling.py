"""Ideal-prompt ceiling (weaksam/proposals/ceiling.py): innermost point, per-object IoUs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.sam.tiny import TINY_SAM
from weaksam.proposals.ceiling import ideal_prompt_ious, innermost_point
from weaksam.proposals.sam import PromptingConfig, SamPromptProposer
from weaksam.sam.model import build_small_sam


def test_innermost_point_rectangle_ring_and_border():
    m = np.zeros((20, 30), bool)
    m[4:11, 10:25] = True  # 7 rows: the centre row 7 is farthest from the background
    x, y = innermost_point(m)
    assert y == 7 and 10 <= x < 25
    yy, xx = np.mgrid[:41, :41]
    r = np.hypot(yy - 20, xx - 20)
    x, y = innermost_point((r >= 10) & (r < 16))  # a ring: the point is in the band, not the hole
    assert 10 <= np.hypot(x - 20, y - 20) < 16
    edge = np.zeros((10, 10), bool)
    edge[:, :3] = True  # touching the frame: the frame counts as outside, so column 1
    assert innermost_point(edge)[0] == 1.0
    with pytest.raises(ValueError, match="empty"):
        innermost_point(np.zeros((5, 5), bool))


def test_ideal_prompt_ious_ranges_and_subset_bound():
    torch.manual_seed(0)
    prop = SamPromptProposer(build_small_sam(TINY_SAM), PromptingConfig(mask_indices=(1,)))
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)
    boxes = np.array([[5, 5, 30, 25], [40, 10, 66, 48]], np.float64)
    pts = (boxes[:, :2] + boxes[:, 2:]) / 2
    r = ideal_prompt_ious(prop, img, pts, boxes)
    for v in (r.kept, r.all3, r.box):
        assert v.shape == (2,) and np.all((v >= 0) & (v <= 1))
    assert np.all(r.kept <= r.all3)  # the kept mask is one of the three
    again = ideal_prompt_ious(prop, img, pts, boxes)
    assert np.array_equal(again.all3, r.all3) and np.array_equal(again.box, r.box)
    empty = ideal_prompt_ious(prop, img, np.zeros((0, 2)), np.zeros((0, 4)))
    assert len(empty.kept) == 0
