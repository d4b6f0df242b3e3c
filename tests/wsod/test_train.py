"""Training loop: skipping images without proposals, NaN guard with an intact checkpoint,
determinism, resume after a stop, learning on a tiny hand-built task, and inference on an empty
proposal list."""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
import torch

from tests.wsod.conftest import run_wsod, tiny_backbone, tiny_items
from weaksam.errors import TrainingError
from weaksam.vision.imaging import to_tensor
from weaksam.wsod.infer import detect_image, detect_split
from weaksam.wsod.mist import MIST
from weaksam.wsod.oicr import OICR
from weaksam.wsod.train import (
    FeatureCache,
    TrainImage,
    multistep_factor,
    resumable,
    sgd_param_groups,
    train_view,
)

KW = dict(batch_size=2, lr=1e-2, weight_decay=0.0, optimizer="adam", train_scales=[32],
          max_size=64, flip=True, seed=0)
DET = dict(scales=[32], max_size=64, flip=True, nms_iou=0.3, score_thresh=0.0, max_det=10)


def _oicr(**kw) -> OICR:
    torch.manual_seed(0)
    return OICR(tiny_backbone(), 3, roi_size=2, hidden=16, **kw)


def test_images_without_proposals_are_skipped_and_get_no_detections(caplog):
    items = tiny_items(4)
    items[1] = TrainImage(items[1].image_id, items[1].pixels, items[1].labels,
                          np.zeros((0, 4), np.float32))
    losses = []
    with caplog.at_level(logging.WARNING):
        run_wsod(_oicr(), items, epochs=1, on_epoch=lambda e, m: losses.append(m), **KW)
    assert "image 2 has no proposals: skipped in training" in caplog.text
    assert np.isfinite(losses[0]["loss"])
    model = _oicr()
    b, s, lab = detect_image(model, items[1].pixels, items[1].boxes, **DET)
    assert b.shape == (0, 4) and len(s) == 0 and len(lab) == 0
    res = detect_split(model, [it.image_id for it in items], lambda i: items[i].pixels,
                       {it.image_id: it.boxes for it in items}, [1, 2, 3], **DET)
    assert {r["image_id"] for r in res} == {1, 3, 4}
    assert all(r["category_id"] in (1, 2, 3) and len(r["bbox"]) == 4 for r in res)


def test_no_usable_image_is_an_error():
    items = [TrainImage(1, np.zeros((8, 8, 3), np.uint8), np.ones(3, np.float32),
                        np.zeros((0, 4), np.float32))]
    with pytest.raises(TrainingError, match="no training image has proposals"):
        run_wsod(_oicr(), items, epochs=1, **KW)


def test_nan_loss_raises_and_keeps_last_good_checkpoint(tmp_path):
    ckpt = tmp_path / "model.pt"
    model = _oicr()
    run_wsod(model, tiny_items(4), epochs=1, checkpoint=ckpt, **KW)
    good = ckpt.read_bytes()
    assert torch.load(ckpt, weights_only=True)["epoch"] == 0
    with torch.no_grad():
        model.mil_cls.weight.fill_(float("nan"))
    with pytest.raises(TrainingError, match="non-finite loss .* last good checkpoint kept"):
        run_wsod(model, tiny_items(4), epochs=1, checkpoint=ckpt, **KW)
    assert ckpt.read_bytes() == good
    assert not [p for p in tmp_path.iterdir() if p.name != "model.pt"]  # no temp files left


def test_same_seed_same_losses_and_learning_lowers_the_loss():
    runs = []
    for _ in range(2):
        curve: list[float] = []
        run_wsod(_oicr(), tiny_items(6), epochs=6,
                 on_epoch=lambda e, m, c=curve: c.append(m["loss"]), **KW)
        runs.append(curve)
    assert runs[0] == runs[1]
    assert runs[0][-1] < runs[0][0]


