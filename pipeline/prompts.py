"""Stage ``prompts``: automatic SAM prompts of every image (paper Sec. 3.1, Algorithm 1).

Reads ``clues/{split}.npz`` and writes ``prompts/{split}.parquet`` (docs/contracts.md): columns
image_id (int64), x, y (float32, pixels of the original image), source (dense, cam_fine,
cam_coarse, cross), class (int64 category id, -1 for dense), score (float32). Only the sources
listed in ``prompts.sources`` are written (default: all four). Also writes
``metrics/prompts.json`` (prompts per image per source and split, seconds) and
``reports/figures/clues_prompts.png`` (maps and points of the first ``prompts.num_figures``
trainval images).

Images are shared among a pool of ``runtime.workers`` processes (each image's prompts depend on
the image and params only, KMeans seeded by ``seed``) and merged in split order, so the output
does not depend on the worker count.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from pipeline.common import load_params, setup_logging, stage_args
from weaksam.clues.store import load_clues
from weaksam.data.index import load_index, read_image
from weaksam.errors import InputError
from weaksam.prompts.extract import COLUMNS, image_prompts
from weaksam.prompts.figures import draw_clues_figure
from weaksam.proposals.sources import PROMPT_SOURCES
from weaksam.utils.atomic import atomic_path, write_json

SPLITS = ("trainval", "test")
FIGURE = Path("reports/figures/clues_prompts.png")


def prompts_table(rows: list[tuple[int, dict[str, dict[str, np.ndarray]]]],
                  sources: list[str]) -> pd.DataFrame:
    """Concatenate per-image prompts of ``sources`` into the contract's table."""
    parts = []
    for iid, per_src in rows:
        for s in sources:
            cols = per_src[s]
            parts.append(pd.DataFrame({"image_id": np.full(len(cols["x"]), iid, np.int64),
                                       **{c: cols[c] for c in COLUMNS}}))
    if not parts:
        return pd.DataFrame({"image_id": pd.Series(dtype="int64"), "x": pd.Series(dtype="float32"),
                             "y": pd.Series(dtype="float32"), "source": pd.Series(dtype=str),
                             "class": pd.Series(dtype="int64"),
                             "score": pd.Series(dtype="float32")})
    df = pd.concat(parts, ignore_index=True)
    return df.astype({"image_id": "int64", "x": "float32", "y": "float32", "source": str,
                      "class": "int64", "score": "float32"})


def _init_worker() -> None:
    torch.set_num_threads(1)  # many tiny per-image ops: threads only add overhead


def _one(job: tuple[Any, dict[str, Any]]) -> tuple[int, dict[str, dict[str, np.ndarray]]]:
    im, kw = job
    return im.image_id, image_prompts(im, **kw)


def image_prompts_all(clues, kw: dict[str, Any], pool) -> Iterator[
        tuple[Any, dict[str, dict[str, np.ndarray]]]]:
    """(image clues, prompts) of every image of ``clues`` in order, on ``pool`` when given."""
    jobs = ((clues.image(i), kw) for i in range(len(clues)))
    results = pool.imap(_one, jobs, chunksize=8) if pool is not None else map(_one, jobs)
    for i, (iid, pr) in enumerate(results):
        im = clues.image(i)
        assert im.image_id == iid
        yield im, pr


def main() -> None:
    args = stage_args(__doc__)
    params = load_params(args.params)
    log = setup_logging("prompts")
    cfg = params["prompts"]
    _init_worker()
    workers = max(int(params.get("runtime", {}).get("workers", 1) or 1), 1)
    # spawn, never fork (a fork after torch's thread pools started can deadlock)
    pool = mp.get_context("spawn").Pool(workers, initializer=_init_worker) if workers > 1 else None
    try:
        _run(params, cfg, pool, log, args.params)
    finally:
        if pool is not None:
            pool.close()
            pool.join()


def _run(params: dict[str, Any], cfg: dict[str, Any], pool, log, params_path: str) -> None:
    seed = int(params["seed"])
    sources = [str(s) for s in cfg["sources"]]
    bad = sorted(set(sources) - set(PROMPT_SOURCES))
    if bad:
        raise InputError(params_path, f"prompts.sources: unknown {bad}; known {PROMPT_SOURCES}")
    kw = dict(grid=int(cfg["grid"]), kernel=int(cfg["kernel"]), tau=float(cfg["tau"]),
              cross_kernel=int(cfg["cross_kernel"]), cross_tau=float(cfg["cross_tau"]),
              cross_clusters=int(cfg["cross_clusters"]), seed=seed,
              cross_points_per_cluster=int(cfg["cross_points_per_cluster"]),
              cross_representative=str(cfg["cross_representative"]))
    t0 = time.time()
    metrics: dict[str, object] = {"sources": sources}
    fig_rows = []
    for split in SPLITS:
        clues = load_clues(Path(f"clues/{split}.npz"))
        rows = []
        for i, (im, pr) in enumerate(tqdm(image_prompts_all(clues, kw, pool), total=len(clues),
                                          desc=f"prompts {split}", disable=None)):
            rows.append((im.image_id, pr))
            if split == "trainval" and i < int(cfg["num_figures"]):
                fig_rows.append((im, pr))
        df = prompts_table(rows, sources)
        with atomic_path(Path(f"prompts/{split}.parquet")) as tmp:
            df.to_parquet(tmp, index=False)
        per_img = {s: round(float(np.mean([len(pr[s]["x"]) for _, pr in rows])), 3)
                   for s in PROMPT_SOURCES}
        metrics[f"per_image_{split}"] = per_img
        metrics[f"total_per_image_{split}"] = round(len(df) / max(1, len(rows)), 3)
        log.info("%s: %d images, %d prompts; per image per source %s", split, len(rows),
                 len(df), per_img)

    index = load_index(Path("data/annotations/trainval.json"))
    names = dict(zip(index.category_ids, index.category_names, strict=True))
    draw_clues_figure(FIGURE, [(read_image(index.image_path(im.image_id)), im, pr)
                               for im, pr in fig_rows], names)
    metrics["seconds"] = round(time.time() - t0, 2)
    metrics["workers"] = 1 if pool is None else pool._processes
    write_json(Path("metrics/prompts.json"), metrics)
    log.info("prompts done in %.1f s", time.time() - t0)


if __name__ == "__main__":
    main()
