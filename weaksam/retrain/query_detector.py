"""Query-based detector for retraining on pseudo ground truth: Deformable DETR (two-stage, box
refinement; transformers) with query drop (paper Sec. 3.2 Eq. 3-4, appendix C; Tables 5b, 10,
11).

The paper retrains DINO (Zhang et al., 2022), which has no installable release. Its nearest
installable relatives in transformers are Deformable DETR with box refinement and two-stage
(DINO's base) and RT-DETR (contrastive denoising, query selection). Both were trained here on the
same stand-in (trainval ground-truth boxes as PGT, cached frozen ``backbone_pretrain`` maps,
d_model 64, 1 + 2 layers, 30 queries, batch 8, AdamW 5e-4, 1 thread): after ~32 s of CPU
training, test AP50 21.2 for Deformable DETR (6 epochs) against 12.7 for RT-DETR (4 epochs), so
Deformable DETR is the one built here, from a config (no download). DINO's three additions
(Zhang et al. 2022, Sec. 3.3-3.5) and the two parts it inherits beyond two-stage Deformable DETR
are options on top of it, all off by default (the default profile's stand-in) and on in the
paper profiles:

- contrastive denoising training (``denoising_queries`` > 0, :class:`DenoisingQueries`, Sec.
  3.3): the ground-truth boxes and labels, noised, enter the decoder as extra queries in groups of
  a positive and a negative half (transformers' RT-DETR group builder: label flip probability
  ``label_noise`` / 2, box corners moved by up to ``box_noise`` x half the size, negatives by
  1-2x that), behind a self-attention mask that keeps the matching queries from seeing them and
  each group from seeing the others. Their loss uses no matching: a positive query's target is
  its own ground-truth box, a negative's is "no object" (terms ``*_dn``, every decoder layer).
- mixed query selection (``mixed_query_selection``, Sec. 3.4): the positional queries (anchor
  boxes and their embedding) come from the top-k encoder proposals as in two-stage Deformable
  DETR, the content queries are a learned embedding instead of a projection of the proposals.
- look-forward-twice (``look_forward_twice``, Sec. 3.5, Fig. 6): layer i+1's box prediction adds
  its offset to layer i's refined box *with* its gradient, so layer i+1's box loss also trains
  layer i's box head; the next layer's reference points stay detached as in Deformable DETR.
- per-layer positional queries (``refined_query_pos``, Sec. 3 and Fig. 2, from DAB-DETR): every
  decoder layer's positional query is an MLP (2d -> d -> d) of the sine embedding of the box
  entering that layer (cx, cy, w, h, scaled by the valid ratios; d / 2 frequencies each),
  instead of the library's one projection of the *initial* anchor's embedding for all layers.
- class-ranked query selection (``class_query_selection``, DINO's two-stage recipe; release:
  mmdet ``DINO.pre_decoder``, ``DINOHead.loss_by_feat``): the top-k encoder tokens are those with
  the highest *best class* logit (:class:`BestClassLogit` puts it in channel 0, the one the
  library's top-k reads), and the encoder head is trained on the selected proposals with the
  targets' own classes.

The decoder-side parts sit in :class:`DinoDecoder` (a subclass of transformers' decoder calling
the library's layers and box heads; its own layer loop only with ``refined_query_pos``) plus a
forward hook on the model that prepends the denoising anchors to its ``init_reference_points``.
Still different from DINO: DINO's decoder applies a final LayerNorm to every layer's output
before the heads (transformers' Deformable DETR decoder has none).
transformers' ``DeformableDetrForObjectDetectionLoss`` has no loss on the two-stage encoder
proposals; the original Deformable DETR (and DINO) supervise them, so :class:`QueryDetector`
adds that term (``*_enc``, :meth:`QueryDetector.encoder_outputs`): by default the library's loss
on all encoder tokens with every target relabelled to class 0 (the original two-stage Deformable
DETR's ``bin_targets``); with ``class_query_selection``, DINO's: the selected top-k proposals
with the targets' classes.

Shorthand: B images, Q queries, T encoder tokens, C classes (labels 1..C outside, 0..C-1 inside
transformers), L feature levels, D_l channels, s_l strides (px per cell). Boxes outside:
``(G, 4)`` float xyxy in pixels of the input frame (the image as rescaled by the data
pipeline); inside: (cx, cy, w, h) normalised by each image's own (H, W). A batch is zero-padded
at the bottom / right to its largest member with a padding mask (DETR's convention), so the
encoder ignores the padding and the reference points are scaled by each image's valid ratio.

Interface (torchvision detection convention, docs/contracts.md "Retraining"): in train mode
``model(inputs, targets) -> dict[str, Tensor]`` of weighted loss terms (their sum is the loss);
in eval mode ``model(inputs) -> list[{"boxes", "scores", "labels"}]``, boxes clipped to each
input's (H, W). ``inputs`` is a list of (3, H, W) images normalised as
``weaksam.vision.imaging.to_tensor`` does, or a :class:`weaksam.vision.features.FeatureBatch` of
cached single-level backbone maps (``weaksam.retrain.features``). Either enters transformers'
model through its public ``pixel_values`` / ``pixel_mask`` arguments: :class:`FeatureLevels` is
the model's backbone (a backbone type of its own, registered with ``AutoBackbone``), mapping
``pixel_values`` (images, or the padded cached maps) to the L levels. ``drop_active`` (attribute,
False by default) switches query drop on; the training loop sets it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DeformableDetrConfig, DeformableDetrForObjectDetection
from transformers.image_transforms import center_to_corners_format
from transformers.loss.loss_deformable_detr import (
    DeformableDetrHungarianMatcher,
    DeformableDetrImageLoss,
)
from transformers.loss.loss_for_object_detection import generalized_box_iou
from transformers.loss.loss_rt_detr import RTDetrLoss
from transformers.models.deformable_detr.modeling_deformable_detr import (
    DeformableDetrDecoder,
    DeformableDetrDecoderOutput,
    DeformableDetrMLPPredictionHead,
    inverse_sigmoid,
)
from transformers.models.grounding_dino.modeling_grounding_dino import (
    encode_sinusoidal_position_embedding,
)
from transformers.models.rt_detr.modeling_rt_detr import get_contrastive_denoising_training_group

from weaksam.errors import TrainingError
from weaksam.retrain.query_drop import QUERY_SETS, normalise_groups, per_query_bce, query_drop_mask
from weaksam.vision.features import FeatureBatch
from weaksam.vision.imaging import pad_batch, valid_mask
from weaksam.vision.levels import FeatureLevels, FeatureLevelsConfig
from weaksam.vision.resnet import ResNetLevels, resnet50_trunk

# Key added to every outputs dict handed to the criterion: which loss term it feeds.
ROLE = "query_drop_role"
# Terms query drop applies to: the matching queries of every decoder layer and the encoder
# proposals (the authors' release sends them through its dropping loss); its denoising terms
# (role "dn") never drop.
DROP_ROLES = ("final", "aux", "enc")


def _matched(targets: Sequence[dict[str, torch.Tensor]],
             indices: Sequence[tuple[torch.Tensor, torch.Tensor]], key: str) -> torch.Tensor:
    """``targets[b][key][j]`` of every matched pair (query i, target j) of every image b, in
    the order of the library's ``_get_source_permutation_idx``."""
    return torch.cat([t[key][j] for t, (_, j) in zip(targets, indices, strict=True)], dim=0)


