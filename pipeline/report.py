"""Stage ``report``: write ``reports/tables/{name}.md`` for every table of
``weaksam.report.TABLES`` (paper numbers beside this run's, read from ``metrics/``).

All tables are built first, then the folder is replaced whole (atomically): a failing builder
leaves the previous tables as they were.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.common import load_params, setup_logging, stage_args
from weaksam.report import TABLES
from weaksam.utils.atomic import atomic_dir

METRICS_DIR = Path("metrics")
OUT_DIR = Path("reports/tables")


def run(params: dict[str, Any] | None = None, metrics_dir: Path = METRICS_DIR,
        out_dir: Path = OUT_DIR) -> list[str]:
    """Build every table; returns the names written. ``params`` is unused (no knobs yet)."""
    built = {name: builder(metrics_dir) for name, builder in TABLES.items()}
    with atomic_dir(out_dir) as tmp:
        for name, text in built.items():
            (tmp / f"{name}.md").write_text(text)
    return sorted(built)


def main() -> None:
    args = stage_args(__doc__.splitlines()[0])
    log = setup_logging("report")
    names = run(load_params(args.params))
    log.info("wrote %d tables to %s: %s", len(names), OUT_DIR, ", ".join(names))


if __name__ == "__main__":
    main()
