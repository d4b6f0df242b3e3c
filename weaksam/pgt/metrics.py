"""PGT quality against the hidden ground truth of the same split (analysis only: the PGT itself
never sees a ground-truth box).

Matching: per image and class, the PGT boxes in descending score order (stable: ties keep file
order) are matched one-to-one and greedily as in the VOC devkit
(:func:`weaksam.eval.voc.match_detections`): a box takes the ground-truth box of its class with
the largest IoU; IoU >= ``iou_thr`` on a free non-difficult box is a true positive, on an already
taken one or below the threshold a false positive. ``difficult`` (or crowd) ground truth is
handled as in VOC AP: a box matched to it is ignored (neither true nor false positive) and
difficult boxes are not in the recall denominator.

- precision = TP / (TP + FP) in %, recall = TP / #non-difficult GT in % (``None`` when the
  denominator is 0), overall (pooled over classes) and per class;
- boxes per image (mean over all images of the split), boxes per class;
- labelled classes without a PGT box: (image, class) pairs of the image-level label set (every
  class with a ground-truth instance, difficult ones included, as ``CocoIndex.labels_of``) that
  got no PGT box, in total and per class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from weaksam.eval.gt import categories, group_gt
from weaksam.eval.voc import match_detections
from weaksam.utils.boxes import xywh_to_xyxy

_KEYS = ("boxes", "tp", "fp", "ign", "npos", "labelled", "without_box")


def _pct(num: int, den: int) -> float | None:
    return 100.0 * num / den if den else None


def pgt_quality(
    pgt: Mapping[str, Any], gt: Mapping[str, Any], iou_thr: float = 0.5
) -> dict[str, Any]:
    """Quality of the COCO-format ``pgt`` (annotations with ``score``) against the COCO-format
    ``gt`` of the same images (module docstring). Returns a JSON-ready dict: ``precision``,
    ``recall`` (%), ``num_images``, ``num_boxes``, ``boxes_per_image``, ``num_tp``, ``num_fp``,
    ``num_ignored``, ``num_gt``, ``labelled_classes``, ``labelled_classes_without_box``,
    ``labelled_classes_without_box_pct``, ``images_without_box``, ``iou_thr`` and
    ``per_class`` {name: {boxes, precision, recall, labelled, without_box}}."""
    cats = categories(gt)
    per_gt = group_gt(gt)
    per_pgt: dict[int, list[Mapping[str, Any]]] = {iid: [] for iid in per_gt}
    for a in pgt.get("annotations", []):
        iid = int(a["image_id"])
        if iid not in per_pgt:
            raise ValueError(f"PGT annotation {a.get('id')!r} on image {iid}, not in the GT")
        per_pgt[iid].append(a)
    counts = {cid: dict.fromkeys(_KEYS, 0) for cid in cats}
    images_without_box = 0
    for iid, g in per_gt.items():
        anns = per_pgt[iid]
        images_without_box += not anns
        a_cats = np.array([int(a["category_id"]) for a in anns], dtype=np.int64)
        for cid in np.unique(a_cats).tolist():
            if cid not in counts:
                raise ValueError(f"PGT annotation of unknown category {cid}")
        for cid in cats:
            c = counts[cid]
            sel = g.cats == cid
            c["npos"] += int((sel & ~g.difficult).sum())
            rows = [a for a, k in zip(anns, a_cats, strict=True) if k == cid]
            c["boxes"] += len(rows)
            if sel.any():
                c["labelled"] += 1
                c["without_box"] += not rows
            if not rows:
                continue
            scores = np.array([float(a.get("score", 1.0)) for a in rows])
            order = np.argsort(-scores, kind="stable")
            boxes = xywh_to_xyxy(np.array([rows[k]["bbox"] for k in order], dtype=np.float64))
            flags = match_detections(boxes, g.boxes[sel], g.difficult[sel], iou_thr)
            c["tp"] += int((flags == 1).sum())
            c["fp"] += int((flags == 0).sum())
            c["ign"] += int((flags == -1).sum())
    tot = {k: sum(c[k] for c in counts.values()) for k in _KEYS}
    n_img = len(per_gt)
    return {
        "iou_thr": float(iou_thr),
        "precision": _pct(tot["tp"], tot["tp"] + tot["fp"]),
        "recall": _pct(tot["tp"], tot["npos"]),
        "num_images": n_img,
        "num_boxes": tot["boxes"],
        "boxes_per_image": tot["boxes"] / n_img if n_img else None,
        "num_tp": tot["tp"],
        "num_fp": tot["fp"],
        "num_ignored": tot["ign"],
        "num_gt": tot["npos"],
        "labelled_classes": tot["labelled"],
        "labelled_classes_without_box": tot["without_box"],
        "labelled_classes_without_box_pct": _pct(tot["without_box"], tot["labelled"]),
        "images_without_box": images_without_box,
        "per_class": {
            name: {
                "boxes": counts[cid]["boxes"],
                "precision": _pct(counts[cid]["tp"], counts[cid]["tp"] + counts[cid]["fp"]),
                "recall": _pct(counts[cid]["tp"], counts[cid]["npos"]),
                "labelled": counts[cid]["labelled"],
                "without_box": counts[cid]["without_box"],
            }
            for cid, name in cats.items()
        },
    }
