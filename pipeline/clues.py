"""Stage ``clues``: classification clues of every trainval and test image (paper Sec. 3.1).

For each image: coarse CAM, fine CAM and class-to-patch cross-attention maps (layers
``clues_train.cross_layers``; ``clues.cross_heads``: ``each`` head's map, the paper's CA tensor,
or ``mean`` over heads), on the image resized by ``clues.resize`` (``square``: squashed to
``clues_train.input_size``; ``area``: aspect kept at about that many pixels; ``original``: the
image's own size, as WeakTr), aggregated over ``clues.scales`` and flips,
restricted to the image's classes (trainval: image-level labels via ``WeakView``; test:
predicted classes, ``clues.test_threshold``, top-1 if none) and min-max normalised per map.
Writes ``clues/{trainval,test}.npz`` (layout: ``weaksam/clues/store.py``) and
``metrics/clues.json``:
    cls_map            classification mAP (%) of the CAM network on test (multi-scale + flip)
    cls_map_trainval   the same on trainval (seen in training; for reference)
    pointing_accuracy  % of cam_fine Algorithm 1 points (``prompts.kernel``/``prompts.tau``) on
                       trainval inside a ground-truth instance MASK of their class
    pointing_accuracy_coarse: the same for cam_coarse points
    points_per_image_cam_fine, num_images, seconds, workers (processes computing the maps)
Ground truth is read for these evaluation numbers only. Runs on ``runtime.device``;
``clues.amp``: float16 autocast on CUDA (WeakTr's map generation), ignored on the CPU.

On the CPU the batches of equal-size images are shared among ``runtime.workers`` processes, each
with the model loaded from ``models/clues/model.pt`` and ``runtime.threads`` threads; a batch's
maps are the same bytes whichever process computes it, so the output does not depend on the
worker count (one process on CUDA: the card takes whole batches).
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from pipeline.common import load_params, set_threads, setup_logging, stage_args
from weaksam.clues.infer import (
    base_size,
    cross_map_index,
    group_by_size,
    multiscale_maps,
    present_classes,
    resize_image,
    select_and_normalise,
)
from weaksam.clues.store import ImageClues, build_clues, save_clues
from weaksam.clues.train import classification_map, load_model
from weaksam.data.index import load_index
from weaksam.data.weak import WeakView
from weaksam.errors import InputError
from weaksam.prompts.evaluate import annotation_masks, pointing_hits
from weaksam.prompts.extract import map_peaks
from weaksam.utils.atomic import write_json
from weaksam.utils.device import resolve_device
from weaksam.utils.seed import seed_everything

SPLITS = ("trainval", "test")
MODEL = Path("models/clues/model.pt")
OUT_DIR = Path("clues")
METRICS = Path("metrics/clues.json")


_WORKER: dict[str, Any] = {}


def _init_worker(model_path: str, threads: int) -> None:
    """A map process: its own copy of the model, ``threads`` intra-op threads (0: torch's)."""
    if threads > 0:
        torch.set_num_threads(threads)
    _WORKER["model"] = load_model(model_path)[0]


def _batch_maps(job: tuple[torch.Tensor, dict[str, Any]]) -> dict[str, np.ndarray]:
    imgs, kw = job
    with torch.inference_mode():
        return {k: v.numpy() for k, v in multiscale_maps(_WORKER["model"], imgs, **kw).items()}


def split_clues(model, view: WeakView, *, use_labels: bool, resize: str, input_size: int,
                scales, flip: bool, cross_heads: str, threshold: float, batch_size: int,
                device: torch.device, amp: bool, pool=None):
    """Clues of every image of ``view`` -> (CluesSet, probs (M, C)). Images of equal base size
    are batched together; results keep the split order. ``pool``: processes started by
    :func:`_init_worker` compute the batches' maps (CPU), else ``model`` here."""
    p = model.patch_size
    sizes = [base_size(it.height, it.width, resize, input_size, p) for it in view]
    records: list[ImageClues | None] = [None] * len(view)
    probs: list[np.ndarray | None] = [None] * len(view)
    cat_ids = np.asarray(view.category_ids, dtype=np.int64)
    batches = group_by_size(sizes, batch_size)
    kw = dict(scales=scales, flip=flip, cross_heads=cross_heads, device=device, amp=amp)

    def images(batch: list[int]) -> torch.Tensor:  # (B, 3, H, W) uint8 at the base size
        return torch.stack([torch.from_numpy(resize_image(view.read(i), sizes[i]))
                            .permute(2, 0, 1) for i in batch])

    def results() -> Iterator[dict[str, np.ndarray]]:
        if pool is None:
            for batch in batches:
                maps = multiscale_maps(model, images(batch), **kw)
                yield {k: v.numpy() for k, v in maps.items()}
            return
        window = 4 * pool._processes  # images read ahead: a few batches per process
        for w in range(0, len(batches), window):
            yield from pool.imap(_batch_maps, [(images(b), kw) for b in batches[w:w + window]])

    for batch, maps in tqdm(zip(batches, results(), strict=True), total=len(batches),
                            desc="clues", disable=None):
        for j, i in enumerate(batch):
            item = view[i]
            pr = maps["probs"][j]
            keep = present_classes(pr, item.labels if use_labels else None, threshold)
            sel = select_and_normalise({k: maps[k][j] for k in ("cam_coarse", "cam_fine",
                                                                 "cross")}, keep)
            records[i] = ImageClues(
                image_id=item.image_id, width=item.width, height=item.height,
                classes=cat_ids[keep], class_scores=pr[keep].astype(np.float32), **sel)
            probs[i] = pr
    probs_arr = np.stack(probs).astype(np.float32) if probs else np.zeros(
        (0, len(cat_ids)), np.float32)
    grid = tuple(int(v) for v in np.max([(h // p, w // p) for h, w in sizes], axis=0)) \
        if sizes else (1, 1)
    layers, heads = cross_map_index(model.cross_layers, model.num_heads, cross_heads)
    clues = build_clues(records, grid, layers.tolist(), list(view.category_ids), probs_arr,
                        heads.tolist())
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
    device = resolve_device(params["runtime"]["device"])
    t0 = time.time()
    model, cat_ids = load_model(MODEL)
    model.to(device)
    workers = max(int(params["runtime"].get("workers", 1) or 1), 1) if device.type == "cpu" else 1
    # spawn, never fork (a fork after torch's thread pools started can deadlock)
    pool = mp.get_context("spawn").Pool(
        workers, initializer=_init_worker,
        initargs=(str(MODEL), int(params["runtime"].get("threads", 0) or 0))) \
        if workers > 1 else None
    try:
        metrics = _run(params, cfg, pcfg, model, cat_ids, input_size, device, pool, log)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    metrics["workers"] = workers
    metrics["seconds"] = round(time.time() - t0, 2)
    write_json(METRICS, metrics)
    log.info("clues done in %.1f s: %s", time.time() - t0, metrics)


def _run(params, cfg, pcfg, model, cat_ids, input_size, device, pool, log) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
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
                model, view, use_labels=(split == "trainval"), resize=str(cfg["resize"]),
                input_size=input_size, scales=[float(s) for s in cfg["scales"]],
                flip=bool(cfg["flip"]), cross_heads=str(cfg["cross_heads"]),
                threshold=float(cfg["test_threshold"]), batch_size=int(cfg["batch_size"]),
                device=device, amp=bool(cfg["amp"]), pool=pool)
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
    return metrics


if __name__ == "__main__":
    main()
