"""MIST: multiple-instance self-training with Concrete DropBlock (Ren et al., CVPR 2020; the
paper's stronger WSOD baseline, Tables 1, 4, 6, 7).

Extends :class:`weaksam.wsod.oicr.OICR` (same shorthand: R proposals, C classes, K branches):
- pseudo labels per present class c (MIST Alg. 1): the top ``top_p`` fraction of proposals by
  the previous branch's score, then spatial selection: walking down that list, keep a proposal
  unless it overlaps an already kept one with IoU > ``spatial_iou`` (greedy, i.e. NMS on the
  top-p set). All kept proposals are seeds; every proposal takes its highest-IoU seed's class
  when IoU >= 0.5, else background, weighted by the seed's score.
- each refinement branch k has a box regression head (R, 4 (C + 1)); loss ``reg{k}`` (R,):
  smooth L1 of the class-specific deltas to the matched seed box (torchvision's BoxCoder,
  weights 10, 10, 5, 5), foreground proposals only, weighted like the classification loss.
- Concrete DropBlock on the RoI feature maps (R, Cf, s, s): a small conv net predicts per-cell
  drop logits from the (detached) RoI features; a relaxed-Bernoulli (Concrete) sample with
  temperature T is expanded into ``block`` x ``block`` blocks by max-pooling and the features
  are multiplied by the keep mask (rescaled to keep the mean). The module is trained
  adversarially: the gradient of the detection loss reaches it through a gradient-reversal
  layer, so it learns to drop the parts the detector relies on most. The seed budget is fixed
  by construction (DropBlock's seed rate from ``cdb_rate``, spread by a softmax over the
  cells), so the adversary chooses where to drop, never how much.
Inference: mean over branches of class scores and of regression deltas.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import nms

from weaksam.wsod.oicr import OICR
from weaksam.wsod.segments import RoIBatch, segment_sum


class _GradReverse(torch.autograd.Function):
    """Identity forward; gradient multiplied by -1 backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return -grad


