"""RoI drop (paper Eq. 1-2): per-RoI losses, the drop mask, the reduction, NaN handling.

Equality with torchvision (drop off) is checked to 1e-6 on the same inputs: against
``fastrcnn_loss`` directly, and through a whole ``RoIHeads`` forward with shared weights.
"""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss
from torchvision.ops import MultiScaleRoIAlign

from tests.retrain.conftest import DROP
from weaksam.errors import TrainingError
from weaksam.retrain.frcnn import DropRoIHeads
from weaksam.retrain.roi_drop import (
    RoiDropConfig,
    drop_mask,
    normalize_losses,
    per_roi_losses,
    reduce_losses,
    roi_drop_loss,
)


def _random_inputs(r: int = 40, k: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(r, k + 1, generator=g) * 3
    deltas = torch.randn(r, (k + 1) * 4, generator=g)
    labels = torch.randint(0, k + 1, (r,), generator=g)
    targets = torch.randn(r, 4, generator=g)
    return logits, deltas, labels, targets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_drop_equals_torchvision_fastrcnn_loss(seed):
    logits, deltas, labels, targets = _random_inputs(seed=seed)
    ref_cls, ref_reg = fastrcnn_loss(logits, deltas, [labels[:25], labels[25:]],
                                     [targets[:25], targets[25:]])
    cls, reg, info = roi_drop_loss(logits, deltas, labels, targets, active=False, tau_cls=4.0,
                                   tau_reg=1.0, rule="either")
    assert cls.item() == pytest.approx(ref_cls.item(), abs=1e-6)
    assert reg.item() == pytest.approx(ref_reg.item(), abs=1e-6)
    assert bool(info["keep"].all())
    # thresholds above every loss: active drop changes nothing either
    cls2, reg2, _ = roi_drop_loss(logits, deltas, labels, targets, active=True, tau_cls=1e9,
                                  tau_reg=1e9, rule="either")
    assert cls2.item() == pytest.approx(ref_cls.item(), abs=1e-6)
    assert reg2.item() == pytest.approx(ref_reg.item(), abs=1e-6)


def test_per_roi_losses_hand_computed():
    # 2 classes + background; RoI 0 background, RoI 1 class 2
    logits = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    deltas = torch.zeros(2, 12)
    deltas[1, 8:12] = torch.tensor([1.0, 0.05, 0.0, 0.0])  # class 2's deltas
    labels = torch.tensor([0, 2])
    targets = torch.zeros(2, 4)
    l_cls, l_reg = per_roi_losses(logits, deltas, labels, targets, smooth_l1_beta=1 / 9)
    e = torch.exp(torch.tensor(2.0))
    assert l_cls[0].item() == pytest.approx(torch.log(torch.tensor(3.0)).item(), abs=1e-6)
    assert l_cls[1].item() == pytest.approx((-torch.log(e / (2 + e))).item(), abs=1e-6)
    # smooth-L1, beta 1/9: |1| -> 1 - 1/18; |0.05| -> 0.5 * 0.05^2 * 9
    assert l_reg[0].item() == 0.0
    assert l_reg[1].item() == pytest.approx(1 - 1 / 18 + 0.5 * 0.05**2 * 9, abs=1e-6)


def test_drop_mask_hand_built():
    l_cls = torch.tensor([0.5, 4.0, 4.01, 0.1, 9.0, 3.0])
    l_reg = torch.tensor([0.2, 1.0, 0.0, 1.5, 2.0, 0.0])
    keep = drop_mask(l_cls, l_reg, tau_cls=4.0, tau_reg=1.0, rule="either")
    # Eq. 1: kept iff both losses are at or under their thresholds (equality keeps)
    assert keep.tolist() == [True, True, False, False, False, True]
    both = drop_mask(l_cls, l_reg, tau_cls=4.0, tau_reg=1.0, rule="both")
    assert both.tolist() == [True, True, True, True, False, True]


def test_reduction_keeps_the_denominator():
    l_cls = torch.tensor([1.0, 2.0, 6.0, 3.0])
    l_reg = torch.tensor([0.0, 0.5, 0.5, 2.0])
    keep = torch.tensor([True, True, False, False])
    cls, reg = reduce_losses(l_cls, l_reg, keep)
    assert cls.item() == pytest.approx((1.0 + 2.0) / 4)
    assert reg.item() == pytest.approx(0.5 / 4)


def test_dropped_rois_get_no_gradient():
    logits, deltas, labels, targets = _random_inputs(r=30, seed=4)
    logits.requires_grad_(True)
    cls, reg, info = roi_drop_loss(logits, deltas, labels, targets, active=True, tau_cls=2.0,
                                   tau_reg=1.0, rule="either")
    (cls + reg).backward()
    dropped = ~info["keep"]
    assert dropped.any() and info["keep"].any()
    assert torch.all(logits.grad[dropped] == 0)
    assert torch.all(logits.grad[info["keep"]].abs().sum(1) > 0)


def test_range_normalisation():
    v = torch.tensor([1.0, 3.0, 5.0])
    assert normalize_losses(v, "range").tolist() == pytest.approx([0.25, 0.75, 1.25])
    assert normalize_losses(v, "none").tolist() == [1.0, 3.0, 5.0]
    with pytest.raises(ValueError):
        normalize_losses(v, "minmax")


def test_nan_loss_is_a_clear_error():
    logits, deltas, labels, targets = _random_inputs(seed=5)
    logits[3, 0] = float("nan")
    with pytest.raises(TrainingError, match="non-finite per-RoI loss"):
        roi_drop_loss(logits, deltas, labels, targets, active=True, tau_cls=4.0, tau_reg=1.0,
                      rule="either")


def _heads(cls, **kw):
    torch.manual_seed(0)
    return cls(MultiScaleRoIAlign(["0"], 4, 2), TwoMLPHead(8 * 16, 16), FastRCNNPredictor(16, 4),
               fg_iou_thresh=0.5, bg_iou_thresh=0.5, batch_size_per_image=32,
               positive_fraction=0.25, bbox_reg_weights=None, score_thresh=0.05,
               nms_thresh=0.5, detections_per_img=10, **kw)


def test_roi_heads_without_drop_equal_torchvision_roi_heads():
    g = torch.Generator().manual_seed(1)
    feats = {"0": torch.randn(2, 8, 8, 8, generator=g)}
    proposals = [torch.tensor([[0.0, 0, 20, 20], [5, 5, 40, 30], [10, 12, 60, 50],
                               [30, 30, 63, 63], [2, 40, 20, 60]]) for _ in range(2)]
    proposals = [p + torch.rand(5, 4, generator=g) for p in proposals]
    shapes = [(64, 64), (64, 64)]
    targets = [{"boxes": torch.tensor([[4.0, 4, 22, 21], [28, 30, 62, 62]]),
                "labels": torch.tensor([1, 3])},
               {"boxes": torch.tensor([[8.0, 10, 58, 52]]), "labels": torch.tensor([2])}]
    ref, ours = _heads(RoIHeads), _heads(DropRoIHeads, **asdict(DROP))
    ours.load_state_dict(ref.state_dict())
    ref.train()
    ours.train()
    torch.manual_seed(7)
    _, lr = ref(feats, [p.clone() for p in proposals], shapes, targets)
    torch.manual_seed(7)
    _, lo = ours(feats, [p.clone() for p in proposals], shapes, targets)
    assert set(lr) == set(lo)
    for k in lr:
        assert lo[k].item() == pytest.approx(lr[k].item(), abs=1e-6), k
    ref.eval()
    ours.eval()
    dr, _ = ref(feats, proposals, shapes)
    do, _ = ours(feats, proposals, shapes)
    for a, b in zip(dr, do, strict=True):
        assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["scores"], b["scores"])


