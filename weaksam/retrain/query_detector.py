"""Query-based detector for retraining on pseudo ground truth: RT-DETR (transformers) with query
drop (paper Sec. 3.2 Eq. 3-4, appendix C; Tables 5b, 10, 11).

The paper retrains DINO (Zhang et al., 2022), which has no installable release. This is its
nearest installable relative, transformers' ``RTDetrForObjectDetection`` built from a config
(no download), chosen over Deformable DETR (two-stage, box refinement) by measured convergence
on this machine (docs/retrain.md). What RT-DETR shares with DINO: contrastive denoising
training (CDN: positive and negative noised GT queries), query selection from the encoder's
top-k tokens (the encoder proposals are supervised), iterative box refinement, deformable
cross-attention in the decoder, sigmoid (focal-family) classification and Hungarian matching
with focal class cost. What it lacks (docs/fidelity.md, "query-based detector"):

- DINO's *mixed* query selection (positional queries from the top-k encoder boxes, content
  queries learned); RT-DETR takes both from the top-k encoder tokens (content detached).
- Look-forward-twice: RT-DETR's refinement detaches the reference boxes between decoder layers
  (look-forward-once, as Deformable DETR).
- A deformable multi-scale *encoder*: RT-DETR's hybrid encoder runs one attention layer (AIFI)
  on the coarsest level and a CNN FPN/PAN across levels. The default profile has a single
  feature level (the frozen stride-8 ``backbone_pretrain`` CNN), where the hybrid encoder is
  one self-attention layer.
- Classification loss: RT-DETR trains with the varifocal loss (IoU-aware soft targets);
  DINO with the sigmoid focal loss.

Shorthand: B images, Q queries, C classes (labels 1..C outside, 0..C-1 inside transformers),
L feature levels, D_l channels, s_l strides (px per cell). Boxes outside: ``(G, 4)`` float
xyxy in pixels of the input frame (the image as rescaled by the data pipeline); inside:
(cx, cy, w, h) normalised by the *canvas*, the padded batch extent: images (or their maps) of
a batch are zero-padded at the bottom / right to the largest one, as DETR pads a batch; RT-DETR
has no padding mask, so the padding is seen as image content and the canvas is the frame.

Interface (torchvision detection convention, docs/contracts.md "Retraining"): in train mode
``model(inputs, targets) -> dict[str, Tensor]`` of weighted loss terms (their sum is the
loss); in eval mode ``model(inputs) -> list[{"boxes", "scores", "labels"}]``, boxes clipped to
each input's (H, W). ``inputs`` is a list of (3, H, W) images normalised as
``weaksam.wsod.imaging.to_tensor`` does, or a :class:`weaksam.retrain.frcnn.FeatureBatch` of
cached single-level backbone maps (``weaksam.retrain.features``). ``drop_active`` (attribute,
False by default) switches query drop on; the training loop sets it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import RTDetrConfig, RTDetrForObjectDetection, RTDetrResNetConfig
from transformers.image_transforms import center_to_corners_format
from transformers.loss.loss_for_object_detection import box_iou, generalized_box_iou
from transformers.loss.loss_rt_detr import RTDetrLoss, _set_aux_loss

from weaksam.errors import TrainingError
from weaksam.retrain.frcnn import FeatureBatch
from weaksam.retrain.query_drop import QUERY_SETS, normalise_groups, per_query_bce, query_drop_mask
from weaksam.wsod.imaging import pad_batch

# Key added to every outputs dict handed to the criterion: which loss term it feeds.
ROLE = "query_drop_role"
ROLES = ("final", "aux", "enc", "dn")
# Terms query drop applies to (the authors' release: every decoder layer and the encoder
# proposals go through the dropping loss, the denoising queries never do).
DROP_ROLES = ("final", "aux", "enc")


@dataclass
class Levels:
    """A padded batch: ``maps`` one (B, D_l, h_l, w_l) tensor per level, ``canvas`` the padded
    (H, W) px the maps cover, ``image_sizes`` each input's own (H, W) px."""

    maps: list[torch.Tensor]
    canvas: tuple[int, int]
    image_sizes: list[tuple[int, int]]


