"""clues/{split}.npz: round trip, layout and validation errors naming the file."""

from __future__ import annotations

import numpy as np
import pytest

from weaksam.clues.store import ImageClues, build_clues, load_clues, save_clues
from weaksam.errors import InputError


def _images() -> list[ImageClues]:
    rng = np.random.default_rng(0)
    a = ImageClues(image_id=7, width=40, height=30, classes=np.array([2, 5]),
                   class_scores=np.array([0.9, 0.6], np.float32),
                   cam_coarse=rng.random((2, 3, 4)), cam_fine=rng.random((2, 3, 4)),
                   cross=rng.random((2, 2, 3, 4)))
    empty = ImageClues(image_id=9, width=20, height=20, classes=np.zeros(0, np.int64),
                       class_scores=np.zeros(0, np.float32), cam_coarse=np.zeros((0, 3, 4)),
                       cam_fine=np.zeros((0, 3, 4)), cross=np.zeros((0, 2, 3, 4)))
    return [a, empty]


def test_roundtrip(tmp_path):
    imgs = _images()
    probs = np.zeros((2, 6), np.float32)
    cs = build_clues(imgs, (3, 4), [1, 3], [1, 2, 3, 4, 5, 6], probs)
    assert cs.arrays["offsets"].tolist() == [0, 2, 2]
    assert cs.arrays["cam_fine"].dtype == np.float16
    save_clues(tmp_path / "c.npz", cs)
    back = load_clues(tmp_path / "c.npz")
    assert back.image_ids == [7, 9]
    one = back.image(0)
    assert one.classes.tolist() == [2, 5] and (one.width, one.height) == (40, 30)
    np.testing.assert_allclose(one.cross, imgs[0].cross, atol=1e-3)  # float16
    assert back.image(1).cam_coarse.shape == (0, 3, 4)
    assert [c.image_id for c in back] == [7, 9]


def test_missing_file_and_bad_shapes(tmp_path):
    with pytest.raises(InputError, match="nope.npz"):
        load_clues(tmp_path / "nope.npz")
    cs = build_clues(_images(), (3, 4), [1, 3], [1, 2, 3, 4, 5, 6], np.zeros((2, 6)))
    a = dict(cs.arrays)
    a["cam_fine"] = a["cam_fine"][:, :2]
    path = tmp_path / "bad.npz"
    np.savez(path, **a)
    with pytest.raises(InputError, match="bad.npz.*cam_fine"):
        load_clues(path)
    a = dict(cs.arrays)
    del a["cross"]
    np.savez(path, **a)
    with pytest.raises(InputError, match="missing arrays"):
        load_clues(path)
    a = dict(cs.arrays)
    a["classes"] = np.array([2, 99])
    np.savez(path, **a)
    with pytest.raises(InputError, match="category id"):
        load_clues(path)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="junk.npz"):
        load_clues(tmp_path / "junk.npz")


def test_save_clues_same_bytes_twice(tmp_path) -> None:
    """Equal clues give equal file bytes (no zip timestamps), so DVC sees no change on rerun."""
    import time

    cs = build_clues(_images(), (3, 4), [1, 3], [1, 2, 3, 4, 5, 6], np.zeros((2, 6), np.float32))
    save_clues(tmp_path / "a.npz", cs)
    time.sleep(2.1)  # zip timestamps have 2 s resolution
    save_clues(tmp_path / "b.npz", cs)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def test_images_of_different_grids_round_trip(tmp_path):
    """Images inferred at their own aspect ratio have their own token grids: stored in a
    split-wide array, each comes back cropped to its own grid."""
    rng = np.random.default_rng(1)
    wide = ImageClues(image_id=1, width=80, height=40, classes=np.array([1]),
                      class_scores=np.array([0.8], np.float32), cam_coarse=rng.random((1, 2, 4)),
                      cam_fine=rng.random((1, 2, 4)), cross=rng.random((1, 3, 2, 4)))
    tall = ImageClues(image_id=2, width=30, height=60, classes=np.array([2]),
                      class_scores=np.array([0.7], np.float32), cam_coarse=rng.random((1, 4, 2)),
                      cam_fine=rng.random((1, 4, 2)), cross=rng.random((1, 3, 4, 2)))
    cs = build_clues([wide, tall], (4, 4), [8, 8, 9], [1, 2], np.zeros((2, 2), np.float32),
                     cross_heads=[0, 1, -1])
    assert cs.arrays["grids"].tolist() == [[2, 4], [4, 2]]
    save_clues(tmp_path / "g.npz", cs)
    back = load_clues(tmp_path / "g.npz")
    assert back.image(0).cam_fine.shape == (1, 2, 4) and back.image(1).cross.shape == (1, 3, 4, 2)
    np.testing.assert_allclose(back.image(1).cam_coarse, tall.cam_coarse, atol=1e-3)
    assert back.arrays["cross_heads"].tolist() == [0, 1, -1]
    with pytest.raises(ValueError):  # a grid larger than the store grid
        build_clues([wide], (2, 2), [8, 8, 9], [1, 2], np.zeros((1, 2), np.float32))
