"""reports/README.md index (weaksam/report/index.py): checks, verdicts, and the index built
from hand-written metrics files with known directions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from weaksam.report.index import (
    DIRECTIONS,
    Check,
    Direction,
    Value,
    best_is,
    build_index,
    chain,
    figure4_direction,
    table1_direction,
    table10_direction,
    value,
)


def _v(x, name="v"):
    return Value(name, x)


def test_check_and_verdicts():
    assert Check(_v(2.0), ">", _v(1.0)).holds is True
    assert Check(_v(1.0), ">", _v(1.0)).holds is False
    assert Check(_v(1.0), ">=", _v(1.0)).holds is True
    assert Check(_v(None), "<", _v(1.0)).holds is None
    # without per-image evidence: judged on the point values, marked as such
    assert Check(_v(2.0, "a"), ">", _v(3.0, "b")).text() == "a 2 > b 3: reversed (point only)"
    yes, no, na = (Check(_v(2.0), ">", _v(1.0)), Check(_v(0.0), ">", _v(1.0)),
                   Check(_v(None), ">", _v(1.0)))
    assert Direction("c", [yes, yes]).verdict() == "holds 2"
    assert Direction("c", [no, no]).verdict() == "reversed 2"
    assert Direction("c", [yes, no, no]).verdict() == "holds 1, reversed 2"
    assert Direction("c", [na, na]).verdict() == "not run"
    assert Direction("c", [yes, na]).verdict() == "holds 1, 1 not run"


def test_chain_and_best_is():
    vals = [_v(1.0, "a"), _v(2.0, "b"), _v(1.5, "c")]
    assert [c.holds for c in chain(vals, ">")] == [True, False]  # b > a, c > b
    assert [c.holds for c in best_is(vals, 1)] == [True, True]
    assert [c.holds for c in best_is(vals, 0)] == [False, False]


def _write(d: Path, name: str, data: dict) -> None:
    (d / name).write_text(json.dumps(data))


def test_value_reads_nested_and_missing(tmp_path):
    _write(tmp_path, "figures.json", {"fig4": {"ss": {"mean_cosine": 0.5}}})
    assert value(tmp_path, "figures.json", "fig4.ss.mean_cosine", "x").value == 0.5
    assert value(tmp_path, "figures.json", "fig4.weaksam.mean_cosine", "x").value is None
    assert value(tmp_path, "nope.json", "k", "x").value is None


def test_table1_direction_from_metrics(tmp_path):
    for name, ap in {"oicr_ss": 40.0, "oicr_weaksam": 45.0, "mist_ss": 50.0,
                     "mist_weaksam": 42.0}.items():
        _write(tmp_path, f"wsod_{name}.json", {"ap50": ap})
    _write(tmp_path, "retrain_frcnn_mist_weaksam_adaptive_drop.json", {"ap50": 47.0})
    d = table1_direction(tmp_path)
    holds = [c.holds for c in d.checks]
    assert holds[:2] == [True, False]  # OICR: WeakSAM above SS; MIST: below
    assert True in holds[2:]           # MIST retrain 47 > its WSOD 42
    assert d.verdict().startswith("holds 2, reversed 1")


def test_table10_and_figure4(tmp_path):
    for var, ap in {"nodrop": 50.0, "things90": 52.0, "all90": 51.0}.items():
        _write(tmp_path, f"retrain_detr_mist_weaksam_adaptive_{var}.json", {"ap50": ap})
    assert table10_direction(tmp_path).verdict() == "holds 2"
    _write(tmp_path, "figures.json", {"fig4": {"ss": {"mean_cosine": 0.8},
                                               "weaksam": {"mean_cosine": 0.6}}})
    assert figure4_direction(tmp_path).verdict() == "holds 1"


def test_build_index_lists_every_table_in_order(tmp_path):
    tables = {"table10": "**Table 10.** x", "table2": "**Table 2.** y", "extra": "**Mine.** z",
              "table1": "**Table 1.** w"}
    text = build_index(tables, tmp_path, profile="tiny",
                       directions={"table1": DIRECTIONS["table1"]})
    rows = [ln for ln in text.splitlines() if ln.startswith("| [")]
    assert [r.split("]")[0] for r in rows] == ["| [Table 1", "| [Table 2", "| [Table 10",
                                               "| [Mine", "| [Figure 4"]
    assert "| not run |" in rows[0]
    assert "no direction check" in rows[1] and "(tables/table2.md)" in rows[1]
    assert "Profile of this run: **tiny**" in text


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_every_direction_runs_without_metrics(tmp_path, name):
    d = DIRECTIONS[name](tmp_path)
    assert d.checks and d.verdict() == "not run"


def test_table2_direction_from_metrics(tmp_path):
    aps = {"mask_rcnn_gt": 60.0, "mask_rcnn": 40.0, "mask2former": 45.0}
    for model, ap in aps.items():
        _write(tmp_path, f"wsis_{model}.json",
               {k: ap for k in ("ap25", "ap50", "ap70", "ap75")} | {"coco": {"AP": ap}})
    d = DIRECTIONS["table2"](tmp_path)
    assert d.verdict() == "holds 8" and len(d.checks) == 8
    # Table 3 reads the "coco" key: AP present, AP50 / AP75 not
    assert DIRECTIONS["table3"](tmp_path).verdict() == "holds 2, 4 not run"
