"""Stage ``wsod``: train a weakly-supervised detector (OICR or MIST) on one proposal source and
evaluate it (paper Tables 1, 4, 6, 7).

    python -m pipeline.wsod --method {oicr,mist} \
        --source {ss,weaksam,dense,dense_fine,dense_fine_coarse}

Inputs: ``backbone/model.pt`` (small CNN, default profile) or ``wsod.vgg16_checkpoint``;
``data/annotations/{trainval,test}.json`` (training reads trainval only through ``WeakView``:
image-level labels, never a box); ``proposals/ss/{split}.npz`` for ``ss``, else
``proposals/weaksam/{split}.npz`` filtered to the Table 4 prompt sources of ``--source``.
Outputs (docs/contracts.md, "wsod"):
- ``wsod/{method}_{source}/model.pt`` (checkpoint, rewritten atomically after every epoch),
  ``detections_{trainval,test}.json`` (COCO results);
- ``metrics/wsod_{method}_{source}.json``: ap50 (VOC07 11-point, test), ap50_area (VOC area
  AP, test), corloc (trainval), coco {AP, AP50, AP75} (test), per-class AP and CorLoc,
  train_seconds, seconds_per_epoch, peak_rss_mib, peak_gpu_mib, plus the proposal counts;
- ``dvclive/wsod_{method}_{source}/``: per-epoch loss curves (DVCLive step = epoch);
- ``checkpoints/wsod_{method}_{source}/last.pt`` (DVC ``persist``): the training state after
  every epoch (``weaksam.wsod.train``), keyed by a fingerprint of the params ``wsod``,
  ``backbone_pretrain``, the seed, the process count and the files of :func:`state_inputs`: a
  killed run resumes after its last epoch, its curves continuing, and ends with the bytes of an
  unbroken run; a finished or stale state is ignored. ``--stop-after E`` stops after epoch E
  (tests) without writing detections or metrics.
Device: ``wsod.device`` if set, else ``runtime.device`` (``weaksam.utils.device``); model,
images, boxes and labels go there. Distributed: ``torchrun --nproc_per_node N -m pipeline.wsod
...`` trains with DDP (``weaksam.engine.world.join_process_group``: NCCL on CUDA, gloo on the
CPU), each process on its shard of every global batch (the method's batch size over all
processes); rank 0 then runs inference and writes every output.
Per-method settings: ``wsod.<method>.<key>`` for the schedule and optimiser keys (schedule,
epochs, iterations, lr_steps, lr_gamma, warmup_iters, warmup_factor, batch_size, optimizer, lr,
weight_decay, bias_lr_factor, bias_weight_decay, refine_lr_mult, train_scales, test_scales);
null means ``wsod.<key>``. ``wsod.<method>.recipe`` names an entry of
``wsod.<method>.recipes`` whose keys (those above and MIST's ``cdb_*``) take precedence: the
paper profiles keep both WeakSAM's release recipe and the original method's (issue 23).
The resolved training keys become a ``WsodTrainConfig`` (:func:`train_config`): an unknown key
of ``wsod.<method>`` or of its recipe stops the stage, naming it.
"""

from __future__ import annotations

import dataclasses
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from pipeline.common import load_params, set_threads, setup_logging, stage_args, training_seed
from pipeline.launch import processes_metrics
from weaksam.config import from_section
from weaksam.data.index import load_index
from weaksam.data.weak import WeakView
from weaksam.engine.checkpoint import fingerprint
from weaksam.engine.live import LiveHook
from weaksam.engine.world import join_process_group, world
from weaksam.errors import InputError
from weaksam.eval.coco import coco_ap
from weaksam.eval.corloc import corloc
from weaksam.eval.voc import evaluate_voc
from weaksam.proposals.sources import TABLE4_VARIANTS
from weaksam.proposals.store import ProposalSet, load_proposals
from weaksam.utils.atomic import write_json
from weaksam.utils.boxes import clip_boxes
from weaksam.utils.device import resolve_device
from weaksam.utils.seed import seed_everything
from weaksam.vision.backbones import build_backbone, load_vgg16_fc
from weaksam.weights import require_weights
from weaksam.wsod.infer import detect_split_distributed
from weaksam.wsod.mist import MIST
from weaksam.wsod.oicr import OICR
from weaksam.wsod.recipes import method_setting
from weaksam.wsod.train import (
    FeatureCache,
    TrainImage,
    WsodTrainConfig,
    resumable,
    train_wsod,
)

TORCHRUN = True  # pipeline.launch may start it under torchrun (runtime.nproc.wsod)
METHODS = ("oicr", "mist")
SOURCES = ("ss", "weaksam", "dense", "dense_fine", "dense_fine_coarse")


