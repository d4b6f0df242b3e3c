"""Query drop regularization (paper Sec. 3.2 Eq. 3-4, appendix C, appendix F.3 / Tables 10-11).

Shorthand: B images, Q queries per image, C classes, N = B * Q queries of a batch, G matched
(query, box) pairs. Class indices are 0..C-1 with C meaning "no object" (background), as in
transformers' detection losses.

A query's drop signal is computed from its classification loss only (Eq. 3):

    d_i = 1  if  l_i^cls <= l_tau^cls  else 0,

where ``l_tau^cls`` is the tau-th percentile of the losses of the queries that may drop. Then
d_i multiplies the query's classification, L1 box and GIoU terms (Eq. 4); the reduction keeps
the denominator of the loss without drop (the number of target boxes), so dropping a query
removes its term and changes nothing else.

Choices (docs/fidelity.md, section "query-based detector"):

- The ranking loss is the *unweighted* focal loss, i.e. the binary cross-entropy summed over the
  C sigmoid outputs against the one-hot target (appendix C), whatever classification loss the
  detector trains with (RT-DETR trains with the varifocal loss).
- Appendix C normalises the ranking loss "for both foreground and background queries within
  each training batch": min-max normalisation over the batch, separately for matched
  (foreground) and unmatched (background) queries (:func:`normalise_groups`). With
  ``queries="things"`` only matched queries are candidates, so the min-max map (monotone) does
  not change which queries drop; with ``queries="all"`` it puts both groups on one scale.
- The percentile is taken over the candidate queries of the batch (things: matched queries;
  all: every query) with linear interpolation (``torch.quantile``, numpy's default); the paper
  does not say which interpolation, the authors' release sorts and indexes (see fidelity.md).
"""

from __future__ import annotations

import torch

QUERY_SETS = ("things", "all")


def per_query_bce(logits: torch.Tensor, target_classes: torch.Tensor) -> torch.Tensor:
    """Unweighted focal loss per query (appendix C): BCE of the C sigmoid outputs against the
    one-hot target, summed over classes.

    logits: (..., C) float; target_classes: (...) int64 in 0..C (C = background, all-zero
    target). Returns (...) float, detached (a ranking score, not a training loss).
    """
    num_classes = logits.shape[-1]
    onehot = torch.nn.functional.one_hot(target_classes, num_classes + 1)[..., :num_classes]
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        logits.detach(), onehot.to(logits.dtype), reduction="none"
    )
    return bce.sum(-1)


def normalise_groups(loss: torch.Tensor, foreground: torch.Tensor) -> torch.Tensor:
    """Min-max normalise ``loss`` (N,) to [0, 1] separately over ``foreground`` (N,) bool and
    over the rest (appendix C: per batch, for foreground and background queries). A group whose
    losses are all equal maps to 0."""
    out = torch.zeros_like(loss)
    for group in (foreground, ~foreground):
        if group.any():
            values = loss[group]
            lo, hi = values.min(), values.max()
            span = hi - lo
            out[group] = (values - lo) / span if span > 0 else torch.zeros_like(values)
    return out


def query_drop_mask(
    loss: torch.Tensor, foreground: torch.Tensor, percentile: float, queries: str = "things"
) -> torch.Tensor:
    """Eq. 3: keep mask (N,) bool of the queries of a batch.

    loss: (N,) per-query ranking loss; foreground: (N,) bool, True for queries matched to a
    target box; percentile: tau in [0, 100] (paper: 90); queries: ``"things"`` (only matched
    queries may drop, paper default, Table 10) or ``"all"``. The threshold is the tau-th
    percentile (linear interpolation) of the candidates' losses; a candidate is kept when its
    loss is <= the threshold, a non-candidate is always kept. No candidate: everything kept.
    Raises ValueError on a NaN loss or a percentile outside [0, 100].
    """
    if queries not in QUERY_SETS:
        raise ValueError(f"queries must be one of {QUERY_SETS}, got {queries!r}")
    if not 0.0 <= float(percentile) <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    if loss.shape != foreground.shape or loss.dim() != 1:
        raise ValueError(f"loss {tuple(loss.shape)} and foreground {tuple(foreground.shape)} "
                         "must be the same 1-d shape")
    if torch.isnan(loss).any():
        raise ValueError(
            f"query drop: {int(torch.isnan(loss).sum())} of {loss.numel()} per-query "
            "classification losses are NaN (diverged training or invalid inputs)"
        )
    candidates = foreground if queries == "things" else torch.ones_like(foreground)
    keep = torch.ones_like(foreground)
    if not candidates.any():
        return keep
    threshold = torch.quantile(loss[candidates].double(), float(percentile) / 100.0)
    keep[candidates] = loss[candidates].double() <= threshold
    return keep
