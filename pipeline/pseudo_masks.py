"""Stage ``pseudo_masks``: SAM masks of the adaptive PGT boxes as pseudo instance labels (paper
Sec. 3.3).

Inputs: ``pgt/{pseudo_masks.pgt}/trainval.json`` (COCO, bbox + score per PGT box), the frozen
SAM of the proposals stage (params ``sam.model`` / ``sam.checkpoint``), the trainval images.
Outputs:
- ``pseudo_masks/trainval.json``: COCO annotations with RLE ``segmentation``, category and
  score of the PGT box (docs/contracts.md, "pseudo_masks");
- ``metrics/pseudo_masks.json``: counts (boxes clipped / skipped, empty masks dropped), timing,
  and the mask quality against the hidden trainval ground truth (analysis only, read after the
  masks are made: mean IoU of matched instances, share >= 0.5, per class) on the trainval
  images whose ground truth has instance masks (``quality_images``); the others
  (``quality_images_without_gt_masks``: most VOC 2012 ``train_aug`` images, SBD's, have no
  ``SegmentationObject``) still get pseudo masks and are left out of the scoring only;
- ``reports/figures/pseudo_masks.png``: pseudo masks beside the ground truth on a few images.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from pipeline.common import load_params, set_threads, setup_logging, stage_args
from weaksam.data.index import index_from_dict, load_index, mask_coverage, read_image, subset
from weaksam.errors import InputError
from weaksam.utils.atomic import write_json
from weaksam.utils.device import resolve_device, sam_device
from weaksam.utils.readers import read_json
from weaksam.utils.seed import seed_everything
from weaksam.wsis.figures import draw_instance_grid
from weaksam.wsis.pseudo_masks import BoxPromptMasker, pseudo_mask_dataset
from weaksam.wsis.quality import mask_quality

OUT = Path("pseudo_masks/trainval.json")
METRICS = Path("metrics/pseudo_masks.json")
FIGURE = Path("reports/figures/pseudo_masks.png")


def main() -> None:
    args = stage_args(__doc__.splitlines()[0])
    params = load_params(args.params)
    log = setup_logging("pseudo_masks")
    set_threads(params)
    seed_everything(int(params["seed"]))
    cfg = params["pseudo_masks"]
    from weaksam.sam.checkpoint import load_sam  # heavy import

    pgt_path = Path("pgt") / str(cfg["pgt"]) / "trainval.json"
    raw = read_json(pgt_path, "PGT file", want_object=True)
    pgt = index_from_dict(raw, pgt_path)  # validated; ``raw`` keeps info.image_root as written
    # sam.device, else runtime.device
    device = resolve_device(sam_device(params["sam"].get("device"), params["runtime"]["device"]))
    sam = load_sam(str(params["sam"]["model"]), str(params["sam"]["checkpoint"]), device)
    masker = BoxPromptMasker(sam, batch_size=int(cfg["batch_size"]))
    t0, c0 = time.time(), time.process_time()
    data, stats = pseudo_mask_dataset(raw, lambda i: read_image(pgt.image_path(i)),
                                      masker.masks)
    seconds, cpu = time.time() - t0, time.process_time() - c0
    write_json(OUT, data, indent=None)

    # analysis only: the hidden ground truth is read after the pseudo masks are written
    gt_index = load_index("data/annotations/trainval.json")
    gt = gt_index.to_json()
    scored, unscored = mask_coverage(gt)
    if unscored:
        gt, scored_data = subset(gt, scored), subset(data, scored)
        log.info("mask quality on the %d trainval images with ground-truth masks (%d without: "
                 "not scored)", len(scored), len(unscored))
    else:
        scored_data = data
    quality = mask_quality(scored_data, gt)
    metrics = {**vars(stats), **quality, "quality_images": len(scored),
               "quality_images_without_gt_masks": len(unscored), "seconds": round(seconds, 2),
               "cpu_seconds": round(cpu, 2),
               "seconds_per_image": round(seconds / max(1, stats.images), 4),
               "pgt": str(cfg["pgt"])}
    write_json(METRICS, metrics)
    log.info("%d masks from %d boxes (%d clipped, %d skipped, %d empty); mean IoU %s, "
             ">=0.5 %s %%; %.1f s", stats.masks_out, stats.boxes_in, stats.boxes_clipped,
             stats.boxes_skipped, stats.masks_empty, quality["mean_iou"],
             quality["share_iou50"], seconds)

    names = dict(zip(gt_index.category_ids, gt_index.category_names, strict=True))
    by_img: dict[int, list] = {}
    for a in data["annotations"]:
        by_img.setdefault(int(a["image_id"]), []).append(a)
    shown = [i for i in scored if i in by_img][: int(cfg["num_figures"])]
    rows = [(read_image(gt_index.image_path(i)),
             [("ground truth", gt_index.anns_of(i)), ("pseudo masks (SAM on PGT)", by_img[i])])
            for i in shown]
    draw_instance_grid(FIGURE, rows, names)


if __name__ == "__main__":
    try:
        main()
    except InputError as e:
        sys.exit(f"pseudo_masks: {e}")
