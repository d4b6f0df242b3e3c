"""CocoIndex / load_index / read_image / WeakView on tiny hand-built splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from weaksam.data.index import CocoIndex, load_index, read_image
from weaksam.data.weak import WeakImage, WeakView
from weaksam.errors import InputError


def _split(tmp_path: Path) -> dict:
    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    rgb = np.zeros((4, 6, 3), dtype=np.uint8)
    rgb[..., 0] = 200  # pure red
    Image.fromarray(rgb).save(img_dir / "a.png")
    Image.fromarray(rgb[:, :5]).save(img_dir / "b.png")
    return {
        "info": {"image_root": str(img_dir)},
        "images": [
            {"id": 7, "file_name": "a.png", "width": 6, "height": 4},
            {"id": 3, "file_name": "b.png", "width": 5, "height": 4},
        ],
        # categories deliberately out of order and sparse (COCO style)
        "categories": [{"id": 9, "name": "star"}, {"id": 2, "name": "disc"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 9, "bbox": [1, 2, 3, 1], "area": 3,
             "iscrowd": 0, "difficult": 0, "segmentation": {"size": [4, 6], "counts": "abc"}},
            {"id": 2, "image_id": 7, "category_id": 2, "bbox": [0, 0, 2, 2], "area": 4,
             "iscrowd": 0, "difficult": 1, "segmentation": {"size": [4, 6], "counts": "xyz"}},
            {"id": 3, "image_id": 7, "category_id": 9, "bbox": [4, 0, 2, 4], "area": 8,
             "iscrowd": 0, "difficult": 0},
        ],
    }


def _write(tmp_path: Path, data: dict, name: str = "split.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return p


def test_index_accessors(tmp_path):
    idx = load_index(_write(tmp_path, _split(tmp_path)))
    assert isinstance(idx, CocoIndex)
    assert idx.category_ids == [2, 9]
    assert idx.category_names == ["disc", "star"]
    assert idx.num_classes == 2
    assert idx.cat_index == {2: 0, 9: 1}
    assert idx.image_ids == [7, 3]  # split order, not sorted
    assert idx.image(3)["width"] == 5
    assert idx.image_path(7) == tmp_path / "imgs" / "a.png"
    assert [a["id"] for a in idx.anns_of(7)] == [1, 2, 3]
    assert idx.anns_of(3) == []
    assert idx.labels_of(7) == [2, 9]
    assert idx.labels_of(3) == []
    boxes, cats, diff = idx.gt_boxes(7)
    # xywh [1,2,3,1] -> xyxy [1,2,4,3]; [0,0,2,2] -> [0,0,2,2]; [4,0,2,4] -> [4,0,6,4]
    np.testing.assert_array_equal(boxes, [[1, 2, 4, 3], [0, 0, 2, 2], [4, 0, 6, 4]])
    assert boxes.dtype == np.float64
    np.testing.assert_array_equal(cats, [9, 2, 9])
    np.testing.assert_array_equal(diff, [False, True, False])
    b0, c0, d0 = idx.gt_boxes(3)
    assert b0.shape == (0, 4) and c0.shape == (0,) and d0.shape == (0,)
    with pytest.raises(KeyError):
        idx.anns_of(99)


def test_relative_image_root_resolves_against_cwd(tmp_path, monkeypatch):
    data = _split(tmp_path)
    data["info"]["image_root"] = "imgs"
    p = _write(tmp_path, data)
    monkeypatch.chdir(tmp_path)
    idx = load_index(p)
    assert read_image(idx.image_path(7)).shape == (4, 6, 3)


def test_read_image_rgb_and_errors(tmp_path):
    idx = load_index(_write(tmp_path, _split(tmp_path)))
    arr = read_image(idx.image_path(7))
    assert arr.dtype == np.uint8 and arr.shape == (4, 6, 3)
    assert (arr[..., 0] == 200).all() and (arr[..., 1:] == 0).all()  # RGB, not BGR
    bad = tmp_path / "imgs" / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(InputError, match="bad.png"):
        read_image(bad)
    # a truncated real PNG is corrupt too
    full = (tmp_path / "imgs" / "a.png").read_bytes()
    trunc = tmp_path / "imgs" / "trunc.png"
    trunc.write_bytes(full[: len(full) // 2])
    with pytest.raises(InputError, match="trunc.png"):
        read_image(trunc)
    with pytest.raises(InputError, match="missing.png"):
        read_image(tmp_path / "missing.png")


@pytest.mark.parametrize(
    "mutate, problem",
    [
        (lambda d: d["annotations"][0].update(category_id=5), "unknown category_id 5"),
        (lambda d: d["annotations"][1].update(image_id=42), "unknown image_id 42"),
        (lambda d: d.update(images=[], annotations=[]), "empty split"),
        (lambda d: d["annotations"][0].update(bbox=[0, 0, -1, 2]), "bad bbox"),
        (lambda d: d.pop("images"), "images"),
    ],
)
def test_load_index_rejects_bad_json(tmp_path, mutate, problem):
    data = _split(tmp_path)
    mutate(data)
    p = _write(tmp_path, data, "bad_split.json")
    with pytest.raises(InputError, match="bad_split.json") as e:
        load_index(p)
    assert problem in str(e.value)


def test_load_index_missing_and_invalid_json(tmp_path):
    with pytest.raises(InputError, match="nope.json"):
        load_index(tmp_path / "nope.json")
    p = tmp_path / "broken.json"
    p.write_text('{"images": [')
    with pytest.raises(InputError, match="broken.json.*not valid JSON"):
        load_index(p)


def test_weak_view_labels(tmp_path):
    view = WeakView(load_index(_write(tmp_path, _split(tmp_path))))
    assert len(view) == 2 and view.num_classes == 2
    assert view.categories == ((2, "disc"), (9, "star"))
    it = view[0]
    assert isinstance(it, WeakImage)
    assert (it.image_id, it.width, it.height) == (7, 6, 4)
    assert it.labels.dtype == np.float32
    np.testing.assert_array_equal(it.labels, [1.0, 1.0])
    np.testing.assert_array_equal(view[1].labels, [0.0, 0.0])
    np.testing.assert_array_equal(view.labels(), [[1, 1], [0, 0]])
    assert view.read(1).shape == (4, 5, 3)
    assert [w.image_id for w in view] == [7, 3]


def _reachable(obj, depth: int = 4, seen: set | None = None):
    """Every object reachable from ``obj`` through attributes / containers (bounded depth)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth < 0:
        return
    seen.add(id(obj))
    yield obj
    children: list = []
    if isinstance(obj, dict):
        children = list(obj.keys()) + list(obj.values())
    elif isinstance(obj, list | tuple | set):
        children = list(obj)
    else:
        for name in getattr(type(obj), "__slots__", ()):
            if hasattr(obj, name):
                children.append(getattr(obj, name))
        children.extend(getattr(obj, "__dict__", {}).values())
    for c in children:
        yield from _reachable(c, depth - 1, seen)