def test_warm_feature_cache_gives_the_cold_curve_without_backbone_calls():
    items = tiny_items(4)
    kw = {**KW, "train_scales": [24, 32]}  # 24: a real rescale; 32: the image as it is
    curves, calls = [], []
    for warm in (False, True):
        model = _oicr(freeze_backbone=True)
        cache = FeatureCache(model.backbone, enabled=True)
        if warm:
            cache.warm(items, kw["train_scales"], kw["max_size"], kw["flip"])
            assert len(cache._store) == 4 * 2 * 2  # images x scales x flips
        n, forward = [0], model.backbone.forward_features

        def counted(x, n=n, forward=forward):
            n[0] += 1
            return forward(x)

        model.backbone.forward_features = counted
        curve: list[float] = []
        run_wsod(model, items, epochs=3, cache=cache,
                 on_epoch=lambda e, m, c=curve: c.append(m["loss"]), **kw)
        curves.append(curve)
        calls.append(n[0])
    assert curves[0] == curves[1]
    assert calls[0] > 0 and calls[1] == 0


def test_mist_trains_with_dropblock_after_warmup():
    torch.manual_seed(0)
    model = MIST(tiny_backbone(), 3, roi_size=3, hidden=16, cdb_net="light")
    before = [q.detach().clone() for q in model.cdb.parameters()]
    seen: list[dict] = []
    run_wsod(model, tiny_items(4), epochs=2, cdb_start_epoch=1, cdb_lr=0.1,
             on_epoch=lambda e, m: seen.append(m), **KW)
    assert model.cdb_active  # switched on at epoch 1
    assert any(not torch.equal(a, b) for a, b in zip(before, model.cdb.parameters(),
                                                      strict=True))
    assert all(np.isfinite(v) for m in seen for v in m.values())
    b, s, lab = detect_image(model, tiny_items(1)[0].pixels, tiny_items(1)[0].boxes, **DET)
    assert len(b) == len(s) == len(lab) > 0
    assert np.all(b[:, 0] >= 0) and np.all(b[:, 2] <= 32)  # regressed boxes clipped


def test_cdb_schedule_waiting_for_its_start_epoch_does_not_warn(recwarn):
    """Before ``cdb_start_epoch`` the CDB's scheduler follows the global iteration while its
    optimiser does not step: PyTorch's order warning is silenced there, and only there."""
    model = MIST(tiny_backbone(), 3, roi_size=3, hidden=16, cdb_net="light")
    seen: list[int] = []
    run_wsod(model, tiny_items(4), **{**KW, **dict(
        epochs=0, schedule="multistep", iterations=4, lr_steps=(3,), warmup_iters=0,
        optimizer="sgd", cdb_start_epoch=1, cdb_lr=0.1, cdb_warmup_iters=0)},
        on_epoch=lambda e, m: seen.append(e))
    assert model.cdb_active and seen == [0, 1]
    assert not [w for w in recwarn if "lr_scheduler.step()" in str(w.message)]
    sched = torch.optim.lr_scheduler.LambdaLR(
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), lambda it: 1.0)
    with pytest.warns(UserWarning, match="before `optimizer.step"):  # elsewhere it still warns
        sched.step()


def test_multistep_factor_is_wetectrons_warmup_multistep():
    # WarmupMultiStepLR: linear warm-up from 1/3 over 200 iterations, x0.1 at 20k and 26.7k
    f = [multistep_factor(i, [20000, 26700], 0.1, 200, 1 / 3)
         for i in (0, 100, 200, 19999, 20000, 26699, 26700, 29999)]
    assert f == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01])
    # OICR's Caffe "step" policy: no warm-up, x0.1 at 40k; SOLVER_CDB: gamma 3 (lr grows)
    assert multistep_factor(39999, [40000], 0.1, 0, 1 / 3) == 1.0
    assert multistep_factor(40000, [40000], 0.1, 0, 1 / 3) == pytest.approx(0.1)
    assert multistep_factor(20000, [20000, 26700], 3.0, 500, 1 / 3) == pytest.approx(3.0)


