"""Stage ``wsis_figure``: paper Fig. 9-style figure of predicted instances on test images.

One row per test image (the first ``wsis_figure.num_figures`` with a ground-truth instance,
among the images whose ground truth has instance masks: the only ones the ``wsis`` stages
predict on and evaluate, ``weaksam.data.index.mask_coverage``): ground truth, then the
predictions of each WSIS model (``wsis/{model}/predictions_test.json``) with a score of at
least ``wsis_figure.score``. Output: ``reports/figures/wsis_predictions.png``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.common import load_params, setup_logging, stage_args
from weaksam.data.index import load_index, mask_coverage, read_image
from weaksam.errors import InputError
from weaksam.utils.readers import read_json
from weaksam.wsis.figures import draw_instance_grid

MODELS = (("mask_rcnn", "Mask R-CNN (pseudo masks)"), ("mask2former", "Mask2Former (pseudo)"),
          ("mask_rcnn_gt", "Mask R-CNN (GT masks)"))
FIGURE = Path("reports/figures/wsis_predictions.png")


def main() -> None:
    args = stage_args(__doc__.splitlines()[0])
    params = load_params(args.params)
    log = setup_logging("wsis_figure")
    w = params["wsis_figure"]
    index = load_index("data/annotations/test.json")
    thr = float(w["score"])
    preds = {}
    for name, _ in MODELS:
        by_img: dict[int, list] = {}
        path = Path("wsis") / name / "predictions_test.json"
        results = read_json(path, "WSIS predictions")
        if not isinstance(results, list):
            raise InputError(path, "expected a JSON list of COCO results")
        for r in results:
            if float(r["score"]) >= thr:
                by_img.setdefault(int(r["image_id"]), []).append(r)
        preds[name] = by_img
    masked = mask_coverage(index.to_json(), index.path)[0]
    shown = [i for i in masked if index.anns_of(i)][: int(w["num_figures"])]
    rows = [(read_image(index.image_path(i)),
             [("ground truth", [a for a in index.anns_of(i) if a.get("segmentation")])]
             + [(f"{title}, score >= {thr:g}", preds[name].get(i, [])) for name, title in MODELS])
            for i in shown]
    names = dict(zip(index.category_ids, index.category_names, strict=True))
    draw_instance_grid(FIGURE, rows, names)
    log.info("wrote %s (%d images)", FIGURE, len(rows))


if __name__ == "__main__":
    try:
        main()
    except InputError as e:
        sys.exit(f"wsis_figure: {e}")
