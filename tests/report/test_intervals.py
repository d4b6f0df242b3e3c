"""Bootstrap intervals in the report (weaksam/report/intervals.py, pipeline/report.py): a tiny
workspace with versioned detection files gives rows with intervals and paired verdicts."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.report import run
from tests.eval.test_bootstrap import _one_sided_case
from weaksam.eval.corloc import corloc
from weaksam.eval.voc import evaluate_voc
from weaksam.report.intervals import Evidence, evidence_of


def _workspace(root: Path) -> None:
    gt, good, bad = _one_sided_case()
    (root / "data/annotations").mkdir(parents=True)
    (root / "metrics").mkdir()
    for split in ("test", "trainval"):
        (root / f"data/annotations/{split}.json").write_text(json.dumps(gt))
    runs = {"oicr_weaksam": good, "oicr_ss": bad, "mist_weaksam": good, "mist_ss": good}
    for name, dets in runs.items():
        d = root / "wsod" / name
        d.mkdir(parents=True)
        for split in ("test", "trainval"):
            (d / f"detections_{split}.json").write_text(json.dumps(dets))
        (root / f"metrics/wsod_{name}.json").write_text(json.dumps(
            {"ap50": evaluate_voc(gt, dets)["map"], "corloc": corloc(gt, dets)["mean"]}))


def test_evidence_of_names_the_stage_files():
    assert evidence_of("wsod_mist_ss.json", "ap50") == ("test",
                                                        Path("wsod/mist_ss/detections_test.json"))
    assert evidence_of("wsod_mist_ss.json", "corloc")[0] == "trainval"
    assert evidence_of("retrain_frcnn_mist_weaksam_adaptive_drop.json", "ap50")[1] == Path(
        "retrain/frcnn_mist_weaksam_adaptive_drop/detections_test.json")
    assert evidence_of("retrain_prelim_frcnn_x.json", "ap50") is None
    assert evidence_of("wsis_mask2former.json", "ap70") == ("test_masks", Path(
        "wsis/mask2former/predictions_test.json"))
    assert evidence_of("wsis_mask2former.json", "coco.AP") is None
    assert evidence_of("recall_dense_fine.json", "recall@0.75")[1] == Path(
        "proposals/weaksam/trainval.npz")
    assert evidence_of("pgt_mist_weaksam_top1.json", "recall")[1] == Path(
        "pgt/mist_weaksam_top1/trainval.json")
    assert evidence_of("wsod_mist_ss.json", "train_seconds") is None


def test_report_rows_carry_intervals_and_the_index_paired_verdicts(tmp_path):
    _workspace(tmp_path)
    ev = Evidence(tmp_path, n_resamples=300, seed=1)
    run({"profile": "tiny"}, tmp_path / "metrics", tmp_path / "reports/tables", ev)
    t1 = (tmp_path / "reports/tables/table1.md").read_text()
    row = next(ln for ln in t1.splitlines() if ln.startswith("| WeakSAM (OICR) [WeakSAM], this"))
    iv = ev.interval("wsod_oicr_weaksam.json", "ap50")
    assert f"{iv.point:.1f} [{iv.low:.1f}, {iv.high:.1f}]" in row
    assert "95 % percentile interval" in t1
    index = (tmp_path / "reports/README.md").read_text()
    line1 = next(ln for ln in index.splitlines() if ln.startswith("| [Table 1]"))
    # OICR: the good side beats the bad one on every image; MIST: identical detections
    assert "holds 1, within noise 1" in line1
    assert "MIST [SS] " in line1 and "within noise, +0.00 [+0.00, +0.00]" in line1
    line7 = next(ln for ln in index.splitlines() if ln.startswith("| [Table 7]"))
    assert "CorLoc" in line7 and "holds, +100.00 [+100.00, +100.00]" in line7
    assert "300 resamples, seed 1" in index
    assert ev.paths()[0] == Path("data/annotations/test.json")


def test_missing_detection_files_fall_back_to_point_verdicts(tmp_path):
    _workspace(tmp_path)
    (tmp_path / "wsod/oicr_ss/detections_test.json").unlink()
    ev = Evidence(tmp_path, n_resamples=50)
    assert ev.interval("wsod_oicr_ss.json", "ap50") is None
    run({}, tmp_path / "metrics", tmp_path / "reports/tables", ev)
    index = (tmp_path / "reports/README.md").read_text()
    assert "OICR [SS] " in index and "holds (point only)" in index


def test_mask_evidence_is_on_the_images_with_masks(tmp_path):
    gt = {"images": [{"id": 1}, {"id": 2}, {"id": 3}], "categories": [],
          "annotations": [{"image_id": 1, "segmentation": {"size": [1, 1], "counts": "01"}},
                          {"image_id": 2}, {"image_id": 3, "iscrowd": 1}]}
    (tmp_path / "data/annotations").mkdir(parents=True)
    (tmp_path / "data/annotations/test.json").write_text(json.dumps(gt))
    ev = Evidence(tmp_path)
    assert len(ev.weights("test")[0]) == 3
    assert len(ev.weights("test_masks")[0]) == 2  # image 2 has an object without a mask