def _matched(targets: Sequence[dict[str, torch.Tensor]],
             indices: Sequence[tuple[torch.Tensor, torch.Tensor]], key: str) -> torch.Tensor:
    """``targets[b][key][j]`` of every matched pair (query i, target j) of every image b, in
    the order of the library's ``_get_source_permutation_idx``."""
    return torch.cat([t[key][j] for t, (_, j) in zip(targets, indices, strict=True)], dim=0)


class QueryDropRTDetrLoss(RTDetrLoss):
    """transformers' RT-DETR criterion with per-query drop signals d_i (Eq. 3-4).

    Only the two reductions change: the varifocal classification term and the L1 / GIoU box
    terms are computed per query (the library's formulas, unreduced) and multiplied by d_i
    before the library's reduction (same denominator: the number of target boxes). With
    ``drop_active`` False every d_i is 1 and the terms equal the library's exactly.

    percentile: tau in [0, 100] (paper 90); queries: ``things`` (drop matched queries only,
    paper default) or ``all``. Each loss term (last decoder layer, every auxiliary decoder
    layer, encoder top-k proposals) gets its own mask from its own Hungarian matching;
    denoising terms never drop. ``counts`` accumulates, for the last decoder layer while drop is
    active, the number of queries, drop candidates, dropped queries, matched queries and dropped
    matched queries.
    """

    def __init__(self, config: RTDetrConfig, percentile: float = 90.0, queries: str = "things"
                 ) -> None:
        super().__init__(config)
        if queries not in QUERY_SETS:
            raise ValueError(f"queries must be one of {QUERY_SETS}, got {queries!r}")
        if not 0.0 <= float(percentile) <= 100.0:
            raise ValueError(f"percentile must be in [0, 100], got {percentile}")
        self.percentile = float(percentile)
        self.queries = queries
        self.drop_active = False
        self.counts = {"queries": 0, "candidates": 0, "dropped": 0, "fg_queries": 0,
                       "fg_dropped": 0}

    def query_weights(self, outputs: dict[str, Any], indices: list[tuple[torch.Tensor, ...]],
                      targets: list[dict[str, torch.Tensor]], count: bool = False
                      ) -> torch.Tensor:
        """d_i as a (B, Q) float tensor for one outputs dict and its matching (``count``: add
        the last decoder layer's figures to ``counts``)."""
        logits = outputs["logits"]
        weights = torch.ones(logits.shape[:2], dtype=logits.dtype, device=logits.device)
        if not self.drop_active or outputs.get(ROLE) not in DROP_ROLES:
            return weights
        idx = self._get_source_permutation_idx(indices)
        target_classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64,
                                    device=logits.device)
        target_classes[idx] = _matched(targets, indices, "class_labels").to(torch.int64)
        rank = per_query_bce(logits, target_classes).flatten()
        if torch.isnan(rank).any():
            raise TrainingError(
                f"query drop ({outputs.get(ROLE)} layer): {int(torch.isnan(rank).sum())} of "
                f"{rank.numel()} per-query classification losses are NaN"
            )
        foreground = (target_classes != self.num_classes).flatten()
        rank = normalise_groups(rank, foreground)
        keep = query_drop_mask(rank, foreground, self.percentile, self.queries)
        if count and outputs.get(ROLE) == "final":
            cand = foreground if self.queries == "things" else torch.ones_like(foreground)
            self.counts["queries"] += int(keep.numel())
            self.counts["candidates"] += int(cand.sum())
            self.counts["dropped"] += int((~keep).sum())
            self.counts["fg_queries"] += int(foreground.sum())
            self.counts["fg_dropped"] += int((~keep & foreground).sum())
        return keep.view(logits.shape[:2]).to(logits.dtype)

    def loss_labels_vfl(self, outputs, targets, indices, num_boxes, log=True):  # noqa: ANN001
        """Varifocal loss, d_i-weighted per query (library formula, same reduction)."""
        idx = self._get_source_permutation_idx(indices)
        src_boxes = outputs["pred_boxes"][idx]
        target_boxes = _matched(targets, indices, "boxes")
        ious, _ = box_iou(center_to_corners_format(src_boxes.detach()),
                          center_to_corners_format(target_boxes))
        ious = torch.diag(ious)
        src_logits = outputs["logits"]
        dtype = src_logits.dtype
        classes_o = _matched(targets, indices, "class_labels")
        target_classes = torch.full(src_logits.shape[:2], self.num_classes, dtype=torch.int64,
                                    device=src_logits.device)
        target_classes[idx] = classes_o
        target = F.one_hot(target_classes, num_classes=self.num_classes + 1)[..., :-1]
        score_o = torch.zeros_like(target_classes, dtype=dtype)
        score_o[idx] = ious.to(dtype)
        target_score = score_o.unsqueeze(-1) * target
        pred_score = F.sigmoid(src_logits.detach())
        weight = (self.alpha * pred_score.pow(self.gamma) * (1 - target) + target_score).to(dtype)
        loss = F.binary_cross_entropy_with_logits(src_logits, target_score, weight=weight,
                                                  reduction="none")  # (B, Q, C)
        d = self.query_weights(outputs, indices, targets, count=True)  # (B, Q)
        loss = (loss * d.unsqueeze(-1)).mean(1).sum() * src_logits.shape[1] / num_boxes
        return {"loss_vfl": loss}

    def loss_boxes(self, outputs, targets, indices, num_boxes):  # noqa: ANN001
        """L1 and GIoU terms of the matched queries, d_i-weighted (library formulas)."""
        idx = self._get_source_permutation_idx(indices)
        src_boxes = outputs["pred_boxes"][idx]
        target_boxes = _matched(targets, indices, "boxes")
        d = self.query_weights(outputs, indices, targets)[idx]  # (G,)
        l1 = F.l1_loss(src_boxes, target_boxes, reduction="none")  # (G, 4)
        giou = 1 - torch.diag(generalized_box_iou(center_to_corners_format(src_boxes),
                                                  center_to_corners_format(target_boxes)))
        return {"loss_bbox": (l1 * d.unsqueeze(-1)).sum() / num_boxes,
                "loss_giou": (giou * d).sum() / num_boxes}


