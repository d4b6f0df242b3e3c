"""Issue 23: the retrained Faster R-CNN's test-time augmentation (WeakSAM's release: detectron2
``GeneralizedRCNNWithTTA``, ``TEST.AUG`` of ``PascalVOC-Detection/faster_rcnn_R_50_FPN.yaml``):
flipped and rescaled views map back to the original frame and merge by per-class NMS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from weaksam.profiles import deep_merge, resolve_profile
from weaksam.retrain.infer import detect_images_tta, merge_tta, unflip_boxes

ROOT = Path(__file__).resolve().parents[2]


def _det(boxes, scores, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32),
            "scores": torch.tensor(scores, dtype=torch.float32),
            "labels": torch.tensor(labels, dtype=torch.int64)}


def test_a_flipped_box_maps_back():
    # W = 100: the box x in [10, 30] sits at [70, 90] in the flipped image
    flipped = torch.tensor([[70.0, 5.0, 90.0, 25.0]])
    assert unflip_boxes(flipped, 100).tolist() == [[10.0, 5.0, 30.0, 25.0]]
    assert unflip_boxes(unflip_boxes(flipped, 100), 100).tolist() == flipped.tolist()


def test_merge_maps_views_back_and_suppresses_per_class():
    views = [
        # view at factor 2 (not flipped): [20, 10, 60, 50] / 2 = [10, 5, 30, 25]
        (_det([[20, 10, 60, 50]], [0.9], [1]), 2.0, None),
        # flipped view at factor 0.5 (view width 50): [35, 2.5, 45, 12.5] -> unflipped
        # [5, 2.5, 15, 12.5] -> / 0.5 = [10, 5, 30, 25]; a class-2 copy of the same box
        (_det([[35, 2.5, 45, 12.5], [35, 2.5, 45, 12.5]], [0.8, 0.7], [1, 2]), 0.5, 50),
        # a box reaching past the image is clipped to (W, H) = (100, 60)
        (_det([[80, 40, 130, 90]], [0.6], [1]), 1.0, None),
    ]
    out = merge_tta(views, width=100, height=60, nms_iou=0.5, max_det=10)
    got = sorted(zip(out["labels"].tolist(), out["scores"].tolist(),
                     [[round(v, 4) for v in b] for b in out["boxes"].tolist()], strict=True),
                 key=lambda r: -r[1])
    assert got == [(1, pytest.approx(0.9), [10.0, 5.0, 30.0, 25.0]),   # class-1 duplicate gone
                   (2, pytest.approx(0.7), [10.0, 5.0, 30.0, 25.0]),   # other class kept
                   (1, pytest.approx(0.6), [80.0, 40.0, 100.0, 60.0])]
    top = merge_tta(views, width=100, height=60, nms_iou=0.5, max_det=1)
    assert top["scores"].tolist() == pytest.approx([0.9])


class _BrightSquare(nn.Module):
    """Detects the bright square of channel 0 of each input: its box in the input's frame,
    score = 1 / the input's width (so views are told apart)."""

    def forward(self, xs):
        out = []
        for x in xs:
            ys, xs_ = torch.nonzero(x[0] > 0.5, as_tuple=True)
            box = [xs_.min(), ys.min(), xs_.max() + 1, ys.max() + 1]
            out.append(_det([[float(v) for v in box]], [1.0 / x.shape[-1]], [1]))
        return out


def test_tta_detections_land_on_the_object_in_the_original_frame():
    img = np.zeros((40, 80, 3), np.uint8)
    img[8:24, 10:30, 0] = 255  # object at x [10, 30], y [8, 24] of an 80 x 40 image
    res = detect_images_tta(_BrightSquare(), [7], lambda iid: img, [15], scales=[40, 80],
                            max_size=1000, flip=True, nms_iou=0.5, max_det=100)
    assert len(res) == 1  # 4 views (2 scales x flip), all on the object: one after NMS
    r = res[0]
    assert r["image_id"] == 7 and r["category_id"] == 15
    assert r["bbox"] == pytest.approx([10.0, 8.0, 20.0, 16.0], abs=0.51)  # xywh, original px
    assert r["score"] == pytest.approx(1.0 / 80)  # the best view: scale 40 (width 80)


