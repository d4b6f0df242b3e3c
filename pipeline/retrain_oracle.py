"""Stage ``retrain_oracle``: one reference row of "What limits retraining" (issue 24 item 3):
the retraining detector of a table row trained on an oracle training set and evaluated on test.

    python -m pipeline.retrain_oracle --detector {frcnn,detr} --kind {gt,tp,missed}

Same detector, schedule and seed as the ``retrain`` stage's ``nodrop`` rows (params
``retrain.<detector>``), trained in one run over all T epochs without drop (the ``nodrop`` row
trains the same T epochs in two runs, ``retrain_prelim`` and its continuation; the loop resumes
exactly: ``tests/retrain/test_train.py::test_resume_after_a_crash_equals_an_uninterrupted_run``),
so one run per row and no preliminary stage, on
``oracle/pgt_{kind}/trainval.json`` (stage ``oracle_pgt``: ground-truth boxes, the PGT's true
positives only, or the PGT plus the objects it missed). Reference only: no stage of the method
reads its outputs (``tests/pipeline/test_oracle_isolation.py``).
Outputs:
- ``oracle/{detector}_{kind}/model.pt`` (weights and class order), ``detections_test.json``
  (COCO results);
- ``metrics/oracle_{detector}_{kind}.json``: ap50 (VOC07 11-point, test, %), ap50_area, coco
  {AP, AP50, AP75}, ap50_per_class, train_boxes, epochs, seconds, peak_rss_mib.
``checkpoints/oracle_{detector}_{kind}/last.pt`` (DVC ``persist``) resumes a killed run. Under
``torchrun`` it trains with DDP as the ``retrain`` stage; rank 0 detects, evaluates and writes.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from pipeline.common import load_params, set_threads, setup_logging, stage_args, training_seed
from pipeline.launch import processes_metrics
from pipeline.oracle_pgt import oracle_pgt_path
from pipeline.retrain_common import (
    DETECTORS,
    TEST,
    build_model,
    check_store,
    load_train_data,
    train_config,
    tta_options,
    uses_features,
)
from weaksam.data.index import load_index
from weaksam.data.weak import WeakView
from weaksam.engine.checkpoint import fingerprint, resume_state
from weaksam.engine.world import join_process_group
from weaksam.errors import InputError, TrainingError
from weaksam.eval.coco import coco_ap
from weaksam.eval.voc import evaluate_voc
from weaksam.pgt.oracle import KINDS
from weaksam.retrain.features import load_features
from weaksam.retrain.infer import detect_features, detect_images, detect_images_tta
from weaksam.retrain.train import train_detector
from weaksam.utils.atomic import atomic_path, write_json
from weaksam.utils.device import resolve_device
from weaksam.utils.readers import read_json
from weaksam.utils.seed import seed_everything
from weaksam.weights import require_weights

TORCHRUN = True  # pipeline.launch may start it under torchrun (runtime.nproc.retrain)


def oracle_name(detector: str, kind: str) -> str:
    return f"{detector}_{kind}"


def detect_test(model: torch.nn.Module, detector: str, params: dict, category_ids,
                device: torch.device) -> tuple[list[dict], WeakView]:
    """Test detections (COCO results) as the ``retrain`` stage makes them: TTA when
    ``retrain.tta.<detector>.scales``, else the cached maps or one test scale."""
    test_view = WeakView(load_index(TEST))
    tta = tta_options(detector, model, params)
    pos = {iid: i for i, iid in enumerate(test_view.image_ids)}
    if tta is not None:
        dets = detect_images_tta(model, test_view.image_ids,
                                 lambda iid: test_view.read(pos[iid]), category_ids,
                                 device=device, **tta)
    elif uses_features(detector, params):
        store = load_features("retrain_features/test.pt")
        check_store(store, test_view, "retrain_features/test.pt")
        sizes = {it.image_id: (it.width, it.height) for it in test_view}
        dets = detect_features(model, store, sizes, category_ids, device=device)
    else:
        cfg = params["retrain"][detector]["model"]
        dets = detect_images(model, test_view.image_ids, lambda iid: test_view.read(pos[iid]),
                             category_ids, short_side=int(cfg["test_scale"]),
                             max_size=int(cfg["max_size"]), device=device)
    return dets, test_view


def write_empty(detector: str, kind: str, train_path: Path, log) -> None:
    """The outputs of a row whose training set has no box: no model is trained; the model file
    says so, the detections are empty and every AP is null (the report prints "undefined")."""
    name = oracle_name(detector, kind)
    log.warning("%s: no box, nothing to train: %s written with AP50 null", train_path, name)
    out_dir = Path("oracle") / name
    out_dir.mkdir(parents=True, exist_ok=True)
    # every output dvc.yaml declares exists (the persisted checkpoint folder stays empty)
    (Path("checkpoints") / f"oracle_{name}").mkdir(parents=True, exist_ok=True)
    view = WeakView(load_index(TEST))
    with atomic_path(out_dir / "model.pt") as tmp:
        torch.save({"model": None, "category_ids": list(view.category_ids),
                    "detector": detector, "kind": kind}, tmp)
    write_json(out_dir / "detections_test.json", [], indent=None)
    write_json(Path("metrics") / f"oracle_{name}.json", {
        "ap50": None, "ap50_area": None, "coco": {"AP": None, "AP50": None, "AP75": None},
        "ap50_per_class": dict.fromkeys(view.category_names), "kind": kind,
        "detector": detector, "train_boxes": 0, "train_images": 0, "epochs": 0,
        "train_seconds": 0.0, "seconds_per_epoch": 0.0, "train_cpu_seconds": 0.0,
        "infer_seconds": 0.0, "peak_rss_mib": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        **processes_metrics()})


def main() -> None:
    args = stage_args(__doc__.splitlines()[0],
                      [("--detector", {"choices": DETECTORS, "required": True}),
                       ("--kind", {"choices": KINDS, "required": True})])
    params = load_params(args.params)
    name = oracle_name(args.detector, args.kind)
    log = setup_logging(f"retrain_oracle.{name}")
    set_threads(params)
    require_weights(params, f"retrain.{args.detector}.model.resnet50_checkpoint")
    seed_everything(training_seed(params))
    device = resolve_device(params["runtime"].get("device", "cpu"))
    rank = join_process_group(device)
    train_path = oracle_pgt_path(args.kind)
    if not read_json(train_path, "oracle training set", want_object=True).get("annotations"):
        # e.g. a PGT without any true positive (tiny runs): nothing to train, AP50 undefined
        if rank == 0:
            write_empty(args.detector, args.kind, train_path, log)
        return
    targets, source, view = load_train_data(args.detector, "", params, path=train_path)
    log.info("%s: %d boxes on %d of %d images", train_path, targets.num_boxes, len(source),
             len(view))
    model = build_model(args.detector, view.num_classes, params, None)
    sched = train_config(args.detector, params)
    ckpt = Path("checkpoints") / f"oracle_{name}" / "last.pt"
    fp = fingerprint((name, training_seed(params), params["retrain"][args.detector],
                      params["retrain"]["features"], params["backbone_pretrain"]),
                     files=(train_path,))
    resume = resume_state(ckpt, fp, "oracle checkpoint")
    if resume is not None and int(resume["epoch"]) >= sched.epochs - 1:  # finished
        resume = None
    if resume is not None:
        log.info("%s: resuming after epoch %d", ckpt, resume["epoch"])
    timing = train_detector(model, source, sched, drop_start_epoch=None, stop_epoch=sched.epochs,
                            checkpoint=ckpt, fingerprint=fp, resume=resume, device=device)
    if rank != 0:
        return
    out_dir = Path("oracle") / name
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "model.pt") as tmp:
        torch.save({"model": model.state_dict(), "category_ids": list(view.category_ids),
                    "detector": args.detector, "kind": args.kind}, tmp)
    t0 = time.time()
    dets, test_view = detect_test(model, args.detector, params, view.category_ids, device)
    write_json(out_dir / "detections_test.json", dets, indent=None)
    infer_seconds = time.time() - t0
    # evaluation: the test ground truth is read only here, after training
    gt = load_index(TEST).to_json()
    voc = evaluate_voc(gt, dets, iou_thr=0.5, use_07_metric=True)
    voc_area = evaluate_voc(gt, dets, iou_thr=0.5, use_07_metric=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    metrics = {
        "ap50": voc["map"], "ap50_area": voc_area["map"], "coco": coco_ap(gt, dets),
        "ap50_per_class": voc["ap_per_class"], "kind": args.kind, "detector": args.detector,
        "train_boxes": targets.num_boxes, "train_images": len(source),
        "epochs": sched.epochs,
        "final_losses": {k: round(v, 5) for k, v in timing["history"][-1].items()
                         if k != "epoch"},
        "train_seconds": round(timing["train_seconds"], 2),
        "seconds_per_epoch": round(timing["seconds_per_epoch"], 2),
        "train_cpu_seconds": round(timing["train_cpu_seconds"], 2),
        "infer_seconds": round(infer_seconds, 2), "peak_rss_mib": round(peak, 1),
        **processes_metrics(),
    }
    write_json(Path("metrics") / f"oracle_{name}.json", metrics)
    log.info("%s: AP50 %.2f on %d training boxes", name, metrics["ap50"] or 0.0,
             targets.num_boxes)


if __name__ == "__main__":
    try:
        main()
    except (InputError, TrainingError) as e:
        sys.exit(f"retrain_oracle: {e}")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
