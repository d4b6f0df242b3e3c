"""OICR: WSDDN multiple-instance head + K online instance classifier refinement branches
(Tang et al., CVPR 2017; the paper's WSOD baseline, Tables 1 and 7).

Shorthand: R proposals of one image, C classes (index 0..C-1 in the MIL head; refinement
branches have C + 1 outputs, column 0 = background, class c at column c + 1), D RoI feature
size, K refinement branches. ``boxes: (R, 4)`` xyxy in pixels of the network input; image
labels ``(C,)`` multi-hot.

Losses are per element (STYLE.md items 3-4), one method per loss with one signature
(``loss_<name>(out, tgt) -> Tensor``), reduced in :meth:`WSODNet.reduce` only:
- ``mil``: (C,) BCE of the image score phi_c = sum_r softmax_c(x^cls)_rc softmax_r(x^det)_rc
  (WSDDN); summed over classes.
- ``refine{k}``: (R,) weighted cross-entropy of branch k against pseudo labels from branch
  k - 1 (OICR Eq. 4: -1/|R| sum_r w_r log p_{r, y_r}); mean over the image's R proposals.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_iou, roi_align, roi_pool


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
) -> dict[str, torch.Tensor]:
    """Label every proposal by its highest-IoU seed (OICR Sec. 3.3; MIST uses the same rule).

    boxes (R, 4), seeds (G, 4) with classes (G,) in 1..C and scores (G,). A proposal with
    IoU >= ``fg_iou`` takes its seed's class, else background 0; its weight is the seed's score
    either way (0 below ``bg_ignore_iou``). Returns ``labels (R,)`` long, ``weights (R,)``,
    ``gt_boxes (R, 4)`` (the matched seed box, regression target) and ``fg (R,)`` bool.
    """
    r = len(boxes)
    if len(seed_boxes) == 0:
        z = boxes.new_zeros(r)
        return {"labels": z.long(), "weights": z, "gt_boxes": boxes.clone(),
                "fg": torch.zeros(r, dtype=torch.bool)}
    iou = box_iou(boxes, seed_boxes)
    best, arg = iou.max(dim=1)
    fg = best >= fg_iou
    labels = torch.where(fg, seed_classes[arg], torch.zeros_like(arg))
    weights = seed_scores[arg].clone()
    weights[best < bg_ignore_iou] = 0.0
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
    ) -> None:
        super().__init__()
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

    def roi_maps(self, fmap: torch.Tensor, boxes: torch.Tensor,
                 generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """RoI feature maps (R, Cf, s, s) and optional drop probabilities (R, s * s) (MIST
        overrides this to apply Concrete DropBlock; OICR returns None)."""
        return self.roi_head.pool(fmap, boxes), None

    def heads(self, feats: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """RoI features (R, D) of ONE image -> ``mil`` (R, C) WSDDN proposal scores (product of
        the class softmax and the proposal softmax) and ``refine`` K x (R, C+1) logits."""
        cls = F.softmax(self.mil_cls(feats), dim=1)
        det = F.softmax(self.mil_det(feats), dim=0)
        return {"mil": cls * det, "refine": [h(feats) for h in self.refine]}

    # ---- pseudo labels and losses ---------------------------------------------------------
    def seeds(self, boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """OICR seeds: the top-scoring proposal of every present class. scores (R, C) ->
        (seed boxes (G, 4), classes (G,) in 1..C, scores (G,))."""
        present = torch.nonzero(labels > 0).flatten()
        top = scores[:, present].argmax(dim=0)
        return boxes[top], present + 1, scores[top, present]

    def targets(self, out: dict, boxes: torch.Tensor, labels: torch.Tensor) -> list[dict]:
        """Pseudo labels of each refinement branch k from branch k - 1 (the MIL scores for
        k = 0), computed without gradient."""
        tgts = []
        with torch.no_grad():
            prev = out["mil"]
            for k in range(self.refine_times):
                sb, sc, ss = self.seeds(boxes, prev, labels)
                tgts.append(assign_to_seeds(boxes, sb, sc, ss, self.fg_iou, self.bg_ignore_iou))
                prev = F.softmax(out["refine"][k], dim=1)[:, 1:]
        return tgts

    def loss_mil(self, out: dict, tgt: dict) -> torch.Tensor:
        """(C,) WSDDN BCE of image scores phi = sum_r mil_rc clamped to [1e-6, 1 - 1e-6]."""
        phi = out["mil"].sum(dim=0).clamp(1e-6, 1 - 1e-6)
        y = tgt["labels"]
        # written out (not F.binary_cross_entropy) so a NaN reaches the trainer's guard
        return -(y * torch.log(phi) + (1 - y) * torch.log1p(-phi))

    def loss_refine(self, out: dict, tgt: dict) -> torch.Tensor:
        """(R,) OICR weighted cross-entropy -w_r log p_{r, y_r} of branch tgt["k"]."""
        t = tgt["refine"][tgt["k"]]
        ce = F.cross_entropy(out["refine"][tgt["k"]], t["labels"], reduction="none")
        return t["weights"] * ce

    def image_losses(self, out: dict, boxes: torch.Tensor, labels: torch.Tensor
                     ) -> dict[str, torch.Tensor]:
        """Per-element losses of one image: ``mil`` (C,), ``refine{k}`` (R,) ..."""
        tgt = {"labels": labels, "refine": self.targets(out, boxes, labels)}
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

    @staticmethod
    def reduce(losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The one reduction: ``mil`` summed over classes (WSDDN); every per-proposal loss
        averaged over the image's R proposals (OICR's 1/|R|, also for regression: the
        denominator is all proposals, foreground or not, as detectron2's box_reg_loss)."""
        return {k: (v.sum() if k == "mil" else v.mean()) for k, v in losses.items()}

    # ---- training forward -----------------------------------------------------------------
    def forward(self, inputs: list[torch.Tensor], boxes: list[torch.Tensor],
                labels: list[torch.Tensor], generators: list[torch.Generator | None],
                precomputed: bool = False) -> list[dict[str, torch.Tensor]]:
        """Training: per image ``inputs[i]`` (3, H, W) image or (Cf, h, w) features when
        ``precomputed``, ``boxes[i]`` (R_i, 4) in its pixels, ``labels[i]`` (C,). Returns one dict
        of reduced losses (scalars) per image."""
        maps, drops = [], []
        for x, b, g in zip(inputs, boxes, generators, strict=True):
            fmap = x[None] if precomputed else self.features(x[None])
            m, d = self.roi_maps(fmap, b, g)
            maps.append(m)
            drops.append(d)
        feats = self.roi_head.fc(torch.cat(maps)).split([len(b) for b in boxes])  # one FC pass
        out = []
        for f, b, y, d in zip(feats, boxes, labels, drops, strict=True):
            o = self.heads(f)
            o["drop_p"] = d
            out.append(self.reduce(self.image_losses(o, b, y)))
        return out

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
