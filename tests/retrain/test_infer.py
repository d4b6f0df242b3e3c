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
