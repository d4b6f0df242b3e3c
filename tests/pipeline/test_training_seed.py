"""``train_seed`` (issue 24, seed sweep): the trainings downstream of the SAM take their seed
from it, every stage whose code reads it lists it as a param (a sweep reruns them), and no
stage upstream of the SAM does (a sweep keeps data, clues, prompts and SAM fixed)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from pipeline.common import training_seed
from tests.pipeline.test_code_deps import (
    ROOT,
    command_modules,
    resolved_stages,
)

#: stages a seed sweep must leave alone: the data and everything up to the SAM's proposals
FIXED = {"data", "proposals_ss", "recall_ss", "clues_train", "clues", "prompts",
         "sam_pretrain", "proposals", "recall_prompts", "backbone_pretrain"}


def test_training_seed_follows_seed_unless_set() -> None:
    assert training_seed({"seed": 3}) == 3
    assert training_seed({"seed": 3, "train_seed": None}) == 3
    assert training_seed({"seed": 3, "train_seed": 0}) == 0
    assert training_seed({"seed": 0, "train_seed": 2}) == 2


def _stage_params() -> dict[str, list[str]]:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    out = {}
    for base, spec in stages.items():
        body = spec.get("do", spec)
        out[base] = [p if isinstance(p, str) else next(iter(p)) for p in body.get("params", [])]
    return out


def _seed_functions(scripts: set[Path]) -> set[str]:
    """``training_seed`` and the shared pipeline helpers (not stage ``scripts``) that call it
    (``train_config``)."""
    names = {"training_seed"}
    for path in sorted(set((ROOT / "pipeline").glob("*.py")) - scripts):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name != "training_seed" and any(
                    isinstance(c, ast.Call) and getattr(c.func, "id", None) == "training_seed"
                    for c in ast.walk(node)):
                names.add(node.name)
    return names


@pytest.fixture(scope="module")
def readers() -> dict[str, bool]:
    """Base stage -> whether its script calls ``training_seed`` or a helper that does."""
    stages = {name: ROOT / (command_modules(cmd)[-1].replace(".", "/") + ".py")
              for name, cmd, _ in resolved_stages(ROOT)}
    calls = _seed_functions(set(stages.values()))
    out: dict[str, bool] = {}
    for name, script in stages.items():
        called = {getattr(c.func, "id", None) for c in ast.walk(ast.parse(script.read_text()))
                  if isinstance(c, ast.Call)}
        base = name.split("@")[0]
        out[base] = out.get(base, False) or bool(called & calls)
    return out


def test_every_stage_that_reads_train_seed_lists_it(readers: dict[str, bool]) -> None:
    params = _stage_params()
    missing = sorted(b for b, uses in readers.items() if uses and "train_seed" not in params[b])
    assert not missing, f"stages reading train_seed without it in their dvc.yaml params: {missing}"
    extra = sorted(b for b, uses in readers.items() if not uses and "train_seed" in params[b])
    assert not extra, f"stages listing train_seed that do not read it: {extra}"


def test_the_sweep_keeps_everything_up_to_the_sam_fixed(readers: dict[str, bool]) -> None:
    assert {"wsod", "retrain_prelim", "retrain", "wsis"} <= {b for b, u in readers.items() if u}
    params = _stage_params()
    assert not [b for b in FIXED if "train_seed" in params[b]]
    assert not [b for b in FIXED if readers.get(b)]


def test_default_params_keep_the_global_seed() -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert params["train_seed"] is None  # the default run's trainings use `seed`, as before
    assert training_seed(params) == params["seed"]


def test_profiles_do_not_set_train_seed() -> None:
    for profile in sorted((ROOT / "configs").glob("*.yaml")):
        assert "train_seed" not in (yaml.safe_load(profile.read_text()) or {}), profile
