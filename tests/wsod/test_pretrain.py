"""Image-label pre-training of the small backbone (weaksam.wsod.pretrain)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from weaksam.data.index import index_from_dict
from weaksam.data.weak import WeakView
from weaksam.wsod.pretrain import BackbonePretrainConfig, pretrain_backbone


def _view(tmp_path, n: int = 24) -> WeakView:
    """Class 1 = a red square, class 2 = a blue square; some images hold both."""
    rng = np.random.default_rng(0)
    images, anns = [], []
    for i in range(n):
        px = (rng.random((32, 32, 3)) * 40).astype(np.uint8)
        cats = [1] if i % 3 == 0 else [2] if i % 3 == 1 else [1, 2]
        for k, c in enumerate(cats):
            x0 = 2 + 14 * k
            px[x0 : x0 + 12, x0 : x0 + 12, 0 if c == 1 else 2] = 255
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": c,
                         "bbox": [x0, x0, 12, 12], "area": 144, "iscrowd": 0})
        Image.fromarray(px).save(tmp_path / f"{i}.png")
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": 32, "height": 32})
    cats = [{"id": 1, "name": "red"}, {"id": 2, "name": "blue"}]
    data = {"images": images, "categories": cats, "annotations": anns}
    return WeakView(index_from_dict(data, tmp_path / "x.json", image_root=tmp_path))


def test_pretraining_learns_image_labels(tmp_path):
    view = _view(tmp_path)
    seen: list[float] = []
    cfg = BackbonePretrainConfig(widths=(8, 16), stem=8, convs=1, pool="avg", image_size=32,
                                 epochs=8, batch_size=8, lr=1e-2, weight_decay=0.0,
                                 min_crop=0.8)
    model, m = pretrain_backbone(view, cfg, seed=0, on_epoch=lambda e, x: seen.append(x["loss"]))
    assert len(seen) == 8 and seen[-1] < seen[0]
    assert m["train_map"] > 90.0  # two colour classes are easy
