"""Cost model of a paper run (issue 20 item 4): per DVC stage, the forward FLOPs per image of its
networks (:mod:`weaksam.dryrun.flops`), the image-passes the stage makes over the REAL data set
of the profile, and the GPU-hours at a stated sustained throughput, beside the dry run's
measured seconds / peak RSS and the paper's Table 6.

Regenerate ``docs/cost_model.md``::

    python -m weaksam.dryrun.cost --profiles paper_voc07 paper_voc12 paper_voc12_wsis \\
        paper_coco paper_coco17 --dryrun-dir dryrun --out docs/cost_model.md

Model of a stage: a list of :class:`Work` items, each ``image_passes`` forward passes of
``gflops`` GFLOP (mean over the passes' input sizes) times ``factor`` (3 for training:
forward + backward ~ 2x forward; 1 for inference). FLOPs: 2 per multiply-add
(``FlopCounterMode``). GPU-hours = FLOPs / (sustained FLOP/s of the work's precision) / 3600.

The dry run's figures come from ``<dryrun-dir>/<profile>/stages.json``::

    {"profile": str, "resolution": "full" | "reduced", "images": {"train": int, "test": int},
     "sam_model": str, "stages": {"<stage>": {"seconds": float, "peak_rss_mib": float}}}

This module is a CLI: it resolves the profiles itself (``weaksam.profiles``) and maps their
settings to the keyword arguments of :mod:`weaksam.dryrun.flops` in one place.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from weaksam.dryrun import flops as F
from weaksam.errors import InputError
from weaksam.profiles import deep_merge, resolve_profile
from weaksam.utils.atomic import atomic_path
from weaksam.wsod.recipes import method_setting

# ---- the real data sets ------------------------------------------------------------------
#: images per split: VOC by (devkit folder, ImageSets list, ``Main/`` implied), COCO by the
#: instances file name
VOC_IMAGES = {
    ("VOC2007", "trainval"): 5011, ("VOC2007", "test"): 4952,
    ("VOC2012", "trainval"): 11540, ("VOC2012", "train"): 5717, ("VOC2012", "val"): 5823,
    ("VOC2012", "train_aug"): 10582, ("VOC2012", "Segmentation/train_aug"): 10582,
    ("VOC2012", "Segmentation/train"): 1464,
    ("VOC2012", "Segmentation/val"): 1449,
}
COCO_IMAGES = {
    "instances_train2014.json": 82783, "instances_val2014.json": 40504,
    "instances_minival2014.json": 5000, "instances_valminusminival2014.json": 35504,
    "instances_train2017.json": 118287, "instances_val2017.json": 5000,
}
#: nominal image (H, W) px: VOC ~500 x 375, COCO ~640 x 480 (the common landscape sizes)
IMAGE_HW = {"voc": (375, 500), "coco": (480, 640)}
CLASSES = {"voc": 20, "coco": 80}
#: objects per training image (box prompts of pseudo_masks): VOC07 trainval 12608 / 5011,
#: COCO train2017 860001 / 118287 (ground-truth instances; the PGT has about as many)
OBJECTS_PER_IMAGE = {"voc": 2.5, "coco": 7.3}

# ---- assumptions (stated in the output) ---------------------------------------------------
#: WeakSAM proposals per image: paper Table 6, "Num." (213 against SS's 2001)
WEAKSAM_PROPOSALS = 213
#: point prompts per image from the CAM and cross-attention sources (besides the AMG grid)
PROMPT_POINTS = 50
#: RoIs of the Mask R-CNN mask head in training: torchvision samples 512 RoIs, <= 25 % positive
MASK_ROIS_TRAIN = 128
#: test-time RoIs: torchvision RPN post-NMS (1000), detections kept (100)
TEST_ROIS, TEST_DETS = 1000, 100

#: paper Table 6 (appendix D): VOC 2007, wall-clock hours "on a machine with 4 GPU cards"
#: (GPU type not stated); WSOD = MIST training; memory per card in MiB
TABLE6 = {
    "SS": {"num": 2001, "proposals_h": 11.6, "wsod_h": 16.0, "mem_mib": 17810},
    "WeakSAM": {"num": 213, "proposals_h": 4.0, "wsod_h": 9.0, "mem_mib": 5667},
}
TABLE6_GPUS = 4
NOT_RUN = "n/a: not run"


@dataclass(frozen=True)
class Throughput:
    """Sustained FLOP/s per GPU, in TFLOP/s, by precision. An ASSUMPTION, not a measurement:
    defaults for an NVIDIA A100 (peaks: 19.5 fp32, 156 TF32, 312 bf16 / fp16 dense), about
    75 % of the fp32 peak for fp32 stages and 20 % of the tensor-core peak for autocast
    stages (detection / segmentation models with RoI ops, NMS and data loading rarely reach
    more)."""

    fp32: float = 15.0
    amp: float = 60.0
    gpu: str = "A100"

    def of(self, amp: bool) -> float:
        return self.amp if amp else self.fp32


@dataclass(frozen=True)
class Work:
    """``image_passes`` forward passes of ``gflops`` GFLOP each, times ``factor``."""

    what: str
    image_passes: float
    gflops: float
    factor: float = 1.0
    amp: bool = False

    @property
    def flops(self) -> float:
        return self.image_passes * self.gflops * 1e9 * self.factor

    def gpu_hours(self, tput: Throughput) -> float:
        return self.flops / (tput.of(self.amp) * 1e12) / 3600.0


@dataclass
class StageCost:
    """One DVC stage: its works (empty: no network) and how they were counted."""

    stage: str
    works: list[Work] = field(default_factory=list)
    basis: str = ""

    def flops(self) -> float:
        return sum(w.flops for w in self.works)

    def gpu_hours(self, tput: Throughput) -> float:
        return sum(w.gpu_hours(tput) for w in self.works)


# ---- profile -> data set ------------------------------------------------------------------
@dataclass(frozen=True)
class DataSet:
    kind: str          # voc | coco
    train: int         # trainval images
    test: int          # test images
    label: str

    @property
    def hw(self) -> tuple[int, int]:
        return IMAGE_HW[self.kind]

    @property
    def classes(self) -> int:
        return CLASSES[self.kind]


def data_set(cfg: dict[str, Any], where: Path) -> DataSet:
    """The real data set the profile's ``data`` section names (InputError naming ``where``
    for one this model does not know)."""
    d = cfg["data"]
    if d["source"] == "voc":
        year = Path(str(d["voc_root"])).name
        counts = []
        for split in (d["voc_trainval"], d["voc_test"]):
            key = (year, str(split).removeprefix("Main/"))  # ImageSets/<list>.txt
            if key not in VOC_IMAGES:
                raise InputError(where, f"unknown VOC split {key}; known: {sorted(VOC_IMAGES)}")
            counts.append(VOC_IMAGES[key])
        return DataSet("voc", counts[0], counts[1],
                       f"{year} {d['voc_trainval']} / {d['voc_test']}")
    if d["source"] == "coco":
        counts = []
        for key in ("coco_trainval_json", "coco_test_json"):
            name = Path(str(d[key])).name
            if name not in COCO_IMAGES:
                raise InputError(where, f"unknown COCO file {name!r}; known: {sorted(COCO_IMAGES)}")
            counts.append(COCO_IMAGES[name])
        return DataSet("coco", counts[0], counts[1],
                       f"{Path(str(d['coco_trainval_json'])).name} / "
                       f"{Path(str(d['coco_test_json'])).name}")
    raise InputError(where, f"data.source {d['source']!r}: the cost model covers voc and coco")


def load_config(profile: str, configs_dir: Path, params: Path) -> dict[str, Any]:
    """``params`` with the profile deep-merged over it (what ``weaksam profile`` writes)."""
    try:
        base = yaml.safe_load(params.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise InputError(params, f"cannot read the params file ({e})") from e
    return deep_merge(base, resolve_profile(profile, configs_dir))


def stage_names(dvc_yaml: Path, cfg: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """``(name, base stage, item)`` of every stage of ``dvc_yaml`` with matrix / foreach items
    expanded as ``dvc stage list`` names them (``wsod@oicr-ss``); ``${a.b}`` lists from ``cfg``."""
    try:
        stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as e:
        raise InputError(dvc_yaml, f"cannot read the stages ({e})") from e

    def value(v: Any) -> Any:
        m = re.fullmatch(r"\$\{([\w.]+)\}", v) if isinstance(v, str) else None
        if m is None:
            return v
        out: Any = cfg
        for k in m.group(1).split("."):
            out = out[k]
        return out

    names = []
    for base, spec in stages.items():
        if "matrix" in spec:
            keys = list(spec["matrix"])
            for combo in itertools.product(*(value(spec["matrix"][k]) for k in keys)):
                names.append((f"{base}@{'-'.join(map(str, combo))}", base,
                              dict(zip(keys, combo, strict=True))))
        elif "foreach" in spec:
            items = value(spec["foreach"])
            pairs = items.items() if isinstance(items, dict) else enumerate(items)
            for key, item in pairs:
                names.append((f"{base}@{key}", base, item if isinstance(item, dict) else {}))
        else:
            names.append((base, base, {}))
    return names


# ---- FLOPs, cached (many stages share a network and an input size) -------------------------
_vit_g = cache(F.clues_vit_gflops)
_sam_enc = cache(F.sam_encoder_gflops)
_sam_dec = cache(F.sam_decoder_gflops)
_vgg = cache(F.vgg16_trunk_gflops)
_frcnn = cache(F.frcnn_r50_fpn_gflops)
_mask_rcnn = cache(F.mask_rcnn_gflops)
_m2f = cache(F.mask2former_gflops)


@cache
def _wsod_head(method: str, classes: int, rois: int, roi_size: int, hidden: int, cdb: bool,
               cdb_block: int, cdb_net: str) -> float:
    return F.wsod_head_gflops(method, classes, rois, roi_size=roi_size, hidden=hidden, cdb=cdb,
                              cdb_block=cdb_block, cdb_net=cdb_net)


@cache
def _detr(classes: int, hw: tuple[int, int], arch: tuple[tuple[str, Any], ...]) -> float:
    return F.query_detector_gflops(classes, hw, **dict(arch))


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


# ---- the stages ---------------------------------------------------------------------------
def _clues_train(cfg: dict, ds: DataSet, item: dict) -> StageCost:
    c = cfg["clues_train"]
    arch = dict(img_size=int(c["input_size"]), patch_size=int(c["patch_size"]),
                embed_dim=int(c["embed_dim"]), depth=int(c["depth"]),
                num_heads=int(c["num_heads"]), mlp_ratio=float(c["mlp_ratio"]),
                cross_layers=tuple(c["cross_layers"]), stem=str(c["stem"]))
    size = int(c["input_size"])
    g = _vit_g(ds.classes, (size, size), **arch)
    val = int(round(float(c.get("holdout", 0.0)) * ds.train))
    epochs, amp = int(c["epochs"]), bool(c.get("amp", False))
    return StageCost("clues_train", [
        Work("train", epochs * (ds.train - val), g, 3.0, amp),
        Work("held-out eval", epochs * val, g, 1.0, amp),
    ], f"CluesViT {size} px x {epochs} epochs, {val} trainval images held out")


def _clues(cfg: dict, ds: DataSet, item: dict) -> StageCost:
    from weaksam.clues.infer import base_size, scaled_size

    c, t = cfg["clues"], cfg["clues_train"]
    p = int(t["patch_size"])
    arch = dict(img_size=int(t["input_size"]), patch_size=p, embed_dim=int(t["embed_dim"]),
                depth=int(t["depth"]), num_heads=int(t["num_heads"]),
                mlp_ratio=float(t["mlp_ratio"]), cross_layers=tuple(t["cross_layers"]),
                stem=str(t["stem"]), with_cross=True, cross_heads=str(c["cross_heads"]))
    h0, w0 = base_size(*ds.hw, str(c["resize"]), int(t["input_size"]), p)
    scales = [float(s) for s in c["scales"]]
    flips = 2 if c.get("flip", True) else 1
    g = _mean([_vit_g(ds.classes, (scaled_size(h0, s, p), scaled_size(w0, s, p)), **arch)
               for s in scales])
    return StageCost("clues", [Work("maps", (ds.train + ds.test) * len(scales) * flips, g, 1.0,
                                    bool(c.get("amp", False)))],
                     f"{len(scales)} scales x {flips} flips of a {h0} x {w0} base, "
                     "trainval + test")


def _proposals(cfg: dict, ds: DataSet, item: dict) -> StageCost:
    model = str(cfg["sam"]["model"])
    pr = cfg["proposals"]
    n = ds.train + ds.test
    dense = (int(pr["amg"]["points_per_side"]) ** 2 if pr["dense_mode"] == "amg"
             else int(cfg["prompts"]["grid"]) ** 2)
    return StageCost("proposals", [
        Work(f"SAM {model} encoder", n, _sam_enc(model)),
        Work(f"mask decoder x {dense + PROMPT_POINTS} prompts", n * (dense + PROMPT_POINTS),
             _sam_dec(model)),
    ], f"one encoder pass per image (shared by the AMG and the prompts); {dense} "
       f"{pr['dense_mode']} points + {PROMPT_POINTS} CAM / cross points (assumed)")


def _sam_pretrain(cfg: dict, ds: DataSet, item: dict) -> StageCost:
    s = cfg["sam_pretrain"]
    small, tr = dict(s["model"]), s["train"]
    imgs = int(tr["steps"]) * int(tr["batch_images"])
    return StageCost("sam_pretrain", [
        Work("encoder", imgs, F.sam_encoder_gflops("small", small), 3.0),
        Work("decoder", imgs * int(tr["prompts_per_image"]),
             F.sam_decoder_gflops("small", small=small), 3.0),
    ], f"small SAM (synthetic corpus, not the data set): {tr['steps']} steps x "
       f"{tr['batch_images']} images")


def _wsod(cfg: dict, ds: DataSet, item: dict, stage: str) -> StageCost:
    w = cfg["wsod"]
    method, source = str(item["method"]), str(item["source"])
    m = w[method]

    def setting(key: str) -> Any:
        return method_setting(w, method, key)

    if w["backbone"] != "vgg16":
        return StageCost(stage, [], f"backbone {w['backbone']}: not modelled")
    cap = int(setting("max_proposals"))
    rois = min(cap, int(cfg["proposals_ss"]["max_per_image"])) if source == "ss" else \
        min(cap, WEAKSAM_PROPOSALS)
    cdb = method == "mist" and bool(m.get("cdb", False))
    head = dict(roi_size=int(w["roi_size"]), hidden=int(w["hidden"]),
                cdb_block=int(m.get("cdb_block", 3)), cdb_net=str(m.get("cdb_net", "released")))
    dil, max_size = bool(w["dilated_conv5"]), int(w["max_size"])

    def g(scales: Sequence[int], train: bool) -> float:
        trunk = _mean([_vgg(F.rescaled_hw(ds.hw, int(s), max_size), dil) for s in scales])
        return trunk + _wsod_head(method, ds.classes, rois, cdb=train and cdb, **head)

    if setting("schedule") == "multistep":
        imgs, sched = int(setting("iterations")) * int(setting("batch_size")), \
            f"{setting('iterations')} it x {setting('batch_size')} images"
    else:
        imgs, sched = int(setting("epochs")) * ds.train, f"{setting('epochs')} epochs"
    second = cdb and m.get("cdb_adversary") == "second_pass"
    test_scales = [int(s) for s in setting("test_scales")]
    test_flip = setting("test_flip")  # null: as the training flips (pipeline/wsod.py)
    flips = 2 if (w["flip"] if test_flip is None else test_flip) else 1
    return StageCost(stage, [
        Work("train", imgs * (2 if second else 1), g(setting("train_scales"), True), 3.0),
        Work("test-time", (ds.train + ds.test) * len(test_scales) * flips, g(test_scales, False)),
    ], f"VGG16 + {rois} RoIs; {sched}" + (" x 2 (CDB second pass)" if second else "")
       + f"; trainval + test x {len(test_scales)} scales x {flips} flips")


def _detector(cfg: dict, ds: DataSet, det: str, short: int, max_size: int, rois: int) -> float:
    hw = F.rescaled_hw(ds.hw, short, max_size)
    if det == "frcnn":
        return _frcnn(ds.classes, hw, rois)
    m = cfg["retrain"]["detr"]["model"]
    arch = tuple((k, m[k] if k != "n_points" else m.get("n_points", 4)) for k in
                 ("d_model", "encoder_layers", "decoder_layers", "num_queries", "ffn_dim",
                  "heads", "n_points", "extra_levels"))
    return _detr(ds.classes, hw, arch)


def _retrain(cfg: dict, ds: DataSet, item: dict, stage: str, phase: str) -> StageCost:
    """``phase``: ``prelim`` (epochs 0 to the drop start), ``drop`` (the drop start to the end,
    then the test pass) or ``all`` (every epoch in one run, then the test pass: the oracle
    rows, ``retrain_oracle``)."""
    det = str(item["detector"])
    r = cfg["retrain"][det]
    m, s = r["model"], r["schedule"]
    if m.get("input") != "images":
        return StageCost(stage, [], "cached-feature detector: not modelled")
    rois = int(m.get("rois_per_image", 0))
    g = _mean([_detector(cfg, ds, det, int(x), int(m["max_size"]), rois)
               for x in m["train_scales"]])
    p, e = int(s["prelim_epochs"]), int(s["epochs"])
    first, last = {"prelim": (0, p), "drop": (p, e), "all": (0, e)}[phase]
    works = [Work("train", (last - first) * ds.train, g, 3.0)]
    if phase != "prelim":
        works.append(Work("test", ds.test, _detector(cfg, ds, det, int(m["test_scale"]),
                                                     int(m["max_size"]), TEST_ROIS)))
    name = "Faster R-CNN R50-FPN" if det == "frcnn" else \
        f"query detector ({m['num_queries']} queries)"
    return StageCost(stage, works, f"{name}, epochs {first}-{last} of {e} on trainval"
                     + ("" if phase == "prelim" else f"; test at {m['test_scale']}"))


def _pseudo_masks(cfg: dict, ds: DataSet, item: dict) -> StageCost:
    model = str(cfg["sam"]["model"])
    boxes = OBJECTS_PER_IMAGE[ds.kind]
    return StageCost("pseudo_masks", [
        Work(f"SAM {model} encoder", ds.train, _sam_enc(model)),
        Work("mask decoder (box prompts)", ds.train * boxes, _sam_dec(model)),
    ], f"trainval, {boxes} PGT boxes per image (assumed: ground-truth objects per image)")


def _wsis(cfg: dict, ds: DataSet, model: str, stage: str) -> StageCost:
    w = cfg["wsis"]
    if w["backbone"] != "resnet50":
        return StageCost(stage, [], f"backbone {w['backbone']}: not modelled")
    hw = F.rescaled_hw(ds.hw, int(w["short_side"]), int(w["max_size"]))
    e = int(w[model]["epochs"])
    if model == "mask_rcnn":
        train = _mask_rcnn(ds.classes, hw, 512, MASK_ROIS_TRAIN)
        test = _mask_rcnn(ds.classes, hw, TEST_ROIS, TEST_DETS)
        name = "Mask R-CNN R50-FPN"
    else:
        train = test = _m2f(ds.classes, hw, int(w[model].get("num_queries", 100)))
        name = "Mask2Former R50"
    return StageCost(stage, [Work("train", e * ds.train, train, 3.0),
                             Work("test", ds.test, test)],
                     f"{name} at {hw[0]} x {hw[1]}, {e} epochs on trainval; test")


NO_NETWORK = {
    "data": "no network (reads, checks and indexes the data)",
    "proposals_ss": "no network (Selective Search, CPU)",
    "recall_ss": "no network", "recall_prompts": "no network",
    "prompts": "no network (peaks and clustering of the clue maps)",
    "pgt": "no network", "report": "no network",
    "oracle_pgt": "no network (PGT edited against the ground truth)",
    "pgt_figure": "a few images (not projected)", "figures": "a few images (not projected)",
    "retrain_figures": "a few images (not projected)",
    "wsis_figure": "a few images (not projected)",
}


def stage_cost(stage: str, base: str, item: dict, cfg: dict, ds: DataSet) -> StageCost:
    """The :class:`StageCost` of one expanded DVC stage under the resolved profile ``cfg``."""
    if base in NO_NETWORK:
        return StageCost(stage, [], NO_NETWORK[base])
    fns: dict[str, Callable[[], StageCost]] = {
        "clues_train": lambda: _clues_train(cfg, ds, item),
        "clues": lambda: _clues(cfg, ds, item),
        "proposals": lambda: _proposals(cfg, ds, item),
        "sam_pretrain": lambda: _sam_pretrain(cfg, ds, item),
        "wsod": lambda: _wsod(cfg, ds, item, stage),
        "wsod_table4": lambda: _wsod(cfg, ds, item, stage),
        "retrain_prelim": lambda: _retrain(cfg, ds, item, stage, "prelim"),
        "retrain": lambda: _retrain(cfg, ds, item, stage, "drop"),
        "retrain_oracle": lambda: _retrain(cfg, ds, item, stage, "all"),
        "pseudo_masks": lambda: _pseudo_masks(cfg, ds, item),
        "wsis": lambda: _wsis(cfg, ds, str(item["model"]), stage),
        "wsis_gt": lambda: _wsis(cfg, ds, "mask_rcnn", stage),
    }
    if base == "backbone_pretrain":
        epochs = int(cfg["backbone_pretrain"]["epochs"])
        if cfg["wsod"]["backbone"] != "small_cnn" or epochs == 0:
            return StageCost(stage, [], "no network run (ImageNet VGG16 loaded instead)")
        return StageCost(stage, [], "small CNN pre-training: not modelled")
    if base == "retrain_features":
        if not cfg["retrain"]["features"]["enabled"]:
            return StageCost(stage, [], "disabled (detectors train end to end)")
        return StageCost(stage, [], "feature cache: not modelled")
    if base not in fns:
        return StageCost(stage, [], "not modelled")
    cost = fns[base]()
    cost.stage = stage
    return cost


# ---- dry-run figures ----------------------------------------------------------------------
def read_dryrun(path: Path) -> dict[str, Any] | None:
    """The dry run's ``stages.json`` (module docstring), None when absent; InputError naming
    the file when it is malformed."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(path, f"not valid JSON ({e})") from e
    if not isinstance(data, dict) or not isinstance(data.get("stages"), dict):
        raise InputError(path, "expected an object with a 'stages' mapping")
    for name, fig in data["stages"].items():
        if not isinstance(fig, dict) or not all(
                isinstance(fig.get(k), (int, float)) for k in ("seconds", "peak_rss_mib")):
            raise InputError(path, f"stage {name!r}: expected numbers 'seconds' and "
                                   "'peak_rss_mib'")
    return data


