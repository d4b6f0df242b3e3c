"""The proposals file contract (weaksam/proposals/store.py)."""

from __future__ import annotations

import pickle
import time
import zipfile

import numpy as np
import pytest

from weaksam.errors import InputError
from weaksam.proposals.store import (
    ImageProposals,
    ProposalSet,
    load_proposals,
    save_proposals,
    to_detectron2,
)

NAMES = ["dense", "cam_fine", "cam_coarse", "cross"]


def _set() -> ProposalSet:
    ps = ProposalSet(list(NAMES))
    ps.images[7] = ImageProposals(
        np.array([[0, 0, 10, 10], [5, 5, 20, 30], [1, 2, 3, 4]], np.float32),
        np.array([0.9, 0.5, 0.25], np.float32),
        np.array([0, 3, 1], np.uint8),
    )
    ps.images[3] = ImageProposals.empty()  # an image without proposals keeps its entry
    ps.images[5] = ImageProposals(np.array([[2, 2, 8, 9]], np.float32),
                                  np.array([0.75], np.float32), np.array([2], np.uint8))
    return ps


def test_round_trip_keeps_order_empty_images_and_dtypes(tmp_path):
    ps = _set()
    save_proposals(tmp_path / "p.npz", ps)
    back = load_proposals(tmp_path / "p.npz")
    assert back.source_names == NAMES
    assert list(back.images) == [7, 3, 5]  # split order, not sorted
    for iid, p in ps.images.items():
        q = back.images[iid]
        np.testing.assert_array_equal(q.boxes, p.boxes)
        np.testing.assert_array_equal(q.scores, p.scores)
        np.testing.assert_array_equal(q.sources, p.sources)
        assert q.boxes.dtype == np.float32 and q.sources.dtype == np.uint8
    assert len(back.images[3]) == 0 and back.images[3].boxes.shape == (0, 4)
    assert back.mean_count() == pytest.approx(4 / 3)
    assert ProposalSet(["ss"]).mean_count() == 0.0


def test_empty_set_round_trip(tmp_path):
    save_proposals(tmp_path / "e.npz", ProposalSet(["ss"]))
    back = load_proposals(tmp_path / "e.npz")
    assert back.source_names == ["ss"] and len(back) == 0


def test_same_content_same_bytes(tmp_path):
    save_proposals(tmp_path / "a.npz", _set())
    time.sleep(2.1)  # zip timestamps have 2 s resolution: numpy's own savez would differ here
    save_proposals(tmp_path / "b.npz", _set())
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    with np.load(tmp_path / "a.npz") as z:  # still a plain numpy archive
        assert set(z.files) == {"image_ids", "offsets", "boxes", "scores", "sources",
                                "source_names"}
        np.testing.assert_array_equal(z["offsets"], [0, 3, 3, 4])


def test_filter_sources():
    ps = _set()
    f = ps.filter_sources(["dense", "cam_fine"])
    assert f.source_names == NAMES  # indices keep their meaning
    np.testing.assert_array_equal(f.images[7].boxes, [[0, 0, 10, 10], [1, 2, 3, 4]])
    np.testing.assert_array_equal(f.images[7].sources, [0, 1])
    assert len(f.images[3]) == 0 and len(f.images[5]) == 0
    assert len(ps.images[7]) == 3  # the original is untouched
    assert len(ps.filter_sources(NAMES).images[7]) == 3
    with pytest.raises(ValueError, match="unknown proposal sources"):
        ps.filter_sources(["ss"])


def test_filter_sources_union_drops_cross_source_duplicates():
    ps = ProposalSet(list(NAMES))
    box = [1, 2, 30, 40]
    ps.images[1] = ImageProposals(
        np.array([box, [0, 0, 5, 5], box, box], np.float32),
        np.array([0.5, 0.9, 0.7, 0.7], np.float32),
        np.array([0, 0, 1, 3], np.uint8),
    )
    u = ps.filter_sources(NAMES).images[1]
    np.testing.assert_array_equal(u.boxes, [[0, 0, 5, 5], box])  # original order kept
    np.testing.assert_allclose(u.scores, [0.9, 0.7])  # best copy; tie -> lower source
    np.testing.assert_array_equal(u.sources, [0, 1])
    assert len(ps.filter_sources(["dense", "cross"]).images[1]) == 2
    assert len(ps.filter_sources(NAMES, unique=False).images[1]) == 4


def test_detectron2_export(tmp_path):
    to_detectron2(_set(), tmp_path / "d2.pkl")
    with open(tmp_path / "d2.pkl", "rb") as f:
        d = pickle.load(f)
    assert d["ids"] == [7, 3, 5]
    np.testing.assert_array_equal(d["boxes"][0][1], [5, 5, 20, 30])
    # logit(0.9) = ln 9, logit(0.5) = 0, logit(0.25) = -ln 3
    np.testing.assert_allclose(d["objectness_logits"][0], [np.log(9), 0, -np.log(3)], rtol=1e-5)
    assert d["boxes"][1].shape == (0, 4) and d["objectness_logits"][1].shape == (0,)


def test_corrupt_and_missing_files_name_the_file(tmp_path):
    with pytest.raises(InputError, match="nothere.npz: proposals file not found"):
        load_proposals(tmp_path / "nothere.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage, not a zip")
    with pytest.raises(InputError, match="bad.npz: cannot read"):
        load_proposals(bad)
    np.savez(tmp_path / "partial.npz", image_ids=np.zeros(1, np.int64))
    with pytest.raises(InputError, match="lacks arrays"):
        load_proposals(tmp_path / "partial.npz")
    good = tmp_path / "good.npz"
    save_proposals(good, _set())
    with np.load(good) as z:
        d = {k: z[k] for k in z.files}
    np.savez(tmp_path / "off.npz", **dict(d, offsets=np.array([0, 3, 3, 9])))
    with pytest.raises(InputError, match="offsets"):
        load_proposals(tmp_path / "off.npz")
    np.savez(tmp_path / "src.npz", **dict(d, sources=np.array([0, 9, 1, 2], np.uint8)))
    with pytest.raises(InputError, match="source index"):
        load_proposals(tmp_path / "src.npz")
    np.savez(tmp_path / "len.npz", **dict(d, scores=np.zeros(3, np.float32)))
    with pytest.raises(InputError, match="differ in length"):
        load_proposals(tmp_path / "len.npz")
    # A truncated archive (a crash mid-write by some other tool) is also reported, not raised raw.
    raw = good.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match="trunc.npz"):
        load_proposals(tmp_path / "trunc.npz")
    assert zipfile.is_zipfile(good)
