"""The pre-trained weight files the paper profiles name: what loads them, the keys and shapes
they must hold, random stand-ins in the official formats, and checks that name the file.

Kinds (``arch`` keyword arguments in brackets, defaults = the paper profiles' models):

- ``sam`` [``model``: ``vit_h`` | ``vit_l`` | ``vit_b``]: the official SAM checkpoint
  (``sam_vit_h_4b8939.pth``), a bare state dict of ``segment_anything.sam_model_registry[model]``
  loaded with ``strict=True`` (:func:`weaksam.sam.checkpoint.load_sam`). Param ``sam.checkpoint``
  (``sam.model``; ``small`` is the ``sam_pretrain`` stage's own file, not checked here).
- ``deit`` [``patch_size`` 16, ``embed_dim`` 384, ``depth`` 12, ``num_heads`` 6, ``mlp_ratio``
  4.0, ``stem`` "patch"; the defaults are DeiT-S]: timm's ``deit_small_patch16_224`` as the
  DeiT / WeakTr releases ship it, ``{"model": state_dict}`` of a 224-px, 1000-class timm
  ``VisionTransformer``. :meth:`weaksam.clues.model.CluesViT.load_deit_checkpoint` also takes a
  bare state dict, drops ``head*`` / ``fc_norm*``, takes ``cls_token`` when present, resamples
  ``pos_embed`` (any square grid of the same width) and loads the rest with no missing and no
  unexpected key. Param ``clues_train.init_checkpoint`` (arch from ``clues_train``).
- ``vgg16``: torchvision's ``vgg16`` state dict (``vgg16-397923af.pth``: ``features.*`` and
  ``classifier.*``), loaded ``strict`` into ``torchvision.models.vgg16`` and its
  ``classifier.0`` / ``classifier.3`` into the RoI head
  (:class:`weaksam.vision.backbones.VGG16Conv5`, :func:`~weaksam.vision.backbones.load_vgg16_fc`).
  Param ``wsod.vgg16_checkpoint`` (active with ``wsod.backbone: vgg16``).
- ``resnet50``: torchvision's ``resnet50`` state dict (``resnet50-0676ba61.pth``), ``fc.*``
  included; ``*.num_batches_tracked`` may be absent (BatchNorm fills it, FrozenBatchNorm2d drops
  it). Checked as its one loader, :func:`weaksam.vision.resnet.resnet50_trunk`, reads it
  (``strict``) for every model (Faster R-CNN FPN, query detector, Mask R-CNN, Mask2Former). Params
  ``retrain.frcnn.model.resnet50_checkpoint`` (backbone ``resnet50_fpn``),
  ``retrain.detr.model.resnet50_checkpoint`` (backbone ``resnet50``), ``wsis.resnet50_checkpoint``
  (backbone ``resnet50``).

:func:`expected_state` builds the architecture on the ``meta`` device (no memory, ViT-H in a
fraction of a second); :func:`check_file` reads a file with ``torch.load(map_location="cpu",
weights_only=True)``, memory-mapped when it is a zip-format file (every ``torch.save`` since
torch 1.6), so checking ViT-H's 2.5 GB costs no copy of the tensors.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from weaksam.errors import InputError
from weaksam.utils.atomic import atomic_path

KINDS = ("sam", "deit", "vgg16", "resnet50")
SAM_MODELS = ("vit_h", "vit_l", "vit_b")

#: File names of the official releases (the paper profiles use ``models/<name>``, some shortened).
OFFICIAL_NAMES = {
    ("sam", "vit_h"): "sam_vit_h_4b8939.pth",
    ("sam", "vit_l"): "sam_vit_l_0b3195.pth",
    ("sam", "vit_b"): "sam_vit_b_01ec64.pth",
    ("deit", None): "deit_small_patch16_224-cd65a155.pth",
    ("vgg16", None): "vgg16-397923af.pth",
    ("resnet50", None): "resnet50-0676ba61.pth",
}

DEIT_S = {"patch_size": 16, "embed_dim": 384, "depth": 12, "num_heads": 6, "mlp_ratio": 4.0,
          "stem": "patch"}

TITLES = {"sam": "SAM {model} checkpoint", "deit": "DeiT checkpoint",
          "vgg16": "torchvision VGG16 state dict", "resnet50": "torchvision ResNet-50 state dict"}

#: How many key names a problem message lists.
SHOW = 3


def _arch(kind: str, arch: Mapping[str, Any]) -> dict[str, Any]:
    """``arch`` completed with the kind's defaults; ValueError on an unknown kind or key."""
    if kind == "sam":
        allowed: dict[str, Any] = {"model": "vit_h"}
    elif kind == "deit":
        allowed = dict(DEIT_S)
    elif kind in ("vgg16", "resnet50"):
        allowed = {}
    else:
        raise ValueError(f"unknown weight kind {kind!r}; use one of {KINDS}")
    bad = set(arch) - set(allowed)
    if bad:
        raise ValueError(f"{kind}: unknown architecture argument(s) {sorted(bad)} "
                         f"(takes {sorted(allowed)})")
    out = {**allowed, **arch}
    if kind == "sam" and out["model"] not in SAM_MODELS:
        raise ValueError(f"sam: model must be one of {SAM_MODELS}, got {out['model']!r}")
    return out


