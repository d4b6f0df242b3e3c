"""WeakTr-style CAM network on timm's VisionTransformer (paper Sec. 3.1, "Classification Clues").

Shorthand: B images, C classes (= C class tokens, as MCTformer / WeakTr), D embedding width,
L transformer layers (K in the paper), Hd heads per layer, n x m patch grid (N x N in the
paper), T = C + n*m tokens. Token order in every layer: ``[cls_1 .. cls_C, patch_1 .. patch_nm]``
(patches in raster order, row-major).

Outputs of :meth:`CluesViT.forward` (a dict):
    logits_coarse: (B, C)  global average pooling of the coarse CAM
    logits_fine:   (B, C)  global average pooling of the attention-propagated raw coarse CAM
    logits_tokens: (B, C)  class-token head: <w_c, norm(cls_c)> + b_c (release: mean_D cls_c)
    cam_coarse:    (B, C, n, m)  convolutional CAM head on the last layer's patch tokens
    cam_fine:      (B, C, n, m)  ReLU(coarse CAM) propagated by the fused patch-to-patch
                   attention (non-negative)
    cross:         (B, Ls, Hc, C, n, m)  class-to-patch attention of the selected layers
                   ``cross_layers`` (Ls of them), per head (Hc = Hd, the paper's
                   CA in R^{K x H x N x N x C}, Sec. 3.1) or heads averaged (Hc = 1)
                   (only when ``with_cross``)

Fine CAM (WeakTr's adaptive attention fusion, static variant): one learnable logit per
(layer, head); ``w = softmax(logits)`` over all L*Hd maps; the fused patch-to-patch affinity
``A = sum_lh w_lh A_lh[patch, patch]`` is row-normalised (each row sums to 1) and propagates
the coarse CAM: ``cam_fine[c, i] = sum_j A[i, j] relu(cam_coarse[c, j])``; the fine logits pool
the same propagation of the raw (signed) CAM so that BCE can push absent classes down.
WeakTr derives the weights from the attention maps through a small FFN; a per-map learned
weight is the input-independent form of the same fusion (documented deviation).

``heads="release"`` (WeakSAM's release, ``roi_generation/WeakTr/models.py``): the heads read
the last block's tokens before the final norm; class-token logits are the mean over the D
channels of each class token (no learned head); the fine CAM is built from *detached*
attention and a *detached* ReLU'd coarse CAM: with ``A`` the fused attention (not
row-normalised), ``cams = A[cls, patch] * relu(cam_coarse)`` and
``cam_fine[c, i] = sum_j A[i, j] cams[c, j]``, pooled for the fine logits, so the fine-CAM loss
trains the fusion weights only.

Attention weights are read from timm blocks through :class:`RecordingAttention`, a subclass of
``timm.layers.Attention`` that computes softmax(q k^T / sqrt(d)) explicitly and keeps it.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed, resample_abs_pos_embed
from timm.layers.attention import Attention
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from weaksam.errors import InputError
from weaksam.utils.checkpoint import read_checkpoint
from weaksam.utils.stems import conv_stem


class RecordingAttention(Attention):
    """timm ``Attention`` that stores its attention weights ``(B, Hd, T, T)`` in ``last_attn``.

    Same parameters and output as the parent (so DeiT checkpoints load unchanged); the product
    is computed explicitly instead of through the fused kernel so the weights exist.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.last_attn: torch.Tensor | None = None

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False
    ) -> torch.Tensor:
        if attn_mask is not None or is_causal or getattr(self, "gate", None) is not None:
            raise ValueError("RecordingAttention supports plain self-attention only")
        b, t, _ = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        attn = attn.softmax(dim=-1)
        self.last_attn = attn
        x = self.attn_drop(attn) @ v
        x = x.transpose(1, 2).reshape(b, t, -1)
        x = self.norm(x)
        x = self.proj(x)
        return self.proj_drop(x)


