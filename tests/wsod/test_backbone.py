"""Backbones (shapes, stride, checkpoints) and the image-label pre-training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from weaksam.data.index import index_from_dict
from weaksam.data.weak import WeakView
from weaksam.errors import InputError
from weaksam.wsod.backbone import SmallCNN, build_backbone, load_vgg16_fc
from weaksam.wsod.imaging import pad_batch, scale_factor, transform_boxes
from weaksam.wsod.oicr import RoIBoxHead
from weaksam.wsod.pretrain import pretrain_backbone


def test_small_cnn_shapes_and_stride():
    net = SmallCNN(widths=(8, 16, 32), stem=8)
    assert net.stride == 8 and net.out_channels == 32
    assert net.forward_features(torch.zeros(2, 3, 64, 48)).shape == (2, 32, 8, 6)


def test_vgg16_conv5_is_stride_16_without_download():
    net = build_backbone("vgg16")  # random init: weights only ever come from a local file
    assert net.stride == 16 and net.out_channels == 512
    assert net.forward_features(torch.zeros(1, 3, 64, 64)).shape == (1, 512, 4, 4)


@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory):
    """A randomly initialised torchvision VGG16 saved as a state dict (in place of the ImageNet
    file, which is never downloaded): (module, path)."""
    from torchvision.models import vgg16

    torch.manual_seed(0)
    ref = vgg16(weights=None)
    ckpt = tmp_path_factory.mktemp("vgg") / "vgg16.pth"
    torch.save(ref.state_dict(), ckpt)
    return ref, ckpt


def test_vgg16_of_the_releases_is_dilated_stride_8_with_conv1_conv2_frozen(vgg16_file):
    # ppengtang/oicr train.prototxt: pool4 commented out, conv5_x dilation 2, roi_pool5
    # spatial_scale 1/8, conv1_x / conv2_x lr_mult 0; wetectron VGG16-OICR, FREEZE_CONV_BODY_AT 2
    ref, ckpt = vgg16_file
    net = build_backbone("vgg16", checkpoint=ckpt, dilated=True, frozen_blocks=2)
    assert net.stride == 8
    assert net.forward_features(torch.zeros(1, 3, 64, 64)).shape == (1, 512, 8, 8)
    convs = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.dilation for c in convs] == [(1, 1)] * 10 + [(2, 2)] * 3
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in net.features) == 3
    # the ImageNet weights load unchanged (same tensors, dilation only changes the sampling)
    assert torch.equal(convs[12].weight, ref.features[28].weight)
    assert [c.weight.requires_grad for c in convs] == [False] * 4 + [True] * 9
    # dilated conv5 over the undilated conv4 map = the reference conv5 on a map whose
    # pool4 step is replaced by keeping every position: check conv5_1 at one output cell
    x = torch.randn(1, 3, 32, 32)
    f4 = ref.features[:23](x)  # conv4_3 + ReLU, stride 8
    ours = net.features[:25](x)  # ... + identity pool4 + dilated conv5_1
    expect = torch.nn.functional.conv2d(f4, ref.features[24].weight, ref.features[24].bias,
                                        padding=2, dilation=2)
    assert torch.allclose(ours, expect, atol=1e-5)
    with pytest.raises(ValueError, match="frozen_blocks"):
        build_backbone("vgg16", frozen_blocks=6)


def test_roi_head_fc6_fc7_start_from_the_vgg16_classifier(vgg16_file, tmp_path):
    # both releases load fc6 / fc7 from the ImageNet VGG16 (wetectron: the Identity at
    # classifier[0] aligns its keys with the checkpoint's); torchvision names them
    # classifier.0 and classifier.3
    ref, ckpt = vgg16_file
    head = RoIBoxHead(512, 8, roi_size=7, hidden=4096, op="roi_pool", dropout=0.5)
    load_vgg16_fc(head.fc, ckpt)
    fcs = [m for m in head.fc if isinstance(m, torch.nn.Linear)]
    assert torch.equal(fcs[0].weight, ref.classifier[0].weight)
    assert torch.equal(fcs[0].bias, ref.classifier[0].bias)
    assert torch.equal(fcs[1].weight, ref.classifier[3].weight)
    assert torch.equal(fcs[1].bias, ref.classifier[3].bias)
    small = RoIBoxHead(512, 8, roi_size=4, hidden=4096)
    with pytest.raises(InputError, match="vgg16.pth: 'classifier.0.weight' is"):
        load_vgg16_fc(small.fc, ckpt)
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "conv_only.pth")
    with pytest.raises(InputError, match="conv_only.pth: checkpoint has no 'classifier.0'"):
        load_vgg16_fc(head.fc, tmp_path / "conv_only.pth")


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
