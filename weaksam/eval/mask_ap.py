"""Instance-mask AP: the VOC 2012 WSIS protocol of paper Table 2 (AP at mask IoU 0.25, 0.5,
0.7, 0.75) and COCO mask AP / AP50 / AP75 through pycocotools (paper Table 3).

Shorthand: D predicted instances, N ground-truth instances of one image and class, H x W image
pixels. Masks are ``(K, H, W)`` bool; COCO segmentations are RLE dicts ``{"size": [H, W],
"counts": str}`` (uncompressed-list RLE and polygons are read too).

VOC protocol (paper Table 2, as BESTIE and CIM evaluate: chainercv's
``eval_instance_segmentation_voc``, itself from FCIS), per class:
1. in each image the class's predictions, by descending score (stable), each take the ground
   truth mask of that class with the largest mask IoU (first on ties);
2. IoU >= threshold and that mask not yet taken -> true positive; otherwise false positive
   (a duplicate of a taken mask, or too little overlap);
3. all images' predictions of the class sorted by descending score (stable), precision and
   recall (over every ground-truth instance of the class), AP = area under the monotone
   precision envelope (VOC 2010+ "area" AP, chainercv's default ``use_07_metric=False``).
chainercv has no "difficult" flag; ``ignore_difficult=True`` turns on the detection devkit's
rule (a match to a difficult instance is neither TP nor FP, difficult instances are not
counted) for data sets that carry one. A class without ground truth has undefined AP (``None``,
left out of the mean, where chainercv gives NaN).
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from weaksam.errors import InputError
from weaksam.eval.gt import categories
from weaksam.eval.voc import voc_ap

VOC_THRESHOLDS = (0.25, 0.5, 0.7, 0.75)


def threshold_key(thr: float) -> str:
    """Metrics key of an IoU threshold: 0.25 -> ``"ap25"``, 0.7 -> ``"ap70"``."""
    return f"ap{round(thr * 100):02d}"


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """(H, W) bool mask -> COCO compressed RLE ``{"size": [H, W], "counts": str}`` (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_segmentation(seg: Any, height: int, width: int) -> np.ndarray:
    """A COCO ``segmentation`` (compressed or list RLE, or polygons) -> (H, W) bool mask."""
    if isinstance(seg, list):  # polygons
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    elif isinstance(seg, dict) and isinstance(seg.get("counts"), list):
        rle = mask_utils.frPyObjects(seg, height, width)
    elif isinstance(seg, dict) and "counts" in seg:
        rle = dict(seg)
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode("ascii")
    else:
        raise ValueError(f"not a COCO segmentation: {type(seg).__name__}")
    m = mask_utils.decode(rle).astype(bool)
    if m.shape != (height, width):
        raise ValueError(f"segmentation of size {m.shape}, image is {(height, width)}")
    return m


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mask IoU of ``a (D, H, W)`` and ``b (N, H, W)`` bool masks -> ``(D, N)`` float64.

    |a & b| / |a | b| from one matrix product of the flattened masks; two empty masks have IoU
    0 (pycocotools' convention)."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"mask sizes differ: {a.shape[1:]} vs {b.shape[1:]}")
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    fa = a.reshape(len(a), -1).astype(np.float32)
    fb = b.reshape(len(b), -1).astype(np.float32)
    inter = (fa @ fb.T).astype(np.float64)  # exact: counts < 2^24 pixels
    union = fa.sum(1, dtype=np.float64)[:, None] + fb.sum(1, dtype=np.float64)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1.0), 0.0)


def match_by_iou(iou: np.ndarray, difficult: np.ndarray, iou_thr: float) -> np.ndarray:
    """Greedy matching of one image and class: ``iou (D, N)`` with predictions in descending
    score order, ``difficult (N,)`` bool -> ``(D,)`` int8: 1 TP, 0 FP, -1 ignored (matched a
    difficult instance). Each prediction takes its highest-IoU instance (first on ties)."""
    d = iou.shape[0]
    out = np.zeros(d, dtype=np.int8)
    if d == 0 or iou.shape[1] == 0:
        return out
    best = iou.argmax(axis=1)
    best_iou = iou[np.arange(d), best]
    taken = np.zeros(iou.shape[1], dtype=bool)
    for k in range(d):
        if best_iou[k] < iou_thr:
            continue
        j = best[k]
        if difficult[j]:
            out[k] = -1
        elif not taken[j]:
            taken[j] = True
            out[k] = 1
    return out


def _image_sizes(gt: Mapping[str, Any]) -> dict[int, tuple[int, int]]:
    return {int(im["id"]): (int(im["height"]), int(im["width"])) for im in gt["images"]}


