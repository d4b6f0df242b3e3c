"""The dry run's settings: every training shortened, the device the CPU, the rest the profile's."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from weaksam.dryrun.settings import (
    REDUCED_MAX_SIZE,
    REDUCED_SCALE,
    RELATIVE_SCALES,
    dryrun_overrides,
)
from weaksam.profiles import deep_merge, list_profiles, resolve_profile

ROOT = Path(__file__).resolve().parents[2]
PAPER = [p for p in list_profiles(ROOT / "configs") if p.startswith("paper_")]


def _params(profile: str) -> dict:
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    return deep_merge(base, resolve_profile(profile, ROOT / "configs"))


def _leaves(d: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


@pytest.mark.parametrize("profile", PAPER)
def test_full_dry_run_changes_only_lengths_and_device(profile: str) -> None:
    p = _params(profile)
    over = _leaves(dryrun_overrides(p, "full", cores=2))
    allowed = ("epochs", "iterations", "lr_steps", "warmup", "steps", "eval_images",
               "log_every", "device", "workers", "thresh")
    assert over and all(any(a in k.rsplit(".", 1)[-1] for a in allowed) for k in over), over
    merged = deep_merge(p, dryrun_overrides(p, "full", cores=2))
    assert merged["runtime"]["device"] == "cpu"
    assert merged["wsod"]["train_scales"] == p["wsod"]["train_scales"]  # the profile's scales
    assert merged["sam"]["model"] == p["sam"]["model"]
    for m in ("oicr", "mist"):
        w = merged["wsod"][m]
        if p["wsod"][m].get("iterations"):
            assert w["iterations"] == 2 and all(s < 2 for s in w["lr_steps"])
    for det in ("frcnn", "detr"):
        s = merged["retrain"][det]["schedule"]
        assert s["prelim_epochs"] < s["epochs"] <= 2


@pytest.mark.parametrize("profile", PAPER)
def test_reduced_dry_run_cuts_every_scale(profile: str) -> None:
    p = _params(profile)
    merged = deep_merge(p, dryrun_overrides(p, "reduced", cores=2))
    w = merged["wsod"]
    for key in ("train_scales", "test_scales"):
        assert len(w[key]) == 1 and w[key][0] <= REDUCED_SCALE
        for m in ("oicr", "mist"):
            if w[m].get(key):
                assert len(w[m][key]) == 1 and w[m][key][0] <= REDUCED_SCALE
    assert max(merged["retrain"]["frcnn"]["model"]["train_scales"]) <= REDUCED_SCALE
    assert merged["wsis"]["short_side"] <= REDUCED_SCALE
    assert not merged["clues_train"]["amp"] and not merged["clues"]["amp"]


def test_workers_capped_by_cores_and_unknown_resolution() -> None:
    p = _params(PAPER[0])
    p["runtime"]["workers"] = 4
    assert dryrun_overrides(p, "full", cores=2)["runtime"]["workers"] == 2
    with pytest.raises(ValueError, match="resolution"):
        dryrun_overrides(p, "tiny")


@pytest.mark.parametrize("profile", PAPER)
@pytest.mark.parametrize("resolution", ["full", "reduced"])
def test_the_settings_each_stage_reads_are_the_shortened_ones(profile: str,
                                                              resolution: str) -> None:
    """Regression: the WSOD release recipes (``wsod.<method>.recipes.<name>``, issue 23) win
    over the section's keys, so the dry run trained the paper OICR for 125300 iterations; the
    WSIS release schedule is in iterations. The values the stages read are checked, not the
    overrides' keys."""
    from weaksam.wsod.recipes import method_setting

    p = _params(profile)
    merged = deep_merge(p, dryrun_overrides(p, resolution, cores=2))
    for method in ("oicr", "mist"):
        its = int(method_setting(merged["wsod"], method, "iterations") or 0)
        schedule = method_setting(merged["wsod"], method, "schedule")
        assert its <= 2 if schedule == "multistep" else int(
            method_setting(merged["wsod"], method, "epochs")) == 1, (method, its, schedule)
        if resolution == "reduced":
            for which in ("train_scales", "test_scales"):
                assert max(method_setting(merged["wsod"], method, which)) <= REDUCED_SCALE
    for model in ("mask_rcnn", "mask2former"):
        assert int(merged["wsis"][model].get("iterations") or 0) <= 2
    if resolution == "reduced":
        assert all(s <= REDUCED_SCALE for s in merged["retrain"]["tta"]["frcnn"]["scales"])


@pytest.mark.parametrize("profile", PAPER)
def test_reduced_dry_run_leaves_no_setting_at_the_paper_size(profile: str) -> None:
    """Regression: the reduced run cut the scale keys it listed and missed the query
    detector's test-time scales (488..1200 px, 10 passes of 900 queries), its crop branch
    (400..600 px) and Mask2Former's 1024 px LSJ crop under bfloat16 autocast (emulated on
    this CPU): a ``paper_voc12_wsis`` Mask2Former epoch of 3 small images ran 14 min and more.
    Every pixel-size key of the resolved profile, named as the stages read them, is checked."""
    p = _params(profile)
    merged = _leaves(deep_merge(p, dryrun_overrides(p, "reduced", cores=2)))
    bad = {}
    for key, v in merged.items():
        name = key.rsplit(".", 1)[-1]
        if key in RELATIVE_SCALES or v is None:
            continue
        if name == "amp" and v:
            bad[key] = v
        elif name.endswith("scales") and (len(v) != 1 or v[0] > REDUCED_SCALE):
            bad[key] = v
        elif name in ("test_scale", "short_side") and v > REDUCED_SCALE:
            bad[key] = v
        elif name in ("max_size", "image_size") and v > REDUCED_MAX_SIZE:
            bad[key] = v
        elif key.endswith("crop.size") and max(v) > REDUCED_SCALE:
            bad[key] = v
    assert not bad, bad