def test_paper_profile_turns_on_the_release_tta_and_the_default_keeps_it_off():
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert base["retrain"]["tta"]["frcnn"]["scales"] == []
    voc07 = deep_merge(base, resolve_profile("paper_voc07", ROOT / "configs"))
    assert voc07["retrain"]["tta"]["frcnn"] == {
        "scales": [480, 576, 688, 864, 1000, 1800], "flip": True, "max_size": 2000}
    voc12 = deep_merge(base, resolve_profile("paper_voc12", ROOT / "configs"))
    assert voc12["retrain"]["tta"]["frcnn"]["scales"][-1] == 1200


# --- issue 23: the DINO release's TTA (configs/dino/dinotta.py, mmdet DetTTAModel) ----------

def test_dino_tta_merge_rule_nms_06_no_score_threshold_top_k():
    # a 50 x 50 image; class-1 boxes [0, 0, 10, 10] and [0, 0, 10, 7.5] have IoU 0.75,
    # [0, 0, 10, 10] and [0, 0, 10, 5.5] IoU 0.55 (kept at 0.6, suppressed at 0.5)
    views = [(_det([[0, 0, 10, 10], [0, 0, 10, 5.5]], [0.9, 0.5], [1, 1]), 1.0, None),
             # the flipped view at factor 2 (width 100): [80, 0, 100, 15] -> unflipped
             # [0, 0, 20, 15] -> / 2 = [0, 0, 10, 7.5]; [80, 40, 100, 60] -> [0, 20, 10, 30]
             (_det([[80, 0, 100, 15], [80, 40, 100, 60]], [0.8, 0.0], [1, 3]), 2.0, 100)]
    out = merge_tta(views, width=50, height=50, nms_iou=0.6, max_det=300,
                    score_thresh=float("-inf"))
    got = [(lab, round(sc, 3), [round(v, 3) for v in b]) for lab, sc, b in
           zip(out["labels"].tolist(), out["scores"].tolist(), out["boxes"].tolist(),
               strict=True)]
    assert got == [(1, 0.9, [0.0, 0.0, 10.0, 10.0]),   # the flipped view's [0, 0, 10, 7.5] gone
                   (1, 0.5, [0.0, 0.0, 10.0, 5.5]),
                   (3, 0.0, [0.0, 20.0, 10.0, 30.0])]  # score 0 kept (no threshold)
    at05 = merge_tta(views, width=50, height=50, nms_iou=0.5, max_det=300)
    assert at05["scores"].tolist() == pytest.approx([0.9])
    assert merge_tta(views, 50, 50, 0.6, 2, float("-inf"))["scores"].tolist() == \
        pytest.approx([0.9, 0.5])


class _Frcnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.roi_heads = nn.Module()
        self.roi_heads.nms_thresh, self.roi_heads.detections_per_img = 0.5, 100


class _Detr(nn.Module):
    detections_per_image = 300


def test_tta_options_follow_each_detector_s_release_and_need_images():
    from pipeline.retrain_common import tta_options
    from weaksam.errors import InputError

    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert tta_options("detr", _Detr(), base) is None
    assert tta_options("frcnn", _Frcnn(), base) is None
    voc07 = deep_merge(base, resolve_profile("paper_voc07", ROOT / "configs"))
    assert tta_options("detr", _Detr(), voc07) == {
        "scales": [488, 576, 688, 864, 1200], "max_size": 2000, "flip": True, "nms_iou": 0.6,
        "max_det": 300, "score_thresh": float("-inf")}
    assert tta_options("frcnn", _Frcnn(), voc07) == {
        "scales": [480, 576, 688, 864, 1000, 1800], "max_size": 2000, "flip": True,
        "nms_iou": 0.5, "max_det": 100}
    base["retrain"]["tta"]["detr"]["scales"] = [160]  # default: cached maps, one scale
    with pytest.raises(InputError, match="needs model.input: images"):
        tta_options("detr", _Detr(), base)
