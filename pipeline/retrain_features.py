"""Stage ``retrain_features``: the frozen ``backbone_pretrain`` CNN's feature maps of trainval
and test, computed once and shared by every retraining run of the default profile (paper
Sec. 3.2 retraining; the default profile freezes the backbone to fit the CPU budget).

    python -m pipeline.retrain_features

Inputs: ``backbone/model.pt``, ``data/annotations/{trainval,test}.json`` and the images (pixels
only: trainval is read through ``WeakView``). Outputs: ``retrain_features/{trainval,test}.pt``
(``weaksam.retrain.features``: maps at short side ``retrain.features.short_side`` px; trainval
also of the flipped images when ``retrain.features.flip``), ``metrics/retrain_features.json``
(seconds, MiB). The paper profile trains its backbone end to end and does not use this cache:
the stage then writes maps of zero images (``retrain.features.enabled: false``).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from pipeline.common import load_params, set_threads, setup_logging, stage_args
from weaksam.data.index import load_index
from weaksam.data.weak import WeakView
from weaksam.errors import InputError
from weaksam.retrain.features import FeatureStore, compute_features, save_features
from weaksam.utils.atomic import write_json
from weaksam.utils.device import resolve_device
from weaksam.utils.seed import seed_everything
from weaksam.vision.backbones import build_backbone

OUT = Path("retrain_features")


def main() -> None:
    args = stage_args(__doc__)
    params = load_params(args.params)
    log = setup_logging("retrain_features")
    set_threads(params)
    seed_everything(int(params["seed"]))
    resolve_device(params["runtime"].get("device", "cpu"))  # checked; the cache runs on CPU
    cfg, bp = params["retrain"]["features"], params["backbone_pretrain"]
    enabled = bool(cfg["enabled"])
    backbone = build_backbone("small_cnn", checkpoint="backbone/model.pt", widths=bp["widths"],
                              stem=int(bp["stem"]), convs=int(bp["convs"])) if enabled else None
    metrics = {}
    for split in ("trainval", "test"):
        t0, c0 = time.time(), time.process_time()
        view = WeakView(load_index(f"data/annotations/{split}.json"))
        ids = view.image_ids if enabled else []
        flip = bool(cfg["flip"]) and split == "trainval"
        if enabled:
            store = compute_features(
                backbone, ids, view.read, short_side=int(cfg["short_side"]),
                max_size=int(cfg["max_size"]), flip=flip,
                meta={"backbone": "backbone/model.pt", "stride": int(backbone.stride),
                      "channels": int(backbone.out_channels)})
        else:
            store = FeatureStore([], [], [], [], None, {"enabled": False})
        save_features(OUT / f"{split}.pt", store)
        mib = sum(m.numel() * 2 for m in store.maps + (store.maps_flip or [])) / 2**20
        metrics[split] = {"images": len(ids), "seconds": round(time.time() - t0, 2),
                          "cpu_seconds": round(time.process_time() - c0, 2),
                          "mib": round(mib, 1)}
        log.info("%s: %s", split, metrics[split])
    write_json(Path("metrics") / "retrain_features.json", metrics)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    try:
        main()
    except InputError as e:
        raise SystemExit(f"retrain_features: {e}") from e
