"""Stage ``retrain``: one table row of the retraining (paper Tables 1, 5, 9, 10, 11): continue a
preliminary training with (or, for ``nodrop``, without) RoI / query drop, then detect and
evaluate on test.

    python -m pipeline.retrain --detector {frcnn,detr} --pgt PGT --variant VARIANT

The continuation loads ``retrain/prelim_<detector>_<pgt>/model.pt`` (model, optimiser, epoch
P - 1) and trains epochs [P, T) of the same schedule with drop active when the variant says so
(thresholds from ``retrain.<detector>.variants.<variant>``), so every row of a (detector, PGT)
shares one preliminary run, as the paper's schedule does (drop starts after it).
Outputs (docs/contracts.md "Retraining"):
- ``retrain/<detector>_<pgt>_<variant>/model.pt`` (weights and class order),
  ``detections_test.json`` (COCO results);
- ``metrics/retrain_<detector>_<pgt>_<variant>.json``: ap50 (VOC07 11-point, test, %),
  ap50_area, coco {AP, AP50, AP75}, ap50_per_class, drop statistics, train_seconds,
  seconds_per_epoch, peak_rss_mib;
- ``dvclive/retrain_<detector>_<pgt>_<variant>/``: per-epoch losses and drop shares.
``checkpoints/retrain_<run>/last.pt`` (DVC ``persist``) resumes a killed run. ``torchrun``
trains with DDP; rank 0 detects, evaluates and writes.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from pipeline.common import load_params, set_threads, setup_logging, stage_args, training_seed
from pipeline.launch import processes_metrics
from pipeline.retrain_common import (
    DETECTORS,
    PGTS,
    TEST,
    build_model,
    check_store,
    load_train_data,
    pgt_path,
    prelim_epochs,
    prelim_name,
    run_name,
    train_config,
    tta_options,
    uses_features,
    variant_cfg,
)
from weaksam.data.index import load_index
from weaksam.data.weak import WeakView
from weaksam.engine.checkpoint import fingerprint, resume_state
from weaksam.engine.live import LiveHook
from weaksam.engine.world import join_process_group
from weaksam.errors import InputError, TrainingError
from weaksam.eval.coco import coco_ap
from weaksam.eval.voc import evaluate_voc
from weaksam.retrain.features import load_features
from weaksam.retrain.infer import detect_features, detect_images, detect_images_tta
from weaksam.retrain.train import train_detector
from weaksam.utils.atomic import atomic_path, write_json
from weaksam.utils.checkpoint import read_checkpoint
from weaksam.utils.device import resolve_device
from weaksam.utils.seed import seed_everything

TORCHRUN = True  # pipeline.launch may start it under torchrun (runtime.nproc.retrain)


def main() -> None:
    args = stage_args(__doc__, [("--detector", {"choices": DETECTORS, "required": True}),
                                ("--pgt", {"choices": PGTS, "required": True}),
                                ("--variant", {"required": True}),
                                ("--stop-after", {"type": int, "default": None,
                                                  "help": "stop after this epoch (testing)"})])
    params = load_params(args.params)
    name = run_name(args.detector, args.pgt, args.variant)
    log = setup_logging(f"retrain.{name}")
    set_threads(params)
    seed_everything(training_seed(params))
    device = resolve_device(params["runtime"].get("device", "cpu"))
    rank = join_process_group(device)
    variant = variant_cfg(args.detector, args.variant, params)

    targets, source, view = load_train_data(args.detector, args.pgt, params)
    model = build_model(args.detector, view.num_classes, params, variant)
    tta = tta_options(args.detector, model, params)  # checked before training
    sched = train_config(args.detector, params)
    p = prelim_epochs(args.detector, params)
    prelim = Path("retrain") / prelim_name(args.detector, args.pgt) / "model.pt"
    ckpt = Path("checkpoints") / f"retrain_{name}" / "last.pt"
    fp = fingerprint((name, training_seed(params), params["retrain"][args.detector],
                      params["retrain"]["features"]), files=(prelim, pgt_path(args.pgt)))
    resume = read_checkpoint(prelim, "preliminary-training checkpoint")
    if int(resume.get("epoch", -1)) != p - 1:
        raise InputError(prelim, f"stops after epoch {resume.get('epoch')}, the schedule's "
                                 f"preliminary training after epoch {p - 1}: rerun retrain_prelim")
    state = resume_state(ckpt, fp, "retrain checkpoint")
    own = state is not None and int(state["epoch"]) < sched.epochs - 1
    if own:
        resume = state
        log.info("%s: resuming after epoch %d", ckpt, state["epoch"])
    drop_on = bool(variant.get("drop", False))
    live = LiveHook(f"dvclive/retrain_{name}", resume=own, rank=rank)

    stop = sched.epochs if args.stop_after is None else min(sched.epochs, args.stop_after + 1)
    timing = train_detector(model, source, sched, drop_start_epoch=p if drop_on else None,
                            stop_epoch=stop, checkpoint=ckpt, fingerprint=fp, resume=resume,
                            on_epoch=live, device=device)
    live.close()
    if rank != 0:
        return
    if stop < sched.epochs:
        log.info("stopped after epoch %d as asked (no outputs written)", stop - 1)
        return

    out_dir = Path("retrain") / name
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "model.pt") as tmp:
        torch.save({"model": model.state_dict(), "category_ids": list(view.category_ids),
                    "detector": args.detector, "variant": variant}, tmp)
    t0, c0 = time.time(), time.process_time()
    test_index = load_index(TEST)
    test_view = WeakView(test_index)
    if tta is not None:  # the release's TEST.AUG / dinotta: scales x flips, per-class NMS
        pos = {iid: i for i, iid in enumerate(test_view.image_ids)}
        dets = detect_images_tta(model, test_view.image_ids, lambda iid: test_view.read(pos[iid]),
                                 view.category_ids, device=device, **tta)
    elif uses_features(args.detector, params):
        store = load_features("retrain_features/test.pt")
        check_store(store, test_view, "retrain_features/test.pt")
        sizes = {it.image_id: (it.width, it.height) for it in test_view}
        dets = detect_features(model, store, sizes, view.category_ids, device=device)
    else:
        cfg = params["retrain"][args.detector]["model"]
        pos = {iid: i for i, iid in enumerate(test_view.image_ids)}
        dets = detect_images(model, test_view.image_ids, lambda iid: test_view.read(pos[iid]),
                             view.category_ids, short_side=int(cfg["test_scale"]),
                             max_size=int(cfg["max_size"]), device=device)
    write_json(out_dir / "detections_test.json", dets, indent=None)
    infer_seconds, infer_cpu = time.time() - t0, time.process_time() - c0

    # evaluation: the test ground truth is read only here, after training
    gt = test_index.to_json()
    voc = evaluate_voc(gt, dets, iou_thr=0.5, use_07_metric=True)
    voc_area = evaluate_voc(gt, dets, iou_thr=0.5, use_07_metric=False)
    drop_epochs = [h for h in timing["history"] if h["epoch"] >= p] if drop_on else []
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    metrics = {
        "ap50": voc["map"], "ap50_area": voc_area["map"], "coco": coco_ap(gt, dets),
        "ap50_per_class": voc["ap_per_class"],
        "drop": {
            "active": drop_on,
            "start_epoch": p,
            "thresholds": {k: v for k, v in variant.items() if k != "drop"},
            # mean over the drop epochs of the share of RoIs / queries dropped (all, foreground)
            "share": _mean(drop_epochs, "drop_share"),
            "share_foreground": _mean(drop_epochs, "drop_share_fg"),
        },
        "epochs": sched.epochs, "prelim_epochs": p,
        "pgt_boxes": targets.num_boxes,
        "final_losses": {k: round(v, 5) for k, v in timing["history"][-1].items()
                         if k != "epoch"},
        "train_seconds": round(timing["train_seconds"], 2),
        "seconds_per_epoch": round(timing["seconds_per_epoch"], 2),
        "train_cpu_seconds": round(timing["train_cpu_seconds"], 2),
        "infer_seconds": round(infer_seconds, 2), "infer_cpu_seconds": round(infer_cpu, 2),
        "peak_rss_mib": round(peak, 1),
        **processes_metrics(),
    }
    write_json(Path("metrics") / f"retrain_{name}.json", metrics)
    log.info("%s: AP50 %.2f, drop %s", name, metrics["ap50"] or 0.0,
             json.dumps(metrics["drop"]))


def _mean(rows: list[dict[str, float]], key: str) -> float | None:
    vals = [r[key] for r in rows if key in r]
    return round(sum(vals) / len(vals), 5) if vals else None


if __name__ == "__main__":
    try:
        main()
    except (InputError, TrainingError) as e:
        sys.exit(f"retrain: {e}")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
