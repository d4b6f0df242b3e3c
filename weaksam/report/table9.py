"""Paper Table 9 (appendix G; supplement Table 1): RoI drop thresholds, Faster R-CNN AP50 (%) on
VOC 2007 test. (a) regression threshold tau_reg in {0.8, 1.0, 1.2} (tau_cls 4.0);
(b) classification threshold tau_cls in {3.0, 4.0, 5.0} (tau_reg 1.0).

This run: ``metrics/retrain_frcnn_mist_weaksam_adaptive_{variant}.json`` key ``ap50`` (stage
``retrain``), variants reg0p8 / drop / reg1p2 and cls3 / drop / cls5 (``drop`` is the paper's
setting, tau_cls 4.0 and tau_reg 1.0, shared by both parts).
"""

from __future__ import annotations

from pathlib import Path

from weaksam.report.retrain import NOISE_NOTE, retrain_ap50
from weaksam.report.table import Intervals, Row, Table, paper

PGT = "mist_weaksam_adaptive"

# (threshold name, [(value, paper AP50, variant)]) per part.
PART_A = ("tau_reg", ((0.8, 71.0, "reg0p8"), (1.0, 71.8, "drop"), (1.2, 71.3, "reg1p2")))
PART_B = ("tau_cls", ((3.0, 71.2, "cls3"), (4.0, 71.8, "drop"), (5.0, 71.1, "cls5")))


def _part(metrics_dir: Path, name: str, spec, other: str,
          evidence: Intervals | None = None) -> str:
    thr, cols = spec
    rows = [
        Row("AP50 (paper)", [paper(ap) for _, ap, _ in cols]),
        Row("AP50 (this run)", [retrain_ap50(metrics_dir, "frcnn", PGT, var, evidence)
                                  for *_, var in cols]),
    ]
    return Table(
        name=name,
        caption=(f"RoI drop regularization: Faster R-CNN AP50 (%) on the test split for "
                 f"{thr} = {', '.join(f'{v:.1f}' for v, *_ in cols)} ({other}). Paper: PASCAL "
                 "VOC 2007 test, PGT of WeakSAM (MIST); this run: adaptive PGT of this run's "
                 "WeakSAM (MIST), the `retrain` stage's Faster R-CNN."),
        columns=(thr, *(f"{v:.1f}" for v, *_ in cols)),
        rows=rows,
        notes=(NOISE_NOTE,),
    ).to_markdown()


def build(metrics_dir: Path, evidence: Intervals | None = None) -> str:
    """Markdown of Table 9 (a) and (b): paper AP50 per threshold, then this run's."""
    return (_part(metrics_dir, "Table 9 (a)", PART_A, "tau_cls 4.0", evidence) + "\n"
            + _part(metrics_dir, "Table 9 (b)", PART_B, "tau_reg 1.0", evidence))
