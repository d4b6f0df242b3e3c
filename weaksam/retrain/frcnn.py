"""Faster R-CNN with RoI drop (paper Sec. 3.2, Eq. 1-2) on torchvision's detection parts.

Shorthand: B images of a batch, D feature channels, (H, W) input size in pixels (the image as
given to the model, after the data source's rescale), (h, w) feature size, K foreground
classes, labels 1..K (0 = background, torchvision's convention).

Model interface (docs/contracts.md "Retraining", shared with the query-based detector):
- train mode: ``model(inputs, targets) -> {"loss_objectness", "loss_rpn_box_reg",
  "loss_classifier", "loss_box_reg"}`` (scalars); targets: list of {"boxes": (G, 4) float xyxy
  px of the input frame, "labels": (G,) int64 in 1..K, optional "image_id"};
- eval mode: ``model(inputs) -> [{"boxes" (M, 4), "scores" (M,), "labels" (M,) in 1..K}]``
  in the input frame.
``inputs`` is either a list of B normalised images (3, H_i, W_i) (end-to-end backbone, the
paper profile) or a :class:`~weaksam.vision.features.FeatureBatch` of precomputed maps of a
frozen backbone (default profile: features cached once by ``weaksam.retrain.features``).

RoI drop lives in :class:`DropRoIHeads`, a subclass of torchvision's ``RoIHeads`` whose only
override is the training branch of ``forward`` (torchvision calls ``fastrcnn_loss`` by its
global name, so the loss cannot be swapped otherwise); inference is torchvision's.
``drop_active`` (False during the preliminary training) switches Eq. 1 on.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.ops import MultiScaleRoIAlign

from weaksam.retrain.roi_drop import NORMALIZE, RULES, RoiDropConfig, roi_drop_loss
from weaksam.vision.features import FeatureBatch
from weaksam.vision.imaging import pad_batch
from weaksam.vision.resnet import resnet50_fpn, resnet50_trunk


class SeededSampler(BalancedPositiveNegativeSampler):
    """torchvision's positive / negative sampler drawing from one generator per image when
    ``generators`` is set (so a batch split over DDP processes samples what one process would);
    the global RNG otherwise. Same rule: up to ``batch_size_per_image * positive_fraction``
    positives, the rest negatives."""

    def __init__(self, batch_size_per_image: int, positive_fraction: float) -> None:
        super().__init__(batch_size_per_image, positive_fraction)
        self.generators: list[torch.Generator] | None = None

    def __call__(self, matched_idxs: list[torch.Tensor]):
        if self.generators is None:
            return super().__call__(matched_idxs)
        if len(self.generators) != len(matched_idxs):
            raise ValueError(f"{len(self.generators)} generators for {len(matched_idxs)} images")
        pos_idx, neg_idx = [], []
        for m, g in zip(matched_idxs, self.generators, strict=True):
            positive = torch.where(m >= 1)[0]
            negative = torch.where(m == 0)[0]
            num_pos = min(positive.numel(), int(self.batch_size_per_image * self.positive_fraction))
            num_neg = min(negative.numel(), self.batch_size_per_image - num_pos)
            pos = positive[torch.randperm(positive.numel(), generator=g)[:num_pos].to(m.device)]
            neg = negative[torch.randperm(negative.numel(), generator=g)[:num_neg].to(m.device)]
            pm = torch.zeros_like(m, dtype=torch.uint8)
            nm = torch.zeros_like(m, dtype=torch.uint8)
            pm[pos] = 1
            nm[neg] = 1
            pos_idx.append(pm)
            neg_idx.append(nm)
        return pos_idx, neg_idx


class DropRoIHeads(RoIHeads):
    """torchvision ``RoIHeads`` whose training loss is :func:`roi_drop_loss` (Eq. 1-2).

    Extra constructor arguments (the fields of :class:`RoiDropConfig`): ``tau_cls``,
    ``tau_reg`` (paper 4.0, 1.0), ``normalize`` ("none" | "range"), ``rule`` ("either" = Eq. 1 |
    "both" = authors' release), ``smooth_l1_beta`` (torchvision 1/9). ``drop_active`` starts
    False. ``recorder``, when set, receives every training step's per-RoI losses (figures 3
    and 5). ``counts`` accumulates
    RoIs seen / dropped (all and foreground) until :meth:`reset_counts`."""

    def __init__(self, *args, tau_cls: float, tau_reg: float, normalize: str, rule: str,
                 smooth_l1_beta: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if normalize not in NORMALIZE:
            raise ValueError(f"normalize must be one of {NORMALIZE}, got {normalize!r}")
        if rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
        self.fg_bg_sampler = SeededSampler(self.fg_bg_sampler.batch_size_per_image,
                                           self.fg_bg_sampler.positive_fraction)
        self.tau_cls, self.tau_reg = float(tau_cls), float(tau_reg)
        self.normalize, self.rule, self.smooth_l1_beta = normalize, rule, float(smooth_l1_beta)
        self.drop_active = False
        self.recorder: Callable[[dict[str, torch.Tensor]], None] | None = None
        self.reset_counts()

    def reset_counts(self) -> None:
        self.counts = {"rois": 0, "dropped": 0, "fg_rois": 0, "fg_dropped": 0}

    def forward(self, features, proposals, image_shapes, targets=None):
        if not self.training:
            return super().forward(features, proposals, image_shapes, targets)
        # torchvision's training branch, with fastrcnn_loss replaced by roi_drop_loss
        proposals, matched_idxs, labels, regression_targets = self.select_training_samples(
            proposals, targets)
        x = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(x)
        lab = torch.cat(labels)
        loss_cls, loss_reg, info = roi_drop_loss(
            class_logits, box_regression, lab, torch.cat(regression_targets),
            active=self.drop_active, tau_cls=self.tau_cls, tau_reg=self.tau_reg,
            normalize=self.normalize, rule=self.rule, smooth_l1_beta=self.smooth_l1_beta)
        fg, dropped = lab > 0, ~info["keep"]
        self.counts["rois"] += int(lab.numel())
        self.counts["dropped"] += int(dropped.sum())
        self.counts["fg_rois"] += int(fg.sum())
        self.counts["fg_dropped"] += int((dropped & fg).sum())
        if self.recorder is not None:
            ids = [t.get("image_id", torch.tensor(-1)) for t in targets]
            info = dict(info, labels=lab, gt_index=torch.cat(matched_idxs),
                        image_id=torch.cat([torch.full((len(m),), int(i)) for m, i in
                                            zip(matched_idxs, ids, strict=True)]))
            self.recorder(info)
        return [], {"loss_classifier": loss_cls, "loss_box_reg": loss_reg}


class FasterRCNNDrop(nn.Module):
    """Backbone (or precomputed features) -> torchvision RPN -> :class:`DropRoIHeads`.

    ``backbone``: a module with ``out_channels`` whose ``forward_features`` (or ``forward``)
    maps (B, 3, H, W) to (B, D, h, w) or to an ordered dict of levels (FPN); ``None`` when the
    model is only fed :class:`FeatureBatch` inputs. ``stride``: input px per cell of a
    single-level map (used to pad precomputed maps consistently); ``size_divisible``: images
    are zero-padded bottom / right to a multiple of it."""

    def __init__(self, backbone: nn.Module | None, rpn: RegionProposalNetwork,
                 roi_heads: DropRoIHeads, stride: int, size_divisible: int = 32) -> None:
        super().__init__()
        self.backbone, self.rpn, self.roi_heads = backbone, rpn, roi_heads
        self.stride, self.size_divisible = int(stride), int(size_divisible)

    @property
    def drop_active(self) -> bool:
        return self.roi_heads.drop_active

    @drop_active.setter
    def drop_active(self, value: bool) -> None:
        self.roi_heads.drop_active = bool(value)

    def set_sample_generators(self, generators: Sequence[torch.Generator] | None) -> None:
        """One generator per image of the next batch for the RPN and RoI samplers (or None)."""
        gens = None if generators is None else list(generators)
        self.rpn.fg_bg_sampler.generators = gens
        self.roi_heads.fg_bg_sampler.generators = gens

    def drop_counts(self) -> dict[str, int]:
        return dict(self.roi_heads.counts)

    def reset_drop_counts(self) -> None:
        self.roi_heads.reset_counts()

    def _features(self, inputs) -> tuple[ImageList, OrderedDict]:
        if isinstance(inputs, FeatureBatch):
            fmap = inputs.padded()
            hm, wm = fmap.shape[-2:]
            # the anchor generator reads only the padded input size from this tensor
            shell = fmap.new_empty((len(inputs), 0, hm * self.stride, wm * self.stride))
            return ImageList(shell, list(inputs.image_sizes)), OrderedDict([("0", fmap)])
        if self.backbone is None:
            raise ValueError("this model has no backbone: give it a FeatureBatch")
        sizes = [(int(t.shape[-2]), int(t.shape[-1])) for t in inputs]
        x = pad_batch(list(inputs), multiple=self.size_divisible)
        fwd = getattr(self.backbone, "forward_features", self.backbone)
        f = fwd(x)
        feats = f if isinstance(f, dict) else OrderedDict([("0", f)])
        return ImageList(x, sizes), feats

    def forward(self, inputs, targets: list[dict[str, torch.Tensor]] | None = None):
        if self.training and targets is None:
            raise ValueError("targets are needed in training mode")
        images, feats = self._features(inputs)
        proposals, rpn_losses = self.rpn(images, feats, targets)
        detections, roi_losses = self.roi_heads(feats, proposals, images.image_sizes, targets)
        if self.training:
            return {**rpn_losses, **roi_losses}
        return detections


@dataclass(frozen=True, kw_only=True)
class FrcnnConfig:
    """Heads of :func:`build_frcnn`: params.yaml ``retrain.frcnn.model`` (its input keys,
    ``backbone``, ``input``, ``train_scales``, ..., are the stage's). Every default equals
    params.yaml's value (``tests/test_config.py``); ``rpn_batch_per_image`` is not in params."""

    anchor_sizes: tuple[int, ...] = (16, 32, 64, 128)  # px, one level
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    rpn_pre_nms_train: int = 600
    rpn_post_nms_train: int = 300
    rpn_pre_nms_test: int = 300
    rpn_post_nms_test: int = 100
    rpn_batch_per_image: int = 256
    roi_size: int = 7
    roi_sampling: int = 2
    box_head_dim: int = 256
    rois_per_image: int = 64
    score_thresh: float = 0.001
    nms_thresh: float = 0.5
    detections_per_img: int = 100


def build_frcnn(
    num_classes: int,
    cfg: FrcnnConfig,
    drop: RoiDropConfig,
    *,
    backbone: nn.Module | None,
    in_channels: int,
    stride: int,
) -> FasterRCNNDrop:
    """Single-level Faster R-CNN (default profile: the frozen ``backbone_pretrain`` CNN, stride
    8, D = ``in_channels``) with light heads: RPN over ``cfg.anchor_sizes`` px x
    ``cfg.aspect_ratios``, RoIAlign ``roi_size`` x ``roi_size``, a two-layer ``box_head_dim``
    MLP, ``rois_per_image`` sampled RoIs (25 % positive, torchvision's fg/bg IoU 0.5), RoI drop
    ``drop``. ``num_classes`` = K."""
    c = cfg
    anchors = AnchorGenerator((tuple(int(s) for s in c.anchor_sizes),),
                              (tuple(float(a) for a in c.aspect_ratios),))
    rpn = RegionProposalNetwork(
        anchors, RPNHead(in_channels, anchors.num_anchors_per_location()[0]),
        fg_iou_thresh=0.7, bg_iou_thresh=0.3, batch_size_per_image=c.rpn_batch_per_image,
        positive_fraction=0.5,
        pre_nms_top_n={"training": c.rpn_pre_nms_train, "testing": c.rpn_pre_nms_test},
        post_nms_top_n={"training": c.rpn_post_nms_train, "testing": c.rpn_post_nms_test},
        nms_thresh=0.7)
    rpn.fg_bg_sampler = SeededSampler(c.rpn_batch_per_image, 0.5)
    pool = MultiScaleRoIAlign(["0"], output_size=c.roi_size, sampling_ratio=c.roi_sampling)
    heads = DropRoIHeads(
        pool, TwoMLPHead(in_channels * c.roi_size**2, c.box_head_dim),
        FastRCNNPredictor(c.box_head_dim, num_classes + 1),
        fg_iou_thresh=0.5, bg_iou_thresh=0.5, batch_size_per_image=c.rois_per_image,
        positive_fraction=0.25, bbox_reg_weights=None, score_thresh=c.score_thresh,
        nms_thresh=c.nms_thresh, detections_per_img=c.detections_per_img,
        tau_cls=drop.tau_cls, tau_reg=drop.tau_reg, normalize=drop.normalize, rule=drop.rule,
        smooth_l1_beta=drop.smooth_l1_beta)
    return FasterRCNNDrop(backbone, rpn, heads, stride=stride, size_divisible=stride)


def build_frcnn_r50_fpn(
    num_classes: int,
    *,
    checkpoint: str | Path | None,
    trainable_layers: int = 3,
    rois_per_image: int = 512,
    score_thresh: float = 0.001,
    detections_per_img: int = 100,
    drop: RoiDropConfig,
) -> FasterRCNNDrop:
    """Paper profile: torchvision's ``fasterrcnn_resnet50_fpn`` (built with ``weights=None``,
    nothing downloaded) with its RoI heads swapped for :class:`DropRoIHeads`; ``checkpoint``: a
    local ImageNet ResNet-50 state dict (:func:`weaksam.vision.resnet.resnet50_trunk`) for the
    FPN body, the analogue of detectron2's R-50.pkl (frozen BN, the first
    ``5 - trainable_layers`` stages frozen). Detectron2's 512 RoIs per image by default;
    ``drop``: the RoI drop of Eq. 1-2."""
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    body = resnet50_trunk(checkpoint)
    ref = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None,
                                  num_classes=num_classes + 1)
    ref.backbone = resnet50_fpn(body, trainable_layers)
    r = ref.roi_heads
    heads = DropRoIHeads(
        r.box_roi_pool, r.box_head, r.box_predictor, fg_iou_thresh=0.5, bg_iou_thresh=0.5,
        batch_size_per_image=rois_per_image, positive_fraction=0.25, bbox_reg_weights=None,
        score_thresh=score_thresh, nms_thresh=0.5, detections_per_img=detections_per_img,
        tau_cls=drop.tau_cls, tau_reg=drop.tau_reg,
        normalize=drop.normalize, rule=drop.rule, smooth_l1_beta=drop.smooth_l1_beta)
    rpn = ref.rpn
    rpn.fg_bg_sampler = SeededSampler(rpn.fg_bg_sampler.batch_size_per_image,
                                      rpn.fg_bg_sampler.positive_fraction)
    return FasterRCNNDrop(ref.backbone, rpn, heads, stride=4, size_divisible=32)
