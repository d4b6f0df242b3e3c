"""The ``data`` stage (pipeline/data.py) in a temporary repo root: outputs, determinism, and
nothing partial on bad input."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from pipeline import data as stage
from weaksam.data.export import export_voc
from weaksam.data.index import load_index, read_image
from weaksam.data.weak import WeakView
from weaksam.errors import InputError

ROOT = Path(__file__).resolve().parents[2]

PARAMS = {
    "seed": 0,
    "data": {"source": "synthetic", "num_trainval": 12, "num_test": 5, "image_min": 64,
             "image_max": 80, "min_instances": 1, "max_instances": 5, "voc_root": None,
             "voc_trainval": "trainval", "voc_test": "test", "verify_images": True},
}


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_synthetic_stage_outputs_and_determinism(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    summary = stage.run(copy.deepcopy(PARAMS))
    assert summary["trainval"]["images"] == 12 and summary["test"]["images"] == 5
    assert 12 <= summary["trainval"]["instances"] <= 60
    for split, n in (("trainval", 12), ("test", 5)):
        idx = load_index(Path("data/annotations") / f"{split}.json")
        assert len(idx) == n
        assert idx.to_json()["info"]["image_root"] == str(tmp_path / "data/images" / split)
        iid = idx.image_ids[0]
        assert idx.image_path(iid) == tmp_path / f"data/images/{split}/{iid:06d}.png"
        assert read_image(idx.image_path(iid)).shape[2] == 3
    raw = (tmp_path / "data/annotations/trainval.json").read_text()
    assert '"image_root":"data/images/trainval"' in raw  # relative to the repo root
    view = WeakView(load_index("data/annotations/trainval.json"))
    assert view.labels().shape == (12, 10) and (view.labels().sum(1) >= 1).all()
    first = _tree(tmp_path / "data")
    stage.run(copy.deepcopy(PARAMS))
    assert _tree(tmp_path / "data") == first  # same params + seed -> same bytes
    assert not [p for p in (tmp_path / "data").iterdir() if p.name.startswith(".")]


def _seed_outputs(tmp_path: Path) -> dict[str, bytes]:
    """Previous outputs that a failing run must leave untouched."""
    for sub in ("data/annotations", "data/images"):
        (tmp_path / sub).mkdir(parents=True, exist_ok=True)
        (tmp_path / sub / "previous.txt").write_text("old run")
    return _tree(tmp_path / "data")


def _voc(tmp_path: Path) -> Path:
    """A small VOC folder (trainval + test) exported from synthetic splits."""
    from weaksam.data.index import index_from_dict
    from weaksam.data.synthetic import generate_split

    root = tmp_path / "VOCdevkit" / "VOC2007"
    for split, n in (("trainval", 3), ("test", 2)):
        d = generate_split(split, n, tmp_path / "src" / split, str(tmp_path / "src" / split),
                           seed=0, progress=False, image_min=48, image_max=56)
        export_voc(index_from_dict(d, tmp_path / f"{split}.json"), root, split, progress=False)
    return root


def _voc_params(root: Path) -> dict:
    p = copy.deepcopy(PARAMS)
    p["data"].update(source="voc", voc_root=str(root))
    return p


def test_voc_source_reads_in_place(tmp_path, monkeypatch):
    root = _voc(tmp_path)
    monkeypatch.chdir(tmp_path)
    # the synthetic class names are not VOC's: unknown class -> error, nothing written
    before = _seed_outputs(tmp_path)
    with pytest.raises(InputError, match=r"Annotations/000001\.xml.*unknown class name"):
        stage.run(_voc_params(root))
    assert _tree(tmp_path / "data") == before
    # relabel the objects with VOC names and the stage succeeds, images not copied
    for x in (root / "Annotations").glob("*.xml"):
        t = x.read_text()
        for a, b in (("disc", "dog"), ("square", "cat"), ("triangle", "car"), ("star", "bus"),
                     ("ring", "cow"), ("cross", "boat"), ("hexagon", "bird"),
                     ("crescent", "sofa"), ("<name>car<", "<name>train<"),
                     ("house", "horse")):
            t = t.replace(a, b)
        x.write_text(t)
    summary = stage.run(_voc_params(root))
    assert summary["trainval"]["images"] == 3 and summary["test"]["images"] == 2
    idx = load_index("data/annotations/test.json")
    assert idx.image_root == root / "JPEGImages"
    assert idx.image_ids == [500001, 500002]
    assert sorted(p.name for p in (tmp_path / "data/images").iterdir()) == ["SOURCE.txt"]


@pytest.mark.parametrize("case", ["corrupt_image", "missing_annotation", "unknown_class",
                                  "empty_split"])
def test_bad_voc_input_names_file_and_writes_nothing(tmp_path, monkeypatch, case):
    root = _voc(tmp_path)
    names = {"disc": "dog", "square": "cat", "triangle": "car", "star": "bus", "ring": "cow",
             "cross": "boat", "hexagon": "bird", "crescent": "sofa", "car<": "train<",
             "house": "horse"}
    for x in (root / "Annotations").glob("*.xml"):
        t = x.read_text()
        for a, b in names.items():
            t = t.replace(f"<name>{a}", f"<name>{b}")
        x.write_text(t)
    if case == "corrupt_image":
        bad = root / "JPEGImages" / "500002.jpg"
        bad.write_bytes(bad.read_bytes()[:100])
        expect = r"500002\.jpg"
    elif case == "missing_annotation":
        (root / "Annotations" / "000002.xml").unlink()
        expect = r"000002\.xml.*not found"
    elif case == "unknown_class":
        x = root / "Annotations" / "500001.xml"
        x.write_text(x.read_text().replace("<name>", "<name>unicorn", 1))
        expect = r"500001\.xml.*unknown class name"
    else:
        (root / "ImageSets/Main/test.txt").write_text("")
        expect = r"test\.txt.*empty split"
    monkeypatch.chdir(tmp_path)
    before = _seed_outputs(tmp_path)
    with pytest.raises(InputError, match=expect):
        stage.run(_voc_params(root))
    assert _tree(tmp_path / "data") == before
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["annotations", "images"]


def test_failure_midway_leaves_nothing_partial(tmp_path, monkeypatch):
    """A crash while generating the test split (after trainval was written to the temporary
    folders) leaves the previous outputs as they were and no temporary folder."""
    monkeypatch.chdir(tmp_path)
    before = _seed_outputs(tmp_path)
    real = stage.generate_split

    def flaky(split, *a, **k):
        if split == "test":
            raise InputError("data/images/test/000001.png", "simulated failure")
        return real(split, *a, **k)

    monkeypatch.setattr(stage, "generate_split", flaky)
    with pytest.raises(InputError, match="simulated failure"):
        stage.run(copy.deepcopy(PARAMS))
    assert _tree(tmp_path / "data") == before
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["annotations", "images"]


def test_cli_reports_error_and_exit_code(tmp_path):
    p = copy.deepcopy(PARAMS)
    p["data"].update(source="voc", voc_root=str(tmp_path / "nowhere"))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    r = subprocess.run([sys.executable, "-m", "pipeline.data"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode != 0
    assert "nowhere/ImageSets/Main/trainval.txt" in r.stderr
    assert "nothing written" in r.stderr
    assert not (tmp_path / "data").exists()


def test_images_are_valid_png(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stage.run(copy.deepcopy(PARAMS))
    with Image.open(tmp_path / "data/images/test/500001.png") as im:
        assert im.format == "PNG" and im.mode == "RGB"
        assert np.asarray(im).dtype == np.uint8


def test_clipped_boxes_counted_in_the_stage_metrics(tmp_path, monkeypatch):
    """xmax 9999 on a narrower image: the box is clipped in data/annotations and counted per
    split in metrics/data.json (it used to load as it was, uncounted)."""
    import json

    from weaksam.dryrun.trees import write_vocdevkit

    fx = write_vocdevkit(tmp_path / "VOCdevkit", 3, 2, size="small")
    name = (fx["root"] / "ImageSets/Main/trainval.txt").read_text().split()[1]
    xml = fx["root"] / "Annotations" / f"{name}.xml"
    text = xml.read_text()
    start = text.index("<xmax>") + len("<xmax>")
    xml.write_text(text[:start] + "9999" + text[text.index("</xmax>", start):])
    width = int(text[text.index("<width>") + 7:text.index("</width>")])
    monkeypatch.chdir(tmp_path)
    summary = stage.run(_voc_params(fx["root"]))
    metrics = json.loads(Path("metrics/data.json").read_text())
    assert metrics == json.loads(json.dumps(summary))
    assert metrics["trainval"]["boxes_clipped"] == 1 and metrics["test"]["boxes_clipped"] == 0
    assert metrics["trainval"]["images_without_masks"] == 0
    idx = load_index("data/annotations/trainval.json")
    x, _, w, _ = idx.anns_of(int(name))[0]["bbox"]
    assert x + w == width
