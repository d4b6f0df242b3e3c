"""Stage ``report``: write ``reports/tables/{name}.md`` for every table of
``weaksam.report.TABLES`` (paper numbers beside this run's, read from ``metrics/``, each with
its 95 % bootstrap interval over the split's images), and the index ``reports/README.md`` (per
comparison of the paper: holds / within noise / reversed, ``weaksam.report.index``).

Intervals come from the versioned detection, prediction, proposal and PGT files the metrics
were computed from (``weaksam.report.intervals``): ``N_RESAMPLES`` seeded resamples of the
images, the same ones for every number of a split, so every comparison is paired.

All tables are built first, then the folder is replaced whole (atomically): a failing builder
leaves the previous tables as they were.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.common import load_params, setup_logging, stage_args
from weaksam.report import TABLES
from weaksam.report.export import markdown_to_csv
from weaksam.report.index import build_index
from weaksam.report.intervals import Evidence
from weaksam.utils.atomic import atomic_dir, atomic_path

METRICS_DIR = Path("metrics")
OUT_DIR = Path("reports/tables")
N_RESAMPLES = 1000  # issue 24: at least 1000
BOOTSTRAP_SEED = 0


def evidence_from(params: dict[str, Any] | None, root: Path = Path(".")) -> Evidence:
    """The bootstrap settings: resamples and seed of this module, and the evaluation settings
    of the stages whose files are resampled (params ``wsis.eval_ignore_difficult``,
    ``pgt.match_iou``)."""
    params = params or {}
    return Evidence(
        root=root, n_resamples=N_RESAMPLES, seed=BOOTSTRAP_SEED,
        wsis_ignore_difficult=bool(params.get("wsis", {}).get("eval_ignore_difficult", False)),
        pgt_iou=float(params.get("pgt", {}).get("match_iou", 0.5)),
    )


def run(params: dict[str, Any] | None = None, metrics_dir: Path = METRICS_DIR,
        out_dir: Path = OUT_DIR, evidence: Evidence | None = None) -> list[str]:
    """Build every table (markdown and CSV, each naming params ``profile``) and the index
    ``out_dir/../README.md``; returns the table names written. ``evidence`` defaults to the
    files beside ``metrics_dir`` (:func:`evidence_from`)."""
    profile = (params or {}).get("profile")
    if evidence is None:
        evidence = evidence_from(params, Path(metrics_dir).parent)
    built = {name: builder(metrics_dir, evidence=evidence) for name, builder in TABLES.items()}
    index = build_index(built, metrics_dir, profile=profile, evidence=evidence)
    with atomic_dir(out_dir) as tmp:
        for name, text in built.items():
            (tmp / f"{name}.md").write_text(f"{text.rstrip()}\n\nProfile of this run: "
                                            f"**{profile or 'unnamed'}**.\n")
            (tmp / f"{name}.csv").write_text(markdown_to_csv(text, profile))
    with atomic_path(out_dir.parent / "README.md") as tmp:
        tmp.write_text(index)
    return sorted(built)


def main() -> None:
    args = stage_args(__doc__.splitlines()[0])
    log = setup_logging("report")
    names = run(load_params(args.params))
    log.info("wrote %d tables to %s: %s", len(names), OUT_DIR, ", ".join(names))


if __name__ == "__main__":
    main()
