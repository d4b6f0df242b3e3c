"""Table "What limits retraining" (issue 24 item 3; no paper counterpart): the retraining
detectors of Tables 1 and 5 trained on oracle training sets, beside the same detector on the PGT,
as ``wsis_gt`` gives Tables 2 and 3 their upper reference.

Rows, per detector (Faster R-CNN, the query-based detector), AP50 (VOC07 11-point, test, %)
with its bootstrap interval and the paired difference to the PGT row:

- ground-truth boxes: ``metrics/oracle_{detector}_gt.json`` (stage ``retrain_oracle``);
- the PGT's true positives only: ``metrics/oracle_{detector}_tp.json``;
- the PGT plus the ground-truth objects it missed: ``metrics/oracle_{detector}_missed.json``;
- the PGT as is: ``metrics/retrain_{detector}_{pgt}_nodrop.json`` (stage ``retrain``), ``pgt``
  the source of the oracle sets (``metrics/oracle_pgt.json`` key ``source_pgt``, params
  ``oracle.pgt``; default ``mist_weaksam_adaptive``).

Training boxes: ``metrics/oracle_pgt.json`` (``kinds.<kind>.boxes``, ``source_boxes``).
"""

from __future__ import annotations

from pathlib import Path

from weaksam.report.retrain import DETECTORS, NOISE_NOTE, STAND_IN_NOTE, retrain_file
from weaksam.report.table import NOT_RUN, Cell, Intervals, Row, Table, metric, read_metrics

DEFAULT_PGT = "mist_weaksam_adaptive"
KIND_LABELS = (("gt", "Ground-truth boxes (fully supervised reference)"),
               ("tp", "PGT true positives only (false positives removed)"),
               ("missed", "PGT + the ground-truth objects it missed (full recall)"))
COLUMNS = ("Training boxes", "Boxes", "AP50", "AP50 - PGT row")
NOT_STAGE_NOTE = (
    "\"n/a: not run\": the row is not a stage of this profile (`retrain_oracle` trains Faster "
    "R-CNN on all three sets and the query-based detector on the ground truth only, for cost: "
    "docs/retrain.md, \"Oracle rows\"); add it to the stage's `foreach` and the `report` deps "
    "to run it."
)


def source_pgt(metrics_dir: Path) -> str:
    """The PGT the oracle sets edit (``metrics/oracle_pgt.json``), else the default."""
    m = read_metrics(Path(metrics_dir) / "oracle_pgt.json")
    return str(m["source_pgt"]) if m and "source_pgt" in m else DEFAULT_PGT


def _difference(evidence: Intervals | None, left: str, right: str) -> Cell:
    """``left - right`` AP50 (metrics files) with its paired bootstrap interval; ``n/a`` when
    either file or the per-image evidence is missing (then no difference is claimed)."""
    diff = getattr(evidence, "difference", None)
    found = diff((left, "ap50"), (right, "ap50")) if diff is not None else None
    if found is None:
        return Cell("n/a: no paired evidence", "this run")
    return Cell(found.point, "this run", "{:+.1f}", None, (found.low, found.high))


def build(metrics_dir: Path, evidence: Intervals | None = None) -> str:
    """Markdown of the table, one part per detector."""
    metrics_dir = Path(metrics_dir)
    pgt = source_pgt(metrics_dir)
    counts = read_metrics(metrics_dir / "oracle_pgt.json") or {}
    parts = []
    for det, det_name in DETECTORS.items():
        pgt_file = retrain_file(det, pgt, "nodrop")
        rows = []
        for kind, label in KIND_LABELS:
            f = f"oracle_{det}_{kind}.json"
            ap = metric(metrics_dir, f, "ap50", f"retrain_oracle@{det}_{kind}",
                        evidence=evidence)
            # an empty training set (no model trained) has AP50 null: no difference either
            diff = (_difference(evidence, f, pgt_file) if isinstance(ap.value, float | int)
                    else Cell("n/a: no paired evidence", "this run"))
            rows.append(Row(label, [
                metric(metrics_dir, "oracle_pgt.json", f"kinds.{kind}.boxes", "oracle_pgt",
                       fmt="{:.0f}"), ap, diff]))
        rows.append(Row(f"PGT as is (`{pgt}`, no drop)", [
            metric(metrics_dir, "oracle_pgt.json", "source_boxes", "oracle_pgt", fmt="{:.0f}"),
            metric(metrics_dir, pgt_file, "ap50", f"retrain@{det}_{pgt}_nodrop",
                   evidence=evidence),
            Cell(0.0, "this run", "{:+.1f}")]))
        notes = [NOISE_NOTE] if det == "frcnn" else [STAND_IN_NOTE, NOISE_NOTE]
        if any(r.cells[1].source == NOT_RUN for r in rows):
            notes.append(NOT_STAGE_NOTE)
        if counts.get("source_tp") is not None:
            notes.insert(0, f"PGT `{pgt}` against the hidden trainval boxes at IoU > "
                            f"{counts.get('iou_thr')}: {counts['source_tp']} true positives, "
                            f"{counts.get('source_fp')} false positives, "
                            f"{counts.get('gt_missed')} ground-truth objects without a match "
                            f"(`metrics/oracle_pgt.json`).")
        parts.append(Table(
            name=f"What limits retraining ({det_name})",
            caption=(f"The {det_name} detector of Tables 1 and 5 (the `retrain` stage's "
                     "`nodrop` setting: same model, schedule and seed) trained on training "
                     "sets edited against the hidden trainval ground truth (stages `oracle_pgt`"
                     ", `retrain_oracle`; reference only: no stage of the method reads them), "
                     "beside the same detector on the PGT: AP50 (%) on the test split. No "
                     "paper counterpart. The last column is each row's AP50 minus the PGT "
                     "row's, with its paired bootstrap interval over the test images: a "
                     "training-set edit whose interval lies above 0 is a limit of retraining "
                     "on this PGT."),
            columns=COLUMNS, rows=rows, notes=notes).to_markdown())
    return "\n".join(parts)
