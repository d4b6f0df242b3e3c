"""Stage ``retrain_prelim``: the preliminary training of a retraining detector on one PGT
(paper Sec. 3.2: RoI / query drop starts after it), shared by every table row that retrains
that detector on that PGT.

    python -m pipeline.retrain_prelim --detector {frcnn,detr} \
        --pgt {mist_weaksam_top1,mist_weaksam_adaptive,oicr_weaksam_adaptive}

Trains epochs [0, P) of the T-epoch schedule of ``retrain.<detector>.schedule`` (P =
``prelim_epochs``, T = ``epochs``) with drop off. Inputs: ``pgt/<pgt>/trainval.json`` (COCO
annotations; a file without any box fails before training, naming it),
``retrain_features/trainval.pt`` (default profile) or the images, ``data/annotations``.
Outputs:
- ``retrain/prelim_<detector>_<pgt>/model.pt``: model, optimiser state and epoch P - 1, the
  start of every continuation (``pipeline.retrain``);
- frcnn only: ``retrain/prelim_frcnn_<pgt>/roi_losses.npz``: per-RoI losses of the last
  preliminary epoch (figures 3 and 5, ``pipeline.retrain_figures``);
- ``metrics/retrain_prelim_<detector>_<pgt>.json`` (timings, final losses, peak RSS);
- ``dvclive/retrain_prelim_<detector>_<pgt>/``: per-epoch losses.
The checkpoint ``checkpoints/retrain_prelim_<detector>_<pgt>/last.pt`` (DVC ``persist``) lets
a killed run resume when its params and inputs are unchanged. ``torchrun`` trains with DDP
(gloo on CPU, NCCL on CUDA); rank 0 writes (``roi_losses.npz`` then holds rank 0's images).
"""

from __future__ import annotations

import resource
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from pipeline.common import load_params, set_threads, setup_logging, stage_args, training_seed
from pipeline.launch import processes_metrics
from pipeline.retrain_common import (
    DETECTORS,
    PGTS,
    build_model,
    load_train_data,
    pgt_path,
    prelim_epochs,
    prelim_name,
    train_config,
)
from weaksam.engine.checkpoint import fingerprint, resume_state
from weaksam.engine.live import LiveHook
from weaksam.engine.world import join_process_group
from weaksam.errors import InputError, TrainingError
from weaksam.retrain.train import train_detector
from weaksam.utils.atomic import atomic_path, write_json
from weaksam.utils.device import resolve_device
from weaksam.utils.seed import seed_everything
from weaksam.weights import require_weights

TORCHRUN = True  # pipeline.launch may start it under torchrun (runtime.nproc.retrain_prelim)
RECORD_KEYS = ("l_cls", "l_reg", "n_cls", "n_reg", "labels", "image_id", "gt_index")


def main() -> None:
    args = stage_args(__doc__, [("--detector", {"choices": DETECTORS, "required": True}),
                                ("--pgt", {"choices": PGTS, "required": True}),
                                ("--stop-after", {"type": int, "default": None,
                                                  "help": "stop after this epoch (testing)"})])
    params = load_params(args.params)
    name = prelim_name(args.detector, args.pgt)
    log = setup_logging(f"retrain.{name}")
    set_threads(params)
    require_weights(params, f"retrain.{args.detector}.model.resnet50_checkpoint")
    seed = training_seed(params)
    seed_everything(seed)
    device = resolve_device(params["runtime"].get("device", "cpu"))
    rank = join_process_group(device)

    # the PGT is read (and an empty one rejected) before anything trains
    targets, source, view = load_train_data(args.detector, args.pgt, params)
    log.info("%s: %d PGT boxes on %d of %d images", pgt_path(args.pgt), targets.num_boxes,
             len(source), len(view))
    model = build_model(args.detector, view.num_classes, params, None)
    sched = train_config(args.detector, params)
    p = prelim_epochs(args.detector, params)
    out_dir = Path("retrain") / name
    ckpt = Path("checkpoints") / f"retrain_{name}" / "last.pt"
    fp = fingerprint((name, seed, params["retrain"][args.detector],
                      params["retrain"]["features"], params["backbone_pretrain"]),
                     files=(pgt_path(args.pgt),))
    resume = resume_state(ckpt, fp, "retrain checkpoint")
    if resume is not None and int(resume["epoch"]) < p - 1:  # unfinished only
        log.info("%s: resuming after epoch %d", ckpt, resume["epoch"])
    elif ckpt.is_file():
        resume = None
        log.info("%s: params or inputs changed (or finished), starting fresh", ckpt)
    live = LiveHook(f"dvclive/retrain_{name}", resume=resume is not None, rank=rank)

    records: list[dict[str, torch.Tensor]] = []
    heads = getattr(model, "roi_heads", None)

    def on_epoch_start(epoch: int) -> None:  # record the per-RoI losses of the last epoch
        if heads is not None and hasattr(heads, "recorder"):
            heads.recorder = records.append if epoch == p - 1 else None

    stop = p if args.stop_after is None else min(p, args.stop_after + 1)
    timing = train_detector(model, source, sched, stop_epoch=stop, checkpoint=ckpt,
                            fingerprint=fp, resume=resume, on_epoch=live,
                            on_epoch_start=on_epoch_start, device=device)
    live.close()
    if rank != 0:
        return
    if stop < p:
        log.info("stopped after epoch %d as asked (no outputs written)", stop - 1)
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "model.pt") as tmp:
        shutil.copyfile(ckpt, tmp)
    if heads is not None and hasattr(heads, "recorder"):
        if not records:
            raise TrainingError("no per-RoI losses were recorded in the last preliminary epoch "
                                "(resumed after it?): delete the checkpoint and rerun")
        arrays = {k: torch.cat([r[k] for r in records]).numpy() for k in RECORD_KEYS}
        arrays["step"] = np.concatenate([np.full(len(r["l_cls"]), i, np.int32)
                                         for i, r in enumerate(records)])
        with atomic_path(out_dir / "roi_losses.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    write_json(Path("metrics") / f"retrain_{name}.json", {
        "epochs": p, "pgt_boxes": targets.num_boxes, "train_images": len(source),
        "final_losses": {k: round(v, 5) for k, v in timing["history"][-1].items()
                         if k != "epoch"},
        "train_seconds": round(timing["train_seconds"], 2),
        "seconds_per_epoch": round(timing["seconds_per_epoch"], 2),
        "train_cpu_seconds": round(timing["train_cpu_seconds"], 2),
        "peak_rss_mib": round(peak, 1), **processes_metrics()})
    log.info("%s done: %s", name, {k: round(v, 2) for k, v in timing.items()
                                   if isinstance(v, (int, float))})


if __name__ == "__main__":
    try:
        main()
    except (InputError, TrainingError) as e:
        sys.exit(f"retrain_prelim: {e}")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
