"""Mask R-CNN (He et al., 2017) for the WSIS retraining of paper Tables 2 and 3, from
torchvision's components, able to run on features computed once by a frozen backbone.

Shorthand: B images, C classes (labels 1..C, 0 background), h x w input pixels (rescaled,
see :mod:`weaksam.wsis.data`), D feature channels, R detections.

- Paper profile: ResNet-50 FPN (torchvision ``maskrcnn_resnet50_fpn`` layout, detectron2's
  defaults: RPN 2000/1000 proposals, 512 RoIs per image, 4 x conv256 mask head), its ResNet-50
  trunk from a local ImageNet checkpoint (never downloaded), trained end to end.
- Default profile: one feature level, the frozen ``backbone_pretrain`` small CNN (stride 8),
  with smaller heads (``representation``, ``mask_layers``, RoIs per image): its features
  come cached in the :class:`~weaksam.wsis.data.View` s, so training runs the heads only.

``forward(batch)`` takes a :class:`Batch` (padded images, or padded cached features) and
returns torchvision's dict of named losses in train mode, or per image
``{"boxes" (R, 4) xyxy in input pixels, "labels" (R,), "scores" (R,), "masks" (R, 1, 28, 28)
probabilities in box coordinates}`` in eval mode (:func:`paste_to_image` puts them in place).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import paste_masks_in_image
from torchvision.ops import MultiScaleRoIAlign

from weaksam.vision.backbones import MEAN, STD
from weaksam.vision.resnet import resnet50_fpn, resnet50_trunk


@dataclass
class Batch:
    """Model input: ``images (B, 3, H, W)`` zero-padded normalised images, or ``features``
    (one padded ``(B, D_l, h_l, w_l)`` per level); ``sizes`` the unpadded ``(h, w)`` of each;
    ``targets`` (training) per image ``{"boxes", "labels", "masks" (G, h, w) uint8}``."""

    sizes: list[tuple[int, int]]
    images: torch.Tensor | None = None
    features: list[torch.Tensor] | None = None
    targets: list[dict[str, torch.Tensor]] | None = None


class _Levels(nn.Module):
    """A backbone giving torchvision's ``OrderedDict`` of levels from a ``stage_features``-style
    callable (used only when features are not cached)."""

    def __init__(self, net: nn.Module, level: int, out_channels: int) -> None:
        super().__init__()
        self.net, self.level, self.out_channels = net, level, out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        from weaksam.wsis.data import stage_features

        return OrderedDict([("0", stage_features(self.net, x)[self.level])])


class FeatureMaskRCNN(nn.Module):
    """torchvision ``MaskRCNN`` whose backbone can be skipped (module docstring)."""

    def __init__(self, rcnn: MaskRCNN, stride: int, frozen_backbone: bool) -> None:
        super().__init__()
        self.rcnn = rcnn
        self.stride = int(stride)            # input pixels per cell of the coarsest padding
        self.frozen_backbone = frozen_backbone
        if frozen_backbone:
            for p in rcnn.backbone.parameters():
                p.requires_grad_(False)

    def forward(self, batch: Batch):
        if batch.features is not None:
            feats = OrderedDict((str(k), f.float()) for k, f in enumerate(batch.features))
            hp, wp = feats["0"].shape[-2] * self.stride, feats["0"].shape[-1] * self.stride
        else:
            if self.frozen_backbone:
                self.rcnn.backbone.eval()
            feats = self.rcnn.backbone(batch.images)
            if isinstance(feats, torch.Tensor):
                feats = OrderedDict([("0", feats)])
            hp, wp = batch.images.shape[-2:]
        b = len(batch.sizes)
        # the anchor generator reads only the padded size, dtype and device of the images
        images = ImageList(torch.zeros((b, 0, hp, wp)), [tuple(s) for s in batch.sizes])
        targets = batch.targets
        proposals, rpn_losses = self.rcnn.rpn(images, feats, targets)
        dets, roi_losses = self.rcnn.roi_heads(feats, proposals, images.image_sizes, targets)
        if self.training:
            return {**rpn_losses, **roi_losses}
        return dets

    @torch.no_grad()
    def instances(self, batch: Batch, factors: Sequence[float],
                  sizes: Sequence[tuple[int, int]], threshold: float = 0.5
                  ) -> list[dict[str, torch.Tensor]]:
        """Eval-mode detections at the original image ``sizes`` (H, W): per image ``labels
        (R,)``, ``scores (R,)``, ``masks (R, H, W)`` bool (``factors``: input scale per
        image)."""
        self.eval()
        out = []
        for det, f, (h, w) in zip(self(batch), factors, sizes, strict=True):
            _, masks = paste_to_image(det, f, h, w, threshold)
            out.append({"labels": det["labels"], "scores": det["scores"], "masks": masks})
        return out


def paste_to_image(det: dict[str, torch.Tensor], factor: float, height: int, width: int,
                   threshold: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """One image's eval output -> ``(boxes (R, 4) xyxy original px, masks (R, H, W) bool)``:
    boxes divided by the input's scale ``factor``, masks pasted at the original size (as
    torchvision's ``GeneralizedRCNNTransform.postprocess``) and thresholded."""
    boxes = det["boxes"] / factor
    if len(boxes) == 0:
        return boxes, torch.zeros((0, height, width), dtype=torch.bool)
    masks = paste_masks_in_image(det["masks"], boxes, (height, width))
    return boxes, masks[:, 0] > threshold