class _SafeMatcher(nn.Module):
    """The library's Hungarian matcher, returning empty matches when no image of the batch has a
    target box (transformers' matcher cannot reshape an empty cost matrix)."""

    def __init__(self, matcher: nn.Module) -> None:
        super().__init__()
        self.matcher = matcher

    def forward(self, outputs: dict[str, Any], targets: list[dict[str, torch.Tensor]]
                ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if sum(len(t["class_labels"]) for t in targets) == 0:
            dev = outputs["logits"].device
            empty = torch.zeros(0, dtype=torch.int64, device=dev)
            return [(empty, empty) for _ in targets]
        return self.matcher(outputs, targets)


def loss_outputs(model_out: Any, config: RTDetrConfig) -> dict[str, Any]:
    """The criterion's outputs dict from an ``RTDetrModel`` output, as transformers'
    ``RTDetrForObjectDetectionLoss`` assembles it (denoising queries split off, auxiliary
    decoder layers, encoder top-k), each dict tagged with its :data:`ROLE`."""
    logits_all = model_out.intermediate_logits  # (B, L_dec, Q_dn + Q, C)
    boxes_all = model_out.intermediate_reference_points  # (B, L_dec, Q_dn + Q, 4)
    dn_meta = model_out.denoising_meta_values
    if dn_meta is not None:
        dn_logits, logits_all = torch.split(logits_all, dn_meta["dn_num_split"], dim=2)
        dn_boxes, boxes_all = torch.split(boxes_all, dn_meta["dn_num_split"], dim=2)
    out: dict[str, Any] = {"logits": logits_all[:, -1], "pred_boxes": boxes_all[:, -1],
                           ROLE: "final"}
    if config.auxiliary_loss:
        aux = _set_aux_loss(logits_all[:, :-1].transpose(0, 1), boxes_all[:, :-1].transpose(0, 1))
        for a in aux:
            a[ROLE] = "aux"
        enc = _set_aux_loss([model_out.enc_topk_logits], [model_out.enc_topk_bboxes])
        enc[0][ROLE] = "enc"
        out["auxiliary_outputs"] = aux + enc
        if dn_meta is not None:
            dn = _set_aux_loss(dn_logits.transpose(0, 1), dn_boxes.transpose(0, 1))
            for a in dn:
                a[ROLE] = "dn"
            out["dn_auxiliary_outputs"] = dn
            out["denoising_meta_values"] = dn_meta
    return out


def rtdetr_config(
    num_classes: int,
    in_channels: Sequence[int],
    strides: Sequence[int],
    d_model: int = 128,
    encoder_layers: int = 1,
    decoder_layers: int = 2,
    num_queries: int = 50,
    num_denoising: int = 50,
    ffn_dim: int = 512,
    heads: int = 4,
    n_points: int = 4,
    extra_levels: int = 0,
) -> RTDetrConfig:
    """RT-DETR config (no download) for L = len(in_channels) backbone levels of D_l channels and
    strides px, plus ``extra_levels`` stride-2 convolution levels for the decoder. The config's
    backbone is a one-block placeholder whose outputs match ``in_channels``; the detector
    replaces it (features come from :class:`QueryDetector`'s own backbone or a cache)."""
    levels = len(in_channels)
    if levels != len(strides) or levels == 0:
        raise ValueError(f"in_channels {list(in_channels)} and strides {list(strides)} "
                         "must be non-empty and of the same length")
    placeholder = RTDetrResNetConfig(
        embedding_size=8, hidden_sizes=[int(c) for c in in_channels], depths=[1] * levels,
        layer_type="basic", out_features=[f"stage{i + 1}" for i in range(levels)],
    )
    return RTDetrConfig(
        backbone_config=placeholder, num_labels=int(num_classes),
        encoder_in_channels=[int(c) for c in in_channels], feat_strides=[int(s) for s in strides],
        encode_proj_layers=[levels - 1], encoder_layers=int(encoder_layers),
        encoder_hidden_dim=int(d_model), encoder_ffn_dim=int(ffn_dim),
        encoder_attention_heads=int(heads), d_model=int(d_model),
        decoder_in_channels=[int(d_model)] * levels, num_feature_levels=levels + int(extra_levels),
        decoder_layers=int(decoder_layers), decoder_ffn_dim=int(ffn_dim),
        decoder_attention_heads=int(heads), decoder_n_points=int(n_points),
        num_queries=int(num_queries), num_denoising=int(num_denoising),
    )


class QueryDetector(nn.Module):
    """RT-DETR on a frozen (or fine-tuned) backbone, with query drop; see the module docstring.

    num_classes: C; backbone: module mapping normalised (B, 3, H, W) images to a (B, D, h, w)
    map or a list of L maps (``in_channels`` / ``strides`` describe them), or None when the
    detector only receives cached :class:`FeatureBatch` inputs (one level); train_backbone:
    fine-tune it (paper profile) or keep it frozen in eval mode (default profile);
    drop_percentile, drop_queries: tau and the query set of Eq. 3; detections_per_image: the
    top-k (query, class) pairs kept at inference (RT-DETR's post-processing); the other
    arguments size the transformer (:func:`rtdetr_config`).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: Sequence[int],
        strides: Sequence[int],
        backbone: nn.Module | None = None,
        train_backbone: bool = False,
        d_model: int = 128,
        encoder_layers: int = 1,
        decoder_layers: int = 2,
        num_queries: int = 50,
        num_denoising: int = 50,
        ffn_dim: int = 512,
        heads: int = 4,
        n_points: int = 4,
        extra_levels: int = 0,
        drop_percentile: float = 90.0,
        drop_queries: str = "things",
        detections_per_image: int = 100,
    ) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.detections_per_image = int(detections_per_image)
        self.backbone = backbone
        self.train_backbone = bool(train_backbone)
        if backbone is not None and not train_backbone:
            for p in backbone.parameters():
                p.requires_grad_(False)
        self.config = rtdetr_config(num_classes, in_channels, strides, d_model, encoder_layers,
                                    decoder_layers, num_queries, num_denoising, ffn_dim, heads,
                                    n_points, extra_levels)
        detector = RTDetrForObjectDetection(self.config)
        # the placeholder backbone is never run: features enter as ``inputs_embeds``
        detector.model.backbone = None
        self.detector = detector
        self.criterion = QueryDropRTDetrLoss(self.config, drop_percentile, drop_queries)
        self.criterion.matcher = _SafeMatcher(self.criterion.matcher)
        self.strides = [int(x) for x in strides]
        self._noise_seed: int | None = None

    @property
    def drop_active(self) -> bool:
        """Query drop on (the drop phase) or off (preliminary training, evaluation)."""
        return self.criterion.drop_active

    @drop_active.setter
    def drop_active(self, value: bool) -> None:
        self.criterion.drop_active = bool(value)

    def train(self, mode: bool = True) -> QueryDetector:
        super().train(mode)
        if self.backbone is not None and not self.train_backbone:
            self.backbone.eval()  # frozen BatchNorm statistics
        return self

    def set_sample_generators(self, generators: Sequence[torch.Generator] | None) -> None:
        """Seed the denoising noise of the next training forward from the batch's per-image
        generators (the training loop's contract), so a resumed run draws what an unbroken
        one draws; None: the global RNG."""
        self._noise_seed = (None if not generators else
                            int(torch.randint(2**62, (1,), generator=generators[0])))

    def levels(self, inputs: FeatureBatch | Sequence[torch.Tensor]) -> Levels:
        """Pad a batch into :class:`Levels`: cached maps (one level) are zero-padded to the
        largest (h, w), the canvas being stride x that; images are zero-padded to a multiple of
        the largest stride and run through the backbone (no gradient when frozen)."""
        if isinstance(inputs, FeatureBatch):
            if len(self.strides) != 1:
                raise ValueError("a FeatureBatch holds one level; this detector expects "
                                 f"{len(self.strides)}")
            maps = inputs.maps
            hm, wm = max(m.shape[-2] for m in maps), max(m.shape[-1] for m in maps)
            fmap = maps[0].new_zeros((len(maps), maps[0].shape[0], hm, wm))
            for i, m in enumerate(maps):
                fmap[i, :, : m.shape[-2], : m.shape[-1]] = m
            canvas = (hm * self.strides[0], wm * self.strides[0])
            return Levels([fmap], canvas, [tuple(map(int, s)) for s in inputs.image_sizes])
        if self.backbone is None:
            raise ValueError("this QueryDetector has no backbone: pass a FeatureBatch")
        sizes = [(int(t.shape[-2]), int(t.shape[-1])) for t in inputs]
        x = pad_batch(list(inputs), multiple=max(self.strides))
        with torch.set_grad_enabled(self.train_backbone and torch.is_grad_enabled()):
            feats = self.backbone(x)
        feats = [feats] if isinstance(feats, torch.Tensor) else list(feats)
        return Levels(feats, (int(x.shape[-2]), int(x.shape[-1])), sizes)

    def hf_targets(self, targets: Sequence[dict[str, torch.Tensor]], canvas: tuple[int, int]
                   ) -> list[dict[str, torch.Tensor]]:
        """Targets (boxes (G, 4) xyxy px, labels (G,) in 1..C) -> transformers' labels
        (class_labels 0..C-1, boxes cxcywh normalised by the (H, W) px ``canvas``)."""
        out = []
        h, w = canvas
        for t in targets:
            boxes = t["boxes"].reshape(-1, 4).float()
            labels = t["labels"].reshape(-1).to(torch.int64)
            if len(labels) and (labels.min() < 1 or labels.max() > self.num_classes):
                raise ValueError(f"target labels must be in 1..{self.num_classes}, got "
                                 f"{labels.tolist()}")
            scale = boxes.new_tensor([w, h, w, h])
            b = (boxes / scale).clamp(0.0, 1.0)
            cxcywh = torch.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2,
                                  b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], dim=-1)
            out.append({"class_labels": labels - 1, "boxes": cxcywh})
        return out

    def forward(
        self,
        inputs: FeatureBatch | Sequence[torch.Tensor],
        targets: Sequence[dict[str, torch.Tensor]] | None = None,
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        """Train mode: dict of weighted loss terms (sum = loss); eval: detections per image."""
        batch = self.levels(inputs)
        rt = self.detector.model
        proj = [rt.encoder_input_proj[level](f) for level, f in enumerate(batch.maps)]
        # the hybrid encoder is run here because RTDetrModel's ``inputs_embeds`` path takes one
        # tensor; given ``encoder_outputs`` it only reads the batch size and device from it
        encoded = rt.encoder(proj)
        if self.training:
            if targets is None:
                raise ValueError("targets are required in train mode")
            if len(targets) != len(batch.image_sizes):
                raise ValueError(f"{len(targets)} targets for {len(batch.image_sizes)} inputs")
            labels = self.hf_targets(targets, batch.canvas)
            with torch.random.fork_rng(devices=[], enabled=self._noise_seed is not None):
                if self._noise_seed is not None:
                    torch.manual_seed(self._noise_seed)
                out = rt(None, inputs_embeds=proj[0], encoder_outputs=encoded, labels=labels)
            for name in ("intermediate_logits", "intermediate_reference_points"):
                bad = ~torch.isfinite(getattr(out, name))
                if bad.any():
                    raise TrainingError(f"query detector: {int(bad.sum())} NaN/inf values in "
                                        f"{name} (diverged training or invalid inputs)")
            return self.criterion(loss_outputs(out, self.config), labels)
        out = rt(None, inputs_embeds=proj[0], encoder_outputs=encoded)
        return self.postprocess(out.intermediate_logits[:, -1],
                                out.intermediate_reference_points[:, -1], batch.canvas,
                                batch.image_sizes)

    @torch.no_grad()
    def postprocess(self, logits: torch.Tensor, boxes: torch.Tensor, canvas: tuple[int, int],
                    sizes: Sequence[tuple[int, int]]) -> list[dict[str, torch.Tensor]]:
        """RT-DETR post-processing: logits (B, Q, C), boxes (B, Q, 4) cxcywh normalised by the
        (H, W) ``canvas`` -> per image the top-k (query, class) pairs by sigmoid score; boxes
        xyxy px clipped to the image's (H, W) in ``sizes``, labels 1..C."""
        results = []
        num_classes = logits.shape[-1]
        ch, cw = canvas
        for lg, bx, (h, w) in zip(logits, boxes, sizes, strict=True):
            scores = lg.sigmoid().flatten()
            k = min(self.detections_per_image, scores.numel())
            top, idx = scores.topk(k)
            q, c = idx // num_classes, idx % num_classes
            xyxy = center_to_corners_format(bx[q]) * bx.new_tensor([cw, ch, cw, ch])
            xyxy[:, 0::2] = xyxy[:, 0::2].clamp(0, w)
            xyxy[:, 1::2] = xyxy[:, 1::2].clamp(0, h)
            results.append({"boxes": xyxy, "scores": top, "labels": c + 1})
        return results

    def drop_counts(self) -> dict[str, int]:
        """Query-drop counts since the last reset (last decoder layer, drop active), under the
        training loop's names: ``rois`` queries, ``dropped``, ``fg_rois`` matched queries,
        ``fg_dropped``, and ``candidates`` (queries allowed to drop)."""
        c = self.criterion.counts
        return {"rois": c["queries"], "dropped": c["dropped"], "fg_rois": c["fg_queries"],
                "fg_dropped": c["fg_dropped"], "candidates": c["candidates"]}

    def reset_drop_counts(self) -> None:
        """Zero the query-drop counts (the training loop calls it at every epoch start)."""
        self.criterion.counts = {k: 0 for k in self.criterion.counts}


class ResNet50Levels(nn.Module):
    """torchvision ResNet-50 (paper profile) returning C3, C4, C5 (strides 8, 16, 32; 512, 1024,
    2048 channels), weights from a local checkpoint (never downloaded). The stem and layer1
    stay frozen as in DETR-family training; BatchNorm statistics are frozen (eval)."""

    in_channels = (512, 1024, 2048)
    strides = (8, 16, 32)

    def __init__(self, checkpoint: str | Path | None = None) -> None:
        super().__init__()
        from torchvision.models import resnet50

        from weaksam.wsod.backbone import load_state

        net = resnet50(weights=None)
        if checkpoint is not None:
            load_state(net, checkpoint)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)
        self.layer2, self.layer3, self.layer4 = net.layer2, net.layer3, net.layer4
        for p in self.stem.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> ResNet50Levels:
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, S, S) normalised -> [(B, 512, S/8, S/8), (B, 1024, S/16, .), (B, 2048, S/32, .)].
        """
        c3 = self.layer2(self.stem(x))
        c4 = self.layer3(c3)
        return [c3, c4, self.layer4(c4)]
