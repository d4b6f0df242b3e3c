"""Multi-scale + flip inference and per-class selection/normalisation."""

from __future__ import annotations

import numpy as np
import torch

from weaksam.clues.infer import (
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
