"""Paired bootstrap over images for the report's metrics (issue 24): a difference between two
runs evaluated on the same images, and its percentile interval.

Shorthand: N images of one split (in the ground truth's ``images`` order), C classes, B
resamples, D detections of one class over all images.

Each metric is first reduced to per-image *sufficient statistics*, computed once with the
project's own evaluators' matching (:func:`weaksam.eval.voc.match_detections`,
:func:`weaksam.eval.mask_ap.match_by_iou`, the CorLoc and recall rules). Matching in VOC AP,
CorLoc, recall and the VOC mask protocol is per image, so a resample that draws image i k times
is the original metric on a split where image i's detections and ground truth appear k times:
every per-image statistic is weighted by k. The resamples are a weight matrix ``(B, N)`` of
draw counts (multinomial, i.e. N draws with replacement), shared by both sides of a comparison
so the difference is paired.

AP under weights: the class's detections keep the evaluator's order (descending score, stable),
cumulative TP / FP are weighted sums, and the number of positives is the weighted sum of the
images' non-difficult ground-truth counts. The copies of one detection are adjacent in that
order and all TP or all FP, so collapsing them into one weighted step leaves the 11-point and
the area AP unchanged (a run of TPs ends at its best point; a run of FPs starts at it). A zero
weight (an image not drawn) repeats the previous PR point, which changes neither AP.

Values are in % (as the evaluators report them); a resample in which a metric is undefined
(e.g. no image of a class drawn) leaves that class out of the class mean, as the evaluators do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from weaksam.errors import InputError
from weaksam.eval.gt import categories, group_gt, group_results
from weaksam.eval.mask_ap import _is_difficult, decode_segmentation, mask_iou, match_by_iou
from weaksam.eval.voc import DEVKIT_07_THRESHOLDS, match_detections, voc_ap
from weaksam.utils.boxes import box_iou


class ImageStats(Protocol):
    """Per-image sufficient statistics of one metric on one split."""

    image_ids: tuple[int, ...]

    def value(self, weights: np.ndarray) -> np.ndarray:
        """The metric (%) under image weights ``(B, N)`` -> ``(B,)`` (NaN where undefined)."""
        ...


def point(stats: ImageStats) -> float | None:
    """The metric on the split itself (every image weight 1), None when undefined; AP goes
    through the evaluator's own :func:`~weaksam.eval.voc.voc_ap` (``exact_point``)."""
    exact = getattr(stats, "exact_point", None)
    if exact is not None:
        return exact()
    v = float(stats.value(np.ones((1, len(stats.image_ids))))[0])
    return None if np.isnan(v) else v


def _class_mean(per_class: np.ndarray) -> np.ndarray:
    """``(B, C)`` per-class values with NaN for undefined -> ``(B,)`` mean over the defined
    ones (NaN when none), summed in the evaluators' order."""
    valid = ~np.isnan(per_class)
    n = valid.sum(axis=1)
    total = np.where(valid, per_class, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)


@dataclass
class ClassAP:
    """One class's detections over the split in the evaluator's order: ``image (D,)`` index into
    the split's images, ``flag (D,)`` int8 (1 TP, 0 FP, -1 ignored); ``npos (N,)`` the
    non-difficult ground truth per image."""

    image: np.ndarray
    flag: np.ndarray
    npos: np.ndarray

    def tp_points(self, n_images: int) -> tuple[np.ndarray, np.ndarray]:
        """The PR curve only needs its points at true positives: a false positive lowers
        precision at unchanged recall, so the point before it dominates. Returns the images of
        the K true positives ``(K,)`` and ``fp_before (N, K)``: per image, its false positives
        ranked between true positive k - 1 and k (those after the last one never matter)."""
        tp_pos = np.flatnonzero(self.flag == 1)
        fp_pos = np.flatnonzero(self.flag == 0)
        seg = np.searchsorted(tp_pos, fp_pos)  # false positive p counts for TPs seg[p]...
        keep = seg < len(tp_pos)
        fp_before = np.zeros((n_images, len(tp_pos)))
        np.add.at(fp_before, (self.image[fp_pos[keep]], seg[keep]), 1.0)
        return self.image[tp_pos], fp_before


