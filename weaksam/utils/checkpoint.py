"""Reading torch checkpoints with errors that name the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from weaksam.errors import InputError


def read_checkpoint(path: str | Path, what: str = "checkpoint", weights_only: bool = True) -> Any:
    """``torch.load`` of ``path`` on the CPU; a missing or unreadable file raises
    :class:`InputError` naming it (``what`` says which kind of file, e.g. "SAM checkpoint").
    Weights are never downloaded: the file must exist locally."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"{what} not found (weights are never downloaded)")
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file
        raise InputError(path, f"cannot read {what} ({e})") from e
