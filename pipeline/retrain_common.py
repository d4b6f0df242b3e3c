"""What the ``retrain_prelim`` and ``retrain`` stages share: params -> model, data and run
names (docs/contracts.md "Retraining"). Only this module and the two stage scripts read the
``retrain`` params; ``weaksam.retrain`` gets frozen dataclasses (``weaksam.config``) and
keyword arguments.

- detector ``frcnn``: Faster R-CNN with RoI drop (``weaksam.retrain.frcnn``). Default profile
  (``retrain.frcnn.backbone: small_cnn_frozen``): heads over the cached maps of the frozen
  ``backbone_pretrain`` CNN (``retrain_features/{split}.pt``); paper profile
  (``resnet50_fpn``): end to end from images, ResNet-50 FPN from a local checkpoint.
- detector ``detr``: the query-based detector with query drop (``weaksam.retrain.query_detector``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import nn

from pipeline.common import training_seed
from weaksam.config import from_section
from weaksam.data.index import load_index
from weaksam.data.weak import WeakView
from weaksam.errors import InputError
from weaksam.retrain.data import (
    FeatureSource,
    ImageSource,
    PgtTargets,
    RandomCropConfig,
    drop_small_images,
    load_pgt,
)
from weaksam.retrain.features import FeatureStore, load_features
from weaksam.retrain.frcnn import FrcnnConfig, build_frcnn, build_frcnn_r50_fpn
from weaksam.retrain.roi_drop import RoiDropConfig
from weaksam.retrain.train import DetectorTrainConfig

DETECTORS = ("frcnn", "detr")
# retrain.frcnn.model keys that are not FrcnnConfig's: the input (this module) and the
# paper profile's ResNet-50 FPN (build_frcnn_r50_fpn)
FRCNN_STAGE_KEYS = ("backbone", "input", "resnet50_checkpoint", "trainable_layers",
                    "train_scales", "test_scale", "max_size", "flip")
# keys of retrain.detr.model the stage reads itself (the rest: QueryDetectorConfig)
DETR_STAGE_KEYS = ("backbone", "input", "resnet50_checkpoint", "train_scales", "test_scale",
                   "max_size", "flip", "crop", "filter_min_size")
PGTS = ("mist_weaksam_top1", "mist_weaksam_adaptive", "oicr_weaksam_adaptive")
TRAINVAL = Path("data/annotations/trainval.json")
TEST = Path("data/annotations/test.json")


def prelim_name(detector: str, pgt: str) -> str:
    return f"prelim_{detector}_{pgt}"


def run_name(detector: str, pgt: str, variant: str) -> str:
    return f"{detector}_{pgt}_{variant}"


def pgt_path(pgt: str) -> Path:
    return Path("pgt") / pgt / "trainval.json"


def uses_features(detector: str, params: dict[str, Any]) -> bool:
    """True when the detector trains on the cached frozen-backbone maps (default profile).
    The frozen small CNN needs the cache, an end-to-end ResNet-50 needs images."""
    m = params["retrain"][detector]["model"]
    feats = m.get("input", "features") == "features"
    if feats != (m["backbone"] == "small_cnn_frozen"):
        raise SystemExit(f"retrain.{detector}.model: backbone {m['backbone']!r} with input "
                         f"{m.get('input')!r}: small_cnn_frozen trains on the cached maps "
                         "(input: features), the ResNet-50 end to end (input: images)")
    if feats and not params["retrain"]["features"]["enabled"]:
        raise SystemExit(f"retrain.{detector}.model.input: features, but "
                         "retrain.features.enabled is false (no cache)")
    return feats


def variant_cfg(detector: str, variant: str, params: dict[str, Any]) -> dict[str, Any]:
    variants = params["retrain"][detector]["variants"]
    if variant not in variants:
        raise SystemExit(f"retrain.{detector}.variants has no {variant!r} "
                         f"(have {', '.join(variants)})")
    return dict(variants[variant])


def build_model(detector: str, num_classes: int, params: dict[str, Any],
                variant: dict[str, Any] | None) -> nn.Module:
    """The detector of ``retrain.<detector>`` with the drop thresholds of ``variant`` (None:
    the preliminary training, whose drop is never active; thresholds then irrelevant)."""
    cfg = params["retrain"][detector]
    v = variant or {}
    if detector == "frcnn":
        where = f"params.yaml retrain.{detector}"
        drop = from_section(RoiDropConfig, cfg["drop"], f"{where}.drop")
        drop = replace(drop, tau_cls=float(v.get("tau_cls", drop.tau_cls)),
                       tau_reg=float(v.get("tau_reg", drop.tau_reg)))
        h = cfg["model"]
        if h["backbone"] == "resnet50_fpn":
            return build_frcnn_r50_fpn(
                num_classes, checkpoint=h["resnet50_checkpoint"],
                trainable_layers=int(h["trainable_layers"]),
                rois_per_image=int(h["rois_per_image"]), score_thresh=float(h["score_thresh"]),
                detections_per_img=int(h["detections_per_img"]), drop=drop)
        if h["backbone"] != "small_cnn_frozen":
            raise SystemExit(f"retrain.frcnn.model.backbone: unknown {h['backbone']!r} "
                             "(small_cnn_frozen | resnet50_fpn)")
        bp = params["backbone_pretrain"]
        heads = from_section(FrcnnConfig, h, f"{where}.model", ignore=FRCNN_STAGE_KEYS)
        return build_frcnn(num_classes, heads, drop, backbone=None,
                           in_channels=int(bp["widths"][-1]),
                           stride=2 * 2 ** (len(bp["widths"]) - 1))
    if detector == "detr":
        from weaksam.retrain.query_detector import (
            QueryDetector,
            QueryDetectorConfig,
            resnet50_levels,
        )

        d, m = cfg["drop"], cfg["model"]
        qcfg = from_section(QueryDetectorConfig, m, f"params.yaml retrain.{detector}.model",
                            ignore=DETR_STAGE_KEYS)
        kw = dict(drop_percentile=float(v.get("percentile", d["percentile"])),
                  drop_queries=str(v.get("queries", d["queries"])))
        if m["backbone"] == "resnet50":
            bb = resnet50_levels(m["resnet50_checkpoint"])
            return QueryDetector(num_classes, bb.in_channels, bb.strides, qcfg, backbone=bb,
                                 train_backbone=True, **kw)
        if m["backbone"] != "small_cnn_frozen":
            raise SystemExit(f"retrain.detr.model.backbone: unknown {m['backbone']!r} "
                             "(small_cnn_frozen | resnet50)")
        bp = params["backbone_pretrain"]
        return QueryDetector(num_classes, [int(bp["widths"][-1])],
                             [2 * 2 ** (len(bp["widths"]) - 1)], qcfg, backbone=None, **kw)
    raise SystemExit(f"unknown detector {detector!r} (have {', '.join(DETECTORS)})")


def load_train_data(detector: str, pgt: str, params: dict[str, Any], path: Path | None = None
                    ) -> tuple[PgtTargets, FeatureSource | ImageSource, WeakView]:
    """PGT targets (InputError naming the file when it has no box: checked before training)
    and the training source of the detector's input kind. ``path``: the training boxes' file
    when not ``pgt/<pgt>/trainval.json`` (the oracle rows, ``pipeline.retrain_oracle``)."""
    view = WeakView(load_index(TRAINVAL))
    cfg = params["retrain"][detector]["model"]
    where = f"params.yaml retrain.{detector}.model"
    # detr: the release's filter_cfg (min_size, bbox_min_size) and random-crop branch
    min_size = float(cfg.get("filter_min_size", 1.0))
    crop = from_section(RandomCropConfig, cfg["crop"], f"{where}.crop") if "crop" in cfg else None
    targets = load_pgt(pgt_path(pgt) if path is None else path, view.category_ids,
                       min_size=min_size)
    targets = drop_small_images(targets, {it.image_id: (it.width, it.height) for it in view},
                                min_size)
    if uses_features(detector, params):
        if crop is not None and crop.prob > 0:
            raise SystemExit(f"{where}.crop.prob: the random crop needs input: images "
                             "(cached maps have one scale)")
        store = load_features("retrain_features/trainval.pt")
        check_store(store, view, "retrain_features/trainval.pt")
        return targets, FeatureSource(store, targets, flip=bool(cfg["flip"])), view
    pos = {iid: i for i, iid in enumerate(view.image_ids)}
    src = ImageSource(view.image_ids, lambda iid: view.read(pos[iid]), targets,
                      scales=[int(s) for s in cfg["train_scales"]], max_size=int(cfg["max_size"]),
                      flip=bool(cfg["flip"]), crop=crop)
    return targets, src, view


def tta_options(detector: str, model: nn.Module, params: dict[str, Any]) -> dict[str, Any] | None:
    """Keyword arguments of ``weaksam.retrain.infer.detect_images_tta`` from
    ``retrain.tta.<detector>`` (None: no scales, TTA off). frcnn merges with its model's NMS
    and top-k (detectron2 ``GeneralizedRCNNWithTTA``); detr with ``nms_iou`` of the section,
    the model's ``detections_per_img`` and no score threshold (mmdet ``DetTTAModel``, DINO
    release ``dinotta.py``). TTA reads images: a run on the cached maps is an InputError."""
    tta = (params["retrain"].get("tta") or {}).get(detector) or {}
    if not tta.get("scales"):
        return None
    if uses_features(detector, params):
        raise InputError(Path("params.yaml"), f"retrain.tta.{detector}: test-time "
                         "augmentation needs model.input: images")
    opts: dict[str, Any] = dict(scales=[int(v) for v in tta["scales"]],
                                max_size=int(tta["max_size"]), flip=bool(tta["flip"]))
    if detector == "frcnn":
        return {**opts, "nms_iou": float(model.roi_heads.nms_thresh),
                "max_det": int(model.roi_heads.detections_per_img)}
    return {**opts, "nms_iou": float(tta["nms_iou"]), "max_det": int(model.detections_per_image),
            "score_thresh": float("-inf")}


def check_store(store: FeatureStore, view: WeakView, path: str) -> None:
    """The feature cache must cover the split's images (else it is stale or of another run)."""
    if sorted(store.image_ids) != sorted(view.image_ids):
        raise InputError(path, f"feature cache holds {len(store)} images, the split "
                               f"{len(view)}: rerun the retrain_features stage")


def train_config(detector: str, params: dict[str, Any]) -> DetectorTrainConfig:
    """The schedule of ``train_detector`` from ``retrain.<detector>.schedule`` (its
    ``prelim_epochs``: :func:`prelim_epochs`)."""
    return from_section(DetectorTrainConfig, params["retrain"][detector]["schedule"],
                        f"params.yaml retrain.{detector}.schedule", ignore=("prelim_epochs",),
                        seed=training_seed(params))


def prelim_epochs(detector: str, params: dict[str, Any]) -> int:
    """Epochs of the preliminary training (no drop): drop starts at this epoch."""
    c = params["retrain"][detector]["schedule"]
    p, t = int(c["prelim_epochs"]), int(c["epochs"])
    if not 0 < p < t:
        raise SystemExit(f"retrain.{detector}.schedule: need 0 < prelim_epochs ({p}) < "
                         f"epochs ({t})")
    return p

