"""Stages ``wsis`` and ``wsis_gt``: train an instance segmentation model on the pseudo masks (or,
for the upper reference, on the ground-truth masks) and evaluate it on the test split (paper
Tables 2, 3).

    python -m pipeline.wsis --model {mask_rcnn,mask2former,mask_rcnn_gt}

- ``mask_rcnn`` / ``mask2former``: trained on ``pseudo_masks/trainval.json`` (paper Sec. 3.3).
- ``mask_rcnn_gt`` (stage ``wsis_gt``): the same Mask R-CNN trained on the ground-truth
  instance masks of trainval (fully supervised; the paper's upper rows are Mask R-CNN with mask
  supervision): how much of the gap to full supervision is the pseudo labels'. It trains on
  the trainval images that have masks (VOC: the segmented subset; most ``train_aug`` images
  have none), their number and the others' in the metrics.
Mask AP is computed on the test images whose ground truth has instance masks (every
non-crowd object masked; ``weaksam.data.index.mask_coverage``); the others are left out of
prediction and evaluation (VOC 2007 ``test``: masks on the segmentation subset only; VOC 2012
``Main/val``: on the 1449 ``Segmentation/val`` images), their numbers in the metrics
(``eval_images``, ``eval_images_without_masks``). Checked before any training: a test image
with some objects masked and others not, or a test split where no image has masks, is an
InputError naming ``data/annotations/test.json``. With every test image masked (default
profile) the evaluated split is the test split itself, in its order.
Backbone (``wsis.backbone``): ``small_cnn`` = the frozen ``backbone_pretrain`` CNN, its
features computed once (default profile: Mask R-CNN reads the maps of the ``retrain_features``
stage, at ``retrain.features.short_side``; Mask2Former computes its two levels here at
``wsis.short_side``); ``resnet50`` = ImageNet ResNet-50 from the local
``wsis.resnet50_checkpoint`` (paper profile; Mask R-CNN R50-FPN, Mask2Former R50).
With ``wsis.<model>.lsj`` set (``resnet50`` only: it needs the images) the training views keep
the original size and the trainer large-scale jitters them at every step
(``weaksam.wsis.augment``; release Mask2Former on VOC 2012); the test views are as without it.
Outputs: ``wsis/{model}/model.pt``, ``wsis/{model}/predictions_test.json`` (COCO results with
RLE masks), ``checkpoints/wsis_{model}/last.pt`` (resume; DVC ``persist``),
``dvclive/wsis_{model}/`` (loss curves), ``metrics/wsis_{model}.json`` (VOC-protocol mask
AP25/50/70/75, COCO mask AP/AP50/AP75, per class, timing).
"""

from __future__ import annotations

import dataclasses
import resource
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from pipeline.common import load_params, set_threads, setup_logging, stage_args, training_seed
from pipeline.launch import processes_metrics
from weaksam.config import from_section
from weaksam.data.index import load_index, mask_coverage, mask_eval_split, read_image, subset
from weaksam.engine.checkpoint import fingerprint, resume_state
from weaksam.engine.live import LiveHook
from weaksam.engine.world import join_process_group
from weaksam.errors import InputError
from weaksam.eval.mask_ap import coco_mask_ap, evaluate_voc_masks
from weaksam.retrain.features import load_features
from weaksam.utils.atomic import atomic_path, write_json
from weaksam.utils.device import resolve_device
from weaksam.utils.readers import read_json
from weaksam.utils.seed import seed_everything
from weaksam.vision.backbones import build_backbone
from weaksam.wsis.data import build_views, instance_targets, stage_features, views_from_store
from weaksam.wsis.mask2former import Mask2FormerModelConfig
from weaksam.wsis.mask_rcnn import MaskRcnnModelConfig
from weaksam.wsis.train import InstanceTrainConfig, predict_results, train_instance_model

TORCHRUN = True  # pipeline.launch may start it under torchrun (runtime.nproc.wsis)
MODELS = ("mask_rcnn", "mask2former", "mask_rcnn_gt")
TRAINVAL = Path("data/annotations/trainval.json")
TEST = Path("data/annotations/test.json")
PSEUDO = Path("pseudo_masks/trainval.json")
FEATURES = Path("retrain_features")
# wsis.<arch> is one section for two configs: the model's and the schedule's
# (InstanceTrainConfig); each is built ignoring the other's keys
MODEL_CONFIGS: dict[str, type] = {"mask_rcnn": MaskRcnnModelConfig,
                                  "mask2former": Mask2FormerModelConfig}
