"""weaksam.wsis.train: the release's iteration schedule (detectron2 MAX_ITER, WarmupMultiStepLR
with SOLVER.STEPS; WeakSAM wsis_extension/configs/voc12)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

import weaksam.wsis.train as train_mod
from tests.wsis.conftest import schedule
from weaksam.profiles import deep_merge, resolve_profile
from weaksam.wsis.train import lr_factor, train_instance_model


def test_step_schedule_drops_at_the_release_steps() -> None:
    # Base-voc12-RCNN-FPN.yaml: STEPS (6000, 8000), gamma 0.1; warm-up 1000 (detectron2)
    f = [lr_factor(s, 9000, 1000, (6000, 8000)) for s in (0, 999, 1000, 5999, 6000, 7999, 8000,
                                                          8999)]
    assert f[:2] == [pytest.approx(1 / 1000), 1.0]
    assert f[2:] == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01, 0.01])
    # torch's MultiStepLR (what detectron2's schedule is after warm-up) agrees step by step
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[6, 8], gamma=0.1)
    for s in range(10):
        assert opt.param_groups[0]["lr"] == pytest.approx(lr_factor(s, 10, 0, (6, 8)))
        opt.step()
        sched.step()


def test_no_steps_keeps_the_cosine() -> None:
    for s in (0, 3, 10, 49):
        t = (s - 5) / 45 if s >= 5 else None
        want = (s + 1) / 5 if t is None else 0.5 * (1 + math.cos(math.pi * t))
        assert lr_factor(s, 50, 5) == pytest.approx(want)


class _Count(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))
        self.calls = 0

    def forward(self, batch):
        self.calls += 1
        return {"loss_a": self.w.sum() * len(batch)}


def test_iterations_run_exactly_that_many_steps(monkeypatch) -> None:
    monkeypatch.setattr(train_mod, "collate", lambda views, *a, **k: list(views))
    views = list(range(10))  # 10 views, batch 3: 4 steps per epoch
    epochs_seen: list[dict] = []
    m = _Count()
    train_instance_model(m, views, schedule(epochs=99, iterations=6, lr=0.0, weight_decay=0.0,
                                            warmup_steps=1, grad_clip=0.0),
                         on_epoch=lambda e, d: epochs_seen.append(d))
    assert m.calls == 6 and len(epochs_seen) == 2
    # the cut epoch averages over the 6 views it saw (2 steps of 3), not over all 10
    assert epochs_seen[1]["loss_a"] == pytest.approx(3.0)  # lr 0: each step's loss is 3
    m2 = _Count()
    train_instance_model(m2, views, schedule(epochs=2, weight_decay=0.0, warmup_steps=1,
                                              grad_clip=0.0))
    assert m2.calls == 8  # epochs when iterations is not set
    with pytest.raises(ValueError, match="iterations"):
        train_instance_model(_Count(), views, schedule(epochs=1, iterations=0, weight_decay=0.0,
                                                       optimizer="adamw", warmup_steps=50,
                                                       grad_clip=0.0))


def test_paper_wsis_profile_has_the_release_schedules() -> None:
    root = Path(__file__).resolve().parents[2]
    base = yaml.safe_load((root / "params.yaml").read_text())
    for key in ("mask_rcnn", "mask2former"):  # default: epochs, cosine
        assert base["wsis"][key]["iterations"] is None and base["wsis"][key]["lr_steps"] == []
    w = deep_merge(base, resolve_profile("paper_voc12_wsis", root / "configs"))["wsis"]
    assert (w["mask_rcnn"]["iterations"], w["mask_rcnn"]["lr_steps"],
            w["mask_rcnn"]["batch_size"]) == (9000, [6000, 8000], 16)
    assert (w["mask2former"]["iterations"], w["mask2former"]["lr_steps"],
            w["mask2former"]["batch_size"], w["mask2former"]["warmup_steps"]) == (
        33069, [29395, 31844], 16, 10)
    assert math.ceil(50 * 10582 / 16) == 33069  # the release's MAX_ITER is 50 trainaug epochs


class _TrunkModel(nn.Module):
    """A ``trunk`` and a head; the loss records the dtype autocast gives the head's output."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk, self.head = nn.Linear(2, 2), nn.Linear(2, 1)
        self.dtypes: list[torch.dtype] = []

    def forward(self, batch) -> dict[str, torch.Tensor]:
        out = self.head(self.trunk(torch.ones(len(batch.sizes), 2)))
        self.dtypes.append(out.dtype)
        return {"loss": out.float().square().mean()}


