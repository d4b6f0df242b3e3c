"""Stage ``figures``: paper Figures 4, 6 and 8 from this run's outputs
(``reports/figures/fig{4,6,8}_*.png``) and ``metrics/figures.json`` (Figure 4's mean cosine
similarities, which the report index compares).

- Figure 4: cosine similarity among RoI-pooled features of up to ``figures.num_samples``
  proposals per set on one ``figures.split`` image, Selective Search against WeakSAM; the
  features come from the backbone of WSOD run ``figures.run`` (its checkpoint).
- Figure 6: Selective Search and WeakSAM proposals of ``figures.num_images`` images.
- Figure 8: detections of WSOD run ``figures.run`` (WeakSAM (MIST) by default) at or above
  ``figures.score_thresh`` on the same images.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.common import load_params, set_threads, setup_logging, stage_args
from weaksam.data.index import load_index, read_image
from weaksam.errors import InputError
from weaksam.proposals.store import load_proposals
from weaksam.report.figures import (
    cosine_matrix,
    mean_off_diagonal,
    plot_detections,
    plot_proposals,
    plot_similarity,
    roi_features,
    sample,
)
from weaksam.utils.atomic import write_json
from weaksam.utils.boxes import xywh_to_xyxy
from weaksam.utils.checkpoint import read_checkpoint
from weaksam.utils.seed import seed_everything
from weaksam.vision.backbones import build_backbone

OUT_DIR = Path("reports/figures")
METRICS = Path("metrics/figures.json")
SETS = (("Selective Search", "ss"), ("WeakSAM", "weaksam"))


def run_backbone(params: dict[str, Any], run: str) -> torch.nn.Module:
    """The backbone of WSOD run ``run`` with the weights of its checkpoint
    (``wsod/{run}/model.pt``, keys ``backbone.*``)."""
    w, bp = params["wsod"], params["backbone_pretrain"]
    if w["backbone"] == "small_cnn":
        net = build_backbone("small_cnn", widths=bp["widths"], stem=int(bp["stem"]),
                             convs=int(bp["convs"]))
    else:
        net = build_backbone(w["backbone"], dilated=bool(w.get("dilated_conv5", False)))
    path = Path("wsod") / run / "model.pt"
    state = read_checkpoint(path, "WSOD checkpoint")["model"]
    sub = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    if not sub:
        raise InputError(path, "no backbone.* weights in the checkpoint")
    try:
        net.load_state_dict(sub)
    except RuntimeError as e:
        raise InputError(path, f"backbone weights do not match params wsod ({e})") from e
    return net.eval()


def run(params: dict[str, Any]) -> dict[str, Any]:
    """Write the three figures and return the metrics (from the repository root)."""
    cfg, w = params["figures"], params["wsod"]
    seed = int(params.get("seed", 0))
    seed_everything(seed)
    split, run_name = cfg["split"], cfg["run"]
    index = load_index(Path("data/annotations") / f"{split}.json")
    props = {key: load_proposals(Path("proposals") / key / f"{split}.npz") for _, key in SETS}
    ids = [i for i in index.image_ids if all(len(props[k].images.get(i, ())) >= 2
                                             for _, k in SETS)]
    if not ids:
        raise InputError(Path("proposals"), f"no {split} image has 2 proposals of each set")
    picked = ids[int(cfg["image_index"]) % len(ids)]

    # Figure 4: cosine similarity of RoI features, one image
    backbone = run_backbone(params, run_name)
    pixels = read_image(index.image_path(picked))
    sims, fig4 = {}, {"image_id": picked, "run": run_name}
    for label, key in SETS:
        boxes = props[key].images[picked].boxes
        keep = sample(len(boxes), int(cfg["num_samples"]), seed)
        feats = roi_features(backbone, pixels, boxes[keep], short_side=int(w["test_scales"][0]),
                             max_size=int(w["max_size"]), roi_op=w["roi_op"],
                             roi_size=int(w["roi_size"]),
                             roi_sampling=int(w["roi_sampling"]))
        sims[label] = cosine_matrix(feats)
        fig4[key] = {"num_proposals": len(boxes), "sampled": len(keep),
                     "mean_cosine": mean_off_diagonal(sims[label])}
    plot_similarity(sims, OUT_DIR / "fig4_roi_similarity.png",
                    f"Fig. 4: cosine similarity of RoI features (WSOD run {run_name}), "
                    f"{split} image {picked}")

    # Figures 6 and 8: the same few images
    shown = ids[:int(cfg["num_images"])]
    rows = [(f"image {i}", read_image(index.image_path(i)),
             {label: props[key].images[i].boxes for label, key in SETS}) for i in shown]
    plot_proposals(rows, OUT_DIR / "fig6_proposals.png",
                   f"Fig. 6: Selective Search against WeakSAM proposals ({split})")

    det_path = Path("wsod") / run_name / f"detections_{split}.json"
    if not det_path.is_file():
        raise InputError(det_path, "detections not found")
    dets = json.loads(det_path.read_text())
    if not isinstance(dets, list):
        raise InputError(det_path, "expected a COCO results list")
    names = dict(zip(index.category_ids, index.category_names, strict=True))
    thr = float(cfg["score_thresh"])
    items, total = [], 0
    for (caption, px, _), iid in zip(rows, shown, strict=True):
        mine = sorted((d for d in dets if d["image_id"] == iid and d["score"] >= thr),
                      key=lambda d: -d["score"])
        boxes = xywh_to_xyxy(np.asarray([d["bbox"] for d in mine], np.float64).reshape(-1, 4))
        labels = [f"{names.get(d['category_id'], d['category_id'])} {d['score']:.2f}"
                  for d in mine]
        items.append((caption, px, boxes, labels))
        total += len(mine)
    plot_detections(items, OUT_DIR / "fig8_detections.png",
                    f"Fig. 8: detections of {run_name} (score >= {thr:g}, {split})")
    metrics = {"fig4": fig4, "fig8": {"run": run_name, "images": len(items),
                                      "detections": total, "score_thresh": thr}}
    write_json(METRICS, metrics)
    return metrics


def main() -> None:
    args = stage_args(__doc__.splitlines()[0])
    log = setup_logging("figures")
    params = load_params(args.params)
    set_threads(params)
    m = run(params)
    log.info("figures written to %s; fig. 4 mean cosine SS %s, WeakSAM %s", OUT_DIR,
             m["fig4"]["ss"]["mean_cosine"], m["fig4"]["weaksam"]["mean_cosine"])


if __name__ == "__main__":
    main()
