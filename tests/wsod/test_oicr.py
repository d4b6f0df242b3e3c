"""OICR: seed assignment, MIL and refinement losses (worked by hand), gradients, inference."""

from __future__ import annotations

import math

import torch

from tests.wsod.conftest import tiny_backbone
from weaksam.wsod.oicr import OICR, assign_to_seeds
from weaksam.wsod.segments import RoIBatch


def test_assign_to_seeds_by_iou():
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 9], [0, 0, 10, 4], [20, 20, 30, 30.]])
    seeds = torch.tensor([[0, 0, 10, 10.], [20, 20, 30, 30.]])
    t = assign_to_seeds(boxes, seeds, torch.tensor([2, 1]), torch.tensor([0.8, 0.6]),
                        fg_iou=0.5, bg_ignore_iou=0.1)
    # IoUs with seed 0: 1.0, 0.9, 0.4 (40/100); box 3 matches seed 1 exactly
    assert t["labels"].tolist() == [2, 2, 0, 1]
    assert torch.allclose(t["weights"], torch.tensor([0.8, 0.8, 0.8, 0.6]))
    assert t["fg"].tolist() == [True, True, False, True]
    t2 = assign_to_seeds(boxes, seeds, torch.tensor([2, 1]), torch.tensor([0.8, 0.6]),
                         fg_iou=0.5, bg_ignore_iou=0.5)
    assert t2["weights"].tolist()[2] == 0.0  # IoU 0.4 < 0.5: ignored


def test_assign_in_a_batch_matches_seeds_of_the_same_image_only():
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10.]])
    seeds = torch.tensor([[0, 0, 10, 10.], [0, 0, 10, 9.]])
    t = assign_to_seeds(boxes, seeds, torch.tensor([2, 1]), torch.tensor([0.8, 0.6]),
                        fg_iou=0.5, bg_ignore_iou=0.0, seg=torch.tensor([0, 1, 2]),
                        seed_seg=torch.tensor([0, 1]))
    # image 1's box only sees its own seed (IoU 0.9), never image 0's exact one; image 2 has
    # no seed at all: background with weight 0
    assert t["labels"].tolist() == [2, 1, 0]
    assert torch.allclose(t["weights"], torch.tensor([0.8, 0.6, 0.0]))
    assert t["fg"].tolist() == [True, True, False]


def test_seeds_are_top_proposal_per_present_class():
    m = OICR(tiny_backbone(), 3, roi_size=2, hidden=8)
    boxes = torch.arange(12.).view(3, 4)
    scores = torch.tensor([[0.1, 0.9, 0.3], [0.7, 0.2, 0.1], [0.2, 0.5, 0.8]])
    one = RoIBatch.of([boxes], [torch.tensor([1.0, 0.0, 1.0])])
    sb, sc, ss, si = m.seeds(scores, one)
    assert sc.tolist() == [1, 3] and si.tolist() == [0, 0]
    assert torch.equal(sb, boxes[[1, 2]])
    assert torch.allclose(ss, torch.tensor([0.7, 0.8]))
    # two images: each image's own top proposal, never one of the other image
    two = RoIBatch.of([boxes[:2], boxes[2:]],
                      [torch.tensor([1.0, 1, 0]), torch.tensor([1.0, 0, 0])])
    sb, sc, ss, si = m.seeds(scores, two)
    assert sc.tolist() == [1, 2, 1] and si.tolist() == [0, 0, 1]
    assert torch.equal(sb, boxes[[1, 0, 2]])


def test_a_proposal_taken_by_one_class_is_not_a_seed_of_the_next():
    # OICR release (lib/oicr_layer/layer.py): classes in ascending order; after class c takes
    # proposal j, cls_prob[j, :] = 0, so a later class takes its next-best proposal
    m = OICR(tiny_backbone(), 3, roi_size=2, hidden=8)
    boxes = torch.arange(16.).view(4, 4)
    scores = torch.tensor([[0.9, 0.8, 0.1], [0.1, 0.6, 0.2], [0.0, 0.1, 0.3], [0.0, 0.0, 0.0]])
    both = torch.tensor([1.0, 1.0, 0.0])
    sb, sc, ss, si = m.seeds(scores, RoIBatch.of([boxes], [both]))
    assert sc.tolist() == [1, 2] and torch.equal(sb, boxes[[0, 1]])  # class 2 loses row 0
    assert torch.allclose(ss, torch.tensor([0.9, 0.6]))
    # three classes all preferring row 0 once the others are gone: rows 0, 1, 2
    s3 = torch.tensor([[0.9, 0.8, 0.7], [0.1, 0.6, 0.5], [0.0, 0.1, 0.3], [0.0, 0.0, 0.0]])
    sb, sc, ss, _ = m.seeds(s3, RoIBatch.of([boxes], [torch.ones(3)]))
    assert torch.equal(sb, boxes[[0, 1, 2]]) and torch.allclose(ss, torch.tensor([.9, .6, .3]))
    # every row taken: the later class reads zeros and takes the first row (argmax of zeros)
    sb, sc, ss, _ = m.seeds(s3[:2], RoIBatch.of([boxes[:2]], [torch.ones(3)]))
    assert torch.equal(sb, boxes[[0, 1, 0]]) and ss.tolist()[2] == 0.0
    # in a batch each image removes only its own proposals: same seeds as image by image
    batch = RoIBatch.of([boxes, boxes[:2]], [both, torch.ones(3)])
    sb, sc, ss, si = m.seeds(torch.cat([scores, s3[:2]]), batch)
    assert si.tolist() == [0, 0, 1, 1, 1] and sc.tolist() == [1, 2, 1, 2, 3]
    assert torch.equal(sb, torch.cat([boxes[[0, 1]], boxes[[0, 1, 0]]]))


