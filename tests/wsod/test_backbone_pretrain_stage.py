"""Stage ``backbone_pretrain`` (pipeline/backbone_pretrain.py) under a paper profile (VGG16):
nothing is trained, yet every output dvc.yaml declares for the stage must exist."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

from pipeline import backbone_pretrain
from weaksam.profiles import deep_merge, resolve_profile

ROOT = Path(__file__).resolve().parents[2]


def _declared_outputs() -> list[str]:
    """Every out / metric / plot path of stage ``backbone_pretrain`` in dvc.yaml."""
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["backbone_pretrain"]
    paths = []
    for kind in ("outs", "metrics", "plots"):
        for entry in stage.get(kind, []):
            paths.extend(entry if isinstance(entry, dict) else [entry])
    return paths


@pytest.mark.parametrize("device", ["cuda", "cpu"])  # the profile's own, the dry run's
def test_vgg16_profile_writes_every_declared_output(tmp_path, monkeypatch, device):
    params = deep_merge(yaml.safe_load((ROOT / "params.yaml").read_text()),
                        resolve_profile("paper_voc07", ROOT / "configs"))
    assert params["wsod"]["backbone"] == "vgg16" and params["runtime"]["device"] == "cuda"
    params["runtime"]["device"] = device
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)  # no data/, no CUDA: the skip path must need neither
    monkeypatch.setattr(sys, "argv", ["backbone_pretrain", "--params", "params.yaml"])
    backbone_pretrain.main()
    declared = _declared_outputs()
    assert "dvclive/backbone_pretrain/plots/metrics" in declared
    missing = [p for p in declared if not (tmp_path / p).exists()]
    assert not missing, f"declared outputs not written: {missing}"
    m = json.loads((tmp_path / "metrics/backbone_pretrain.json").read_text())
    assert m["skipped"] is True and "vgg16" in m["reason"] and m["test_map"] is None
    tsv = tmp_path / "dvclive/backbone_pretrain/plots/metrics/loss.tsv"
    assert tsv.read_text() == "step\tloss\n"
    ck = torch.load(tmp_path / "backbone/model.pt", weights_only=True)
    assert ck == {"backbone": None,
                  "config": {"name": "vgg16", "checkpoint": "models/vgg16.pth"}}
    # a rerun replaces the outputs in place (atomic folder swap, no leftovers)
    backbone_pretrain.main()
    assert sorted(p.name for p in tsv.parent.parent.iterdir()) == ["metrics"]
