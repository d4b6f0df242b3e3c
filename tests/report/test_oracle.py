"""Table "What limits retraining" (issue 24 item 3) on made-up metrics."""

from __future__ import annotations

import json

from weaksam.eval.bootstrap import Interval
from weaksam.report import TABLES, oracle
from weaksam.report.index import build_index


def _rows(md: str, label: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")]
            for line in md.splitlines() if line.startswith(f"| {label}")]


def _write(d, name, **kw):
    d.mkdir(exist_ok=True)
    (d / name).write_text(json.dumps(kw))


class FakeEvidence:
    """Intervals of +-1 around each AP50; differences with a fixed +-2 interval."""

    def __init__(self, aps: dict[str, float]) -> None:
        self.aps = aps

    def interval(self, file, key):
        v = self.aps.get(file)
        return None if v is None else Interval(v, v - 1, v + 1)

    def difference(self, left, right):
        a, b = self.aps.get(left[0]), self.aps.get(right[0])
        return None if a is None or b is None else Interval(a - b, a - b - 2, a - b + 2)


APS = {"oracle_frcnn_gt.json": 64.1, "oracle_frcnn_tp.json": 37.4,
       "oracle_frcnn_missed.json": 50.1,
       "retrain_frcnn_mist_weaksam_adaptive_nodrop.json": 40.4,
       "oracle_detr_gt.json": 30.0}


def _metrics(tmp_path):
    m = tmp_path / "metrics"
    for f, v in APS.items():
        _write(m, f, ap50=v)
    _write(m, "oracle_pgt.json", source_pgt="mist_weaksam_adaptive", iou_thr=0.5,
           source_boxes=1663, source_tp=776, source_fp=878, gt_missed=424,
           kinds={"gt": {"boxes": 1209}, "tp": {"boxes": 776}, "missed": {"boxes": 2087}})
    return m


def test_rows_per_detector_with_intervals_and_paired_differences(tmp_path):
    m = _metrics(tmp_path)
    md = oracle.build(m, evidence=FakeEvidence(APS))
    frcnn, detr = md.split("**What limits retraining (query-based")
    assert _rows(frcnn, "Ground-truth boxes")[0][1:5] == [
        "1209 [1]", "64.1 [63.1, 65.1] [2]", "+23.7 [+21.7, +25.7]", "this run"]
    assert _rows(frcnn, "PGT true positives only")[0][1:4] == [
        "776 [1]", "37.4 [36.4, 38.4] [3]", "-3.0 [-5.0, -1.0]"]
    assert _rows(frcnn, "PGT + the ground-truth objects")[0][2:4] == [
        "50.1 [49.1, 51.1] [4]", "+9.7 [+7.7, +11.7]"]
    assert _rows(frcnn, "PGT as is (`mist_weaksam_adaptive`")[0][1:4] == [
        "1663 [1]", "40.4 [39.4, 41.4] [5]", "+0.0"]
    assert "`metrics/oracle_frcnn_gt.json`" in frcnn and "retrain_oracle@frcnn_gt" in frcnn
    assert "776 true positives, 878 false positives, 424 ground-truth objects" in frcnn
    assert "not a stage of this profile" not in frcnn  # every Faster R-CNN row ran
    # the query-based part: gt run, the others (and the PGT row) not run -> no difference
    assert _rows(detr, "Ground-truth boxes")[0][2:4] == ["30.0 [29.0, 31.0] [2]",
                                                         "n/a: no paired evidence"]
    assert _rows(detr, "PGT true positives only")[0][2:4] == ["n/a: not run",
                                                              "n/a: no paired evidence"]
    assert "stand-in" in detr and "not a stage of this profile" in detr


def test_nothing_run_and_no_evidence(tmp_path):
    md = oracle.build(tmp_path)
    row = _rows(md, "Ground-truth boxes")[0]
    assert row[1:4] == ["n/a: not run", "n/a: not run", "n/a: no paired evidence"]
    assert "`mist_weaksam_adaptive`" in md  # default source PGT without oracle_pgt.json


def test_registered_and_indexed(tmp_path):
    assert TABLES["oracle"] is oracle.build
    m = _metrics(tmp_path)
    index = build_index({"oracle": oracle.build(m)}, m)
    assert "[What limits retraining (Faster R-CNN)](tables/oracle.md) | no direction check" \
        in index


def test_a_row_without_a_model_has_no_difference(tmp_path):
    m = _metrics(tmp_path)
    _write(m, "oracle_frcnn_tp.json", ap50=None)
    md = oracle.build(m, evidence=FakeEvidence({**APS, "oracle_frcnn_tp.json": 0.0}))
    assert _rows(md, "PGT true positives only")[0][2:4] == ["n/a: undefined [3]",
                                                            "n/a: no paired evidence"]
