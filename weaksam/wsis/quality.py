"""Pseudo-mask quality against the hidden ground truth (analysis only: never used in training).

Per image and class, pseudo masks and ground-truth instance masks are matched one to one,
greedily by descending mask IoU (pairs with IoU > 0; ties by pseudo then GT order). Reported
(IoUs as fractions, shares in %):
- ``mean_iou``: mean mask IoU of the matched pairs ("matched instances");
- ``share_iou50``: % of matched pairs with IoU >= 0.5;
- ``precision50``: % of all pseudo masks matched with IoU >= 0.5;
- ``recall50``: % of all ground-truth instances matched with IoU >= 0.5;
- ``mean_iou_given_box50``: mean mask IoU of matched pairs whose prompt box has box IoU >= 0.5
  with the instance's ground-truth box: SAM's part of the error, apart from the PGT's.
Difficult instances count like the others (the masks of VOC 2012 have no difficult flag).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from weaksam.eval.gt import categories
from weaksam.eval.mask_ap import decode_segmentation, mask_iou
from weaksam.utils.boxes import box_iou, xywh_to_xyxy


def greedy_pairs(iou: np.ndarray) -> list[tuple[int, int]]:
    """One-to-one pairs ``(row, col)`` of ``iou (P, G)``, by descending IoU, IoU > 0 only."""
    if iou.size == 0:
        return []
    flat = np.argsort(-iou, axis=None, kind="stable")
    used_r, used_c, out = set(), set(), []
    for f in flat:
        r, c = divmod(int(f), iou.shape[1])
        if iou[r, c] <= 0:
            break
        if r in used_r or c in used_c:
            continue
        used_r.add(r)
        used_c.add(c)
        out.append((r, c))
    return out


def _summary(ious: list[float], box_ok: list[bool], n_pseudo: int, n_gt: int) -> dict[str, Any]:
    v = np.array(ious, dtype=np.float64)
    given = v[np.array(box_ok, dtype=bool)] if len(v) else v
    return {
        "num_pseudo": n_pseudo,
        "num_gt": n_gt,
        "num_matched": len(v),
        "mean_iou": float(v.mean()) if len(v) else None,
        "share_iou50": 100.0 * float((v >= 0.5).mean()) if len(v) else None,
        "precision50": 100.0 * float((v >= 0.5).sum()) / n_pseudo if n_pseudo else None,
        "recall50": 100.0 * float((v >= 0.5).sum()) / n_gt if n_gt else None,
        "mean_iou_given_box50": float(given.mean()) if len(given) else None,
    }


def mask_quality(pseudo: Mapping[str, Any], gt: Mapping[str, Any]) -> dict[str, Any]:
    """Quality of the pseudo-mask dataset ``pseudo`` (COCO, ``segmentation`` RLE and
    ``prompt_bbox`` or ``bbox``) against ``gt`` (COCO with instance masks): the overall
    figures of the module docstring plus ``per_class`` (class name -> the same figures)."""
    cats = categories(gt)
    sizes = {int(im["id"]): (int(im["height"]), int(im["width"])) for im in gt["images"]}
    groups: dict[tuple[int, int], tuple[list, list]] = {}
    for a in pseudo.get("annotations", []):
        groups.setdefault((int(a["image_id"]), int(a["category_id"])), ([], []))[0].append(a)
    for a in gt.get("annotations", []):
        groups.setdefault((int(a["image_id"]), int(a["category_id"])), ([], []))[1].append(a)
    per: dict[int, tuple[list[float], list[bool], list[int]]] = {
        c: ([], [], [0, 0]) for c in cats}
    for (iid, cid), (ps, gs) in sorted(groups.items()):
        ious, ok, counts = per[cid]
        counts[0] += len(ps)
        counts[1] += len(gs)
        if not ps or not gs:
            continue
        h, w = sizes[iid]
        pm = np.stack([decode_segmentation(a["segmentation"], h, w) for a in ps])
        gm = np.stack([decode_segmentation(a["segmentation"], h, w) for a in gs])
        iou = mask_iou(pm, gm)
        pb = xywh_to_xyxy(np.array([a.get("prompt_bbox", a["bbox"]) for a in ps], np.float64))
        gb = xywh_to_xyxy(np.array([a["bbox"] for a in gs], np.float64))
        biou = box_iou(pb, gb)
        for r, c in greedy_pairs(iou):
            ious.append(float(iou[r, c]))
            ok.append(bool(biou[r, c] >= 0.5))
    all_i, all_ok, n_p, n_g = [], [], 0, 0
    out: dict[str, Any] = {"per_class": {}}
    for cid, name in cats.items():
        ious, ok, (cp, cg) = per[cid]
        out["per_class"][name] = _summary(ious, ok, cp, cg)
        all_i += ious
        all_ok += ok
        n_p += cp
        n_g += cg
    out.update(_summary(all_i, all_ok, n_p, n_g))
    return out