# ---- markdown -----------------------------------------------------------------------------
def _num(x: float) -> str:
    if x == 0:
        return "0"
    if x >= 1e5:
        return f"{x:.2e}"
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _hours(h: float) -> str:
    return f"{h:.2f}" if h < 10 else f"{h:,.0f}"


def _figure(runs: Sequence[dict[str, Any]], stage: str) -> tuple[dict[str, Any] | None, str]:
    """The first run's figures of ``stage`` that has them, and the note its cells carry (none
    from the first run; the resolution from a later one)."""
    for i, run in enumerate(runs):
        fig = run.get("stages", {}).get(stage)
        if fig:
            return fig, "" if i == 0 else f" ({run.get('resolution', '?')})"
    return None, ""


def profile_table(profile: str, costs: Sequence[StageCost], ds: DataSet,
                  dryrun: dict[str, Any] | Sequence[dict[str, Any]] | None,
                  tput: Throughput) -> str:
    """Markdown of one profile: the per-stage table, then Table 6 beside the projection.
    ``dryrun``: one run's figures or several in order of preference (full resolution before
    reduced); each stage's from the first that ran it, marked when not the first."""
    runs = [dryrun] if isinstance(dryrun, dict) else list(dryrun or [])
    lines = [f"## {profile}", "",
             f"Data: {ds.label} ({ds.train} trainval, {ds.test} test images, nominal "
             f"{ds.hw[1]} x {ds.hw[0]} px, {ds.classes} classes)."]
    for i, run in enumerate(runs):
        lines.append(f"Dry run{'' if i == 0 else ' for the stages the runs above did not run'}:"
                     f" {run.get('resolution', '?')} resolution, {run.get('images', {})} "
                     f"images, SAM {run.get('sam_model', '?')}, {len(run.get('stages', {}))} "
                     "stages" + ("" if i == 0 else " (cells marked with it)") + ".")
    if not runs:
        lines.append("Dry run: no figures yet (`stages.json` absent).")
    lines += ["", "| Stage | Dry run (s) | Peak RSS (MiB) | GFLOP / image-pass (fwd) | "
              "Image-passes, real data (x factor) | PFLOP | GPU-h | Basis |",
              "|---|---:|---:|---|---|---:|---:|---|"]
    total = 0.0
    for c in costs:
        fig, mark = _figure(runs, c.stage)
        sec = f"{fig['seconds']:.1f}{mark}" if fig else NOT_RUN
        rss = f"{fig['peak_rss_mib']:.0f}{mark}" if fig else NOT_RUN
        if c.works:
            gfl = "; ".join(f"{w.what}: {_num(w.gflops)}" for w in c.works)
            passes = "; ".join(f"{w.what}: {_num(w.image_passes)}"
                               + (f" x{w.factor:g}" if w.factor != 1 else "")
                               + (" (amp)" if w.amp else "") for w in c.works)
            hours = c.gpu_hours(tput)
            total += hours
            pf, gh = f"{c.flops() / 1e15:,.2f}", _hours(hours)
        else:
            gfl = passes = "-"
            pf = gh = "0"
        lines.append(f"| {c.stage} | {sec} | {rss} | {gfl} | {passes} | {pf} | {gh} | "
                     f"{c.basis} |")
    lines += ["", f"Projected total: **{total:,.0f} GPU-h** ({tput.gpu}: {tput.fp32:g} TFLOP/s "
              f"fp32, {tput.amp:g} TFLOP/s amp, sustained: assumed).", ""]
    lines += table6(costs, tput, same_data=ds.label.startswith("VOC2007 trainval"))
    return "\n".join(lines)


