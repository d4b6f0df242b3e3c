"""Stage ``proposals_ss``: Selective Search proposals of every image of both splits.

Writes ``proposals/ss/{trainval,test}.npz`` (weaksam/proposals/store.py format, source_names
["ss"]) and ``metrics/proposals_time_ss.json`` (``seconds_per_image``, ``total_seconds``,
``num_images``: wall time of the Selective Search runs of both splits, image reading included;
plus ``workers`` and ``num_per_image``). Images are processed by a pool of
``runtime.workers`` processes and merged in split order, and each image's ranking is seeded from
(``seed``, image id), so the output does not depend on the worker count.

params: ``seed``, ``runtime.workers``, ``proposals_ss.{mode, max_per_image, min_size}``.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipeline.common import load_params, setup_logging, stage_args
from weaksam.data.index import load_index, read_image
from weaksam.proposals.selective_search import SOURCE_NAMES, init_worker, selective_search
from weaksam.proposals.store import ImageProposals, ProposalSet, save_proposals
from weaksam.utils.atomic import atomic_dir, write_json

SPLITS = ("trainval", "test")
ANN_DIR = Path("data/annotations")
OUT_DIR = Path("proposals/ss")
METRICS = Path("metrics/proposals_time_ss.json")


def image_seed(seed: int, image_id: int) -> int:
    """Per-image seed of the Selective Search ranking (independent of worker assignment)."""
    return (int(seed) * 1_000_003 + int(image_id)) % (2**32)


def _one(job: tuple[int, str, dict[str, Any]]) -> tuple[int, ImageProposals]:
    iid, path, kw = job
    return iid, selective_search(read_image(path), seed=image_seed(kw.pop("seed"), iid), **kw)


def _pool(workers: int):
    # spawn, never fork: a child forked after OpenCV's or torch's thread pools have started can
    # deadlock on a lock held by a thread that does not exist in the child
    return mp.get_context("spawn").Pool(workers, initializer=init_worker)


def run(params: dict[str, Any]) -> dict[str, Any]:
    """Run the stage in the working directory; returns the timing metrics."""
    cfg = params["proposals_ss"]
    workers = max(int(params.get("runtime", {}).get("workers", 1) or 1), 1)
    kw = {"mode": cfg["mode"], "max_per_image": int(cfg["max_per_image"]),
          "min_size": float(cfg["min_size"]), "seed": int(params.get("seed", 0))}
    indexes = {split: load_index(ANN_DIR / f"{split}.json") for split in SPLITS}
    n_total = sum(len(ix) for ix in indexes.values())
    pool = _pool(workers) if workers > 1 else None
    if pool is None:
        init_worker()
    sets: dict[str, ProposalSet] = {}
    t0 = time.perf_counter()
    try:
        for split, ix in indexes.items():
            jobs = [(iid, str(ix.image_path(iid)), dict(kw)) for iid in ix.image_ids]
            it = pool.imap(_one, jobs, chunksize=4) if pool else map(_one, jobs)
            props = ProposalSet(list(SOURCE_NAMES))
            for iid, p in tqdm(it, total=len(jobs), desc=f"selective search {split}",
                               disable=None):
                props.images[iid] = p
            sets[split] = props
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    total = time.perf_counter() - t0
    with atomic_dir(OUT_DIR) as tmp:
        for split, props in sets.items():
            save_proposals(tmp / f"{split}.npz", props)
    counts = [len(p) for s in sets.values() for p in s.images.values()]
    metrics = {
        "seconds_per_image": total / max(n_total, 1),
        "total_seconds": total,
        "num_images": n_total,
        "num_per_image": sum(counts) / max(len(counts), 1),
        "workers": workers,
    }
    write_json(METRICS, metrics)
    return metrics


def main() -> None:
    args = stage_args(__doc__.splitlines()[0])
    log = setup_logging("proposals_ss")
    m = run(load_params(args.params))
    log.info("Selective Search: %d images, %.1f proposals/image, %.3f s/image (%d workers)",
             m["num_images"], m["num_per_image"], m["seconds_per_image"], m["workers"])


if __name__ == "__main__":
    main()
