"""read_json (weaksam/utils/jsonio.py): errors name the file and the problem."""

from __future__ import annotations

import pytest

from weaksam.errors import InputError
from weaksam.utils.jsonio import read_json


def test_read_json_ok_and_errors(tmp_path):
    (tmp_path / "a.json").write_text('{"x": [1, 2]}')
    assert read_json(tmp_path / "a.json") == {"x": [1, 2]}
    (tmp_path / "l.json").write_text("[1]")
    assert read_json(tmp_path / "l.json") == [1]
    with pytest.raises(InputError, match=r"l\.json.*metrics file must hold a JSON object"):
        read_json(tmp_path / "l.json", "metrics file", want_object=True)
    with pytest.raises(InputError, match=r"nope\.json.*annotation file not found"):
        read_json(tmp_path / "nope.json", "annotation file")
    (tmp_path / "b.json").write_bytes(b"{\xff")
    with pytest.raises(InputError, match=r"b\.json.*not valid JSON"):
        read_json(tmp_path / "b.json")