def table6(costs: Sequence[StageCost], tput: Throughput, same_data: bool = True) -> list[str]:
    """Paper Table 6 beside this projection (VOC 2007 in the paper; WSOD = MIST training);
    ``same_data`` False: this profile's data differ (the note says so)."""
    by = {c.stage: c for c in costs}

    def train_h(stage: str) -> str:
        c = by.get(stage)
        if c is None:
            return "n/a"
        return _hours(sum(w.gpu_hours(tput) for w in c.works if w.what == "train"))

    def hours(*stages: str) -> str:
        return _hours(sum(by[s].gpu_hours(tput) for s in stages if s in by))

    paper = TABLE6
    g = TABLE6_GPUS

    def p(h: float) -> str:
        return f"{h:g} h wall on {g} GPUs (<= {h * g:g} GPU-h)"

    return [
        "Paper Table 6 (appendix D, VOC 2007 trainval, one machine with 4 GPU cards of a type "
        "the paper does not name) beside this projection (GPU-h of one GPU at the assumed "
        "throughput; the paper's hours are wall-clock, so its GPU-h are at most 4x them)"
        + ("" if same_data else "; the paper measured VOC 2007, not this profile's data, so "
           "its figures are a scale reference only") + ":", "",
        "| | Paper T_proposals | Projected proposals (GPU-h) | Paper T_WSOD (MIST) | "
        "Projected MIST training (GPU-h) |",
        "|---|---|---:|---|---:|",
        f"| SS | {p(paper['SS']['proposals_h'])} | 0 (CPU: Selective Search) | "
        f"{p(paper['SS']['wsod_h'])} | {train_h('wsod@mist-ss')} |",
        f"| WeakSAM | {p(paper['WeakSAM']['proposals_h'])} | {hours('clues', 'proposals')} "
        f"(clues + proposals; clues_train {hours('clues_train')} more) | "
        f"{p(paper['WeakSAM']['wsod_h'])} | {train_h('wsod@mist-weaksam')} |",
        "",
    ]


