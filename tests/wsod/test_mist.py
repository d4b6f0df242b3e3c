"""MIST: top-p + spatial pseudo-label mining, box regression loss, Concrete DropBlock."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import nms

from tests.wsod.conftest import tiny_backbone
from weaksam.wsod import mist as mist_mod
from weaksam.wsod.mist import MIST, ConcreteDropBlock
from weaksam.wsod.segments import RoIBatch


def _mist(**kw) -> MIST:
    torch.manual_seed(0)
    return MIST(tiny_backbone(), 2, roi_size=3, hidden=8, **kw)


def test_seeds_top_p_then_spatial_selection():
    m = _mist(top_p=0.5, spatial_iou=0.2)
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 9], [20, 20, 30, 30], [40, 40, 50, 50],
                          [60, 60, 70, 70], [0, 0, 9, 10.]])
    scores = torch.tensor([[0.9, 0], [0.8, 0], [0.7, 0], [0.6, 0], [0.1, 0], [0.05, 0]])
    batch = RoIBatch.of([boxes], [torch.tensor([1.0, 0.0])])
    sb, sc, ss, _ = m.seeds(scores, batch)
    # top 50% of 6 = boxes 0, 1, 2; box 1 overlaps box 0 (IoU 0.9 > 0.2) and is dropped
    assert torch.equal(sb, boxes[[0, 2]])
    assert sc.tolist() == [1, 1]
    assert torch.allclose(ss, torch.tensor([0.9, 0.7]))
    # top_p small: at least one candidate per class
    m.top_p = 0.01
    sb, _, _, _ = m.seeds(scores, batch)
    assert torch.equal(sb, boxes[[0]])
    # a batch: top-p of each image's own proposals (3 -> 2 candidates, 3 -> 2)
    m.top_p = 0.5
    two = RoIBatch.of([boxes[:3], boxes[3:]], [torch.tensor([1.0, 0.0])] * 2)
    sb, sc, ss, si = m.seeds(scores, two)
    assert torch.equal(sb, boxes[[0, 3, 4]]) and si.tolist() == [0, 1, 1]


def _seeds_one_pair_at_a_time(m: MIST, boxes: list, scores: list, labels: list) -> list:
    """Reference: MIST Alg. 1 image by image, class by class (top-p, then NMS)."""
    out = []
    for i, (b, sc, y) in enumerate(zip(boxes, scores, labels, strict=True)):
        n_top = max(1, math.ceil(m.top_p * len(b)))
        for c in torch.nonzero(y > 0).flatten().tolist():
            top = torch.argsort(sc[:, c], descending=True, stable=True)[:n_top]
            for j in top[nms(b[top], sc[top, c], m.spatial_iou)].tolist():
                out.append((i, c + 1, tuple(b[j].tolist()), float(sc[j, c])))
    return out


def test_batched_seeds_equal_the_per_image_per_class_loop():
    g = torch.Generator().manual_seed(0)
    m = MIST(tiny_backbone(), 4, roi_size=3, hidden=8, top_p=0.3, spatial_iou=0.2)
    for trial in range(20):
        sizes = torch.randint(1, 40, (3,), generator=g).tolist()
        boxes = []
        for n in sizes:
            xy = torch.rand(n, 2, generator=g) * 100
            boxes.append(torch.cat([xy, xy + 5 + torch.rand(n, 2, generator=g) * 60], 1))
        scores = [torch.rand(n, 4, generator=g) for n in sizes]
        labels = [(torch.rand(4, generator=g) < 0.5).float() for _ in sizes]
        sb, sc, ss, si = m.seeds(torch.cat(scores), RoIBatch.of(boxes, labels))
        got = [(int(i), int(c), tuple(b.tolist()), float(s))
               for b, c, s, i in zip(sb, sc, ss, si, strict=True)]
        assert got == _seeds_one_pair_at_a_time(m, boxes, scores, labels), trial


def test_regression_loss_zero_on_the_seed_and_positive_off_it():
    m = _mist(refine_times=1, reg_weight=2.0)
    boxes = torch.tensor([[0, 0, 10, 10], [1, 0, 11, 10], [30, 30, 40, 40.]])
    gt = torch.tensor([[0, 0, 10, 10.]] * 3)
    t = {"labels": torch.tensor([1, 1, 0]), "weights": torch.tensor([0.5, 0.5, 0.5]),
         "gt_boxes": gt, "fg": torch.tensor([True, True, False]),
         "reg_target": m.coder.encode_single(gt, boxes)}
    out = {"reg": [torch.zeros(3, 3, 4)]}
    loss = m.loss_reg(out, {"k": 0, "refine": [t]})
    assert loss[0].item() == 0.0 and loss[2].item() == 0.0  # exact box; background
    # box 1 is shifted by 1 px: target dx = 10 * (-1 / 10) = -1 -> smooth L1 (beta 1/9)
    # = 1 - 0.5 / 9; times weight 0.5 and reg_weight 2
    assert loss[1].item() == pytest.approx(1 - 0.5 / 9, rel=1e-5)


def test_grad_reverse_negates():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    (mist_mod._GradReverse.apply(x) * torch.tensor([3.0, 4.0])).sum().backward()
    assert x.grad.tolist() == [-3.0, -4.0]


def test_concrete_dropblock_is_adversarial_and_identity_in_eval(monkeypatch):
    torch.manual_seed(0)
    cdb = ConcreteDropBlock(4, block=3, rate=0.3, temperature=0.5, hidden=4)
    x = torch.rand(2, 4, 5, 5) + 0.1
    w = torch.randn(2, 4, 5, 5)

    def grads() -> list[torch.Tensor]:
        cdb.zero_grad()
        y, p = cdb(x, torch.Generator().manual_seed(1))
        assert y.shape == x.shape and p.shape == (2, 25)
        (y * w).sum().backward()
        return [q.grad.clone() for q in cdb.parameters()]

    cdb.train()
    adv = grads()
    monkeypatch.setattr(mist_mod._GradReverse, "apply", staticmethod(lambda t: t))
    plain = grads()
    # the module ascends the detector's loss: its gradient is exactly the negated one
    for a, b in zip(adv, plain, strict=True):
        assert torch.allclose(a, -b)
    cdb.eval()
    y, _ = cdb(x)
    assert torch.equal(y, x)


def test_dropblock_drops_a_whole_block_where_the_scores_peak():
    # 5 x 5 map of ones with a brighter centre; rate 0.36, block 3: DropBlock's seed rate
    # gamma = 0.36 / 9 = 0.04, i.e. 0.04 * 25 = 1 expected seed, all on the centre cell
    cdb = ConcreteDropBlock(1, block=3, rate=0.36, temperature=0.01, hidden=1)
    with torch.no_grad():
        cdb.net[0].weight.fill_(1.0)
        cdb.net[0].bias.zero_()
        cdb.net[2].weight.zero_()
        cdb.net[2].weight[0, 0, 1, 1] = 100.0
        cdb.net[2].bias.zero_()
    x = torch.ones(1, 1, 5, 5)
    x[0, 0, 2, 2] = 2.0
    cdb.train()
    y, p = cdb(x, torch.Generator().manual_seed(0))
    assert p.sum().item() == pytest.approx(1.0, abs=1e-3)  # the seed budget, by construction
    expect = torch.full((5, 5), 25 / 16)  # 16 kept cells rescaled to keep the mean
    expect[1:4, 1:4] = 0.0  # the 3 x 3 block around the centre seed is dropped
    assert torch.allclose(y[0, 0], expect, atol=1e-3)


def test_dropblock_on_a_batch_equals_each_image_alone():
    torch.manual_seed(0)
    cdb = ConcreteDropBlock(4, block=2, rate=0.3, temperature=0.5, hidden=4).train()
    x = torch.rand(5, 4, 4, 4) + 0.1
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    y, _ = cdb(x, gens, sizes=[3, 2])
    # the same draws and per-image mean rescaling as two separate calls
    a, _ = cdb(x[:3], torch.Generator().manual_seed(1))
    b, _ = cdb(x[3:], torch.Generator().manual_seed(2))
    assert torch.allclose(y, torch.cat([a, b]), rtol=1e-6)


def test_mist_losses_and_prediction():
    m = _mist(cdb_rate=0.3, cdb_block=1)
    m.train()
    imgs = [torch.randn(3, 32, 32)]
    boxes = [torch.tensor([[0, 0, 16, 16], [8, 8, 30, 30], [2, 2, 18, 18.]])]
    out = m(imgs, boxes, [torch.tensor([1.0, 0.0])], [torch.Generator().manual_seed(0)])
    assert set(out) == {"mil", "refine0", "refine1", "refine2", "reg0", "reg1", "reg2"}
    sum(v.sum() for v in out.values()).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None, name
    fmap = m.backbone.forward_features(imgs[0][None])
    scores, deltas = m.predict(fmap, boxes[0])
    assert scores.shape == (3, 2) and deltas.shape == (3, 2, 4)
