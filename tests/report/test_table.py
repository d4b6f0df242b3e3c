"""Report framework (weaksam/report/table.py): provenance of every cell, n/a on missing input."""

from __future__ import annotations

import json

import pytest

from weaksam.errors import InputError
from weaksam.report.table import NOT_RUN, PAPER, THIS_RUN, Row, Table, metric, not_run, paper


def _metrics(tmp_path, name="m.json", data=None):
    d = tmp_path / "metrics"
    d.mkdir(exist_ok=True)
    (d / name).write_text(json.dumps(data if data is not None else
                                     {"recall@0.5": 81.25, "coco": {"AP": 0.4321}, "u": None,
                                      "label": "x"}))
    return d


def test_metric_reads_file_and_nested_keys(tmp_path):
    d = _metrics(tmp_path)
    c = metric(d, "m.json", "recall@0.5", "recall_ss")
    assert c.source == THIS_RUN and c.value == 81.25 and c.text() == "81.2"
    assert c.origin == "DVC stage `recall_ss`, `metrics/m.json`"
    nested = metric(d, "m.json", "coco.AP", "wsod", fmt="{:.2f}", scale=100)
    assert nested.value == pytest.approx(43.21) and nested.text() == "43.21"
    assert metric(d, "m.json", "u", "s").text() == "n/a: undefined"


def test_missing_file_or_key_is_not_run(tmp_path):
    d = _metrics(tmp_path)
    for c in (metric(d, "absent.json", "recall@0.5", "s"), metric(d, "m.json", "nokey", "s"),
              metric(d, "m.json", "coco.AP50", "s"), metric(tmp_path / "nodir", "m.json", "x",
                                                           "s")):
        assert c.source == NOT_RUN and c.text() == "n/a: not run"


def test_corrupt_metrics_raise_naming_the_file(tmp_path):
    d = tmp_path / "metrics"
    d.mkdir()
    (d / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="bad.json"):
        metric(d, "bad.json", "x", "s")
    (d / "list.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="list.json"):
        metric(d, "list.json", "x", "s")
    _metrics(tmp_path, "obj.json", {"x": {"y": 1}})
    with pytest.raises(InputError, match="not a number"):
        metric(d, "obj.json", "x", "s")


def test_render_markdown_with_sources_and_footnotes(tmp_path):
    d = _metrics(tmp_path)
    t = Table(
        name="Table 99",
        caption="A test table.",
        columns=("Method", "R@0.5", "AP"),
        rows=[
            Row("paper row", [paper(92.6), paper(57, "{:d}")]),
            Row("run row", [metric(d, "m.json", "recall@0.5", "recall_ss"),
                            metric(d, "m.json", "coco.AP", "wsod_x", scale=100)]),
            Row("half row", [metric(d, "m.json", "recall@0.5", "recall_ss"), not_run()]),
            Row("missing", [not_run(), not_run()]),
        ],
        notes=("A note.",),
    )
    md = t.to_markdown()
    lines = md.splitlines()
    assert lines[0] == "**Table 99.** A test table."
    assert "| Method | R@0.5 | AP | Source |" in lines
    assert "| paper row | 92.6 | 57 | paper |" in lines
    assert "| run row | 81.2 [1] | 43.2 [2] | this run |" in lines
    assert "| half row | 81.2 [1] | n/a: not run | this run (partly n/a) |" in lines
    assert "| missing | n/a: not run | n/a: not run | n/a: not run |" in lines
    assert "[1] DVC stage `recall_ss`, `metrics/m.json`" in lines
    assert "[2] DVC stage `wsod_x`, `metrics/m.json`" in lines
    assert lines[-1] == "A note."
    assert PAPER in md
    with pytest.raises(ValueError, match="2 cells"):
        Table("T", "c", ("a", "b"), [Row("r", [paper(1), paper(2)])]).to_markdown()
