"""Reading JSON and .npz inputs with errors that name the file and the problem."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from weaksam.errors import InputError


def read_json(path: str | Path, what: str = "file", want_object: bool = False) -> Any:
    """The parsed JSON of ``path``; :class:`InputError` naming it when the file is missing, is
    not valid JSON, or (``want_object``) does not hold an object. ``what`` names the kind of
    file in the message (e.g. ``"annotation file"``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"{what} not found")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(path, f"{what} is not valid JSON ({e})") from e
    if want_object and not isinstance(data, dict):
        raise InputError(path, f"{what} must hold a JSON object")
    return data


def read_npz(path: str | Path, what: str = "file") -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` at ``path`` (no pickles); :class:`InputError` naming it when
    the file is missing or cannot be read as an archive."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"{what} not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 - any decode failure is a corrupt file
        raise InputError(path, f"cannot read {what} as .npz ({e})") from e
