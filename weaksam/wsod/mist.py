"""MIST: multiple-instance self-training with Concrete DropBlock (Ren et al., CVPR 2020; the
paper's stronger WSOD baseline, Tables 1, 4, 6, 7), as released in NVlabs/wetectron.

Extends :class:`weaksam.wsod.oicr.OICR` (same shorthand: R proposals, C classes, K branches):
- pseudo labels per present class c (MIST Alg. 1; wetectron ``mist_layer``): the top
  k = floor(``top_p`` R) proposals by the previous branch's score (at least 1: wetectron fails on
  k = 0), then spatial selection: candidate i (rank order) is kept iff its IoU with EVERY
  higher-ranked candidate, kept or not, is below ``spatial_iou`` (not NMS: a candidate dropped
  for overlapping the first one still removes the ones that overlap it). All kept candidates
  are seeds; every proposal takes its highest-IoU seed's class when IoU >= 0.5, else
  background, weighted by the seed's score.
- each refinement branch k has a box regression head (R, 4 (C + 1)); loss ``reg{k}`` (R,):
  smooth L1 (``reg_beta``; wetectron: beta 1) of the class-specific deltas to the matched seed
  box (BoxCoder weights 10, 10, 5, 5), foreground proposals only, weighted by the seed score;
  branch 0's classification and regression losses x3 (wetectron ``lmda``), MIL BCE averaged
  over classes.
- Concrete DropBlock (:class:`ConcreteDropBlock`) on the RoI feature maps (R, Cf, s, s); its
  parameters are trained by their own optimizer to INCREASE the detection loss (the trainer,
  :func:`weaksam.wsod.train.train_wsod`, owns that adversarial step).
Inference: mean over branches of class scores and of regression deltas.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import box_iou

from weaksam.wsod.oicr import OICR
from weaksam.wsod.segments import RoIBatch, segment_sum


class _ReleasedScorer(nn.Module):
    """wetectron's ``cdb.BasicBlock``: conv3x3-BN-ReLU-conv3x3(->2)-BN plus a 1x1 (->2)
    shortcut, no biases; channel 0 is the drop score. (R, Cf, s, s) -> (R, 1, s, s)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2)
        self.down = nn.Conv2d(c, 2, 1, bias=False)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return (out + self.down(x))[:, :1]


