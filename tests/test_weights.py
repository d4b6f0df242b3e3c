"""weaksam.weights: random stand-ins in the official formats load with the project's own loaders
and pass the checks; truncated, mismatched and foreign files give one clear message naming the
file (SAM as ViT-B here: ViT-H only through its meta-device expected state)."""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path

import pytest
import torch
import yaml
from torchvision.models import resnet18

from weaksam import weights as W
from weaksam.errors import InputError

ARCH = {"sam": {"model": "vit_b"}, "deit": {}, "vgg16": {}, "resnet50": {}}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("weights")
    return {k: W.write_random(k, d / W.official_name(k, **a), 0, **a) for k, a in ARCH.items()}


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.mark.parametrize("kind", list(ARCH))
def test_random_file_passes_its_check(files, kind):
    assert W.check_file(kind, files[kind], **ARCH[kind]) == []


def test_random_files_load_with_the_stage_loaders(files):
    from weaksam.clues.model import CluesViT
    from weaksam.retrain.query_detector import resnet50_levels
    from weaksam.sam.checkpoint import load_sam
    from weaksam.vision.backbones import VGG16Conv5, load_vgg16_fc
    from weaksam.wsis.mask_rcnn import build_resnet50_fpn_mask_rcnn

    sam = load_sam("vit_b", files["sam"])
    want = torch.load(files["sam"], map_location="cpu", weights_only=True)
    assert torch.equal(sam.image_encoder.pos_embed, want["image_encoder.pos_embed"])
    net = CluesViT(num_classes=20, img_size=224, cross_layers=(8, 9))
    net.load_deit_checkpoint(files["deit"])
    deit = torch.load(files["deit"], map_location="cpu", weights_only=True)
    assert set(deit) == {"model"}
    assert torch.equal(net.vit.blocks[0].attn.qkv.weight, deit["model"]["blocks.0.attn.qkv.weight"])
    VGG16Conv5(files["vgg16"], dilated=True)
    fc = torch.nn.Sequential(torch.nn.utils.skip_init(torch.nn.Linear, 512 * 49, 4096),
                             torch.nn.utils.skip_init(torch.nn.Linear, 4096, 4096))
    load_vgg16_fc(fc, files["vgg16"])
    vgg = torch.load(files["vgg16"], map_location="cpu", weights_only=True, mmap=True)
    assert torch.equal(fc[1].bias, vgg["classifier.3.bias"])
    resnet50_levels(files["resnet50"])
    build_resnet50_fpn_mask_rcnn(20, files["resnet50"])


def test_write_is_deterministic_and_atomic(tmp_path):
    a = W.write_random("resnet50", tmp_path / "a.pth", seed=3)
    b = W.write_random("resnet50", tmp_path / "sub" / "b.pth", seed=3)
    c = W.write_random("resnet50", tmp_path / "c.pth", seed=4)
    assert _sha(a) == _sha(b) != _sha(c)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pth", "c.pth", "sub"]
    r = torch.get_rng_state()
    W.write_random("resnet50", a, seed=5)
    assert torch.equal(r, torch.get_rng_state())  # the caller's RNG is untouched


def test_vit_h_expected_state_is_built_on_meta(monkeypatch):
    built: list[set[str]] = []
    build = W._build

    def spy(kind, arch):
        net = build(kind, arch)
        cpu = sum(t.nbytes for t in (*net.parameters(), *net.buffers()) if t.device.type != "meta")
        built.append(({p.device.type for p in net.parameters()}, cpu))
        return net

    monkeypatch.setattr(W, "_build", spy)
    state = W.expected_state("sam", model="vit_h")
    # no weight allocated or initialised (2.6 GB on the CPU); SAM's pixel mean / std buffers
    # are made by torch.Tensor(list), which ignores the device context: 24 bytes
    ((devices, cpu_bytes),) = built
    assert devices == {"meta"} and cpu_bytes < 1024
    assert sum(s.numel() for s in state.values()) == 641_090_864
    assert state["image_encoder.pos_embed"] == torch.Size([1, 64, 64, 1280])
    assert len(state) == 594
    assert W.official_name("sam", model="vit_h") == "sam_vit_h_4b8939.pth"


def test_truncated_file_is_one_clear_message(files, tmp_path):
    cut = tmp_path / "sam_vit_b_01ec64.pth"
    data = files["sam"].read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    out = W.check_file("sam", cut, model="vit_b")
    assert len(out) == 1
    assert out[0].startswith(f"{cut}: cannot read SAM vit_b checkpoint: truncated or corrupt")
    (tmp_path / "empty.pth").write_bytes(b"")
    assert "truncated or corrupt (0 bytes" in W.check_file("vgg16", tmp_path / "empty.pth")[0]
    assert W.check_file("vgg16", tmp_path / "none.pth") == [
        f"{tmp_path / 'none.pth'}: torchvision VGG16 state dict not found "
        "(weights are never downloaded)"]


