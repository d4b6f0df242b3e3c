"""Backbones (shapes, stride, checkpoints) and the image-label pre-training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from weaksam.data.index import index_from_dict
from weaksam.data.weak import WeakView
from weaksam.errors import InputError
from weaksam.wsod.backbone import SmallCNN, build_backbone
from weaksam.wsod.imaging import pad_batch, scale_factor, transform_boxes
from weaksam.wsod.pretrain import pretrain_backbone


def test_small_cnn_shapes_and_stride():
    net = SmallCNN(widths=(8, 16, 32), stem=8)
    assert net.stride == 8 and net.out_channels == 32
    assert net.forward_features(torch.zeros(2, 3, 64, 48)).shape == (2, 32, 8, 6)


def test_vgg16_conv5_is_stride_16_without_download():
    net = build_backbone("vgg16")  # random init: weights only ever come from a local file
    assert net.stride == 16 and net.out_channels == 512
    assert net.forward_features(torch.zeros(1, 3, 64, 64)).shape == (1, 512, 4, 4)


def test_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="missing.pt: checkpoint not found"):
        build_backbone("small_cnn", checkpoint=tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"backbone": {"x": torch.zeros(1)}}, bad)
    with pytest.raises(InputError, match="bad.pt: checkpoint does not match"):
        build_backbone("small_cnn", checkpoint=bad)
    good = tmp_path / "good.pt"
    net = SmallCNN(widths=(4, 8), stem=4)
    torch.save({"backbone": net.state_dict()}, good)
    again = build_backbone("small_cnn", checkpoint=good, widths=(4, 8), stem=4)
    assert torch.equal(again.features[0].weight, net.features[0].weight)
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("resnet")


def test_imaging_helpers():
    # 100 x 50 image, short side to 25 -> factor 0.5; capped by max size 40 -> 0.4
    assert scale_factor(100, 50, 25, 1000) == 0.5
    assert scale_factor(100, 50, 25, 40) == 0.4
    b = transform_boxes(torch.tensor([[10.0, 0, 30, 20]]), 0.5, True, 25.0)
    assert b.tolist() == [[10.0, 0.0, 20.0, 10.0]]  # x in [5, 15] flipped in width 25
    batch = pad_batch([torch.ones(3, 5, 7), torch.ones(3, 6, 4)], multiple=4)
    assert batch.shape == (2, 3, 8, 8) and batch[1, :, :6, :4].min() == 1
    assert batch[1, :, :, 4:].abs().sum() == 0


def _view(tmp_path, n: int = 24) -> WeakView:
    """Class 1 = a red square, class 2 = a blue square; some images hold both."""
    rng = np.random.default_rng(0)
    images, anns = [], []
    for i in range(n):
        px = (rng.random((32, 32, 3)) * 40).astype(np.uint8)
        cats = [1] if i % 3 == 0 else [2] if i % 3 == 1 else [1, 2]
        for k, c in enumerate(cats):
            x0 = 2 + 14 * k
            px[x0 : x0 + 12, x0 : x0 + 12, 0 if c == 1 else 2] = 255
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": c,
                         "bbox": [x0, x0, 12, 12], "area": 144, "iscrowd": 0})
        Image.fromarray(px).save(tmp_path / f"{i}.png")
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": 32, "height": 32})
    cats = [{"id": 1, "name": "red"}, {"id": 2, "name": "blue"}]
    data = {"images": images, "categories": cats, "annotations": anns}
    return WeakView(index_from_dict(data, tmp_path / "x.json", image_root=tmp_path))


def test_pretraining_learns_image_labels(tmp_path):
    view = _view(tmp_path)
    seen: list[float] = []
    model, m = pretrain_backbone(view, widths=(8, 16), stem=8, convs=1, pool="avg",
                                 image_size=32, epochs=8, batch_size=8, lr=1e-2,
                                 weight_decay=0.0, seed=0, min_crop=0.8,
                                 on_epoch=lambda e, x: seen.append(x["loss"]))
    assert len(seen) == 8 and seen[-1] < seen[0]
    assert m["train_map"] > 90.0  # two colour classes are easy