def evaluate_voc_masks(
    gt: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    iou_thrs: Sequence[float] = VOC_THRESHOLDS,
    ignore_difficult: bool = False,
) -> dict[str, Any]:
    """VOC-protocol mask AP (module docstring) of COCO results with ``segmentation`` RLE
    against COCO-format ``gt`` with instance masks.

    Returns ``{"ap25": mAP %, "ap50": ..., "per_class": {"ap50": {name: AP % or None}, ...}}``
    (one key per threshold, named by :func:`threshold_key`); each mAP is over classes with at
    least one counted ground-truth instance (``None`` if none).
    """
    cats = categories(gt)
    sizes = _image_sizes(gt)
    gt_by: dict[tuple[int, int], list[Mapping[str, Any]]] = {}
    for a in gt.get("annotations", []):
        iid = int(a["image_id"])
        if iid not in sizes:
            raise InputError(None, f"annotation {a.get('id')!r} refers to unknown image {iid}")
        gt_by.setdefault((iid, int(a["category_id"])), []).append(a)
    det_by: dict[tuple[int, int], list[Mapping[str, Any]]] = {}
    for r in results:
        iid, cid = int(r["image_id"]), int(r["category_id"])
        if iid not in sizes:
            raise InputError(None, f"prediction on image {iid}, which is not in the ground truth")
        if cid not in cats:
            raise InputError(None, f"prediction of unknown category {cid}")
        det_by.setdefault((iid, cid), []).append(r)

    thrs = [float(t) for t in iou_thrs]
    npos = {c: 0 for c in cats}
    for (_, cid), anns in gt_by.items():
        npos[cid] += sum(1 for a in anns if not (ignore_difficult and _is_difficult(a)))
    scores: dict[int, list[np.ndarray]] = {c: [] for c in cats}
    flags: dict[int, list[list[np.ndarray]]] = {c: [[] for _ in thrs] for c in cats}
    for (iid, cid), dets in sorted(det_by.items()):
        h, w = sizes[iid]
        s = np.array([float(r["score"]) for r in dets])
        order = np.argsort(-s, kind="stable")
        s = s[order]
        pm = np.stack([decode_segmentation(dets[k]["segmentation"], h, w) for k in order])
        anns = gt_by.get((iid, cid), [])
        gm = (np.stack([decode_segmentation(a["segmentation"], h, w) for a in anns])
              if anns else np.zeros((0, h, w), bool))
        diff = np.array([ignore_difficult and _is_difficult(a) for a in anns], dtype=bool)
        iou = mask_iou(pm, gm)
        scores[cid].append(s)
        for t, thr in enumerate(thrs):
            flags[cid][t].append(match_by_iou(iou, diff, thr))

    out: dict[str, Any] = {"per_class": {}}
    for t, thr in enumerate(thrs):
        key = threshold_key(thr)
        per_class: dict[str, float | None] = {}
        for cid, name in cats.items():
            if npos[cid] == 0:
                per_class[name] = None
                continue
            if not scores[cid]:
                per_class[name] = 0.0
                continue
            s = np.concatenate(scores[cid])
            f = np.concatenate(flags[cid][t])
            order = np.argsort(-s, kind="stable")
            f = f[order]
            tp = np.cumsum(f == 1)
            fp = np.cumsum(f == 0)
            rec = tp / npos[cid]
            prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
            per_class[name] = 100.0 * voc_ap(rec, prec, use_07_metric=False)
        valid = [v for v in per_class.values() if v is not None]
        out[key] = float(np.mean(valid)) if valid else None
        out["per_class"][key] = per_class
    return out


def _is_difficult(ann: Mapping[str, Any]) -> bool:
    return bool(ann.get("difficult", 0)) or bool(ann.get("iscrowd", 0))


def coco_mask_ap(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """``{"AP", "AP50", "AP75"}`` in % of COCO ``results`` with ``segmentation`` RLE on ``gt``
    (pycocotools COCOeval, ``iouType="segm"``: COCO's 101-point AP over IoU 0.5:0.95, up to
    100 predictions per image). No predictions or no ground truth gives zeros."""
    zero = {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}
    if not results or not gt.get("annotations"):
        return zero
    data = {"images": copy.deepcopy(list(gt["images"])),
            "categories": copy.deepcopy(list(gt["categories"])), "annotations": []}
    for k, a in enumerate(gt["annotations"]):
        a = dict(a)
        a.setdefault("id", k + 1)
        a.setdefault("iscrowd", 0)
        if "area" not in a:
            h, w = _image_sizes(gt)[int(a["image_id"])]
            a["area"] = float(decode_segmentation(a["segmentation"], h, w).sum())
        data["annotations"].append(a)
    img_ids = {int(im["id"]) for im in data["images"]}
    res = []
    for r in results:
        if int(r["image_id"]) not in img_ids:
            raise InputError(None, f"prediction on image {r['image_id']}, not in the ground truth")
        r = dict(r)
        r.pop("bbox", None)  # segm results: pycocotools derives the box from the mask
        res.append(r)
    with contextlib.redirect_stdout(io.StringIO()):
        cgt = COCO()
        cgt.dataset = data
        cgt.createIndex()
        cdt = cgt.loadRes(res)
        ev = COCOeval(cgt, cdt, iouType="segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {k: max(float(v), 0.0) * 100.0
            for k, v in zip(("AP", "AP50", "AP75"), ev.stats[:3], strict=True)}
