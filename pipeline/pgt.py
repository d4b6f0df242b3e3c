"""Stage ``pgt``: pseudo ground truth from a WSOD run's trainval detections (paper Sec. 3.2,
Algorithm 2; Table 5's top-1 baseline).

    python -m pipeline.pgt --run mist_weaksam --mode adaptive     # or --mode top1

Inputs: ``wsod/{run}/detections_trainval.json`` (COCO results), ``data/annotations/
trainval.json`` read through ``WeakView`` (image-level labels only) for the PGT; its hidden
boxes are read only afterwards, for the quality metrics.
Outputs (second-half contract, "PGT"):
- ``pgt/{run}_{mode}/trainval.json``: COCO-format annotations (``weaksam.pgt.build``), written
  atomically (the folder is replaced whole). An empty PGT (no detections) is written as such;
  the retraining stage refuses it.
- ``metrics/pgt_{run}_{mode}.json``: precision and recall (%) at IoU ``pgt.match_iou``, boxes
  per image and per class, labelled classes without a box (``weaksam.pgt.metrics``), plus the
  params used (mode, tau_s, tau_o).
Params: ``pgt.tau_s``, ``pgt.tau_o`` (adaptive only; appendix H: 0.3, 0.85), ``pgt.match_iou``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipeline.common import load_params, setup_logging, stage_args
from weaksam.data.index import load_index
from weaksam.data.weak import WeakView
from weaksam.pgt.build import MODES, build_pgt, load_detections
from weaksam.pgt.metrics import pgt_quality
from weaksam.utils.atomic import atomic_dir, write_json

SPLIT = "trainval"
ANNOTATIONS = Path("data/annotations") / f"{SPLIT}.json"


def run(params: dict[str, Any], run_name: str, mode: str,
        root: Path = Path(".")) -> dict[str, Any]:
    """Build ``pgt/{run}_{mode}/trainval.json`` and ``metrics/pgt_{run}_{mode}.json`` under
    ``root``; returns the metrics."""
    cfg = params["pgt"]
    tau_s, tau_o = float(cfg["tau_s"]), float(cfg["tau_o"])
    index = load_index(root / ANNOTATIONS)
    view = WeakView(index)
    dets = load_detections(root / "wsod" / run_name / f"detections_{SPLIT}.json",
                           index.image_ids, index.category_ids)
    with open(root / ANNOTATIONS) as f:  # info.image_root as written (not resolved)
        image_root = str(json.load(f)["info"]["image_root"])
    pgt = build_pgt(view, index.images, index.categories, image_root, dets, mode, tau_s, tau_o,
                    progress=lambda it: tqdm(it, desc=f"pgt {run_name} {mode}", disable=None))
    with atomic_dir(root / "pgt" / f"{run_name}_{mode}") as tmp:
        write_json(tmp / f"{SPLIT}.json", pgt, indent=None)
    # analysis only: the hidden boxes are read after the PGT is written
    metrics = pgt_quality(pgt, index.to_json(), iou_thr=float(cfg["match_iou"]))
    metrics.update(run=run_name, mode=mode, tau_s=tau_s, tau_o=tau_o)
    write_json(root / "metrics" / f"pgt_{run_name}_{mode}.json", metrics)
    return metrics


def main() -> None:
    args = stage_args(
        __doc__.splitlines()[0],
        [("--run", {"required": True, "help": "WSOD run folder under wsod/, e.g. mist_weaksam"}),
         ("--mode", {"required": True, "choices": MODES, "help": "PGT rule"})],
    )
    log = setup_logging("pgt")
    m = run(load_params(args.params), args.run, args.mode)
    log.info("pgt %s %s: %d boxes (%.2f / image), precision %s, recall %s, labelled classes "
             "without a box %d of %d", args.run, args.mode, m["num_boxes"],
             m["boxes_per_image"] or 0.0, m["precision"], m["recall"],
             m["labelled_classes_without_box"], m["labelled_classes"])


if __name__ == "__main__":
    main()
