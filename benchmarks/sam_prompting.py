"""Benchmark: batched SAM prompting (this workspace) against one prompt at a time (the authors'
way: one ``SamPredictor.predict`` call per point, full-resolution masks), same images, same
prompts, same SAM. Prints seconds per image for both, the speed-up, and checks that both give
identical boxes (both read boxes off the low-resolution logits with ``boxes_from_lowres``).

    python benchmarks/sam_prompting.py [--images 20] [--split trainval] [--params params.yaml]

SAM comes from params ``sam.model`` / ``sam.checkpoint``; prompts from
``prompts/{split}.parquet`` when it exists, else a dense 6 x 6 grid per image.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.common import load_params  # noqa: E402
from pipeline.proposals import prompting_config  # noqa: E402
from weaksam.data.index import load_index, read_image  # noqa: E402
from weaksam.prompts.grid import grid_points  # noqa: E402
from weaksam.proposals.sam import (  # noqa: E402
    SamPromptProposer,
    boxes_from_lowres,
    dedup_and_sort,
    prepare_points,
    select_masks,
)
from weaksam.proposals.sources import PROMPT_SOURCES  # noqa: E402
from weaksam.sam.checkpoint import load_sam  # noqa: E402


def one_at_a_time(prop: SamPromptProposer, image: np.ndarray, pts: np.ndarray, src: np.ndarray):
    """The authors' loop: ``predictor.predict`` per point (masks upsampled to full size)."""
    cfg = prop.config
    h, w = image.shape[:2]
    pts, keep = prepare_points(pts, w, h, cfg.outside)
    src = src[keep]
    pred = prop.predictor
    pred.set_image(image)
    boxes, scores, sources = [], [], []
    for p, s in zip(pts, src, strict=True):
        _, iou, low = pred.predict(point_coords=p[None], point_labels=np.array([1]),
                                   multimask_output=True)
        low_k, iou_k = select_masks(torch.from_numpy(low)[None], torch.from_numpy(iou)[None],
                                    cfg, prop.sam.mask_threshold)
        b, v = boxes_from_lowres(low_k, pred.input_size, pred.original_size, prop.frame,
                                 prop.sam.mask_threshold)
        v = v[0].numpy()
        boxes.append(b[0].numpy()[v])
        scores.append(iou_k[0].numpy()[v])
        sources.append(np.full(int(v.sum()), s, np.uint8))
    return dedup_and_sort(np.concatenate(boxes), np.concatenate(scores),
                          np.concatenate(sources), cfg.nms_iou)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--split", default="trainval")
    args = ap.parse_args()
    params = load_params(args.params)
    torch.set_num_threads(1)
    sam = load_sam(params["sam"]["model"], params["sam"]["checkpoint"])
    pp = params["proposals"]
    cfg = replace(prompting_config(pp), classwise=False, multimask=True)  # as one_at_a_time
    prop = SamPromptProposer(sam, cfg)
    index = load_index(Path("data/annotations") / f"{args.split}.json")
    ppath = Path(pp["prompts_dir"]) / f"{args.split}.parquet"
    table = None
    if ppath.is_file():
        import pandas as pd

        table = dict(tuple(pd.read_parquet(ppath).groupby("image_id")))
    ids = index.image_ids[: args.images]
    t_batch = t_single = 0.0
    n_prompts = 0
    same = True
    for iid in ids:
        img = read_image(index.image_path(iid))
        h, w = img.shape[:2]
        if table is not None and iid in table:
            g = table[iid]
            pts = g[["x", "y"]].to_numpy(np.float32)
            src = g["source"].map({s: i for i, s in enumerate(PROMPT_SOURCES)}).to_numpy(np.uint8)
        else:
            pts = grid_points(w, h, 6)
            src = np.zeros(len(pts), np.uint8)
        n_prompts += len(pts)
        t0 = time.perf_counter()
        a = prop.propose(img, pts, src)
        t1 = time.perf_counter()
        b = one_at_a_time(prop, img, pts, src)
        t2 = time.perf_counter()
        t_batch += t1 - t0
        t_single += t2 - t1
        same &= np.array_equal(a.boxes, b.boxes) and np.array_equal(a.sources, b.sources)
    n = len(ids)
    print(f"SAM {params['sam']['model']}, {n} images, {n_prompts / n:.1f} prompts/image, "
          f"1 thread")
    print(f"batched (batch {cfg.batch_size}): {t_batch / n:.4f} s/image")
    print(f"one at a time (predictor.predict per point): {t_single / n:.4f} s/image")
    print(f"speed-up: {t_single / t_batch:.2f}x")
    print(f"identical boxes: {same}")
    if not same:
        sys.exit("batched and one-at-a-time boxes differ")


if __name__ == "__main__":
    main()
