"""RoI drop regularization for Faster R-CNN (paper Sec. 3.2, Eq. 1-2; appendix B, Table 9).

Shorthand: R sampled RoIs of a batch (all images concatenated, torchvision's order), K
foreground classes, labels in 0..K with 0 = background (torchvision's convention),
``box_regression: (R, (K + 1) * 4)`` class-specific deltas, ``regression_targets: (R, 4)``
encoded with the RoI heads' BoxCoder (weights 10, 10, 5, 5).

Per RoI (unreduced):
    l_cls_i = CE(class_logits_i, label_i)
    l_reg_i = sum over the 4 deltas of smooth-L1(beta)   (0 for a background RoI: p*_i = 0)
Eq. 1, drop signal:  d_i = 1 if l_cls_i <= tau_cls and l_reg_i <= tau_reg, else 0.
Eq. 2, one reduction with torchvision's denominator (the number R of sampled RoIs, whatever
is dropped, as ``fastrcnn_loss`` and detectron2's ``box_reg_loss`` divide by it):
    loss_classifier = sum_i d_i l_cls_i / R,   loss_box_reg = sum_i d_i p*_i l_reg_i / R.
With every d_i = 1 this is exactly torchvision's ``fastrcnn_loss`` (tests check 1e-6).

Choices (docs/fidelity.md, section "RoI drop"):

- Thresholds act on the raw per-RoI losses by default (``normalize="none"``), as the authors'
  release does (``fast_rcnn.py``, "ver 1. Fixed value drop"); the paper's tau_cls = 4.0 and
  tau_reg = 1.0 are raw-loss values (a normalised loss never reaches 4). ``normalize="range"``
  divides each loss by (max - min) over the batch's RoIs before thresholding, the release's
  commented-out "ver 1.1" (the figures 3 and 5 use it for their x axis).
- The regression loss is torchvision's smooth-L1 with beta = 1/9 (the release uses
  detectron2's default beta = 0, plain L1): ``smooth_l1_beta`` is a constructor argument.
- Eq. 1 drops a RoI when *either* loss is above its threshold (``rule="either"``, the paper).
  The release zeroes a RoI only when *both* are above (``rule="both"``). ``rule`` has no
  default: params.yaml (``retrain.frcnn.drop.rule``) chooses, and runs ``both`` (Eq. 1 drops
  almost every foreground RoI of the default profile).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from weaksam.errors import TrainingError

NORMALIZE = ("none", "range")
RULES = ("either", "both")


@dataclass(frozen=True, kw_only=True)
class RoiDropConfig:
    """RoI drop of the Faster R-CNN heads (Eq. 1-2): params.yaml ``retrain.frcnn.drop``, with
    ``tau_cls`` / ``tau_reg`` replaced per table row by the stage (``retrain.frcnn.variants``).
    No defaults: params.yaml is their one source (the release's rule ``both`` is not Eq. 1's
    ``either``, the two betas 0.1111 and torchvision's 1/9 differ in the last bits)."""

    tau_cls: float  # paper 4.0
    tau_reg: float  # paper 1.0
    normalize: str  # "none" (release) | "range"
    rule: str  # "either" (Eq. 1) | "both" (release)
    smooth_l1_beta: float  # 0: plain L1 (release)

    def __post_init__(self) -> None:
        if self.normalize not in NORMALIZE:
            raise ValueError(f"normalize must be one of {NORMALIZE}, got {self.normalize!r}")
        if self.rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {self.rule!r}")


def per_roi_losses(
    class_logits: torch.Tensor,
    box_regression: torch.Tensor,
    labels: torch.Tensor,
    regression_targets: torch.Tensor,
    smooth_l1_beta: float = 1.0 / 9.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unreduced Fast R-CNN losses: (l_cls (R,), l_reg (R,)); l_reg is 0 on background RoIs.

    class_logits (R, K+1); box_regression (R, (K+1)*4); labels (R,) int64 in 0..K;
    regression_targets (R, 4). Same terms as torchvision's ``fastrcnn_loss`` before its
    reductions (CE with ``reduction="none"``; smooth-L1 summed over the 4 deltas)."""
    l_cls = F.cross_entropy(class_logits, labels, reduction="none")
    r = class_logits.shape[0]
    deltas = box_regression.reshape(r, box_regression.size(-1) // 4, 4)
    pos = torch.where(labels > 0)[0]
    l_reg = class_logits.new_zeros(r)
    if len(pos):
        per = F.smooth_l1_loss(deltas[pos, labels[pos]], regression_targets[pos],
                               beta=smooth_l1_beta, reduction="none").sum(1)
        l_reg = l_reg.index_put((pos,), per)
    return l_cls, l_reg


def normalize_losses(loss: torch.Tensor, how: str = "none") -> torch.Tensor:
    """Loss values (R,) as the thresholds see them (detached). ``none``: unchanged;
    ``range``: divided by (max - min) over the R values (+1e-8), the authors' "ver 1.1"."""
    loss = loss.detach()
    if how == "none" or loss.numel() == 0:
        return loss
    if how == "range":
        return loss / (loss.max() - loss.min() + 1e-8)
    raise ValueError(f"normalize must be one of {NORMALIZE}, got {how!r}")


def drop_mask(
    l_cls: torch.Tensor, l_reg: torch.Tensor, tau_cls: float, tau_reg: float, rule: str,
) -> torch.Tensor:
    """Eq. 1: keep (R,) bool, True where d_i = 1.

    ``either`` (paper): keep iff l_cls <= tau_cls and l_reg <= tau_reg. ``both`` (authors'
    release): drop only when l_cls > tau_cls and l_reg > tau_reg."""
    over_cls, over_reg = l_cls > tau_cls, l_reg > tau_reg
    if rule == "either":
        return ~(over_cls | over_reg)
    if rule == "both":
        return ~(over_cls & over_reg)
    raise ValueError(f"rule must be one of {RULES}, got {rule!r}")


def reduce_losses(l_cls: torch.Tensor, l_reg: torch.Tensor,
                  keep: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 2: (loss_classifier, loss_box_reg), each sum_i d_i l_i / R (R = all sampled RoIs,
    kept or not: torchvision's denominator). ``keep=None``: no drop."""
    r = max(l_cls.numel(), 1)
    if keep is not None:
        w = keep.to(l_cls.dtype)
        l_cls, l_reg = l_cls * w, l_reg * w
    return l_cls.sum() / r, l_reg.sum() / r


def check_finite(l_cls: torch.Tensor, l_reg: torch.Tensor) -> None:
    """A NaN / inf per-RoI loss raises :class:`TrainingError` (a NaN compares False with every
    threshold, so without this check it would be dropped silently)."""
    bad_cls = ~torch.isfinite(l_cls.detach())
    bad_reg = ~torch.isfinite(l_reg.detach())
    if bool(bad_cls.any()) or bool(bad_reg.any()):
        raise TrainingError(
            f"non-finite per-RoI loss: {int(bad_cls.sum())} classification and "
            f"{int(bad_reg.sum())} regression values of {l_cls.numel()} RoIs "
            "(diverged training or bad targets)")


def roi_drop_loss(
    class_logits: torch.Tensor,
    box_regression: torch.Tensor,
    labels: torch.Tensor,
    regression_targets: torch.Tensor,
    *,
    active: bool,
    tau_cls: float,
    tau_reg: float,
    rule: str,
    normalize: str = "none",
    smooth_l1_beta: float = 1.0 / 9.0,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Fast R-CNN loss with RoI drop (Eq. 1-2). Returns (loss_classifier, loss_box_reg, info)
    where info holds the per-RoI ``l_cls``, ``l_reg`` (R,) (detached), ``keep`` (R,) bool (all
    True when not ``active``) and the thresholded values ``n_cls``, ``n_reg``."""
    l_cls, l_reg = per_roi_losses(class_logits, box_regression, labels, regression_targets,
                                  smooth_l1_beta)
    check_finite(l_cls, l_reg)
    n_cls, n_reg = normalize_losses(l_cls, normalize), normalize_losses(l_reg, normalize)
    keep = drop_mask(n_cls, n_reg, tau_cls, tau_reg, rule) if active else None
    loss_cls, loss_reg = reduce_losses(l_cls, l_reg, keep)
    info = {"l_cls": l_cls.detach(), "l_reg": l_reg.detach(), "n_cls": n_cls, "n_reg": n_reg,
            "keep": keep if keep is not None else torch.ones_like(labels, dtype=torch.bool)}
    return loss_cls, loss_reg, info
