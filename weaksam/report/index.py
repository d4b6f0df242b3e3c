"""``reports/README.md``: an index of the report tables with, per table, whether this run
reproduces the paper's *direction* (which variant beats which), computed from the metrics and
judged against a paired bootstrap over the split's images (issue 24).

Absolute numbers of the default (embedded, CPU) profile are not comparable with the paper's;
the comparisons inside a table are. Each table's direction is a list of :class:`Check` s, one
per comparison the paper makes, e.g. Table 1: "WeakSAM (OICR) AP50 > OICR [SS] AP50". A check
whose metrics file or key does not exist is "not run", never a guess.

The verdict of a check is judged on the claimed difference (left - right for ``>``, ``>=``;
right - left for ``<``, ``<=``) and its 95 % percentile interval from a paired bootstrap over
the images (:class:`weaksam.report.intervals.Evidence`, both sides on the same resampled
image sets): ``holds`` (interval above 0), ``within noise`` (interval contains 0),
``reversed`` (interval below 0). A check whose numbers have no per-image evidence (times,
memory, COCO-style mask AP, feature similarity, or missing detection files) is judged on its
point values, ``holds`` or ``reversed``, marked "point only". A table's summary counts each.

``DIRECTIONS`` maps a table name (``table1``) to its checks builder ``f(metrics_dir)``; a table
without an entry is listed with "no direction check". Add one entry per new table.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from weaksam.eval.bootstrap import Interval
from weaksam.report import (
    pgt_quality,
    retrain,
    table1,
    table2,
    table4,
    table5,
    table8,
    table9,
    table10,
    table11,
)
from weaksam.report.intervals import Evidence
from weaksam.report.table import NOT_RUN, metric

HOLDS = "holds"
WITHIN_NOISE = "within noise"
REVERSED = "reversed"
NOT_RUN_VERDICT = "not run"
VERDICTS = (HOLDS, WITHIN_NOISE, REVERSED)


@dataclass(frozen=True)
class Value:
    """A metric of this run: ``label`` names it in the index, ``value`` is None when not run."""

    label: str
    value: float | None
    file: str | None = None
    key: str | None = None


@dataclass(frozen=True)
class Judgement:
    """A check's verdict (``holds`` / ``within noise`` / ``reversed`` / ``not run``) and the
    claimed difference with its interval (None: point values only)."""

    verdict: str
    difference: Interval | None = None


@dataclass(frozen=True)
class Check:
    """One comparison ``left op right`` with ``op`` in ``>``, ``>=``, ``<``, ``<=``."""

    left: Value
    op: str
    right: Value

    @property
    def holds(self) -> bool | None:
        """True / False, or None when a side was not run."""
        a, b = self.left.value, self.right.value
        if a is None or b is None:
            return None
        return {">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b}[self.op]

    def judge(self, evidence: Evidence | None = None) -> Judgement:
        """The verdict from the paired bootstrap of the claimed difference when ``evidence``
        has both sides' per-image files, else from the point values (module docstring)."""
        if self.holds is None:
            return Judgement(NOT_RUN_VERDICT)
        a, b = self.left, self.right
        diff = None
        if evidence is not None and None not in (a.file, a.key, b.file, b.key):
            diff = evidence.difference((a.file, a.key), (b.file, b.key))
        if diff is not None and self.op in ("<", "<="):
            diff = Interval(-diff.point, -diff.high, -diff.low)
        if diff is None or np.isnan(diff.low):
            return Judgement(HOLDS if self.holds else REVERSED)
        if diff.low > 0:
            return Judgement(HOLDS, diff)
        if diff.high < 0:
            return Judgement(REVERSED, diff)
        return Judgement(WITHIN_NOISE, diff)

    def text(self, evidence: Evidence | None = None) -> str:
        """``label value op label value: verdict, difference [low, high]`` (or "point only",
        or "n/a" when a side was not run)."""
        def side(v: Value) -> str:
            return f"{v.label} {'n/a' if v.value is None else f'{v.value:.4g}'}"

        j = self.judge(evidence)
        if j.verdict == NOT_RUN_VERDICT:
            mark = "n/a"
        elif j.difference is None:
            mark = f"{j.verdict} (point only)"
        else:
            d = j.difference
            mark = f"{j.verdict}, {d.point:+.2f} [{d.low:+.2f}, {d.high:+.2f}]"
        return f"{side(self.left)} {self.op} {side(self.right)}: {mark}"