def _build(kind: str, arch: dict[str, Any]) -> nn.Module:
    """The network whose state dict is the file's (on the current default device)."""
    if kind == "sam":
        from segment_anything import sam_model_registry

        return sam_model_registry[arch["model"]]()
    if kind == "deit":
        from timm.models.vision_transformer import VisionTransformer

        return VisionTransformer(img_size=224, patch_size=int(arch["patch_size"]),
                                 embed_dim=int(arch["embed_dim"]), depth=int(arch["depth"]),
                                 num_heads=int(arch["num_heads"]),
                                 mlp_ratio=float(arch["mlp_ratio"]), num_classes=1000)
    from torchvision.models import resnet50, vgg16

    return vgg16(weights=None) if kind == "vgg16" else resnet50(weights=None)


def expected_state(kind: str, **arch: Any) -> dict[str, torch.Size]:
    """``{key: shape}`` of the file for ``kind`` and ``arch`` (module docstring), in the order
    of the model's ``state_dict``. Built on the ``meta`` device: no weights are allocated or
    initialised (SAM ViT-H, 641 M parameters, in well under a second)."""
    a = _arch(kind, arch)
    with torch.device("meta"):
        net = _build(kind, a)
    return {k: v.shape for k, v in net.state_dict().items()}


def official_name(kind: str, **arch: Any) -> str:
    """File name of the official release of ``kind`` (e.g. ``sam_vit_h_4b8939.pth``)."""
    a = _arch(kind, arch)
    return OFFICIAL_NAMES[(kind, a["model"] if kind == "sam" else None)]


def write_random(kind: str, path: str | Path, seed: int = 0, **arch: Any) -> Path:
    """Write a stand-in for the official ``kind`` file at ``path``: the architecture's own
    random initialisation (``torch.manual_seed(seed)``, the caller's RNG state untouched) in
    the official format (module docstring: a bare state dict, DeiT wrapped as
    ``{"model": state_dict}``), float32, atomically. The same ``kind``, ``seed`` and ``arch``
    give the same bytes. Returns ``path``.

    Example (a dry run's workspace): ``write_random("sam", "models/sam_vit_h_4b8939.pth", 0,
    model="vit_h")``; ``write_random("resnet50", "models/resnet50.pth", 0)``. ViT-H builds the
    641 M-parameter model on the CPU (about 2.6 GB of memory and of file)."""
    a = _arch(kind, arch)
    path = Path(path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        net = _build(kind, a)
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    obj: Any = {"model": state} if kind == "deit" else state
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)  # a file object: records under "archive/", not the temporary name
    return path