def test_vit_b_checked_as_vit_h_lists_the_shape_mismatch(files):
    out = W.check_file("sam", files["sam"], model="vit_h")
    assert all(m.startswith(f"{files['sam']}: ") for m in out)
    shapes = next(m for m in out if "shape mismatch" in m)
    assert ("image_encoder.pos_embed is (1, 64, 64, 768) in the file, (1, 64, 64, 1280) in "
            "SAM vit_h") in shapes
    assert any("missing key(s) SAM vit_h needs: image_encoder.blocks.12." in m for m in out)
    assert out[-1].endswith("the file is a SAM vit_b checkpoint: set sam.model: vit_b "
                            "(or use sam_vit_h_4b8939.pth)")


def test_resnet18_checked_as_resnet50(tmp_path):
    p = tmp_path / "resnet50.pth"
    torch.save(resnet18().state_dict(), p)
    out = W.check_file("resnet50", p)
    assert any("missing key(s) torchvision resnet50 needs: layer1.0.conv3.weight" in m
               for m in out)
    assert any("layer1.0.conv1.weight is (64, 64, 3, 3) in the file, (64, 64, 1, 1) in "
               "torchvision resnet50" in m for m in out)


def test_resnet50_optional_and_unexpected_keys(files, tmp_path):
    sd = torch.load(files["resnet50"], map_location="cpu", weights_only=True)
    lean = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    torch.save(lean, tmp_path / "lean.pth", _use_new_zipfile_serialization=False)  # legacy
    assert W.check_file("resnet50", tmp_path / "lean.pth") == []
    torch.save({**sd, "extra.weight": torch.zeros(1)}, tmp_path / "extra.pth")
    out = W.check_file("resnet50", tmp_path / "extra.pth")
    assert out == [f"{tmp_path / 'extra.pth'}: 1 unexpected key(s) torchvision resnet50 "
                   "rejects: extra.weight"]
    torch.save({"model": sd}, tmp_path / "wrapped.pth")
    out = W.check_file("resnet50", tmp_path / "wrapped.pth")
    assert out[0].endswith("1 value(s) are not tensors: model")
    assert "missing key(s) torchvision resnet50 needs: conv1.weight" in out[1]


def test_deit_as_the_loader_reads_it(files, tmp_path):
    sd = torch.load(files["deit"], map_location="cpu", weights_only=True)["model"]
    # bare state dict, other grid (384 px: 24 x 24), no head: the loader takes all of these
    bare = {k: v for k, v in sd.items() if not k.startswith("head")}
    bare["pos_embed"] = torch.zeros(1, 1 + 24 * 24, 384)
    torch.save(bare, tmp_path / "bare.pth")
    assert W.check_file("deit", tmp_path / "bare.pth") == []
    bare["pos_embed"] = torch.zeros(1, 1 + 24 * 24 + 3, 384)
    del bare["blocks.11.mlp.fc2.bias"]
    torch.save(bare, tmp_path / "bad.pth")
    out = W.check_file("deit", tmp_path / "bad.pth")
    assert "pos_embed is (1, 580, 384) in the file" in out[0]
    assert out[1].endswith("1 missing key(s) DeiT (patch 16, dim 384, depth 12, heads 6) "
                           "needs: blocks.11.mlp.fc2.bias")
    deit_b = W.check_file("deit", files["deit"], embed_dim=768, num_heads=12)
    assert any("patch_embed.proj.weight is (384, 3, 16, 16) in the file, (768, 3, 16, 16)" in m
               for m in deit_b)
    assert W.check_file("deit", files["deit"], stem="conv") == [
        f"{files['deit']}: clues_train.stem is 'conv': a DeiT checkpoint needs the linear "
        "'patch' stem"]


def test_foreign_objects_and_non_state_dicts(tmp_path):
    torch.save({"model": {}, "args": Path("x")}, tmp_path / "args.pth")
    out = W.check_file("deit", tmp_path / "args.pth")
    assert len(out) == 1 and "holds objects other than tensors" in out[0]
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    assert W.check_file("vgg16", tmp_path / "list.pth") == [
        f"{tmp_path / 'list.pth'}: torchvision VGG16 state dict: the file holds a list, "
        "not a state dict"]
    torch.save({"format": "weaksam-small-sam", "config": {}, "state_dict": {}},
               tmp_path / "small.pt")
    assert "a small-SAM checkpoint" in W.check_file("sam", tmp_path / "small.pt")[0]
    with pytest.raises(ValueError, match="unknown architecture argument"):
        W.check_file("vgg16", tmp_path / "list.pth", model="vit_b")


