"""weaksam.profiles: deep merge, profile application (the code behind `weaksam profile` and
`python -m pipeline.use_profile`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from weaksam.errors import InputError
from weaksam.profiles import apply_profile, deep_merge, list_profiles, resolve_profile

ROOT = Path(__file__).resolve().parents[1]


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


def _comments(text: str) -> list[str]:
    """The comment of every line, stripped (``#`` onwards; the files quote no ``#``)."""
    out = []
    for line in text.splitlines():
        i = 0 if line.lstrip().startswith("#") else line.find(" #") + 1
        if i > 0 or line.lstrip().startswith("#"):
            out.append(line[line.index("#", i):].strip())
    return out


def _is_subsequence(small: list, big: list) -> bool:
    it = iter(big)
    return all(any(x == y for y in it) for x in small)


def _key_orders(d: dict, path: str = "") -> dict[str, list[str]]:
    out = {path: list(d)}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_key_orders(v, f"{path}.{k}"))
    return out


@pytest.mark.parametrize("profile", list_profiles(ROOT / "configs"))
def test_apply_profile_keeps_comments_and_key_order(tmp_path, profile):
    """Every comment of params.yaml (all its keys survive a profile) is still there, in its
    order; every mapping keeps its keys' order; the values are deep_merge's."""
    original = (ROOT / "params.yaml").read_text()
    params = tmp_path / "params.yaml"
    params.write_text(original)
    apply_profile(profile, params, ROOT / "configs")
    text = params.read_text()
    before, after = _comments(original), _comments(text)
    assert len(before) > 200
    missing = [c for c in before if c not in after]
    assert not missing, f"comments lost: {missing[:5]}"
    assert _is_subsequence(before, after), "comments out of order"
    override = resolve_profile(profile, ROOT / "configs")
    merged = deep_merge(yaml.safe_load(original), override)
    merged["profile"] = override.get("profile", profile)
    got = yaml.safe_load(text)
    assert got == merged
    for path, keys in _key_orders(yaml.safe_load(original)).items():
        node = got
        for k in filter(None, path.split(".")):
            node = node[k]
        assert list(node)[: len(keys)] == keys, path  # added keys come after
    assert not [ln for ln in text.splitlines() if ln != ln.rstrip()]  # no trailing blanks


def test_apply_profile_adds_keys_with_the_profile_comment(tmp_path):
    root = _tree(tmp_path)
    (root / "params.yaml").write_text(
        "seed: 0  # the seed\ndata:       # data section\n  source: synthetic  # kind\n\n"
        "# --- wsod ---\nwsod:\n  lr: 0.001   # step size\n")
    (root / "configs" / "more.yaml").write_text(
        "# header of the profile\ndata:\n  source: voc   # the profile's kind\n"
        "  voc_root: V   # where VOC is\n\n# a profile section\nwsod:\n  lr: 0.1\n")
    apply_profile("more", root / "params.yaml", root / "configs")
    assert (root / "params.yaml").read_text() == (
        "seed: 0  # the seed\ndata:       # data section\n  source: voc        # kind\n"
        "  voc_root: V   # where VOC is\n\n# --- wsod ---\nwsod:\n  lr: 0.1     # step size\n"
        "profile: more\n")


def test_apply_profile_duplicate_key_and_value_guard(tmp_path, monkeypatch):
    root = _tree(tmp_path)
    (root / "configs" / "dup.yaml").write_text("data:\n  source: voc\n  source: coco\n")
    before = (root / "params.yaml").read_text()
    with pytest.raises(InputError, match=r"dup\.yaml: not valid YAML at line 3: found duplicate "
                                         r"key \"source\""):
        apply_profile("dup", root / "params.yaml", root / "configs")
    assert (root / "params.yaml").read_text() == before
    # a round trip that would read back other values is not written: plain dump instead
    import weaksam.profiles as profiles

    monkeypatch.setattr(profiles, "_rewrite", lambda *a: "seed: 1  # wrong\n")
    with pytest.warns(UserWarning, match="would change values; written without comments"):
        apply_profile("voc", root / "params.yaml", root / "configs")
    assert yaml.safe_load((root / "params.yaml").read_text()) == {
        "seed": 0, "profile": "voc", "data": {"source": "voc", "voc_root": "V"},
        "wsod": {"lr": 0.001}}
