"""Stage ``clues``: the maps do not depend on how many processes compute them."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import torch
from PIL import Image

from pipeline.clues import _init_worker, split_clues
from weaksam.clues.model import CluesViT
from weaksam.clues.store import save_clues
from weaksam.clues.train import load_model, save_model
from weaksam.data.index import index_from_dict
from weaksam.data.weak import WeakView

ARCH = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, cross_layers=[1])


def _images(tmp_path, sizes: list[tuple[int, int]]) -> WeakView:
    """Noise images of the given (width, height), classes 1 and 2 in turn."""
    rng = np.random.default_rng(1)
    images, anns = [], []
    for i, (w, h) in enumerate(sizes):
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(tmp_path / f"{i}.png")
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": w, "height": h})
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1 + i % 2,
                     "bbox": [0, 0, 8, 8], "area": 64, "iscrowd": 0})
    data = {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    return WeakView(index_from_dict(data, tmp_path / "x.json", image_root=tmp_path))


def test_two_map_processes_write_the_bytes_of_one(tmp_path):
    torch.manual_seed(0)
    save_model(tmp_path / "model.pt", CluesViT(num_classes=2, **ARCH), ARCH, [1, 2])
    model, _ = load_model(tmp_path / "model.pt")
    # three base sizes in "area" mode -> several batches, some of one image
    view = _images(tmp_path, [(40, 32), (32, 32), (48, 24), (40, 32), (32, 32), (40, 32),
                              (48, 24)])
    kw = dict(use_labels=False, resize="area", input_size=32, scales=[1.0, 0.8], flip=True,
              cross_heads="each", threshold=0.5, batch_size=2, device=torch.device("cpu"),
              amp=False)
    torch.set_num_threads(1)
    with torch.inference_mode():
        one, probs_one = split_clues(model, view, **kw)
    with mp.get_context("spawn").Pool(2, initializer=_init_worker,
                                      initargs=(str(tmp_path / "model.pt"), 1)) as pool:
        with torch.inference_mode():
            two, probs_two = split_clues(model, view, pool=pool, **kw)
    assert probs_one.tobytes() == probs_two.tobytes()
    save_clues(tmp_path / "one.npz", one)
    save_clues(tmp_path / "two.npz", two)
    assert (tmp_path / "one.npz").read_bytes() == (tmp_path / "two.npz").read_bytes()
    assert len(one) == 7
