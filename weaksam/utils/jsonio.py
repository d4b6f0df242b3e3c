"""Reading JSON inputs with errors that name the file (annotations, metrics)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