@dataclass
class APStats:
    """VOC-style AP (11-point or area) as the class mean: :func:`weaksam.eval.voc.evaluate_voc`
    and :func:`weaksam.eval.mask_ap.evaluate_voc_masks` from per-image matches."""

    image_ids: tuple[int, ...]
    classes: list[ClassAP]
    use_07_metric: bool = True

    def exact_point(self) -> float | None:
        """The class-mean AP (%) through :func:`weaksam.eval.voc.voc_ap` itself (no weights)."""
        aps = []
        for c in self.classes:
            npos = int(c.npos.sum())
            if npos == 0:
                continue
            tp = np.cumsum(c.flag == 1)
            fp = np.cumsum(c.flag == 0)
            rec, prec = tp / npos, tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
            aps.append(100.0 * voc_ap(rec, prec, self.use_07_metric))
        return float(np.mean(aps)) if aps else None

    def value(self, weights: np.ndarray) -> np.ndarray:
        weights = np.asarray(weights, dtype=np.float64)
        out = np.empty((len(weights), len(self.classes)))
        for k, c in enumerate(self.classes):
            out[:, k] = self._class_ap(c, weights)
        return _class_mean(out)

    def _class_ap(self, c: ClassAP, w: np.ndarray) -> np.ndarray:
        npos = w @ c.npos.astype(np.float64)  # (B,)
        tp_img, fp_before = c.tp_points(len(self.image_ids))
        if len(tp_img) == 0:  # no true positive: AP 0 wherever defined
            return np.where(npos > 0, 0.0, np.nan)
        b, k = len(w), len(tp_img)
        tp = np.cumsum(w[:, tp_img], axis=1)  # (B, K) at the K true positives
        fp = np.cumsum(w @ fp_before, axis=1)  # (B, K) false positives ranked above each
        with np.errstate(invalid="ignore", divide="ignore"):
            rec = np.where(npos[:, None] > 0, tp / npos[:, None], 0.0)
        prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        if self.use_07_metric:
            # max precision at recall >= t = the right-to-left running max of precision at the
            # first point with recall >= t (recall rises along a row): one searchsorted over
            # all rows, each row shifted by 2 * row index (recall lies in [0, 1])
            env = np.maximum.accumulate(prec[:, ::-1], axis=1)[:, ::-1]
            shift = 2.0 * np.arange(b)[:, None]
            first = np.searchsorted((rec + shift).ravel(),
                                    (DEVKIT_07_THRESHOLDS[None, :] + shift).ravel())
            first = first.reshape(b, -1) - k * np.arange(b)[:, None]  # (B, 11) index in row
            best = np.where(first < k, env[np.arange(b)[:, None], np.minimum(first, k - 1)],
                            0.0)
            acc = np.zeros(b)
            for j in range(len(DEVKIT_07_THRESHOLDS)):  # the same sum, same order, as voc_ap
                acc += best[:, j] / 11.0
        else:
            ones = np.ones((b, 1))
            mrec = np.concatenate([0 * ones, rec, ones], axis=1)
            mpre = np.concatenate([0 * ones, prec, 0 * ones], axis=1)
            mpre = np.maximum.accumulate(mpre[:, ::-1], axis=1)[:, ::-1]
            acc = np.sum((mrec[:, 1:] - mrec[:, :-1]) * mpre[:, 1:], axis=1)
        return np.where(npos > 0, 100.0 * acc, np.nan)


@dataclass
class RatioStats:
    """A pooled ratio ``scale * sum_i w_i num_i / sum_i w_i den_i`` (proposal recall: covered /
    non-difficult GT boxes; proposals per image: count / 1; PGT recall: TP / GT)."""

    image_ids: tuple[int, ...]
    num: np.ndarray
    den: np.ndarray
    scale: float = 100.0

    def value(self, weights: np.ndarray) -> np.ndarray:
        w = np.asarray(weights, dtype=np.float64)
        num, den = w @ self.num.astype(np.float64), w @ self.den.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, self.scale * num / den, np.nan)


@dataclass
class ClassRatioStats:
    """Mean over classes of per-class ratios ``100 * sum_i w_i hit_ic / sum_i w_i present_ic``
    (CorLoc): ``hit``, ``present`` ``(N, C)``."""

    image_ids: tuple[int, ...]
    hit: np.ndarray
    present: np.ndarray

    def value(self, weights: np.ndarray) -> np.ndarray:
        w = np.asarray(weights, dtype=np.float64)
        hits, total = w @ self.hit.astype(np.float64), w @ self.present.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return _class_mean(np.where(total > 0, 100.0 * hits / total, np.nan))


# --- per-image statistics from COCO-format inputs ---


