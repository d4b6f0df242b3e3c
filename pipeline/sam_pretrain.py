"""Stage ``sam_pretrain``: pre-train the default profile's small SAM on the class-agnostic
corpus (the analogue of SAM's SA-1B training, DESIGN.md "Models in the default profile").

Writes the checkpoint ``models/sam_small.pt``, ``metrics/sam_pretrain.json`` (held-out mask IoU
for a point prompt and a box prompt, steps, seconds, parameters) and DVCLive curves under
``dvclive/sam_pretrain``; the training checkpoint ``checkpoints/sam_pretrain/last.pt`` (DVC
``persist``) every ``sam_pretrain.checkpoint_every`` steps: a killed run resumes from it when its
fingerprint (model, training settings, ``log_every``, process count, device kind) matches, and
ends with the model, metrics and curves of an unbroken run. The paper profile skips this stage's
output and points ``sam.model`` / ``sam.checkpoint`` at an official checkpoint instead. Runs on
``sam.device`` when set, else ``runtime.device`` (the same rule as the proposals stage).

Processes: ``runtime.nproc.sam_pretrain`` (``pipeline.launch`` in dvc.yaml's command; 1 runs
here, N > 1 under torchrun). The ranks join one process group
(``weaksam.engine.world.join_process_group``: gloo on the CPU) and train data-parallel
(``weaksam.sam.train``, module docstring), each with
``runtime.threads // N`` intra-op threads (at least 1). The small SAM's step gains little from a
second thread, two one-thread processes each doing half of the step's images gain more
(docs/small_sam.md). Rank 0 evaluates and writes every output; the others only train. On CUDA
rank ``r`` trains on ``cuda:r`` (``LOCAL_RANK``): more processes than visible GPUs (or more
than one on a named ``cuda:N``) stop every rank before it joins the group, with an error naming
``runtime.nproc.sam_pretrain`` (``weaksam.utils.device.data_parallel_devices``); ranks are
never doubled up on a card.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from pipeline.common import load_params, set_threads, setup_logging, stage_args
from pipeline.launch import cpu_count, processes_metrics
from weaksam.config import from_section
from weaksam.engine.checkpoint import fingerprint
from weaksam.engine.live import LiveHook
from weaksam.engine.world import join_process_group, world
from weaksam.sam.checkpoint import save_small_sam
from weaksam.sam.model import SmallSamConfig, build_small_sam, count_parameters
from weaksam.sam.train import PretrainConfig, evaluate, pretrain
from weaksam.utils.atomic import write_json
from weaksam.utils.device import data_parallel_devices, resolve_device, sam_device
from weaksam.utils.seed import seed_everything

TORCHRUN = True  # pipeline.launch may start it under torchrun (runtime.nproc.sam_pretrain)
NPROC_PARAM = "runtime.nproc.sam_pretrain"
DEVICE_PARAMS = ("sam.device", "runtime.device")  # its device, as pipeline.launch checks it
CKPT = Path("checkpoints/sam_pretrain/last.pt")


def threads_per_process(params: dict[str, Any], processes: int) -> int:
    """Intra-op threads of each of ``processes`` ranks: ``runtime.threads`` (0: the usable
    CPU cores) shared out, at least 1."""
    n = int(params.get("runtime", {}).get("threads", 0) or 0) or cpu_count()
    return max(1, n // processes)


def device_name(params: dict[str, Any]) -> str:
    """The SAM stages' device: ``sam.device``, else ``runtime.device`` (checked)."""
    return sam_device(params["sam"].get("device"), params["runtime"]["device"])


def join(params: dict[str, Any], params_path: str) -> tuple[int, int]:
    """``(rank, W)`` of this process: every rank's device is checked first (one GPU per rank,
    ``data_parallel_devices``; SystemExit naming ``runtime.nproc.sam_pretrain`` otherwise),
    then under torchrun it joins the process group (``join_process_group``)."""
    try:
        data_parallel_devices(device_name(params), int(os.environ.get("WORLD_SIZE", "1")),
                              NPROC_PARAM)
    except ValueError as e:
        raise SystemExit(f"{params_path}: {e}") from None
    join_process_group(resolve_device(device_name(params)))
    return world()


def main() -> None:
    args = stage_args(__doc__.splitlines()[0])
    params = load_params(args.params)
    log = setup_logging("sam_pretrain")
    rank, nproc = join(params, args.params)
    p = params["sam_pretrain"]
    if nproc > 1:
        torch.set_num_threads(threads_per_process(params, nproc))
    else:
        set_threads(params)
    seed = int(params["seed"])
    seed_everything(seed)
    arch = from_section(SmallSamConfig, p["model"], "params.yaml sam_pretrain.model")
    cfg = from_section(PretrainConfig, p["train"], "params.yaml sam_pretrain.train",
                       corpus_seed=seed)
    device = resolve_device(device_name(params))
    sam = build_small_sam(arch).to(device)
    log_every = int(p["log_every"])
    # the run's settings: what it trains and logs, on how many processes of which device kind
    fp = fingerprint({"model": asdict(arch), "train": asdict(cfg), "log_every": log_every,
                      "processes": nproc, "device": device.type})
    resume = {"checkpoint": CKPT, "fingerprint": fp,
              "checkpoint_every": int(p["checkpoint_every"])}
    if rank != 0:
        pretrain(sam, cfg, log_every=log_every, **resume)
        return
    n_params = count_parameters(sam)
    log.info("small SAM: %d parameters, %d steps, %d process(es) x %d thread(s)", n_params,
             cfg.steps, nproc, torch.get_num_threads())
    t0 = time.perf_counter()
    # curves only: the summary keeps just the step (held-out metrics go to metrics/); a
    # resumed run rewrites the curves from its checkpoint (pretrain), so the folder starts empty
    with LiveHook(p["live_dir"], next_step=False, summary=False, rank=0) as live:
        last = pretrain(sam, cfg, on_step=live, log_every=log_every, **resume)
        train_seconds = time.perf_counter() - t0
        # held-out corpus: a seed stream training never draws from
        ev = evaluate(sam, seed=seed + int(p["eval_seed_offset"]),
                      num_images=int(p["eval_images"]), radius_range=tuple(cfg.corpus_radius))
    save_small_sam(Path(p["checkpoint"]), sam, arch, extra={"steps": cfg.steps})
    write_json("metrics/sam_pretrain.json", {
        "miou_point": ev["miou_point"],
        "miou_box": ev["miou_box"],
        "eval_masks": ev["num_masks"],
        "steps": cfg.steps,
        **processes_metrics(),
        "seconds": train_seconds,
        "num_parameters": n_params,
        "final_train_loss": last.get("loss"),
    })
    log.info("miou point %.3f box %.3f in %.0f s", ev["miou_point"], ev["miou_box"],
             train_seconds)


if __name__ == "__main__":
    try:
        main()
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
