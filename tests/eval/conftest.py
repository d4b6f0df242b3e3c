"""Builders of tiny COCO-format ground truth and results, shared by the eval tests."""

from __future__ import annotations

import random
from typing import Any


def coco_gt(images: dict[int, list[tuple[int, tuple[float, float, float, float], int]]],
            cats: dict[int, str]) -> dict[str, Any]:
    """``images``: image id -> [(category id, xyxy box, difficult 0/1)] -> COCO dict."""
    out: dict[str, Any] = {
        "images": [{"id": i, "file_name": f"{i}.png", "width": 100, "height": 100}
                   for i in images],
        "categories": [{"id": c, "name": n} for c, n in cats.items()],
        "annotations": [],
    }
    for iid, objs in images.items():
        for cid, (x1, y1, x2, y2), diff in objs:
            out["annotations"].append({
                "id": len(out["annotations"]) + 1, "image_id": iid, "category_id": cid,
                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                "iscrowd": 0, "difficult": diff,
            })
    return out


def det(iid: int, cid: int, box: tuple[float, float, float, float], score: float) -> dict:
    x1, y1, x2, y2 = box
    return {"image_id": iid, "category_id": cid, "bbox": [x1, y1, x2 - x1, y2 - y1],
            "score": score}


def random_case(seed: int, n_images: int = 6, n_cats: int = 3):
    """Random GT (with difficult boxes, some images without a class) and detections: jittered
    copies of GT boxes (matches, duplicates) plus random boxes; scores rounded so ties occur."""
    rng = random.Random(seed)
    cats = {c: f"c{c}" for c in range(1, n_cats + 1)}
    images: dict[int, list] = {}
    dets = []
    for iid in range(1, n_images + 1):
        objs = []
        for _ in range(rng.randint(0, 4)):
            x1, y1 = rng.uniform(0, 60), rng.uniform(0, 60)
            box = (x1, y1, x1 + rng.uniform(5, 40), y1 + rng.uniform(5, 40))
            objs.append((rng.randint(1, n_cats), box, int(rng.random() < 0.25)))
        images[iid] = objs
        for cid, box, _ in objs:
            for _ in range(rng.randint(0, 3)):
                j = [v + rng.uniform(-6, 6) for v in box]
                jb = (min(j[0], j[2] - 1), min(j[1], j[3] - 1), j[2], j[3])
                dets.append(det(iid, cid, jb, round(rng.random(), 1)))
        for _ in range(rng.randint(0, 3)):
            x1, y1 = rng.uniform(0, 70), rng.uniform(0, 70)
            box = (x1, y1, x1 + rng.uniform(3, 30), y1 + rng.uniform(3, 30))
            dets.append(det(iid, rng.randint(1, n_cats), box, round(rng.random(), 1)))
    rng.shuffle(dets)
    return coco_gt(images, cats), dets
