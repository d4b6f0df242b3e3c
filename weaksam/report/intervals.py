"""Bootstrap intervals of the report's numbers, from the versioned detection files (issue 24).

A report number is named by its metrics file and key (``wsod_mist_ss.json``, ``ap50``); the
stage that wrote it also wrote the per-image evidence behind it, a DVC output under ``root``
(the workspace root; docs/contracts.md, "reports"):

- ``wsod_{run}.json`` ``ap50`` (test, VOC07 AP50): ``wsod/{run}/detections_test.json``;
- ``wsod_{run}.json`` ``corloc`` (trainval): ``wsod/{run}/detections_trainval.json``;
- ``retrain_{frcnn,detr}_{pgt}_{variant}.json`` ``ap50`` (test):
  ``retrain/{frcnn,detr}_{pgt}_{variant}/detections_test.json``;
- ``oracle_{frcnn,detr}_{kind}.json`` ``ap50`` (test, the oracle rows):
  ``oracle/{frcnn,detr}_{kind}/detections_test.json``;
- ``wsis_{model}.json`` ``ap25`` ... ``ap75`` (test, VOC mask AP):
  ``wsis/{model}/predictions_test.json``;
- ``recall_{source}.json`` ``recall@t`` and ``num_per_image`` (trainval):
  ``proposals/{ss,weaksam}/trainval.npz`` (WeakSAM filtered to the Table 4 variant's sources);
- ``pgt_{run}_{mode}.json`` ``recall`` (trainval): ``pgt/{run}_{mode}/trainval.json``.

Ground truth: ``data/annotations/{test,trainval}.json``; mask AP is resampled over the test images
whose non-crowd objects all have a mask (split ``test_masks``, the images the ``wsis`` stages
evaluate). Every number of one split is
resampled with the same ``(B, N)`` image weights (:func:`weaksam.eval.bootstrap.resample_weights`,
``n_resamples`` and ``seed``), so any two are a paired comparison. A number without evidence
(COCO-style mask AP, times, memory; or its file is missing) has no interval: None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from weaksam.data.index import mask_eval_split
from weaksam.eval import bootstrap as bs
from weaksam.eval.mask_ap import VOC_THRESHOLDS, threshold_key
from weaksam.proposals.sources import TABLE4_VARIANTS
from weaksam.proposals.store import load_proposals
from weaksam.utils.readers import read_json

GT = {"test": Path("data/annotations/test.json"),
      "test_masks": Path("data/annotations/test.json"),
      "trainval": Path("data/annotations/trainval.json")}
_RETRAIN = re.compile(r"retrain_((?:frcnn|detr)_\w+)\.json")
_ORACLE = re.compile(r"oracle_((?:frcnn|detr)_\w+)\.json")
_WSOD = re.compile(r"wsod_(\w+)\.json")
_WSIS = re.compile(r"wsis_(\w+)\.json")
_RECALL = re.compile(r"recall_(\w+)\.json")
_PGT = re.compile(r"pgt_(\w+)\.json")
_MASK_KEYS = {threshold_key(t): t for t in VOC_THRESHOLDS}


def evidence_of(file: str, key: str) -> tuple[str, Path] | None:
    """(split, evidence path relative to the workspace root) of a report number, or None when
    it has no per-image evidence (module docstring)."""
    if (m := _WSOD.fullmatch(file)) and key in ("ap50", "corloc"):
        split = "test" if key == "ap50" else "trainval"
        return split, Path("wsod") / m.group(1) / f"detections_{split}.json"
    if (m := _RETRAIN.fullmatch(file)) and key == "ap50":
        return "test", Path("retrain") / m.group(1) / "detections_test.json"
    if (m := _ORACLE.fullmatch(file)) and key == "ap50":
        return "test", Path("oracle") / m.group(1) / "detections_test.json"
    if (m := _WSIS.fullmatch(file)) and key in _MASK_KEYS:
        return "test_masks", Path("wsis") / m.group(1) / "predictions_test.json"
    if (m := _RECALL.fullmatch(file)) and (key.startswith("recall@") or key == "num_per_image"):
        source = m.group(1)
        if source != "ss" and source not in TABLE4_VARIANTS:
            return None
        return "trainval", Path("proposals") / ("ss" if source == "ss" else "weaksam") / \
            "trainval.npz"
    if (m := _PGT.fullmatch(file)) and key == "recall":
        return "trainval", Path("pgt") / m.group(1) / "trainval.json"
    return None


@dataclass
class Evidence:
    """Bootstrap intervals of report numbers from the files under ``root`` (module docstring).

    ``n_resamples`` resamples with ``seed``, ``level`` percentile intervals;
    ``wsis_ignore_difficult`` and ``pgt_iou`` are the evaluation settings the ``wsis`` and
    ``pgt`` stages used (params ``wsis.eval_ignore_difficult``, ``pgt.match_iou``). Statistics,
    weights and resampled values are computed once per file and kept.
    """

    root: Path
    n_resamples: int = 1000
    seed: int = 0
    level: float = 0.95
    wsis_ignore_difficult: bool = False
    pgt_iou: float = 0.5
    _gt: dict = field(default_factory=dict, repr=False)
    _weights: dict = field(default_factory=dict, repr=False)
    _stats: dict = field(default_factory=dict, repr=False)
    _values: dict = field(default_factory=dict, repr=False)
    _props: dict = field(default_factory=dict, repr=False)

    def paths(self) -> list[Path]:
        """Ground-truth and evidence files read so far (relative to ``root``), sorted."""
        return sorted({*(GT[s] for s in self._gt), *self._props,
                       *(p for p in self._stats if isinstance(p, Path))})

    def _ground_truth(self, split: str) -> dict:
        if split not in self._gt:
            gt = read_json(self.root / GT[split], "annotation file", want_object=True)
            if split == "test_masks":
                gt = mask_eval_split(gt, self.root / GT[split])[0]
            self._gt[split] = gt
        return self._gt[split]

    def weights(self, split: str) -> np.ndarray:
        """``(B, N)`` image weights shared by every number of ``split``."""
        if split not in self._weights:
            n = len(self._ground_truth(split)["images"])
            self._weights[split] = bs.resample_weights(n, self.n_resamples, self.seed)
        return self._weights[split]

    def stats(self, file: str, key: str) -> bs.ImageStats | None:
        """Per-image statistics of a report number, or None without evidence."""
        found = evidence_of(file, key)
        if found is None:
            return None
        split, rel = found
        if not (self.root / rel).is_file() or not (self.root / GT[split]).is_file():
            return None
        if rel.parts[0] == "proposals":
            return self._recall(file, key, split, rel)
        if rel not in self._stats:
            self._stats[rel] = self._load(split, rel)
        return self._stats[rel].get(key)

    def _recall(self, file: str, key: str, split: str, rel: Path) -> bs.ImageStats:
        """Recall at the key's IoU, or proposals per image, of the metrics file's source."""
        source = _RECALL.fullmatch(file).group(1)
        if (file, key) not in self._stats:
            if rel not in self._props:
                self._props[rel] = load_proposals(self.root / rel)
            props = self._props[rel]
            if source != "ss":
                props = props.filter_sources(TABLE4_VARIANTS[source])
            thr = float(key.split("@")[1]) if key.startswith("recall@") else 0.5
            rec, num = bs.recall_stats(self._ground_truth(split),
                                       lambda iid: props.images[iid].boxes, (thr,))
            self._stats[file, key] = rec[thr] if key.startswith("recall@") else num
        return self._stats[file, key]

    def _load(self, split: str, rel: Path) -> dict[str, bs.ImageStats]:
        gt, path = self._ground_truth(split), self.root / rel
        if rel.parts[0] in ("wsod", "retrain", "oracle"):
            results = read_json(path, "detections file")
            if split == "test":
                return {"ap50": bs.voc_ap_stats(gt, results, 0.5, use_07_metric=True)}
            return {"corloc": bs.corloc_stats(gt, results, 0.5)}
        if rel.parts[0] == "wsis":
            per_thr = bs.voc_mask_ap_stats(gt, read_json(path, "predictions file"),
                                           VOC_THRESHOLDS, self.wsis_ignore_difficult)
            return {threshold_key(t): s for t, s in per_thr.items()}
        if rel.parts[0] == "pgt":
            pgt = read_json(path, "PGT file", want_object=True)
            return {"recall": bs.pgt_recall_stats(gt, pgt, self.pgt_iou)}
        raise ValueError(f"no evidence loader for {rel}")

    def values(self, file: str, key: str) -> np.ndarray | None:
        """The number under every resample ``(B,)``, or None without evidence."""
        s = self.stats(file, key)
        if s is None:
            return None
        if (file, key) not in self._values:
            self._values[file, key] = s.value(self.weights(evidence_of(file, key)[0]))
        return self._values[file, key]

    def interval(self, file: str, key: str) -> bs.Interval | None:
        """Point value and ``level`` percentile interval of a report number, or None."""
        s, v = self.stats(file, key), self.values(file, key)
        if s is None or v is None:
            return None
        p = bs.point(s)
        return None if p is None else bs._percentile(v, p, self.level)

    def difference(self, left: tuple[str, str], right: tuple[str, str]) -> bs.Interval | None:
        """``left - right`` (each a (metrics file, key)) and its paired interval, or None when
        either has no evidence or they are on different splits."""
        (fl, kl), (fr, kr) = left, right
        el, er = evidence_of(fl, kl), evidence_of(fr, kr)
        if el is None or er is None or el[0] != er[0]:
            return None
        sl, sr = self.stats(fl, kl), self.stats(fr, kr)
        vl, vr = self.values(fl, kl), self.values(fr, kr)
        if sl is None or sr is None or vl is None or vr is None:
            return None
        if sl.image_ids != sr.image_ids:
            raise ValueError(f"{fl} and {fr}: evidence on different images")
        a, b = bs.point(sl), bs.point(sr)
        if a is None or b is None:
            return None
        return bs._percentile(vl - vr, a - b, self.level)