ASSUMPTIONS = f"""## Assumptions

- **Throughput** (the only conversion from FLOPs to hours): a sustained rate per GPU, stated,
  not measured: by default an A100 at 15 TFLOP/s for fp32 stages (~75 % of its 19.5 fp32 peak)
  and 60 TFLOP/s for autocast (`amp: true`) stages (~20 % of its 312 bf16 / fp16 tensor-core
  peak). Change them with `--fp32-tflops` / `--amp-tflops`; hours scale inversely.
- **FLOPs**: `torch.utils.flop_counter.FlopCounterMode` on the project's own model builders,
  built on the `meta` device (no weights, no compute); 2 FLOPs per multiply-add; only matrix
  products and convolutions count (softmax, elementwise ops, interpolation, RoI pooling,
  deformable sampling and NMS count 0, so these are lower bounds of the arithmetic).
- **Training = 3 x forward** (forward + backward). Frozen layers (VGG16 conv1-2, the
  ResNet-50 stem) need no backward, so training is slightly over-counted.
- **Image sizes**: nominal VOC 500 x 375 and COCO 640 x 480 images; each stage rescales them
  as its settings say (short side / max size, patch rounding, 1024 px for SAM); training
  scales drawn uniformly are averaged.
- **Counts that depend on the data**: WeakSAM proposals per image {WEAKSAM_PROPOSALS} (paper
  Table 6) for every WeakSAM source, SS proposals at `wsod.max_proposals`; {PROMPT_POINTS}
  CAM / cross-attention point prompts per image besides the AMG's 32 x 32; PGT boxes per image
  for the pseudo masks = ground-truth objects per image (VOC {OBJECTS_PER_IMAGE['voc']}, COCO
  {OBJECTS_PER_IMAGE['coco']}); Mask R-CNN mask head on {MASK_ROIS_TRAIN} RoIs in training;
  {TEST_ROIS} RoIs / {TEST_DETS} detections at test.
- **Real data set sizes**: VOC07 trainval 5011 / test 4952; VOC12 trainval 11540, val 5823,
  train_aug 10582, Segmentation val 1449; COCO14 train 82783 / val 40504 (minival 5000);
  COCO17 train 118287 / val 5000, as each profile's `data` section names them.
- Stages without a network (data, Selective Search, recall, prompts, PGT, report) project to
  0 GPU-h; their dry-run seconds are CPU time on this machine.
"""


