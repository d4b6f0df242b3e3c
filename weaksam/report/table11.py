"""Paper Table 11 (appendix G; supplement Table 3): the percentile threshold tau of query drop,
DINO AP50 (%) on VOC 2007 test for tau in {100 (nothing dropped), 90, 80}.

This run: ``metrics/retrain_detr_mist_weaksam_adaptive_{nodrop,things90,things80}.json`` key
``ap50`` (stage ``retrain``); tau 100 drops nothing, so it is the ``nodrop`` run (shared with
Tables 5 (b) and 10).
"""

from __future__ import annotations

from pathlib import Path

from weaksam.report.retrain import NOISE_NOTE, STAND_IN_NOTE, retrain_ap50
from weaksam.report.table import Intervals, Row, Table, paper

PGT = "mist_weaksam_adaptive"
# (tau in %, paper AP50, variant)
COLS: tuple[tuple[int, float, str], ...] = ((100, 72.8, "nodrop"), (90, 73.4, "things90"),
                                            (80, 71.8, "things80"))


def build(metrics_dir: Path, evidence: Intervals | None = None) -> str:
    """Markdown of Table 11: paper AP50 per tau, then this run's."""
    rows = [
        Row("AP50 (paper)", [paper(ap) for _, ap, _ in COLS]),
        Row("AP50 (this run)", [retrain_ap50(metrics_dir, "detr", PGT, var, evidence)
                                  for *_, var in COLS]),
    ]
    return Table(
        name="Table 11",
        caption=("Query drop: percentile threshold tau (%) of the batch-normalised "
                 "classification loss above which foreground queries are dropped; AP50 (%) on "
                 "the test split. Paper: DINO on PASCAL VOC 2007 test; this run: adaptive PGT of "
                 "this run's WeakSAM (MIST), the `retrain` stage's query-based detector."),
        columns=("tau (%)", *(str(t) for t, *_ in COLS)),
        rows=rows,
        notes=(STAND_IN_NOTE, NOISE_NOTE),
    ).to_markdown()
