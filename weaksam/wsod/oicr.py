"""OICR: WSDDN multiple-instance head + K online instance classifier refinement branches
(Tang et al., CVPR 2017; the paper's WSOD baseline, Tables 1 and 7).

Shorthand: R proposals of one image, C classes (index 0..C-1 in the MIL head; refinement
branches have C + 1 outputs, column 0 = background, class c at column c + 1), D RoI feature
size, K refinement branches. ``boxes: (R, 4)`` xyxy in pixels of the network input; image
labels ``(C,)`` multi-hot.

A training batch of B images runs as one: the heads see the N = sum_i R_i proposals of the
batch concatenated (:class:`weaksam.wsod.segments.RoIBatch`), and the per-image quantities
(WSDDN's softmax over an image's proposals, its image score, OICR's 1/|R| average) are segment
reductions, so the cost of a step does not grow with a Python loop of small ops per image.

Losses are per element (STYLE.md items 3-4), one method per loss with one signature
(``loss_<name>(out, tgt) -> Tensor``), reduced per image in :meth:`OICR.reduce` only:
- ``mil``: (B, C) BCE of the image score phi_c = sum_r softmax_c(x^cls)_rc softmax_r(x^det)_rc
  (WSDDN); summed over classes (OICR paper Eq. 1, ``mil_reduction="sum"``) or averaged over
  them (wetectron's ``F.binary_cross_entropy``, MIST: ``"mean"``).
- ``refine{k}``: (N,) weighted cross-entropy of branch k against pseudo labels from branch
  k - 1 (OICR Eq. 4: -1/|R| sum_r w_r log p_{r, y_r}); mean over each image's R proposals;
  branch 0 times ``first_refine_weight`` (OICR: 1; wetectron's MIST loss: ``lmda = 3``).

Seeds (OICR Sec. 3.3 and its release, ``lib/oicr_layer/layer.py``): for each present class in
ascending order, the top-scoring proposal of the image; a proposal taken by one class has its
scores set to 0 for the classes after it (``cls_prob[max_index, :] = 0``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_iou, roi_align, roi_pool

from weaksam.wsod.segments import (
    RoIBatch,
    segment_argmax,
    segment_mean,
    segment_softmax,
    segment_sum,
)


class RoIBoxHead(nn.Module):
    """RoI pooling of a feature map + two FC layers: (R, Cf, s, s) maps -> (R, D) features.

    ``op``: ``roi_align`` (bilinear, aligned, ``sampling`` points per bin side) or
    ``roi_pool`` (Fast R-CNN max pooling).
    """

    def __init__(self, in_channels: int, stride: int, roi_size: int, hidden: int,
                 op: str = "roi_align", dropout: float = 0.0, sampling: int = 2) -> None:
        super().__init__()
        if op not in ("roi_align", "roi_pool"):
            raise ValueError(f"roi op must be roi_align or roi_pool, got {op!r}")
        self.op, self.stride, self.roi_size, self.sampling = op, stride, roi_size, sampling
        self.fc = nn.Sequential(
            nn.Flatten(), nn.Linear(in_channels * roi_size * roi_size, hidden),
            nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
        )

    def pool(self, fmap: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """fmap (1, Cf, h, w), boxes (R, 4) input pixels -> (R, Cf, s, s)."""
        scale = 1.0 / self.stride
        if self.op == "roi_align":
            return roi_align(fmap, [boxes], self.roi_size, spatial_scale=scale,
                             sampling_ratio=self.sampling, aligned=True)
        return roi_pool(fmap, [boxes], self.roi_size, spatial_scale=scale)


def assign_to_seeds(
    boxes: torch.Tensor, seed_boxes: torch.Tensor, seed_classes: torch.Tensor,
    seed_scores: torch.Tensor, fg_iou: float, bg_ignore_iou: float,
    seg: torch.Tensor | None = None, seed_seg: torch.Tensor | None = None,
    iou: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Label every proposal by its highest-IoU seed (OICR Sec. 3.3; MIST uses the same rule).

    boxes (R, 4), seeds (G, 4) with classes (G,) in 1..C and scores (G,). A proposal with
    IoU >= ``fg_iou`` takes its seed's class, else background 0; its weight is the seed's score
    either way (0 below ``bg_ignore_iou``). Returns ``labels (R,)`` long, ``weights (R,)``,
    ``gt_boxes (R, 4)`` (the matched seed box, regression target) and ``fg (R,)`` bool.
    For a batch of images, ``seg (R,)`` and ``seed_seg (G,)`` give the image of each proposal
    and seed: a proposal only matches seeds of its own image (none there: background, weight 0).
    ``iou (R, G)``: ``box_iou(boxes, seed_boxes)`` when the caller already has it.
    """
    r = len(boxes)
    if len(seed_boxes) == 0:
        z = boxes.new_zeros(r)
        return {"labels": z.long(), "weights": z, "gt_boxes": boxes.clone(),
                "fg": torch.zeros(r, dtype=torch.bool, device=boxes.device)}
    iou = box_iou(boxes, seed_boxes) if iou is None else iou
    if seg is not None and seed_seg is not None:
        iou = iou.masked_fill(seg[:, None] != seed_seg[None, :], -1.0)
    best, arg = iou.max(dim=1)
    fg = best >= fg_iou
    labels = torch.where(fg, seed_classes[arg], torch.zeros_like(arg))
    weights = seed_scores[arg].clone()
    weights[(best < bg_ignore_iou) | (best < 0)] = 0.0
    return {"labels": labels, "weights": weights, "gt_boxes": seed_boxes[arg], "fg": fg}


