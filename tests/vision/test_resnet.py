"""The one ResNet-50 loader (weaksam.vision.resnet): every model gets the same trunk weights
from one state-dict file; bad files are InputErrors naming the file."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import resnet50

from weaksam.errors import InputError
from weaksam.vision.resnet import ResNetLevels, resnet50_fpn, resnet50_trunk


@pytest.fixture(scope="module")
def r50_file(tmp_path_factory):
    """A random torchvision ResNet-50 state dict (in place of the ImageNet file)."""
    torch.manual_seed(0)
    state = resnet50(weights=None).state_dict()
    path = tmp_path_factory.mktemp("r50") / "resnet50.pth"
    torch.save(state, path)
    return path, state


def _trunk_state(model: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    """``{name without prefix: tensor}`` of ``model``'s state under ``prefix``."""
    return {k[len(prefix):]: v for k, v in model.state_dict().items() if k.startswith(prefix)}


def test_every_model_gets_the_same_trunk_weights(r50_file):
    from tests.retrain.conftest import DROP
    from weaksam.retrain.frcnn import build_frcnn_r50_fpn
    from weaksam.retrain.query_detector import resnet50_levels
    from weaksam.wsis.mask2former import Mask2FormerModelConfig, build_mask2former_resnet50
    from weaksam.wsis.mask_rcnn import build_resnet50_fpn_mask_rcnn

    path, want = r50_file
    trunks = {
        "frcnn": _trunk_state(build_frcnn_r50_fpn(2, checkpoint=path, drop=DROP), "backbone.body."),
        "mask_rcnn": _trunk_state(build_resnet50_fpn_mask_rcnn(2, path), "rcnn.backbone.body."),
        "mask2former": _trunk_state(
            build_mask2former_resnet50(2, path, Mask2FormerModelConfig(num_queries=5)), "trunk."),
        "detr": _trunk_state(resnet50_levels(path), ""),
    }
    # ResNetLevels names the stem "stem.0" / "stem.1"; torchvision "conv1" / "bn1"
    rename = {"stem.0.": "conv1.", "stem.1.": "bn1."}
    for name, got in trunks.items():
        got = {next((v + k[len(s):] for s, v in rename.items() if k.startswith(s)), k): t
               for k, t in got.items()}
        compared = [k for k in got if k in want]
        assert len(compared) >= 265, name  # every conv and BatchNorm weight / statistic
        for k in compared:
            assert torch.equal(got[k], want[k]), (name, k)


def test_bad_files_name_the_file(r50_file, tmp_path):
    path, want = r50_file
    with pytest.raises(InputError, match="missing.pth: ResNet-50 checkpoint not found"):
        resnet50_trunk(tmp_path / "missing.pth")
    cut = tmp_path / "truncated.pth"
    cut.write_bytes(path.read_bytes()[:4096])
    with pytest.raises(InputError, match="truncated.pth: cannot read ResNet-50 checkpoint"):
        resnet50_trunk(cut)
    r18 = tmp_path / "resnet18.pth"
    from torchvision.models import resnet18

    torch.save(resnet18(weights=None).state_dict(), r18)
    with pytest.raises(InputError, match="resnet18.pth: not a torchvision resnet50 state dict"):
        resnet50_trunk(r18, frozen_bn=False)
    shape = tmp_path / "shape.pth"
    torch.save({**want, "fc.weight": torch.zeros(10, 2048), "fc.bias": torch.zeros(10)}, shape)
    with pytest.raises(InputError, match="shape.pth: not a torchvision resnet50 state dict"):
        resnet50_trunk(shape)
    wrapped = tmp_path / "wrapped.pth"
    torch.save([1, 2], wrapped)
    with pytest.raises(InputError, match="wrapped.pth: not a torchvision resnet50 state dict"):
        resnet50_trunk(wrapped)


def test_levels_and_fpn_shapes_and_freezing():
    torch.manual_seed(0)
    trunk = resnet50_trunk(None, frozen_bn=False)
    levels = ResNetLevels(trunk, stages=(3, 4, 5), frozen_stages=2).train()
    assert levels.in_channels == (512, 1024, 2048) and levels.strides == (8, 16, 32)
    out = levels(torch.randn(1, 3, 64, 96))
    assert [tuple(m.shape[1:]) for m in out] == [(512, 8, 12), (1024, 4, 6), (2048, 2, 3)]
    assert not any(p.requires_grad for p in [*levels.stem.parameters(),
                                             *levels.layer1.parameters()])
    assert all(p.requires_grad for p in levels.layer2.parameters())
    assert not any(m.training for m in levels.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert not hasattr(levels, "fc")
    with pytest.raises(ValueError, match="suffix of 2..5"):
        ResNetLevels(trunk, stages=(2, 4))
    fpn = resnet50_fpn(resnet50_trunk(None), trainable_layers=3)
    assert fpn.out_channels == 256
    assert list(fpn(torch.randn(1, 3, 64, 64))) == ["0", "1", "2", "3", "pool"]


@pytest.mark.parametrize("trainable_layers", range(6))
@pytest.mark.parametrize("frozen_bn", [True, False])
def test_fpn_matches_torchvision_resnet_fpn_backbone(trainable_layers, frozen_bn):
    """Same seed -> the same parameters (names, order, values, frozen set), module types and
    outputs as torchvision's documented ``resnet_fpn_backbone``."""
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.ops.misc import FrozenBatchNorm2d

    norm = FrozenBatchNorm2d if frozen_bn else torch.nn.BatchNorm2d
    torch.manual_seed(0)
    want = resnet_fpn_backbone(backbone_name="resnet50", weights=None, norm_layer=norm,
                               trainable_layers=trainable_layers)
    torch.manual_seed(0)
    got = resnet50_fpn(resnet50_trunk(None, frozen_bn=frozen_bn), trainable_layers)
    assert [(n, type(m)) for n, m in got.named_modules()] == \
        [(n, type(m)) for n, m in want.named_modules()]
    g, w = dict(got.named_parameters()), dict(want.named_parameters())
    assert list(g) == list(w)
    assert {n for n, p in g.items() if p.requires_grad} == \
        {n for n, p in w.items() if p.requires_grad}
    assert all(torch.equal(g[n], w[n]) for n in g)
    # the rule itself: stem frozen below 5, layer k trainable iff k > 5 - trainable_layers
    for n, p in g.items():
        if n.startswith("body.layer"):
            assert p.requires_grad == (int(n[len("body.layer")]) > 4 - trainable_layers), n
        elif n.startswith(("body.conv1", "body.bn1")):
            assert p.requires_grad == (trainable_layers == 5), n
        else:
            assert n.startswith("fpn.") and p.requires_grad, n
    x = torch.randn(1, 3, 64, 64)
    got.eval(), want.eval()
    assert all(torch.equal(a, b) for a, b in zip(got(x).values(), want(x).values(), strict=True))


def test_fpn_rejects_out_of_range_trainable_layers():
    with pytest.raises(ValueError, match="0..5"):
        resnet50_fpn(resnet50_trunk(None), trainable_layers=6)
