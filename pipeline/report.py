"""Stage ``report``: write ``reports/tables/{name}.md`` for every table of
``weaksam.report.TABLES`` (paper numbers beside this run's, read from ``metrics/``), and the
index ``reports/README.md`` (per table: does this run reproduce the paper's direction?
``weaksam.report.index``).

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
from weaksam.utils.atomic import atomic_dir, atomic_path

METRICS_DIR = Path("metrics")
OUT_DIR = Path("reports/tables")


def run(params: dict[str, Any] | None = None, metrics_dir: Path = METRICS_DIR,
        out_dir: Path = OUT_DIR) -> list[str]:
    """Build every table (markdown and CSV, each naming params ``profile``) and the index
    ``out_dir/../README.md``; returns the table names written."""
    profile = (params or {}).get("profile")
    built = {name: builder(metrics_dir) for name, builder in TABLES.items()}
    index = build_index(built, metrics_dir, profile=profile)
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
