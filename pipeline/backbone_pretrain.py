"""Stage ``backbone_pretrain``: pre-train the small CNN backbone ONCE on image-level labels
(multi-label BCE on the trainval WeakView), shared by every WSOD variant (default profile's
analogue of ImageNet pre-training).

Outputs:
- ``backbone/model.pt``: ``{"backbone": state_dict, "config": {...}}`` (read with
  ``weaksam.vision.backbones.build_backbone("small_cnn", checkpoint=...)``).
- ``metrics/backbone_pretrain.json``: ``{"loss", "train_map", "test_map", "seconds"}`` (mAP of
  image-level classification in %, the test split used for evaluation only).
- ``dvclive/backbone_pretrain/``: per-epoch loss curve.
With ``wsod.backbone: vgg16`` (paper profile) nothing is trained: the WSOD stages load the
ImageNet VGG16 checkpoint ``wsod.vgg16_checkpoint`` instead. The stage still writes every output
``dvc.yaml`` declares (DVC refuses a stage with a missing output): ``backbone/model.pt`` as
``{"backbone": None, "config": {"name": "vgg16", "checkpoint": ...}}`` (no consumer reads it
in that profile), the metrics with ``skipped: true`` and the reason, null values and 0 s, and
a header-only ``loss.tsv`` under ``dvclive/backbone_pretrain/plots/metrics`` (a valid, empty
curve). Data and device are not touched then.
Device: ``wsod.device`` if set, else ``runtime.device`` (the WSOD stages' device); the
checkpoint is saved from CPU tensors, so it loads on any device.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from pipeline.common import load_params, set_threads, setup_logging, stage_args
from weaksam.config import from_section
from weaksam.data.index import load_index
from weaksam.data.weak import WeakView
from weaksam.engine.live import LiveHook
from weaksam.utils.atomic import atomic_dir, atomic_path, write_json
from weaksam.utils.device import resolve_device
from weaksam.utils.seed import seed_everything
from weaksam.wsod.pretrain import (
    BackbonePretrainConfig,
    load_resized,
    mean_ap,
    predict,
    pretrain_backbone,
)

OUT = Path("backbone/model.pt")
METRICS = Path("metrics/backbone_pretrain.json")
LIVE_DIR = Path("dvclive/backbone_pretrain")


def write_skipped(backbone: str, checkpoint: str | None) -> None:
    """Every declared output of the stage when ``wsod.backbone`` (``backbone``) is not the
    small CNN: a weightless model file naming the backbone and its ImageNet ``checkpoint``, the
    metrics saying why nothing was trained, and an empty loss curve (header row only)."""
    reason = (f"wsod.backbone is {backbone}: the WSOD stages load its ImageNet weights "
              f"(wsod.vgg16_checkpoint: {checkpoint}) instead of a pre-trained small CNN")
    with atomic_path(OUT) as tmp:
        torch.save({"backbone": None, "config": {"name": backbone, "checkpoint": checkpoint}},
                   tmp)
    write_json(METRICS, {"skipped": True, "reason": reason, "loss": None, "train_map": None,
                         "test_map": None, "seconds": 0.0})
    with atomic_dir(LIVE_DIR / "plots" / "metrics") as tmp_dir:
        (tmp_dir / "loss.tsv").write_text("step\tloss\n")  # DVCLive's columns, no rows


def main() -> None:
    args = stage_args(__doc__)
    params = load_params(args.params)
    log = setup_logging("backbone_pretrain")
    set_threads(params)
    if params["wsod"]["backbone"] != "small_cnn":
        write_skipped(params["wsod"]["backbone"], params["wsod"].get("vgg16_checkpoint"))
        log.info("wsod.backbone is %s: nothing to pre-train (outputs record the skip)",
                 params["wsod"]["backbone"])
        return
    device = resolve_device(params["wsod"].get("device") or params["runtime"]["device"])
    seed_everything(int(params["seed"]))
    t0 = time.time()
    train = WeakView(load_index("data/annotations/trainval.json"))
    test = WeakView(load_index("data/annotations/test.json"))
    cfg = from_section(BackbonePretrainConfig, params["backbone_pretrain"],
                       f"{args.params} backbone_pretrain")
    arch = {"widths": list(cfg.widths), "stem": cfg.stem, "convs": cfg.convs}
    live = LiveHook(LIVE_DIR, prefix="", step_offset=None, rank=0)
    model, metrics = pretrain_backbone(train, cfg, seed=int(params["seed"]), on_epoch=live,
                                       device=device)
    live.close()
    xt, yt = load_resized(test, cfg.image_size)
    metrics["test_map"] = mean_ap(predict(model, xt), yt)
    metrics["seconds"] = round(time.time() - t0, 2)
    log.info("backbone pre-trained: %s", metrics)
    with atomic_path(OUT) as tmp:
        torch.save({"backbone": {k: v.cpu() for k, v in model.backbone.state_dict().items()},
                    "config": {"name": "small_cnn", **arch}}, tmp)
    write_json(METRICS, metrics)


if __name__ == "__main__":
    main()