STAGE_SET = ("score_thresh", "max_det")  # model-config fields set from wsis.score_thresh / max_det
MODEL_KEYS = {arch: tuple(f.name for f in dataclasses.fields(cls) if f.name not in STAGE_SET)
              for arch, cls in MODEL_CONFIGS.items()}
SCHEDULE_KEYS = tuple(f.name for f in dataclasses.fields(InstanceTrainConfig))


def model_config(arch: str, w: dict[str, Any], where: str = "params.yaml"
                 ) -> MaskRcnnModelConfig | Mask2FormerModelConfig:
    """The model config of ``wsis.<arch>`` (``w`` = the ``wsis`` section)."""
    return from_section(MODEL_CONFIGS[arch], w[arch], f"{where} wsis.{arch}",
                        ignore=SCHEDULE_KEYS, score_thresh=float(w["score_thresh"]),
                        max_det=int(w["max_det"]))


def small_backbone(params: dict[str, Any]) -> torch.nn.Module:
    """The frozen ``backbone_pretrain`` CNN (eval mode, no gradients)."""
    bp = params["backbone_pretrain"]
    net = build_backbone("small_cnn", checkpoint="backbone/model.pt", widths=bp["widths"],
                         stem=int(bp["stem"]), convs=int(bp["convs"]))
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def build_model(name: str, num_classes: int, params: dict[str, Any]):
    """(model, pixel multiple for padding, feature function or None, cached levels)."""
    w = params["wsis"]
    arch = "mask2former" if name == "mask2former" else "mask_rcnn"
    cfg = model_config(arch, w)
    if w["backbone"] == "small_cnn":
        net = small_backbone(params)
        feats = lambda x: stage_features(net, x)  # noqa: E731
        if arch == "mask_rcnn":
            from weaksam.wsis.mask_rcnn import build_small_mask_rcnn

            return build_small_mask_rcnn(net, num_classes, cfg), 1, feats, [-1]
        from weaksam.wsis.mask2former import build_mask2former

        n_levels = len(params["backbone_pretrain"]["widths"])
        levels = list(range(n_levels))[-2:]  # stride 4 and 8 of the small CNN
        model = build_mask2former([int(c) for c in params["backbone_pretrain"]["widths"]][-2:],
                                  num_classes, cfg, stride=net.stride // 2)
        return model, 1, feats, levels
    if w["backbone"] != "resnet50":
        raise ValueError(f"wsis.backbone must be small_cnn or resnet50, got {w['backbone']!r}")
    ckpt = w.get("resnet50_checkpoint")
    if arch == "mask_rcnn":
        from weaksam.wsis.mask_rcnn import build_resnet50_fpn_mask_rcnn

        return build_resnet50_fpn_mask_rcnn(num_classes, ckpt, cfg), 32, None, None
    from weaksam.wsis.mask2former import build_mask2former_resnet50

    return build_mask2former_resnet50(num_classes, ckpt, cfg), 32, None, None


def main() -> None:
    args = stage_args(__doc__.splitlines()[0], [("--model", {"choices": MODELS,
                                                             "required": True})])
    params = load_params(args.params)
    name = args.model
    log = setup_logging(f"wsis.{name}")
    set_threads(params)
    seed = training_seed(params)
    seed_everything(seed)
    device = resolve_device(params["runtime"].get("device", "cpu"))
    rank = join_process_group(device)
    w = params["wsis"]
    arch = "mask2former" if name == "mask2former" else "mask_rcnn"
    m = w[arch]

    train_index = load_index(TRAINVAL)
    test_index = load_index(TEST)
    eval_gt, n_unmasked = eval_split(test_index.to_json())  # before any training
    eval_ids = [int(im["id"]) for im in eval_gt["images"]]
    log.info("%s: mask AP on the %d test images with instance masks (%d without: left out)",
             name, len(eval_ids), n_unmasked)
    cat_ids = train_index.category_ids
    extra: dict[str, Any] = {}
    if name == "mask_rcnn_gt":  # the fully supervised reference: ground-truth masks
        source, train_coco, n_without = gt_training_set(train_index.to_json())
        extra = {"train_images": len(train_coco["images"]),
                 "train_images_without_masks": n_without}
        log.info("%s: %d trainval images with ground-truth masks, %d without (left out)",
                 name, len(train_coco["images"]), n_without)
    else:
        source, train_coco = PSEUDO, read_json(PSEUDO, "pseudo-mask file", want_object=True)
    targets = instance_targets(train_coco, cat_ids)
    train_ids = [i for i in train_index.image_ids if i in targets]
    n_inst = sum(len(t.labels) for t in targets.values())
    log.info("%s: %d training instances from %s", name, n_inst, source)

    model, multiple, feats, levels = build_model(name, len(cat_ids), params)
    model.to(device)
    flips = (False, True) if bool(w["flip"]) else (False,)
    cached = w["backbone"] == "small_cnn" and arch == "mask_rcnn"
    if cached:  # the retrain_features stage's maps of the same frozen CNN (one level)
        train_views = views_from_store(load_features(FEATURES / "trainval.pt"), targets, flips)
    else:  # with large-scale jitter at the original size: it rescales them at every step
        native = m.get("lsj") is not None and feats is None
        train_views = build_views(train_ids, lambda i: read_image(
            train_index.image_path(i)), targets, flips=flips, desc="train views",
            short_side=None if native else int(w["short_side"]),
            max_size=None if native else int(w["max_size"]), features=feats, levels=levels)

    fp = fingerprint({"model": name, "wsis": w, "backbone": params["backbone_pretrain"],
                      "seed": seed, "targets": fingerprint(train_coco["annotations"])})
    ckpt = Path("checkpoints") / f"wsis_{name}" / "last.pt"
    resume = resume_state(ckpt, fp, "WSIS training checkpoint") is not None
    live = LiveHook(f"dvclive/wsis_{name}", resume=resume, rank=rank)

    sched = from_section(InstanceTrainConfig, m, f"params.yaml wsis.{arch}",
                         ignore=MODEL_KEYS[arch], seed=seed)
    timing = train_instance_model(model, train_views, sched, multiple=multiple, checkpoint=ckpt,
                                  fingerprint=fp, device=device, on_epoch=live)
    live.close()
    if rank != 0:  # torchrun: ranks > 0 only train; rank 0 predicts, evaluates and writes
        return
    del train_views

    out_dir = Path("wsis") / name
    with atomic_path(out_dir / "model.pt") as tmp:
        torch.save({"model": model.state_dict(), "category_ids": cat_ids, "arch": arch}, tmp)
    if cached:
        keep = set(eval_ids)
        test_views = [v for v in views_from_store(load_features(FEATURES / "test.pt"), None)
                      if v.image_id in keep]
    else:
        test_views = build_views(eval_ids, lambda i: read_image(
            test_index.image_path(i)), None, desc="test views", short_side=int(w["short_side"]),
            max_size=int(w["max_size"]), features=feats, levels=levels)
    sizes = {int(im["id"]): (int(im["height"]), int(im["width"])) for im in test_index.images}
    results = predict_results(model, test_views, sizes, cat_ids, multiple=multiple,
                              max_det=int(w["max_det"]), device=device)
    write_json(out_dir / "predictions_test.json", results, indent=None)

    # evaluation on the test images with masks (selected before training)
    voc = evaluate_voc_masks(eval_gt, results,
                             ignore_difficult=bool(w["eval_ignore_difficult"]))
    metrics = {
        **{k: voc[k] for k in ("ap25", "ap50", "ap70", "ap75")},
        "coco": coco_mask_ap(eval_gt, results),
        "ap50_per_class": voc["per_class"]["ap50"],
        "train_source": str(source),
        "train_instances": n_inst,
        **extra,
        "eval_images": len(eval_ids),
        "eval_images_without_masks": n_unmasked,
        "predictions_per_image": round(len(results) / max(1, len(eval_ids)), 2),
        **timing,
        **processes_metrics(),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
    }
    write_json(Path("metrics") / f"wsis_{name}.json", metrics)
    log.info("%s: mask AP25 %.1f AP50 %.1f AP70 %.1f AP75 %.1f, COCO AP %.1f; train %.0f s",
             name, *(metrics[k] or 0.0 for k in ("ap25", "ap50", "ap70", "ap75")),
             metrics["coco"]["AP"], timing["train_seconds"])


def eval_split(gt: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """``(the test ground truth restricted to its images with instance masks, the number of
    images left out)``: :func:`weaksam.data.index.mask_eval_split` of the test file."""
    return mask_eval_split(gt, TEST)


def gt_training_set(train: dict[str, Any]) -> tuple[Path, dict[str, Any], int]:
    """``(source, trainval restricted to the images with masks, images left out)`` for
    ``wsis_gt``; InputError when no annotated image has masks."""
    with_masks, without = mask_coverage(train)
    coco = subset(train, with_masks) if without else train
    if not coco["annotations"]:
        raise InputError(TRAINVAL, f"none of the {len(train['images'])} trainval images has "
                                   "ground-truth instance masks (mask_rcnn_gt)")
    return TRAINVAL, coco, len(without)


if __name__ == "__main__":
    try:
        main()
    except InputError as e:
        sys.exit(f"wsis: {e}")
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
