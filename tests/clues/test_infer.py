"""Multi-scale + flip inference and per-class selection/normalisation."""

from __future__ import annotations

import numpy as np
import torch

from weaksam.clues.infer import (
    base_size,
    cross_map_index,
    group_by_size,
    minmax,
    multiscale_maps,
    present_classes,
    scaled_size,
    select_and_normalise,
)
from weaksam.clues.model import CluesViT


def test_scaled_size():
    assert scaled_size(96, 1.0, 8) == 96
    assert scaled_size(96, 0.8, 8) == 80  # 76.8 / 8 = 9.6 -> 10 patches
    assert scaled_size(96, 1.2, 8) == 112  # 115.2 / 8 = 14.4 -> 14 patches
    assert scaled_size(8, 0.1, 8) == 8


def test_multiscale_shapes_and_flip_symmetry():
    torch.manual_seed(0)
    m = CluesViT(num_classes=3, img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
                 cross_layers=[1])
    img = torch.randint(0, 255, (1, 3, 32, 32), dtype=torch.uint8)
    out = multiscale_maps(m, img, scales=(1.0, 0.8, 1.2), flip=True)
    assert out["probs"].shape == (1, 3)
    assert out["cam_coarse"].shape == (1, 3, 4, 4) and out["cross"].shape == (1, 1, 3, 4, 4)
    each = multiscale_maps(m, img, scales=(1.0,), flip=False, cross_heads="each")
    assert each["cross"].shape == (1, 2, 3, 4, 4)  # Ls * Hd = 1 * 2 maps per class
    assert (out["cam_fine"] >= 0).all()
    # with flips included, the maps of a mirrored image are the mirrored maps
    out_f = multiscale_maps(m, img.flip(-1), scales=(1.0,), flip=True)
    out_1 = multiscale_maps(m, img, scales=(1.0,), flip=True)
    assert torch.allclose(out_f["cam_coarse"], out_1["cam_coarse"].flip(-1), atol=1e-4)
    assert torch.allclose(out_f["probs"], out_1["probs"], atol=1e-5)


def test_present_classes():
    p = np.array([0.2, 0.7, 0.4])
    assert present_classes(p, np.array([1.0, 0, 1.0]), 0.5).tolist() == [0, 2]
    assert present_classes(p, None, 0.5).tolist() == [1]
    assert present_classes(p, None, 0.9).tolist() == [1]  # none above: top-1


def test_select_and_normalise():
    cam = np.zeros((3, 2, 2), np.float32)
    cam[0] = [[1, 3], [5, 9]]
    cam[2] = 4.0  # constant -> zeros
    cross = np.stack([cam, 2 * cam])  # (Ls=2, C=3, 2, 2)
    out = select_and_normalise({"cam_coarse": cam, "cam_fine": cam, "cross": cross},
                               np.array([0, 2]))
    np.testing.assert_allclose(out["cam_fine"][0], [[0, 0.25], [0.5, 1.0]])
    assert out["cam_fine"][1].sum() == 0
    assert out["cross"].shape == (2, 2, 2, 2)
    np.testing.assert_allclose(out["cross"][0, 1], [[0, 0.25], [0.5, 1.0]])
    assert minmax(np.zeros((1, 2, 2))).sum() == 0


def test_base_size_modes():
    """WeakTr's VOC07DatasetMS keeps each image's own size and aspect ratio (scale 1.0 =
    original pixels); "area" keeps the aspect at about input_size^2 pixels; "square" squashes."""
    assert base_size(120, 200, "square", 96, 8) == (96, 96)
    assert base_size(120, 200, "original", 96, 8) == (120, 200)
    h, w = base_size(120, 200, "area", 96, 8)
    assert (h, w) == (72, 120)  # 96 / sqrt(24000) = 0.6197: 74.4 -> 9 x 8, 123.9 -> 15 x 8
    assert abs(h * w - 96 * 96) / (96 * 96) < 0.1 and w > h
    assert base_size(500, 375, "original", 224, 16) == (496, 368)  # VOC: 31 x 23 tokens


def test_non_square_multiscale_keeps_aspect():
    """An image at its own aspect ratio gives maps on its own grid; scales resize both sides."""
    torch.manual_seed(0)
    m = CluesViT(num_classes=2, img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
                 cross_layers=[0, 1])
    img = torch.randint(0, 255, (1, 3, 24, 48), dtype=torch.uint8)
    out = multiscale_maps(m, img, scales=(1.0, 0.8, 1.2), flip=True, cross_heads="each")
    assert out["cam_fine"].shape == (1, 2, 3, 6)
    assert out["cross"].shape == (1, 4, 2, 3, 6)
    # a horizontally mirrored input gives mirrored maps (flip TTA is symmetric)
    a = multiscale_maps(m, img, scales=(1.0,), flip=True)
    b = multiscale_maps(m, img.flip(-1), scales=(1.0,), flip=True)
    assert torch.allclose(a["cam_coarse"], b["cam_coarse"].flip(-1), atol=1e-4)


def test_cross_map_index_and_grouping():
    layers, heads = cross_map_index([8, 9], 3, "each")
    assert layers.tolist() == [8, 8, 8, 9, 9, 9] and heads.tolist() == [0, 1, 2, 0, 1, 2]
    layers, heads = cross_map_index([8, 9], 3, "mean")
    assert layers.tolist() == [8, 9] and heads.tolist() == [-1, -1]
    sizes = [(8, 16), (16, 8), (8, 16), (8, 16)]
    assert group_by_size(sizes, 2) == [[0, 2], [1], [3]]
