"""Issue 23: the optimisers of WeakSAM's release recipes and the refinement lr multiplier.

Sources: OICR ``train.prototxt`` (refine_score: lr_mult 10 weights, 20 biases); WeakSAM's
``baselines/WSOD2/configs/wsod/base.py`` (Adam 8e-6, custom_keys refine lr_mult 10) and
``baselines/MIST/wetectron/solver/build.py`` + ``configs/voc/V_16_voc07.yaml`` (Adam, BASE_LR
1e-5 for the detector and SOLVER_CDB.BASE_LR 1e-5 for the Concrete DropBlock).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from tests.wsod.conftest import run_wsod, tiny_backbone, tiny_items
from weaksam.profiles import deep_merge, resolve_profile
from weaksam.wsod import train as wtrain
from weaksam.wsod.mist import MIST
from weaksam.wsod.oicr import OICR
from weaksam.wsod.recipes import method_setting
from weaksam.wsod.train import build_optimizer, multistep_scheduler

ROOT = Path(__file__).resolve().parents[2]


def _params(profile: str | None) -> dict:
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    return base if profile is None else deep_merge(base, resolve_profile(profile, ROOT / "configs"))


def _oicr() -> OICR:
    torch.manual_seed(0)
    return OICR(tiny_backbone(), 3, roi_size=2, hidden=16)


@pytest.mark.parametrize("opt_name", ["sgd", "adam_l2", "adam"])
def test_refinement_group_lr_is_ten_times_base_and_bias_twenty(opt_name):
    model = _oicr()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    opt = build_optimizer(opt_name, named, lr=0.01, weight_decay=5e-4, momentum=0.9,
                          bias_lr_factor=2.0, bias_weight_decay=0.0, refine_lr_mult=10.0)
    sched = multistep_scheduler(opt, [], 0.1, 0, 1.0)  # no warm-up: factors as they are
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert sched.get_last_lr() == [g["lr"] for g in opt.param_groups]
    for n, p in named:
        refine = n.startswith("refine.")
        if opt_name == "adam":  # AdamW has no bias rule: biases as their layer
            want = 0.1 if refine else 0.01
        else:
            want = 0.01 * (10.0 if refine else 1.0) * (2.0 if n.endswith("bias") else 1.0)
        assert lr_of[id(p)] == pytest.approx(want), n
    # every refinement classifier is in the x10 group, nothing else is
    assert {n for n, p in named if lr_of[id(p)] >= 0.1 - 1e-12} == \
        {n for n, _ in named if n.startswith("refine.")}


def test_refine_mult_one_keeps_the_old_groups_and_single_adamw():
    model = _oicr()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    opt = build_optimizer("adam", named, lr=0.01, weight_decay=1e-4, momentum=0.9,
                          bias_lr_factor=1.0, bias_weight_decay=None)
    assert type(opt) is torch.optim.AdamW and len(opt.param_groups) == 1
    sgd = build_optimizer("sgd", named, lr=0.01, weight_decay=1e-4, momentum=0.9,
                          bias_lr_factor=2.0, bias_weight_decay=0.0)
    assert [g["lr_factor"] for g in sgd.param_groups] == [1.0, 2.0]


def test_refinement_multiplier_reaches_the_training_steps(monkeypatch):
    # through train_wsod: lr of the refine weights / the other weights at every step = 10
    seen: list[tuple[float, float]] = []
    step = torch.optim.SGD.step

    def record(self, *a, **k):
        lrs = sorted({round(g["lr"], 12) for g in self.param_groups})
        seen.append((lrs[0], lrs[-1]))
        return step(self, *a, **k)

    monkeypatch.setattr(torch.optim.SGD, "step", record)
    run_wsod(_oicr(), tiny_items(4), epochs=99, batch_size=2, lr=0.01, weight_decay=0.0,
             optimizer="sgd", train_scales=[32], max_size=64, flip=False, seed=0,
             schedule="multistep", iterations=2, lr_steps=[1], warmup_iters=0,
             refine_lr_mult=10.0)
    assert [hi / lo for lo, hi in seen] == pytest.approx([10.0, 10.0])
    assert [lo for lo, _ in seen] == pytest.approx([0.01, 0.001])


def test_release_mist_recipe_builds_adam_at_1e5_for_both_optimisers(monkeypatch):
    params = _params("paper_voc07")
    assert params["wsod"]["mist"]["recipe"] == "release"

    def s(key):
        return method_setting(params["wsod"], "mist", key)

    assert (s("optimizer"), s("lr"), s("weight_decay")) == ("adam_l2", 1e-5, 5e-4)
    assert (s("cdb_optimizer"), s("cdb_lr"), s("cdb_weight_decay"), s("cdb_lr_gamma")) == \
        ("adam_l2", 1e-5, 5e-4, 3.0)
    assert s("test_scales") == [480, 576, 688, 864, 1000, 1200]  # no 800
    # the wetectron recipe stays available by name
    params["wsod"]["mist"]["recipe"] = "wetectron"
    assert (s("optimizer"), s("lr"), s("weight_decay")) == ("sgd", 0.01, 1e-4)
    assert 800 in s("test_scales")
    params["wsod"]["mist"]["recipe"] = "release"

    built: list[torch.optim.Optimizer] = []
    real = wtrain.build_optimizer

    def spy(*a, **k):
        built.append(real(*a, **k))
        return built[-1]

    monkeypatch.setattr(wtrain, "build_optimizer", spy)
    torch.manual_seed(0)
    model = MIST(tiny_backbone(), 3, roi_size=3, hidden=16, cdb_block=2)
    run_wsod(model, tiny_items(2), epochs=1, batch_size=2, lr=float(s("lr")),
             weight_decay=float(s("weight_decay")), optimizer=s("optimizer"),
             train_scales=[32], max_size=64, flip=False, seed=0, schedule="multistep",
             iterations=1, warmup_iters=0, bias_lr_factor=float(s("bias_lr_factor")),
             bias_weight_decay=float(s("bias_weight_decay")),
             cdb_optimizer=s("cdb_optimizer"), cdb_lr=float(s("cdb_lr")),
             cdb_weight_decay=float(s("cdb_weight_decay")), cdb_warmup_iters=0)
    det, cdb = built
    assert type(det) is torch.optim.Adam and type(cdb) is torch.optim.Adam  # not AdamW
    assert det.defaults["lr"] == 1e-5 and cdb.defaults["lr"] == 1e-5
    cdb_ids = {id(p) for p in model.cdb.parameters()}
    assert {id(p) for g in cdb.param_groups for p in g["params"]} == cdb_ids
    assert not cdb_ids & {id(p) for g in det.param_groups for p in g["params"]}
    for g in det.param_groups:  # weights 1e-5 at wd 5e-4; biases x2, no decay (build.py)
        assert (g["initial_lr"] * g["lr_factor"], g["weight_decay"]) in \
            ((1e-5, 5e-4), (2e-5, 0.0))


def test_release_oicr_recipe_and_refine_multiplier_in_the_paper_profile():
    params = _params("paper_voc07")

    def s(key):
        return method_setting(params["wsod"], "oicr", key)

    assert (s("optimizer"), s("lr"), s("weight_decay"), s("bias_lr_factor"),
            s("warmup_iters"), s("warmup_factor")) == ("adam_l2", 8e-6, 5e-4, 2.0, 500, 0.001)
    assert s("refine_lr_mult") == 10.0
    assert method_setting(params["wsod"], "mist", "refine_lr_mult") == 1.0  # wetectron: none


def test_default_profile_keeps_its_optimiser_settings():
    params = _params(None)
    for m in ("oicr", "mist"):
        assert params["wsod"][m]["recipe"] is None
        assert method_setting(params["wsod"], m, "optimizer") == "adam"
        assert method_setting(params["wsod"], m, "refine_lr_mult") == 1.0
    assert method_setting(params["wsod"], "mist", "cdb_optimizer") == "sgd"


def test_unknown_recipe_is_a_clear_error():
    params = _params(None)
    params["wsod"]["mist"]["recipe"] = "nope"
    with pytest.raises(ValueError, match="wsod.mist.recipe 'nope'"):
        method_setting(params["wsod"], "mist", "lr")