def load_source(source: str, split: str, root: Path = Path("proposals")) -> ProposalSet:
    """Proposals of ``source`` on ``split``: Selective Search, or WeakSAM restricted to the prompt
    sources of a Table 4 variant."""
    if source == "ss":
        return load_proposals(root / "ss" / f"{split}.npz")
    props = load_proposals(root / "weaksam" / f"{split}.npz")
    return props.filter_sources(TABLE4_VARIANTS[source])


PROPOSAL_STYLES = ("plain", "wetectron")


def prepare_boxes(props: ProposalSet, image_id: int, width: int, height: int, cap: int,
                  min_size: float, style: str = "plain") -> np.ndarray:
    """(R, 4) float32 proposals of one image, the ``cap`` highest-scoring kept (stable: the
    file's order on ties) after filtering by ``style``:

    - ``plain``: clipped to [0, W] x [0, H], at least ``min_size`` px on each side
      (x2 - x1, y2 - y1).
    - ``wetectron``: as the release's MIST reads its proposal file (WeakSAM
      ``roi_generation/segment-anything/segment_anything/utils/pkl_trans.py`` casts the boxes to
      ``uint16``; ``baselines/MIST/wetectron/data/datasets/voc.py`` then keeps the first of
      identical boxes, clips to [0, W - 1] x [0, H - 1] dropping empty ones, and
      ``remove_small_boxes`` keeps sides x2 - x1 + 1 >= ``min_size``, 20 there)."""
    if style not in PROPOSAL_STYLES:
        raise ValueError(f"proposal style must be one of {PROPOSAL_STYLES}, got {style!r}")
    p = props.images.get(image_id)
    if p is None or len(p) == 0:
        return np.zeros((0, 4), np.float32)
    scores = np.asarray(p.scores, np.float64)
    if style == "plain":
        b = clip_boxes(p.boxes, width, height)
        ok = ((b[:, 2] - b[:, 0]) >= min_size) & ((b[:, 3] - b[:, 1]) >= min_size)
    else:
        b = np.floor(np.clip(np.asarray(p.boxes, np.float64), 0, 65535))
        _, first = np.unique(b, axis=0, return_index=True)
        uniq = np.zeros(len(b), bool)
        uniq[first] = True
        b = np.stack([np.minimum(b[:, 0], width - 1), np.minimum(b[:, 1], height - 1),
                      np.minimum(b[:, 2], width - 1), np.minimum(b[:, 3], height - 1)], 1)
        ok = (uniq & (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
              & ((b[:, 2] - b[:, 0] + 1) >= min_size) & ((b[:, 3] - b[:, 1] + 1) >= min_size))
    order = np.argsort(-scores[ok], kind="stable")[:cap]
    return b[ok][order].astype(np.float32)


def stage_device(params: dict[str, Any]) -> torch.device:
    """The stage's device: ``wsod.device`` when set, else ``runtime.device``."""
    return resolve_device(params["wsod"].get("device") or params["runtime"]["device"])


def build_model(method: str, num_classes: int, params: dict[str, Any]) -> torch.nn.Module:
    """The OICR or MIST network of params ``wsod`` (backbone weights from its checkpoint; with
    VGG16 and ``wsod.vgg16_fc`` the RoI head's fc6 / fc7 too)."""
    w, bp = params["wsod"], params["backbone_pretrain"]
    if w["backbone"] == "small_cnn":
        backbone = build_backbone("small_cnn", checkpoint="backbone/model.pt",
                                  widths=bp["widths"], stem=int(bp["stem"]),
                                  convs=int(bp["convs"]))
    else:
        backbone = build_backbone(w["backbone"], checkpoint=w["vgg16_checkpoint"],
                                  dilated=bool(w["dilated_conv5"]),
                                  frozen_blocks=int(w["frozen_conv_blocks"]))
    m = w[method]
    common = dict(roi_op=w["roi_op"], roi_size=int(w["roi_size"]),
                  roi_sampling=int(w["roi_sampling"]), hidden=int(w["hidden"]),
                  dropout=float(w["dropout"]), refine_times=int(w["refine_times"]),
                  fg_iou=float(w["fg_iou"]), bg_ignore_iou=float(w["bg_ignore_iou"]),
                  freeze_backbone=bool(w["freeze_backbone"]),
                  mil_reduction=m["mil_reduction"],
                  first_refine_weight=float(m["first_refine_weight"]))
    if method == "oicr":
        model = OICR(backbone, num_classes, **common)
    else:
        model = MIST(backbone, num_classes, top_p=float(m["top_p"]),
                     spatial_iou=float(m["spatial_iou"]), reg_weight=float(m["reg_weight"]),
                     reg_beta=float(m["reg_beta"]), cdb=bool(m["cdb"]),
                     cdb_block=int(m["cdb_block"]), cdb_rate=float(m["cdb_rate"]),
                     cdb_temperature=float(m["cdb_temperature"]), cdb_hard=bool(m["cdb_hard"]),
                     cdb_net=m["cdb_net"], **common)
    if w["backbone"] == "vgg16" and w["vgg16_checkpoint"] and w["vgg16_fc"]:
        load_vgg16_fc(model.roi_head.fc, w["vgg16_checkpoint"])
    return model


# keys of ``wsod.<method>`` (and of its recipes) that are not training settings: the recipe
# choice, the proposals' and inference's keys, the model's (``build_model``)
NOT_TRAIN_KEYS = ("recipe", "recipes", "max_proposals", "min_proposal_size", "proposal_style",
                  "test_scales", "test_flip", "mil_reduction", "first_refine_weight", "top_p",
                  "spatial_iou", "reg_weight", "reg_beta", "cdb", "cdb_block", "cdb_rate",
                  "cdb_temperature", "cdb_hard", "cdb_net")


def train_settings(w: dict[str, Any], method: str) -> dict[str, Any]:
    """The resolved training settings of ``method`` (``method_setting``: recipe, then
    ``wsod.<method>``, then ``wsod``): every key of ``wsod.<method>`` and of its recipe except
    :data:`NOT_TRAIN_KEYS`, and each :class:`WsodTrainConfig` field that ``wsod`` has. A key
    that is no field keeps its raw value, so :func:`train_config` names it."""
    m = w[method]
    fields = {f.name for f in dataclasses.fields(WsodTrainConfig)}
    recipe = (m.get("recipes") or {}).get(m.get("recipe")) or {}
    keys = [k for k in (*m, *recipe, *(f for f in fields if f in w)) if k not in NOT_TRAIN_KEYS]
    return {k: method_setting(w, method, k) if k in fields else m.get(k, recipe.get(k))
            for k in dict.fromkeys(keys)}


def train_config(w: dict[str, Any], method: str, where: str) -> WsodTrainConfig:
    """:class:`WsodTrainConfig` of ``method`` from params ``wsod`` (``w``): its
    :func:`train_settings`; an unknown key of ``wsod.<method>`` or of its recipe is a
    ``ConfigError`` naming it and ``where``."""
    return from_section(WsodTrainConfig, train_settings(w, method), where)


def main() -> None:
    args = stage_args(__doc__, [("--method", {"choices": METHODS, "required": True}),
                                ("--source", {"choices": SOURCES, "required": True}),
                                ("--stop-after", {"type": int, "default": None,
                                                  "help": "stop after this epoch (testing)"})])
    params = load_params(args.params)
    log = setup_logging(f"wsod.{args.method}_{args.source}")
    set_threads(params)
    require_weights(params, "wsod.vgg16_checkpoint")  # before the images are read
    if args.method == "oicr" and args.source not in ("ss", "weaksam"):
        log.warning("Table 4 variants are defined for MIST; running OICR on %s anyway",
                    args.source)
    w = params["wsod"]
    device = stage_device(params)
    rank = join_process_group(device)
    seed = training_seed(params)
    seed_everything(seed)
    name = f"{args.method}_{args.source}"
    out_dir = Path("wsod") / name
    out_dir.mkdir(parents=True, exist_ok=True)
    cap = int(method_setting(w, args.method, "max_proposals"))
    min_size = float(method_setting(w, args.method, "min_proposal_size"))
    style = str(method_setting(w, args.method, "proposal_style"))

    train_view = WeakView(load_index("data/annotations/trainval.json"))
    test_index = load_index("data/annotations/test.json")
    props = {s: load_source(args.source, s) for s in ("trainval", "test")}
    boxes = {}
    for split, view in (("trainval", train_view), ("test", WeakView(test_index))):
        boxes[split] = {it.image_id: prepare_boxes(props[split], it.image_id, it.width,
                                                   it.height, cap, min_size, style)
                         for it in view}
    items = [TrainImage(it.image_id, train_view.read(i), it.labels, boxes["trainval"][it.image_id])
             for i, it in enumerate(train_view)]

    model = build_model(args.method, train_view.num_classes, params).to(device)
    cache = FeatureCache(model.backbone, enabled=bool(w["freeze_backbone"]))

    def setting(key: str) -> Any:
        return method_setting(w, args.method, key)

    cfg = train_config(w, args.method, f"{args.params} wsod.{args.method}")
    state_file = Path("checkpoints") / f"wsod_{name}" / "last.pt"
    fp = fingerprint({"name": name, "seed": seed, "wsod": w, "processes": world()[1],
                      "backbone": params["backbone_pretrain"]},
                     files=state_inputs(args.source, w["backbone"]))
    resume = resumable(state_file, fp)
    if resume is None and state_file.is_file():
        log.info("%s: finished, or of other params or inputs: training from the start",
                 state_file)
    # DVCLive step = epoch: a resumed run's curves continue those of the epochs before
    live = LiveHook(f"dvclive/wsod_{name}", resume=resume is not None, rank=rank)
    timing = train_wsod(model, items, cfg, seed=seed, checkpoint=out_dir / "model.pt",
                        state_file=state_file, fingerprint=fp, resume=resume,
                        stop_after=args.stop_after, on_epoch=live, cache=cache, device=device)
    live.close()
    del items, resume
    if args.stop_after is not None and args.stop_after < timing["epochs"] - 1:
        log.info("stopped after epoch %d as asked (no detections written)", args.stop_after)
        return
    # torchrun: every rank detects its share of the images, rank 0 evaluates and writes
    t0, c0 = time.time(), time.process_time()
    test_flip = setting("test_flip")  # null: test-time flips as in training (wsod.flip)
    det_kw = dict(scales=[int(s) for s in setting("test_scales")], max_size=int(w["max_size"]),
                  flip=bool(w["flip"] if test_flip is None else test_flip),
                  nms_iou=float(w["nms_iou"]),
                  score_thresh=float(w["score_thresh"]), max_det=int(w["max_det"]))
    dets = {}
    for split, view in (("trainval", train_view), ("test", WeakView(test_index))):
        dets[split] = detect_split_distributed(
            model, view.image_ids, view.read, boxes[split], view.category_ids,
            cache=cache if split == "trainval" else None, **det_kw)
        if dets[split] is not None:
            write_json(out_dir / f"detections_{split}.json", dets[split], indent=None)
    if rank != 0:  # the other ranks only trained and detected their share
        return
    infer_seconds, infer_cpu = time.time() - t0, time.process_time() - c0

    # evaluation: ground truth is read only here, after training
    test_gt = test_index.to_json()
    trainval_gt = json.loads(Path("data/annotations/trainval.json").read_text())
    voc = evaluate_voc(test_gt, dets["test"], iou_thr=0.5, use_07_metric=True)
    voc_area = evaluate_voc(test_gt, dets["test"], iou_thr=0.5, use_07_metric=False)
    cl = corloc(trainval_gt, dets["trainval"])
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB -> MiB (Linux)
    metrics = {
        "ap50": voc["map"], "ap50_area": voc_area["map"], "corloc": cl["mean"],
        "coco": coco_ap(test_gt, dets["test"]),
        "ap50_per_class": voc["ap_per_class"], "corloc_per_class": cl["per_class"],
        # CorLoc's top boxes: % below half / above twice the object's area (parts / context)
        "corloc_error_modes": {k: cl[k] for k in ("too_small", "too_large", "median_area_ratio")},
        "train_seconds": round(timing["train_seconds"], 2),
        "seconds_per_epoch": round(timing["seconds_per_epoch"], 2),
        "infer_seconds": round(infer_seconds, 2),
        # CPU time of this process: on a shared machine closer to the idle wall time
        "train_cpu_seconds": round(timing["train_cpu_seconds"], 2),
        "infer_cpu_seconds": round(infer_cpu, 2),
        "peak_rss_mib": round(peak_rss, 1),
        **processes_metrics(),
        "peak_gpu_mib": (torch.cuda.max_memory_allocated(device) / 2**20
                         if device.type == "cuda" else None),
        "proposals_per_image": {s: float(np.mean([len(b) for b in boxes[s].values()]))
                                for s in boxes},
    }
    log.info("%s: AP50 %.2f, CorLoc %.2f, %s", name, metrics["ap50"] or 0.0,
             metrics["corloc"] or 0.0, {k: metrics[k] for k in ("train_seconds",
                                                                "seconds_per_epoch")})
    write_json(Path("metrics") / f"wsod_{name}.json", metrics)


def state_inputs(source: str, backbone: str) -> list[Path]:
    """The files a WSOD run's training state is keyed by (besides its params): the trainval
    annotations, the proposals of ``source`` and, for the small CNN, its pre-trained weights."""
    files = [Path("data/annotations/trainval.json"),
             Path("proposals") / ("ss" if source == "ss" else "weaksam") / "trainval.npz"]
    if backbone == "small_cnn":
        files.append(Path("backbone/model.pt"))
    return files


if __name__ == "__main__":
    try:
        main()
    except InputError as e:
        sys.exit(f"wsod: {e}")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
