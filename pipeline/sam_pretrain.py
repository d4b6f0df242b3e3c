"""Stage ``sam_pretrain``: pre-train the default profile's small SAM on the class-agnostic
corpus (the analogue of SAM's SA-1B training, DESIGN.md "Models in the default profile").

Writes the checkpoint ``models/sam_small.pt``, ``metrics/sam_pretrain.json`` (held-out mask IoU
for a point prompt and a box prompt, steps, seconds, parameters) and DVCLive curves under
``dvclive/sam_pretrain``. The paper profile skips this stage's output and points ``sam.model`` /
``sam.checkpoint`` at an official checkpoint instead. Runs on ``sam.device`` when set, else
``runtime.device`` (the same rule as the proposals stage).
"""

from __future__ import annotations

import time
from pathlib import Path

from dvclive import Live
from pipeline.common import load_params, set_threads, setup_logging, stage_args
from weaksam.sam.checkpoint import save_small_sam
from weaksam.sam.model import SmallSamConfig, build_small_sam, count_parameters
from weaksam.sam.train import PretrainConfig, evaluate, pretrain
from weaksam.utils.atomic import write_json
from weaksam.utils.device import resolve_device
from weaksam.utils.seed import seed_everything


def main() -> None:
    args = stage_args(__doc__.splitlines()[0])
    params = load_params(args.params)
    log = setup_logging("sam_pretrain")
    set_threads(params)
    seed = int(params["seed"])
    seed_everything(seed)
    p = params["sam_pretrain"]
    arch = SmallSamConfig(**p["model"])
    tr = p["train"]
    cfg = PretrainConfig(**tr, corpus_seed=seed)
    device = resolve_device(params["sam"]["device"] or params["runtime"]["device"])
    sam = build_small_sam(arch).to(device)
    n_params = count_parameters(sam)
    log.info("small SAM: %d parameters, %d steps", n_params, cfg.steps)
    t0 = time.perf_counter()
    with Live(p["live_dir"], save_dvc_exp=False, dvcyaml=None, report=None) as live:

        def on_step(step: int, vals: dict[str, float]) -> None:
            live.step = step
            for k, v in vals.items():
                live.log_metric(f"train/{k}", v)

        last = pretrain(sam, cfg, on_step=on_step, log_every=int(p["log_every"]))
        train_seconds = time.perf_counter() - t0
        # held-out corpus: a seed stream training never draws from
        ev = evaluate(sam, seed=seed + int(p["eval_seed_offset"]), num_images=int(p["eval_images"]),
                      radius_range=tuple(cfg.corpus_radius))
        live.summary = {}
    save_small_sam(Path(p["checkpoint"]), sam, arch, extra={"steps": cfg.steps})
    write_json("metrics/sam_pretrain.json", {
        "miou_point": ev["miou_point"],
        "miou_box": ev["miou_box"],
        "eval_masks": ev["num_masks"],
        "steps": cfg.steps,
        "seconds": train_seconds,
        "num_parameters": n_params,
        "final_train_loss": last.get("loss"),
    })
    log.info("miou point %.3f box %.3f in %.0f s", ev["miou_point"], ev["miou_box"], train_seconds)


if __name__ == "__main__":
    main()