@dataclass(frozen=True)
class Direction:
    """The paper's claim for one table (``claim``, in words) and this run's checks of it."""

    claim: str
    checks: Sequence[Check]

    def counts(self, evidence: Evidence | None = None) -> dict[str, int]:
        """Number of checks per verdict (holds, within noise, reversed, not run)."""
        out = dict.fromkeys((*VERDICTS, NOT_RUN_VERDICT), 0)
        for c in self.checks:
            out[c.judge(evidence).verdict] += 1
        return out

    def verdict(self, evidence: Evidence | None = None) -> str:
        """The table's summary: ``holds 2, within noise 3, reversed 1`` (verdicts without a
        check left out; ``, 1 not run`` appended), or ``not run``."""
        n = self.counts(evidence)
        missing = n.pop(NOT_RUN_VERDICT)
        if not any(n.values()):
            return NOT_RUN_VERDICT
        out = ", ".join(f"{k} {v}" for k, v in n.items() if v)
        return out + (f", {missing} not run" if missing else "")


def value(metrics_dir: Path, file: str, key: str, label: str) -> Value:
    """``key`` of ``metrics_dir/file`` as a :class:`Value` (None when the file or key is
    missing; a corrupt file raises :class:`~weaksam.errors.InputError`)."""
    cell = metric(metrics_dir, file, key, stage="")
    v = None if cell.source == NOT_RUN or cell.value is None else float(cell.value)
    return Value(label, v, file, key)


def chain(values: Sequence[Value], op: str) -> list[Check]:
    """Checks ``values[i + 1] op values[i]`` for consecutive rows (e.g. each row >= the last)."""
    return [Check(b, op, a) for a, b in zip(values[:-1], values[1:], strict=True)]


def best_is(values: Sequence[Value], chosen: int) -> list[Check]:
    """Checks that ``values[chosen]`` is at least every other value (the paper's chosen
    setting is the best of a sweep)."""
    return [Check(values[chosen], ">=", v) for i, v in enumerate(values) if i != chosen]


# --- the paper's directions, table by table ---


def table1_direction(metrics_dir: Path) -> Direction:
    """Table 1: for each WSOD method, WeakSAM proposals give a higher AP50 than SS; retraining
    on WeakSAM's PGT raises the AP50 of the WSOD run it starts from."""
    labels = {(m, s): label for label, _, m, s in table1.RUN_ROWS}
    checks = [
        Check(value(metrics_dir, f"wsod_{m}_weaksam.json", "ap50", labels[m, "weaksam"]), ">",
              value(metrics_dir, f"wsod_{m}_ss.json", "ap50", f"{labels[m, 'ss']} [SS]"))
        for m in dict.fromkeys(m for _, _, m, _ in table1.RUN_ROWS)
    ]
    for label, det, pgt, variant in getattr(table1, "RUN_RETRAIN_ROWS", ()):
        method, source = pgt.split("_")[:2]
        checks.append(Check(
            value(metrics_dir, retrain.retrain_file(det, pgt, variant), "ap50",
                  f"{label} + {det} retrain"), ">",
            value(metrics_dir, f"wsod_{method}_{source}.json", "ap50", f"{label} WSOD")))
    return Direction("WeakSAM proposals beat Selective Search in VOC07 AP50, for OICR and for "
                     "MIST; retraining on their PGT beats the WSOD run it starts from", checks)


def table4_direction(metrics_dir: Path) -> Direction:
    """Table 4: each added prompt source raises recall (every IoU) and MIST AP50; the full
    WeakSAM set beats SS in AP50 with fewer proposals."""
    rows = [(label, name) for label, name, *_ in table4.RUN_ROWS]
    prompt_rows = rows[1:]
    checks: list[Check] = []
    for key in ("recall@0.5", "recall@0.75", "recall@0.9"):
        checks += chain([value(metrics_dir, f"recall_{n}.json", key, f"{lab} {key}")
                         for lab, n in prompt_rows], ">=")
    checks += chain([value(metrics_dir, f"wsod_mist_{n}.json", "ap50", f"{lab} AP50")
                     for lab, n in prompt_rows], ">")
    (ss_label, ss), (ws_label, ws) = rows[0], rows[-1]
    checks.append(Check(value(metrics_dir, f"wsod_mist_{ws}.json", "ap50", f"{ws_label} AP50"),
                        ">", value(metrics_dir, f"wsod_mist_{ss}.json", "ap50",
                                   f"{ss_label} AP50")))
    checks.append(Check(value(metrics_dir, f"recall_{ws}.json", "num_per_image",
                              f"{ws_label} Num."), "<",
                        value(metrics_dir, f"recall_{ss}.json", "num_per_image",
                              f"{ss_label} Num.")))
    return Direction("adding prompt sources (dense, +CAM fine, +CAM coarse, +cross) raises "
                     "recall and MIST AP50 row by row; all prompts beat SS in AP50 with fewer "
                     "proposals", checks)