def _views(n: int = 4):
    from weaksam.wsis.data import View

    return [View(image_id=i, flip=False, size=(4, 4), factor=1.0, image=torch.zeros(3, 4, 4),
                 features=None,
                 boxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.int64),
                 masks=torch.zeros(0, 4, 4, dtype=torch.uint8)) for i in range(n)]


def test_backbone_lr_factor_and_cpu_autocast(monkeypatch) -> None:
    """backbone_lr_factor 0.1: the trunk's group runs at 0.1 x the scheduled lr (release
    BACKBONE_MULTIPLIER); amp on the CPU: the forward runs in bfloat16."""
    seen = []
    real = train_mod.optimizer_step

    def spy(opt, *a, **k):
        seen.append([(g["lr"], len(g["params"])) for g in opt.param_groups])
        return real(opt, *a, **k)

    monkeypatch.setattr(train_mod, "optimizer_step", spy)
    m = _TrunkModel()
    cfg = schedule(epochs=1, batch_size=2, lr=0.5, warmup_steps=0, lr_steps=(100,),
                   weight_decay=0.0, backbone_lr_factor=0.1, amp=True)
    train_instance_model(m, _views(), cfg)
    assert seen == [[(0.5, 2), (0.05, 2)]] * 2  # head (weight, bias), trunk (weight, bias)
    assert m.dtypes == [torch.bfloat16] * 2
    seen.clear()
    m = _TrunkModel()
    train_instance_model(m, _views(), schedule(epochs=1, batch_size=2, lr=0.5, warmup_steps=0,
                                               lr_steps=(100,), weight_decay=0.0))
    assert seen == [[(0.5, 4)]] * 2 and m.dtypes == [torch.float32] * 2  # defaults: off


def test_paper_wsis_profile_sets_the_release_mask2former_options() -> None:
    root = Path(__file__).resolve().parents[2]
    params = deep_merge(yaml.safe_load((root / "params.yaml").read_text()),
                        resolve_profile("paper_voc12_wsis", root / "configs"))
    m = params["wsis"]["mask2former"]
    assert m["backbone_lr_factor"] == 0.1 and m["amp"] is True
    base = yaml.safe_load((root / "params.yaml").read_text())["wsis"]
    assert all(base[a]["backbone_lr_factor"] == 1.0 and base[a]["amp"] is False
               for a in ("mask_rcnn", "mask2former"))


class _Record(nn.Module):
    """Records the views of every step (``collate`` patched to pass them through)."""

    def __init__(self, draws: int = 0) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.seen: list = []
        self.draws = draws  # numbers drawn from torch's global generator per step
        self.drawn: list[torch.Tensor] = []

    def forward(self, batch) -> dict[str, torch.Tensor]:
        self.seen.extend(batch)
        self.drawn.append(torch.rand(self.draws))
        return {"loss": self.w * 0.0 + 1.0}


def _masked_views(n: int = 5):
    from weaksam.wsis.data import View

    g = torch.Generator().manual_seed(1)
    out = []
    for i in range(n):
        m = torch.zeros(2, 12, 16, dtype=torch.uint8)
        m[0, 2:6, 3:9], m[1, 7:12, 10:16] = 1, 1
        out.append(View(image_id=i, flip=False, size=(12, 16), factor=1.0,
                        image=torch.rand(3, 12, 16, generator=g), features=None,
                        boxes=torch.tensor([[3.0, 2, 9, 6], [10, 7, 16, 12]]),
                        labels=torch.tensor([1, 2]), masks=m))
    return out


def _run_lsj(monkeypatch, views, lsj, seed: int = 0, epochs: int = 2, draws: int = 0,
             model: _Record | None = None) -> list:
    monkeypatch.setattr(train_mod, "collate", lambda vs, *a, **k: list(vs))
    m = model or _Record(draws)
    train_instance_model(m, views, schedule(epochs=epochs, batch_size=2, seed=seed, lsj=lsj,
                                            weight_decay=0.0, warmup_steps=0))
    return m.seen


def _bytes(seen: list) -> list[tuple]:
    return [(v.image_id, v.size, v.image.numpy().tobytes(), v.masks.numpy().tobytes(),
             v.boxes.numpy().tobytes(), v.labels.numpy().tobytes()) for v in seen]


