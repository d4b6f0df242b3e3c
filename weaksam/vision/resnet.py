"""The one ResNet-50 loader of the paper profile: a local torchvision ImageNet state dict (never
downloaded) -> the trunk each model needs.

Shorthand: B images, (H, W) input px (padded to a multiple of 32), stage n = ResNet's ``conv{n}_x``
(C2..C5: ``layer1`` .. ``layer4``, strides 4, 8, 16, 32; 256, 512, 1024, 2048 channels).

- :func:`resnet50_trunk`: torchvision ``resnet50(weights=None)`` with frozen BatchNorm
  (detectron2's and torchvision's detection default) or plain BatchNorm kept in eval mode, its
  weights from ``checkpoint`` loaded ``strict`` (the rule ``weaksam.weights.check_file``
  checks: ``fc.*`` included, ``*.num_batches_tracked`` optional).
- :func:`resnet50_fpn`: the trunk + FPN of torchvision's ``*rcnn_resnet50_fpn`` (Faster R-CNN
  with RoI drop, Mask R-CNN).
- :class:`ResNetLevels`: the trunk's C2..C5 (or a suffix of them) as a list (Mask2Former: C2-C5;
  the query-based detector: C3-C5).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torchvision.models import ResNet, resnet50
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from weaksam.errors import InputError
from weaksam.utils.checkpoint import read_checkpoint

#: channels and stride (input px per cell) of stages 2..5
STAGE_CHANNELS = {2: 256, 3: 512, 4: 1024, 5: 2048}
STAGE_STRIDES = {2: 4, 3: 8, 4: 16, 5: 32}


def resnet50_trunk(checkpoint: str | Path | None, frozen_bn: bool = True) -> ResNet:
    """torchvision ResNet-50 (``FrozenBatchNorm2d`` when ``frozen_bn``, else ``BatchNorm2d``)
    with the weights of the torchvision state dict at ``checkpoint`` (None: random init, tests
    and cost estimates only). InputError naming the file when it is missing, unreadable
    (truncated), not a dict, or does not match ResNet-50 (missing / unexpected keys, shapes)."""
    net = resnet50(weights=None, norm_layer=FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d)
    if checkpoint is None:
        return net
    path = Path(checkpoint)
    state = read_checkpoint(path, "ResNet-50 checkpoint")
    if not isinstance(state, dict):
        raise InputError(path, f"not a torchvision resnet50 state dict (holds a "
                               f"{type(state).__name__})")
    try:
        net.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError) as e:
        raise InputError(path, f"not a torchvision resnet50 state dict ({e})") from e
    return net


def resnet50_fpn(trunk: ResNet, trainable_layers: int) -> BackboneWithFPN:
    """torchvision's ResNet-50 FPN body (``out_channels`` 256; levels "0".."3" at strides 4..32
    from C2..C5, plus "pool", torchvision's ``LastLevelMaxPool``) on ``trunk``, built from the
    public ``BackboneWithFPN``. The stem and the first ``5 - trainable_layers`` stages get no
    gradient (torchvision's ``trainable_backbone_layers``, detectron2's ``FREEZE_AT``):
    ``trainable_layers`` in 0..5 trains ``layer4`` .. ``layer1`` then ``conv1`` (and ``bn1``
    at 5), the rule of torchvision's ``resnet_fpn_backbone``. ValueError outside 0..5."""
    if not 0 <= trainable_layers <= 5:
        raise ValueError(f"trainable_layers must be in 0..5, got {trainable_layers}")
    train = ("layer4", "layer3", "layer2", "layer1", "conv1")[:trainable_layers]
    if trainable_layers == 5:
        train += ("bn1",)
    for name, p in trunk.named_parameters():
        if not name.startswith(train):
            p.requires_grad_(False)
    return BackboneWithFPN(trunk, return_layers={f"layer{n - 1}": str(n - 2) for n in (2, 3, 4, 5)},
                           in_channels_list=[STAGE_CHANNELS[n] for n in (2, 3, 4, 5)],
                           out_channels=256, extra_blocks=LastLevelMaxPool())


class ResNetLevels(nn.Module):
    """``forward(x (B, 3, H, W)) -> [(B, D_n, H / s_n, W / s_n) for n in stages]`` of a ResNet
    ``trunk`` (its ``fc`` is not kept). ``frozen_stages``: the stem and stages 2..n get no
    gradient (0: none; the DETR family freezes the stem and C2: 2). BatchNorm2d layers stay in
    eval mode (frozen statistics) whatever ``train()`` says."""

    def __init__(self, trunk: ResNet, stages: Sequence[int] = (2, 3, 4, 5),
                 frozen_stages: int = 0) -> None:
        super().__init__()
        self.stages = tuple(int(n) for n in stages)
        if not self.stages or list(self.stages) != list(range(self.stages[0], 6)):
            raise ValueError(f"stages must be a suffix of 2..5, got {list(stages)}")
        self.in_channels = tuple(STAGE_CHANNELS[n] for n in self.stages)
        self.strides = tuple(STAGE_STRIDES[n] for n in self.stages)
        self.stem = nn.Sequential(trunk.conv1, trunk.bn1, trunk.relu, trunk.maxpool)
        self.layer1, self.layer2 = trunk.layer1, trunk.layer2
        self.layer3, self.layer4 = trunk.layer3, trunk.layer4
        frozen = [self.stem, self.layer1, self.layer2, self.layer3, self.layer4][:frozen_stages]
        for m in frozen:
            m.requires_grad_(False)

    def train(self, mode: bool = True) -> ResNetLevels:
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        out = []
        for n, layer in zip((2, 3, 4, 5), (self.layer1, self.layer2, self.layer3, self.layer4),
                            strict=True):
            x = layer(x)
            if n in self.stages:
                out.append(x)
        return out
