"""The `weaksam` command (weaksam/cli.py): every declared console script imports, and the
subcommands tables / profile / doctor work on a hand-built workspace."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from weaksam.cli import find_root, main

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_every_declared_console_script_imports():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts, "pyproject.toml declares no console script"
    for name, target in scripts.items():
        module, attr = target.split(":")
        assert callable(getattr(importlib.import_module(module), attr)), name


def test_installed_console_script_runs():
    exe = BIN / "weaksam"
    if not exe.is_file():
        pytest.skip("the package is not installed in this environment (make .venv/.installed)")
    r = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    for sub in ("tables", "profile", "doctor"):
        assert sub in r.stdout


def _ws(tmp_path: Path) -> Path:
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"sam_pretrain": {
        "cmd": "true", "outs": ["models/sam_small.pt"]}}}))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "seed": 0, "profile": "default", "runtime": {"device": "cpu"},
        "data": {"source": "synthetic", "voc_root": None, "voc_trainval": "trainval",
                 "voc_test": "test"},
        "sam": {"checkpoint": "models/sam_small.pt", "device": "cpu"}}, sort_keys=False))
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "voc.yaml").write_text("data:\n  source: voc\n  voc_root: VOC\n")
    (tmp_path / "metrics").mkdir()
    return tmp_path


def test_find_root_walks_up(tmp_path):
    root = _ws(tmp_path)
    (root / "a" / "b").mkdir(parents=True)
    assert find_root(root / "a" / "b") == root.resolve()


def test_profile_subcommand(tmp_path, capsys):
    root = _ws(tmp_path)
    assert main(["--root", str(root), "profile", "--list"]) == 0
    assert capsys.readouterr().out.split() == ["voc"]
    assert main(["--root", str(root), "profile", "voc"]) == 0
    p = yaml.safe_load((root / "params.yaml").read_text())
    assert p["data"]["source"] == "voc" and p["data"]["voc_root"] == "VOC"
    assert p["profile"] == "voc"
    assert main(["--root", str(root), "profile", "paper_voc99"]) == 2
    assert "paper_voc99.yaml: no such profile (have: voc)" in capsys.readouterr().err


def _wsod_metrics(d: Path, ap: dict[str, float]) -> None:
    for name, v in ap.items():
        (d / f"wsod_{name}.json").write_text(json.dumps({"ap50": v, "corloc": v + 10}))


def test_tables_subcommand_index_and_one_table(tmp_path, capsys):
    root = _ws(tmp_path)
    # OICR: WeakSAM above SS (paper's direction); MIST: below
    _wsod_metrics(root / "metrics", {"oicr_ss": 40.0, "oicr_weaksam": 45.0,
                                     "mist_ss": 50.0, "mist_weaksam": 42.0})
    assert main(["--root", str(root), "tables"]) == 0
    out = capsys.readouterr().out
    assert "Profile of this run: **default**" in out
    line1 = next(ln for ln in out.splitlines() if ln.startswith("| [Table 1]"))
    assert "holds 1, reversed 1" in line1
    assert "WeakSAM (OICR) 45 > OICR [SS] 40: holds (point only)" in line1
    assert "WeakSAM (MIST) 42 > MIST [SS] 50: reversed (point only)" in line1
    line7 = next(ln for ln in out.splitlines() if ln.startswith("| [Table 7]"))
    assert "holds 1, reversed 1" in line7
    line8 = next(ln for ln in out.splitlines() if ln.startswith("| [Table 8]"))
    assert "| not run |" in line8
    assert main(["--root", str(root), "tables", "table1"]) == 0
    assert "**Table 1.**" in capsys.readouterr().out
    assert main(["--root", str(root), "tables", "table99"]) == 2


def test_doctor_subcommand(tmp_path, capsys):
    root = _ws(tmp_path)
    assert main(["--root", str(root), "doctor", "--no-remote"]) == 0
    out = capsys.readouterr().out
    assert "OK    torch 2.14.1" in out
    assert "output of stage sam_pretrain, not built yet" in out
    assert main(["--root", str(root), "profile", "voc"]) == 0
    capsys.readouterr()
    assert main(["--root", str(root), "doctor", "--no-remote"]) == 1  # no VOC tree there
    out = capsys.readouterr().out
    assert f"FAIL  VOC annotations: {root / 'VOC' / 'Annotations'} (dir not found)" in out
    assert "failed (profile: voc)" in out
