"""weaksam.errors: the errors survive pickling, so one raised in a worker process reaches the
parent with its file and problem."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import pickle

import pytest

from weaksam.errors import InputError


def _raise(path: str) -> None:
    raise InputError(path, "not a SAM checkpoint")


def test_input_error_pickles():
    e = pickle.loads(pickle.dumps(InputError("models/sam.pth", "truncated")))
    assert (e.path, e.problem, str(e)) == ("models/sam.pth", "truncated",
                                           "models/sam.pth: truncated")
    assert str(pickle.loads(pickle.dumps(InputError(None, "no file")))) == "no file"


def test_input_error_from_a_spawned_worker():
    # before __reduce__ the parent failed to unpickle it: BrokenProcessPool, no file named
    with cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as ex:
        with pytest.raises(InputError) as e:
            ex.submit(_raise, "models/sam_vit_h_4b8939.pth").result()
    assert e.value.path == "models/sam_vit_h_4b8939.pth"
