"""WeakSAM proposals (weaksam/proposals/sam.py): boxes from low-res logits, prompt policy,
duplicate removal per source, batching invariance, empty images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.sam.tiny import TINY_SAM
from weaksam.proposals.sam import (
    PromptingConfig,
    SamPromptProposer,
    boxes_from_lowres,
    dedup_and_sort,
    prepare_points,
    select_masks,
)
from weaksam.sam.model import build_small_sam

TINY = TINY_SAM


def test_boxes_from_lowres_block_and_scale():
    # frame 8, low-res 4 (factor 2): logits positive on low-res cells rows 1..2, col 1.
    low = torch.full((1, 2, 4, 4), -10.0)
    low[0, 0, 1:3, 1] = 10.0
    # input 8x8 == original 8x8: bilinear upsampling of a +-10 step crosses 0 midway between
    # cell centres, so cells 1..2 (pixels 2..5) map to rows 2..5 and column 1 to pixels 2..3.
    boxes, valid = boxes_from_lowres(low, (8, 8), (8, 8), frame=8)
    assert valid.tolist() == [[True, False]]
    assert boxes[0, 0].tolist() == [2.0, 2.0, 4.0, 6.0]
    assert boxes[0, 1].tolist() == [0.0, 0.0, 0.0, 0.0]
    # the same logits, input frame 8 x 4 (w=4) of an original 16 x 12 image: crop, then scale
    # x by 12/4 = 3 and y by 16/8 = 2.
    boxes, _ = boxes_from_lowres(low, (8, 4), (16, 12), frame=8)
    assert boxes[0, 0].tolist() == [6.0, 4.0, 12.0, 12.0]


def test_boxes_from_lowres_batch_invariant():
    g = torch.Generator().manual_seed(0)
    low = torch.randn(37, 2, 16, 16, generator=g) * 3
    full, _ = boxes_from_lowres(low, (30, 25), (61, 50), frame=32)
    parts = torch.cat([boxes_from_lowres(low[i : i + 5], (30, 25), (61, 50), 32)[0]
                       for i in range(0, 37, 5)])
    assert torch.equal(full, parts)


def test_prepare_points_clip_and_drop():
    pts = np.array([[5, 5], [-3, 2], [10, 30], [np.nan, 1]], np.float32)
    p, keep = prepare_points(pts, width=10, height=20, outside="clip")
    assert keep.tolist() == [True, True, True, False]
    assert p.tolist() == [[5, 5], [0, 2], [9, 19]]
    p, keep = prepare_points(pts, width=10, height=20, outside="drop")
    assert keep.tolist() == [True, False, False, False]
    assert p.tolist() == [[5, 5]]


def test_dedup_keeps_best_per_source_and_orders():
    boxes = np.array([[0, 0, 4, 4], [0, 0, 4, 4], [0, 0, 4, 4], [1, 1, 5, 5]], np.float32)
    scores = np.array([0.5, 0.9, 0.7, 0.6], np.float32)
    sources = np.array([0, 0, 1, 0], np.uint8)
    out = dedup_and_sort(boxes, scores, sources, nms_iou=0.0)
    # source 0: the duplicate keeps 0.9; the other box 0.6. Source 1 keeps its own copy.
    assert out.sources.tolist() == [0, 0, 1]
    assert out.scores.tolist() == pytest.approx([0.9, 0.6, 0.7])
    assert out.boxes.tolist() == [[0, 0, 4, 4], [1, 1, 5, 5], [0, 0, 4, 4]]
    # NMS at 0.5: IoU([0,0,4,4], [1,1,5,5]) = 9 / 23 < 0.5 keeps both; at 0.3 drops 0.6.
    assert len(dedup_and_sort(boxes, scores, sources, nms_iou=0.5)) == 3
    out = dedup_and_sort(boxes, scores, sources, nms_iou=0.3)
    assert out.scores.tolist() == pytest.approx([0.9, 0.7])


def test_dedup_empty():
    out = dedup_and_sort(np.zeros((0, 4)), np.zeros(0), np.zeros(0), 0.0)
    assert len(out) == 0 and out.boxes.shape == (0, 4)


@pytest.fixture(scope="module")
def tiny_sam():
    torch.manual_seed(0)
    sam = build_small_sam(TINY)
    with torch.no_grad():  # make masks depend on the prompt: random, larger decoder weights
        for p in sam.mask_decoder.parameters():
            p.mul_(3.0)
    return sam


def _image_and_points(seed: int = 0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)
    pts = np.stack([rng.uniform(0, 70, 23), rng.uniform(0, 50, 23)], 1).astype(np.float32)
    src = rng.integers(0, 4, 23).astype(np.uint8)
    cls = np.where(src == 0, -1, rng.integers(1, 3, 23))
    return img, pts, src, cls


def test_batch_size_does_not_change_boxes(tiny_sam):
    img, pts, src, _ = _image_and_points()
    a = SamPromptProposer(tiny_sam, PromptingConfig(batch_size=1)).propose(img, pts, src)
    b = SamPromptProposer(tiny_sam, PromptingConfig(batch_size=64)).propose(img, pts, src)
    assert len(a) > 0
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.sources, b.sources)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
    # boxes inside the image, each source's boxes unique
    assert (a.boxes[:, [0, 1]] >= 0).all() and (a.boxes[:, 2] <= 70).all()
    assert (a.boxes[:, 3] <= 50).all()
    for s in range(4):
        bs = a.boxes[a.sources == s]
        assert len(np.unique(bs, axis=0)) == len(bs)


def test_prompt_order_does_not_matter(tiny_sam):
    img, pts, src, _ = _image_and_points(1)
    perm = np.random.default_rng(2).permutation(len(pts))
    prop = SamPromptProposer(tiny_sam, PromptingConfig(batch_size=8))
    a = prop.propose(img, pts, src)
    b = prop.propose(img, pts[perm], src[perm])
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.sources, b.sources)


def test_each_source_is_a_filter_of_one_run(tiny_sam):
    # Running only the dense prompts gives exactly the dense boxes of the full run.
    img, pts, src, _ = _image_and_points(3)
    prop = SamPromptProposer(tiny_sam, PromptingConfig(batch_size=16))
    full = prop.propose(img, pts, src)
    only = prop.propose(img, pts[src == 0], src[src == 0])
    np.testing.assert_array_equal(full.boxes[full.sources == 0], only.boxes)


def test_no_prompts_and_all_outside(tiny_sam):
    img, _, _, _ = _image_and_points()
    prop = SamPromptProposer(tiny_sam, PromptingConfig(outside="drop"))
    assert len(prop.propose(img, np.zeros((0, 2)), np.zeros(0, np.uint8))) == 0
    out = prop.propose(img, np.array([[-5.0, 3.0], [80.0, 10.0]]), np.array([0, 1], np.uint8))
    assert len(out) == 0
    clip = SamPromptProposer(tiny_sam, PromptingConfig(outside="clip"))
    assert len(clip.propose(img, np.array([[-5.0, 3.0]]), np.array([1], np.uint8))) > 0


def test_classwise_groups_points_of_a_class(tiny_sam):
    """Class-aware prompting of the CAM sources (release: pooled_proposal_generation.py
    --is-cls-aware True): "replace" prompts each (CAM source, class) with all its points at
    once; "add" keeps every single-point prompt and adds those groups (the release: single
    prompts, then one batch prompt per class). Dense and cross points stay single."""
    img, pts, src, cls = _image_and_points(4)
    cam = np.isin(src, (1, 2)) & (cls >= 0)
    n_single = int((~cam).sum())
    n_groups = len({(int(s), int(c)) for s, c, k in zip(src, cls, cam, strict=True) if k})
    rep = SamPromptProposer(tiny_sam, PromptingConfig(classwise="replace", mask_indices=(2,)))
    groups = rep._prompt_groups(pts, src, cls)
    assert len(groups) == n_single + n_groups
    for idx, s in groups[n_single:]:
        assert s in (1, 2) and len(set(cls[idx])) == 1 and (src[idx] == s).all()
    add = SamPromptProposer(tiny_sam, PromptingConfig(classwise="add", mask_indices=(2,)))
    g_add = add._prompt_groups(pts, src, cls)
    assert len(g_add) == len(pts) + n_groups
    assert [int(i[0]) for i, _ in g_add[: len(pts)]] == list(range(len(pts)))
    none = SamPromptProposer(tiny_sam, PromptingConfig(mask_indices=(2,)))
    assert len(none._prompt_groups(pts, src, cls)) == len(pts)
    out = rep.propose(img, pts, src, cls)
    assert 0 < len(out) <= n_single + n_groups  # one kept mask per prompt, minus duplicates
    # "add" gives every box of "none" plus the group boxes (a superset per source)
    a_out = add.propose(img, pts, src, cls)
    n_out = none.propose(img, pts, src, cls)
    for s_ in range(4):
        have = {tuple(b) for b in a_out.boxes[a_out.sources == s_]}
        assert {tuple(b) for b in n_out.boxes[n_out.sources == s_]} <= have


def test_sequential_nms_is_the_releases_post_suppression():
    """post_suppression.nms: boxes in their given order, no scores; a box whose IoU with an
    earlier kept box is above the threshold is dropped; a dropped box suppresses nothing."""
    from weaksam.proposals.sam import sequential_nms

    boxes = np.array([[0, 0, 10, 10],     # kept
                      [0, 0, 10, 11],     # IoU 100/110 = 0.909 > 0.9 with 0: dropped
                      [0, 0, 10, 12],     # IoU 0.833 with 0 (kept), 0.917 with 1 (dropped)
                      [50, 50, 60, 60],   # disjoint: kept
                      [0, 0, 10, 10]], np.float32)  # duplicate of 0: dropped
    assert sequential_nms(boxes, 0.9).tolist() == [0, 2, 3]
    assert sequential_nms(boxes[::-1], 0.9).tolist() == [0, 1, 2]  # order decides, not score
    assert sequential_nms(np.zeros((0, 4)), 0.9).tolist() == []
    # IoU exactly at the threshold is kept ("ovr > threshold" removes)
    assert sequential_nms(np.array([[0, 0, 10, 10], [0, 0, 10, 20]]), 0.5).tolist() == [0, 1]


def test_cross_nms_only_touches_cross_boxes(tiny_sam):
    img, pts, src, cls = _image_and_points(5)
    off = SamPromptProposer(tiny_sam, PromptingConfig()).propose(img, pts, src, cls)
    on = SamPromptProposer(tiny_sam, PromptingConfig(cross_nms_iou=0.3)).propose(
        img, pts, src, cls)
    for s_ in (0, 1, 2):
        np.testing.assert_array_equal(off.boxes[off.sources == s_], on.boxes[on.sources == s_])
    kept, before = on.boxes[on.sources == 3], off.boxes[off.sources == 3]
    assert 0 < len(kept) <= len(before)
    from weaksam.utils.boxes import box_iou

    iou = box_iou(kept, kept)
    np.fill_diagonal(iou, 0)
    assert (iou <= 0.3).all()  # no two kept cross boxes overlap above the threshold


def test_dense_amg_replaces_grid_prompts(tiny_sam):
    """dense_mode="amg": the dense source comes from SamAutomaticMaskGenerator (release:
    pooled_amg.py), the grid points of the table are ignored, other sources are unchanged;
    SAM's XYWH inclusive boxes become exclusive xyxy."""
    from segment_anything import SamAutomaticMaskGenerator

    from weaksam.proposals.sam import AmgConfig

    img, pts, src, cls = _image_and_points(6)
    amg = AmgConfig(points_per_side=4, points_per_batch=8, pred_iou_thresh=0.0,
                    stability_score_thresh=0.0, box_nms_thresh=0.3)
    grid = SamPromptProposer(tiny_sam, PromptingConfig()).propose(img, pts, src, cls)
    prop = SamPromptProposer(tiny_sam, PromptingConfig(dense_mode="amg", amg=amg))
    out = prop.propose(img, pts, src, cls)
    for s_ in (1, 2, 3):
        np.testing.assert_array_equal(grid.boxes[grid.sources == s_], out.boxes[out.sources == s_])
    recs = SamAutomaticMaskGenerator(tiny_sam, points_per_side=4, points_per_batch=8,
                                     pred_iou_thresh=0.0, stability_score_thresh=0.0,
                                     box_nms_thresh=0.3).generate(img)
    assert len(recs) > 0
    dense = out.boxes[out.sources == 0]
    expect = {(r["bbox"][0], r["bbox"][1], r["bbox"][0] + r["bbox"][2] + 1,
               r["bbox"][1] + r["bbox"][3] + 1) for r in recs}
    assert {tuple(float(v) for v in b) for b in dense} == {tuple(map(float, e)) for e in expect}
    for r in recs:  # the exclusive box holds exactly the mask's extent
        ys, xs = np.nonzero(r["segmentation"])
        assert (xs.min(), ys.min()) == tuple(r["bbox"][:2])
        assert (xs.max() + 1, ys.max() + 1) == (r["bbox"][0] + r["bbox"][2] + 1,
                                                r["bbox"][1] + r["bbox"][3] + 1)
    # only dense prompts: the AMG boxes alone
    only = prop.propose(img, pts[src == 0], src[src == 0])
    assert len(only) == len(expect) and (only.sources == 0).all()


