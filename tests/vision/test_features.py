"""Cached feature maps as model input: one padding (weaksam.vision.features)."""

from __future__ import annotations

import torch

from weaksam.vision.features import FeatureBatch
from weaksam.vision.imaging import pad_batch


def test_feature_batch_pads_bottom_right_with_its_mask():
    a, b = torch.randn(4, 3, 5), torch.randn(4, 6, 2)
    fb = FeatureBatch([a, b], [(24, 40), (48, 16)])
    assert len(fb) == 2
    out = fb.padded()
    assert out.shape == (2, 4, 6, 5)
    assert torch.equal(out[0, :, :3, :5], a) and torch.equal(out[1, :, :6, :2], b)
    assert out[0, :, 3:].abs().sum() == 0 and out[1, :, :, 2:].abs().sum() == 0
    assert torch.equal(out, pad_batch([a, b]))  # the one padding
    mask = fb.mask()
    assert mask.shape == (2, 6, 5)
    assert int(mask[0].sum()) == 15 and mask[0, :3, :5].all()
    assert int(mask[1].sum()) == 12 and mask[1, :6, :2].all()
