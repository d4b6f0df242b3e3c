"""Paper Table 8 (weaksam/report/table8.py), the TABLES registry and the report stage."""

from __future__ import annotations

import json

from pipeline import report as stage
from weaksam.report import TABLES
from weaksam.report.table8 import build


def _row(md: str, label: str) -> list[str]:
    rows = [line for line in md.splitlines() if line.startswith(f"| {label} |")]
    return [c.strip() for c in rows[-1].strip("|").split("|")]


def test_paper_rows_and_not_run(tmp_path):
    md = build(tmp_path / "metrics")  # nothing has run
    assert md.startswith("**Table 8.**")
    assert _row(md, "WeakTr") == ["WeakTr", "213", "95.6", "75.0", "42.1", "paper"]
    assert _row(md, "CLIP-ES") == ["CLIP-ES", "205", "93.8", "75.6", "44.5", "paper"]
    assert _row(md, "MCTformer")[1:5] == ["173", "93.2", "74.8", "43.7"]
    ss_rows = [line for line in md.splitlines() if line.startswith("| None (Selective Search)")]
    assert ss_rows[0].startswith("| None (Selective Search) | 2001 | 92.6 | 57.7 | 19.2 | paper")
    assert _row(md, "None (Selective Search)")[1:] == ["n/a: not run"] * 5
    assert _row(md, "WeakSAM (WeakTr-style clues)")[1:] == ["n/a: not run"] * 5


def test_numbers_come_from_the_metrics_files(tmp_path):
    m = tmp_path / "metrics"
    m.mkdir()
    (m / "recall_ss.json").write_text(json.dumps(
        {"num_images": 16, "num_per_image": 87.4375, "recall@0.5": 71.234, "recall@0.75": 40.0,
         "recall@0.9": 12.5}))
    md = build(m)
    assert _row(md, "None (Selective Search)") == [
        "None (Selective Search)", "87.4 [1]", "71.2 [1]", "40.0 [1]", "12.5 [1]", "this run"]
    assert "[1] DVC stage `recall_ss`, `metrics/recall_ss.json`" in md.splitlines()
    assert _row(md, "WeakSAM (WeakTr-style clues)")[1] == "n/a: not run"
    (m / "recall_weaksam.json").write_text(json.dumps(
        {"num_per_image": 20.0, "recall@0.5": 90.0, "recall@0.75": 60.0}))  # no 0.9 key
    row = _row(build(m), "WeakSAM (WeakTr-style clues)")
    assert row[1:] == ["20.0 [2]", "90.0 [2]", "60.0 [2]", "n/a: not run",
                       "this run (partly n/a)"]


def test_report_stage_writes_every_table(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "table8" in TABLES
    names = stage.run({"profile": "tiny"})
    assert names == sorted(TABLES)
    for name in names:
        built = TABLES[name](tmp_path / "metrics")
        text = (tmp_path / "reports/tables" / f"{name}.md").read_text()
        assert text == f"{built.rstrip()}\n\nProfile of this run: **tiny**.\n"
        csv_text = (tmp_path / "reports/tables" / f"{name}.csv").read_text()
        assert csv_text.startswith("table,profile,")
        assert ",tiny," in csv_text
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["README.md", "tables"]
