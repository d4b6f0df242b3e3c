"""weaksam.wsod.recipes.method_setting: recipe, then the method's section, then ``wsod``."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from weaksam.profiles import deep_merge, resolve_profile
from weaksam.wsod.recipes import method_setting

ROOT = Path(__file__).resolve().parents[2]


def _wsod(recipe: str | None) -> dict:
    return {"lr": 1.0, "flip": True, "test_flip": None,
            "oicr": {"recipe": recipe, "lr": None, "epochs": 3,
                     "recipes": {"release": {"lr": 2.0, "epochs": None, "test_flip": False}}}}


def test_lookup_order():
    w = _wsod(None)
    assert method_setting(w, "oicr", "lr") == 1.0  # method null -> section
    assert method_setting(w, "oicr", "epochs") == 3  # the method's own value
    assert method_setting(w, "oicr", "test_flip") is None
    w = _wsod("release")
    assert method_setting(w, "oicr", "lr") == 2.0  # the recipe wins
    assert method_setting(w, "oicr", "epochs") == 3  # a null in the recipe falls through
    assert method_setting(w, "oicr", "test_flip") is False
    with pytest.raises(KeyError):
        method_setting(w, "oicr", "no_such_key")


def test_unknown_recipe_names_the_choices():
    with pytest.raises(ValueError, match=r"wsod.oicr.recipe 'x' is not one of .*'release'"):
        method_setting(_wsod("x"), "oicr", "lr")


def test_release_oicr_tests_without_flips_and_the_default_follows_flip():
    """WeakSAM's WSOD2 configs (wsod/base.py, base_voc12.py, coco/base.py) test with
    ``MultiScaleFlipAug(flip=False)``; MIST (wetectron BBOX_AUG) and the default keep flips."""
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    for m in ("oicr", "mist"):
        assert method_setting(base["wsod"], m, "test_flip") is None
    for profile in ("paper_voc07", "paper_voc12", "paper_coco", "paper_coco17"):
        p = deep_merge(base, resolve_profile(profile, ROOT / "configs"))["wsod"]
        assert method_setting(p, "oicr", "test_flip") is False, profile
        assert method_setting(p, "mist", "test_flip") is None, profile
        assert p["flip"] is True
