"""Stage ``data``: write ``data/annotations/{trainval,test}.json`` (COCO format) and, for the
synthetic source, ``data/images/{split}/{id:06d}.png`` (docs/contracts.md, "data").

params ``data.source``:
- ``synthetic`` (default): the embedded VOC-like data set (weaksam.data.synthetic).
- ``voc``: a VOCdevkit year folder ``data.voc_root``, splits ``voc_trainval`` / ``voc_test``.
- ``coco``: instances JSONs ``coco_{trainval,test}_json`` with image folders
  ``coco_{trainval,test}_image_root``.
For voc/coco the images are not copied: ``info.image_root`` points to the real image folder,
and ``data/images`` holds only a note saying so. Both output folders are built in temporary
folders and renamed at the end, after all input checks: a failing run leaves the previous
outputs untouched and nothing partial.

Metrics ``metrics/data.json``, per split: images, instances, difficult instances, images per
class, ``boxes_clipped`` (boxes reaching outside their image, clipped by the voc / coco reader;
a box with nothing inside its image stops the stage naming its file) and
``images_without_masks`` (images with annotations but no instance mask: VOC images outside
the segmented subset).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipeline.common import load_params, setup_logging, stage_args
from weaksam.data.coco import load_coco
from weaksam.data.index import CocoIndex, index_from_dict, mask_coverage, read_image
from weaksam.data.synthetic import generate_split
from weaksam.data.voc import load_voc
from weaksam.errors import InputError
from weaksam.utils.atomic import atomic_dir, write_json

SPLITS = ("trainval", "test")
ANN_DIR = Path("data/annotations")
IMG_DIR = Path("data/images")
METRICS = Path("metrics/data.json")
SYNTHETIC_KEYS = ("image_min", "image_max", "min_instances", "max_instances", "size_min",
                  "size_max", "min_visible", "difficult_visible", "num_distractors", "noise_std")


def _verify_images(index: CocoIndex) -> None:
    """Decode every image of ``index``; InputError on a corrupt one or a size mismatch."""
    for iid in tqdm(index.image_ids, desc="verify images", disable=None):
        path = index.image_path(iid)
        h, w = read_image(path).shape[:2]
        rec = index.image(iid)
        if (w, h) != (int(rec["width"]), int(rec["height"])):
            raise InputError(path, f"image is {w}x{h} but {index.path.name} says "
                                   f"{rec['width']}x{rec['height']}")


def _external_splits(cfg: dict[str, Any]) -> dict[str, CocoIndex]:
    """Load (and check) both splits of a voc/coco source before any output is touched."""
    src = cfg["source"]
    out: dict[str, CocoIndex] = {}
    for split in SPLITS:
        if src == "voc":
            if not cfg.get("voc_root"):
                raise InputError(None, "params data.voc_root must be set when data.source: voc")
            out[split] = load_voc(cfg["voc_root"], cfg[f"voc_{split}"])
        else:
            js, root = cfg.get(f"coco_{split}_json"), cfg.get(f"coco_{split}_image_root")
            if not js or not root:
                raise InputError(None, f"params data.coco_{split}_json and "
                                       f"data.coco_{split}_image_root must be set (source: coco)")
            out[split] = load_coco(js, root)
        if cfg.get("verify_images", True):
            _verify_images(out[split])
    return out


def summarize(split_json: dict[str, dict[str, Any]], clipped: dict[str, int] | None = None
              ) -> dict[str, dict[str, Any]]:
    """Per split: images, instances, difficult instances, images per class name, boxes
    clipped by the reader, images whose annotations have no instance mask."""
    out = {}
    for split, d in split_json.items():
        names = {c["id"]: c["name"] for c in d["categories"]}
        per_class: dict[str, set[int]] = {names[c]: set() for c in sorted(names)}
        for a in d["annotations"]:
            per_class[names[a["category_id"]]].add(a["image_id"])
        out[split] = {
            "images": len(d["images"]),
            "instances": len(d["annotations"]),
            "difficult": sum(int(a.get("difficult", 0)) for a in d["annotations"]),
            "images_per_class": {k: len(v) for k, v in per_class.items()},
            "boxes_clipped": int((clipped or {}).get(split, 0)),
            "images_without_masks": len(mask_coverage(d)[1]),
        }
    return out


def run(params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Run the stage from the repository root (the working directory); returns the summary."""
    cfg = params["data"]
    seed = int(params.get("seed", 0))
    src = cfg.get("source", "synthetic")
    if src not in ("synthetic", "voc", "coco"):
        raise InputError(None, f"params data.source must be synthetic, voc or coco, not {src!r}")
    split_json: dict[str, dict[str, Any]] = {}
    clipped: dict[str, int] = {}
    if src != "synthetic":
        for split, idx in _external_splits(cfg).items():
            split_json[split] = idx.to_json()
            clipped[split] = idx.boxes_clipped
    with atomic_dir(IMG_DIR) as img_tmp, atomic_dir(ANN_DIR) as ann_tmp:
        if src == "synthetic":
            kw = {k: cfg[k] for k in SYNTHETIC_KEYS if k in cfg}
            for split in SPLITS:
                d = generate_split(split, int(cfg[f"num_{split}"]), img_tmp / split,
                                   str(IMG_DIR / split), seed=seed, **kw)
                # the written JSON must load: same validation as every consumer
                index_from_dict(d, ANN_DIR / f"{split}.json", image_root=img_tmp / split)
                split_json[split] = d
        else:
            (img_tmp / "SOURCE.txt").write_text(
                "".join(f"{s}: {split_json[s]['info']['image_root']}\n" for s in SPLITS))
        for split in SPLITS:
            (ann_tmp / f"{split}.json").write_text(
                json.dumps(split_json[split], sort_keys=True, separators=(",", ":")) + "\n")
    summary = summarize(split_json, clipped)
    write_json(METRICS, summary)
    return summary


def main() -> None:
    args = stage_args(__doc__.splitlines()[0])
    log = setup_logging("data")
    params = load_params(args.params)
    t0 = time.perf_counter()
    try:
        summary = run(params)
    except InputError as e:
        sys.exit(f"data stage failed, nothing written: {e}")
    dt = time.perf_counter() - t0
    for split, s in summary.items():
        log.info("%s: %d images, %d instances (%d difficult, %d boxes clipped to their image, "
                 "%d images without masks); images per class %s", split, s["images"],
                 s["instances"], s["difficult"], s["boxes_clipped"], s["images_without_masks"],
                 s["images_per_class"])
    log.info("data stage done in %.1f s (source %s)", dt, params["data"].get("source"))


if __name__ == "__main__":
    main()