def test_config_validation():
    with pytest.raises(ValueError):
        PromptingConfig(mask_indices=(3,))
    with pytest.raises(ValueError):
        PromptingConfig(outside="wrap")
    with pytest.raises(ValueError):
        PromptingConfig(batch_size=0)
    with pytest.raises(ValueError):
        PromptingConfig(classwise="yes")
    with pytest.raises(ValueError):
        PromptingConfig(dense_mode="sift")
    with pytest.raises(ValueError, match="mask_order"):
        PromptingConfig(mask_order="iou")


def test_select_masks_by_area_per_prompt():
    low = torch.full((2, 3, 4, 4), -1.0)
    low[0, 0, :3, :3] = 1.0  # prompt 0: areas 9, 1, 4 -> area order 1, 2, 0
    low[0, 1, 0, 0] = 1.0
    low[0, 2, :2, :2] = 1.0
    low[1, :, 0, :2] = 1.0  # prompt 1: all areas 2 (a tie keeps SAM's order)
    iou = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    m, s = select_masks(low, iou, PromptingConfig(mask_indices=(1, 2), mask_order="area"))
    assert torch.equal(m[0, 0], low[0, 2]) and torch.equal(m[0, 1], low[0, 0])
    assert torch.equal(s, torch.tensor([[0.3, 0.1], [0.5, 0.6]]))
    m, s = select_masks(low, iou, PromptingConfig(mask_indices=(1, 2)))  # model order
    assert torch.equal(m, low[:, 1:]) and torch.equal(s, iou[:, 1:])
    # one prompt alone selects what it selects in a batch
    m1, _ = select_masks(low[:1], iou[:1], PromptingConfig(mask_indices=(0,), mask_order="area"))
    assert torch.equal(m1[0, 0], low[0, 1])


