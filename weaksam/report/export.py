"""Machine-readable copies of the rendered report tables.

Each table builder renders markdown (:mod:`weaksam.report.table`): a bold caption line, then a
pipe table whose cells carry their origin (``paper``, ``this run`` with a footnote marker, or
``n/a: not run``). :func:`markdown_to_csv` turns every pipe table of such a file into CSV rows,
so a spreadsheet or pandas reads the same cells: one header row per table, prefixed by the
columns ``table`` (the caption's bold label, e.g. "Table 5 (a).") and ``profile``.
"""

from __future__ import annotations

import csv
import io
import re

_CAPTION = re.compile(r"^\*\*(.+?)\*\*")
_RULE = re.compile(r"^\|\s*:?-{3,}")


def _cells(line: str) -> list[str]:
    """The cells of one markdown pipe-table row (outer pipes dropped, cells stripped)."""
    return [c.strip() for c in line.strip().strip("|").split("|")]


def markdown_to_csv(markdown: str, profile: str | None = None) -> str:
    """Every pipe table of ``markdown`` as CSV text (``\\n`` line ends).

    Rows: for each table its header, then its body rows, each prefixed by the table's caption
    label (the bold text of the nearest caption line above it, "" if none) and ``profile``
    ("" when None). Tables keep their own column counts; a file without tables gives "".
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    label, lines = "", markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        m = _CAPTION.match(line)
        if m:
            label = m.group(1).strip()
        is_table = (line.lstrip().startswith("|") and i + 1 < len(lines)
                    and _RULE.match(lines[i + 1].strip()))
        if not is_table:
            i += 1
            continue
        writer.writerow(["table", "profile", *_cells(line)])
        i += 2
        while i < len(lines) and lines[i].lstrip().startswith("|"):
            writer.writerow([label, profile or "", *_cells(lines[i])])
            i += 1
    return out.getvalue()