def test_sgd_groups_give_biases_twice_the_lr_and_no_decay():
    # Caffe lr_mult 2 / decay_mult 0 on biases; wetectron BIAS_LR_FACTOR 2, WEIGHT_DECAY_BIAS 0
    lin = torch.nn.Linear(2, 3)
    groups = sgd_param_groups(list(lin.named_parameters()), 5e-4, 2.0, 0.0)
    assert [(len(g["params"]), g["lr_factor"], g["weight_decay"]) for g in groups] == \
        [(1, 1.0, 5e-4), (1, 2.0, 0.0)]
    assert groups[0]["params"][0] is lin.weight and groups[1]["params"][0] is lin.bias


def test_multistep_schedule_runs_its_iterations_at_the_stepped_lr(monkeypatch):
    lrs: list[list[float]] = []
    step = torch.optim.SGD.step

    def record(self, *a, **k):
        lrs.append([g["lr"] for g in self.param_groups])
        return step(self, *a, **k)

    monkeypatch.setattr(torch.optim.SGD, "step", record)
    curve: list[dict] = []
    out = run_wsod(_oicr(), tiny_items(4), epochs=99, batch_size=2, lr=0.01, weight_decay=0.0,
                   optimizer="sgd", train_scales=[32], max_size=64, flip=True, seed=0,
                   schedule="multistep", iterations=3, lr_steps=[2], warmup_iters=1,
                   bias_lr_factor=2.0, on_epoch=lambda e, m: curve.append(m))
    assert out["steps"] == 3 and len(curve) == 2  # 2 steps per pass: the 2nd pass cut short
    flat = [v for step_lrs in lrs for v in step_lrs]  # (weights, biases) per step
    assert flat == pytest.approx([0.01 / 3, 0.02 / 3, 0.01, 0.02, 0.001, 0.002])
    with pytest.raises(ValueError, match="schedule must be onecycle or multistep"):
        run_wsod(_oicr(), tiny_items(2), epochs=1, schedule="cosine", **KW)


@pytest.mark.parametrize("net", ["light", "released"])
def test_concrete_dropblock_ascends_the_loss_with_its_own_sgd(net):
    # wetectron do_train_cdb: the CDB's own optimizer minimises -DB.WEIGHT x the detection
    # loss; the detector's optimizer never touches it. One step, lr 0 for the detector, plain
    # SGD for the CDB: its update is +cdb_lr x 0.01 x (gradient of the detection loss).
    torch.manual_seed(0)
    model = MIST(tiny_backbone(), 3, roi_size=3, hidden=16, cdb_net=net, cdb_block=2,
                 cdb_temperature=0.5)
    ref = copy.deepcopy(model).train()
    item = tiny_items(1)[0]
    g = torch.Generator().manual_seed(0)  # the trainer's generator of image 0, epoch 0, seed 0
    torch.randint(1, (1,), generator=g)  # its scale draw (one scale, no flip: no flip draw)
    x = train_view(to_tensor(item.pixels), 32, 64, False)
    out = ref([x], [torch.tensor(item.boxes)], [torch.tensor(item.labels)], [g])
    sum(v.sum() for v in out.values()).backward()
    expect = [q.detach() + 0.1 * 0.01 * q.grad for q in ref.cdb.parameters()]
    assert any(q.grad.abs().sum() > 0 for q in ref.cdb.parameters())
    run_wsod(model, [item], epochs=1, batch_size=1, lr=0.0, weight_decay=0.0,
             optimizer="sgd", train_scales=[32], max_size=64, flip=False, seed=0,
             cdb_lr=0.1, cdb_weight_decay=0.0, cdb_adversary_weight=0.01)
    for got, exp in zip(model.cdb.parameters(), expect, strict=True):
        assert torch.allclose(got, exp, atol=1e-7)