def test_lsj_in_training_is_per_step_and_seeded(monkeypatch) -> None:
    from weaksam.wsis.augment import LsjConfig

    lsj = LsjConfig(image_size=10, min_scale=0.3, max_scale=2.0, pad_pixel=None)
    views = _masked_views()
    before = _bytes(views)
    a = _run_lsj(monkeypatch, views, lsj)
    assert len(a) == 10 and all(v.size == (10, 10) and v.image.shape == (3, 10, 10) for v in a)
    assert _bytes(a) == _bytes(_run_lsj(monkeypatch, views, lsj))  # same seed: same bytes
    assert _bytes(a) != _bytes(_run_lsj(monkeypatch, views, lsj, seed=1))
    first = {v.image_id: v for v in a[:5]}  # epoch 0 vs epoch 1: new draws per epoch
    assert any(not torch.equal(first[v.image_id].image, v.image) for v in a[5:])
    assert _bytes(views) == before  # the stored views are not changed
    # a model that draws from torch's global generator does not move the jitter, and the
    # jitter does not move the model's draws (those of a run without it)
    on, off = _Record(3), _Record(3)
    assert _bytes(_run_lsj(monkeypatch, views, lsj, model=on)) == _bytes(a)
    _run_lsj(monkeypatch, views, None, model=off)
    assert torch.equal(torch.cat(on.drawn), torch.cat(off.drawn))


def test_lsj_off_passes_the_views_as_they_are(monkeypatch) -> None:
    def boom(*a, **k):
        raise AssertionError("jitter called with lsj off")

    monkeypatch.setattr(train_mod, "large_scale_jitter", boom)
    monkeypatch.setattr(train_mod, "lsj_draws", boom)
    views = _masked_views()
    seen = _run_lsj(monkeypatch, views, None)
    assert len(seen) == 10 and all(any(v is w for w in views) for v in seen)


def test_lsj_refuses_cached_features() -> None:
    from weaksam.wsis.augment import LsjConfig
    from weaksam.wsis.data import View

    v = _masked_views(2)
    cached = [View(image_id=w.image_id, flip=False, size=w.size, factor=1.0, image=None,
                   features=[torch.zeros(2, 3, 4)], boxes=w.boxes, labels=w.labels,
                   masks=w.masks) for w in v]
    with pytest.raises(ValueError, match="lsj needs views with images"):
        train_instance_model(_Record(), cached, schedule(
            lsj=LsjConfig(image_size=8, min_scale=0.1, max_scale=2.0, pad_pixel=None)))


def test_paper_wsis_profile_sets_the_release_lsj() -> None:
    from pipeline.wsis import MODEL_KEYS
    from weaksam.config import from_section
    from weaksam.wsis.augment import LsjConfig
    from weaksam.wsis.train import InstanceTrainConfig

    root = Path(__file__).resolve().parents[2]
    base = yaml.safe_load((root / "params.yaml").read_text())
    merged = deep_merge(base, resolve_profile("paper_voc12_wsis", root / "configs"))
    cfg = from_section(InstanceTrainConfig, merged["wsis"]["mask2former"], "paper_voc12_wsis",
                       ignore=MODEL_KEYS["mask2former"], seed=0)
    assert cfg.lsj == LsjConfig(image_size=1024, min_scale=0.1, max_scale=2.0, pad_pixel=128.0)
    assert merged["wsis"]["backbone"] == "resnet50"  # image views: LSJ applies
    assert base["wsis"]["mask2former"]["lsj"] is None


def test_lsj_of_a_view_does_not_depend_on_the_process_count(monkeypatch) -> None:
    """Two ranks (world patched, reductions as identities) jitter their shares of each global
    batch exactly as one process jitters the whole batch: the draws follow the position in
    the epoch's permutation."""
    from weaksam.wsis.augment import LsjConfig

    lsj = LsjConfig(image_size=10, min_scale=0.3, max_scale=2.0, pad_pixel=None)
    views = _masked_views()
    one = _run_lsj(monkeypatch, views, lsj)
    monkeypatch.setattr(train_mod, "sum_gradients", lambda params: None)
    monkeypatch.setattr(train_mod, "sum_over_ranks", lambda sums: sums)
    monkeypatch.setattr(train_mod, "any_rank", lambda flag: bool(flag))
    shares = []
    for rank in (0, 1):
        monkeypatch.setattr(train_mod, "world", lambda r=rank: (r, 2))
        shares += _run_lsj(monkeypatch, views, lsj)
    assert len(shares) == len(one) == 10
    assert sorted(_bytes(shares)) == sorted(_bytes(one))