def voc_ap_stats(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]],
                 iou_thr: float = 0.5, use_07_metric: bool = True) -> APStats:
    """Per-image matches of :func:`weaksam.eval.voc.evaluate_voc` (same grouping, order and
    matching): the detection AP of ``results`` against ``gt``."""
    cats = categories(gt)
    per_image = group_gt(gt)
    ids = tuple(per_image)
    pos = {iid: i for i, iid in enumerate(ids)}
    dets = group_results(results, per_image, set(cats))
    classes = []
    for cid in cats:
        npos = np.array([int((g.cats[~g.difficult] == cid).sum()) for g in per_image.values()])
        img, boxes, scores = dets.get(cid, (np.zeros(0, np.int64), np.zeros((0, 4)),
                                            np.zeros(0)))
        order = np.argsort(-scores, kind="stable")
        img, boxes = img[order], boxes[order]
        flags = np.zeros(len(order), dtype=np.int8)
        by_img = np.argsort(img, kind="stable")
        uniq, starts = np.unique(img[by_img], return_index=True)
        groups = np.split(by_img, starts[1:]) if len(by_img) else []
        for iid, rows in zip(uniq.tolist(), groups, strict=True):
            g = per_image[iid]
            sel = g.cats == cid
            flags[rows] = match_detections(boxes[rows], g.boxes[sel], g.difficult[sel], iou_thr)
        classes.append(ClassAP(np.array([pos[i] for i in img.tolist()], dtype=np.int64),
                               flags, npos))
    return APStats(ids, classes, use_07_metric)


def voc_mask_ap_stats(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]],
                      iou_thrs: Sequence[float], ignore_difficult: bool = False,
                      ) -> dict[float, APStats]:
    """Per-image matches of :func:`weaksam.eval.mask_ap.evaluate_voc_masks` (area AP), one
    :class:`APStats` per threshold of ``iou_thrs``; masks are decoded once."""
    cats = categories(gt)
    sizes = {int(im["id"]): (int(im["height"]), int(im["width"])) for im in gt["images"]}
    ids = tuple(sizes)
    pos = {iid: i for i, iid in enumerate(ids)}
    gt_by: dict[tuple[int, int], list[Mapping[str, Any]]] = {}
    for a in gt.get("annotations", []):
        gt_by.setdefault((int(a["image_id"]), int(a["category_id"])), []).append(a)
    det_by: dict[tuple[int, int], list[Mapping[str, Any]]] = {}
    for r in results:
        iid, cid = int(r["image_id"]), int(r["category_id"])
        if iid not in sizes or cid not in cats:
            raise InputError(None, f"prediction on unknown image {iid} or category {cid}")
        det_by.setdefault((iid, cid), []).append(r)
    thrs = [float(t) for t in iou_thrs]
    npos = {c: np.zeros(len(ids), dtype=np.int64) for c in cats}
    for (iid, cid), anns in gt_by.items():
        npos[cid][pos[iid]] += sum(1 for a in anns if not (ignore_difficult and _is_difficult(a)))
    parts: dict[int, list[tuple[np.ndarray, np.ndarray, list[np.ndarray]]]] = {c: [] for c in cats}
    for (iid, cid), dets in sorted(det_by.items()):
        h, w = sizes[iid]
        s = np.array([float(r["score"]) for r in dets])
        order = np.argsort(-s, kind="stable")
        pm = np.stack([decode_segmentation(dets[k]["segmentation"], h, w) for k in order])
        anns = gt_by.get((iid, cid), [])
        gm = (np.stack([decode_segmentation(a["segmentation"], h, w) for a in anns])
              if anns else np.zeros((0, h, w), bool))
        diff = np.array([ignore_difficult and _is_difficult(a) for a in anns], dtype=bool)
        iou = mask_iou(pm, gm)
        parts[cid].append((s[order], np.full(len(order), pos[iid]),
                           [match_by_iou(iou, diff, t) for t in thrs]))
    out = {}
    for t, thr in enumerate(thrs):
        classes = []
        for cid in cats:
            if not parts[cid]:
                classes.append(ClassAP(np.zeros(0, np.int64), np.zeros(0, np.int8), npos[cid]))
                continue
            s = np.concatenate([p[0] for p in parts[cid]])
            order = np.argsort(-s, kind="stable")
            img = np.concatenate([p[1] for p in parts[cid]])[order]
            flag = np.concatenate([p[2][t] for p in parts[cid]])[order]
            classes.append(ClassAP(img, flag, npos[cid]))
        out[thr] = APStats(ids, classes, use_07_metric=False)
    return out


def corloc_stats(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]],
                 iou_thr: float = 0.5) -> ClassRatioStats:
    """Per-image hits of :func:`weaksam.eval.corloc.corloc` (top-scoring detection of each
    present class, IoU >= ``iou_thr`` with a ground-truth box of the class)."""
    cats = categories(gt)
    per_image = group_gt(gt)
    ids = tuple(per_image)
    dets = group_results(results, per_image, set(cats))
    hit = np.zeros((len(ids), len(cats)), dtype=np.int64)
    present = np.zeros_like(hit)
    for k, cid in enumerate(cats):
        img, boxes, scores = dets.get(cid, (np.zeros(0, np.int64), np.zeros((0, 4)),
                                            np.zeros(0)))
        order = np.argsort(-scores, kind="stable")
        uniq, first = np.unique(img[order], return_index=True)
        top = dict(zip(uniq.tolist(), order[first].tolist(), strict=True))
        for i, (iid, g) in enumerate(per_image.items()):
            sel = g.cats == cid
            if not sel.any():
                continue
            present[i, k] = 1
            if iid in top:
                hit[i, k] = int(box_iou(boxes[top[iid]][None], g.boxes[sel])[0].max() >= iou_thr)
    return ClassRatioStats(ids, hit, present)


