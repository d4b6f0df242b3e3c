"""Wall seconds of stages with 1 and with 2 processes (issue 22): the figures behind the default
profile's ``runtime.nproc`` (training stages, through ``pipeline.launch``) and ``runtime.workers``
(per-image stages: Selective Search, the clue maps, prompts, SAM prompting; their outputs do not
depend on it).

    python benchmarks/stage_processes.py --workspace DIR [--rounds 2] [--procs 1 2] [--stages ...]

``DIR`` is a workspace whose inputs exist (a clone after ``dvc checkout`` or ``make repro``; the
stages rewrite their own outputs there, so not the repository you work in). Each stage runs as
DVC runs it, ``python -m pipeline.launch N -m pipeline.<stage> ...`` (a per-image stage:
``python -m pipeline.<stage> --params P``, ``P`` the workspace's params with
``runtime.workers: N``), in interleaved rounds (every
process count of a stage back to back, the order reversed every other round, so drift of the
machine's load falls on both), and the script prints the fastest and the median of each, the
speed-up of the fastest, and writes them as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml
from tqdm import tqdm

# (label, module, stage args): one row per stage kind of the default profile that can run
# under torchrun
STAGES = {
    "clues_train": ("pipeline.clues_train", []),
    "wsod@oicr-weaksam": ("pipeline.wsod", ["--method", "oicr", "--source", "weaksam"]),
    "wsod@mist-weaksam": ("pipeline.wsod", ["--method", "mist", "--source", "weaksam"]),
    "retrain_prelim@frcnn": ("pipeline.retrain_prelim",
                             ["--detector", "frcnn", "--pgt", "mist_weaksam_adaptive"]),
    "retrain_prelim@detr": ("pipeline.retrain_prelim",
                            ["--detector", "detr", "--pgt", "mist_weaksam_adaptive"]),
    "retrain@frcnn-drop": ("pipeline.retrain", ["--detector", "frcnn", "--pgt",
                                                "mist_weaksam_adaptive", "--variant", "drop"]),
    "retrain@detr-things90": ("pipeline.retrain", ["--detector", "detr", "--pgt",
                                                   "mist_weaksam_adaptive", "--variant",
                                                   "things90"]),
    "wsis@mask_rcnn": ("pipeline.wsis", ["--model", "mask_rcnn"]),
    "wsis@mask2former": ("pipeline.wsis", ["--model", "mask2former"]),
}
# per-image stages: N worker processes from runtime.workers (one process of the stage's own pool)
WORKER_STAGES = {
    "proposals_ss": "pipeline.proposals_ss",
    "clues": "pipeline.clues",
    "prompts": "pipeline.prompts",
    "proposals": "pipeline.proposals",
}
# checkpoints a finished run would resume from (a second round would then train nothing)
RESUMED = {"pipeline.wsis": lambda args: [f"checkpoints/wsis_{args[-1]}"],
           "pipeline.clues_train": lambda args: ["checkpoints/clues_train"]}


def workers_params(workspace: Path, n: int) -> Path:
    """The workspace's params with ``runtime.workers: n``, written beside them."""
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["runtime"]["workers"] = n
    path = workspace / f".bench_params_workers{n}.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def command(workspace: Path, stage: str, nproc: int) -> list[str]:
    """The stage's command with ``nproc`` processes, as DVC would run it."""
    if stage in WORKER_STAGES:
        return [sys.executable, "-m", WORKER_STAGES[stage], "--params",
                workers_params(workspace, nproc).name]
    module, args = STAGES[stage]
    return [sys.executable, "-m", "pipeline.launch", str(nproc), "-m", module, *args]


def run_once(workspace: Path, stage: str, nproc: int) -> float:
    """Wall seconds of one stage run with ``nproc`` processes (raises if it fails)."""
    if stage in STAGES:
        module, args = STAGES[stage]
        for path in RESUMED.get(module, lambda a: [])(args):
            shutil.rmtree(workspace / path, ignore_errors=True)
    cmd = command(workspace, stage, nproc)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=workspace, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workspace", type=Path, required=True)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--stages", nargs="+", default=list(STAGES),
                   choices=[*STAGES, *WORKER_STAGES])
    p.add_argument("--out", type=Path, default=Path("benchmarks/stage_processes.json"))
    a = p.parse_args()
    times: dict[str, dict[int, list[float]]] = {s: {n: [] for n in a.procs} for s in a.stages}
    runs = [(r, s) for r in range(a.rounds) for s in a.stages]
    for r, stage in tqdm(runs, desc="rounds x stages", unit="stage"):
        for n in (a.procs if r % 2 == 0 else list(reversed(a.procs))):
            times[stage][n].append(run_once(a.workspace, stage, n))
    rows = {}
    print(f"{'stage':24s} " + " ".join(f"{f'{n} proc fastest / median':>26s}" for n in a.procs)
          + "  speed-up")
    for stage, by_n in times.items():
        best = {n: min(v) for n, v in by_n.items()}
        med = {n: statistics.median(v) for n, v in by_n.items()}
        speed = best[a.procs[0]] / best[a.procs[-1]]
        rows[stage] = {"seconds": by_n, "fastest": best, "median": med, "speedup": speed}
        print(f"{stage:24s} " + " ".join(f"{best[n]:>14.1f} / {med[n]:>9.1f}" for n in a.procs)
              + f"  {speed:7.2f}x")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"rounds": a.rounds, "procs": a.procs, "stages": rows},
                                indent=1) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