def test_weak_view_cannot_see_boxes_or_masks(tmp_path):
    """Training code holding a WeakView has no route to the annotations, and what it sees is
    identical when every training box and mask is replaced by garbage."""
    data = _split(tmp_path)
    view = WeakView(load_index(_write(tmp_path, data, "clean.json")))
    rng = np.random.default_rng(0)
    garbage = json.loads(json.dumps(data))
    for a in garbage["annotations"]:
        a["bbox"] = [float(v) for v in rng.uniform(0, 3, 4)]
        a["area"] = 12345.0
        a["segmentation"] = {"size": [1, 1], "counts": "GARBAGE"}
        a["difficult"] = 1 - int(a.get("difficult", 0))
    gview = WeakView(load_index(_write(tmp_path, garbage, "garbage.json")))
    for a, b in zip(view, gview, strict=True):
        assert (a.image_id, a.path, a.width, a.height) == (b.image_id, b.path, b.width, b.height)
        np.testing.assert_array_equal(a.labels, b.labels)
    # no attribute is (or leads to) an index, an annotation or a bbox/segmentation
    assert not hasattr(view, "__dict__")
    for o in _reachable(view):
        assert not isinstance(o, CocoIndex)
        if isinstance(o, dict):
            assert not {"bbox", "segmentation", "annotations", "area"} & set(o)
        if isinstance(o, str):
            assert o not in {"bbox", "segmentation", "annotations"}
    for name in ("annotations", "anns_of", "gt_boxes", "index", "_index"):
        assert not hasattr(view, name)
    with pytest.raises(AttributeError):
        view.index = "sneak"  # __slots__: nothing can be attached to the view either