def table6_direction(metrics_dir: Path) -> Direction:
    """Table 6: WeakSAM needs fewer proposals, less proposal time, less MIST training time and
    less memory than SS."""
    def pair(file: str, key: str, what: str) -> Check:
        return Check(value(metrics_dir, file.format("weaksam"), key, f"WeakSAM {what}"), "<",
                     value(metrics_dir, file.format("ss"), key, f"SS {what}"))

    return Direction("WeakSAM costs less than SS: proposals, proposal time, WSOD training time, "
                     "WSOD memory", [
                         pair("recall_{}.json", "num_per_image", "Num."),
                         pair("proposals_time_{}.json", "seconds_per_image", "s/image"),
                         pair("wsod_mist_{}.json", "seconds_per_epoch", "s/epoch"),
                         pair("wsod_mist_{}.json", "peak_rss_mib", "MiB"),
                     ])


def table7_direction(metrics_dir: Path) -> Direction:
    """Table 7: WeakSAM proposals give a higher CorLoc than SS, for OICR and for MIST."""
    checks = []
    for m, name in (("oicr", "OICR"), ("mist", "MIST")):
        checks.append(Check(
            value(metrics_dir, f"wsod_{m}_weaksam.json", "corloc", f"WeakSAM ({name}) CorLoc"),
            ">", value(metrics_dir, f"wsod_{m}_ss.json", "corloc", f"{name} [SS] CorLoc")))
    return Direction("WeakSAM proposals beat Selective Search in CorLoc, for OICR and for MIST",
                     checks)


def table8_direction(metrics_dir: Path) -> Direction:
    """Table 8: WeakSAM proposals (WeakTr clues) have a higher recall at every IoU than SS, with
    fewer proposals."""
    ss_file, ws_file = table8.RUN_ROWS[0][1], table8.RUN_ROWS[1][1]
    checks = [
        Check(value(metrics_dir, ws_file, k, f"WeakSAM {k}"), ">",
              value(metrics_dir, ss_file, k, f"SS {k}"))
        for k in ("recall@0.5", "recall@0.75", "recall@0.9")
    ]
    checks.append(Check(value(metrics_dir, ws_file, "num_per_image", "WeakSAM Num."), "<",
                        value(metrics_dir, ss_file, "num_per_image", "SS Num.")))
    return Direction("WeakSAM proposals reach a higher recall than SS at IoU 0.5, 0.75 and 0.9 "
                     "with fewer proposals", checks)


def _retrain_values(metrics_dir: Path, rows) -> list[Value]:
    """``rows`` of ``(label, _, detector, pgt, variant)`` -> their AP50 values."""
    return [value(metrics_dir, retrain.retrain_file(det, pgt, var), "ap50", f"{det}: {label}")
            for label, _, det, pgt, var in rows]


def table5_direction(metrics_dir: Path) -> Direction:
    """Table 5: each row beats the one above: top-1 PGT < adaptive PGT < adaptive PGT + drop,
    for Faster R-CNN (RoI drop) and the query-based detector (query drop)."""
    checks = chain(_retrain_values(metrics_dir, table5.PART_A), ">")
    checks += chain(_retrain_values(metrics_dir, table5.PART_B), ">")
    return Direction("adaptive PGT beats top-1 PGT, and RoI / query drop adds to it, row by row "
                     "(Faster R-CNN and the query-based detector)", checks)


