"""Stage ``sam_pretrain``: pre-train the default profile's small SAM on the class-agnostic
corpus (the analogue of SAM's SA-1B training, DESIGN.md "Models in the default profile").

Writes the checkpoint ``models/sam_small.pt``, ``metrics/sam_pretrain.json`` (held-out mask IoU
for a point prompt and a box prompt, steps, seconds, parameters) and DVCLive curves under
``dvclive/sam_pretrain``. The paper profile skips this stage's output and points ``sam.model`` /
``sam.checkpoint`` at an official checkpoint instead. Runs on ``sam.device`` when set, else
``runtime.device`` (the same rule as the proposals stage).

``sam_pretrain.processes`` > 1 trains data-parallel (``weaksam.sam.train``, module docstring):
the script spawns that many worker processes (torch.multiprocessing), each with
``runtime.threads // processes`` intra-op threads (at least 1), joined by a process group
(``ddp_backend``: gloo on the CPU) whose rendezvous is a file in a fresh temporary folder, so
concurrent runs never share a port. The small SAM's step gains little from a second thread,
two one-thread processes each doing half of the step's images gain more (docs/small_sam.md).
Rank 0 evaluates and writes every output; the others only train. On CUDA rank ``r`` trains on
``cuda:r``: more processes than visible GPUs (or more than one on a named ``cuda:N``) stop the
stage before any process starts, with an error naming ``sam_pretrain.processes``
(``weaksam.utils.device.data_parallel_devices``); ranks are never doubled up on a card.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pipeline.common import load_params, set_threads, setup_logging, stage_args
from weaksam.config import from_section
from weaksam.engine.live import LiveHook
from weaksam.sam.checkpoint import save_small_sam
from weaksam.sam.model import SmallSamConfig, build_small_sam, count_parameters
from weaksam.sam.train import PretrainConfig, evaluate, pretrain
from weaksam.utils.atomic import write_json
from weaksam.utils.device import (
    data_parallel_devices,
    ddp_backend,
    resolve_device,
    sam_device,
)
from weaksam.utils.seed import seed_everything


def threads_per_process(params: dict[str, Any], processes: int) -> int:
    """Intra-op threads of each of ``processes`` workers: ``runtime.threads`` (0: torch's
    default) shared out, at least 1."""
    n = int(params.get("runtime", {}).get("threads", 0) or 0) or torch.get_num_threads()
    return max(1, n // processes)


def device_name(params: dict[str, Any]) -> str:
    """The SAM stages' device: ``sam.device``, else ``runtime.device`` (checked)."""
    return sam_device(params["sam"].get("device"), params["runtime"]["device"])


def run(rank: int, world: int, init_file: str | None, params_path: str) -> None:
    """Train (every rank) and write the outputs (rank 0) with ``world`` processes."""
    params = load_params(params_path)
    log = setup_logging("sam_pretrain")
    p = params["sam_pretrain"]
    if world > 1:
        os.environ["LOCAL_RANK"] = str(rank)  # "cuda" resolves to cuda:<rank>
        torch.set_num_threads(threads_per_process(params, world))
    else:
        set_threads(params)
    seed = int(params["seed"])
    seed_everything(seed)
    arch = SmallSamConfig(**p["model"])
    cfg = from_section(PretrainConfig, p["train"], "params.yaml sam_pretrain.train",
                       corpus_seed=seed)
    device = resolve_device(device_name(params))
    if world > 1:
        dist.init_process_group(ddp_backend(device), init_method=f"file://{init_file}",
                                rank=rank, world_size=world)
    try:
        sam = build_small_sam(arch).to(device)
        if rank != 0:
            pretrain(sam, cfg, rank=rank, world=world)
            return
        n_params = count_parameters(sam)
        log.info("small SAM: %d parameters, %d steps, %d process(es) x %d thread(s)", n_params,
                 cfg.steps, world, torch.get_num_threads())
        t0 = time.perf_counter()
        # curves only: the summary keeps just the step (held-out metrics go to metrics/)
        with LiveHook(p["live_dir"], next_step=False, summary=False, rank=0) as live:
            last = pretrain(sam, cfg, on_step=live, log_every=int(p["log_every"]),
                            rank=rank, world=world)
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
            "processes": world,
            "seconds": train_seconds,
            "num_parameters": n_params,
            "final_train_loss": last.get("loss"),
        })
        log.info("miou point %.3f box %.3f in %.0f s", ev["miou_point"], ev["miou_box"],
                 train_seconds)
    finally:
        if world > 1:
            dist.destroy_process_group()


def main() -> None:
    args = stage_args(__doc__.splitlines()[0])
    params = load_params(args.params)
    world = int(params["sam_pretrain"].get("processes", 1) or 1)
    try:  # every rank's device, before any process starts (one GPU each on CUDA)
        data_parallel_devices(device_name(params), world, "sam_pretrain.processes")
    except ValueError as e:
        raise SystemExit(f"{args.params}: {e}") from None
    if world <= 1:
        run(0, 1, None, args.params)
        return
    # the worker imported by its module name (not __main__), so spawned children unpickle it
    from pipeline.sam_pretrain import run as worker

    os.environ["OMP_NUM_THREADS"] = str(threads_per_process(params, world))  # for the children
    with tempfile.TemporaryDirectory(prefix="sam_pretrain_") as tmp:
        mp.spawn(worker, args=(world, os.path.join(tmp, "rendezvous"), args.params),
                 nprocs=world, join=True)


if __name__ == "__main__":
    main()
