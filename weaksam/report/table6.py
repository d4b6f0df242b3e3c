"""Paper Table 6 (appendix D): efficiency of Selective Search against WeakSAM proposals:
proposals per image (Num.), time to generate the proposals (T_proposals), MIST training time
(T_WSOD) and memory (M_WSOD).

This run: Num. from ``metrics/recall_{ss,weaksam}.json`` (``num_per_image``); T_proposals from
``metrics/proposals_time_{ss,weaksam}.json`` (``total_seconds``, with ``seconds_per_image`` in
its own column); T_WSOD and M_WSOD from ``metrics/wsod_mist_{ss,weaksam}.json``
(``train_seconds``, ``seconds_per_epoch``, ``peak_rss_mib``: CPU resident memory here, GPU
memory per card in the paper).
"""

from __future__ import annotations

from pathlib import Path

from weaksam.report.table import Intervals, Row, Table, metric, not_run, paper

COLUMNS = ("Proposals", "Num.", "T_proposals", "T_proposals / image (s)", "T_WSOD",
           "T_WSOD / epoch (s)", "M_WSOD")

# The paper's values (4 GPUs, VOC 2007 trainval): hours and MiB as printed.
PAPER_ROWS = (
    ("SS", 2001, "11.6 hrs", "16 hrs", "17810 MiB (GPU)"),
    ("Ours (WeakSAM)", 213, "4 hrs", "9 hrs", "5667 MiB (GPU)"),
)

# (label, proposal name, proposal stage, recall stage)
RUN_ROWS = (
    ("SS", "ss", "proposals_ss", "recall_ss"),
    ("Ours (WeakSAM)", "weaksam", "proposals", "recall_prompts@weaksam"),
)


def build(metrics_dir: Path, evidence: Intervals | None = None) -> str:
    """Markdown of Table 6: the paper's rows, then this run's rows from ``metrics_dir``
    (times and memory are single measurements: ``evidence`` gives them no interval)."""
    rows = [
        Row(f"{label} (paper)", [paper(num, "{:d}"), paper(tp), not_run(), paper(tw),
                                 not_run(), paper(mem)])
        for label, num, tp, tw, mem in PAPER_ROWS
    ]
    for label, name, pstage, rstage in RUN_ROWS:
        tfile = f"proposals_time_{name}.json"
        wfile = f"wsod_mist_{name}.json"
        wstage = f"wsod@mist-{name}"
        rows.append(Row(f"{label} (this run)", [
            metric(metrics_dir, f"recall_{name}.json", "num_per_image", rstage, "{:.1f}"),
            metric(metrics_dir, tfile, "total_seconds", pstage, "{:.1f} s"),
            metric(metrics_dir, tfile, "seconds_per_image", pstage, "{:.3f}"),
            metric(metrics_dir, wfile, "train_seconds", wstage, "{:.0f} s"),
            metric(metrics_dir, wfile, "seconds_per_epoch", wstage, "{:.1f}"),
            metric(metrics_dir, wfile, "peak_rss_mib", wstage, "{:.0f} MiB (RSS)"),
        ]))
    return Table(
        name="Table 6",
        caption=(
            "Efficiency of Selective Search against WeakSAM proposals (paper appendix D): "
            "proposals per image, proposal-generation time, MIST training time and memory. "
            "Paper: VOC 2007 on 4 GPUs; this run: the synthetic data on this machine's CPU "
            "(wall time within one `dvc repro`, so absolute times are not comparable with the "
            "paper's, only the SS / WeakSAM ratio is)."
        ),
        columns=COLUMNS,
        rows=rows,
        notes=(
            "The paper reports totals only; per-image and per-epoch columns are n/a for its "
            "rows. M_WSOD: GPU memory per card in the paper, peak CPU resident memory here.",
        ),
    ).to_markdown()
