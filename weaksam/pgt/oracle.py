"""Oracle training sets for the retraining reference rows (issue 24 item 3, "What limits
retraining"): a PGT edited against the hidden ground truth of the same split.

Analysis only: these sets feed only the ``oracle_pgt`` / ``retrain_oracle`` reference stages,
never a stage of the method (``tests/pipeline/test_oracle_isolation.py``), as ``wsis_gt`` gives
paper Tables 2 and 3 their upper reference.

Kinds (``KINDS``), each a COCO dict in the PGT format (docs/contracts.md "pgt": images and
categories of the split, ``info.image_root``, annotations with id 1..M, image_id, category_id,
bbox xywh px, area, iscrowd 0, score):

- ``gt``: every ground-truth box of the split (difficult ones included, as detectron2's VOC
  loader trains on them; COCO crowd regions left out), score 1.0: the fully-supervised reference;
- ``tp``: the PGT's true positives only: PGT boxes matched one-to-one to a non-difficult
  ground-truth box of their class at IoU > ``iou_thr`` (the VOC devkit's greedy matching in
  descending score order, :func:`weaksam.eval.voc.match_detections`, as
  :func:`weaksam.pgt.metrics.pgt_quality` counts them); false positives and boxes matched to a
  difficult object are removed;
- ``missed``: the whole PGT plus every ground-truth box no PGT box matched (neither a true
  positive nor an ignored match on a difficult box), score 1.0: full recall, the PGT's false
  positives kept.

Annotations keep image (split) order; inside an image the kept PGT boxes come first in file
order, then the added ground-truth boxes in annotation order; ids are renumbered 1..M. Added
boxes carry ``"oracle": "gt"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from weaksam.eval.gt import group_gt
from weaksam.eval.voc import match_detections
from weaksam.utils.boxes import box_iou, xywh_to_xyxy

KINDS = ("gt", "tp", "missed")


def match_pgt(pgt: Mapping[str, Any], gt: Mapping[str, Any], iou_thr: float = 0.5
              ) -> tuple[dict[int, int], dict[int, np.ndarray]]:
    """Match each image's PGT boxes to its ground truth per class (module docstring).

    Returns (annotation id -> 1 true positive / 0 false positive / -1 ignored, for every PGT
    annotation) and (image id -> ``(N,)`` bool, True where ground-truth box n of the image, in
    annotation order, was matched by a PGT box: a true positive or an ignored match).
    """
    per_gt = group_gt(gt)
    per_pgt: dict[int, list[Mapping[str, Any]]] = {iid: [] for iid in per_gt}
    for a in pgt.get("annotations", []):
        iid = int(a["image_id"])
        if iid not in per_pgt:
            raise ValueError(f"PGT annotation {a.get('id')!r} on image {iid}, not in the GT")
        per_pgt[iid].append(a)
    status: dict[int, int] = {}
    covered: dict[int, np.ndarray] = {}
    for iid, g in per_gt.items():
        hit = np.zeros(len(g.cats), dtype=bool)
        anns = per_pgt[iid]
        cats = np.array([int(a["category_id"]) for a in anns], dtype=np.int64)
        for cid in np.unique(cats):
            idx = np.flatnonzero(cats == cid)
            # descending score, stable: ties keep file order
            idx = idx[np.argsort([-float(anns[k].get("score", 1.0)) for k in idx], kind="stable")]
            gsel = np.flatnonzero(g.cats == cid)
            boxes = xywh_to_xyxy(np.array([anns[k]["bbox"] for k in idx], np.float64))
            res = match_detections(boxes, g.boxes[gsel], g.difficult[gsel], iou_thr)
            for k, r in zip(idx, res, strict=True):
                status[int(anns[k]["id"])] = int(r)
            # which ground-truth boxes a matched PGT box took (recomputed as the devkit does)
            if len(gsel) and len(idx):
                iou = box_iou(boxes, g.boxes[gsel])
                best = iou.argmax(axis=1)
                for k, r in enumerate(res):
                    if r != 0:
                        hit[gsel[best[k]]] = True
        covered[iid] = hit
    return status, covered


def oracle_pgt(pgt: Mapping[str, Any], gt: Mapping[str, Any], kind: str,
               iou_thr: float = 0.5) -> dict[str, Any]:
    """The oracle training set ``kind`` (``KINDS``) from the COCO-format ``pgt`` and the
    COCO-format ground truth ``gt`` of the same split (module docstring)."""
    if kind not in KINDS:
        raise ValueError(f"unknown oracle kind {kind!r}; expected one of {', '.join(KINDS)}")
    gt_anns: dict[int, list[Mapping[str, Any]]] = {int(im["id"]): [] for im in gt["images"]}
    for a in gt.get("annotations", []):
        gt_anns[int(a["image_id"])].append(a)
    pgt_anns: dict[int, list[Mapping[str, Any]]] = {iid: [] for iid in gt_anns}
    for a in pgt.get("annotations", []):
        pgt_anns.setdefault(int(a["image_id"]), []).append(a)
    status, covered = ({}, {}) if kind == "gt" else match_pgt(pgt, gt, iou_thr)
    out: list[dict[str, Any]] = []

    def add(a: Mapping[str, Any], from_gt: bool) -> None:
        x, y, w, h = (float(v) for v in a["bbox"])
        rec = {"id": len(out) + 1, "image_id": int(a["image_id"]),
               "category_id": int(a["category_id"]), "bbox": [x, y, w, h], "area": w * h,
               "iscrowd": 0, "score": 1.0 if from_gt else float(a.get("score", 1.0))}
        if from_gt:
            rec["oracle"] = "gt"
        out.append(rec)

    for im in gt["images"]:
        iid = int(im["id"])
        if kind == "gt":
            for a in gt_anns[iid]:
                if not a.get("iscrowd", 0):
                    add(a, True)
            continue
        for a in pgt_anns[iid]:
            if kind == "missed" or status[int(a["id"])] == 1:
                add(a, False)
        if kind == "missed":
            for a, hit in zip(gt_anns[iid], covered[iid], strict=True):
                if not hit and not a.get("iscrowd", 0):
                    add(a, True)
    return {
        "info": {"image_root": str(pgt.get("info", {}).get("image_root",
                                                           gt.get("info", {}).get("image_root"))),
                 "description": f"oracle training set ({kind}) against the hidden ground truth"},
        "images": [{k: im[k] for k in ("id", "file_name", "width", "height")}
                   for im in gt["images"]],
        "categories": [{"id": c["id"], "name": c["name"]} for c in gt["categories"]],
        "annotations": out,
    }