class _SafeMatcher(nn.Module):
    """The library's Hungarian matcher, returning empty matches when no image of the batch has a
    target box (transformers' matcher cannot reshape an empty cost matrix)."""

    def __init__(self, matcher: nn.Module) -> None:
        super().__init__()
        self.matcher = matcher

    def forward(self, outputs: dict[str, Any], targets: list[dict[str, torch.Tensor]]
                ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if sum(len(t["class_labels"]) for t in targets) == 0:
            empty = torch.zeros(0, dtype=torch.int64, device=outputs["logits"].device)
            return [(empty, empty) for _ in targets]
        return self.matcher(outputs, targets)


class QueryDropLoss(DeformableDetrImageLoss):
    """transformers' Deformable DETR criterion with per-query drop signals d_i (Eq. 3-4).

    Only the reductions change: the sigmoid focal classification term and the L1 / GIoU box
    terms are computed per query (the library's formulas, unreduced) and multiplied by d_i
    before the library's reduction (same denominator: the number of target boxes). With
    ``drop_active`` False every d_i is 1 and the terms equal the library's exactly. Terms are
    returned unweighted, as the library's (``loss_ce``, ``loss_bbox``, ``loss_giou``).

    percentile: tau in [0, 100] (paper 90); queries: ``things`` (drop matched queries only,
    paper default, Table 10) or ``all``. Each loss term (last decoder layer, every auxiliary
    decoder layer, encoder proposals) gets its own mask from its own Hungarian matching.
    ``counts`` accumulates, for the last decoder layer while drop is active, the number of
    queries, drop candidates, dropped queries, matched queries and dropped matched queries.
    """

    def __init__(self, config: DeformableDetrConfig, percentile: float = 90.0,
                 queries: str = "things") -> None:
        matcher = DeformableDetrHungarianMatcher(class_cost=config.class_cost,
                                                 bbox_cost=config.bbox_cost,
                                                 giou_cost=config.giou_cost)
        super().__init__(_SafeMatcher(matcher), config.num_labels, config.focal_alpha,
                         ["labels", "boxes"])
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

    def loss_labels(self, outputs, targets, indices, num_boxes):  # noqa: ANN001
        """Sigmoid focal loss (alpha ``focal_alpha``, gamma 2), d_i-weighted per query
        (library formula, same reduction: sum over queries and classes / num_boxes)."""
        logits = outputs["logits"]  # (B, Q, C)
        idx = self._get_source_permutation_idx(indices)
        target_classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64,
                                    device=logits.device)
        target_classes[idx] = _matched(targets, indices, "class_labels")
        onehot = F.one_hot(target_classes, self.num_classes + 1)[..., :-1].to(logits.dtype)
        prob = logits.sigmoid()
        ce = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none")
        p_t = prob * onehot + (1 - prob) * (1 - onehot)
        loss = ce * ((1 - p_t) ** 2)
        if self.focal_alpha >= 0:
            loss = (self.focal_alpha * onehot + (1 - self.focal_alpha) * (1 - onehot)) * loss
        d = self.query_weights(outputs, indices, targets, count=True)  # (B, Q)
        loss_ce = (loss * d.unsqueeze(-1)).mean(1).sum() / num_boxes * logits.shape[1]
        return {"loss_ce": loss_ce}

    def loss_boxes(self, outputs, targets, indices, num_boxes):  # noqa: ANN001
        """L1 and GIoU terms of the matched queries, d_i-weighted (library formulas)."""
        idx = self._get_source_permutation_idx(indices)
        src = outputs["pred_boxes"][idx]
        tgt = _matched(targets, indices, "boxes")
        d = self.query_weights(outputs, indices, targets)[idx]  # (G,)
        l1 = F.l1_loss(src, tgt, reduction="none")  # (G, 4)
        giou = 1 - torch.diag(generalized_box_iou(center_to_corners_format(src),
                                                  center_to_corners_format(tgt)))
        return {"loss_bbox": (l1 * d.unsqueeze(-1)).sum() / num_boxes,
                "loss_giou": (giou * d).sum() / num_boxes}


