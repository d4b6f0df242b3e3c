"""What a dry run changes in a paper profile: the length of every training, the device, and
(for the reduced run) the input scales. Everything else keeps the profile's value, so the dry
run executes the paper's architectures, losses, samplers, test-time passes and file formats.

Applied by :mod:`weaksam.dryrun.run` after the profile itself (``deep_merge`` of the returned
overrides over the resolved params). Pure functions of the params mapping they are handed.
"""

from __future__ import annotations

from typing import Any

#: ``full``: the profile's own scales, real-resolution images; ``reduced``: every scale list
#: cut to one small scale and small images (CI's run of every profile)
RESOLUTIONS = ("full", "reduced")

#: the scale every reduced run uses in place of the profile's scale lists (short side, px)
REDUCED_SCALE = 256
#: long-side cap that goes with :data:`REDUCED_SCALE`
REDUCED_MAX_SIZE = 400
#: the SAM automatic mask generator's grid in the reduced run (the profile's 32 x 32 in full)
REDUCED_AMG_SIDE = 8


def _get(params: dict[str, Any], dotted: str, default: Any = None) -> Any:
    node: Any = params
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


def _put(out: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = out
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value


def _training_lengths(p: dict[str, Any], o: dict[str, Any]) -> None:
    """Every training of the DAG to its shortest length that still runs each code path once:
    one epoch (two where a preliminary phase precedes the drop phase) or two optimiser steps,
    with a warm-up and an lr step inside the run where the schedule has them."""
    _put(o, "clues_train.epochs", 1)
    if float(_get(p, "clues_train.warmup_epochs", 0) or 0) > 0:
        _put(o, "clues_train.warmup_epochs", 0.5)
    _put(o, "sam_pretrain.train.steps", 2)
    _put(o, "sam_pretrain.train.warmup_steps", 1)
    _put(o, "sam_pretrain.eval_images", 2)
    _put(o, "sam_pretrain.log_every", 1)
    if int(_get(p, "backbone_pretrain.epochs", 0) or 0) > 0:
        _put(o, "backbone_pretrain.epochs", 1)
    for method in ("oicr", "mist"):
        for i, key in enumerate(wsod_sections(p, method)):
            if i == 0 or _get(p, f"{key}.epochs") is not None:
                _put(o, f"{key}.epochs", 1)
            if int(_get(p, f"{key}.iterations", 0) or 0) > 0:
                _put(o, f"{key}.iterations", 2)
                _put(o, f"{key}.lr_steps", [1] if _get(p, f"{key}.lr_steps") else [])
            if int(_get(p, f"{key}.warmup_iters", 0) or 0) > 0:
                _put(o, f"{key}.warmup_iters", 1)
    for det in ("frcnn", "detr"):
        key = f"retrain.{det}.schedule"
        _put(o, f"{key}.epochs", 2)
        _put(o, f"{key}.prelim_epochs", 1)
        if int(_get(p, f"{key}.warmup_iters", 0) or 0) > 0:
            _put(o, f"{key}.warmup_iters", 1)
    for model in ("mask_rcnn", "mask2former"):
        key = f"wsis.{model}"
        _put(o, f"{key}.epochs", 1)
        if int(_get(p, f"{key}.iterations", 0) or 0) > 0:  # the release's step schedule
            _put(o, f"{key}.iterations", 2)
        if int(_get(p, f"{key}.warmup_steps", 0) or 0) > 0:
            _put(o, f"{key}.warmup_steps", 1)


def wsod_sections(p: dict[str, Any], method: str) -> list[str]:
    """``wsod.<method>`` and, when it names one, its recipe ``wsod.<method>.recipes.<name>``
    (whose keys win over the section's: ``weaksam.wsod.recipes.method_setting``)."""
    key = f"wsod.{method}"
    recipe = _get(p, f"{key}.recipe")
    return [key] + ([f"{key}.recipes.{recipe}"] if recipe else [])


#: scale lists in factors of the image's own size, left as they are (the reduced run's images
#: are small already)
RELATIVE_SCALES = frozenset({"clues.scales"})


def _leaves(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        out += _leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else [(f"{prefix}{k}", v)]
    return out


def _reduced_scales(p: dict[str, Any], o: dict[str, Any]) -> None:
    """Every pixel size of the profile cut, found by its key's name wherever it sits (a new
    section's sizes are cut without a list to extend): a list named ``*scales`` to one scale
    of at most :data:`REDUCED_SCALE` (the query detector's test-time and crop scales
    included), ``test_scale`` and ``short_side`` and a ``crop.size`` range to at most
    :data:`REDUCED_SCALE`, ``max_size`` and ``image_size`` (Mask2Former's LSJ crop) to at most
    :data:`REDUCED_MAX_SIZE`; the SAM grid at :data:`REDUCED_AMG_SIDE`; every ``amp`` off
    (bfloat16 is emulated on a CPU without AVX512-BF16, as on this project's machines: a
    DeiT-S step costs 10x or more; the full dry run keeps the amp path)."""
    s, m = REDUCED_SCALE, REDUCED_MAX_SIZE
    for key, v in _leaves(p):
        name = key.rsplit(".", 1)[-1]
        if v is None or key in RELATIVE_SCALES:
            continue
        if name == "amp":
            if v:
                _put(o, key, False)
        elif name.endswith("scales"):
            if v:
                _put(o, key, [min(s, min(int(x) for x in v))])
        elif name in ("test_scale", "short_side"):
            _put(o, key, min(s, int(v)))
        elif name in ("max_size", "image_size"):
            _put(o, key, min(m, int(v)))
        elif key.endswith("crop.size"):
            _put(o, key, [min(s, int(x)) for x in v])
    if _get(p, "proposals.dense_mode") == "amg":
        side = int(_get(p, "proposals.amg.points_per_side", 32))
        _put(o, "proposals.amg.points_per_side", min(side, REDUCED_AMG_SIDE))


def dryrun_overrides(params: dict[str, Any], resolution: str = "full",
                     cores: int = 2) -> dict[str, Any]:
    """The settings a dry run puts over the resolved profile ``params``.

    - device: the CPU for every stage (``runtime.device: cpu``, ``sam.device`` and
      ``wsod.device`` follow it), at most ``cores`` worker processes;
    - lengths: :func:`_training_lengths`; evaluations are short because the generated data
      set is (a few images per split);
    - the SAM automatic mask generator's IoU and stability thresholds at 0 (random weights);
    - ``resolution="reduced"``: :func:`_reduced_scales` as well.

    ``amp: true`` stays: on the CPU it runs bfloat16 autocast (loss scaling stays CUDA-only).
    """
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution: expected one of {RESOLUTIONS}, got {resolution!r}")
    o: dict[str, Any] = {}
    _put(o, "runtime.device", "cpu")
    workers = int(_get(params, "runtime.workers", 1) or 1)
    _put(o, "runtime.workers", max(1, min(workers, cores)))
    if _get(params, "sam.device"):
        _put(o, "sam.device", None)
    if _get(params, "wsod.device"):
        _put(o, "wsod.device", None)
    _training_lengths(params, o)
    if _get(params, "proposals.amg"):
        # random SAM weights predict low IoU and unstable masks: the automatic mask
        # generator's filters would drop every mask and leave no dense proposals (a WSOD
        # stage then has no training image with proposals); the filtering code still runs
        _put(o, "proposals.amg.pred_iou_thresh", 0.0)
        _put(o, "proposals.amg.stability_score_thresh", 0.0)
    if resolution == "reduced":
        _reduced_scales(params, o)
    return o