def table9_direction(metrics_dir: Path) -> Direction:
    """Table 9: the paper's RoI drop thresholds (tau_reg 1.0, tau_cls 4.0) are the best of
    each sweep."""
    checks: list[Check] = []
    for name, cols in (table9.PART_A, table9.PART_B):
        vals = [value(metrics_dir, retrain.retrain_file("frcnn", table9.PGT, var), "ap50",
                      f"{name} {v:g}") for v, _, var in cols]
        checks += best_is(vals, [var for *_, var in cols].index("drop"))
    return Direction("tau_reg = 1.0 and tau_cls = 4.0 give the best AP50 of their sweeps",
                     checks)


def table10_direction(metrics_dir: Path) -> Direction:
    """Table 10: dropping only foreground queries is best (above no drop and above dropping
    background queries too)."""
    vals = {var: value(metrics_dir, retrain.retrain_file("detr", table10.PGT, var), "ap50",
                       label) for label, _, var in table10.ROWS}
    best = vals["things90"]
    return Direction("dropping only foreground queries (Query_things) is best",
                     [Check(best, ">", v) for k, v in vals.items() if k != "things90"])


def table11_direction(metrics_dir: Path) -> Direction:
    """Table 11: the 90th percentile is the best query-drop threshold."""
    vals = {var: value(metrics_dir, retrain.retrain_file("detr", table11.PGT, var), "ap50",
                       f"tau {tau}") for tau, _, var in table11.COLS}
    best = vals["things90"]
    return Direction("tau = 90 (percentile) is the best query-drop threshold",
                     [Check(best, ">", v) for k, v in vals.items() if k != "things90"])


def pgt_direction(metrics_dir: Path) -> Direction:
    """Fig. 7's claim (the paper prints no PGT numbers): adaptive PGT captures more objects
    than top-1 PGT, i.e. a higher recall, for each WSOD run."""
    checks = []
    for label, run in pgt_quality.RUNS:
        checks.append(Check(
            value(metrics_dir, f"pgt_{run}_adaptive.json", "recall", f"{label} adaptive recall"),
            ">", value(metrics_dir, f"pgt_{run}_top1.json", "recall", f"{label} top-1 recall")))
    return Direction("adaptive PGT finds more objects than top-1 PGT (paper Fig. 7)", checks)


def _wsis_direction(metrics_dir: Path, keys: tuple[str, ...], what: str) -> Direction:
    """Tables 2 and 3: Mask2Former on the pseudo masks beats Mask R-CNN on them at every AP;
    Mask R-CNN on ground-truth masks (the upper reference) beats it too."""
    names = {"mask_rcnn_gt": "Mask R-CNN (GT masks)", "mask_rcnn": "WeakSAM Mask R-CNN",
             "mask2former": "WeakSAM Mask2Former"}
    assert set(names) == {model for *_, model in table2.RUN_ROWS}, table2.RUN_ROWS

    def v(model: str, key: str) -> Value:
        return value(metrics_dir, f"wsis_{model}.json", key,
                     f"{names[model]} {key.split('.')[-1]}")

    checks = [Check(v("mask2former", k), ">", v("mask_rcnn", k)) for k in keys]
    checks += [Check(v("mask_rcnn_gt", k), ">", v("mask_rcnn", k)) for k in keys]
    return Direction(f"on {what}, Mask2Former trained on WeakSAM pseudo masks beats Mask R-CNN "
                     "trained on them; full mask supervision beats both", checks)


def table2_direction(metrics_dir: Path) -> Direction:
    """Table 2 (VOC-protocol mask AP25 / 50 / 70 / 75)."""
    return _wsis_direction(metrics_dir, ("ap25", "ap50", "ap70", "ap75"), "mask AP25-75")


def table3_direction(metrics_dir: Path) -> Direction:
    """Table 3 (COCO mask AP, AP50, AP75)."""
    return _wsis_direction(metrics_dir, ("coco.AP", "coco.AP50", "coco.AP75"),
                           "COCO mask AP")


def figure4_direction(metrics_dir: Path) -> Direction:
    """Figure 4: RoI features of WeakSAM proposals are less similar to each other than those of
    Selective Search proposals (mean off-diagonal cosine similarity, ``metrics/figures.json``
    of the ``figures`` stage)."""
    return Direction("WeakSAM proposals' RoI features are less alike than Selective Search's "
                     "(less redundancy)", [Check(
                         value(metrics_dir, "figures.json", "fig4.weaksam.mean_cosine",
                               "WeakSAM mean cosine"), "<",
                         value(metrics_dir, "figures.json", "fig4.ss.mean_cosine",
                               "SS mean cosine"))])


