"""Stage ``clues``: classification clues of every trainval and test image (paper Sec. 3.1).

For each image: coarse CAM, fine CAM and class-to-patch cross-attention maps (layers
``clues_train.cross_layers``, heads averaged), aggregated over ``clues.scales`` and flips,
restricted to the image's classes (trainval: image-level labels via ``WeakView``; test:
predicted classes, ``clues.test_threshold``, top-1 if none) and min-max normalised per map.
Writes ``clues/{trainval,test}.npz`` (layout: ``weaksam/clues/store.py``) and
``metrics/clues.json``:
    cls_map            classification mAP (%) of the CAM network on test (multi-scale + flip)
    cls_map_trainval   the same on trainval (seen in training; for reference)
    pointing_accuracy  % of cam_fine Algorithm 1 points (``prompts.kernel``/``prompts.tau``) on
                       trainval inside a ground-truth instance MASK of their class
    pointing_accuracy_coarse: the same for cam_coarse points
    points_per_image_cam_fine, num_images, seconds
Ground truth is read for these evaluation numbers only.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pipeline.common import load_params, set_threads, setup_logging, stage_args
from weaksam.clues.infer import multiscale_maps, present_classes, select_and_normalise
from weaksam.clues.store import ImageClues, build_clues, save_clues
from weaksam.clues.train import classification_map, load_images, load_model
from weaksam.data.index import load_index
from weaksam.data.weak import WeakView
from weaksam.errors import InputError
from weaksam.prompts.evaluate import annotation_masks, pointing_hits
from weaksam.prompts.extract import map_peaks
from weaksam.utils.atomic import write_json
from weaksam.utils.seed import seed_everything

SPLITS = ("trainval", "test")
MODEL = Path("models/clues/model.pt")
OUT_DIR = Path("clues")
METRICS = Path("metrics/clues.json")


def split_clues(model, view: WeakView, *, use_labels: bool, input_size: int, scales, flip: bool,
                threshold: float, batch_size: int):
    """Clues of every image of ``view`` -> (CluesSet, probs (M, C))."""
    images = load_images(view.read, len(view), input_size)
    n = input_size // model.patch_size
    records, probs = [], []
    for s in tqdm(range(0, len(view), batch_size), desc="clues", disable=None):
        maps = multiscale_maps(model, images[s : s + batch_size], scales, flip)
        maps = {k: v.numpy() for k, v in maps.items()}
        for j in range(len(maps["probs"])):
            item = view[s + j]
            p = maps["probs"][j]
            keep = present_classes(p, item.labels if use_labels else None, threshold)
            sel = select_and_normalise({k: maps[k][j] for k in ("cam_coarse", "cam_fine",
                                                                 "cross")}, keep)
            records.append(ImageClues(
                image_id=item.image_id, width=item.width, height=item.height,
                classes=np.asarray(view.category_ids, dtype=np.int64)[keep],
                class_scores=p[keep].astype(np.float32), **sel))
            probs.append(p)
    probs_arr = np.stack(probs).astype(np.float32)
    clues = build_clues(records, (n, n), list(model.cross_layers), list(view.category_ids),
                        probs_arr)
    return clues, probs_arr


def main() -> None:
    args = stage_args(__doc__)
    params = load_params(args.params)
    log = setup_logging("clues")
    set_threads(params)
    seed = int(params["seed"])
    seed_everything(seed)
    cfg, pcfg = params["clues"], params["prompts"]
    input_size = int(params["clues_train"]["input_size"])
    t0 = time.time()
    model, cat_ids = load_model(MODEL)
    metrics: dict[str, float | int] = {}
    sets = {}
    for split in SPLITS:
        ann = Path(f"data/annotations/{split}.json")
        index = load_index(ann)
        view = WeakView(index)
        if list(view.category_ids) != cat_ids:
            raise InputError(ann, f"categories {list(view.category_ids)} differ from the "
                                  f"model's {cat_ids} ({MODEL})")
        with torch.inference_mode():
            clues, probs = split_clues(
                model, view, use_labels=(split == "trainval"), input_size=input_size,
                scales=[float(s) for s in cfg["scales"]], flip=bool(cfg["flip"]),
                threshold=float(cfg["test_threshold"]), batch_size=int(cfg["batch_size"]))
        save_clues(OUT_DIR / f"{split}.npz", clues)
        sets[split] = (index, clues)
        key = "cls_map" if split == "test" else "cls_map_trainval"
        metrics[key] = round(classification_map(probs, view.labels()), 3)
        log.info("%s: %d images, %d class rows, %s = %.2f", split, len(clues),
                 len(clues.arrays["classes"]), key, metrics[key])

    # pointing accuracy on trainval (evaluation only: ground-truth masks)
    index, clues = sets["trainval"]
    kernel, tau = int(pcfg["kernel"]), float(pcfg["tau"])
    hits = {s: [] for s in ("cam_fine", "cam_coarse")}
    for im in tqdm(clues, total=len(clues), desc="pointing", disable=None):
        pr = {}
        for s in hits:
            pts, idx, _ = map_peaks(getattr(im, s), im.width, im.height, kernel, tau)
            pr[s] = {"x": pts[:, 0], "y": pts[:, 1], "class": im.classes[idx]}
        anns = index.anns_of(im.image_id)
        masks = annotation_masks(anns, im.height, im.width)
        mcls = np.array([int(a["category_id"]) for a in anns], dtype=np.int64)
        for s in hits:
            pts = np.stack([pr[s]["x"], pr[s]["y"]], axis=1)
            hits[s].append(pointing_hits(pts, pr[s]["class"], masks, mcls))
    for s, name in (("cam_fine", "pointing_accuracy"), ("cam_coarse", "pointing_accuracy_coarse")):
        h = np.concatenate(hits[s]) if hits[s] else np.zeros(0, bool)
        metrics[name] = round(100.0 * float(h.mean()), 3) if len(h) else float("nan")
    metrics["points_per_image_cam_fine"] = round(
        float(np.mean([len(h) for h in hits["cam_fine"]])), 3)
    metrics["num_images"] = {s: len(sets[s][1]) for s in SPLITS}
    metrics["seconds"] = round(time.time() - t0, 2)
    write_json(METRICS, metrics)
    log.info("clues done in %.1f s: %s", time.time() - t0, metrics)


if __name__ == "__main__":
    main()
