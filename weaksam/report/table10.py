"""Paper Table 10 (appendix G; supplement Table 2): which queries query drop may drop, DINO AP50
(%) on VOC 2007 test: none (baseline), foreground queries (Query_things), foreground and
background queries (Query_things + Query_bkg), at the 90th percentile.

This run: ``metrics/retrain_detr_mist_weaksam_adaptive_{nodrop,things90,all90}.json`` key
``ap50`` (stage ``retrain``).
"""

from __future__ import annotations

from pathlib import Path

from weaksam.report.retrain import NOISE_NOTE, STAND_IN_NOTE, retrain_ap50
from weaksam.report.table import Intervals, Row, Table, paper

PGT = "mist_weaksam_adaptive"
# (label, paper AP50, variant)
ROWS: tuple[tuple[str, float, str], ...] = (
    ("Baseline (no query drop)", 72.8, "nodrop"),
    ("Query_things", 73.4, "things90"),
    ("Query_things + Query_bkg", 73.3, "all90"),
)


def build(metrics_dir: Path, evidence: Intervals | None = None) -> str:
    """Markdown of Table 10: the paper's rows, then this run's."""
    rows = [Row(f"{label} (paper)", [paper(ap)]) for label, ap, _ in ROWS]
    rows += [Row(f"{label} (this run)", [retrain_ap50(metrics_dir, "detr", PGT, var, evidence)])
             for label, _, var in ROWS]
    return Table(
        name="Table 10",
        caption=("Query drop regularization: dropping foreground queries (Query_things) and "
                 "background queries (Query_bkg) above the 90th percentile of the "
                 "batch-normalised classification loss; AP50 (%) on the test split. Paper: "
                 "DINO on PASCAL VOC 2007 test, PGT of WeakSAM (MIST); this run: adaptive PGT "
                 "of this run's WeakSAM (MIST), the `retrain` stage's query-based detector."),
        columns=("Dropped queries", "AP50"),
        rows=rows,
        notes=(STAND_IN_NOTE, NOISE_NOTE),
    ).to_markdown()