#: Figures with a direction: (title, file under reports/figures, checks builder).
FIGURE_DIRECTIONS: tuple[tuple[str, str, Callable[[Path], Direction]], ...] = (
    ("Figure 4", "fig4_roi_similarity.png", figure4_direction),
)

DIRECTIONS: dict[str, Callable[[Path], Direction]] = {
    "table1": table1_direction,
    "table2": table2_direction,
    "table3": table3_direction,
    "table4": table4_direction,
    "table5": table5_direction,
    "table6": table6_direction,
    "table7": table7_direction,
    "table8": table8_direction,
    "table9": table9_direction,
    "table10": table10_direction,
    "table11": table11_direction,
    "pgt": pgt_direction,
}


def _table_number(name: str) -> tuple[int, str]:
    m = re.fullmatch(r"table(\d+)", name)
    return (int(m.group(1)), "") if m else (10**6, name)


def build_index(
    tables: Mapping[str, str],
    metrics_dir: str | Path,
    profile: str | None = None,
    directions: Mapping[str, Callable[[Path], Direction]] | None = None,
    evidence: Evidence | None = None,
) -> str:
    """Markdown of ``reports/README.md``: one line per table of ``tables`` (name -> its
    markdown; its first sentence in bold is the title) with the paper's direction, this run's
    verdict counts and the checks behind them, judged with ``evidence`` (bootstrap intervals;
    None: point values only). ``profile`` (e.g. "default", "tiny") is named on top."""
    metrics_dir = Path(metrics_dir)
    directions = DIRECTIONS if directions is None else directions
    total: Counter[str] = Counter()
    lines = [
        "# Report: the paper's tables beside this run",
        "",
        "Generated by the `report` stage (`weaksam.report.index`) from `metrics/` and the "
        "versioned detection files: do not edit.",
        f"Profile of this run: **{profile or 'unknown'}**. Absolute numbers of the default "
        "(embedded, CPU) profile are not comparable with the paper's; the *direction* of each "
        "table's comparisons is, and is checked below from the metrics files.",
        "",
        "| table | the paper's direction | this run | checks (this run's values) |",
        "|---|---|---|---|",
    ]
    for name in sorted(tables, key=_table_number):
        num = _table_number(name)[0]
        title = f"Table {num}" if num < 10**6 else (_title(tables[name]) or name)
        link = f"[{title}](tables/{name}.md)"
        fn = directions.get(name)
        if fn is None:
            lines.append(f"| {link} | no direction check | n/a | |")
            continue
        d = fn(metrics_dir)
        total.update(d.counts(evidence))
        lines.append(f"| {link} | {d.claim} | {d.verdict(evidence)} | "
                     + "; ".join(c.text(evidence) for c in d.checks) + " |")
    for title, png, fn in FIGURE_DIRECTIONS:
        d = fn(metrics_dir)
        total.update(d.counts(evidence))
        lines.append(f"| [{title}](figures/{png}) | {d.claim} | {d.verdict(evidence)} | "
                     + "; ".join(c.text(evidence) for c in d.checks) + " |")
    how = ("no bootstrap (point values only)" if evidence is None else
           f"paired bootstrap over the split's images, {evidence.n_resamples} resamples, seed "
           f"{evidence.seed}, {100 * evidence.level:g} % percentile interval")
    lines += [
        "",
        f"All comparisons: {', '.join(f'{k} {total[k]}' for k in VERDICTS)}"
        + (f", not run {total[NOT_RUN_VERDICT]}" if total[NOT_RUN_VERDICT] else "") + ".",
        "",
        "Verdict of a comparison, from the claimed difference (the paper's better side minus "
        f"the other) and its interval ({how}): holds = the interval is above 0; within noise "
        "= it contains 0 (this run cannot tell the direction); reversed = it is below 0. "
        "\"point only\": the numbers have no per-image evidence (times, memory, COCO-style "
        "mask AP, feature similarity), judged on their values. A table's verdict counts its "
        "comparisons; n/a = a metrics file is missing. All figures: `figures/`.",
    ]
    return "\n".join(lines) + "\n"


def _title(markdown: str) -> str | None:
    m = re.match(r"\*\*(.+?)\.?\*\*", markdown.strip())
    return m.group(1) if m else None
