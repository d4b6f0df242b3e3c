"""Training checkpoints: one fingerprint rule, atomic writes, resume only on a matching
fingerprint.

A checkpoint is a dict written by ``torch.save`` (its keys are each trainer's: at least
``model``, ``optimizer``, ``epoch`` and ``fingerprint``). The fingerprint is the sha256 of the
run's settings and inputs and of the project's code (:func:`source_digest`), so a run resumes
only what the same settings, inputs and code produced: after an edit of any module, ``dvc
repro`` reruns the stage and its old checkpoint, finished or not, is ignored (training starts
fresh), never continued or reused by the new code. Any other checkpoint is ignored the same
way. A file that cannot be read (truncated, not a checkpoint) is an
:class:`~weaksam.errors.InputError` naming it.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from weaksam.errors import InputError
from weaksam.utils.atomic import atomic_path
from weaksam.utils.checkpoint import read_checkpoint

SOURCE_PACKAGES = ("weaksam", "pipeline")  # the project's code, beside each other


@functools.cache
def source_digest(root: Path | None = None) -> str:
    """sha256 (hex) of every ``*.py`` file of :data:`SOURCE_PACKAGES` (relative path and bytes,
    in sorted path order) under ``root`` (default: the project root this module is imported
    from): the code every stage runs (a superset of any stage's code deps). Computed once per
    process and root."""
    root = Path(__file__).resolve().parents[2] if root is None else Path(root)
    h = hashlib.sha256()
    for pkg in SOURCE_PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            h.update(path.relative_to(root).as_posix().encode() + b"\0")
            h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def fingerprint(obj: Any, files: Sequence[str | Path] = ()) -> str:
    """sha256 (hex) of :func:`source_digest`, the JSON of ``obj`` (sorted keys; non-JSON values
    by ``str``), then the bytes of each of ``files`` in order."""
    h = hashlib.sha256(source_digest().encode())
    h.update(json.dumps(obj, sort_keys=True, default=str).encode())
    for f in files:
        h.update(Path(f).read_bytes())
    return h.hexdigest()


def save_state(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` with ``torch.save`` atomically (the old file stays until the new one is
    complete; equal states give equal bytes)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_state(path: str | Path, what: str = "training checkpoint",
               weights_only: bool = True) -> dict[str, Any]:
    """The checkpoint dict at ``path``; InputError naming the file when it is missing, cannot be
    read (truncated) or is not a dict."""
    state = read_checkpoint(path, what, weights_only=weights_only)
    if not isinstance(state, dict):
        raise InputError(path, f"not a {what} (a dict), got {type(state).__name__}")
    return state


def resume_state(path: str | Path, fingerprint: str, what: str = "training checkpoint",
                 weights_only: bool = True) -> dict[str, Any] | None:
    """The checkpoint at ``path`` when it exists and holds ``fingerprint``; None when there is
    none or it is of other settings or inputs (start fresh). Unreadable: InputError."""
    if not Path(path).is_file():
        return None
    state = load_state(path, what, weights_only)
    return state if state.get("fingerprint") == fingerprint else None
