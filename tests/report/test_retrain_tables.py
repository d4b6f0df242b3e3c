"""Tables 1 (retrain rows), 5, 9, 10, 11: paper numbers, this run's from the retrain metrics
files (second-half contract names), n/a when a file does not exist."""

from __future__ import annotations

import json

from weaksam.report import TABLES, retrain, table1, table5, table9, table10, table11


def _rows(md: str, label: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")]
            for line in md.splitlines() if line.startswith(f"| {label} |")]


def _write(d, name, **kw):
    d.mkdir(exist_ok=True)
    (d / name).write_text(json.dumps(kw))


def test_nothing_run_gives_paper_rows_and_not_run(tmp_path):
    md = table5.build(tmp_path)
    assert _rows(md, "Top-1 PGT (paper)") == [["Top-1 PGT (paper)", "68.4", "67.4", "paper"],
                                              ["Top-1 PGT (paper)", "71.1", "67.4", "paper"]]
    assert _rows(md, "Adaptive PGT + RoI drop (paper)")[0][1] == "71.8"
    assert _rows(md, "Adaptive PGT + query drop (this run)")[0][1:3] == ["n/a: not run"] * 2
    assert "stand-in" in md and "3 AP points" in md
    t9 = table9.build(tmp_path)
    assert _rows(t9, "AP50 (paper)") == [["AP50 (paper)", "71.0", "71.8", "71.3", "paper"],
                                         ["AP50 (paper)", "71.2", "71.8", "71.1", "paper"]]
    assert "| tau_reg | 0.8 | 1.0 | 1.2 | Source |" in t9
    assert _rows(table10.build(tmp_path), "Query_things + Query_bkg (paper)")[0][1] == "73.3"
    assert _rows(table11.build(tmp_path), "AP50 (paper)")[0][1:4] == ["72.8", "73.4", "71.8"]
    t1 = table1.build(tmp_path)
    assert _rows(t1, "WeakSAM (MIST) [DINO]") == [
        ["WeakSAM (MIST) [DINO]", "73.4", "70.2", "26.6", "39.3", "29.0", "67.4", "paper"]]
    assert _rows(t1, "WeakSAM (OICR) [Faster R-CNN], this run")[0][1:] == ["n/a: not run"] * 7
    for name in ("table5", "table9", "table10", "table11", "pgt"):
        assert name in TABLES


def test_cells_come_from_the_contract_metrics_files(tmp_path):
    m = tmp_path / "metrics"
    _write(m, "wsod_mist_weaksam.json", ap50=40.44)
    _write(m, "wsod_oicr_weaksam.json", ap50=46.0)
    _write(m, "retrain_frcnn_mist_weaksam_top1_nodrop.json", ap50=41.0)
    _write(m, "retrain_frcnn_mist_weaksam_adaptive_drop.json", ap50=44.25)
    _write(m, "retrain_frcnn_mist_weaksam_adaptive_reg0p8.json", ap50=43.0)
    _write(m, "retrain_frcnn_mist_weaksam_adaptive_cls5.json", ap50=42.0)
    _write(m, "retrain_detr_mist_weaksam_adaptive_things90.json", ap50=30.0)
    _write(m, "retrain_detr_mist_weaksam_adaptive_things80.json", ap50=29.0)
    _write(m, "retrain_detr_mist_weaksam_adaptive_all90.json", ap50=28.0)
    _write(m, "retrain_detr_oicr_weaksam_adaptive_things90.json", ap50=33.0)
    md = table5.build(m)
    a, b = md.split("**Table 5 (b).**")
    assert _rows(a, "Top-1 PGT (this run)")[0][1:] == ["41.0 [1]", "40.4 [2]", "this run"]
    assert _rows(a, "Adaptive PGT (this run)")[0][1:3] == ["n/a: not run", "40.4 [2]"]
    assert _rows(a, "Adaptive PGT + RoI drop (this run)")[0][1] == "44.2 [3]"  # 44.25 -> 44.2
    assert "`metrics/retrain_frcnn_mist_weaksam_top1_nodrop.json`" in a
    # b: the WSOD cell of the first row is footnote 1
    assert _rows(b, "Adaptive PGT + query drop (this run)")[0][1] == "30.0 [2]"
    t9a, t9b = table9.build(m).split("**Table 9 (b).**")
    assert _rows(t9a, "AP50 (this run)")[0][1:5] == ["43.0 [1]", "44.2 [2]", "n/a: not run",
                                                     "this run (partly n/a)"]
    assert _rows(t9b, "AP50 (this run)")[0][1:4] == ["n/a: not run", "44.2 [1]", "42.0 [2]"]
    assert _rows(table10.build(m), "Query_things + Query_bkg (this run)")[0][1] == "28.0 [2]"
    assert _rows(table11.build(m), "AP50 (this run)")[0][1:4] == [
        "n/a: not run", "30.0 [1]", "29.0 [2]"]
    t1 = table1.build(m)
    assert _rows(t1, "WeakSAM (OICR) [query-based (DINO stand-in)], this run")[0][1:] == [
        "33.0 [4]", *["n/a: not run"] * 4, "46.0 [1]", "this run (partly n/a)"]
    assert _rows(t1, "WeakSAM (MIST) [Faster R-CNN], this run")[0][1:7:5] == ["44.2 [2]",
                                                                             "40.4 [3]"]


CONTRACT_FILES = (  # second-half contract, "rows": every (detector, pgt, variant) run
    "frcnn_mist_weaksam_top1_nodrop", "frcnn_mist_weaksam_adaptive_nodrop",
    "frcnn_mist_weaksam_adaptive_drop", "frcnn_mist_weaksam_adaptive_reg0p8",
    "frcnn_mist_weaksam_adaptive_reg1p2", "frcnn_mist_weaksam_adaptive_cls3",
    "frcnn_mist_weaksam_adaptive_cls5", "frcnn_oicr_weaksam_adaptive_drop",
    "detr_mist_weaksam_top1_nodrop", "detr_mist_weaksam_adaptive_nodrop",
    "detr_mist_weaksam_adaptive_things90", "detr_mist_weaksam_adaptive_all90",
    "detr_mist_weaksam_adaptive_things80", "detr_oicr_weaksam_adaptive_things90",
)


def test_tables_read_exactly_the_contract_runs(tmp_path, monkeypatch):
    read: set[str] = set()
    real = retrain.metric

    def spy(metrics_dir, file, *args, **kw):
        read.add(file)
        return real(metrics_dir, file, *args, **kw)

    monkeypatch.setattr(retrain, "metric", spy)
    m = tmp_path / "metrics"
    for k, name in enumerate(CONTRACT_FILES):
        _write(m, f"retrain_{name}.json", ap50=10.0 + k)
    for build in (table1.build, table5.build, table9.build, table10.build, table11.build):
        md = build(m).split("**Table 1 (retrain rows).**")[-1]  # Table 1: its retrain rows
        rows = [line for line in md.splitlines() if line.startswith("| ") and "this run" in line]
        assert rows
        for line in rows:
            assert "[" in line.split("|")[2], line  # the AP50 cell is this run's (footnoted)
    retrain_files = {f for f in read if f.startswith("retrain_")}
    assert retrain_files == {f"retrain_{n}.json" for n in CONTRACT_FILES}