class ConcreteDropBlock(nn.Module):
    """Learned DropBlock on RoI feature maps (MIST Sec. 3.3; wetectron ``ConvConcreteDB``).

    A conv net scores every cell of each RoI map from the detached features; the seed
    probability of a cell is ``p = sigmoid(score) * gamma`` with DropBlock's seed rate
    ``gamma = rate / block^2``. Seeds are a Gumbel-softmax sample over {drop, keep} with logits
    ``log p, log(1 - p)`` and temperature T, hard (straight-through: the forward value is a 0/1
    sample of Bernoulli(p), the gradient that of the soft sample) or soft; they are expanded to
    ``block`` x ``block`` blocks by max-pooling and the features are scaled by the keep mask,
    renormalised per image to keep the mean (wetectron renormalises over the GPU's batch).

    ``net``: ``released`` (wetectron's BasicBlock) or ``light`` (1x1 conv to ``hidden``, ReLU,
    3x3 conv to 1: a cheaper scorer). The module is adversarial only through its optimizer.
    ``forward(x (R, Cf, s, s), generator, sizes) -> (x_dropped (R, Cf, s, s), p (R, s * s))``;
    identity in eval mode. For a batch of images, ``generator`` is one generator per image
    (noise drawn on the CPU, so any device gives the same draws) and ``sizes`` their RoI counts.
    """

    def __init__(self, in_channels: int, block: int = 3, rate: float = 0.3,
                 temperature: float = 0.01, hard: bool = True, net: str = "released",
                 hidden: int = 16) -> None:
        super().__init__()
        if net not in ("released", "light"):
            raise ValueError(f"cdb net must be released or light, got {net!r}")
        self.block, self.rate, self.temperature, self.hard = block, rate, temperature, hard
        self.net = _ReleasedScorer(in_channels) if net == "released" else nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, 1, 3, padding=1))

    def seed_prob(self, x: torch.Tensor) -> torch.Tensor:
        """(R, Cf, s, s) -> seed probabilities (R, 1, s, s) in [0, gamma]."""
        return torch.sigmoid(self.net(x.detach())) * (self.rate / self.block**2)

    def forward(self, x: torch.Tensor,
                generator: torch.Generator | Sequence[torch.Generator | None] | None = None,
                sizes: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.seed_prob(x)
        if not self.training or self.rate == 0:
            return x, p.flatten(1)
        sizes = [len(x)] if sizes is None else list(sizes)
        gens = list(generator) if isinstance(generator, Sequence) else [generator]
        u = torch.cat([torch.rand((n, 2, *p.shape[2:]), generator=g)
                       for g, n in zip(gens, sizes, strict=True)]).to(x.device)
        gumbel = -torch.log(-torch.log(u + 1e-20) + 1e-20)
        logits = torch.cat([p, 1.0 - p], dim=1).add(1e-10).log()
        soft = F.softmax((logits + gumbel) / self.temperature, dim=1)[:, :1]  # P(drop)
        if self.hard:  # straight-through: the value of the 0/1 sample, the soft gradient
            z = (soft >= 0.5).to(soft.dtype) - soft.detach() + soft
        else:
            z = soft
        pad = self.block // 2
        drop = F.max_pool2d(z, self.block, stride=1, padding=pad)[..., : x.shape[2], : x.shape[3]]
        keep = 1.0 - drop
        # per image: its RoIs' cells over its kept cells (the mean activation is unchanged)
        counts = torch.tensor(sizes, dtype=torch.long, device=x.device)
        seg = torch.repeat_interleave(counts)
        kept = segment_sum(keep.flatten(1).sum(1), seg, len(sizes)).clamp_min(1e-6)
        norm = (counts * keep[0].numel()) / kept
        return x * keep * norm[seg].view(-1, 1, 1, 1), p.flatten(1)


class MIST(OICR):
    """MIST = OICR + top-p / spatial pseudo-label mining + box regression + Concrete DropBlock."""

    loss_names = ("mil", "refine", "reg")

    def __init__(self, backbone: nn.Module, num_classes: int, *, top_p: float = 0.15,
                 spatial_iou: float = 0.2, reg_weight: float = 1.0, reg_beta: float = 1.0,
                 cdb: bool = True, cdb_block: int = 3, cdb_rate: float = 0.3,
                 cdb_temperature: float = 0.01, cdb_hard: bool = True,
                 cdb_net: str = "released", **oicr_kwargs) -> None:
        oicr_kwargs.setdefault("mil_reduction", "mean")
        oicr_kwargs.setdefault("first_refine_weight", 3.0)
        super().__init__(backbone, num_classes, **oicr_kwargs)
        self.top_p, self.spatial_iou, self.reg_weight = top_p, spatial_iou, reg_weight
        self.reg_beta = reg_beta
        hidden = self.mil_cls.in_features
        self.reg = nn.ModuleList(nn.Linear(hidden, 4 * (num_classes + 1))
                                 for _ in range(self.refine_times))
        for m in self.reg:
            nn.init.normal_(m.weight, std=0.001)
            nn.init.zeros_(m.bias)
        self.coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
        self.cdb = ConcreteDropBlock(backbone.out_channels, cdb_block, cdb_rate,
                                     cdb_temperature, cdb_hard, cdb_net) if cdb else None
        self.cdb_active = cdb  # switched by the trainer (``cdb_start_epoch``)

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
        """MIST Alg. 1 as wetectron's ``mist_layer``, per image and present class (a "pair"):
        the top k = max(1, floor(top_p R)) of the image's R proposals by score; candidate i is
        kept iff IoU < spatial_iou with every higher-ranked candidate (kept or not). ->
        (seed boxes (G, 4), classes (G,) in 1..C, scores (G,), images (G,)), pair by pair
        (image-major, classes ascending), scores descending within a pair.

        All pairs of the batch at once: one sort, one IoU matrix of all candidates, masked to
        the pairs' own higher-ranked candidates."""
        dev = scores.device
        img, cls = torch.nonzero(batch.labels > 0, as_tuple=True)  # (P,) pairs
        if len(img) == 0:
            z = torch.zeros(0, dtype=torch.long, device=dev)
            return batch.boxes.new_zeros((0, 4)), z, scores.new_zeros(0), z
        n = batch.counts[img]  # (P,) proposals of each pair's image
        pair = torch.repeat_interleave(torch.arange(len(img), device=dev), n)  # (M,)
        first = torch.cumsum(n, 0) - n  # (P,) offset of each pair in the M entries
        rows = (torch.cumsum(batch.counts, 0) - batch.counts)[img][pair] \
            + torch.arange(len(pair), device=dev) - first[pair]  # (M,) proposal row of each
        s = scores[rows, cls[pair]]
        order = torch.argsort(s, descending=True, stable=True)
        order = order[torch.argsort(pair[order], stable=True)]  # pair-major, score descending
        rank = torch.arange(len(order), device=dev) - first[pair[order]]
        n_top = torch.floor(self.top_p * n.double()).long().clamp_min(1)  # wetectron's int()
        cand = order[rank < n_top[pair[order]]]  # (M',) pair-major, rank ascending
        cp, cr = pair[cand], rank[rank < n_top[pair[order]]]
        iou = box_iou(batch.boxes[rows[cand]], batch.boxes[rows[cand]])  # (M', M')
        above = (cp[:, None] == cp[None, :]) & (cr[None, :] < cr[:, None])
        blocked = ((iou >= self.spatial_iou) & above).any(dim=1)
        k = cand[~blocked]
        return batch.boxes[rows[k]], cls[pair[k]] + 1, s[k], img[pair[k]]

    def loss_reg(self, out: dict, tgt: dict) -> torch.Tensor:
        """(N,) smooth L1 (``reg_beta``; wetectron: 1; summed over the 4 deltas) of the
        matched seed's class deltas, foreground only, times the seed weight and
        ``reg_weight``."""
        k, t = tgt["k"], tgt["refine"][tgt["k"]]
        idx = torch.arange(len(t["labels"]), device=t["labels"].device)
        deltas = out["reg"][k][idx, t["labels"]]  # (R, 4)
        l1 = F.smooth_l1_loss(deltas, t["reg_target"], beta=self.reg_beta,
                              reduction="none").sum(1)
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
