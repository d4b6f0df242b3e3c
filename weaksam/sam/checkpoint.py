"""Building SAM and loading its weights: the official checkpoints (paper profile: ViT-H,
``sam_vit_h_4b8939.pth``; also ViT-L, ViT-B) through ``segment_anything.sam_model_registry``, and
the small SAM of the default profile from its own checkpoint (which stores its architecture).

Small SAM checkpoint: ``torch.save({"format": "weaksam-small-sam", "config": {...},
"state_dict": {...}})``. Official checkpoints are bare state dicts of the registry's layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from segment_anything import sam_model_registry
from segment_anything.modeling import Sam

from weaksam.errors import InputError
from weaksam.sam.model import SmallSamConfig, build_small_sam
from weaksam.utils.atomic import atomic_path
from weaksam.utils.checkpoint import read_checkpoint

OFFICIAL_MODELS = ("vit_h", "vit_l", "vit_b")
SMALL_FORMAT = "weaksam-small-sam"


def save_small_sam(path: str | Path, sam: Sam, cfg: SmallSamConfig,
                   extra: dict[str, Any] | None = None) -> None:
    """Write the small SAM's architecture and weights to ``path`` atomically."""
    state = {k: v.cpu() for k, v in sam.state_dict().items()}  # same file from any device
    obj = {"format": SMALL_FORMAT, "config": cfg.to_dict(), "state_dict": state}
    if extra:
        obj["extra"] = extra
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _read(path: Path) -> Any:
    return read_checkpoint(path, "SAM checkpoint")


def load_sam(model: str, checkpoint: str | Path, device: str | torch.device = "cpu") -> Sam:
    """Build SAM ``model`` (``vit_h | vit_l | vit_b | small``) with the weights at ``checkpoint``.

    Official models: the registry's builder (random init) then ``load_state_dict(strict=True)``
    of the file's state dict (the same call ``sam_model_registry[model](checkpoint)`` makes,
    with a clear error naming the file on a mismatch). Returned in eval mode on ``device``.
    """
    path = Path(checkpoint)
    obj = _read(path)
    if model == "small":
        if not isinstance(obj, dict) or obj.get("format") != SMALL_FORMAT:
            raise InputError(path, f"not a small-SAM checkpoint (format {SMALL_FORMAT!r})")
        try:
            cfg = SmallSamConfig(**obj["config"])
        except TypeError as e:  # a missing or unknown architecture field
            raise InputError(path, f"small-SAM config does not fit SmallSamConfig ({e})") from e
        sam = build_small_sam(cfg)
        state = obj["state_dict"]
    elif model in OFFICIAL_MODELS:
        if isinstance(obj, dict) and "state_dict" in obj and "format" in obj:
            raise InputError(path, f"a small-SAM checkpoint, but sam.model is {model!r}")
        sam = sam_model_registry[model]()
        state = obj
    else:
        raise ValueError(f"unknown SAM model {model!r}; use one of {OFFICIAL_MODELS + ('small',)}")
    try:
        sam.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError) as e:
        raise InputError(path, f"state dict does not fit SAM {model!r} ({e})") from e
    return sam.to(device).eval()
