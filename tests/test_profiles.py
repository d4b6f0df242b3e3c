"""weaksam.profiles: deep merge, profile application (the code behind `weaksam profile` and
`python -m pipeline.use_profile`)."""

from __future__ import annotations

import pytest
import yaml

from weaksam.errors import InputError
from weaksam.profiles import apply_profile, deep_merge, list_profiles, resolve_profile


def test_deep_merge_leaves_and_copies():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 3}
    over = {"a": {"c": [9]}, "e": {"f": None}}
    out = deep_merge(base, over)
    assert out == {"a": {"b": 1, "c": [9]}, "d": 3, "e": {"f": None}}
    out["a"]["b"] = 7
    assert base["a"]["b"] == 1  # base untouched


def _tree(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "params.yaml").write_text("seed: 0\nprofile: default\ndata:\n  source: "
                                          "synthetic\n  voc_root: null\nwsod:\n  lr: 0.001\n")
    (tmp_path / "configs" / "voc.yaml").write_text("data:\n  source: voc\n  voc_root: V\n")
    (tmp_path / "configs" / "named.yaml").write_text("profile: custom\nwsod:\n  lr: 0.1\n")
    return tmp_path


def test_apply_profile_merges_and_names_it(tmp_path):
    root = _tree(tmp_path)
    assert list_profiles(root / "configs") == ["named", "voc"]
    cfg = apply_profile("voc", root / "params.yaml", root / "configs")
    assert cfg == root / "configs" / "voc.yaml"
    p = yaml.safe_load((root / "params.yaml").read_text())
    assert p == {"seed": 0, "profile": "voc", "data": {"source": "voc", "voc_root": "V"},
                 "wsod": {"lr": 0.001}}
    apply_profile("named", root / "params.yaml", root / "configs")
    p = yaml.safe_load((root / "params.yaml").read_text())
    assert p["profile"] == "custom" and p["wsod"]["lr"] == 0.1 and p["data"]["voc_root"] == "V"


def test_apply_profile_errors_name_the_file(tmp_path):
    root = _tree(tmp_path)
    before = (root / "params.yaml").read_text()
    with pytest.raises(InputError, match=r"nope\.yaml: no such profile \(have: named, voc\)"):
        apply_profile("nope", root / "params.yaml", root / "configs")
    (root / "configs" / "bad.yaml").write_text("- a list\n")
    with pytest.raises(InputError, match=r"bad\.yaml: profile: expected a mapping"):
        apply_profile("bad", root / "params.yaml", root / "configs")
    assert (root / "params.yaml").read_text() == before  # untouched on failure


def test_extends_applies_bases_first(tmp_path):
    root = _tree(tmp_path)
    (root / "configs" / "voc12.yaml").write_text("extends: voc\ndata:\n  voc_root: V12\n")
    (root / "configs" / "both.yaml").write_text("extends: [voc12, named]\nseed: 3\n")
    assert resolve_profile("voc12", root / "configs") == {
        "data": {"source": "voc", "voc_root": "V12"}}
    assert resolve_profile("both", root / "configs") == {
        "data": {"source": "voc", "voc_root": "V12"}, "profile": "custom",
        "wsod": {"lr": 0.1}, "seed": 3}
    apply_profile("voc12", root / "params.yaml", root / "configs")
    p = yaml.safe_load((root / "params.yaml").read_text())
    assert p["data"] == {"source": "voc", "voc_root": "V12"} and p["profile"] == "voc12"
    assert "extends" not in p
    (root / "configs" / "loop.yaml").write_text("extends: loop2\n")
    (root / "configs" / "loop2.yaml").write_text("extends: loop\n")
    with pytest.raises(InputError, match="profile cycle: loop -> loop2 -> loop"):
        resolve_profile("loop", root / "configs")
