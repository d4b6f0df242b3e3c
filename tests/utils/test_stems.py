"""Convolutional patch stem (weaksam/utils/stems.py)."""

from __future__ import annotations

import pytest
import torch

from weaksam.utils.stems import conv_stem


@pytest.mark.parametrize("patch", [2, 8, 16])
def test_conv_stem_grid_matches_patch_projection(patch):
    stem = conv_stem(3, 48, patch)
    convs = [m for m in stem if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == patch.bit_length() - 1 and convs[-1].out_channels == 48
    assert stem(torch.zeros(2, 3, 64, 96)).shape == (2, 48, 64 // patch, 96 // patch)


@pytest.mark.parametrize("patch", [1, 12])
def test_conv_stem_rejects_non_power_of_two(patch):
    with pytest.raises(ValueError, match="power-of-2"):
        conv_stem(3, 48, patch)
