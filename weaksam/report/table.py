"""Report tables: every cell carries its value and where it came from (STYLE.md, item 10).

A :class:`Cell` is one of
- ``paper``: a number printed in the paper;
- ``this run``: read from a metrics JSON written by a DVC stage of this workspace; the rendered
  table footnotes the stage and file;
- ``n/a: not run``: the metrics file or key does not exist (yet). Never a guess.

:func:`metric` reads a value from ``metrics_dir/<file>`` (dotted keys reach nested values, e.g.
``"coco.AP"``); :class:`Table` renders markdown with a caption naming the paper table, a
"Source" column per row, and the footnotes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from weaksam.errors import InputError
from weaksam.utils.readers import read_json


class Intervals(Protocol):
    """What a table needs of :class:`weaksam.report.intervals.Evidence`: the bootstrap
    interval (``.low``, ``.high``) of a metrics file's key, or None."""

    def interval(self, file: str, key: str) -> Any: ...

PAPER = "paper"
THIS_RUN = "this run"
NOT_RUN = "n/a: not run"
INTERVAL_NOTE = (
    "[low, high] after a this-run value: its 95 % percentile interval from a bootstrap over "
    "the split's images (`weaksam.eval.bootstrap`; resamples and seed: `reports/README.md`)."
)


@dataclass(frozen=True)
class Cell:
    """One table value. ``origin`` (this-run cells): "DVC stage `x`, `metrics/x.json`"."""

    value: float | int | str | None
    source: str
    fmt: str = "{:.1f}"
    origin: str | None = None
    interval: tuple[float, float] | None = None

    def text(self) -> str:
        """The value as printed (without a footnote marker), with its bootstrap interval when
        it has one: ``55.7 [52.1, 59.0]``."""
        if self.source == NOT_RUN:
            return NOT_RUN
        if self.value is None:
            return "n/a: undefined"
        if isinstance(self.value, str):
            return self.value
        out = self.fmt.format(self.value)
        if self.interval is not None:
            lo, hi = self.interval
            out += f" [{self.fmt.format(lo)}, {self.fmt.format(hi)}]"
        return out


def paper(value: float | int | str, fmt: str = "{:.1f}") -> Cell:
    """A number printed in the paper."""
    return Cell(value, PAPER, fmt)


def not_run() -> Cell:
    """The cell of a result this run has not produced."""
    return Cell(None, NOT_RUN)


def read_metrics(path: str | Path) -> dict[str, Any] | None:
    """A metrics JSON as a dict; None when the file does not exist; a corrupt file (not JSON,
    not an object) raises :class:`InputError` rather than silently becoming "not run"."""
    path = Path(path)
    if not path.is_file():
        return None
    return read_json(path, "metrics file", want_object=True)


_MISSING = object()


def _lookup(data: dict[str, Any], key: str) -> Any:
    cur: Any = data
    if key in data:  # keys such as "recall@0.5" are looked up whole first
        return data[key]
    for part in key.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


def metric(
    metrics_dir: str | Path,
    file: str,
    key: str,
    stage: str,
    fmt: str = "{:.1f}",
    scale: float = 1.0,
    evidence: Intervals | None = None,
) -> Cell:
    """The value ``key`` of ``metrics_dir/file`` (written by DVC stage ``stage``) as a this-run
    cell, times ``scale``; a missing file or key gives the ``n/a: not run`` cell. With
    ``evidence`` the cell carries the number's bootstrap interval when its per-image evidence
    exists (:mod:`weaksam.report.intervals`)."""
    metrics_dir = Path(metrics_dir)
    data = read_metrics(metrics_dir / file)
    if data is None:
        return not_run()
    value = _lookup(data, key)
    if value is _MISSING:
        return not_run()
    if value is not None and not isinstance(value, str):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(metrics_dir / file, f"key {key!r} is not a number: {value!r}")
        value = value * scale
    origin = f"DVC stage `{stage}`, `{metrics_dir.name}/{file}`"
    iv = None
    if evidence is not None and isinstance(value, int | float):
        found = evidence.interval(file, key)
        iv = None if found is None else (found.low * scale, found.high * scale)
    return Cell(value, THIS_RUN, fmt, origin, iv)


@dataclass
class Row:
    """A labelled row of cells (one per value column)."""

    label: str
    cells: Sequence[Cell]

    def source(self) -> str:
        """The row's provenance: the common source of its cells, or "this run (partly n/a)"."""
        kinds = {c.source for c in self.cells}
        if len(kinds) == 1:
            return kinds.pop()
        if kinds == {THIS_RUN, NOT_RUN}:
            return f"{THIS_RUN} (partly n/a)"
        return "mixed"


@dataclass
class Table:
    """A paper table beside this run's numbers.

    ``name``: "Table 8"; ``caption``: what it shows and where in the paper;
    ``columns``: headers of the label column and the value columns; ``notes``: extra lines
    printed under the footnotes (e.g. how this run's setting differs from the paper's).
    """

    name: str
    caption: str
    columns: Sequence[str]
    rows: list[Row] = field(default_factory=list)
    notes: Sequence[str] = ()

    def to_markdown(self) -> str:
        """Markdown: caption, table (with a Source column), footnotes naming stage and file."""
        width = len(self.columns) - 1
        refs: dict[str, int] = {}
        lines = [f"**{self.name}.** {self.caption}", ""]
        lines.append("| " + " | ".join([*self.columns, "Source"]) + " |")
        lines.append("|" + "---|" * (width + 2))
        for row in self.rows:
            if len(row.cells) != width:
                raise ValueError(f"{self.name}, row {row.label!r}: {len(row.cells)} cells, "
                                 f"expected {width}")
            texts = []
            for c in row.cells:
                t = c.text()
                if c.source == THIS_RUN and c.origin:
                    t += f" [{refs.setdefault(c.origin, len(refs) + 1)}]"
                texts.append(t)
            lines.append("| " + " | ".join([row.label, *texts, row.source()]) + " |")
        lines.append("")
        if any(c.interval is not None for row in self.rows for c in row.cells):
            lines.append(INTERVAL_NOTE)
            lines.append("")
        lines.append(
            f'Cells: "{PAPER}" = printed in the paper; "{THIS_RUN}" = measured by this '
            f'workspace\'s `dvc repro` (footnotes); "{NOT_RUN}" = its metrics file or key does '
            "not exist yet."
        )
        if refs:
            lines.append("")
            lines.extend(f"[{n}] {origin}" for origin, n in refs.items())
        if self.notes:
            lines.append("")
            lines.extend(self.notes)
        return "\n".join(lines) + "\n"
