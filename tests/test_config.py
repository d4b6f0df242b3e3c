"""Typed configs (issue 21, item 3): one source of defaults, unknown keys fail at once.

Every config dataclass is listed in :data:`CONFIGS` with the params.yaml section the stages
build it from. A dataclass default must equal params.yaml's value of the same key (or not
exist), and every profile's section must build (no unknown or mistyped key).
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.clues_train import STAGE_KEYS
from pipeline.retrain_common import DETR_STAGE_KEYS
from pipeline.wsis import MODEL_KEYS, SCHEDULE_KEYS, STAGE_SET, model_config
from pipeline.wsod import METHODS, train_config, train_settings
from weaksam.clues.train import CluesTrainConfig
from weaksam.config import ConfigError, from_section
from weaksam.profiles import deep_merge, list_profiles, resolve_profile
from weaksam.retrain.data import RandomCropConfig
from weaksam.retrain.frcnn import FrcnnConfig
from weaksam.retrain.query_detector import QueryDetectorConfig
from weaksam.retrain.roi_drop import RoiDropConfig
from weaksam.retrain.train import DetectorTrainConfig
from weaksam.sam.model import SmallSamConfig
from weaksam.sam.train import PretrainConfig
from weaksam.wsis.mask2former import Mask2FormerModelConfig
from weaksam.wsis.mask_rcnn import MaskRcnnModelConfig
from weaksam.wsis.train import InstanceTrainConfig
from weaksam.wsod.pretrain import BackbonePretrainConfig

ROOT = Path(__file__).resolve().parents[1]

# (dataclass, params path, keys of the section that the stage reads itself, stage-set fields)
CONFIGS: list[tuple[type, tuple[str, ...], tuple[str, ...], dict[str, Any]]] = [
    (PretrainConfig, ("sam_pretrain", "train"), (), {"corpus_seed": 0}),
    (SmallSamConfig, ("sam_pretrain", "model"), (), {}),
    (FrcnnConfig, ("retrain", "frcnn", "model"),
     ("backbone", "input", "resnet50_checkpoint", "trainable_layers", "train_scales",
      "test_scale", "max_size", "flip"), {}),
    (RoiDropConfig, ("retrain", "frcnn", "drop"), (), {}),
    (QueryDetectorConfig, ("retrain", "detr", "model"), DETR_STAGE_KEYS, {}),
    (RandomCropConfig, ("retrain", "detr", "model", "crop"), (), {}),
    (DetectorTrainConfig, ("retrain", "frcnn", "schedule"), ("prelim_epochs",), {"seed": 0}),
    (DetectorTrainConfig, ("retrain", "detr", "schedule"), ("prelim_epochs",), {"seed": 0}),
    (CluesTrainConfig, ("clues_train",), STAGE_KEYS, {"seed": 0}),
    (InstanceTrainConfig, ("wsis", "mask_rcnn"), MODEL_KEYS["mask_rcnn"], {"seed": 0}),
    (InstanceTrainConfig, ("wsis", "mask2former"), MODEL_KEYS["mask2former"], {"seed": 0}),
    (MaskRcnnModelConfig, ("wsis", "mask_rcnn"), SCHEDULE_KEYS, {}),
    (Mask2FormerModelConfig, ("wsis", "mask2former"), SCHEDULE_KEYS, {}),
    (BackbonePretrainConfig, ("backbone_pretrain",), (), {}),
]
IDS = [f"{c.__name__}-{'.'.join(p)}" for c, p, _, _ in CONFIGS]


def _section(params: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    for key in path:
        params = params[key]
    return params


@pytest.fixture(scope="module")
def params() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def _assert_defaults_equal(cfg: object, section: dict, where: str) -> None:
    """Every field of ``cfg`` (built from ``section``) with a default and a value in ``section``
    holds its default: a dataclass default equals the params value or does not exist. Values
    are compared as the stage coerces them ([0.5, 1.0] in YAML is the tuple default)."""
    for f in dataclasses.fields(cfg):
        if f.default is dataclasses.MISSING or f.name not in section:
            continue
        assert getattr(cfg, f.name) == f.default, (
            f"{type(cfg).__name__}.{f.name} defaults to {f.default!r}, {where}.{f.name} is "
            f"{section[f.name]!r}")


@pytest.mark.parametrize(("cls", "path", "ignore", "extra"), CONFIGS, ids=IDS)
def test_defaults_equal_params_yaml(params, cls, path, ignore, extra):
    section = _section(params, path)
    cfg = from_section(cls, section, "params.yaml " + ".".join(path), ignore, **extra)
    _assert_defaults_equal(cfg, section, "params.yaml " + ".".join(path))


@pytest.mark.parametrize("profile", list_profiles(ROOT / "configs"))
@pytest.mark.parametrize(("cls", "path", "ignore", "extra"), CONFIGS, ids=IDS)
def test_every_profile_builds(params, profile, cls, path, ignore, extra):
    merged = deep_merge(params, resolve_profile(profile, ROOT / "configs"))
    from_section(cls, _section(merged, path), f"{profile} {'.'.join(path)}", ignore, **extra)


@pytest.mark.parametrize("arch", ["mask_rcnn", "mask2former"])
def test_wsis_model_configs_take_the_shared_wsis_keys(params, arch):
    # score_thresh / max_det are wsis-level keys the stage passes to both models
    cfg = model_config(arch, params["wsis"])
    cls = type(cfg)
    for name in STAGE_SET:
        default = next(f.default for f in dataclasses.fields(cls) if f.name == name)
        assert default == params["wsis"][name] == getattr(cfg, name), (cls.__name__, name)
    with pytest.raises(ConfigError, match=rf"wsis.{arch}: 'max_det' is set by the stage"):
        model_config(arch, {**params["wsis"], arch: {**params["wsis"][arch], "max_det": 5}})
    with pytest.raises(ConfigError, match=rf"wsis.{arch}: unknown key 'hiden_dim'"):
        model_config(arch, {**params["wsis"], arch: {**params["wsis"][arch], "hiden_dim": 5}})


@pytest.mark.parametrize("method", METHODS)
def test_wsod_defaults_equal_the_resolved_params_yaml(params, method):
    # WsodTrainConfig is built from resolved settings (recipe > wsod.<method> > wsod)
    section = train_settings(params["wsod"], method)
    cfg = train_config(params["wsod"], method, f"params.yaml wsod.{method}")
    assert {"epochs", "lr", "momentum", "max_size"} <= set(section)
    _assert_defaults_equal(cfg, section, f"params.yaml (resolved) wsod.{method}")


@pytest.mark.parametrize("profile", list_profiles(ROOT / "configs"))
@pytest.mark.parametrize("method", METHODS)
def test_every_profile_builds_the_wsod_config(params, profile, method):
    merged = deep_merge(params, resolve_profile(profile, ROOT / "configs"))
    cfg = train_config(merged["wsod"], method, f"{profile} wsod.{method}")
    assert cfg.schedule in ("onecycle", "multistep")


def test_wsod_unknown_key_of_a_method_or_its_recipe_is_named(params):
    w = copy.deepcopy(params["wsod"])
    w["mist"]["cdb_lrr"] = 0.1
    with pytest.raises(ConfigError, match=r"params.yaml wsod.mist: unknown key 'cdb_lrr'"):
        train_config(w, "mist", "params.yaml wsod.mist")
    w = copy.deepcopy(params["wsod"])
    w["oicr"]["recipes"] = {"r": {"lr": 0.5, "warmup_iter": 3}}
    w["oicr"]["recipe"] = "r"
    with pytest.raises(ConfigError, match=r"unknown key 'warmup_iter'"):
        train_config(w, "oicr", "params.yaml wsod.oicr")
    w["oicr"]["recipes"]["r"].pop("warmup_iter")
    assert train_config(w, "oicr", "params.yaml wsod.oicr").lr == 0.5  # recipe first


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Inner:
    width: int = 4


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Outer:
    lr: float
    steps: tuple[float, ...] = ()
    name: str | None = None
    inner: _Inner = _Inner()


def test_unknown_key_names_key_and_path(params):
    section = {**params["retrain"]["frcnn"]["drop"], "tau_rge": 1.0}
    with pytest.raises(ConfigError, match=r"params.yaml retrain.frcnn.drop: unknown key "
                                          r"'tau_rge'"):
        from_section(RoiDropConfig, section, "params.yaml retrain.frcnn.drop")
    with pytest.raises(ConfigError, match=r"x.inner: unknown key 'depth'"):
        from_section(_Outer, {"lr": 1, "inner": {"depth": 2}}, "x")


def test_missing_and_mistyped_keys():
    with pytest.raises(ConfigError, match=r"x: missing key 'lr'"):
        from_section(_Outer, {}, "x")
    with pytest.raises(ConfigError, match=r"x.lr: expected float, got 'fast'"):
        from_section(_Outer, {"lr": "fast"}, "x")
    with pytest.raises(ConfigError, match=r"x.lr: expected a number, got True"):
        from_section(_Outer, {"lr": True}, "x")
    with pytest.raises(ConfigError, match=r"x.steps: expected a list"):
        from_section(_Outer, {"lr": 1, "steps": 0.5}, "x")
    with pytest.raises(ConfigError, match=r"x: 'lr' is set by the stage"):
        from_section(_Outer, {"lr": 1}, "x", lr=2.0)


def test_coercion_nesting_and_ignore():
    cfg = from_section(_Outer, {"lr": 1, "steps": [1, 0.5], "inner": {"width": "8"},
                                "input": "features"}, "x", ignore=("input",))
    assert cfg == _Outer(lr=1.0, steps=(1.0, 0.5), inner=_Inner(width=8))
    assert type(cfg.lr) is float and type(cfg.steps[0]) is float
    assert from_section(_Outer, {"lr": 0.1, "name": None}, "x").name is None
    assert from_section(_Outer, {"lr": 0.1}, "x").inner == _Inner()
