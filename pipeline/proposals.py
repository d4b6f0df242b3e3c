"""Stage ``proposals``: WeakSAM proposals (paper Sec. 3.1) for trainval and test.

Reads ``prompts/{split}.parquet`` (the prompts stage already clustered the cross-attention
peaks), prompts the frozen SAM (``sam.model`` / ``sam.checkpoint``) with every point, and writes
``proposals/weaksam/{split}.npz`` (source_names dense, cam_fine, cam_coarse, cross),
``proposals/weaksam/{split}_detectron2.pkl`` (detectron2 precomputed-proposal format) and
``metrics/proposals_time_weaksam.json``. Images of a split are sharded over
``runtime.workers`` processes, or over torch.distributed ranks when launched with torchrun.

Device rule: SAM runs on ``sam.device`` when it is set (an override for this stage), else on
``runtime.device``. With CUDA the process pool never puts two SAM copies on one card: it starts
``min(runtime.workers, visible GPUs)`` processes, process ``r`` on ``cuda:r`` (one process for
``cuda:N`` or a single GPU), and logs when that is fewer than ``runtime.workers``
(``weaksam.proposals.shard.worker_devices``); under torchrun each rank takes its own card. The
metrics' ``workers`` is the number of processes that ran.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.common import load_params, setup_logging, stage_args
from weaksam.data.index import load_index
from weaksam.errors import InputError
from weaksam.proposals.sam import AmgConfig, PromptingConfig
from weaksam.proposals.shard import (
    ImageTask,
    SamSpec,
    generate,
    generate_distributed,
    worker_devices,
)
from weaksam.proposals.sources import PROMPT_SOURCES
from weaksam.proposals.store import save_proposals, to_detectron2
from weaksam.utils.atomic import write_json
from weaksam.utils.device import sam_device
from weaksam.utils.seed import seed_everything
from weaksam.weights import require_weights

PROMPT_COLUMNS = ("image_id", "x", "y", "source", "class", "score")


def read_prompts(path: Path) -> pd.DataFrame:
    """The prompts table of a split, validated (InputError naming the file on a problem)."""
    if not path.is_file():
        raise InputError(path, "prompts file not found (run the prompts stage)")
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # noqa: BLE001 - any decode failure is a corrupt file
        raise InputError(path, f"cannot read prompts table ({e})") from e
    missing = [c for c in PROMPT_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(path, f"prompts table lacks columns {missing}")
    unknown = sorted(set(df["source"].astype(str)) - set(PROMPT_SOURCES))
    if unknown:
        raise InputError(path, f"unknown prompt sources {unknown}; expected {PROMPT_SOURCES}")
    return df


def build_tasks(index, prompts: pd.DataFrame, path: Path) -> list[ImageTask]:
    """One task per image of the split (images without prompts get empty arrays)."""
    known = set(index.image_ids)
    extra = sorted(set(prompts["image_id"].astype(int)) - known)
    if extra:
        raise InputError(path, f"prompts for images not in the split, e.g. {extra[:5]}")
    src_idx = {s: i for i, s in enumerate(PROMPT_SOURCES)}
    groups = dict(tuple(prompts.groupby("image_id", sort=False)))
    tasks = []
    for iid in index.image_ids:
        g = groups.get(iid)
        if g is None:
            pts = np.zeros((0, 2), np.float32)
            src = np.zeros(0, np.uint8)
            cls = np.zeros(0, np.int64)
        else:
            pts = g[["x", "y"]].to_numpy(np.float32)
            src = g["source"].astype(str).map(src_idx).to_numpy(np.uint8)
            cls = g["class"].to_numpy(np.int64)
        tasks.append(ImageTask(int(iid), str(index.image_path(iid)), pts, src, cls))
    return tasks


def prompting_config(p: dict) -> PromptingConfig:
    a = p["amg"]
    return PromptingConfig(
        batch_size=int(p["batch_size"]),
        mask_indices=tuple(int(i) for i in p["mask_indices"]),
        multimask=bool(p["multimask"]),
        nms_iou=float(p["nms_iou"]),
        classwise=str(p["classwise"]),
        outside=str(p["outside"]),
        mask_order=str(p["mask_order"]),
        cross_nms_iou=float(p["cross_nms_iou"]),
        dense_mode=str(p["dense_mode"]),
        amg=AmgConfig(points_per_side=int(a["points_per_side"]),
                      points_per_batch=int(a["points_per_batch"]),
                      pred_iou_thresh=float(a["pred_iou_thresh"]),
                      stability_score_thresh=float(a["stability_score_thresh"]),
                      box_nms_thresh=float(a["box_nms_thresh"])),
    )


def main() -> None:
    args = stage_args(__doc__.splitlines()[0])
    params = load_params(args.params)
    log = setup_logging("proposals")
    require_weights(params, "sam.checkpoint")  # official SAM file, before the workers start
    seed_everything(int(params["seed"]))
    pp = params["proposals"]
    device = sam_device(params["sam"].get("device"), params["runtime"]["device"])
    spec = SamSpec(params["sam"]["model"], str(params["sam"]["checkpoint"]), device)
    cfg = prompting_config(pp)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank0 = int(os.environ.get("RANK", "0")) == 0
    # SAM processes: runtime.workers, at most one per visible GPU on CUDA (logged when fewer)
    workers = 1 if distributed else len(worker_devices(spec.device,
                                                       int(params["runtime"]["workers"])))
    out_dir = Path("proposals/weaksam")
    timing: dict[str, dict[str, float]] = {}
    total_images, total_seconds = 0, 0.0
    for split in pp["splits"]:
        index = load_index(Path("data/annotations") / f"{split}.json")
        ppath = Path(pp["prompts_dir"]) / f"{split}.parquet"
        tasks = build_tasks(index, read_prompts(ppath), ppath)
        t0 = time.perf_counter()
        props = (generate_distributed(tasks, spec, cfg) if distributed
                 else generate(tasks, spec, cfg, workers))
        sec = time.perf_counter() - t0
        if props is None:  # a non-zero torchrun rank: rank 0 writes
            continue
        save_proposals(out_dir / f"{split}.npz", props)
        to_detectron2(props, out_dir / f"{split}_detectron2.pkl")
        per_src = {s: float(np.mean([(p.sources == i).sum() for p in props.images.values()]))
                   if len(props) else 0.0 for i, s in enumerate(props.source_names)}
        timing[split] = {"seconds": sec, "num_images": len(tasks),
                         "num_per_image": props.mean_count(), "num_per_image_by_source": per_src}
        total_images += len(tasks)
        total_seconds += sec
        log.info("%s: %d images, %.1f proposals/image, %.1f s", split, len(tasks),
                 props.mean_count(), sec)
    if rank0:
        write_json("metrics/proposals_time_weaksam.json", {
            "seconds_per_image": total_seconds / max(1, total_images),
            "total_seconds": total_seconds,
            "num_images": total_images,
            "splits": timing,
            "workers": int(os.environ.get("WORLD_SIZE", workers)) if distributed else workers,
        })


if __name__ == "__main__":
    main()