def load_weights(path: str | Path, what: str = "checkpoint") -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``, memory-mapped for a
    zip-format file. InputError naming the file when it is missing, truncated or corrupt, or
    holds objects other than tensors and plain containers."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"{what} not found (weights are never downloaded)")
    size = path.stat().st_size
    mmap = zipfile.is_zipfile(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            raise InputError(path, f"{what} holds objects other than tensors "
                             f"(torch.load weights_only=True refused: {first})") from e
        raise InputError(path, f"cannot read {what}: truncated or corrupt ({size} bytes; "
                         f"{first})") from e
    except Exception as e:  # noqa: BLE001 - any reader failure means a bad file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(path, f"cannot read {what}: truncated or corrupt ({size} bytes; "
                         f"{type(e).__name__}: {first})") from e


def _names(keys: list[str]) -> str:
    more = f", ... ({len(keys)} in all)" if len(keys) > SHOW else ""
    return ", ".join(keys[:SHOW]) + more


def _compare(state: Mapping[str, Any], want: dict[str, torch.Size], label: str,
             optional: tuple[str, ...] = ()) -> list[str]:
    """Problems of ``state`` against ``want``: missing keys (those ending in one of
    ``optional`` may be absent), unexpected keys, shape mismatches (first few of each)."""
    out = []
    not_tensor = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensor:
        out.append(f"{len(not_tensor)} value(s) are not tensors: {_names(not_tensor)}")
    missing = [k for k in want if k not in state and not k.endswith(optional)]
    unexpected = [k for k in state if k not in want]
    shapes = [k for k in want if isinstance(state.get(k), torch.Tensor)
              and tuple(state[k].shape) != tuple(want[k])]
    if missing:
        out.append(f"{len(missing)} missing key(s) {label} needs: {_names(missing)}")
    if unexpected:
        out.append(f"{len(unexpected)} unexpected key(s) {label} rejects: {_names(unexpected)}")
    if shapes:
        listed = "; ".join(f"{k} is {tuple(state[k].shape)} in the file, {tuple(want[k])} in "
                           f"{label}" for k in shapes[:SHOW])
        more = f"; ... ({len(shapes)} in all)" if len(shapes) > SHOW else ""
        out.append(f"{len(shapes)} shape mismatch(es): {listed}{more}")
    return out


def _sam_problems(obj: Any, a: dict[str, Any]) -> list[str]:
    label = f"SAM {a['model']}"
    if isinstance(obj, dict) and "format" in obj and "state_dict" in obj:
        return [f"a small-SAM checkpoint (format {obj['format']!r}), not the official "
                f"{a['model']} state dict"]
    out = _compare(obj, expected_state("sam", **a), label)
    if out:
        for other in SAM_MODELS:
            if other != a["model"] and not _compare(obj, expected_state("sam", model=other), ""):
                out.append(f"the file is a SAM {other} checkpoint: set sam.model: {other} "
                           f"(or use {official_name('sam', model=a['model'])})")
    return out


def _deit_problems(obj: Any, a: dict[str, Any]) -> list[str]:
    if a["stem"] != "patch":
        return [f"clues_train.stem is {a['stem']!r}: a DeiT checkpoint needs the linear "
                "'patch' stem"]
    sd = obj.get("model", obj)
    if not isinstance(sd, dict) or "pos_embed" not in sd:
        return ["not a ViT / DeiT state dict (no 'model' entry or 'pos_embed' key)"]
    want = {k: v for k, v in expected_state("deit", **a).items()
            if not k.startswith(("head", "fc_norm"))}
    d = int(a["embed_dim"])
    want.pop("pos_embed")
    want.pop("cls_token")
    sd = {k: v for k, v in sd.items() if not k.startswith(("head", "fc_norm"))}
    pos, cls = sd.pop("pos_embed"), sd.pop("cls_token", None)
    out = []
    if isinstance(pos, torch.Tensor):
        prefix = 0 if cls is None else 1
        n = pos.shape[1] - prefix if pos.dim() == 3 else -1
        side = int(round(max(n, 0) ** 0.5))
        if pos.dim() != 3 or pos.shape[0] != 1 or pos.shape[2] != d or side * side != n:
            out.append(f"pos_embed is {tuple(pos.shape)} in the file; the loader needs "
                       f"(1, {prefix} + N * N, {d}) (embed_dim {d})")
    if isinstance(cls, torch.Tensor) and tuple(cls.shape) != (1, 1, d):
        out.append(f"cls_token is {tuple(cls.shape)} in the file, (1, 1, {d}) in the model")
    label = (f"DeiT (patch {a['patch_size']}, dim {d}, depth {a['depth']}, "
             f"heads {a['num_heads']})")
    return out + _compare(sd, want, label)


