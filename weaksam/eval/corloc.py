"""Correct Localization (CorLoc), the paper's Table 7 metric on VOC 2007 trainval.

For every image and every class present in it (at least one ground-truth box of the class,
difficult ones included, as the image-level label is), take the top-scoring detection of that
class in the image (first one on ties); it is a hit when its IoU with any ground-truth box of
the class is >= ``iou_thr``; no detection is a miss. CorLoc of a class = hits / images
containing the class; the mean is over classes present in at least one image. IoU is the plain
area ratio of continuous xyxy boxes.

Error modes of the same top-1 boxes (the usual WSOD failure analysis: part domination against
context): each top box is compared with the class's ground-truth box it overlaps most (IoU);
``too_small`` / ``too_large`` are the % of (image, class) pairs whose top box has less than half /
more than twice that box's area (a missing detection is in neither), and
``median_area_ratio`` is the median of top-box area / that box's area.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from weaksam.eval.gt import categories, group_gt, group_results
from weaksam.utils.boxes import box_area, box_iou


def corloc(
    gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]], iou_thr: float = 0.5
) -> dict[str, Any]:
    """CorLoc of COCO-format ``results`` against COCO-format ``gt``.

    Returns ``{"mean": % or None, "per_class": {name: % or None}, "too_small": %,
    "too_large": %, "median_area_ratio": float}`` (None: class in no image; the last three
    None when there is no top box at all).
    """
    cats = categories(gt)
    per_image = group_gt(gt)
    dets = group_results(results, per_image, set(cats))
    per_class: dict[str, float | None] = {}
    ratios: list[float] = []  # top-box area / area of the best-overlapping object of the class
    pairs = 0  # (image, present class) pairs
    for cid, name in cats.items():
        img, boxes, scores = dets.get(
            cid, (np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0))
        )
        # Top-1 per image: stable sort by descending score, keep each image's first row.
        order = np.argsort(-scores, kind="stable")
        uniq, first = np.unique(img[order], return_index=True)
        top = dict(zip(uniq.tolist(), order[first].tolist(), strict=True))
        hits = total = 0
        for iid, g in per_image.items():
            sel = g.cats == cid
            if not sel.any():
                continue
            total += 1
            if iid in top:
                b, objs = boxes[top[iid]], g.boxes[sel]
                iou = box_iou(b[None], objs)[0]
                hits += int(iou.max() >= iou_thr)
                o = objs[int(np.argmax(iou))]
                ratios.append(float(box_area(b[None])[0] / max(box_area(o[None])[0], 1e-12)))
        pairs += total
        per_class[name] = 100.0 * hits / total if total else None
    valid = [v for v in per_class.values() if v is not None]
    r = np.asarray(ratios)
    return {
        "mean": float(np.mean(valid)) if valid else None, "per_class": per_class,
        "too_small": 100.0 * float(np.sum(r < 0.5)) / pairs if len(r) else None,
        "too_large": 100.0 * float(np.sum(r > 2.0)) / pairs if len(r) else None,
        "median_area_ratio": float(np.median(r)) if len(r) else None,
    }