def test_amg_mode_encodes_each_image_once(tiny_sam):
    """dense_mode="amg" shares one embedding between the prompts and the automatic mask
    generator: one image-encoder forward per image (the release, and this code before, ran
    two), and the proposals are those of the two paths run apart."""
    from segment_anything import SamAutomaticMaskGenerator

    from weaksam.proposals.sam import DENSE, AmgConfig

    amg = AmgConfig(points_per_side=4, points_per_batch=8, pred_iou_thresh=0.0,
                    stability_score_thresh=0.0, box_nms_thresh=0.3)
    kw = dict(classwise="add", cross_nms_iou=0.5)
    prop = SamPromptProposer(tiny_sam, PromptingConfig(dense_mode="amg", amg=amg, **kw))
    apart = SamPromptProposer(tiny_sam, PromptingConfig(**kw))
    gen = SamAutomaticMaskGenerator(tiny_sam, points_per_side=4, points_per_batch=8,
                                    pred_iou_thresh=0.0, stability_score_thresh=0.0,
                                    box_nms_thresh=0.3)
    calls = []
    hook = tiny_sam.image_encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        for seed in (6, 7, 6):  # the same image again: encoded again, not a stale embedding
            img, pts, src, cls = _image_and_points(seed)
            calls.clear()
            out = prop.propose(img, pts, src, cls)
            assert len(calls) == 1
            calls.clear()
            only_dense = prop.propose(img, pts[src == 0], src[src == 0])
            assert len(calls) == 1
            # the two paths apart (two encodes): prompts without the grid points, then the AMG
            other = src != 0
            p = apart.propose(img, pts[other], src[other], cls[other])
            recs = gen.generate(img)
            xywh = np.array([r["bbox"] for r in recs], np.float64).reshape(-1, 4)
            ab = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:] + 1], 1)
            asc = np.array([r["predicted_iou"] for r in recs], np.float32)
            assert len(p) > 0 and len(ab) > 0
            exp = dedup_and_sort(np.concatenate([p.boxes, ab.astype(np.float32)]),
                                 np.concatenate([p.scores, asc]),
                                 np.concatenate([p.sources, np.full(len(ab), DENSE, np.uint8)]),
                                 0.0)
            np.testing.assert_array_equal(out.boxes, exp.boxes)
            np.testing.assert_array_equal(out.scores, exp.scores)
            np.testing.assert_array_equal(out.sources, exp.sources)
            dense = exp.sources == DENSE
            np.testing.assert_array_equal(only_dense.boxes, exp.boxes[dense])
            np.testing.assert_array_equal(only_dense.scores, exp.scores[dense])
        calls.clear()
        apart.propose(img, pts, src, cls)  # grid mode: once as before
        assert len(calls) == 1
    finally:
        hook.remove()
