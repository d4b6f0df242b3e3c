"""Paper Table 7 (appendix): CorLoc (%) on VOC 2007 trainval with multi-scale testing, for
OICR and MIST with Selective Search vs. WeakSAM proposals.

This run: ``corloc`` of ``metrics/wsod_{method}_{source}.json`` (stage ``wsod``), measured on
the trainval split of the `data` stage (top-scoring detection per present class, IoU >= 0.5).
"""

from __future__ import annotations

from pathlib import Path

from weaksam.report.table import Intervals, Row, Table, metric, paper
from weaksam.report.table1 import RUN_ROWS  # the same four WSOD runs

COLUMNS = ("Method [proposal]", "CorLoc")

PAPER_ROWS: tuple[tuple[str, str, float], ...] = (
    ("OICR (Tang et al., 2017)", "SS", 60.6),
    ("WeakSAM (OICR)", "WeakSAM", 74.5),
    ("MIST (Ren et al., 2020)", "SS", 68.8),
    ("WeakSAM (MIST)", "WeakSAM", 82.9),
)



def build(metrics_dir: Path, evidence: Intervals | None = None) -> str:
    """Markdown of Table 7's baseline rows: the paper's, then this run's."""
    rows = [Row(f"{label} [{prop}]", [paper(v)]) for label, prop, v in PAPER_ROWS]
    for label, prop, method, source in RUN_ROWS:
        cell = metric(metrics_dir, f"wsod_{method}_{source}.json", "corloc",
                      f"wsod@{method}-{source}", evidence=evidence)
        rows.append(Row(f"{label} [{prop}], this run", [cell]))
    table = Table(
        name="Table 7",
        caption=(
            "CorLoc (%) on the trainval split (paper Table 7: PASCAL VOC 2007 trainval, "
            "multi-scale testing; this run: the `data` stage's trainval split, the test-time "
            "scales of params `wsod.test_scales` with flips)."
        ),
        columns=COLUMNS,
        rows=rows,
    )
    return table.to_markdown()
