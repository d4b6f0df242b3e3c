"""weaksam.wsis.augment: large-scale jitter as the release's mapper chains detectron2's
ResizeScale and FixedSizeCrop (WeakSAM voc12_instance_new_baseline_dataset_mapper.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from weaksam.utils.boxes import masks_to_boxes
from weaksam.vision.imaging import rescale, to_tensor
from weaksam.wsis.augment import LsjConfig, large_scale_jitter, lsj_draws
from weaksam.wsis.data import View


def _lsj(t: int) -> LsjConfig:
    """Release scales, padding with the mean colour (0 after normalisation)."""
    return LsjConfig(image_size=t, min_scale=0.1, max_scale=2.0, pad_pixel=None)


def _view(h: int, w: int, masks: torch.Tensor, labels: list[int]) -> View:
    g = torch.Generator().manual_seed(0)
    boxes, _ = masks_to_boxes(masks.numpy().astype(bool))
    return View(image_id=1, flip=False, size=(h, w), factor=2.0,
                image=torch.rand(3, h, w, generator=g), features=None,
                boxes=torch.from_numpy(boxes), labels=torch.tensor(labels, dtype=torch.int64),
                masks=masks.to(torch.uint8))


def test_small_scale_is_padded_to_the_output_size() -> None:
    # 10 x 20 view, T 8, s 1: r = min(8 / 10, 8 / 20) = 0.4 -> 4 x 8, padded below to 8 x 8
    m = torch.zeros(1, 10, 20)
    m[0, :5, :10] = 1
    v = _view(10, 20, m, [3])
    out = large_scale_jitter(v, _lsj(8), 1.0, 0.7)
    assert out.size == (8, 8) and out.image.shape == (3, 8, 8) and out.masks.shape == (1, 8, 8)
    assert torch.equal(out.image[:, :4], rescale(v.image, 0.4))  # no crop: offset 0
    assert not out.image[:, 4:].any() and not out.masks[:, 4:].any()  # bottom padding
    # nearest: output row i reads row floor(2.5 i) -> rows 0, 1; columns 0..3
    assert out.boxes.tolist() == [[0.0, 0.0, 4.0, 2.0]] and out.labels.tolist() == [3]
    assert out.factor == pytest.approx(2.0 * 0.4)
    assert v.size == (10, 20) and v.masks.shape == (1, 10, 20)  # the view is not changed


def test_large_scale_crops_and_drops_vanished_instances() -> None:
    # 10 x 10 view, T 4, s 2: r 0.8 -> 8 x 8, crop position 1: the window [4:8, 4:8]
    m = torch.zeros(2, 10, 10)
    m[0, :5, :5] = 1  # resized rows / columns 0..3: outside the window
    m[1, 5:, :] = 1  # resized rows 4..7, every column
    v = _view(10, 10, m, [1, 2])
    out = large_scale_jitter(v, _lsj(4), 2.0, 1.0)
    assert out.image.shape == (3, 4, 4)
    assert torch.equal(out.image, rescale(v.image, 0.8)[:, 4:8, 4:8])
    assert out.labels.tolist() == [2] and out.masks.shape == (1, 4, 4)
    assert out.boxes.tolist() == [[0.0, 0.0, 4.0, 4.0]] and bool(out.masks.all())


def test_boxes_are_the_extents_of_the_jittered_masks() -> None:
    g = torch.Generator().manual_seed(3)
    cfg = _lsj(24)
    for k in range(20):
        masks = torch.zeros(4, 30, 40)
        for j in range(4):
            y, x = torch.randint(0, 25, (1,), generator=g), torch.randint(0, 35, (1,), generator=g)
            masks[j, y : y + 6, x : x + 5] = 1
        v = _view(30, 40, masks, [1, 2, 3, 4])
        s, u = lsj_draws(1, cfg, g)[0].tolist()
        out = large_scale_jitter(v, cfg, s, u)
        boxes, ok = masks_to_boxes(out.masks.numpy().astype(bool))
        assert ok.all(), k  # every kept instance has pixels
        assert torch.equal(out.boxes, torch.from_numpy(boxes)), k
        assert len(out.labels) == len(out.masks) == len(out.boxes) <= 4
        assert (out.boxes >= 0).all() and (out.boxes <= 24).all()


def test_draws_are_seeded_and_in_range() -> None:
    cfg = LsjConfig(image_size=8, min_scale=0.5, max_scale=1.5, pad_pixel=None)
    a = lsj_draws(500, cfg, torch.Generator().manual_seed(7))
    assert torch.equal(a, lsj_draws(500, cfg, torch.Generator().manual_seed(7)))
    assert not torch.equal(a, lsj_draws(500, cfg, torch.Generator().manual_seed(8)))
    assert a[:, 0].min() >= 0.5 and a[:, 0].max() < 1.5 and a[:, 0].max() > 1.4
    assert a[:, 1].min() >= 0.0 and a[:, 1].max() < 1.0


def test_empty_view_and_bad_settings() -> None:
    v = _view(6, 6, torch.zeros(0, 6, 6), [])
    out = large_scale_jitter(v, _lsj(5), 0.5, 0.3)
    assert out.masks.shape == (0, 5, 5) and out.boxes.shape == (0, 4) and len(out.labels) == 0
    with pytest.raises(ValueError, match="min_scale"):
        LsjConfig(image_size=8, min_scale=2.0, max_scale=1.0, pad_pixel=None)
    cached = View(image_id=1, flip=False, size=(6, 6), factor=1.0, image=None,
                  features=[torch.zeros(2, 3, 3)], boxes=v.boxes, labels=v.labels, masks=v.masks)
    with pytest.raises(ValueError, match="image"):
        large_scale_jitter(cached, _lsj(5), 1, 0)


def test_padding_takes_the_grey_value_normalised_as_the_image() -> None:
    # 10 x 20 view, T 8, s 1: 4 x 8 of image, rows 4..7 padding with grey 128 (FixedSizeCrop)
    v = _view(10, 20, torch.zeros(0, 10, 20), [])
    cfg = LsjConfig(image_size=8, min_scale=0.1, max_scale=2.0, pad_pixel=128.0)
    out = large_scale_jitter(v, cfg, 1.0, 0.0)
    assert torch.equal(out.image[:, :4], rescale(v.image, 0.4))
    grey = to_tensor(np.full((4, 8, 3), 128, dtype=np.uint8))
    assert torch.allclose(out.image[:, 4:], grey, atol=1e-6)
    # no padding when the scaled view covers the window: the same as without a pad value
    big = large_scale_jitter(v, cfg, 2.0, 0.5)
    assert torch.equal(big.image, large_scale_jitter(
        v, _lsj(8), 2.0, 0.5).image)
    with pytest.raises(ValueError, match="grey value"):
        LsjConfig(image_size=8, min_scale=0.1, max_scale=2.0, pad_pixel=300.0)
