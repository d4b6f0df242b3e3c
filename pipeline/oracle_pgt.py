"""Stage ``oracle_pgt``: the training sets of the retraining reference rows ("What limits
retraining", issue 24 item 3), edited against the hidden trainval ground truth.

    python -m pipeline.oracle_pgt

Reference only, as ``wsis_gt``: no stage of the method reads these files
(``tests/pipeline/test_oracle_isolation.py``). Inputs: ``pgt/{oracle.pgt}/trainval.json`` (the
PGT the oracle rows edit, default ``mist_weaksam_adaptive``, paper Tables 1 and 5's adaptive
PGT), ``data/annotations/trainval.json`` (ground truth). Outputs:
- ``oracle/pgt_{kind}/trainval.json`` for kind in gt, tp, missed (``weaksam.pgt.oracle``; PGT
  format, so ``pipeline.retrain_oracle`` trains on them as on a PGT);
- ``metrics/oracle_pgt.json``: per kind the boxes and the images with a box, plus the source
  PGT's true positives, false positives and the ground-truth objects it missed.
Params: ``oracle.pgt``, ``pgt.match_iou`` (IoU of a true positive).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.common import load_params, setup_logging, stage_args
from weaksam.pgt.oracle import KINDS, match_pgt, oracle_pgt
from weaksam.utils.atomic import atomic_dir, write_json
from weaksam.utils.readers import read_json

GT = Path("data/annotations/trainval.json")
OUT = Path("oracle")


def oracle_pgt_path(kind: str) -> Path:
    """The training set of oracle kind ``kind``: ``oracle/pgt_{kind}/trainval.json``."""
    return OUT / f"pgt_{kind}" / "trainval.json"


def run(params: dict[str, Any], root: Path = Path(".")) -> dict[str, Any]:
    """Write the three oracle training sets and ``metrics/oracle_pgt.json`` under ``root``;
    returns the metrics."""
    source = str(params["oracle"]["pgt"])
    iou = float(params["pgt"]["match_iou"])
    src = Path("pgt") / source / "trainval.json"
    pgt = read_json(root / src, "PGT file", want_object=True)
    gt = read_json(root / GT, "annotation file", want_object=True)
    status, covered = match_pgt(pgt, gt, iou)
    metrics: dict[str, Any] = {
        "source_pgt": source, "iou_thr": iou,
        "source_boxes": len(pgt.get("annotations", [])),
        "source_tp": sum(v == 1 for v in status.values()),
        "source_fp": sum(v == 0 for v in status.values()),
        "source_ignored": sum(v == -1 for v in status.values()),
        "gt_boxes": sum(not a.get("iscrowd", 0) for a in gt.get("annotations", [])),
        "gt_missed": int(sum(int((~h).sum()) for h in covered.values())),
        "kinds": {},
    }
    for kind in KINDS:
        data = oracle_pgt(pgt, gt, kind, iou)
        with atomic_dir(root / oracle_pgt_path(kind).parent) as tmp:
            write_json(tmp / "trainval.json", data, indent=None)
        anns = data["annotations"]
        metrics["kinds"][kind] = {"boxes": len(anns),
                                  "images_with_box": len({a["image_id"] for a in anns}),
                                  "boxes_from_gt": sum("oracle" in a for a in anns)}
    write_json(root / "metrics" / "oracle_pgt.json", metrics)
    return metrics


def main() -> None:
    args = stage_args(__doc__.splitlines()[0])
    log = setup_logging("oracle_pgt")
    m = run(load_params(args.params))
    log.info("oracle sets from %s: %s (source TP %d, FP %d, GT missed %d)", m["source_pgt"],
             {k: v["boxes"] for k, v in m["kinds"].items()}, m["source_tp"], m["source_fp"],
             m["gt_missed"])


if __name__ == "__main__":
    main()