class OICR(nn.Module):
    """OICR network: ``backbone.forward_features`` -> RoI head -> WSDDN MIL head + K
    refinement branches. ``forward`` returns the per-image, per-element losses (training);
    :meth:`predict` gives proposal scores for inference."""

    loss_names: tuple[str, ...] = ("mil", "refine")

    def __init__(
        self, backbone: nn.Module, num_classes: int, *, roi_op: str = "roi_align",
        roi_size: int = 7, roi_sampling: int = 2, hidden: int = 256, dropout: float = 0.0,
        refine_times: int = 3,
        fg_iou: float = 0.5, bg_ignore_iou: float = 0.0, freeze_backbone: bool = False,
        mil_reduction: str = "sum", first_refine_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if mil_reduction not in ("sum", "mean"):
            raise ValueError(f"mil_reduction must be sum or mean, got {mil_reduction!r}")
        self.mil_reduction, self.first_refine_weight = mil_reduction, float(first_refine_weight)
        self.backbone = backbone
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            backbone.requires_grad_(False)
        self.num_classes, self.refine_times = num_classes, refine_times
        self.fg_iou, self.bg_ignore_iou = fg_iou, bg_ignore_iou
        self.roi_head = RoIBoxHead(backbone.out_channels, backbone.stride, roi_size, hidden,
                                   roi_op, dropout, roi_sampling)
        self.mil_cls = nn.Linear(hidden, num_classes)
        self.mil_det = nn.Linear(hidden, num_classes)
        self.refine = nn.ModuleList(nn.Linear(hidden, num_classes + 1)
                                    for _ in range(refine_times))
        for m in [self.mil_cls, self.mil_det, *self.refine]:
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)

    def train(self, mode: bool = True) -> OICR:
        """Backbone BatchNorm stays frozen (eval) as in detection fine-tuning."""
        super().train(mode)
        self.backbone.eval()
        return self

    # ---- features ------------------------------------------------------------------------
    def features(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, Cf, h, w); no graph when the backbone is frozen."""
        if self.freeze_backbone:
            with torch.no_grad():
                return self.backbone.forward_features(image)
        return self.backbone.forward_features(image)

    def drop(self, maps: torch.Tensor, batch: RoIBatch,
             generators: list[torch.Generator | None]) -> torch.Tensor:
        """RoI feature maps (N, Cf, s, s) of a training batch -> the maps the head sees (MIST
        overrides this to apply Concrete DropBlock; OICR keeps them)."""
        return maps

    def heads(self, feats: torch.Tensor, seg: torch.Tensor | None = None, num_images: int = 1
              ) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """RoI features (N, D) of ``num_images`` images (``seg (N,)`` image index; None: one
        image) -> ``mil`` (N, C) WSDDN proposal scores (product of the class softmax and the
        softmax over the image's proposals) and ``refine`` K x (N, C+1) logits."""
        if seg is None:
            seg = torch.zeros(len(feats), dtype=torch.long, device=feats.device)
        out = self.linear_heads(feats)
        cls = F.softmax(out.pop("mil_cls")[0], dim=1)
        det = segment_softmax(out.pop("mil_det")[0], seg, num_images)
        return {"mil": cls * det, **out}

    def head_layers(self) -> dict[str, list[nn.Linear]]:
        """Every FC layer on the RoI features, by output name."""
        return {"mil_cls": [self.mil_cls], "mil_det": [self.mil_det], "refine": list(self.refine)}

    def linear_heads(self, feats: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        """(N, D) -> the output of every :meth:`head_layers` layer, by name, computed as ONE
        matrix product with the layers' weights stacked (same values, one op instead of 2K+2)."""
        layers = self.head_layers()
        flat = [m for ms in layers.values() for m in ms]
        y = F.linear(feats, torch.cat([m.weight for m in flat]), torch.cat([m.bias for m in flat]))
        parts = iter(y.split([m.out_features for m in flat], dim=1))
        return {k: [next(parts) for _ in ms] for k, ms in layers.items()}

    # ---- pseudo labels and losses ---------------------------------------------------------
    def seeds(self, scores: torch.Tensor, batch: RoIBatch
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """OICR seeds: per image, for each present class in ascending order, the top-scoring
        proposal; once a class has taken a proposal, its scores are 0 for the later classes
        (OICR release). scores (N, C) -> (seed boxes (G, 4), classes (G,) in 1..C, scores (G,)
        as read after the earlier classes' removals, images (G,)), image by image, classes
        ascending. Batched: step j takes the j-th present class of every image at once."""
        img, cls = torch.nonzero(batch.labels > 0, as_tuple=True)  # image-major, cls ascending
        if len(img) == 0:
            z = torch.zeros(0, dtype=torch.long, device=scores.device)
            return batch.boxes.new_zeros((0, 4)), z, scores.new_zeros(0), z
        n_pos = torch.bincount(img, minlength=batch.num_images)  # (B,)
        rank = torch.arange(len(img), device=img.device) - (torch.cumsum(n_pos, 0) - n_pos)[img]
        left = scores.clone()
        rows = torch.empty_like(img)
        vals = scores.new_empty(len(img))
        for j in range(int(n_pos.max())):
            sel = torch.nonzero(rank == j, as_tuple=True)[0]  # the j-th class of each image
            c_of = torch.full((batch.num_images,), -1, dtype=torch.long, device=img.device)
            c_of[img[sel]] = cls[sel]
            col = left.gather(1, c_of[batch.seg].clamp_min(0)[:, None])  # (N, 1)
            top = segment_argmax(col, batch.seg, batch.num_images)[:, 0]  # (B,)
            r = top[img[sel]]
            rows[sel], vals[sel] = r, left[r, cls[sel]]
            left[r] = 0.0
        return batch.boxes[rows], cls + 1, vals, img

    def targets(self, out: dict, batch: RoIBatch) -> list[dict]:
        """Pseudo labels of each refinement branch k from branch k - 1 (the MIL scores for
        k = 0), computed without gradient."""
        with torch.no_grad():
            seeds, prev = [], out["mil"]
            for k in range(self.refine_times):
                seeds.append(self.seeds(prev, batch))
                prev = F.softmax(out["refine"][k], dim=1)[:, 1:]
            # one IoU matrix against the seeds of all branches, split per branch
            ious = box_iou(batch.boxes, torch.cat([sd[0] for sd in seeds])).split(
                [len(sd[0]) for sd in seeds], dim=1)
            return [assign_to_seeds(batch.boxes, sb, sc, ss, self.fg_iou, self.bg_ignore_iou,
                                    batch.seg, si, iou)
                    for (sb, sc, ss, si), iou in zip(seeds, ious, strict=True)]

    def loss_mil(self, out: dict, tgt: dict) -> torch.Tensor:
        """(B, C) WSDDN BCE of image scores phi = sum_r mil_rc clamped to [1e-6, 1 - 1e-6]."""
        b = tgt["batch"]
        phi = segment_sum(out["mil"], b.seg, b.num_images).clamp(1e-6, 1 - 1e-6)
        y = b.labels
        # written out (not F.binary_cross_entropy) so a NaN reaches the trainer's guard
        return -(y * torch.log(phi) + (1 - y) * torch.log1p(-phi))

    def loss_refine(self, out: dict, tgt: dict) -> torch.Tensor:
        """(N,) OICR weighted cross-entropy -w_r log p_{r, y_r} of branch tgt["k"]."""
        t = tgt["refine"][tgt["k"]]
        ce = F.cross_entropy(out["refine"][tgt["k"]], t["labels"], reduction="none")
        return t["weights"] * ce

    def element_losses(self, out: dict, batch: RoIBatch) -> dict[str, torch.Tensor]:
        """Per-element losses of a batch: ``mil`` (B, C), ``refine{k}`` (N,) ..."""
        tgt = {"batch": batch, "refine": self.targets(out, batch)}
        losses = {"mil": self.loss_mil(out, tgt)}
        for k in range(self.refine_times):
            tgt["k"] = k
            for name in self.loss_names[1:]:
                losses[f"{name}{k}"] = getattr(self, f"loss_{name}")(out, tgt)
        return losses

    def loss_keys(self) -> list[str]:
        """Names of the reduced losses :meth:`forward` returns for every image, sorted."""
        return sorted(["mil", *(f"{n}{k}" for n in self.loss_names[1:]
                                for k in range(self.refine_times))])

    def reduce(self, losses: dict[str, torch.Tensor], batch: RoIBatch
               ) -> dict[str, torch.Tensor]:
        """The one reduction, per image -> (B,) each: ``mil`` summed (WSDDN, OICR Eq. 1) or
        averaged (wetectron) over classes; every per-proposal loss averaged over the image's R
        proposals (OICR's 1/|R|, also for regression: the denominator is all proposals,
        foreground or not, as wetectron's ``reg_loss /= pseudo_labels.numel()``); the losses of
        branch 0 (``refine0``, ``reg0``) times ``first_refine_weight``."""
        out = {}
        for k, v in losses.items():
            if k == "mil":
                out[k] = v.sum(dim=1) if self.mil_reduction == "sum" else v.mean(dim=1)
            else:
                out[k] = segment_mean(v, batch.seg, batch.counts)
                if k.endswith("0") and self.first_refine_weight != 1.0:
                    out[k] = self.first_refine_weight * out[k]
        return out

    # ---- training forward -----------------------------------------------------------------
    def forward(self, inputs: list[torch.Tensor], boxes: list[torch.Tensor],
                labels: list[torch.Tensor], generators: list[torch.Generator | None],
                precomputed: bool = False) -> dict[str, torch.Tensor]:
        """Training: per image ``inputs[i]`` (3, H, W) image or (Cf, h, w) features when
        ``precomputed``, ``boxes[i]`` (R_i, 4) in its pixels (R_i >= 1), ``labels[i]`` (C,),
        ``generators[i]`` its random draws. Returns the reduced losses, name -> (B,) per image.
        Only the RoI pooling runs per image (feature maps differ in size); the heads, pseudo
        labels and losses run once on the batch."""
        maps = [self.roi_head.pool(x[None] if precomputed else self.features(x[None]), b)
                for x, b in zip(inputs, boxes, strict=True)]
        batch = RoIBatch.of(boxes, labels)
        feats = self.roi_head.fc(self.drop(torch.cat(maps), batch, list(generators)))
        out = self.heads(feats, batch.seg, batch.num_images)
        return self.reduce(self.element_losses(out, batch), batch)

    # ---- inference ------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, fmap: torch.Tensor, boxes: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """fmap (1, Cf, h, w), boxes (R, 4) -> class scores (R, C): the mean of the K refinement
        branches' softmax without background (OICR inference); no box deltas (None)."""
        feats = self.roi_head.fc(self.roi_head.pool(fmap, boxes))
        o = self.heads(feats)
        probs = torch.stack([F.softmax(r, dim=1) for r in o["refine"]]).mean(0)
        return probs[:, 1:], None
