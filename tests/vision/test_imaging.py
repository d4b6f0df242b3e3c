"""Image tensors: scale factors, box transforms, padding (weaksam.vision.imaging)."""

from __future__ import annotations

import numpy as np
import torch

from weaksam.vision.imaging import (
    pad_batch,
    rescale,
    scale_factor,
    scaled_size,
    to_tensor,
    transform_boxes,
    valid_mask,
)


def test_imaging_helpers():
    # 100 x 50 image, short side to 25 -> factor 0.5; capped by max size 40 -> 0.4
    assert scale_factor(100, 50, 25, 1000) == 0.5
    assert scale_factor(100, 50, 25, 40) == 0.4
    b = transform_boxes(torch.tensor([[10.0, 0, 30, 20]]), 0.5, True, 25.0)
    assert b.tolist() == [[10.0, 0.0, 20.0, 10.0]]  # x in [5, 15] flipped in width 25
    batch = pad_batch([torch.ones(3, 5, 7), torch.ones(3, 6, 4)], multiple=4)
    assert batch.shape == (2, 3, 8, 8) and batch[1, :, :6, :4].min() == 1
    assert batch[1, :, :, 4:].abs().sum() == 0


def test_pad_batch_any_channels_and_valid_mask():
    maps = [torch.full((5, 2, 3), 1.0), torch.full((5, 4, 1), 2.0)]
    out = pad_batch(maps)
    assert out.shape == (2, 5, 4, 3)
    assert torch.equal(out[0, :, :2, :3], maps[0]) and out[0, :, 2:].abs().sum() == 0
    assert torch.equal(out[1, :, :4, :1], maps[1]) and out[1, :, :, 1:].abs().sum() == 0
    mask = valid_mask([(2, 3), (4, 1)], (4, 3))
    assert mask.dtype == torch.bool
    assert mask.tolist() == [[[True] * 3, [True] * 3, [False] * 3, [False] * 3],
                             [[True, False, False]] * 4]


def test_to_tensor_and_rescale():
    img = np.zeros((4, 6, 3), np.uint8)
    img[..., 0] = 255
    t = to_tensor(img)
    assert t.shape == (3, 4, 6)
    assert torch.allclose(t[0], torch.full((4, 6), (1 - 0.485) / 0.229))
    assert rescale(t, 0.5).shape == (3, 2, 3) == (3, *scaled_size(4, 6, 0.5))
    assert rescale(t, 1.0) is t
