"""PGT quality table (weaksam/report/pgt_quality.py) from metrics/pgt_{run}_{mode}.json."""

from __future__ import annotations

import json

from weaksam.report.pgt_quality import build


def _row(md: str, label: str) -> list[str]:
    rows = [line for line in md.splitlines() if line.startswith(f"| {label} |")]
    return [c.strip() for c in rows[0].strip("|").split("|")]


def test_pgt_quality_rows(tmp_path):
    m = tmp_path / "metrics"
    m.mkdir()
    (m / "pgt_mist_weaksam_adaptive.json").write_text(json.dumps(
        {"boxes_per_image": 1.8765, "precision": 61.25, "recall": 70.0,
         "labelled_classes_without_box": 3, "labelled_classes_without_box_pct": 0.5}))
    md = build(m)
    assert md.startswith("**PGT quality.**")
    assert _row(md, "Adaptive [WeakSAM (MIST)]") == [
        "Adaptive [WeakSAM (MIST)]", "1.88 [1]", "61.2 [1]", "70.0 [1]", "3 [1]", "0.5 [1]",
        "this run"]
    assert "[1] DVC stage `pgt@mist_weaksam-adaptive`, `metrics/pgt_mist_weaksam_adaptive.json`" \
        in md
    assert _row(md, "Top-1 [WeakSAM (OICR)]")[1:] == ["n/a: not run"] * 6