@dataclass(frozen=True, kw_only=True)
class MaskRcnnModelConfig:
    """Mask R-CNN of :func:`build_small_mask_rcnn` / :func:`build_resnet50_fpn_mask_rcnn`:
    params.yaml ``wsis.mask_rcnn`` (its schedule keys are
    :class:`~weaksam.wsis.train.InstanceTrainConfig`'s); ``score_thresh`` and ``max_det`` are
    set by the stage from ``wsis.score_thresh`` / ``wsis.max_det``. Every default equals
    params.yaml's value (``tests/test_config.py``); the RPN counts and aspect ratios are not in
    params. The R50-FPN model uses ``score_thresh`` and ``max_det`` only (torchvision's
    detectron2-default heads: FPN anchors 32..512, 512 RoIs per image, 4 x conv256 mask head)."""

    anchor_sizes: tuple[int, ...] = (16, 32, 64, 128)  # px, one level (stride 8)
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    rpn_pre_nms_train: int = 600
    rpn_post_nms_train: int = 300
    rpn_pre_nms_test: int = 300
    rpn_post_nms_test: int = 150
    rpn_batch_size: int = 128  # anchors sampled per image for the RPN loss
    roi_batch_size: int = 32  # RoIs sampled per image for the box / mask losses
    representation: int = 256  # box head MLP width
    mask_layers: tuple[int, ...] = (64,)  # mask head conv widths
    mask_dim: int = 64  # mask predictor deconv width
    roi_sampling: int = 2  # RoIAlign sampling points per bin side (torchvision / detectron2: 2)
    score_thresh: float = 0.05  # test detections kept above this score
    max_det: int = 100  # test detections per image


def build_small_mask_rcnn(backbone: nn.Module, num_classes: int, cfg: MaskRcnnModelConfig, *,
                          level: int = -1) -> FeatureMaskRCNN:
    """Mask R-CNN on ONE frozen feature level (``level`` of ``stage_features``) of
    ``backbone`` (``SmallCNN``: ``out_channels`` D, ``stride``), heads sized by ``cfg``
    (default profile)."""
    c = cfg
    d = int(backbone.out_channels)
    anchors = AnchorGenerator((tuple(c.anchor_sizes),), (tuple(c.aspect_ratios),))
    box_pool = MultiScaleRoIAlign(["0"], output_size=7, sampling_ratio=c.roi_sampling)
    mask_pool = MultiScaleRoIAlign(["0"], output_size=14, sampling_ratio=c.roi_sampling)
    rcnn = MaskRCNN(
        _Levels(backbone, level, d), num_classes=None, min_size=1, max_size=100000,
        image_mean=list(MEAN), image_std=list(STD), rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=c.rpn_pre_nms_train,
        rpn_post_nms_top_n_train=c.rpn_post_nms_train,
        rpn_pre_nms_top_n_test=c.rpn_pre_nms_test, rpn_post_nms_top_n_test=c.rpn_post_nms_test,
        rpn_batch_size_per_image=c.rpn_batch_size, box_roi_pool=box_pool,
        box_head=TwoMLPHead(d * 7 * 7, c.representation),
        box_predictor=FastRCNNPredictor(c.representation, num_classes + 1),
        box_score_thresh=c.score_thresh, box_detections_per_img=c.max_det,
        box_batch_size_per_image=c.roi_batch_size, mask_roi_pool=mask_pool,
        mask_head=MaskRCNNHeads(d, list(c.mask_layers), 1),
        mask_predictor=MaskRCNNPredictor(int(c.mask_layers[-1]), c.mask_dim, num_classes + 1),
    )
    return FeatureMaskRCNN(rcnn, stride=int(backbone.stride), frozen_backbone=True)


def build_resnet50_fpn_mask_rcnn(num_classes: int, checkpoint: str | Path | None,
                                 cfg: MaskRcnnModelConfig = MaskRcnnModelConfig()
                                 ) -> FeatureMaskRCNN:
    """Mask R-CNN R50-FPN (paper profile) in torchvision's ``maskrcnn_resnet50_fpn`` layout with
    the defaults of a pre-trained trunk: frozen BatchNorm, stem and first stage frozen (3
    trainable stages), random heads; from ``cfg`` only ``score_thresh`` and ``max_det``. The
    ResNet-50 trunk comes from ``checkpoint``, a local torchvision ImageNet ``resnet50`` state
    dict (:func:`~weaksam.vision.resnet.resnet50_trunk`; None: random, for tests only)."""
    trunk = resnet50_trunk(checkpoint)
    rcnn = MaskRCNN(resnet50_fpn(trunk, 3), num_classes=num_classes + 1,
                    image_mean=list(MEAN), image_std=list(STD),
                    box_score_thresh=cfg.score_thresh, box_detections_per_img=cfg.max_det)
    return FeatureMaskRCNN(rcnn, stride=32, frozen_backbone=False)