class ConcreteDropBlock(nn.Module):
    """Learned, adversarial DropBlock on RoI feature maps (MIST Sec. 3.3).

    A small conv net scores every cell of each RoI map; the seed probability of a cell is
    ``p = min(1, gamma * s^2 * softmax(scores over the s x s cells))`` with DropBlock's seed
    rate ``gamma = rate / block^2``, so the expected dropped area is fixed by ``rate`` and the
    module only learns WHERE to drop. Seeds are a relaxed Bernoulli (Concrete) sample with
    temperature T, expanded to ``block`` x ``block`` blocks by max-pooling; features are scaled by
    the keep mask (renormalised to keep their mean). Gradients of the detection loss reach the
    module through a gradient-reversal layer (it maximises the loss: adversarial).

    ``forward(x (R, Cf, s, s), generator) -> (x_dropped (R, Cf, s, s), p (R, s * s))``;
    identity in eval mode. For a batch of images, ``generator`` is one generator per image and
    ``sizes`` the images' RoI counts: each image draws its own noise and keeps its own mean.
    """

    def __init__(self, in_channels: int, block: int = 3, rate: float = 0.3,
                 temperature: float = 0.5, hidden: int = 16) -> None:
        super().__init__()
        self.block, self.rate, self.temperature = block, rate, temperature
        # 1x1 channel reduction then a 3x3 conv: spatial context at a small cost per RoI
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, 1, 3, padding=1),
        )

    def seed_prob(self, x: torch.Tensor) -> torch.Tensor:
        """(R, Cf, s, s) -> seed probabilities (R, 1, s, s), mean gamma per RoI (when < 1)."""
        scores = self.net(x.detach())  # the module does not move the features themselves
        r, _, h, w = scores.shape
        gamma = self.rate / self.block**2
        p = gamma * h * w * F.softmax(scores.flatten(1), dim=1)
        return p.clamp(1e-6, 1 - 1e-6).view(r, 1, h, w)

    def forward(self, x: torch.Tensor,
                generator: torch.Generator | Sequence[torch.Generator | None] | None = None,
                sizes: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.seed_prob(x)
        if not self.training:
            return x, p.flatten(1)
        sizes = [len(x)] if sizes is None else list(sizes)
        gens = list(generator) if isinstance(generator, Sequence) else [generator]
        u = torch.cat([torch.rand((n, *p.shape[1:]), generator=g)
                       for g, n in zip(gens, sizes, strict=True)]).clamp(1e-6, 1 - 1e-6)
        logit = torch.log(p) - torch.log1p(-p) + torch.log(u) - torch.log1p(-u)
        z = torch.sigmoid(logit / self.temperature)
        pad = self.block // 2
        drop = F.max_pool2d(z, self.block, stride=1, padding=pad)[..., : x.shape[2], : x.shape[3]]
        keep = _GradReverse.apply(1.0 - drop)
        # per image: its RoIs' cells over its kept cells (the mean activation is unchanged)
        counts = torch.tensor(sizes, dtype=torch.long)
        seg = torch.repeat_interleave(counts)
        kept = segment_sum(keep.detach().flatten(1).sum(1), seg, len(sizes)).clamp_min(1e-6)
        norm = (counts * keep[0].numel()) / kept
        return x * keep * norm[seg].view(-1, 1, 1, 1), p.flatten(1)


class MIST(OICR):
    """MIST = OICR + top-p / spatial pseudo-label mining + box regression + Concrete DropBlock."""

    loss_names = ("mil", "refine", "reg")

    def __init__(self, backbone: nn.Module, num_classes: int, *, top_p: float = 0.15,
                 spatial_iou: float = 0.2, reg_weight: float = 1.0, cdb: bool = True,
                 cdb_block: int = 3, cdb_rate: float = 0.3, cdb_temperature: float = 0.5,
                 **oicr_kwargs) -> None:
        super().__init__(backbone, num_classes, **oicr_kwargs)
        self.top_p, self.spatial_iou, self.reg_weight = top_p, spatial_iou, reg_weight
        hidden = self.mil_cls.in_features
        self.reg = nn.ModuleList(nn.Linear(hidden, 4 * (num_classes + 1))
                                 for _ in range(self.refine_times))
        for m in self.reg:
            nn.init.normal_(m.weight, std=0.001)
            nn.init.zeros_(m.bias)
        self.coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
        self.cdb = ConcreteDropBlock(backbone.out_channels, cdb_block, cdb_rate,
                                     cdb_temperature) if cdb else None
        self.cdb_active = cdb  # switched by the trainer (MIST starts dropping after warm-up)

    def drop(self, maps: torch.Tensor, batch: RoIBatch,
             generators: list[torch.Generator | None]) -> torch.Tensor:
        if self.cdb is not None and self.cdb_active and self.training:
            return self.cdb(maps, generators, batch.sizes)[0]
        return maps

    def heads(self, feats: torch.Tensor, seg: torch.Tensor | None = None,
              num_images: int = 1) -> dict:
        out = super().heads(feats, seg, num_images)
        out["reg"] = [r.reshape(len(feats), -1, 4) for r in out["reg"]]  # K x (N, C+1, 4)
        return out

    def head_layers(self) -> dict[str, list[nn.Linear]]:
        return {**super().head_layers(), "reg": list(self.reg)}

    def targets(self, out: dict, batch: RoIBatch) -> list[dict]:
        """OICR's pseudo labels plus each branch's regression target ``reg_target (N, 4)``:
        the deltas from each proposal to its matched seed (one encoding for all branches)."""
        tgts = super().targets(out, batch)
        with torch.no_grad():
            enc = self.coder.encode_single(torch.cat([t["gt_boxes"] for t in tgts]),
                                           batch.boxes.repeat(len(tgts), 1))
        for t, e in zip(tgts, enc.split(len(batch.boxes)), strict=True):
            t["reg_target"] = e
        return tgts

    def seeds(self, scores: torch.Tensor, batch: RoIBatch
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """MIST Alg. 1, per image and present class (a "pair"): the top-p% of the image's
        proposals by score, then greedy spatial selection (drop one overlapping a kept seed by
        IoU > spatial_iou). -> (seed boxes (G, 4), classes (G,) in 1..C, scores (G,), images
        (G,)), pair by pair (image-major, classes ascending), scores descending within a pair.

        All pairs of the batch at once: one sort, and one NMS on boxes shifted apart per pair
        (in float64, where the shift is exact), so pairs never suppress each other."""
        img, cls = torch.nonzero(batch.labels > 0, as_tuple=True)  # (P,) pairs
        if len(img) == 0:
            z = torch.zeros(0, dtype=torch.long)
            return batch.boxes.new_zeros((0, 4)), z, batch.boxes.new_zeros(0), z
        n = batch.counts[img]  # (P,) proposals of each pair's image
        pair = torch.repeat_interleave(torch.arange(len(img)), n)  # (M,) one entry per candidate
        first = torch.cumsum(n, 0) - n  # (P,) offset of each pair in the M entries
        rows = (torch.cumsum(batch.counts, 0) - batch.counts)[img][pair] \
            + torch.arange(len(pair)) - first[pair]  # (M,) proposal row of each entry
        s = scores[rows, cls[pair]]
        order = torch.argsort(s, descending=True, stable=True)
        order = order[torch.argsort(pair[order], stable=True)]  # pair-major, score descending
        rank = torch.arange(len(order)) - first[pair[order]]
        n_top = torch.ceil(self.top_p * n.double()).long().clamp_min(1)  # as math.ceil
        cand = order[rank < n_top[pair[order]]]
        b = batch.boxes[rows[cand]].double()
        shift = (pair[cand].double() * (float(b.max()) + 1.0))[:, None]
        keep = torch.sort(nms(b + shift, s[cand].double(), self.spatial_iou)).values
        k = cand[keep]
        return batch.boxes[rows[k]], cls[pair[k]] + 1, s[k], img[pair[k]]

    def loss_reg(self, out: dict, tgt: dict) -> torch.Tensor:
        """(N,) smooth L1 (beta 1/9, summed over the 4 deltas) of the matched seed's
        class deltas, foreground only, times the seed weight and ``reg_weight``."""
        k, t = tgt["k"], tgt["refine"][tgt["k"]]
        deltas = out["reg"][k][torch.arange(len(t["labels"])), t["labels"]]  # (R, 4)
        l1 = F.smooth_l1_loss(deltas, t["reg_target"], beta=1.0 / 9, reduction="none").sum(1)
        return self.reg_weight * t["weights"] * t["fg"].float() * l1

    def element_losses(self, out: dict, batch: RoIBatch) -> dict[str, torch.Tensor]:
        tgt = {"batch": batch, "refine": self.targets(out, batch)}
        losses = {"mil": self.loss_mil(out, tgt)}
        for k in range(self.refine_times):
            tgt["k"] = k
            losses[f"refine{k}"] = self.loss_refine(out, tgt)
            losses[f"reg{k}"] = self.loss_reg(out, tgt)
        return losses

    @torch.no_grad()
    def predict(self, fmap: torch.Tensor, boxes: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> scores (R, C) (mean of the branches' softmax, background dropped) and deltas
        (R, C, 4) (mean of the branches' class-specific regression, background dropped)."""
        feats = self.roi_head.fc(self.roi_head.pool(fmap, boxes))
        o = self.heads(feats)
        probs = torch.stack([F.softmax(r, dim=1) for r in o["refine"]]).mean(0)
        deltas = torch.stack(o["reg"]).mean(0)
        return probs[:, 1:], deltas[:, 1:]
