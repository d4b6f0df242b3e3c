"""Backbones: shapes, stride, checkpoints (weaksam.vision.backbones)."""

from __future__ import annotations

import pytest
import torch

from weaksam.errors import InputError
from weaksam.vision.backbones import SmallCNN, build_backbone, load_vgg16_fc
from weaksam.wsod.oicr import RoIBoxHead


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
