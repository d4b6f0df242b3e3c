"""MIST: top-p + spatial pseudo-label mining, box regression loss, Concrete DropBlock."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import box_iou

from tests.wsod.conftest import tiny_backbone
from weaksam.wsod.mist import MIST, ConcreteDropBlock
from weaksam.wsod.segments import RoIBatch


def _mist(**kw) -> MIST:
    torch.manual_seed(0)
    return MIST(tiny_backbone(), 2, roi_size=3, hidden=8, **kw)


def test_seeds_floor_top_p_and_spatial_check_against_every_higher_ranked_candidate():
    # wetectron mist_layer: k = int(R p); candidate ii kept iff max IoU with candidates
    # [:ii] (kept or not) < 0.2. A chain A - B - C: B overlaps A (IoU 1/3), C overlaps only B
    # (IoU 1/3); B is dropped and C with it, although C does not overlap the kept A (NMS
    # would keep C). D is apart.
    m = _mist(top_p=0.5, spatial_iou=0.2)
    a, b, c, d = [0, 0, 10, 10], [5, 0, 15, 10], [10, 0, 20, 10], [40, 40, 50, 50]
    low = [[60, 60, 70, 70], [80, 80, 90, 90], [0, 60, 10, 70], [60, 0, 70, 10]]
    boxes = torch.tensor([a, b, c, d, *low], dtype=torch.float32)
    scores = torch.tensor([[0.9, 0], [0.8, 0], [0.7, 0], [0.6, 0]] + [[0.01, 0]] * 4)
    batch = RoIBatch.of([boxes], [torch.tensor([1.0, 0.0])])
    sb, sc, ss, _ = m.seeds(scores, batch)  # k = int(8 * 0.5) = 4: A, B, C, D
    assert torch.equal(sb, boxes[[0, 3]]) and sc.tolist() == [1, 1]
    assert torch.allclose(ss, torch.tensor([0.9, 0.6]))
    m.top_p = 0.49  # int(3.92) = 3 (floor, not ceil): A, B, C -> A only
    sb, _, _, _ = m.seeds(scores, batch)
    assert torch.equal(sb, boxes[[0]])
    m.top_p = 0.01  # int(0.08) = 0: at least the top one (wetectron's k = 0 is an error)
    sb, _, _, _ = m.seeds(scores, batch)
    assert torch.equal(sb, boxes[[0]])
    # a batch: top-p of each image's own proposals (4 -> 2 candidates: A, B | C, D)
    m.top_p = 0.5
    two = RoIBatch.of([boxes[:4], boxes[4:]], [torch.tensor([1.0, 0.0])] * 2)
    sc2 = torch.cat([scores[:4], torch.tensor([[0.5, 0], [0.4, 0], [0.3, 0], [0.2, 0]])])
    sb, sc, ss, si = m.seeds(sc2, two)
    assert torch.equal(sb, boxes[[0, 4, 5]]) and si.tolist() == [0, 1, 1]


def _seeds_one_pair_at_a_time(m: MIST, boxes: list, scores: list, labels: list) -> list:
    """Reference: wetectron's mist_layer, image by image, class by class, written as there:
    k = int(R p) (at least 1), then ``keep[ii] = max(iou[ii, :ii]) < tau``."""
    out = []
    for i, (b, sc, y) in enumerate(zip(boxes, scores, labels, strict=True)):
        k = max(1, int(len(b) * m.top_p))
        for c in torch.nonzero(y > 0).flatten().tolist():
            top = torch.argsort(sc[:, c], descending=True, stable=True)[:k]
            iou = box_iou(b[top], b[top])
            for ii in range(k):
                if ii == 0 or float(iou[ii, :ii].max()) < m.spatial_iou:
                    j = int(top[ii])
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
    assert m.reg_beta == 1.0  # wetectron: smooth_l1_loss(..., beta=1)
    boxes = torch.tensor([[0, 0, 10, 10], [1, 0, 11, 10], [30, 30, 40, 40.]])
    gt = torch.tensor([[0, 0, 10, 10.]] * 3)
    t = {"labels": torch.tensor([1, 1, 0]), "weights": torch.tensor([0.5, 0.5, 0.5]),
         "gt_boxes": gt, "fg": torch.tensor([True, True, False]),
         "reg_target": m.coder.encode_single(gt, boxes)}
    out = {"reg": [torch.zeros(3, 3, 4)]}
    loss = m.loss_reg(out, {"k": 0, "refine": [t]})
    assert loss[0].item() == 0.0 and loss[2].item() == 0.0  # exact box; background
    # box 1 is shifted by 1 px: target dx = 10 * (-1 / 10) = -1 -> smooth L1 with beta 1:
    # 0.5 * 1^2 / 1 = 0.5; times weight 0.5 and reg_weight 2
    assert loss[1].item() == pytest.approx(0.5, rel=1e-5)


def test_loss_weights_first_branch_x3_and_mil_mean_over_classes():
    # wetectron RoIRegLoss: lmda = 3 for branch 0 (classification and regression), 1 after;
    # loss_img = F.binary_cross_entropy (mean over the class entries)
    m = _mist()
    assert m.mil_reduction == "mean" and m.first_refine_weight == 3.0
    two = RoIBatch.of([torch.zeros(2, 4), torch.zeros(1, 4)], [torch.zeros(2)] * 2)
    red = m.reduce({"mil": torch.tensor([[1.0, 2.0], [0.5, 0.0]]),
                    "refine0": torch.tensor([1.0, 3.0, 7.0]), "reg0": torch.tensor([1.0, 1, 1]),
                    "refine1": torch.tensor([1.0, 3.0, 7.0]), "reg1": torch.tensor([1.0, 1, 1])},
                   two)
    assert red["mil"].tolist() == [1.5, 0.25]
    assert red["refine0"].tolist() == [6.0, 21.0] and red["reg0"].tolist() == [3.0, 3.0]
    assert red["refine1"].tolist() == [2.0, 7.0] and red["reg1"].tolist() == [1.0, 1.0]


def _constant_scorer(cdb: ConcreteDropBlock, value: float) -> None:
    """Make the light scorer output ``value`` at every cell."""
    with torch.no_grad():
        for q in cdb.net.parameters():
            q.zero_()
        cdb.net[2].bias.fill_(value)


def test_dropblock_seed_probability_and_hard_bernoulli_samples():
    # wetectron ConvConcreteDB: p = sigmoid(score) * gamma, gamma = TAU / SIZE^2; a hard
    # Gumbel-softmax over (log p, log 1 - p) is a Bernoulli(p) draw (Gumbel-max)
    cdb = ConcreteDropBlock(2, block=1, rate=0.5, temperature=0.01, net="light", hidden=2)
    _constant_scorer(cdb, 0.0)  # sigmoid(0) = 0.5 -> p = 0.25
    x = torch.ones(4000, 2, 3, 3)
    cdb.train()
    y, p = cdb(x, torch.Generator().manual_seed(0))
    assert torch.allclose(p, torch.full_like(p, 0.25))
    dropped = (y[:, 0] == 0).float()
    assert dropped.mean().item() == pytest.approx(0.25, abs=0.01)
    # hard: every cell is either dropped (0) or kept and rescaled by cells / kept cells
    kept = y[:, 0][y[:, 0] != 0]
    assert torch.allclose(kept, torch.full_like(kept, x[:, 0].numel() / kept.numel()))
    cdb.eval()
    y, _ = cdb(x)
    assert torch.equal(y, x)


def test_dropblock_expands_a_seed_to_a_block_and_gets_a_straight_through_gradient():
    cdb = ConcreteDropBlock(1, block=3, rate=9.0, temperature=0.01, net="light", hidden=1)
    _constant_scorer(cdb, 30.0)  # p = sigmoid(30) * 9 / 9 ~ 1: seeds everywhere
    with torch.no_grad():  # ... except where the scorer sees a low feature
        cdb.net[0].weight.fill_(1.0)
        cdb.net[2].weight.zero_()
        cdb.net[2].weight[0, 0, 1, 1] = 1000.0
        cdb.net[2].bias.fill_(-500.0)
    x = torch.full((1, 1, 5, 5), 0.1)  # score 1000 * 0.1 - 500 < 0: p = 0
    x[0, 0, 0, 0] = 1.0  # the only seed: score +500, p = 1
    cdb.train()
    y, p = cdb(x, torch.Generator().manual_seed(0))
    assert p[0, 0].item() == pytest.approx(1.0) and p[0, 1:].max().item() < 1e-30
    expect = torch.full((5, 5), 0.1 * 25 / 21)  # 21 cells kept, rescaled to keep the mean
    expect[:2, :2] = 0.0  # the 3 x 3 block around the corner seed, clipped to the map
    assert torch.allclose(y[0, 0], expect)
    x2 = torch.ones(1, 1, 5, 5)
    y2, _ = ConcreteDropBlock(1, block=3, rate=0.0, net="light", hidden=1).train()(x2)
    assert torch.equal(y2, x2)  # rate 0: identity (wetectron's drop_prob == 0)
    # straight-through: the scorer gets a gradient through the hard sample
    cdb2 = ConcreteDropBlock(3, block=2, rate=0.3, temperature=0.5, net="released").train()
    xr = torch.rand(6, 3, 4, 4) + 0.1
    yr, _ = cdb2(xr, torch.Generator().manual_seed(3))
    (yr * torch.randn(6, 3, 4, 4, generator=torch.Generator().manual_seed(4))).sum().backward()
    assert all(q.grad is not None and q.grad.abs().sum() > 0 for q in cdb2.parameters())


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
