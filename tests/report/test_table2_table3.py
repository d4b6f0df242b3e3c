"""Tables 2 and 3 and the pseudo-mask quality table: paper rows as printed, this run's cells
from the metrics files, n/a when a file is missing."""

from __future__ import annotations

import json
from pathlib import Path

from weaksam.report import table2, table3, wsis_pseudo_masks


def _write(d: Path, name: str, obj: dict) -> None:
    (d / name).write_text(json.dumps(obj))


def test_tables_with_and_without_metrics(tmp_path: Path) -> None:
    empty = table2.build(tmp_path)
    assert "| 70.3 | 59.6 | 43.1 | 36.2 | paper |" in empty  # WeakSAM Mask R-CNN, as printed
    assert empty.count(" | n/a: not run" * 5 + " |") == 3  # 4 AP cells + Source, 3 rows
    _write(tmp_path, "wsis_mask_rcnn.json", {"ap25": 61.0, "ap50": 50.0, "ap70": 30.0,
                                            "ap75": 20.25, "coco": {"AP": 21.5, "AP50": 40.0,
                                                                   "AP75": 18.0}})
    t2 = table2.build(tmp_path)
    assert "| 61.0 [1] | 50.0 [1] | 30.0 [1] | 20.2 [1] | this run |" in t2
    assert "DVC stage `wsis@mask_rcnn`" in t2 and "/wsis_mask_rcnn.json`" in t2
    t3 = table3.build(tmp_path)
    assert "| 25.2 | 38.4 | 27.0 | 25.9 | 39.9 | 27.9 | paper |" in t3  # Mask2Former row
    assert "| 21.5 [1] | 40.0 [1] | 18.0 [1] | n/a: not run | n/a: not run | n/a: not run |" in t3


def test_pseudo_mask_table(tmp_path: Path) -> None:
    assert "n/a: not run" in wsis_pseudo_masks.build(tmp_path)
    per = {"num_pseudo": 3, "num_gt": 4, "mean_iou": 0.5, "share_iou50": 50.0,
           "precision50": 33.3, "recall50": 25.0, "mean_iou_given_box50": None}
    _write(tmp_path, "pseudo_masks.json", {**per, "per_class": {"disc": per}, "boxes_in": 5,
                                           "boxes_clipped": 1, "boxes_skipped": 1,
                                           "masks_empty": 1, "masks_out": 3,
                                           "images_without_mask": 0})
    md = wsis_pseudo_masks.build(tmp_path)
    assert "| disc | 3 [1] | 4 [1] | 0.500 [1] | 50.0 [1] | 33.3 [1] | 25.0 [1] | " \
           "n/a: undefined [1] |" in md
    assert "| empty masks dropped | 1 [1] | this run |" in md
