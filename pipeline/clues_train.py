"""Stage ``clues_train``: train the WeakTr-style CAM network on image-level labels only.

Reads the trainval split through ``WeakView`` (no boxes, no masks), holds out
``clues_train.holdout`` of its images for validation, trains with AdamW on multi-label BCE
(``weaksam.clues.train.fit``) and writes:
- ``checkpoints/clues_train/last.pt`` after every epoch (DVC ``persist: true``): a run that is
  killed resumes from it when params and data are unchanged;
- ``dvclive/clues_train/``: DVCLive curves (``loss``, ``val_map`` in %) per epoch, resumed with
  ``Live(resume=True)``; declared as DVC plots / metrics;
- ``models/clues/model.pt``: the final weights with their architecture and class order.

Runs on ``runtime.device`` (``weaksam.utils.device.resolve_device``); ``clues_train.amp``: mixed
precision on CUDA (ignored on the CPU). WeakTr's training transforms are params:
``drop_path``, ``randaugment`` (timm string or null), ``erasing`` (probability).
``heads``: ``project`` or ``release`` (WeakTr's release heads, ``weaksam.clues.model``);
``holdout: 0`` trains on every trainval image (no validation mAP is logged).

Processes: ``runtime.nproc.clues_train`` (``pipeline.launch`` in dvc.yaml's command). Under
torchrun the ranks join one process group (gloo on the CPU, NCCL on CUDA, rank ``r`` on
``cuda:r``) and share every global batch of ``batch_size`` images (``weaksam.clues.train``,
module docstring); rank 0 evaluates and writes every output, the others only train. One
process gives the bytes of ``python -m pipeline.clues_train``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from pipeline.common import load_params, set_threads, setup_logging, stage_args
from weaksam.clues.train import (
    CluesTrainConfig,
    build_model,
    fit,
    holdout_split,
    load_images,
    save_model,
)
from weaksam.config import from_section
from weaksam.data.index import load_index
from weaksam.data.weak import WeakView
from weaksam.engine.checkpoint import fingerprint, resume_state
from weaksam.engine.live import LiveHook
from weaksam.engine.world import join_process_group
from weaksam.utils.device import resolve_device
from weaksam.utils.seed import seed_everything
from weaksam.weights import require_weights

TRAINVAL = Path("data/annotations/trainval.json")
CKPT = Path("checkpoints/clues_train/last.pt")
LIVE_DIR = Path("dvclive/clues_train")
MODEL = Path("models/clues/model.pt")
ARCH_KEYS = ("patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio", "cross_layers", "stem")
# keys of clues_train that are not CluesTrainConfig's: the model, its start and the data split
STAGE_KEYS = (*ARCH_KEYS, "input_size", "drop_path", "heads", "init_checkpoint", "holdout")
TORCHRUN = True  # pipeline.launch may start it under torchrun (runtime.nproc.clues_train)


def arch_from_params(cfg: dict) -> dict:
    """Architecture keyword arguments of ``CluesViT`` from the ``clues_train`` params."""
    arch = {k: cfg[k] for k in ARCH_KEYS}
    arch["img_size"] = int(cfg["input_size"])
    arch["cross_layers"] = [int(i) for i in cfg["cross_layers"]]
    arch["drop_path_rate"] = float(cfg["drop_path"])
    if cfg["heads"] != "project":  # saved only when set: model files of "project" unchanged
        arch["heads"] = str(cfg["heads"])
    return arch


def fingerprint_cfg(cfg: dict) -> dict:
    """The ``clues_train`` params a resume checkpoint is keyed by: ``heads`` only when not
    ``project`` (so checkpoints written before the key existed still resume)."""
    return {k: v for k, v in cfg.items() if not (k == "heads" and v == "project")}


def main() -> None:
    args = stage_args(__doc__, [("--stop-after", {"type": int, "default": None,
                                                  "help": "stop after this epoch (testing)"})])
    params = load_params(args.params)
    log = setup_logging("clues_train")
    set_threads(params)
    require_weights(params, "clues_train.init_checkpoint")  # DeiT-S file, before any work
    cfg = params["clues_train"]
    seed = int(params["seed"])
    seed_everything(seed)
    device = resolve_device(params["runtime"]["device"])
    rank = join_process_group(device)
    t0 = time.time()

    view = WeakView(load_index(TRAINVAL))
    arch = arch_from_params(cfg)
    images = load_images(view.read, len(view), int(cfg["input_size"]))
    labels = torch.from_numpy(view.labels())
    tr, va = holdout_split(len(view), float(cfg["holdout"]), seed)

    fp = fingerprint({"cfg": fingerprint_cfg(cfg), "seed": seed, "ids": view.image_ids,
                      "labels": view.labels().astype(int).tolist()})
    state = resume_state(CKPT, fp, "clues training checkpoint", weights_only=False)
    resume = state is not None
    if CKPT.is_file():
        log.info("checkpoint %s: %s", CKPT, f"resuming after epoch {state['epoch']}"
                 if resume else "params or data changed, starting fresh")
    del state

    model = build_model(arch, view.num_classes)
    if cfg.get("init_checkpoint") and not resume:
        model.load_deit_checkpoint(cfg["init_checkpoint"])

    live = LiveHook(LIVE_DIR, resume=resume, names={"val_map": "val/map"}, step_offset=-1,
                    as_float=True, rank=rank)

    def on_epoch(epoch: int, m: dict[str, float]) -> None:  # epochs count from 1
        live(epoch, m)
        log.info("epoch %d: %s", epoch, {k: round(v, 4) for k, v in m.items()})

    sched = from_section(CluesTrainConfig, cfg, "params.yaml clues_train", ignore=STAGE_KEYS,
                         seed=seed)
    history = fit(model, images[tr], labels[tr], images[va], labels[va], sched, checkpoint=CKPT,
                  fingerprint=fp, on_epoch=on_epoch, stop_after=args.stop_after, device=device)
    live.close()
    if rank != 0:  # torchrun: ranks > 0 only train
        return
    if args.stop_after is not None and len(history) < int(cfg["epochs"]):
        log.info("stopped after epoch %d as asked (no final model written)", len(history))
        return
    save_model(MODEL, model, arch, view.category_ids)
    last = history[-1] if history else {}
    log.info("clues_train done in %.1f s: %d train / %d held-out images, final %s",
             time.time() - t0, len(tr), len(va),
             {k: round(float(v), 4) for k, v in last.items() if np.isfinite(v)})


if __name__ == "__main__":
    try:
        main()
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
