"""Stage ``recall_{source}``: recall of a proposal set on the trainval split (Tables 4 and 8).

    python -m pipeline.recall --source ss                 # proposals/ss/trainval.npz
    python -m pipeline.recall --source dense_fine         # a Table 4 variant of WeakSAM

``ss`` reads ``proposals/ss/trainval.npz``; a name in
``weaksam.proposals.sources.TABLE4_VARIANTS`` reads ``proposals/weaksam/trainval.npz`` and keeps
the proposals of that variant's prompt sources. Writes ``metrics/recall_{source}.json``
(``num_images``, ``num_per_image``, ``recall@t`` in % for t in params ``eval.recall_ious``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.common import load_params, setup_logging, stage_args
from weaksam.data.index import load_index
from weaksam.errors import InputError
from weaksam.eval.recall import proposal_recall
from weaksam.proposals.sources import TABLE4_VARIANTS
from weaksam.proposals.store import ProposalSet, load_proposals
from weaksam.utils.atomic import write_json

SPLIT = "trainval"
SOURCES = ("ss", *TABLE4_VARIANTS)


def proposals_of(source: str, split: str = SPLIT) -> ProposalSet:
    """The proposal set named ``source`` (``ss`` or a Table 4 variant) of ``split``."""
    if source == "ss":
        return load_proposals(Path("proposals/ss") / f"{split}.npz")
    if source in TABLE4_VARIANTS:
        props = load_proposals(Path("proposals/weaksam") / f"{split}.npz")
        return props.filter_sources(TABLE4_VARIANTS[source])
    raise SystemExit(f"unknown proposal source {source!r}; expected one of {', '.join(SOURCES)}")


def run(params: dict[str, Any], source: str) -> dict[str, Any]:
    """Compute and write ``metrics/recall_{source}.json``; returns the metrics."""
    ious = [float(t) for t in params["eval"]["recall_ious"]]
    gt = load_index(Path("data/annotations") / f"{SPLIT}.json").to_json()
    try:
        metrics = proposal_recall(gt, proposals_of(source), iou_thrs=ious)
    except InputError as e:  # name the proposals file when the library could not
        if e.path is not None:
            raise
        name = "ss" if source == "ss" else "weaksam"
        raise InputError(Path("proposals") / name / f"{SPLIT}.npz", e.problem) from e
    write_json(Path("metrics") / f"recall_{source}.json", metrics)
    return metrics


def main() -> None:
    args = stage_args(
        __doc__.splitlines()[0],
        [("--source", {"required": True, "choices": SOURCES, "help": "proposal set"})],
    )
    log = setup_logging("recall")
    m = run(load_params(args.params), args.source)
    log.info("recall %s: %s", args.source, m)


if __name__ == "__main__":
    main()