def _release_losses(logits, deltas, labels, targets, thr_cls, thr_reg):
    """The release's drop (retraining/SoS-WSOD/detectron2 ``modeling/roi_heads/fast_rcnn.py``,
    ``losses()`` and ``box_reg_loss()`` with ``instance_drop``), in detectron2's label
    convention turned to torchvision's (background 0), with its two slips fixed as the code
    intends: ``filter_indices[0]`` (the published ``torch.concat([register, filter_indices])``
    gets ``torch.where``'s tuple) and the regression zeroed at the same RoIs, divided by R
    as detectron2's non-drop path. Loss per RoI: CE; L1 (SMOOTH_L1_BETA 0) summed over the 4
    deltas of the RoI's class, foreground only."""
    r = logits.shape[0]
    fg_inds = torch.where(labels > 0)[0]
    fg_pred = deltas.view(r, -1, 4)[fg_inds, labels[fg_inds]]
    loss_ins_sum = (fg_pred - targets[fg_inds]).abs().sum(dim=1)            # (F,)
    register = fg_inds[torch.where(loss_ins_sum > thr_reg)]                  # RoI indices
    cls_loss = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    filter_indices = torch.where(cls_loss > thr_cls)
    combined = torch.concat([register, filter_indices[0]])
    vals, counts = combined.unique(return_counts=True)
    intersection = vals[counts > 1]
    cls_loss = cls_loss.clone()
    cls_loss[intersection] *= 0
    drop_fg = torch.isin(fg_inds, intersection)
    loss_ins_sum = loss_ins_sum * (~drop_fg)
    return cls_loss.mean(), loss_ins_sum.sum() / r, intersection


