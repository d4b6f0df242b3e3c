"""Cells and notes shared by the retraining tables (paper Tables 1 retrain rows, 5, 9, 10, 11).

This run's retraining metrics (second-half contract, "Retraining"):
``metrics/retrain_{detector}_{pgt}_{variant}.json`` key ``ap50`` (VOC07 11-point AP50 on the
test split, %), written by the ``retrain`` matrix stage; detector in {frcnn, detr}; pgt in
{mist_weaksam_top1, mist_weaksam_adaptive, oicr_weaksam_adaptive}; variants per detector (frcnn:
nodrop, drop, reg0p8, reg1p2, cls3, cls5; detr: nodrop, things90, all90, things80). The WSOD
AP50 a retraining starts from is ``metrics/wsod_{method}_weaksam.json`` key ``ap50``.
"""

from __future__ import annotations

from pathlib import Path

from weaksam.report.table import Cell, Intervals, metric

DETECTORS = {"frcnn": "Faster R-CNN", "detr": "query-based (DINO stand-in)"}

# The notes every retraining table carries (generic: they read nothing about results).
STAND_IN_NOTE = (
    "Query-based rows: the paper retrains DINO (ResNet-50); DINO has no installable release "
    "here, so this run's query-based detector is a stand-in for DINO: its nearest relative "
    "built from the transformers library (the model and what it lacks against DINO: "
    "docs/fidelity.md, \"Retraining: query-based detector with query drop\"). Its numbers "
    "are not DINO's."
)
NOISE_NOTE = (
    "Default (synthetic, CPU) profile: differences under about 3 AP points are within this "
    "profile's run-to-run noise (the WSOD stages' noise floor), so such rows are not resolved "
    "here, whatever their direction."
)


def retrain_file(detector: str, pgt: str, variant: str) -> str:
    """The metrics file name of one retraining run."""
    return f"retrain_{detector}_{pgt}_{variant}.json"


def retrain_ap50(metrics_dir: Path, detector: str, pgt: str, variant: str,
                 evidence: Intervals | None = None) -> Cell:
    """This run's test AP50 (%) of one retraining run, or ``n/a: not run``."""
    return metric(metrics_dir, retrain_file(detector, pgt, variant), "ap50", "retrain",
                  evidence=evidence)


def wsod_ap50(metrics_dir: Path, pgt: str, evidence: Intervals | None = None) -> Cell:
    """This run's test AP50 (%) of the WSOD run a PGT comes from (``mist_weaksam_top1`` ->
    ``metrics/wsod_mist_weaksam.json``), or ``n/a: not run``."""
    method, source = pgt.split("_")[:2]
    return metric(metrics_dir, f"wsod_{method}_{source}.json", "ap50", f"wsod@{method}-{source}",
                  evidence=evidence)