def test_duplicate_proposals_give_one_detection_per_class_after_nms():
    model = _oicr()
    it = tiny_items(1)[0]
    boxes = np.repeat(it.boxes[:1], 3, axis=0)  # three copies of one box
    b, s, lab = detect_image(model, it.pixels, boxes, **DET)
    assert sorted(lab.tolist()) == [0, 1, 2]  # one per class (3 classes), copies suppressed
    assert np.allclose(b, boxes[0])  # OICR does not regress: detections are proposals
    assert np.all((s > 0) & (s < 1))


def _same(a, b) -> bool:
    """Equal nested states: same keys in order, types, and tensors of equal dtype and bits
    (their files' bytes may differ in pickle references shared within the file)."""
    if isinstance(a, dict):
        return (isinstance(b, dict) and list(a) == list(b)
                and all(_same(a[k], b[k]) for k in a))
    if isinstance(a, (list, tuple)):
        return (type(a) is type(b) and len(a) == len(b)
                and all(_same(x, y) for x, y in zip(a, b, strict=True)))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    return type(a) is type(b) and a == b


RESUME_CASES = {
    # dropout draws from the global RNG, which carries over between epochs
    "oicr": (lambda: _oicr(dropout=0.5), dict(epochs=3)),
    # BatchNorm in the CDB scorer, both optimisers and schedulers, the second-pass adversary
    "mist": (lambda: MIST(tiny_backbone(), 3, roi_size=3, hidden=16, dropout=0.5,
                          cdb_net="released", cdb_block=2),
             dict(epochs=0, schedule="multistep", iterations=5, lr_steps=(3,), warmup_iters=2,
                  optimizer="sgd", cdb_start_epoch=1, cdb_lr=0.1, cdb_warmup_iters=2,
                  cdb_adversary="second_pass")),
}


@pytest.mark.parametrize("name", RESUME_CASES)
def test_a_stopped_run_resumed_ends_with_the_bytes_of_an_unbroken_one(name, tmp_path):
    make, kw = RESUME_CASES[name]
    kw = {**KW, **kw}
    items = tiny_items(4)  # batches of 2: 2 steps per epoch, 3 epochs
    runs = {}
    for tag in ("unbroken", "stopped"):
        model, curve = make(), []
        run_wsod(model, items, state_file=tmp_path / f"{tag}.pt", fingerprint="fp",
                 stop_after=0 if tag == "stopped" else None,
                 on_epoch=lambda e, m, c=curve: c.append((e, m)), **kw)
        runs[tag] = model, curve
    state = resumable(tmp_path / "stopped.pt", "fp")
    assert state is not None and state["epoch"] == 0 and state["epochs"] == 3
    assert resumable(tmp_path / "stopped.pt", "other settings") is None
    torch.manual_seed(123)  # another process: its own RNG, replaced by the saved one
    model, curve = make(), []
    t = run_wsod(model, items, state_file=tmp_path / "stopped.pt", fingerprint="fp",
                 resume=state, on_epoch=lambda e, m: curve.append((e, m)), **kw)
    full, full_curve = runs["unbroken"]
    assert t["steps"] == 5 if name == "mist" else 6
    assert runs["stopped"][1] + curve == full_curve  # epochs 0 | 1, 2: the same losses
    assert full.state_dict().keys() == model.state_dict().keys()
    for k, v in full.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k
    assert _same(*(torch.load(tmp_path / f"{t}.pt", weights_only=False)
                   for t in ("stopped", "unbroken")))  # optimisers, schedulers, RNG too
    args = ([it.image_id for it in items], lambda i: items[i].pixels,
            {it.image_id: it.boxes for it in items}, [1, 2, 3])
    assert detect_split(model, *args, **DET) == detect_split(full, *args, **DET)
    assert resumable(tmp_path / "stopped.pt", "fp") is None  # finished: not resumed again