@dataclass(frozen=True)
class DenoisingQueries:
    """DINO's contrastive denoising queries of one batch (Sec. 3.3), N = 2 x G_max x groups of
    them (G_max: most target boxes of an image in the batch), put before the Q matching queries.

    content: (B, N, d) embedding of each query's (noised) label, the padding label C for the
    slots of images with fewer boxes; position: (B, N, d) positional query of its anchor (the
    same projection the matching queries' anchors get); reference: (B, N, 4) noised anchor boxes,
    cxcywh normalised; attention_mask: (1, 1, N + Q, N + Q) additive (0 or -inf) self-attention
    mask, row = query, column = key; positive: per image the indices (in 0..N-1) of its positive
    queries, target j of group g at position g x G_b + j of its list; groups: number of groups.
    """

    content: torch.Tensor
    position: torch.Tensor
    reference: torch.Tensor
    attention_mask: torch.Tensor
    positive: tuple[torch.Tensor, ...]
    groups: int

    @property
    def size(self) -> int:
        """N, the number of denoising queries."""
        return int(self.content.shape[1])

    def matches(self, targets: Sequence[dict[str, torch.Tensor]]
                ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(query indices, target indices) per image: each positive query with the target box it
        was made from (no Hungarian matching); negatives are unmatched, i.e. "no object"."""
        meta = {"dn_positive_idx": self.positive, "dn_num_group": self.groups}
        return RTDetrLoss.get_cdn_matched_indices(meta, list(targets))


class _DenoisedTargets(list):
    """The transformers targets of a batch (a list, one dict per image) with the batch's
    :class:`DenoisingQueries`, handed through the library model's ``labels`` argument (which it
    only passes on to ``loss_function``)."""

    def __init__(self, targets: Sequence[dict[str, torch.Tensor]],
                 denoising: DenoisingQueries) -> None:
        super().__init__(targets)
        self.denoising = denoising


class DinoDecoder(DeformableDetrDecoder):
    """transformers' Deformable DETR decoder with DINO's decoder-side parts (module docstring).

    ``learned_content`` replaces the content queries (B, Q, d) by a learned (Q, d) embedding
    (mixed query selection); ``denoising`` (a :class:`DenoisingQueries`, passed by keyword
    through the library model) prepends its N queries and sets the self-attention mask;
    ``look_forward_twice`` returns, as ``intermediate_reference_points``, layer i's refined
    boxes *with* their gradient (same values: sigmoid(box head_i(h_i) + inverse_sigmoid(detached
    input reference_i))), so the prediction head of layer i + 1, which adds its offset to them,
    trains box head i as well (DINO Fig. 6); the next layer still gets them detached.

    ``refined_query_pos`` (DINO Sec. 3 and Fig. 2, from DAB-DETR): every layer's positional
    query is ``query_pos_head`` (a 2-layer MLP, 2d -> d -> d, DINO's ``ref_point_head``) of the
    sine embedding (d / 2 frequencies per coordinate, DINO's ``coordinate_to_encoding``, here
    transformers' Grounding DINO helper) of that layer's input box (cx, cy, w, h), scaled by the
    level-0 valid ratios; the decoder then runs a layer loop of its own over the library's
    layers and box heads (same layer inputs as the library's loop). Without it the library's
    forward runs unchanged (the positional query of the initial anchor for every layer).
    """

    def __init__(self, config: DeformableDetrConfig, learned_content: bool = False,
                 look_forward_twice: bool = False, refined_query_pos: bool = False) -> None:
        super().__init__(config)
        self.look_forward_twice = bool(look_forward_twice)
        self.content_queries = (nn.Embedding(config.num_queries, config.d_model)
                                if learned_content else None)
        self.query_pos_head = (DeformableDetrMLPPredictionHead(
            2 * config.d_model, config.d_model, config.d_model, num_layers=2)
            if refined_query_pos else None)

    def forward(self, inputs_embeds: torch.Tensor | None = None,
                object_queries_position_embeddings: torch.Tensor | None = None,
                reference_points: torch.Tensor | None = None,
                denoising: DenoisingQueries | None = None, **kwargs: Any
                ) -> DeformableDetrDecoderOutput:
        """The library decoder's arguments (inputs_embeds: content (B, Q, d); position (B, Q,
        d), unused with ``refined_query_pos``; reference_points (B, Q, 4) in [0, 1]) plus
        ``denoising``."""
        if self.content_queries is not None:
            inputs_embeds = self.content_queries.weight.unsqueeze(0).expand(
                reference_points.shape[0], -1, -1)
        if denoising is not None:
            inputs_embeds = torch.cat([denoising.content, inputs_embeds], dim=1)
            object_queries_position_embeddings = torch.cat(
                [denoising.position, object_queries_position_embeddings], dim=1)
            reference_points = torch.cat([denoising.reference, reference_points], dim=1)
            kwargs["attention_mask"] = denoising.attention_mask
        if self.query_pos_head is not None:
            return self.refined_layers(inputs_embeds, reference_points, **kwargs)
        out = super().forward(inputs_embeds=inputs_embeds,
                              object_queries_position_embeddings=object_queries_position_embeddings,
                              reference_points=reference_points, **kwargs)
        if self.look_forward_twice and self.bbox_embed is not None:
            refined = []
            previous = reference_points
            for i in range(out.intermediate_hidden_states.shape[1]):
                delta = self.bbox_embed[i](out.intermediate_hidden_states[:, i])
                refined.append((delta + inverse_sigmoid(previous)).sigmoid())
                previous = out.intermediate_reference_points[:, i]  # detached, as the loop's
            out.intermediate_reference_points = torch.stack(refined, dim=1)
        return out

    def query_position(self, boxes: torch.Tensor) -> torch.Tensor:
        """DINO's positional query of boxes (B, Q, 4) (cx, cy, w, h) in [0, 1] -> (B, Q, d):
        ``query_pos_head`` of their sine embedding (2d channels: y, x, w, h, d / 2 each)."""
        sine = encode_sinusoidal_position_embedding(boxes, num_pos_feats=self.config.d_model // 2)
        return self.query_pos_head(sine)

    def refined_layers(self, hidden: torch.Tensor, boxes: torch.Tensor, *,
                       valid_ratios: torch.Tensor, encoder_hidden_states: torch.Tensor,
                       encoder_attention_mask: torch.Tensor, spatial_shapes: torch.Tensor,
                       spatial_shapes_list: list[tuple[int, int]],
                       level_start_index: torch.Tensor, **kwargs: Any
                       ) -> DeformableDetrDecoderOutput:
        """DINO's decoder loop: hidden (B, Q, d) content queries, boxes (B, Q, 4) initial
        anchors in [0, 1] of each image's valid area, valid_ratios (B, L, 2); the rest as the
        library's decoder layers take them. Per layer i: input box b_i scaled by the valid
        ratios (to the padded frame of each level), positional query from its level-0 copy
        (:meth:`query_position`, as DINO), layer i, refined box
        b_{i+1} = sigmoid(box head_i(h_i) + inverse_sigmoid(b_i)), fed on detached."""
        if self.bbox_embed is None:
            raise ValueError("refined_query_pos needs box refinement (the decoder's bbox_embed)")
        scale = torch.cat([valid_ratios, valid_ratios], dim=-1)[:, None]  # (B, 1, L, 4)
        states, references = [], []
        for i, layer in enumerate(self.layers):
            scaled = boxes[:, :, None] * scale  # (B, Q, L, 4)
            hidden = layer(hidden, object_queries_position_embeddings=self.query_position(
                               scaled[:, :, 0]),
                           reference_points=scaled, spatial_shapes=spatial_shapes,
                           spatial_shapes_list=spatial_shapes_list,
                           level_start_index=level_start_index,
                           encoder_hidden_states=encoder_hidden_states,
                           encoder_attention_mask=encoder_attention_mask, **kwargs)
            refined = (self.bbox_embed[i](hidden) + inverse_sigmoid(boxes)).sigmoid()
            boxes = refined.detach()
            states.append(hidden)
            references.append(refined if self.look_forward_twice else boxes)
        return DeformableDetrDecoderOutput(
            last_hidden_state=hidden, intermediate_hidden_states=torch.stack(states, dim=1),
            intermediate_reference_points=torch.stack(references, dim=1))


class BestClassLogit(nn.Module):
    """DINO's query selection through the library's two-stage top-k (which ranks encoder
    tokens by channel 0 of the encoder head's output): the wrapped class head's C logits
    (B, T, C) -> (B, T, 1 + C), channel 0 their maximum (DINO's ranking score, mmdet DINO
    ``pre_decoder``: ``topk(enc_outputs_class.max(-1)[0])``), channels 1..C the logits."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(x)
        return torch.cat([logits.max(dim=-1, keepdim=True).values, logits], dim=-1)


def deformable_detr_config(
    num_classes: int,
    in_channels: Sequence[int],
    d_model: int,
    encoder_layers: int,
    decoder_layers: int,
    num_queries: int,
    ffn_dim: int,
    heads: int,
    n_points: int,
    extra_levels: int,
) -> DeformableDetrConfig:
    """Deformable DETR config (two-stage, box refinement, auxiliary losses; no dropout and
    matching costs class 2 / L1 5 / GIoU 2 as DINO; no download) for L = len(in_channels)
    backbone levels of D_l channels (its backbone: :class:`FeatureLevels`), plus ``extra_levels``
    stride-2 convolution levels."""
    levels = len(in_channels)
    if levels == 0:
        raise ValueError("in_channels must name at least one level")
    return DeformableDetrConfig(
        use_timm_backbone=False, backbone_config=FeatureLevelsConfig(in_channels),
        use_pretrained_backbone=False,
        num_labels=int(num_classes), d_model=int(d_model), encoder_layers=int(encoder_layers),
        decoder_layers=int(decoder_layers), encoder_ffn_dim=int(ffn_dim),
        decoder_ffn_dim=int(ffn_dim), encoder_attention_heads=int(heads),
        decoder_attention_heads=int(heads), encoder_n_points=int(n_points),
        decoder_n_points=int(n_points), num_queries=int(num_queries),
        two_stage_num_proposals=int(num_queries), num_feature_levels=levels + int(extra_levels),
        with_box_refine=True, two_stage=True, auxiliary_loss=True, dropout=0.0,
        class_cost=2,  # DINO's (and the authors' release's) focal matching cost weight
    )


@dataclass(frozen=True, kw_only=True)
class QueryDetectorConfig:
    """Transformer of :class:`QueryDetector`: params.yaml ``retrain.detr.model`` (its input
    keys, ``backbone``, ``input``, ``train_scales``, ..., are the stage's). Every default equals
    params.yaml's value (``tests/test_config.py``); DINO's sizes in the comments."""

    d_model: int = 64  # DINO 256
    encoder_layers: int = 1  # DINO 6
    decoder_layers: int = 2  # DINO 6
    num_queries: int = 30  # Q matching queries; DINO 900
    ffn_dim: int = 256  # DINO 2048
    heads: int = 4  # DINO 8
    n_points: int = 4  # sampling points per head and level
    extra_levels: int = 0  # stride-2 levels after the backbone's (DINO R-50 4-scale: 1)
    detections_per_img: int = 100  # top-k (query, class) pairs at inference (DINO R: 300)
    dn_queries: int = 0  # CDN queries per batch, 0 = off (DINO 100), max(1, n // G_max) groups
    dn_label_noise: float = 0.5  # CDN label-noise ratio: a label flips w.p. this / 2 (DINO 0.5)
    dn_box_noise: float = 1.0  # CDN box-noise scale (DINO 1.0)
    mixed_query_selection: bool = False  # DINO Sec. 3.4
    look_forward_twice: bool = False  # DINO Sec. 3.5
    refined_query_pos: bool = False  # DINO Sec. 3 / Fig. 2: positional query from each layer's box
    class_query_selection: bool = False  # DINO: top-k proposals by best class, class-trained head

    def __post_init__(self) -> None:
        if self.dn_queries < 0 or not 0.0 <= self.dn_label_noise <= 1.0 or self.dn_box_noise < 0:
            raise ValueError("dn_queries and dn_box_noise must be >= 0 and dn_label_noise in "
                             f"[0, 1], got {self.dn_queries}, {self.dn_box_noise}, "
                             f"{self.dn_label_noise}")


class QueryDetector(nn.Module):
    """Deformable DETR on a frozen (or fine-tuned) backbone, with query drop and DINO's parts
    as options (module docstring).

    num_classes: C; in_channels: D_l of the backbone levels; strides: s_l px; cfg: the
    transformer, its inference top-k and DINO's parts (:class:`QueryDetectorConfig`; None: its
    defaults); backbone: module mapping normalised (B, 3, H, W) images to a (B, D, h, w) map or
    a list of L maps (the detector then takes images), or None (it takes cached
    :class:`FeatureBatch` maps, one level); train_backbone: fine-tune it (paper profile) or keep
    it frozen in eval mode (default profile); drop_percentile, drop_queries: tau and the query
    set of Eq. 3 (``retrain.detr.drop`` and the row's variant).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: Sequence[int],
        strides: Sequence[int],
        cfg: QueryDetectorConfig | None = None,
        *,
        backbone: nn.Module | None = None,
        train_backbone: bool = False,
        drop_percentile: float = 90.0,
        drop_queries: str = "things",
    ) -> None:
        super().__init__()
        cfg = QueryDetectorConfig() if cfg is None else cfg
        self.cfg = cfg
        if len(in_channels) != len(strides):
            raise ValueError(f"in_channels {list(in_channels)} and strides {list(strides)} "
                             "differ in length")
        self.num_classes = int(num_classes)
        self.strides = [int(x) for x in strides]
        self.detections_per_image = cfg.detections_per_img
        self.train_backbone = bool(train_backbone)
        if backbone is not None and not train_backbone:
            for p in backbone.parameters():
                p.requires_grad_(False)
        self.config = deformable_detr_config(num_classes, in_channels, cfg.d_model,
                                             cfg.encoder_layers, cfg.decoder_layers,
                                             cfg.num_queries, cfg.ffn_dim, cfg.heads,
                                             cfg.n_points, cfg.extra_levels)
        detector = DeformableDetrForObjectDetection(self.config)
        # the original Deformable DETR's head initialisation (transformers leaves it at zero /
        # default): focal prior 0.01 on every class logit, box deltas start at zero
        with torch.no_grad():
            for head in detector.class_embed:
                head.bias.fill_(-math.log((1 - 0.01) / 0.01))
            for head in detector.bbox_embed:
                head.layers[-1].weight.zero_()
                head.layers[-1].bias.zero_()
        if backbone is not None:
            detector.model.backbone.model.set_trunk(backbone, self.train_backbone)
        # the library calls ``loss_function`` with the decoder outputs of every layer
        detector.loss_function = self._decoder_losses
        self.detector = detector
        self.criterion = QueryDropLoss(self.config, drop_percentile, drop_queries)
        self.weights = {"loss_ce": 1.0, "loss_bbox": float(self.config.bbox_loss_coefficient),
                        "loss_giou": float(self.config.giou_loss_coefficient)}
        self.denoising_queries = cfg.dn_queries
        self.label_noise, self.box_noise = cfg.dn_label_noise, cfg.dn_box_noise
        # DINO's parts; nothing is built (and no random number drawn) when all are off
        self.denoising_labels: nn.Embedding | None = None
        if (self.denoising_queries or cfg.mixed_query_selection or cfg.look_forward_twice
                or cfg.refined_query_pos):
            old = detector.model.decoder
            decoder = DinoDecoder(self.config, cfg.mixed_query_selection, cfg.look_forward_twice,
                                  cfg.refined_query_pos)
            decoder.layers, decoder.bbox_embed = old.layers, old.bbox_embed
            decoder.class_embed = old.class_embed
            detector.model.decoder = decoder
        if cfg.mixed_query_selection and cfg.refined_query_pos:
            # the two-stage projection's content and positional halves are both replaced
            for p in [*detector.model.pos_trans.parameters(),
                      *detector.model.pos_trans_norm.parameters()]:
                p.requires_grad_(False)
        self.class_query_selection = cfg.class_query_selection
        if self.class_query_selection:
            # two-stage: the decoder's last class head (index decoder_layers) scores the tokens
            heads = detector.model.decoder.class_embed
            heads[-1] = BestClassLogit(heads[-1])
        if self.denoising_queries:
            # label embedding of the CDN content queries, C = padding (DINO's label_enc)
            self.denoising_labels = nn.Embedding(self.num_classes + 1, self.config.d_model,
                                                 padding_idx=self.num_classes)
            detector.model.register_forward_hook(_prepend_denoising_anchors, with_kwargs=True)

    @property
    def drop_active(self) -> bool:
        """Query drop on (the drop phase) or off (preliminary training, evaluation)."""
        return self.criterion.drop_active

    @drop_active.setter
    def drop_active(self, value: bool) -> None:
        self.criterion.drop_active = bool(value)

    @property
    def feature_levels(self) -> FeatureLevels:
        """The Deformable DETR model's backbone (:class:`FeatureLevels`)."""
        return self.detector.model.backbone.model

    @property
    def backbone(self) -> nn.Module | None:
        """The trunk computing the levels from images (None: cached maps only)."""
        return self.feature_levels.trunk

    def train(self, mode: bool = True) -> QueryDetector:
        super().train(mode)
        if self.backbone is not None and not self.train_backbone:
            self.backbone.eval()  # frozen BatchNorm statistics
        return self

    def pixel_inputs(self, inputs: FeatureBatch | Sequence[torch.Tensor]
                     ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
        """A batch -> (``pixel_values``, ``pixel_mask`` (B, h_0, w_0) int64, 1 on image cells,
        each input's (H, W) px). Cached maps (one level): their zero-padded stack and its mask.
        Images: zero-padded to a multiple of the largest stride; image cells of level 0 are
        ceil(H / s_0) x ceil(W / s_0) of the padded (H_pad / s_0) x (W_pad / s_0)."""
        if isinstance(inputs, FeatureBatch):
            if len(self.strides) != 1:
                raise ValueError("a FeatureBatch holds one level; this detector expects "
                                 f"{len(self.strides)}")
            if self.backbone is not None:
                raise ValueError("this QueryDetector computes its levels from images: pass "
                                 "images, not a FeatureBatch")
            sizes = [(int(h), int(w)) for h, w in inputs.image_sizes]
            return inputs.padded(), inputs.mask().long(), sizes
        if self.backbone is None:
            raise ValueError("this QueryDetector has no backbone: pass a FeatureBatch")
        sizes = [(int(t.shape[-2]), int(t.shape[-1])) for t in inputs]
        x = pad_batch(list(inputs), multiple=max(self.strides))
        s0 = self.strides[0]
        cells = [(-(-h // s0), -(-w // s0)) for h, w in sizes]
        mask = valid_mask(cells, (-(-x.shape[-2] // s0), -(-x.shape[-1] // s0)), x.device)
        return x, mask.long(), sizes

    def hf_targets(self, targets: Sequence[dict[str, torch.Tensor]],
                   sizes: Sequence[tuple[int, int]]) -> list[dict[str, torch.Tensor]]:
        """Targets (boxes (G, 4) xyxy px, labels (G,) in 1..C) -> transformers' labels
        (class_labels 0..C-1, boxes cxcywh normalised by each image's (H, W) in ``sizes``)."""
        out = []
        for t, (h, w) in zip(targets, sizes, strict=True):
            boxes = t["boxes"].reshape(-1, 4).float()
            labels = t["labels"].reshape(-1).to(torch.int64)
            if len(labels) and (labels.min() < 1 or labels.max() > self.num_classes):
                raise ValueError(f"target labels must be in 1..{self.num_classes}, got "
                                 f"{labels.tolist()}")
            b = (boxes / boxes.new_tensor([w, h, w, h])).clamp(0.0, 1.0)
            cxcywh = torch.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2,
                                  b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], dim=-1)
            out.append({"class_labels": labels - 1, "boxes": cxcywh})
        return out

    def _decoder_losses(self, logits, labels, device, pred_boxes, config, outputs_class=None,
                        outputs_coord=None, **kwargs):  # noqa: ANN001, ANN003
        """``loss_function`` of the library model (same arguments as transformers'
        ``DeformableDetrForObjectDetectionLoss``): weighted final and auxiliary decoder terms
        -> (total, terms, auxiliary outputs)."""
        for name, t in (("logits", outputs_class), ("boxes", outputs_coord)):
            bad = ~torch.isfinite(t)
            if bad.any():
                raise TrainingError(f"query detector: {int(bad.sum())} NaN/inf values in the "
                                    f"decoder's {name} (diverged training or invalid inputs)")
        denoising = getattr(labels, "denoising", None)
        dn_terms: dict[str, torch.Tensor] = {}
        if denoising is not None:  # the first N queries are CDN queries: split them off
            n = denoising.size
            dn_terms = self.denoising_losses(outputs_class[:, :, :n], outputs_coord[:, :, :n],
                                             list(labels), denoising)
            outputs_class, outputs_coord = outputs_class[:, :, n:], outputs_coord[:, :, n:]
            logits, pred_boxes, labels = outputs_class[-1], outputs_coord[-1], list(labels)
        outputs: dict[str, Any] = {"logits": logits, "pred_boxes": pred_boxes, ROLE: "final"}
        aux = [{"logits": c, "pred_boxes": b, ROLE: "aux"}
               for c, b in zip(outputs_class[:-1], outputs_coord[:-1], strict=True)]
        outputs["auxiliary_outputs"] = aux
        terms = self.weighted(self.criterion(outputs, labels))
        terms.update(dn_terms)
        return sum(terms.values()), terms, aux

    def make_denoising(self, labels: Sequence[dict[str, torch.Tensor]]) -> DenoisingQueries | None:
        """DINO's CDN queries for a batch of transformers targets (class_labels 0..C-1, boxes
        cxcywh normalised), drawn with torch's global generator by transformers' RT-DETR group
        builder; None when no image has a box. Positional queries: the matching queries'
        projection (``pos_trans``) of the sine embedding of the noised anchors."""
        content, anchors, mask, meta = get_contrastive_denoising_training_group(
            list(labels), self.num_classes, self.config.num_queries, self.denoising_labels,
            self.denoising_queries, self.label_noise, self.box_noise)
        if content is None:
            return None
        if self.box_noise <= 0:  # the builder leaves unnoised anchors in [0, 1]
            anchors = inverse_sigmoid(anchors)
        model = self.detector.model
        position = model.pos_trans_norm(model.pos_trans(model.get_proposal_pos_embed(anchors)))
        return DenoisingQueries(content=content, position=position[..., :self.config.d_model],
                                reference=anchors.sigmoid(), attention_mask=mask[None, None],
                                positive=tuple(meta["dn_positive_idx"]),
                                groups=int(meta["dn_num_group"]))

    def denoising_losses(self, logits: torch.Tensor, boxes: torch.Tensor,
                         labels: Sequence[dict[str, torch.Tensor]], denoising: DenoisingQueries
                         ) -> dict[str, torch.Tensor]:
        """Weighted CDN terms of every decoder layer (``loss_ce_dn``, ``loss_bbox_dn``,
        ``loss_giou_dn`` for the last, ``*_dn_{i}`` for layer i of the others): logits (L, B, N,
        C), boxes (L, B, N, 4). Each positive query is paired with its own target, negatives
        and padding slots are "no object"; the criterion's focal, L1 and GIoU formulas (never
        query-dropped), divided by the number of target boxes x groups (DINO's normaliser)."""
        indices = denoising.matches(labels)
        num_boxes = max(sum(len(t["class_labels"]) for t in labels), 1) * denoising.groups
        out: dict[str, torch.Tensor] = {}
        layers = logits.shape[0]
        for i in range(layers):
            outputs = {"logits": logits[i], "pred_boxes": boxes[i], ROLE: "dn"}
            suffix = "_dn" if i == layers - 1 else f"_dn_{i}"
            raw = {**self.criterion.loss_labels(outputs, labels, indices, num_boxes),
                   **self.criterion.loss_boxes(outputs, labels, indices, num_boxes)}
            out.update({k + suffix: v for k, v in self.weighted(raw).items()})
        return out

    def weighted(self, terms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Unweighted library terms (``loss_ce``, ``loss_bbox_0``, ...) x their weights (1, 5,
        2: the library's and DINO's), the logging-only ``cardinality_error`` left out."""
        return {k: v * self.weights[k.split("_")[0] + "_" + k.split("_")[1]]
                for k, v in terms.items() if not k.startswith("cardinality")}

    def forward(
        self,
        inputs: FeatureBatch | Sequence[torch.Tensor],
        targets: Sequence[dict[str, torch.Tensor]] | None = None,
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        """Train mode: dict of weighted loss terms (sum = loss); eval: detections per image."""
        pixels, mask0, sizes = self.pixel_inputs(inputs)
        if not self.training:
            out = self.detector(pixel_values=pixels, pixel_mask=mask0)
            return self.postprocess(out.logits, out.pred_boxes, sizes)
        if targets is None:
            raise ValueError("targets are required in train mode")
        if len(targets) != len(sizes):
            raise ValueError(f"{len(targets)} targets for {len(sizes)} inputs")
        labels = self.hf_targets(targets, sizes)
        denoising = self.make_denoising(labels) if self.denoising_queries else None
        if denoising is None:
            out = self.detector(pixel_values=pixels, pixel_mask=mask0, labels=labels)
        else:
            out = self.detector(pixel_values=pixels, pixel_mask=mask0,
                                labels=_DenoisedTargets(labels, denoising), denoising=denoising)
        terms = dict(out.loss_dict)
        enc, enc_labels = self.encoder_outputs(out.enc_outputs_class,
                                               out.enc_outputs_coord_logits, labels)
        terms.update({k + "_enc": v
                      for k, v in self.weighted(self.criterion(enc, enc_labels)).items()})
        return terms

    def encoder_outputs(self, scores: torch.Tensor, coord_logits: torch.Tensor,
                        labels: Sequence[dict[str, torch.Tensor]]
                        ) -> tuple[dict[str, Any], list[dict[str, torch.Tensor]]]:
        """The two-stage encoder terms' inputs: scores (B, T, C) (or (B, T, 1 + C) with
        ``class_query_selection``), coord_logits (B, T, 4) -> (outputs, targets) for the
        criterion. Default (two-stage Deformable DETR): every token, every target relabelled to
        class 0 (the original's ``bin_targets``). ``class_query_selection`` (DINO, mmdet DINO
        ``pre_decoder`` / ``DINOHead.loss_by_feat``): the Q selected tokens (top-k of channel 0,
        the best class logit, as the library selects them) with their C class logits, the
        targets' own classes."""
        if not self.class_query_selection:
            binary = [{"class_labels": torch.zeros_like(t["class_labels"]), "boxes": t["boxes"]}
                      for t in labels]
            return ({"logits": scores, "pred_boxes": coord_logits.sigmoid(), ROLE: "enc"},
                    binary)
        top = scores[..., 0].topk(self.config.two_stage_num_proposals, dim=1).indices  # (B, Q)
        logits = scores[..., 1:].gather(1, top[..., None].expand(-1, -1, self.num_classes))
        boxes = coord_logits.gather(1, top[..., None].expand(-1, -1, 4)).sigmoid()
        return {"logits": logits, "pred_boxes": boxes, ROLE: "enc"}, list(labels)

    @torch.no_grad()
    def postprocess(self, logits: torch.Tensor, boxes: torch.Tensor,
                    sizes: Sequence[tuple[int, int]]) -> list[dict[str, torch.Tensor]]:
        """Deformable DETR post-processing: logits (B, Q, C), boxes (B, Q, 4) cxcywh normalised
        by each image's (H, W) in ``sizes`` -> per image the top-k (query, class) pairs by
        sigmoid score; boxes xyxy px clipped to the image, labels 1..C."""
        results = []
        num_classes = logits.shape[-1]
        for lg, bx, (h, w) in zip(logits, boxes, sizes, strict=True):
            scores = lg.sigmoid().flatten()
            k = min(self.detections_per_image, scores.numel())
            top, idx = scores.topk(k)
            q, c = idx // num_classes, idx % num_classes
            xyxy = center_to_corners_format(bx[q]) * bx.new_tensor([w, h, w, h])
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


def _prepend_denoising_anchors(module: nn.Module, args: tuple, kwargs: dict[str, Any],
                               output: Any) -> Any:
    """Forward hook of the library model: with CDN queries (keyword ``denoising``), prepend
    their anchors (B, N, 4) to ``init_reference_points``, from which the prediction head adds
    layer 0's box offsets (the decoder prepended the queries themselves)."""
    denoising = kwargs.get("denoising")
    if denoising is not None:
        output.init_reference_points = torch.cat(
            [denoising.reference, output.init_reference_points], dim=1)
    return output


def resnet50_levels(checkpoint: str | Path | None) -> ResNetLevels:
    """Paper profile: C3, C4, C5 (strides 8, 16, 32; 512, 1024, 2048 channels) of the local
    ImageNet ResNet-50 ``checkpoint`` (:func:`weaksam.vision.resnet.resnet50_trunk`, BatchNorm
    statistics frozen), the stem and C2 frozen as in DETR-family training."""
    return ResNetLevels(resnet50_trunk(checkpoint, frozen_bn=False), stages=(3, 4, 5),
                        frozen_stages=2)
