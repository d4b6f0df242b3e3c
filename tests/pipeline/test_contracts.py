"""docs/contracts.md against real metrics files: every key a run writes is documented, every
key documented as ``always`` is written by every file of its table, every file has a table.

The tables are parsed from the doc (section "metrics" and "DVCLive summaries": a heading naming
the file pattern, then a ``| key | written | meaning |`` table) and checked against the committed
run's ``metrics/*.json`` and ``dvclive/*/metrics.json`` and against the tiny profile's
``dvc repro`` of this test session (``tiny_repro``, shared with the other end-to-end tests).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.pipeline.workspace import E2E_TIMEOUT, ROOT

DOC = ROOT / "docs" / "contracts.md"
HEADING = re.compile(r"^#+ `((?:metrics|dvclive)/[^`]+\.json)`")
ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|\s*([^|]+?)\s*\|")


@dataclass(frozen=True)
class Table:
    """One documented metrics file: ``pattern`` (``{name}`` = a run's part of the file name)
    and its keys, key path (``/``-separated, ``<name>`` = any key of that level) -> written
    (``always`` or the runs that write it)."""

    pattern: str
    keys: dict[str, str]

    @property
    def regex(self) -> re.Pattern[str]:
        return _regex(self.pattern, "{", "}")

    @property
    def literal(self) -> int:
        """Characters of the pattern outside ``{...}``: the more, the more specific."""
        return len(re.sub(r"\{[^}]*\}", "", self.pattern))


def _regex(pattern: str, open_: str, close: str) -> re.Pattern[str]:
    parts = re.split(rf"({re.escape(open_)}[^{re.escape(close)}/]*{re.escape(close)})", pattern)
    return re.compile("".join("[^/]+" if p.startswith(open_) and p.endswith(close)
                              else re.escape(p) for p in parts) + r"\Z")


def parse_tables(text: str) -> list[Table]:
    """The metrics tables of a contracts doc, in order."""
    tables: list[Table] = []
    pattern = None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = HEADING.match(line)
        if m:
            pattern = m.group(1)
            continue
        if pattern and re.match(r"^\|\s*key\s*\|\s*written\s*\|", line):
            keys: dict[str, str] = {}
            for row in lines[i + 2:]:
                r = ROW.match(row)
                if not r:
                    break
                assert r.group(1) not in keys, f"{pattern}: key {r.group(1)} twice"
                keys[r.group(1)] = r.group(2)
            tables.append(Table(pattern, keys))
            pattern = None
    return tables


def key_paths(obj: object, prefix: str = "") -> set[str]:
    """Paths of the leaves of a JSON object (``/`` between keys; a list, a scalar or an empty
    object is a leaf)."""
    if not isinstance(obj, dict) or (not obj and prefix):
        return {prefix}
    out: set[str] = set()
    for k, v in obj.items():
        out |= key_paths(v, f"{prefix}/{k}" if prefix else str(k))
    return out


def metrics_files(root: Path) -> list[str]:
    """The metrics files of a run under ``root``, relative paths."""
    files = [*root.glob("metrics/*.json"), *root.glob("dvclive/*/metrics.json")]
    return sorted(str(f.relative_to(root)) for f in files)


def contract_problems(root: Path, tables: list[Table]) -> list[str]:
    """What differs between the metrics files under ``root`` and ``tables``: files without a
    table, tables without a file, undocumented keys, ``always`` keys a file lacks."""
    problems: list[str] = []
    seen: set[str] = set()
    for rel in metrics_files(root):
        matching = [t for t in tables if t.regex.match(rel)]
        if not matching:
            problems.append(f"{rel}: no table in docs/contracts.md")
            continue
        table = max(matching, key=lambda t: t.literal)
        seen.add(table.pattern)
        paths = key_paths(json.loads((root / rel).read_text()))
        documented = {k: _regex(k, "<", ">") for k in table.keys}
        for p in sorted(paths):
            if not any(rx.match(p) for rx in documented.values()):
                problems.append(f"{rel}: key {p} not documented under {table.pattern}")
        for k, written in table.keys.items():
            if written == "always" and not any(documented[k].match(p) for p in paths):
                problems.append(f"{rel}: documented key {k} (always) not written")
    problems += [f"{t.pattern}: documented, but the run has no such file"
                 for t in tables if t.pattern not in seen]
    return problems


@pytest.fixture(scope="module")
def tables() -> list[Table]:
    return parse_tables(DOC.read_text())


def test_doc_has_a_table_per_metrics_file(tables: list[Table]) -> None:
    patterns = [t.pattern for t in tables]
    assert len(patterns) == len(set(patterns)), "a metrics file has two tables"
    for must in ("metrics/data.json", "metrics/pgt_{run}_{mode}.json",
                 "metrics/retrain_frcnn_{pgt}_{variant}.json", "metrics/pseudo_masks.json",
                 "metrics/wsis_{model}.json", "dvclive/clues_train/metrics.json"):
        assert must in patterns
    assert all(t.keys for t in tables), [t.pattern for t in tables if not t.keys]


def test_checker_finds_each_kind_of_difference(tmp_path: Path) -> None:
    """The checker is not vacuous: an undocumented key, a missing ``always`` key, a file
    without a table and a table without a file are each reported."""
    tables = parse_tables(
        "### `metrics/wsod_{method}_{source}.json`\n\n| key | written | meaning |\n|---|---|---|\n"
        "| `ap50` | always | AP |\n| `coco/<k>` | always | COCO |\n| `peak` | mist | x |\n\n"
        "### `metrics/recall_{source}.json`\n\n| key | written | meaning |\n|---|---|---|\n"
        "| `n` | always | n |\n")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "wsod_oicr_ss.json").write_text(
        json.dumps({"ap50": 1.0, "coco": {"AP": 2.0}, "extra": {"a": 1}}))
    (tmp_path / "metrics" / "wsod_mist_ss.json").write_text(json.dumps({"coco": {}}))
    (tmp_path / "metrics" / "data.json").write_text("{}")
    assert contract_problems(tmp_path, tables) == [
        "metrics/data.json: no table in docs/contracts.md",
        "metrics/wsod_mist_ss.json: key coco not documented under "
        "metrics/wsod_{method}_{source}.json",
        "metrics/wsod_mist_ss.json: documented key ap50 (always) not written",
        "metrics/wsod_mist_ss.json: documented key coco/<k> (always) not written",
        "metrics/wsod_oicr_ss.json: key extra/a not documented under "
        "metrics/wsod_{method}_{source}.json",
        "metrics/recall_{source}.json: documented, but the run has no such file",
    ]


def test_most_specific_table_wins(tmp_path: Path) -> None:
    tables = parse_tables(
        "### `metrics/retrain_{row}.json`\n\n| key | written | meaning |\n|---|---|---|\n"
        "| `ap50` | always | AP |\n\n"
        "### `metrics/retrain_prelim_{run}.json`\n\n| key | written | meaning |\n|---|---|---|\n"
        "| `epochs` | always | e |\n")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "retrain_prelim_a.json").write_text('{"epochs": 1}')
    (tmp_path / "metrics" / "retrain_b.json").write_text('{"ap50": 1}')
    assert contract_problems(tmp_path, tables) == []


def test_committed_run_matches_contracts(tables: list[Table]) -> None:
    """The committed default run (``metrics/``, ``dvclive/`` in git) against the doc."""
    assert metrics_files(ROOT), "no committed metrics files"
    assert contract_problems(ROOT, tables) == []


@pytest.mark.slow
@pytest.mark.timeout(E2E_TIMEOUT)
def test_tiny_run_matches_contracts(tables: list[Table], tiny_repro: dict) -> None:
    """The metrics files of this session's tiny-profile ``dvc repro`` against the doc."""
    assert contract_problems(tiny_repro["ws"], tables) == []
