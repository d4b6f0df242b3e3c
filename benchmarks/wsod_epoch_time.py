"""Benchmark: WSOD training time per epoch with WeakSAM vs. Selective Search proposals on the
same images (paper Table 6, T_WSOD: WeakSAM needs 43.8% less training time, since it gives
89.4% fewer proposals). Target here: WeakSAM epoch time <= 60% of Selective Search's.

    .venv/bin/python benchmarks/wsod_epoch_time.py [--method mist] [--images 100] [--epochs 2]

Reads params.yaml (section ``wsod``), ``backbone/model.pt``, ``data/annotations/trainval.json``
and ``proposals/{ss,weaksam}/trainval.npz``; a missing proposals file is reported and the
benchmark stops (no stand-in). With a frozen backbone (the default) every feature map is
computed before the clock starts, as after the first epochs of a real run, so an epoch is the
head work, which scales with proposals; the first epoch is left out (allocator warm-up).
Prints a table and writes ``benchmarks/results/wsod_epoch_time.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.common import load_params  # noqa: E402
from pipeline.wsod import build_model, load_source, prepare_boxes  # noqa: E402
from weaksam.data.index import load_index  # noqa: E402
from weaksam.data.weak import WeakView  # noqa: E402
from weaksam.errors import InputError  # noqa: E402
from weaksam.utils.atomic import write_json  # noqa: E402
from weaksam.wsod.train import FeatureCache, TrainImage, train_wsod  # noqa: E402


def epoch_seconds(method: str, source: str, view: WeakView, n: int, epochs: int,
                  params: dict, root: Path) -> tuple[float, float]:
    """(mean proposals per image, seconds per epoch after the first) of one source."""
    w = params["wsod"]
    props = load_source(source, "trainval", root)
    items = []
    for i in range(min(n, len(view))):
        it = view[i]
        items.append(TrainImage(it.image_id, view.read(i), it.labels,
                                prepare_boxes(props, it.image_id, it.width, it.height,
                                              int(w["max_proposals"]),
                                              float(w["min_proposal_size"]))))
    torch.manual_seed(int(params["seed"]))
    model = build_model(method, view.num_classes, params)
    scales = [int(s) for s in w["train_scales"]]
    cache = FeatureCache(model.backbone, enabled=bool(w["freeze_backbone"]))
    if cache.enabled:  # steady state: every (image, scale, flip) feature map computed up front
        cache.warm(items, scales, int(w["max_size"]), bool(w["flip"]))
    stamps: list[float] = []
    train_wsod(model, items, epochs=epochs, batch_size=int(w["batch_size"]), lr=float(w["lr"]),
               weight_decay=float(w["weight_decay"]), optimizer=w["optimizer"],
               train_scales=scales, max_size=int(w["max_size"]), flip=bool(w["flip"]),
               seed=int(params["seed"]), cdb_start_epoch=0, cache=cache,
               on_epoch=lambda e, m: stamps.append(time.perf_counter()))
    mean_props = sum(len(it.boxes) for it in items) / max(len(items), 1)
    later = [b - a for a, b in zip(stamps[:-1], stamps[1:], strict=True)]
    return mean_props, sum(later) / max(len(later), 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--method", choices=("oicr", "mist"), default="mist")
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--epochs", type=int, default=3, help="epochs per source (>= 2)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--proposals", default=str(ROOT / "proposals"),
                   help="folder holding ss/ and weaksam/ (default: the repository's proposals/)")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/wsod_epoch_time.json"))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    import os

    os.chdir(ROOT)  # backbone/model.pt and data paths are relative to the repository root
    params = load_params(ROOT / "params.yaml")
    view = WeakView(load_index(ROOT / "data/annotations/trainval.json"))
    res = {}
    for source in ("ss", "weaksam"):
        try:
            num, sec = epoch_seconds(a.method, source, view, a.images, max(2, a.epochs), params,
                                     Path(a.proposals))
        except InputError as e:
            sys.exit(f"cannot benchmark: {e} (run the proposals stages first)")
        res[source] = {"proposals_per_image": round(num, 1), "seconds_per_epoch": round(sec, 3)}
    ratio = res["weaksam"]["seconds_per_epoch"] / max(res["ss"]["seconds_per_epoch"], 1e-9)
    out = {"method": a.method, "images": min(a.images, len(view)), "threads": a.threads,
           "proposals": str(a.proposals),
           **res, "weaksam_over_ss": round(ratio, 3), "target": 0.6, "met": ratio <= 0.6}
    print(f"{'source':10s} {'props/img':>10s} {'s/epoch':>10s}")
    for s in ("ss", "weaksam"):
        print(f"{s:10s} {res[s]['proposals_per_image']:10.1f} {res[s]['seconds_per_epoch']:10.3f}")
    print(f"WeakSAM / SS epoch time: {ratio:.2f} (target <= 0.60: "
          f"{'met' if ratio <= 0.6 else 'NOT met'})")
    write_json(a.out, out)


if __name__ == "__main__":
    main()