def recall_stats(gt: Mapping[str, Any], boxes_of: Callable[[int], np.ndarray],
                 iou_thrs: Sequence[float]) -> tuple[dict[float, RatioStats], RatioStats]:
    """Per-image counts of :func:`weaksam.eval.recall.proposal_recall`: ``{t: recall@t}`` and
    the proposals per image. ``boxes_of(image_id) -> (R, 4)`` xyxy proposals of an image."""
    per_image = group_gt(gt)
    ids = tuple(per_image)
    thrs = np.asarray([float(t) for t in iou_thrs])
    covered = np.zeros((len(ids), len(thrs)), dtype=np.int64)
    ngt = np.zeros(len(ids), dtype=np.int64)
    count = np.zeros(len(ids), dtype=np.int64)
    for i, (iid, g) in enumerate(per_image.items()):
        p = np.asarray(boxes_of(iid), dtype=np.float64).reshape(-1, 4)
        count[i] = len(p)
        b = g.boxes[~g.difficult]
        ngt[i] = len(b)
        if len(b) and len(p):
            best = box_iou(b, p).max(axis=1)
            covered[i] = (best[None, :] >= thrs[:, None]).sum(axis=1)
    rec = {float(t): RatioStats(ids, covered[:, k], ngt) for k, t in enumerate(thrs.tolist())}
    return rec, RatioStats(ids, count, np.ones(len(ids), dtype=np.int64), scale=1.0)


def pgt_recall_stats(gt: Mapping[str, Any], pgt: Mapping[str, Any],
                     iou_thr: float = 0.5) -> RatioStats:
    """Per-image TP and non-difficult GT counts of :func:`weaksam.pgt.metrics.pgt_quality`'s
    pooled recall (the PGT annotations, with ``score``, matched per image and class)."""
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                "score": float(a.get("score", 1.0))} for a in pgt.get("annotations", [])]
    ap = voc_ap_stats(gt, results, iou_thr)
    n = len(ap.image_ids)
    tp = sum(np.bincount(c.image[c.flag == 1], minlength=n) for c in ap.classes)
    npos = sum(c.npos for c in ap.classes)
    return RatioStats(ap.image_ids, np.asarray(tp), np.asarray(npos))


# --- resampling ---


def resample_weights(n_images: int, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """``(B, N)`` draw counts of B seeded resamples of N images with replacement."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_images, size=(n_resamples, n_images))
    w = np.zeros((n_resamples, n_images))
    np.add.at(w, (np.arange(n_resamples)[:, None], idx), 1.0)
    return w


@dataclass(frozen=True)
class Interval:
    """A point estimate and its percentile interval (same units as the metric)."""

    point: float
    low: float
    high: float

    def text(self, fmt: str = "{:.1f}") -> str:
        """``"55.7 [52.1, 59.0]"``."""
        return f"{fmt.format(self.point)} [{fmt.format(self.low)}, {fmt.format(self.high)}]"


def _percentile(values: np.ndarray, point_value: float, level: float) -> Interval:
    v = values[~np.isnan(values)]
    if len(v) == 0:
        return Interval(point_value, float("nan"), float("nan"))
    a = 100.0 * (1.0 - level) / 2.0
    lo, hi = np.percentile(v, [a, 100.0 - a])
    return Interval(point_value, float(lo), float(hi))


def interval(stats: ImageStats, weights: np.ndarray, level: float = 0.95) -> Interval | None:
    """The metric's point value and its ``level`` percentile interval over the resamples
    ``weights (B, N)``; None when the metric is undefined on the split."""
    p = point(stats)
    if p is None:
        return None
    return _percentile(stats.value(weights), p, level)


def paired_difference(left: ImageStats, right: ImageStats, weights: np.ndarray,
                      level: float = 0.95) -> Interval | None:
    """``left - right`` on the split and its ``level`` percentile interval, both sides
    evaluated on the same resampled image sets ``weights (B, N)``; None when a side is
    undefined. The two sides must cover the same images in the same order."""
    if left.image_ids != right.image_ids:
        raise ValueError("paired bootstrap: the two sides are not on the same images")
    a, b = point(left), point(right)
    if a is None or b is None:
        return None
    return _percentile(left.value(weights) - right.value(weights), a - b, level)
