"""CSV copies of the report tables (weaksam.report.export)."""

from __future__ import annotations

import csv
import io

from weaksam.report.export import markdown_to_csv

MD = """**Table 5 (a).** Faster R-CNN.

| Setting | AP50 | Source |
|---|---|---|
| Top-1 PGT (paper) | 68.4 | paper |
| Top-1 PGT (this run) | 42.6 [1] | this run |

[1] DVC stage `retrain@x`, `metrics/x.json`

**Table 5 (b).** Query-based.

| Setting | AP50 | Source |
|---|---|---|
| Adaptive PGT (this run) | n/a: not run | n/a: not run |
"""


def test_markdown_to_csv_two_tables() -> None:
    rows = list(csv.reader(io.StringIO(markdown_to_csv(MD, "default"))))
    assert rows == [
        ["table", "profile", "Setting", "AP50", "Source"],
        ["Table 5 (a).", "default", "Top-1 PGT (paper)", "68.4", "paper"],
        ["Table 5 (a).", "default", "Top-1 PGT (this run)", "42.6 [1]", "this run"],
        ["table", "profile", "Setting", "AP50", "Source"],
        ["Table 5 (b).", "default", "Adaptive PGT (this run)", "n/a: not run", "n/a: not run"],
    ]


def test_markdown_without_tables() -> None:
    assert markdown_to_csv("**Table 9.** nothing here\n\ntext | with a pipe\n") == ""
    assert markdown_to_csv("", None) == ""