def test_release_concat_of_the_where_tuple_is_a_type_error():
    # the published line: ``filter_indices`` is torch.where's tuple, not a tensor
    register = torch.tensor([1, 2])
    filter_indices = torch.where(torch.tensor([0.0, 5.0, 5.0]) > 4.0)
    with pytest.raises(TypeError):
        torch.concat([register, filter_indices])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_both_rule_with_plain_l1_is_the_release_drop(seed):
    logits, deltas, labels, targets = _random_inputs(r=64, seed=seed)
    logits = logits * 2  # CE over 4 on some RoIs
    targets = targets * 3  # summed L1 over 4 on some foreground RoIs
    ref_cls, ref_reg, inter = _release_losses(logits, deltas, labels, targets, 4.0, 4.0)
    cls, reg, info = roi_drop_loss(logits, deltas, labels, targets, active=True, tau_cls=4.0,
                                   tau_reg=4.0, rule="both", smooth_l1_beta=0.0)
    assert len(inter) > 0 and len(inter) < int((labels > 0).sum())  # a real test
    assert set(torch.where(~info["keep"])[0].tolist()) == set(inter.tolist())
    assert cls.item() == pytest.approx(ref_cls.item(), abs=1e-6)
    assert reg.item() == pytest.approx(ref_reg.item(), abs=1e-6)
    # the paper's Eq. 1 ("either") drops more: a different rule, not the release's
    _, _, info_e = roi_drop_loss(logits, deltas, labels, targets, active=True, tau_cls=4.0,
                                 tau_reg=4.0, rule="either", smooth_l1_beta=0.0)
    assert int((~info_e["keep"]).sum()) > len(inter)


def test_paper_profiles_use_the_release_drop():
    from pathlib import Path

    import yaml

    from weaksam.profiles import deep_merge, resolve_profile
    root = Path(__file__).resolve().parents[2]
    base = yaml.safe_load((root / "params.yaml").read_text())
    assert base["retrain"]["frcnn"]["drop"]["smooth_l1_beta"] == pytest.approx(1 / 9, abs=1e-4)
    for name, tau_cls in (("paper_voc07", 4.0), ("paper_voc12", 4.0), ("paper_coco", 5.0)):
        fr = deep_merge(base, resolve_profile(name, root / "configs"))["retrain"]["frcnn"]
        d = fr["drop"]
        assert (d["rule"], d["tau_reg"], d["smooth_l1_beta"]) == ("both", 4.0, 0.0), name
        assert d["tau_cls"] == tau_cls and fr["variants"]["drop"]["tau_cls"] == tau_cls
        assert fr["variants"]["drop"]["tau_reg"] == 4.0
        assert (fr["variants"]["reg0p8"]["tau_reg"], fr["variants"]["reg1p2"]["tau_reg"]) == (
            3.2, 4.8)


def test_rule_has_no_default_and_config_checks_it():
    # the rule comes from params.yaml only (its default used to be "either" where params runs
    # "both"): leaving it out is an error, an unknown one too
    l_cls, l_reg = torch.tensor([5.0, 0.5]), torch.tensor([0.5, 0.5])
    with pytest.raises(TypeError):
        drop_mask(l_cls, l_reg, 4.0, 1.0)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="rule must be one of"):
        RoiDropConfig(tau_cls=4.0, tau_reg=1.0, normalize="none", rule="any",
                      smooth_l1_beta=0.0)
    with pytest.raises(ValueError, match="normalize must be one of"):
        RoiDropConfig(tau_cls=4.0, tau_reg=1.0, normalize="max", rule="both",
                      smooth_l1_beta=0.0)