def _problems(kind: str, path: Path, a: dict[str, Any]) -> list[str]:
    what = TITLES[kind].format(**a)
    try:
        obj = load_weights(path, what)
    except InputError as e:
        return [e.problem]
    if not isinstance(obj, dict):
        return [f"{what}: the file holds a {type(obj).__name__}, not a state dict"]
    if kind == "sam":
        return _sam_problems(obj, a)
    if kind == "deit":
        return _deit_problems(obj, a)
    label = "torchvision vgg16" if kind == "vgg16" else "torchvision resnet50"
    return _compare(obj, expected_state(kind), label,
                    optional=(".num_batches_tracked",) if kind == "resnet50" else ())


def check_file(kind: str, path: str | Path, **arch: Any) -> list[str]:
    """Problems of the weight file at ``path`` for ``kind`` and ``arch`` (module docstring),
    each message starting with the path; empty when the file loads as its loader reads it.
    Checks: it exists, ``torch.load`` reads it (a truncated file is one message, not a
    traceback), its keys and shapes match :func:`expected_state` as the loader compares them
    (missing keys, unexpected keys the loader rejects, shape mismatches: the first few)."""
    path = Path(path)
    return [f"{path}: {p}" for p in _problems(kind, path, _arch(kind, arch))]


# -- the params that name weight files ----------------------------------------------------


@dataclass(frozen=True)
class WeightUse:
    """One weight file the params name: the dotted param ``key``, its ``path`` (None: unset,
    the network then starts from random weights), ``kind`` and ``arch`` for :func:`check_file`.
    """

    key: str
    path: str | None
    kind: str
    arch: dict[str, Any] = field(default_factory=dict)


def _get(params: Mapping[str, Any], dotted: str) -> Any:
    cur: Any = params
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def weight_uses(params: Mapping[str, Any]) -> list[WeightUse]:
    """The weight files the parsed ``params`` make a stage load (module docstring): SAM when
    ``sam.model`` is official, DeiT when ``clues_train.init_checkpoint`` is set, VGG16 with
    ``wsod.backbone: vgg16``, ResNet-50 with the ResNet-50 backbones of ``retrain.frcnn``,
    ``retrain.detr`` and ``wsis``."""
    out = []
    if _get(params, "sam.model") in SAM_MODELS:
        out.append(WeightUse("sam.checkpoint", _get(params, "sam.checkpoint"), "sam",
                             {"model": _get(params, "sam.model")}))
    if _get(params, "clues_train.init_checkpoint"):
        c = params["clues_train"]
        arch = {k: c[k] for k in DEIT_S if k in c}
        out.append(WeightUse("clues_train.init_checkpoint", c["init_checkpoint"], "deit", arch))
    if _get(params, "wsod.backbone") == "vgg16":
        out.append(WeightUse("wsod.vgg16_checkpoint", _get(params, "wsod.vgg16_checkpoint"),
                             "vgg16"))
    for prefix, backbone in (("retrain.frcnn.model", "resnet50_fpn"),
                             ("retrain.detr.model", "resnet50"), ("wsis", "resnet50")):
        if _get(params, f"{prefix}.backbone") == backbone:
            key = f"{prefix}.resnet50_checkpoint"
            out.append(WeightUse(key, _get(params, key), "resnet50"))
    return out


def require_weights(params: Mapping[str, Any], *keys: str, root: str | Path = ".") -> None:
    """For a stage script, before any work: every weight file of :func:`weight_uses` whose
    param key is one of ``keys`` (all when none given) passes :func:`check_file`; paths are
    relative to ``root``. InputError naming the first bad file and its problems."""
    for use in weight_uses(params):
        if use.path is None or (keys and use.key not in keys):
            continue
        problems = _problems(use.kind, Path(root) / use.path, _arch(use.kind, use.arch))
        if problems:
            raise InputError(use.path, f"params {use.key}: " + "; ".join(problems))