PAPER = {
    "sam": {"model": "vit_b", "checkpoint": "m/sam.pth"},
    "clues_train": {"init_checkpoint": "m/deit.pth", "patch_size": 16, "embed_dim": 384,
                    "depth": 12, "num_heads": 6, "mlp_ratio": 4.0, "stem": "patch",
                    "input_size": 224},
    "wsod": {"backbone": "vgg16", "vgg16_checkpoint": "m/vgg16.pth"},
    "retrain": {"frcnn": {"model": {"backbone": "resnet50_fpn", "resnet50_checkpoint": "m/r.pth"}},
                "detr": {"model": {"backbone": "small_cnn_frozen", "resnet50_checkpoint": None}}},
    "wsis": {"backbone": "resnet50", "resnet50_checkpoint": None},
}


def test_weight_uses_and_require_weights(files, tmp_path):
    uses = {u.key: u for u in W.weight_uses(PAPER)}
    assert set(uses) == {"sam.checkpoint", "clues_train.init_checkpoint",
                         "wsod.vgg16_checkpoint", "retrain.frcnn.model.resnet50_checkpoint",
                         "wsis.resnet50_checkpoint"}
    assert uses["sam.checkpoint"].arch == {"model": "vit_b"}
    assert uses["wsis.resnet50_checkpoint"].path is None
    assert W.weight_uses({"sam": {"model": "small", "checkpoint": "x"},
                          "clues_train": {"init_checkpoint": None},
                          "wsod": {"backbone": "small_cnn"}}) == []
    (tmp_path / "m").mkdir()
    for key, name in (("sam", "sam.pth"), ("deit", "deit.pth"), ("vgg16", "vgg16.pth")):
        (tmp_path / "m" / name).symlink_to(files[key])
    W.require_weights(PAPER, "sam.checkpoint", "clues_train.init_checkpoint", root=tmp_path)
    with pytest.raises(InputError) as e:  # m/r.pth is missing
        W.require_weights(PAPER, root=tmp_path)
    assert e.value.path == "m/r.pth"
    assert e.value.problem == ("params retrain.frcnn.model.resnet50_checkpoint: torchvision "
                               "ResNet-50 state dict not found (weights are never downloaded)")
    vit_h = {**PAPER, "sam": {"model": "vit_h", "checkpoint": "m/sam.pth"}}
    with pytest.raises(InputError, match="m/sam.pth: params sam.checkpoint: .*shape mismatch"):
        W.require_weights(vit_h, "sam.checkpoint", root=tmp_path)


STAGES = [  # (script, its arguments, the param key of the weight file it loads)
    ("clues_train", [], "clues_train.init_checkpoint"),
    ("proposals", [], "sam.checkpoint"),
    ("wsod", ["--method", "mist", "--source", "weaksam"], "wsod.vgg16_checkpoint"),
    ("retrain_prelim", ["--detector", "frcnn", "--pgt", "mist_weaksam_adaptive"],
     "retrain.frcnn.model.resnet50_checkpoint"),
]


@pytest.mark.parametrize(("stage", "argv", "key"), STAGES, ids=[s[0] for s in STAGES])
def test_stage_scripts_check_weights_before_any_work(tmp_path, monkeypatch, stage, argv, key):
    # a truncated file where the params point, in a workspace with no data: the stage must
    # name the weight file, not fail later on the data (clues_train, before the check: a raw
    # size-mismatch RuntimeError after reading every image; proposals: a broken worker pool)
    script = importlib.import_module(f"pipeline.{stage}")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.pth").write_bytes(b"PK\x03\x04 cut")
    params = {**PAPER, "seed": 0, "runtime": {"threads": 0, "device": "cpu", "workers": 1}}
    params = {k: (dict(v) if isinstance(v, dict) else v) for k, v in params.items()}
    params["sam"] = {"model": "vit_b", "checkpoint": "m/w.pth", "device": None}
    params["clues_train"] = {**PAPER["clues_train"], "init_checkpoint": "m/w.pth"}
    params["wsod"] = {"backbone": "vgg16", "vgg16_checkpoint": "m/w.pth"}
    params["retrain"] = {"frcnn": {"model": {"backbone": "resnet50_fpn",
                                            "resnet50_checkpoint": "m/w.pth"}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", [stage, *argv])
    with pytest.raises(InputError) as e:
        script.main()
    assert e.value.path == "m/w.pth"
    assert e.value.problem.startswith(f"params {key}: cannot read ")
    assert "truncated or corrupt" in e.value.problem
