"""Report tables: paper numbers beside this run's (docs/contracts.md, "reports").

``TABLES`` maps a table name to its builder ``builder(metrics_dir, evidence=None) -> markdown``
(``evidence``: :class:`weaksam.report.intervals.Evidence`, bootstrap intervals); the ``report``
stage writes ``reports/tables/{name}.md`` for every entry. Add a table with one import and one
entry.
"""

from __future__ import annotations

from collections.abc import Callable

from weaksam.report import (
    oracle,
    pgt_quality,
    table1,
    table2,
    table3,
    table4,
    table5,
    table6,
    table7,
    table8,
    table9,
    table10,
    table11,
    wsis_pseudo_masks,
)

TABLES: dict[str, Callable[..., str]] = {
    "table1": table1.build,
    "table4": table4.build,
    "table6": table6.build,
    "table7": table7.build,
    "table8": table8.build,
    "table5": table5.build,       # issue 12: PGT and retraining tables
    "table9": table9.build,
    "table10": table10.build,
    "table11": table11.build,
    "pgt": pgt_quality.build,
    "oracle": oracle.build,       # issue 24: what limits retraining (oracle training sets)
    "table2": table2.build,       # issue 13: WSIS tables and pseudo-mask quality
    "table3": table3.build,
    "wsis_pseudo_masks": wsis_pseudo_masks.build,
}
