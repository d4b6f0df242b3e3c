"""Issue 23: WeakTr's release heads (``roi_generation/WeakTr/models.py`` of WeakSAM's release)
and the paper profile's CAM network trained on every trainval image."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import yaml

from weaksam.clues.model import CluesViT
from weaksam.profiles import deep_merge, resolve_profile

ROOT = Path(__file__).resolve().parents[2]


def _tiny(heads: str) -> CluesViT:
    torch.manual_seed(0)
    return CluesViT(num_classes=3, img_size=32, patch_size=8, embed_dim=16, depth=2,
                    num_heads=2, mlp_ratio=2.0, cross_layers=[1], stem="conv", heads=heads)


def _fine_loss_grads(heads: str) -> dict[str, torch.Tensor | None]:
    model = _tiny(heads).train()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    model.losses(model(x), labels)["loss_fine"].backward()
    return {n: p.grad for n, p in model.named_parameters()}


def test_release_fine_cam_loss_trains_only_the_fusion():
    grads = _fine_loss_grads("release")
    assert grads["fusion_logits"] is not None and grads["fusion_logits"].abs().sum() > 0
    reached = [n for n, g in grads.items() if n != "fusion_logits" and g is not None
               and g.abs().sum() > 0]
    assert reached == []
    # the project's heads: the fine-CAM gradient reaches the backbone (what the option changes)
    grads = _fine_loss_grads("project")
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items()
               if n.startswith("vit.blocks."))


def test_release_token_logits_are_the_channel_mean_of_the_class_tokens():
    model = _tiny("release").eval()
    assert not hasattr(model, "token_weight")  # no learned head
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        tokens, attns, n, m = model.forward_features(x)  # before the final norm
        out = model(x, with_cross=True, cross_heads="each")
    assert torch.allclose(out["logits_tokens"], tokens[:, :3].mean(-1))
    # the fine CAM is attention-propagated cross-attention x coarse CAM (models.py "fused")
    a = sum((att * model.fusion_weights()[i].view(1, -1, 1, 1)).sum(1)
            for i, att in enumerate(attns))
    cams = a[:, :3, 3:] * torch.relu(out["cam_coarse"]).flatten(2)
    want = (a[:, 3:, 3:] @ cams.transpose(1, 2)).transpose(1, 2)
    assert torch.allclose(out["cam_fine"].flatten(2), want, atol=1e-6)
    assert torch.allclose(out["logits_fine"], want.mean(-1), atol=1e-6)
    assert out["cross"].shape == (1, 1, 2, 3, n, m)
    with pytest.raises(ValueError, match="heads must be"):
        _tiny("weaktr")


def test_paper_profile_cam_network_trains_on_every_trainval_image(tmp_path, monkeypatch):
    import pipeline.clues_train as stage
    from pipeline.common import load_params
    from weaksam.clues.train import load_model

    paper = resolve_profile("paper_voc07", ROOT / "configs")["clues_train"]
    assert paper["holdout"] == 0 and paper["heads"] == "release"
    params = deep_merge(load_params(ROOT / "params.yaml"),
                        yaml.safe_load((ROOT / "configs/tiny.yaml").read_text()))
    params["data"].update(num_trainval=7, num_test=2)
    params["clues_train"].update(epochs=1, input_size=32, embed_dim=16, depth=2, num_heads=2,
                                 cross_layers=[1], batch_size=4, holdout=paper["holdout"],
                                 heads=paper["heads"])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    import pipeline.data

    monkeypatch.setattr(sys, "argv", ["pipeline.data"])
    pipeline.data.main()
    seen = {}
    real_fit = stage.fit

    def spy(model, tr_x, tr_y, va_x, va_y, *args, **kw):
        seen.update(train=len(tr_x), val=len(va_x))
        return real_fit(model, tr_x, tr_y, va_x, va_y, *args, **kw)

    monkeypatch.setattr(stage, "fit", spy)
    monkeypatch.setattr(sys, "argv", ["pipeline.clues_train"])
    stage.main()
    n = len(yaml.safe_load(Path("data/annotations/trainval.json").read_text())["images"])
    assert n == 7 and seen == {"train": 7, "val": 0}
    model, _ = load_model("models/clues/model.pt")
    assert model.heads == "release"