def dryruns(dirs: Sequence[Path], profile: str) -> list[dict[str, Any]]:
    """The figures of ``profile`` from each of ``dirs`` that holds its ``stages.json``, in the
    order given (e.g. ``dryrun/full`` before ``dryrun/reduced``)."""
    runs = (read_dryrun(Path(d) / profile / "stages.json") for d in dirs)
    return [r for r in runs if r is not None]


def build_markdown(profiles: Sequence[str], configs_dir: Path, params: Path, dvc_yaml: Path,
                   dryrun_dirs: Sequence[Path], tput: Throughput) -> str:
    """The whole ``docs/cost_model.md``; each stage's figures from the first of
    ``dryrun_dirs`` whose run of the profile ran it."""
    dirs = " ".join(str(d) for d in dryrun_dirs)
    parts = ["# Cost model of the paper run", "",
             "Generated by `python -m weaksam.dryrun.cost --profiles "
             f"{' '.join(profiles)} --dryrun-dir {dirs} --out docs/cost_model.md` "
             "(`make cost-model`; issue 20 item 4; `weaksam/dryrun/cost.py`, FLOPs from "
             "`weaksam/dryrun/flops.py`). Per stage of `dvc stage list`: the dry run's wall "
             "time and peak RSS (`<dryrun-dir>/<profile>/stages.json`, from the first "
             "folder listed whose run of the profile ran the stage: a full-resolution run "
             "before a reduced one, a cell from a later folder marked with its resolution), "
             "the forward GFLOP per image-pass of its networks, the image-passes over the real "
             "data set, and the projected GPU-hours.", "", ASSUMPTIONS]
    for name in profiles:
        cfg = load_config(name, configs_dir, params)
        ds = data_set(cfg, configs_dir / f"{name}.yaml")
        costs = [stage_cost(s, b, item, cfg, ds) for s, b, item in stage_names(dvc_yaml, cfg)]
        parts.append(profile_table(name, costs, ds, dryruns(dryrun_dirs, name), tput))
    return "\n".join(parts).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", nargs="+", required=True)
    ap.add_argument("--dryrun-dir", type=Path, nargs="+", default=[Path("dryrun/full"),
                                                                     Path("dryrun/reduced")],
                    help="folders of dry-run figures, in order of preference")
    ap.add_argument("--out", type=Path, default=Path("docs/cost_model.md"))
    ap.add_argument("--configs", type=Path, default=Path("configs"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--dvc-yaml", type=Path, default=Path("dvc.yaml"))
    ap.add_argument("--fp32-tflops", type=float, default=Throughput.fp32)
    ap.add_argument("--amp-tflops", type=float, default=Throughput.amp)
    ap.add_argument("--gpu", default=Throughput.gpu)
    a = ap.parse_args(argv)
    text = build_markdown(a.profiles, a.configs, a.params, a.dvc_yaml, a.dryrun_dir,
                          Throughput(a.fp32_tflops, a.amp_tflops, a.gpu))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(a.out) as tmp:
        tmp.write_text(text)


if __name__ == "__main__":
    main()
