"""Forward FLOPs per image of the networks the paper profiles build (issue 20, cost model).

Every count comes from ``torch.utils.flop_counter.FlopCounterMode`` running the project's own
builders (``weaksam.clues``, ``segment_anything`` through the same registry as
``weaksam.sam.checkpoint``, ``weaksam.wsod``, ``weaksam.retrain``, ``weaksam.wsis``) on the
``meta`` device: parameters and activations have shapes but no storage and no values, so
ViT-H at 1024 px costs nothing. Convention: **2 FLOPs per multiply-add** (FlopCounterMode
counts matrix products and convolutions only; elementwise ops, softmax, interpolation,
``grid_sample`` and RoI pooling / align count 0). Units: GFLOP = 1e9 FLOPs, per image per
forward pass.

Ops without a data-independent meta kernel are kept out of the counted graph:
- RoI pooling (``roi_pool`` / ``roi_align``, 0 FLOPs either way) and NMS: the heads after them
  are run on a meta tensor of the pooled shape ``(R, Cf, s, s)`` with R the RoI count;
- the region proposal step of the R-CNNs (anchors, NMS): the RPN head convolutions are counted
  on the FPN maps, the proposals themselves are free;
- SAM's prompt encoder (boolean indexing on point labels; a few hundred FLOPs per point): the
  mask decoder runs on meta sparse / dense prompt embeddings of the shapes it would produce.

Shapes: ``hw = (H, W)`` pixels of the network input (after rescaling, before padding; padding
to the network's multiple is applied here as the stage does).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from weaksam.vision.imaging import scale_factor, scaled_size

META = torch.device("meta")
GIGA = 1e9


def count_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """FLOPs (2 per multiply-add) of ``fn(*args, **kwargs)``, gradients off."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn(*args, **kwargs)
    return int(counter.get_total_flops())


