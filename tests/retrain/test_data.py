"""PGT loading (empty file, categories, degenerate boxes) and the batch sources' geometry."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.retrain.conftest import tiny_pgt, tiny_store
from weaksam.errors import InputError
from weaksam.retrain.data import FeatureSource, ImageSource, load_pgt


def _pgt_file(path, anns):
    data = {"info": {"image_root": "."},
            "images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 30},
                       {"id": 2, "file_name": "b.png", "width": 40, "height": 30}],
            "categories": [{"id": 3, "name": "x"}, {"id": 7, "name": "y"}],
            "annotations": anns}
    path.write_text(json.dumps(data))
    return path


def test_empty_pgt_file_is_an_input_error_naming_it(tmp_path):
    p = _pgt_file(tmp_path / "trainval.json", [])
    with pytest.raises(InputError, match="no annotations") as e:
        load_pgt(p)
    assert str(p) in str(e.value)


def test_pgt_labels_follow_sorted_category_ids_and_skip_degenerate_boxes(tmp_path):
    anns = [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [1, 2, 10, 5], "score": 0.9},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [0, 0, 0.5, 9]},
            {"id": 3, "image_id": 2, "category_id": 3, "bbox": [5, 5, 4, 4]}]
    pgt = load_pgt(_pgt_file(tmp_path / "t.json", anns), category_ids=[7, 3])
    assert pgt.category_ids == [3, 7]
    assert pgt.boxes[1].tolist() == [[1.0, 2.0, 11.0, 7.0]]
    assert pgt.labels[1].tolist() == [2] and pgt.labels[2].tolist() == [1]
    assert pgt.num_boxes == 2
    with pytest.raises(InputError, match="categories"):
        load_pgt(tmp_path / "t.json", category_ids=[3, 7, 9])


def test_feature_source_flips_boxes_with_the_maps():
    store = tiny_store(2)
    src = FeatureSource(store, tiny_pgt(2), flip=True)
    flips = []
    for seed in range(40):
        feats, targets = src.batch([0], [torch.Generator().manual_seed(seed)])
        flipped = not torch.equal(feats.maps[0], store.map(0))
        flips.append(flipped)
        expect = [[16.0, 4.0, 28.0, 16.0]] if flipped else [[4.0, 4.0, 16.0, 16.0]]
        assert targets[0]["boxes"].tolist() == expect
        assert targets[0]["labels"].tolist() == [1] and int(targets[0]["image_id"]) == 1
    assert 5 < sum(flips) < 35


def test_image_source_rescales_boxes():
    pgt = tiny_pgt(2)
    px = np.zeros((32, 48, 3), np.uint8)
    src = ImageSource([1, 2], lambda iid: px, pgt, scales=[64], max_size=200, flip=False)
    images, targets = src.batch([1], [torch.Generator().manual_seed(0)])
    assert tuple(images[0].shape) == (3, 64, 96)
    assert targets[0]["boxes"].tolist() == [[8.0, 8.0, 32.0, 32.0]]
