"""The shared retraining loop: determinism, resume, preliminary + continuation, NaN, empty."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.retrain.conftest import tiny_frcnn, tiny_pgt, tiny_schedule, tiny_store
from weaksam.errors import TrainingError
from weaksam.retrain.data import FeatureSource
from weaksam.retrain.train import lr_at, train_detector

KW = tiny_schedule(epochs=3, batch_size=3, warmup_iters=2, lr_steps=(0.5,), seed=5)


def _source(**kw) -> FeatureSource:
    return FeatureSource(tiny_store(), tiny_pgt(**kw), flip=True)


def _weights(m: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in m.state_dict().items()}


def test_lr_schedule_warmup_and_steps():
    kw = dict(total=100, base_lr=1.0, warmup_iters=10, warmup_factor=0.1, lr_steps=(0.5, 0.8),
              gamma=0.1)
    assert lr_at(0, **kw) == pytest.approx(0.1)
    assert lr_at(5, **kw) == pytest.approx(0.1 * 0.5 + 0.5)
    assert lr_at(10, **kw) == pytest.approx(1.0)
    assert lr_at(49, **kw) == pytest.approx(1.0)
    assert lr_at(50, **kw) == pytest.approx(0.1)
    assert lr_at(80, **kw) == pytest.approx(0.01)


def test_same_seed_same_weights_and_curves():
    curves, weights = [], []
    for _ in range(2):
        m, curve = tiny_frcnn(), []
        train_detector(m, _source(), KW, on_epoch=lambda e, x, c=curve: c.append(x))
        curves.append(curve)
        weights.append(_weights(m))
    assert curves[0] == curves[1]
    for k in weights[0]:
        assert torch.equal(weights[0][k], weights[1][k]), k


def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path):
    full = tiny_frcnn()
    train_detector(full, _source(), KW)
    ckpt = tmp_path / "last.pt"

    def crash(epoch, means):
        if epoch == 1:
            raise KeyboardInterrupt

    m = tiny_frcnn()
    with pytest.raises(KeyboardInterrupt):
        train_detector(m, _source(), KW, checkpoint=ckpt, on_epoch=crash)
    state = torch.load(ckpt, weights_only=True)
    assert state["epoch"] == 1
    resumed = tiny_frcnn()
    out = train_detector(resumed, _source(), KW, checkpoint=ckpt, resume=state)
    assert out["epochs_run"] == 1
    assert [h["epoch"] for h in out["history"]] == [0, 1, 2]  # carried over from the checkpoint
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def test_prelim_then_continuation_with_drop(tmp_path):
    ckpt = tmp_path / "prelim.pt"
    pre = tiny_frcnn()
    train_detector(pre, _source(), KW, stop_epoch=2, checkpoint=ckpt)
    state = torch.load(ckpt, weights_only=True)
    assert state["epoch"] == 1 and state["drop_active"] is False
    means = []
    cont = tiny_frcnn(tau_cls=0.0, tau_reg=0.0)  # drops every RoI with a positive loss
    train_detector(cont, _source(), KW, resume=copy.deepcopy(state), drop_start_epoch=2,
                   on_epoch=lambda e, x: means.append(x))
    assert len(means) == 1 and cont.drop_active
    assert means[0]["drop_share"] > 0.9
    assert means[0]["loss_classifier"] < 1e-6  # every classification term dropped


def test_images_without_pgt_are_skipped_and_none_left_is_an_error():
    src = _source(empty=(2, 5))
    assert src.image_ids == [1, 3, 4, 6]
    with pytest.raises(TrainingError, match="no training image"):
        train_detector(tiny_frcnn(), _source(empty=tuple(range(1, 7))), KW)


def test_nan_loss_is_a_clear_error_and_keeps_the_checkpoint(tmp_path):
    ckpt = tmp_path / "last.pt"
    m = tiny_frcnn()

    def poison(epoch, means):  # after epoch 0: NaN weights in the RPN head
        with torch.no_grad():
            m.rpn.head.conv[0][0].weight.fill_(float("nan"))

    with pytest.raises(TrainingError, match="non-finite"):
        train_detector(m, _source(), KW, checkpoint=ckpt, on_epoch=poison)
    state = torch.load(ckpt, weights_only=True)
    assert state["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_param_groups_backbone_lr_factor() -> None:
    """The release's DINO (mmdet ``custom_keys={'backbone': dict(lr_mult=0.1)}``): parameters
    named *backbone* train at 0.1 x the lr; at factor 1 the trainer's plain parameter list."""
    from weaksam.engine.optim import lr_factor_groups, make_optimizer
    from weaksam.engine.schedule import set_lr
    from weaksam.retrain.query_detector import QueryDetector, QueryDetectorConfig
    from weaksam.retrain.train import is_backbone
    from weaksam.vision.backbones import SmallCNN

    torch.manual_seed(0)
    trunk = SmallCNN(widths=(8, 16), stem=8)
    cfg = QueryDetectorConfig(d_model=32, num_queries=6, ffn_dim=32, heads=2)
    model = QueryDetector(3, [16], [trunk.stride], cfg, backbone=trunk, train_backbone=True)
    plain = lr_factor_groups(model, 1.0, is_backbone)
    assert [id(p) for p in plain] == [id(p) for p in model.parameters() if p.requires_grad]
    rest, bb = lr_factor_groups(model, 0.1, is_backbone)
    assert {id(p) for p in bb["params"]} == {id(p) for p in trunk.parameters()}
    assert len(rest["params"]) + len(bb["params"]) == len(plain)
    opt = make_optimizer([rest, bb], "adamw", 1e-4, 0.9, 1e-4)
    set_lr(opt, 1e-4)
    assert [g["lr"] for g in opt.param_groups] == [1e-4, 1e-4 * 0.1]
