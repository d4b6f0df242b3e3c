"""read_json (weaksam.utils.readers.py): errors name the file and the problem."""

from __future__ import annotations

import numpy as np
import pytest

from weaksam.errors import InputError
from weaksam.utils.readers import read_json, read_npz


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


def test_read_npz_ok_and_errors(tmp_path):
    np.savez(tmp_path / "a.npz", x=np.arange(3))
    np.testing.assert_array_equal(read_npz(tmp_path / "a.npz")["x"], [0, 1, 2])
    with pytest.raises(InputError, match=r"none\.npz.*clues file not found"):
        read_npz(tmp_path / "none.npz", "clues file")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match=r"bad\.npz.*cannot read proposals file as \.npz"):
        read_npz(tmp_path / "bad.npz", "proposals file")
    np.savez(tmp_path / "obj.npz", o=np.array([{}], dtype=object))  # pickles are refused
    with pytest.raises(InputError, match="cannot read"):
        read_npz(tmp_path / "obj.npz")
