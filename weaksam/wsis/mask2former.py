"""Mask2Former (Cheng et al., 2022), the query-based WSIS model of paper Tables 2 and 3:
transformers' ``Mask2FormerForUniversalSegmentation`` built from a config (no download), its
pixel decoder, masked-attention transformer decoder, class head and loss (Hungarian matching,
cross-entropy + sampled-point BCE + dice, auxiliary losses) used as they are; only the image
backbone is ours.

Shorthand: B images, Q queries, C classes (labels 1..C here; transformers' class index c - 1,
index C = "no object"), h x w input pixels, levels at strides 4, 8, 16, 32.

- Default profile: levels 4 and 8 are the frozen ``backbone_pretrain`` CNN's stride-4 and
  stride-8 stages (cached in the views), levels 16 and 32 come from two trainable stride-2
  convolutions on the stride-8 level; small widths (``hidden_dim``, queries, layers).
- Paper profile: ResNet-50 C2..C5 (torchvision trunk, local ImageNet checkpoint) trained end to
  end, transformers' default Mask2Former sizes (256-d, 100 queries, 6 + 10 layers).

``forward(batch)`` (a :class:`~weaksam.wsis.mask_rcnn.Batch`) -> dict of the weighted losses
(summed over the auxiliary layers per kind) in train mode; :meth:`instances` gives the test
predictions as transformers' instance post-processing does (top-k of class x query scores,
score = class probability x mean mask probability inside the binary mask).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation

from weaksam.vision.levels import FeatureLevelsConfig
from weaksam.vision.resnet import ResNetLevels, resnet50_trunk
from weaksam.wsis.mask_rcnn import Batch

_LOSS_KINDS = ("loss_cross_entropy", "loss_mask", "loss_dice")


class FeatureMask2Former(nn.Module):
    """Mask2Former over a list of 4 feature levels (strides 4..32) from ``levels``: cached
    frozen features plus ``extra`` convolutions, or a trainable ``trunk`` on images."""

    def __init__(self, config: Mask2FormerConfig, *, trunk: nn.Module | None = None,
                 extra_channels: int = 0, max_det: int = 100, score_thresh: float = 0.05) -> None:
        super().__init__()
        self.mask_stride = int(config.common_stride)  # input px per cell of the mask logits
        # its backbone (pixel_level_module.encoder) is a parameter-free FeatureLevels that
        # only sizes the pixel decoder; the levels come from ``levels`` below
        self.hf = Mask2FormerForUniversalSegmentation(config)
        self.trunk = trunk
        self.extra = nn.ModuleList()
        if extra_channels:
            for _ in range(2):  # strides 16 and 32 from stride 8
                self.extra.append(nn.Sequential(
                    nn.Conv2d(extra_channels, extra_channels, 3, stride=2, padding=1),
                    nn.ReLU(inplace=True)))
        self.num_classes = int(config.num_labels)
        self.max_det, self.score_thresh = int(max_det), float(score_thresh)

    def levels(self, batch: Batch) -> list[torch.Tensor]:
        """The 4 levels ``[(B, D_l, h/s, w/s)]`` for s = 4, 8, 16, 32."""
        if batch.features is not None:
            feats = [f.float() for f in batch.features]
        else:
            feats = list(self.trunk(batch.images))
        for conv in self.extra:
            feats.append(conv(feats[-1]))
        return feats

    def _heads(self, batch: Batch) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """Per decoder layer: class logits ``(B, Q, C + 1)`` and mask logits ``(B, Q, h/4,
        w/4)`` (the last entry is the final prediction)."""
        m = self.hf.model
        dec = m.pixel_level_module.decoder(self.levels(batch), output_hidden_states=False)
        out = m.transformer_module(multi_scale_features=dec.multi_scale_features,
                                   mask_features=dec.mask_features, output_hidden_states=True)
        classes = tuple(self.hf.class_predictor(h.transpose(0, 1))
                        for h in out.intermediate_hidden_states)
        return classes, tuple(out.masks_queries_logits)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        classes, masks = self._heads(batch)
        if batch.targets is None:
            raise ValueError("Mask2Former forward needs targets; use instances() to predict")
        s = self.mask_stride
        hp, wp = masks[-1].shape[-2] * s, masks[-1].shape[-1] * s  # padded input frame
        mask_labels, class_labels = [], []
        for t in batch.targets:
            g = t["masks"].float()
            mask_labels.append(F.pad(g, (0, wp - g.shape[-1], 0, hp - g.shape[-2])))
            class_labels.append(t["labels"] - 1)
        aux = self.hf.get_auxiliary_logits(classes, masks)
        losses = self.hf.get_loss_dict(masks[-1], classes[-1], mask_labels, class_labels, aux)
        # one reduction per loss kind: final layer + auxiliary layers, already weighted
        return {k: sum(v for n, v in losses.items() if n.startswith(k)) for k in _LOSS_KINDS}

    @torch.no_grad()
    def instances(self, batch: Batch, factors: Sequence[float],
                  sizes: Sequence[tuple[int, int]]) -> list[dict[str, torch.Tensor]]:
        """Test predictions at the original ``sizes`` (H, W): per image ``labels (R,)`` in
        1..C, ``scores (R,)``, ``masks (R, H, W)`` bool; R <= ``max_det``."""
        self.eval()
        classes, masks = self._heads(batch)
        probs = classes[-1].softmax(-1)[..., :-1]  # (B, Q, C)
        out = []
        for b, ((h, w), (oh, ow)) in enumerate(zip(batch.sizes, sizes, strict=True)):
            q, c = probs.shape[1:]
            k = min(self.max_det, q * c)
            top, idx = probs[b].flatten().topk(k)
            qi, labels = idx // c, idx % c + 1
            ml = F.interpolate(masks[-1][b, qi][None], scale_factor=self.mask_stride,
                               mode="bilinear",
                               align_corners=False)[0, :, :h, :w]
            ml = F.interpolate(ml[None], size=(oh, ow), mode="bilinear", align_corners=False)[0]
            binary = ml > 0
            mprob = ml.sigmoid()
            mscore = (mprob * binary).flatten(1).sum(1) / binary.flatten(1).sum(1).clamp(min=1)
            score = top * mscore
            keep = score >= self.score_thresh
            out.append({"labels": labels[keep], "scores": score[keep], "masks": binary[keep]})
        return out


def _config(num_classes: int, channels: Sequence[int], stride: int = 4, **kw
            ) -> Mask2FormerConfig:
    """A Mask2Former config whose backbone is :class:`~weaksam.vision.levels.FeatureLevels` of
    our 4 levels' ``channels`` (strides ``stride`` x 1, 2, 4, 8): transformers sizes the pixel
    decoder by them and builds no network for the backbone."""
    backbone = FeatureLevelsConfig([int(c) for c in channels])
    # transformers warns that a backbone other than Swin "may not be compatible with
    # Mask2Former"; ours is the levels we compute and hand to the pixel decoder, so the
    # warning would mislead: silenced here, nowhere else
    log = logging.getLogger(Mask2FormerConfig.__module__)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        return Mask2FormerConfig(backbone_config=backbone, num_labels=num_classes,
                                 feature_strides=[stride * 2**k for k in range(4)],
                                 common_stride=stride, **kw)
    finally:
        log.setLevel(level)


@dataclass(frozen=True, kw_only=True)
class Mask2FormerModelConfig:
    """Mask2Former of :func:`build_mask2former` / :func:`build_mask2former_resnet50`: params.yaml
    ``wsis.mask2former`` (its schedule keys are :class:`~weaksam.wsis.train.InstanceTrainConfig`
    's); ``score_thresh`` and ``max_det`` are set by the stage from ``wsis.score_thresh`` /
    ``wsis.max_det``. Every default equals params.yaml's value (``tests/test_config.py``). The
    R50 model takes transformers' default sizes (256-d, 6 + 10 layers, 8 heads, 12544 points)
    and from ``cfg`` only ``num_queries``, ``score_thresh`` and ``max_det``."""

    hidden_dim: int = 64  # pixel decoder, mask feature and query width
    num_queries: int = 20
    decoder_layers: int = 3  # masked-attention decoder layers
    encoder_layers: int = 1  # pixel-decoder deformable layers
    heads: int = 4  # attention heads
    ffn_dim: int = 256  # feed-forward width (decoder and pixel decoder)
    train_points: int = 1568  # sampled points per mask for the mask losses
    score_thresh: float = 0.05  # test instances kept above this score
    max_det: int = 100  # test instances per image


def build_mask2former(channels: Sequence[int], num_classes: int, cfg: Mask2FormerModelConfig,
                      *, stride: int = 4) -> FeatureMask2Former:
    """Small Mask2Former on cached frozen levels of ``channels = [D_s, D_2s]`` (strides
    ``stride`` and 2 ``stride``; the small CNN: 4 and 8), plus two trainable stride-2 levels
    (default profile), sized by ``cfg``."""
    c = cfg
    c4, c8 = (int(c) for c in channels)
    cfg = _config(num_classes, [c4, c8, c8, c8], stride, hidden_dim=c.hidden_dim,
                  feature_size=c.hidden_dim,
                  mask_feature_size=c.hidden_dim, num_queries=c.num_queries,
                  decoder_layers=c.decoder_layers, encoder_layers=c.encoder_layers,
                  num_attention_heads=c.heads, dim_feedforward=c.ffn_dim,
                  encoder_feedforward_dim=c.ffn_dim, train_num_points=c.train_points)
    return FeatureMask2Former(cfg, extra_channels=c8, max_det=c.max_det,
                              score_thresh=c.score_thresh)


def build_mask2former_resnet50(num_classes: int, checkpoint: str | Path | None,
                               cfg: Mask2FormerModelConfig) -> FeatureMask2Former:
    """Mask2Former R50 (paper profile): transformers' default sizes with ``cfg.num_queries``, a
    torchvision ResNet-50 trunk (frozen BatchNorm; C2..C5) from the local ImageNet
    ``checkpoint`` (:func:`~weaksam.vision.resnet.resnet50_trunk`; None: random, tests)."""
    trunk = resnet50_trunk(checkpoint)
    mcfg = _config(num_classes, [256, 512, 1024, 2048], num_queries=cfg.num_queries)
    return FeatureMask2Former(mcfg, trunk=ResNetLevels(trunk), max_det=cfg.max_det,
                              score_thresh=cfg.score_thresh)
