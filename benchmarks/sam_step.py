"""Benchmark: milliseconds per pre-training step of the small SAM (stage ``sam_pretrain``) for
three ways of using two cores, and for the step's shape before 2026-12-01 (evening):

    1p x 2t   one process, 2 intra-op threads (the stage before its data-parallel processes)
    1p x 1t   one process, 1 thread
    2p x 1t   two gloo processes of one thread, each on half of the step's images (the
              data-parallel step of weaksam/sam/train.py; the same mathematics)
    2p x 1t, 4 x 32
              the same with the previous batch: 4 images x 32 prompts, segments by sqrt(area)
              (a cheaper step that learned less per second; docs/small_sam.md)

    .venv/bin/python benchmarks/sam_step.py [--steps 40] [--warmup 10] [--rounds 3]

Reads params.yaml (``seed``, ``sam_pretrain.model`` and ``.train``: the default architecture,
images and prompts per step). Each run builds a fresh seeded model and calls
``weaksam.sam.train.pretrain`` (corpus generation, forward, backward, all-reduce, AdamW: the
whole step) for ``warmup + steps`` steps; a step's time is the wall time between consecutive
steps on rank 0, the warm-up steps dropped. The variants run in turn within a round, the order
rotating between rounds (interference on a shared machine hits every variant alike), and each
variant reports the fastest step (``timeit``'s rule: the work is deterministic and interference
only adds time) and the median. Wall time, not CPU time: the point is how soon two cores finish
a step. Prints a table and writes ``benchmarks/results/sam_step.json`` (with the load average
before and after, since the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.common import load_params  # noqa: E402
from weaksam.sam.model import SmallSamConfig, build_small_sam  # noqa: E402
from weaksam.sam.train import PretrainConfig, pretrain  # noqa: E402
from weaksam.utils.atomic import write_json  # noqa: E402

# name: (processes, threads, overrides of sam_pretrain.train)
PREVIOUS_BATCH = {"batch_images": 4, "prompts_per_image": 32, "segments": "sqrt_area"}
VARIANTS: dict[str, tuple[int, int, dict]] = {
    "1p x 2t": (1, 2, {}), "1p x 1t": (1, 1, {}), "2p x 1t": (2, 1, {}),
    "2p x 1t, 4 x 32": (2, 1, PREVIOUS_BATCH),
}


def step_times(arch: dict, cfg: dict, seed: int, threads: int) -> list[float]:
    """Seconds of each step of a fresh ``pretrain`` run (data parallel over the initialised
    process group, if any; rank 0's clock; first step included)."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    sam = build_small_sam(SmallSamConfig(**arch))
    stamps = [time.perf_counter()]
    pretrain(sam, PretrainConfig(**cfg), on_step=lambda s, v: stamps.append(time.perf_counter()),
             log_every=1)
    return [b - a for a, b in zip(stamps[:-1], stamps[1:], strict=True)]


def _worker(rank: int, world: int, init_file: str, arch: dict, cfg: dict, seed: int,
            threads: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        t = step_times(arch, cfg, seed, threads)
        if rank == 0:
            Path(out).write_text(json.dumps(t))
    finally:
        dist.destroy_process_group()


def measure(processes: int, threads: int, arch: dict, cfg: dict, seed: int) -> list[float]:
    """Step seconds of one run of the variant (a spawned process group when ``processes > 1``)."""
    if processes == 1:
        return step_times(arch, cfg, seed, threads)
    with tempfile.TemporaryDirectory(prefix="sam_step_") as tmp:
        out = os.path.join(tmp, "times.json")
        os.environ["OMP_NUM_THREADS"] = str(threads)
        mp.spawn(_worker, args=(processes, os.path.join(tmp, "init"), arch, cfg, seed, threads,
                                out), nprocs=processes, join=True)
        return json.loads(Path(out).read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=40, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=10, help="steps dropped at the start of a run")
    p.add_argument("--rounds", type=int, default=3, help="runs per variant, interleaved")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/sam_step.json"))
    a = p.parse_args()
    params = load_params(ROOT / "params.yaml")
    seed = int(params["seed"])
    sp = params["sam_pretrain"]
    arch = asdict(SmallSamConfig(**sp["model"]))
    cfg = asdict(replace(PretrainConfig(**sp["train"], corpus_seed=seed),
                         steps=a.warmup + a.steps))
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    names = list(VARIANTS)
    for r in range(a.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        line = []
        for v in order:
            procs, threads, over = VARIANTS[v]
            t = measure(procs, threads, arch, {**cfg, **over}, seed)[a.warmup:]
            times[v].extend(t)
            line.append(f"{v} {1000 * statistics.median(t):.0f}")
        print(f"round {r}: median ms per step: " + ", ".join(line), flush=True)
    base = "1p x 2t"
    res = {v: {"processes": VARIANTS[v][0], "threads": VARIANTS[v][1],
               "images_per_step": VARIANTS[v][2].get("batch_images", cfg["batch_images"]),
               "prompts_per_image": VARIANTS[v][2].get("prompts_per_image",
                                                       cfg["prompts_per_image"]),
               "ms_per_step": round(1000 * min(t), 1),
               "median_ms_per_step": round(1000 * statistics.median(t), 1),
               "speedup_vs_1p_x_2t": round(min(times[base]) / min(t), 2),
               "median_speedup_vs_1p_x_2t": round(statistics.median(times[base])
                                                  / statistics.median(t), 2)}
           for v, t in times.items()}
    out = {"images_per_step": cfg["batch_images"], "prompts_per_image": cfg["prompts_per_image"],
           "steps": a.steps, "warmup": a.warmup, "rounds": a.rounds,
           "loadavg_before": [round(x, 2) for x in load_before],
           "loadavg_after": [round(x, 2) for x in os.getloadavg()], "variants": res}
    print(f"{'variant':16s} {'fastest ms':>10s} {'median ms':>10s} {'speed-up fastest':>17s} "
          f"{'median':>7s}  ({a.rounds} x {a.steps} steps each; load average "
          f"{load_before[0]:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    for v, r in res.items():
        print(f"{v:16s} {r['ms_per_step']:10.1f} {r['median_ms_per_step']:10.1f} "
              f"{r['speedup_vs_1p_x_2t']:17.2f} {r['median_speedup_vs_1p_x_2t']:7.2f}")
    write_json(a.out, out)


if __name__ == "__main__":
    main()