class ConvPatchEmbed(PatchEmbed):
    """timm ``PatchEmbed`` whose linear patch projection is replaced by a convolutional stem:
    log2(patch_size) 3x3 stride-2 convolutions (GELU between) widening to ``embed_dim``
    ("early convolutions", Xiao et al. 2021), which makes a ViT trainable from scratch on a few
    hundred images. Same output format and grid as ``PatchEmbed``; patch_size a power of 2."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        p = self.patch_size[0]
        if self.patch_size[0] != self.patch_size[1]:
            raise ValueError(f"conv stem needs a square patch, got {self.patch_size}")
        self.proj = conv_stem(self.proj.in_channels, self.proj.out_channels, p)


class CluesViT(nn.Module):
    """ViT with C class tokens, a convolutional CAM head and adaptive attention fusion.

    The default profile builds a tiny ViT trained from scratch (e.g. ``img_size=96,
    patch_size=8, embed_dim=96, depth=4, num_heads=4, stem="conv"``); the paper profile is
    DeiT-S (``224, 16, 384, 12, 6, stem="patch"``) initialised with
    :meth:`load_deit_checkpoint` (which needs the linear ``patch`` stem).
    Inputs: ``(B, 3, H, W)`` float images normalised with ``mean``/``std`` (ImageNet), any
    H, W divisible by ``patch_size`` (positional embeddings are resampled).
    """

    def __init__(
        self,
        num_classes: int,
        img_size: int = 224,
        patch_size: int = 16,
        embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        cross_layers: tuple[int, ...] | list[int] = (9, 10, 11),
        drop_path_rate: float = 0.0,
        stem: str = "patch",
        heads: str = "project",
    ) -> None:
        super().__init__()
        if heads not in ("project", "release"):
            raise ValueError(f"heads must be 'project' or 'release', got {heads!r}")
        self.heads = heads
        if num_classes < 1:
            raise ValueError("num_classes must be >= 1")
        bad = [i for i in cross_layers if not -depth <= int(i) < depth]
        if bad:
            raise ValueError(f"cross_layers {bad} out of range for depth {depth}")
        self.num_classes = num_classes
        self.patch_size = patch_size
        self.depth = depth
        self.num_heads = num_heads
        self.cross_layers = tuple(int(i) % depth for i in cross_layers)
        if stem not in ("patch", "conv"):
            raise ValueError(f"stem must be 'patch' or 'conv', got {stem!r}")
        self.vit = VisionTransformer(
            img_size=img_size,
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            num_classes=0,
            global_pool="",
            class_token=False,
            dynamic_img_size=True,
            drop_path_rate=drop_path_rate,
            attn_layer=RecordingAttention,
            embed_layer=ConvPatchEmbed if stem == "conv" else PatchEmbed,
        )
        self.cls_tokens = nn.Parameter(torch.zeros(1, num_classes, embed_dim))
        self.cls_pos = nn.Parameter(torch.zeros(1, num_classes, embed_dim))
        nn.init.trunc_normal_(self.cls_tokens, std=0.02)
        nn.init.trunc_normal_(self.cls_pos, std=0.02)
        # convolutional CAM head on the last layer's patch tokens (WeakTr / MCTformer-V2)
        self.cam_head = nn.Conv2d(embed_dim, num_classes, kernel_size=3, padding=1)
        # class-token head: one weight vector per class token (release: none, channel mean)
        if heads == "project":
            self.token_weight = nn.Parameter(torch.zeros(num_classes, embed_dim))
            self.token_bias = nn.Parameter(torch.zeros(num_classes))
            nn.init.trunc_normal_(self.token_weight, std=0.02)
        # adaptive attention fusion: one logit per (layer, head), softmax-normalised
        self.fusion_logits = nn.Parameter(torch.zeros(depth, num_heads))

    # -- features -------------------------------------------------------------------------
    def forward_features(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor], int, int]:
        """Tokens of the last layer ``(B, T, D)`` after the final norm (``heads="release"``:
        before it, as WeakTr's ``forward_features``), per-layer attention ``[(B, Hd, T, T)] * L``
        and the patch grid ``(n, m)``."""
        v = self.vit
        x = v.patch_embed(x)  # (B, n, m, D) with dynamic_img_size
        n, m = x.shape[1], x.shape[2]
        x = v._pos_embed(x)  # (B, n*m, D), patch positions resampled to (n, m)
        cls = (self.cls_tokens + self.cls_pos).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        x = v.norm_pre(x)
        attns = []
        for blk in v.blocks:
            x = blk(x)
            attns.append(blk.attn.last_attn)
            blk.attn.last_attn = None
        return (x if self.heads == "release" else v.norm(x)), attns, n, m

    # -- heads ----------------------------------------------------------------------------
    def fusion_weights(self) -> torch.Tensor:
        """(L, Hd) non-negative weights summing to 1 (softmax of the fusion logits)."""
        return self.fusion_logits.flatten().softmax(0).view_as(self.fusion_logits)

    def forward(
        self, x: torch.Tensor, with_cross: bool = False, cross_heads: str = "mean"
    ) -> dict[str, torch.Tensor]:
        """See the module docstring for the returned dict. ``cross_heads``: ``"each"`` keeps
        every head's map (paper's CA tensor; the authors' release prompts from each head of
        layers 8-9), ``"mean"`` averages the heads of a layer."""
        if cross_heads not in ("mean", "each"):
            raise ValueError(f"cross_heads must be 'mean' or 'each', got {cross_heads!r}")
        c = self.num_classes
        tokens, attns, n, m = self.forward_features(x)
        b = tokens.shape[0]
        cls_out, patches = tokens[:, :c], tokens[:, c:]
        feat = patches.transpose(1, 2).reshape(b, -1, n, m)
        cam_coarse = self.cam_head(feat)  # (B, C, n, m)

        if self.heads == "release":
            return self._release_heads(cls_out, cam_coarse, attns, n, m, with_cross, cross_heads)
        w = self.fusion_weights()  # (L, Hd)
        fused = sum(
            (a * w[li].view(1, -1, 1, 1)).sum(1) for li, a in enumerate(attns)
        )[:, c:, c:]  # (B, nm, nm) fused patch-to-patch affinity
        fused = fused / fused.sum(-1, keepdim=True).clamp_min(1e-12)
        coarse = cam_coarse.flatten(2)  # (B, C, nm)
        # training signal: the propagated raw CAM, pooled (can be negative for absent classes)
        logits_fine = torch.einsum("bij,bcj->bci", fused, coarse).mean(-1)
        # the map: the propagated ReLU'd CAM (MCTformer / WeakTr affinity refinement)
        cam_fine = torch.einsum("bij,bcj->bci", fused, F.relu(coarse)).view(b, c, n, m)

        out = {
            "logits_coarse": cam_coarse.mean(dim=(2, 3)),
            "logits_fine": logits_fine,
            "logits_tokens": (cls_out * self.token_weight).sum(-1) + self.token_bias,
            "cam_coarse": cam_coarse,
            "cam_fine": cam_fine,
        }
        if with_cross:
            out["cross"] = self._cross(attns, n, m, cross_heads)
        return out

    def _cross(self, attns: list[torch.Tensor], n: int, m: int,
               cross_heads: str) -> torch.Tensor:
        """(B, Ls, Hc, C, n, m) class-to-patch attention of the ``cross_layers``."""
        c = self.num_classes
        sel = [attns[li][:, :, :c, c:] for li in self.cross_layers]  # (B, Hd, C, nm) each
        if cross_heads == "mean":
            sel = [a.mean(1, keepdim=True) for a in sel]
        b = sel[0].shape[0]
        return torch.stack(sel, dim=1).reshape(b, len(self.cross_layers), -1, c, n, m)

    def _release_heads(self, cls_out: torch.Tensor, cam_coarse: torch.Tensor,
                       attns: list[torch.Tensor], n: int, m: int, with_cross: bool,
                       cross_heads: str) -> dict[str, torch.Tensor]:
        """WeakTr release heads (module docstring): only the fusion weights receive the
        fine-CAM gradient (attention and coarse CAM detached, ``models.py`` ``forward``)."""
        c, b = self.num_classes, cam_coarse.shape[0]
        w = self.fusion_weights()  # (L, Hd)
        fused = sum((a.detach() * w[li].view(1, -1, 1, 1)).sum(1)
                    for li, a in enumerate(attns))  # (B, T, T)
        coarse = F.relu(cam_coarse.detach()).flatten(2)  # (B, C, nm)
        cams = fused[:, :c, c:] * coarse  # cross attention x coarse CAM ("fused" type)
        cam_fine = torch.einsum("bij,bcj->bci", fused[:, c:, c:], cams)  # (B, C, nm)
        out = {
            "logits_coarse": cam_coarse.mean(dim=(2, 3)),
            "logits_fine": cam_fine.mean(-1),
            "logits_tokens": cls_out.mean(-1),  # x_cls.mean(-1): no learned head
            "cam_coarse": cam_coarse,
            "cam_fine": cam_fine.view(b, c, n, m),
        }
        if with_cross:
            out["cross"] = self._cross(attns, n, m, cross_heads)
        return out

    @staticmethod
    def class_scores(out: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, C) class probabilities: sigmoid of the mean of the three heads' logits."""
        z = (out["logits_coarse"] + out["logits_fine"] + out["logits_tokens"]) / 3.0
        return torch.sigmoid(z)

    def losses(self, out: dict[str, torch.Tensor], labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Multi-label BCE of each head, ``labels (B, C)`` multi-hot.

        Per-element BCE ``(B, C)`` is averaged over all B*C entries (each class of each image
        is one binary decision); the total is the unweighted sum of the three heads.
        """
        out_l = {}
        for name in ("coarse", "fine", "tokens"):
            logits = out[f"logits_{name}"]
            per = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
            out_l[f"loss_{name}"] = per.mean()
        out_l["loss"] = out_l["loss_coarse"] + out_l["loss_fine"] + out_l["loss_tokens"]
        return out_l

    # -- paper profile ----------------------------------------------------------------------
    def load_deit_checkpoint(self, path: str | Path) -> None:
        """Initialise the backbone from a DeiT checkpoint (``{'model': state_dict}`` or a bare
        state dict, e.g. deit_small_patch16_224). ``cls_token`` initialises every class token
        (MCTformer); positional embeddings are resampled to this grid; heads stay random."""
        path = Path(path)
        sd = read_checkpoint(path, "DeiT checkpoint")
        sd = sd.get("model", sd) if isinstance(sd, dict) else sd
        if not isinstance(sd, dict) or "pos_embed" not in sd:
            raise InputError(path, "not a ViT/DeiT state dict (no pos_embed)")
        sd = {k: v for k, v in sd.items() if not k.startswith(("head", "fc_norm"))}
        pos = sd.pop("pos_embed")  # (1, prefix + N*N, D), DeiT: prefix = the class token
        cls = sd.pop("cls_token", None)  # (1, 1, D)
        prefix = 0 if cls is None else 1
        old = int(round((pos.shape[1] - prefix) ** 0.5))
        sd["pos_embed"] = resample_abs_pos_embed(
            pos[:, prefix:], new_size=list(self.vit.patch_embed.grid_size),
            old_size=[old, old], num_prefix_tokens=0,
        )
        missing, unexpected = self.vit.load_state_dict(sd, strict=False)
        if unexpected or missing:
            raise InputError(path, f"keys do not match: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}")
        with torch.no_grad():
            if cls is not None:
                self.cls_tokens.copy_(cls.expand_as(self.cls_tokens))
                self.cls_pos.copy_(pos[:, :1].expand_as(self.cls_pos))