def on_meta(build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` under the meta device, every parameter and buffer moved to meta (some
    libraries create tensors with ``torch.Tensor(...)``, which ignores the device context),
    in eval mode."""
    with META:
        module = build()
    return module.to(META).eval()


def meta(*shape: int) -> torch.Tensor:
    """An empty float32 tensor of ``shape`` on the meta device."""
    return torch.empty(*shape, device=META)


def _pad(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def rescaled_hw(hw: tuple[int, int], short_side: int, max_size: int) -> tuple[int, int]:
    """Input (H, W) of an image of ``hw`` at ``short_side`` capped at ``max_size`` (the rule
    of ``weaksam.vision.imaging.scale_factor``: Fast R-CNN / detectron2 / torchvision)."""
    return scaled_size(hw[0], hw[1], scale_factor(hw[0], hw[1], short_side, max_size))


# ---- classification clues: WeakTr-style ViT (weaksam.clues.model) ---------------------------
def clues_vit_gflops(num_classes: int, hw: tuple[int, int], *, img_size: int, patch_size: int,
                     embed_dim: int, depth: int, num_heads: int, mlp_ratio: float,
                     cross_layers: Sequence[int], stem: str = "patch",
                     with_cross: bool = False, cross_heads: str = "each") -> float:
    """GFLOP of one :class:`~weaksam.clues.model.CluesViT` forward on one (H, W) input (both
    multiples of ``patch_size``): patch embedding, L blocks over C + n*m tokens, CAM head and
    the fused-attention propagation."""
    from weaksam.clues.model import CluesViT

    model = on_meta(lambda: CluesViT(
        num_classes, img_size=img_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth,
        num_heads=num_heads, mlp_ratio=mlp_ratio, cross_layers=tuple(cross_layers), stem=stem))
    return count_flops(model, meta(1, 3, *hw), with_cross=with_cross,
                       cross_heads=cross_heads) / GIGA


# ---- SAM (segment_anything registry models, weaksam.sam) ------------------------------------
def _sam(model: str, small: dict[str, Any] | None) -> nn.Module:
    if model == "small":
        from weaksam.config import from_section
        from weaksam.sam.model import SmallSamConfig, build_small_sam

        if small is None:
            raise ValueError("the small SAM needs its architecture (params sam_pretrain.model)")
        cfg = from_section(SmallSamConfig, small, "sam_pretrain.model")
        return on_meta(lambda: build_small_sam(cfg))
    from segment_anything import sam_model_registry

    return on_meta(lambda: sam_model_registry[model]())


def sam_encoder_gflops(model: str, small: dict[str, Any] | None = None) -> float:
    """GFLOP of SAM's image encoder on one image at its input size (official: 1024 x 1024;
    ``small``: the :class:`~weaksam.sam.model.SmallSamConfig` fields of the small SAM)."""
    sam = _sam(model, small)
    size = sam.image_encoder.img_size
    return count_flops(sam.image_encoder, meta(1, 3, size, size)) / GIGA


def sam_decoder_gflops(model: str, prompts: int = 64, tokens: int = 2,
                       small: dict[str, Any] | None = None) -> float:
    """GFLOP of ONE prompt through SAM's mask decoder (multimask output), measured on a
    batch of ``prompts`` prompts and divided by it. ``tokens``: sparse prompt tokens per prompt
    (one point + SAM's padding point: 2; a box: 2 corners)."""
    sam = _sam(model, small)
    dim = sam.prompt_encoder.embed_dim
    gh, gw = sam.prompt_encoder.image_embedding_size
    flops = count_flops(
        sam.mask_decoder, image_embeddings=meta(1, dim, gh, gw), image_pe=meta(1, dim, gh, gw),
        sparse_prompt_embeddings=meta(prompts, tokens, dim),
        dense_prompt_embeddings=meta(prompts, dim, gh, gw), multimask_output=True)
    return flops / prompts / GIGA


# ---- WSOD: VGG16 OICR / MIST (weaksam.wsod) -------------------------------------------------
def vgg16_trunk_gflops(hw: tuple[int, int], dilated: bool = False) -> float:
    """GFLOP of :class:`~weaksam.vision.backbones.VGG16Conv5` (conv1_1 .. conv5_3) on (H, W)."""
    from weaksam.vision.backbones import VGG16Conv5

    trunk = on_meta(lambda: VGG16Conv5(None, dilated=dilated))
    return count_flops(trunk.forward_features, meta(1, 3, *hw)) / GIGA


def wsod_head_gflops(method: str, num_classes: int, rois: int, *, roi_size: int = 7,
                     hidden: int = 4096, refine_times: int = 3, cdb: bool = False,
                     cdb_block: int = 3, cdb_net: str = "released") -> float:
    """GFLOP of the RoI head of OICR / MIST on ``rois`` RoIs of one image: fc6 / fc7 on the
    pooled (R, 512, s, s) maps, the WSDDN and refinement layers (MIST: box regression too) and,
    with ``cdb`` (MIST training), the Concrete DropBlock scorer on the pooled maps."""
    from weaksam.vision.backbones import VGG16Conv5
    from weaksam.wsod.mist import MIST
    from weaksam.wsod.oicr import OICR

    def build() -> nn.Module:
        trunk = VGG16Conv5(None, dilated=True)
        kw = dict(roi_size=roi_size, hidden=hidden, refine_times=refine_times)
        if method == "mist":
            return MIST(trunk, num_classes, cdb=cdb, cdb_block=cdb_block, cdb_net=cdb_net, **kw)
        if method == "oicr":
            return OICR(trunk, num_classes, **kw)
        raise ValueError(f"method must be oicr or mist, got {method!r}")

    model = on_meta(build)
    maps = meta(rois, model.backbone.out_channels, roi_size, roi_size)

    def run() -> None:
        if cdb:
            model.cdb.seed_prob(maps)
        model.linear_heads(model.roi_head.fc(maps))

    return count_flops(run) / GIGA


# ---- retraining: Faster R-CNN R50-FPN and the query-based detector (weaksam.retrain) --------
def frcnn_r50_fpn_gflops(num_classes: int, hw: tuple[int, int], rois: int) -> float:
    """GFLOP of :func:`~weaksam.retrain.frcnn.build_frcnn_r50_fpn` on one (H, W) image padded
    to 32: ResNet-50 + FPN, the RPN head on the 5 levels and the box head + predictor on
    ``rois`` RoIs (training: the sampled ``rois_per_image``; test: the RPN's post-NMS count)."""
    from weaksam.retrain.frcnn import build_frcnn_r50_fpn
    from weaksam.retrain.roi_drop import RoiDropConfig

    # the drop thresholds select RoIs inside the loss: they change no FLOP count
    drop = RoiDropConfig(tau_cls=0.0, tau_reg=0.0, normalize="none", rule="both",
                         smooth_l1_beta=0.0)
    model = on_meta(lambda: build_frcnn_r50_fpn(num_classes, checkpoint=None, drop=drop))
    x = meta(1, 3, _pad(hw[0], 32), _pad(hw[1], 32))
    with torch.no_grad():
        feats = list(model.backbone(x).values())
    heads = model.roi_heads
    dim = feats[0].shape[1]
    pooled = heads.box_roi_pool.output_size
    size = pooled if isinstance(pooled, int) else pooled[0]
    flops = count_flops(model.backbone, x) + count_flops(model.rpn.head, feats)
    flops += count_flops(lambda: heads.box_predictor(heads.box_head(meta(rois, dim, size, size))))
    return flops / GIGA


def query_detector_gflops(num_classes: int, hw: tuple[int, int], *, d_model: int,
                          encoder_layers: int, decoder_layers: int, num_queries: int,
                          ffn_dim: int, heads: int, n_points: int = 4,
                          extra_levels: int = 1) -> float:
    """GFLOP of :class:`~weaksam.retrain.query_detector.QueryDetector` on a ResNet-50 (C3-C5
    + ``extra_levels``) for one (H, W) image padded to 32: backbone, two-stage Deformable
    DETR encoder / decoder (deformable sampling itself counts 0) and its heads."""
    from weaksam.retrain.query_detector import (
        QueryDetector,
        QueryDetectorConfig,
        resnet50_levels,
    )

    def build() -> nn.Module:
        trunk = resnet50_levels(None)
        cfg = QueryDetectorConfig(d_model=d_model, encoder_layers=encoder_layers,
                                  decoder_layers=decoder_layers, num_queries=num_queries,
                                  ffn_dim=ffn_dim, heads=heads, n_points=n_points,
                                  extra_levels=extra_levels)
        return QueryDetector(num_classes, trunk.in_channels, trunk.strides, cfg, backbone=trunk,
                             train_backbone=True)

    model = on_meta(build)
    with META:  # the library builds its own masks and position embeddings on the fly
        return count_flops(model, [meta(3, _pad(hw[0], 32), _pad(hw[1], 32))]) / GIGA


# ---- WSIS: Mask R-CNN and Mask2Former on ResNet-50 (weaksam.wsis) ---------------------------
def mask_rcnn_gflops(num_classes: int, hw: tuple[int, int], box_rois: int,
                     mask_rois: int) -> float:
    """GFLOP of :func:`~weaksam.wsis.mask_rcnn.build_resnet50_fpn_mask_rcnn` on one (H, W)
    image padded to 32: R50-FPN, RPN head, the box head on ``box_rois`` RoIs and the mask head
    (4 convs, deconv, predictor) on ``mask_rois`` RoIs."""
    from weaksam.wsis.mask_rcnn import build_resnet50_fpn_mask_rcnn

    rcnn = on_meta(lambda: build_resnet50_fpn_mask_rcnn(num_classes, None)).rcnn
    x = meta(1, 3, _pad(hw[0], 32), _pad(hw[1], 32))
    with torch.no_grad():
        feats = list(rcnn.backbone(x).values())
    h = rcnn.roi_heads
    dim = feats[0].shape[1]
    flops = count_flops(rcnn.backbone, x) + count_flops(rcnn.rpn.head, feats)
    flops += count_flops(lambda: h.box_predictor(h.box_head(meta(box_rois, dim, 7, 7))))
    flops += count_flops(lambda: h.mask_predictor(h.mask_head(meta(mask_rois, dim, 14, 14))))
    return flops / GIGA


def mask2former_gflops(num_classes: int, hw: tuple[int, int], num_queries: int = 100) -> float:
    """GFLOP of :func:`~weaksam.wsis.mask2former.build_mask2former_resnet50` on one (H, W)
    image padded to 32: ResNet-50, the deformable pixel decoder and the masked-attention
    transformer decoder with its class and mask predictions at every layer."""
    from weaksam.wsis.mask2former import Mask2FormerModelConfig, build_mask2former_resnet50
    from weaksam.wsis.mask_rcnn import Batch

    cfg = Mask2FormerModelConfig(num_queries=num_queries)
    model = on_meta(lambda: build_mask2former_resnet50(num_classes, None, cfg))
    size = (_pad(hw[0], 32), _pad(hw[1], 32))
    batch = Batch(sizes=[size], images=meta(1, 3, *size))
    with META:
        return count_flops(model._heads, batch) / GIGA
