"""Proposal recall (paper Tables 4 and 8): the share of ground-truth boxes covered by a proposal.

A non-difficult ground-truth box counts as recalled at threshold t when some proposal of its
image has IoU >= t with it (plain IoU of continuous xyxy boxes). Difficult (and crowd) boxes are
left out, as in VOC evaluation. Recalls are in %.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from weaksam.errors import InputError
from weaksam.eval.gt import group_gt
from weaksam.proposals.store import ProposalSet
from weaksam.utils.boxes import box_iou


def recall_key(t: float) -> str:
    """Metric name of threshold ``t``: 0.5 -> ``"recall@0.5"`` (docs/contracts.md)."""
    return f"recall@{float(t):g}"


def proposal_recall(
    gt: Mapping[str, Any], proposals: ProposalSet, iou_thrs: Sequence[float] = (0.5, 0.75, 0.9)
) -> dict[str, Any]:
    """Recall of ``proposals`` on the images of COCO-format ``gt``.

    Returns ``{"num_images", "num_gt", "num_per_image", "recall@t" for t in iou_thrs}``:
    ``num_per_image`` is the mean proposal count over the images of ``gt``; a recall is None
    when there is no non-difficult ground truth. Every image of ``gt`` needs an entry in
    ``proposals`` (possibly empty), else :class:`InputError`.
    """
    per_image = group_gt(gt)
    missing = [iid for iid in per_image if iid not in proposals.images]
    if missing:
        raise InputError(None, f"{len(missing)} images have no proposals entry, e.g. {missing[0]}")
    thrs = np.asarray(list(iou_thrs), dtype=np.float64)
    covered = np.zeros(len(thrs), dtype=np.int64)
    num_gt = 0
    counts = []
    for iid, g in per_image.items():
        p = proposals.images[iid]
        counts.append(len(p))
        boxes = g.boxes[~g.difficult]
        num_gt += len(boxes)
        if len(boxes) == 0 or len(p) == 0:
            continue
        best = box_iou(boxes, p.boxes).max(axis=1)  # (N,) best IoU of each GT box
        covered += (best[None, :] >= thrs[:, None]).sum(axis=1)
    out: dict[str, Any] = {
        "num_images": len(per_image),
        "num_gt": num_gt,
        "num_per_image": float(np.mean(counts)) if counts else 0.0,
    }
    for t, c in zip(thrs.tolist(), covered.tolist(), strict=True):
        out[recall_key(t)] = 100.0 * c / num_gt if num_gt else None
    return out