def test_mil_and_refine_losses_by_hand():
    m = OICR(tiny_backbone(), 2, roi_size=2, hidden=8, refine_times=1)
    mil = torch.tensor([[0.3, 0.1], [0.2, 0.05]])  # image scores: 0.5, 0.15
    out = {"mil": mil, "refine": [torch.zeros(2, 3)]}
    batch = RoIBatch.of([torch.zeros(2, 4)], [torch.tensor([1.0, 0.0])])
    tgt = {"batch": batch, "k": 0,
           "refine": [{"labels": torch.tensor([1, 0]), "weights": torch.tensor([0.5, 0.25])}]}
    assert torch.allclose(m.loss_mil(out, tgt),
                          torch.tensor([[-math.log(0.5), -math.log(0.85)]]))
    # uniform logits over 3 columns: CE = log 3 for each proposal, times its weight
    assert torch.allclose(m.loss_refine(out, tgt), torch.tensor([0.5, 0.25]) * math.log(3))
    # per image: mil summed over classes, per-proposal losses averaged over the image's R
    two = RoIBatch.of([torch.zeros(2, 4), torch.zeros(1, 4)], [torch.zeros(2)] * 2)
    red = m.reduce({"mil": torch.tensor([[1.0, 2.0], [0.5, 0.0]]),
                    "refine0": torch.tensor([1.0, 3.0, 7.0])}, two)
    assert red["mil"].tolist() == [3.0, 0.5] and red["refine0"].tolist() == [2.0, 7.0]


def test_targets_chain_branches_and_mil_softmax_over_proposals():
    torch.manual_seed(0)
    m = OICR(tiny_backbone(), 3, roi_size=2, hidden=8)
    feats = torch.randn(5, 8)
    o = m.heads(feats)
    # WSDDN: detection softmax is over proposals, so each class column of mil sums to <= 1
    assert torch.all(o["mil"].sum(0) <= 1 + 1e-6)
    boxes = torch.tensor([[0, 0, 4, 4], [1, 1, 5, 5], [10, 10, 20, 20], [0, 0, 20, 20],
                          [2, 2, 6, 6.]])
    tg = m.targets(o, RoIBatch.of([boxes], [torch.tensor([0.0, 1.0, 0.0])]))
    assert len(tg) == 3
    top = o["mil"][:, 1].argmax()
    assert tg[0]["labels"][top] == 2  # the top MIL proposal of class index 1 is labelled 2


def test_a_batch_gives_each_image_the_losses_it_gets_alone():
    torch.manual_seed(0)
    m = OICR(tiny_backbone(), 3, roi_size=2, hidden=8)
    m.train()
    imgs = [torch.randn(3, 32, 32), torch.randn(3, 24, 40), torch.randn(3, 32, 28)]
    boxes = [torch.tensor([[0, 0, 16, 16], [8, 8, 30, 30.], [4, 4, 12, 20]]),
             torch.tensor([[2, 2, 20, 20.]]), torch.tensor([[0, 0, 27, 31], [5, 5, 9, 9.]])]
    labels = [torch.tensor([1.0, 0, 1]), torch.tensor([0, 1.0, 0]), torch.tensor([0, 0, 1.0])]
    together = m(imgs, boxes, labels, [None] * 3)
    for i in range(3):
        alone = m(imgs[i : i + 1], boxes[i : i + 1], labels[i : i + 1], [None])
        for k, v in alone.items():
            assert torch.allclose(together[k][i], v[0], rtol=1e-5, atol=1e-6), (i, k)


def test_every_trainable_parameter_gets_a_gradient():
    torch.manual_seed(0)
    m = OICR(tiny_backbone(), 3, roi_size=2, hidden=8)
    m.train()
    imgs = [torch.randn(3, 32, 32), torch.randn(3, 24, 32)]
    boxes = [torch.tensor([[0, 0, 16, 16], [8, 8, 30, 30.]]), torch.tensor([[2, 2, 20, 20.]])]
    labels = [torch.tensor([1.0, 0, 1]), torch.tensor([0, 1.0, 0])]
    losses = m(imgs, boxes, labels, [None, None])
    assert all(v.shape == (2,) for v in losses.values())
    sum(v.sum() for v in losses.values()).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_frozen_backbone_gets_no_gradient_and_predict_is_a_distribution():
    m = OICR(tiny_backbone(), 3, roi_size=2, hidden=8, freeze_backbone=True)
    assert not any(p.requires_grad for p in m.backbone.parameters())
    fmap = m.backbone.forward_features(torch.randn(1, 3, 32, 32))
    scores, deltas = m.predict(fmap, torch.tensor([[0, 0, 16, 16], [4, 4, 30, 30.]]))
    assert scores.shape == (2, 3) and deltas is None
    assert torch.all(scores >= 0) and torch.all(scores.sum(1) <= 1 + 1e-6)


def test_roi_pool_option():
    m = OICR(tiny_backbone(), 3, roi_op="roi_pool", roi_size=2, hidden=8)
    fmap = torch.randn(1, 8, 8, 8)
    maps = m.roi_head.pool(fmap, torch.tensor([[0, 0, 12, 12.]]))
    # Fast R-CNN roi_pool (stride 4): x2 = 12 / 4 = cell 3 inclusive, so cells 0..3 in 2x2
    # bins of 2 cells; each bin is the max over its cells
    assert torch.allclose(maps[0, :, 0, 0], fmap[0, :, 0:2, 0:2].amax((1, 2)))
