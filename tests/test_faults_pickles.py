"""CIFAR pickles that declare more than their file holds (issue 25, defect 1).

Every way a pickle can make numpy allocate an array (a bare ``numpy.ndarray(shape)``
call, ``_reconstruct`` followed by ``__setstate__`` with another shape, object arrays,
``_frombuffer``, nested lists shared through the memo) is checked against the size of
the file before anything is allocated, and refused with one `DataError` line naming it.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from moecl.deep import datasets
from moecl.deep.datasets import DataError
from test_data import write_cifar10


class _Call:
    """Pickles as ``function(*args)`` (REDUCE) and, with ``state``, a BUILD of that state."""

    def __init__(self, function, args, state=None):
        self.function, self.args, self.state = function, args, state

    def __reduce__(self):
        return (self.function, self.args) if self.state is None else (self.function, self.args, self.state)


def _reconstruct():
    from numpy._core.multiarray import _reconstruct as function

    return function


def _write(tmp_path, payload) -> "Path":
    write_cifar10(tmp_path, batches=1)
    path = tmp_path / datasets.CIFAR10_FOLDER / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": payload, b"labels": [0] * 10}, protocol=2))
    return path


def _refused(path, *words):
    with pytest.raises(DataError) as error:
        datasets.read_cifar_pickle(path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    for word in words:
        assert word in message
    return message


def test_a_bare_ndarray_call_is_checked_against_the_file(tmp_path):
    """The audit's 240-byte data_batch_1 asking for 4.58 GiB through ``numpy.ndarray(shape)``."""
    path = _write(tmp_path, _Call(np.ndarray, ((4_580_000_000,), np.dtype("u1"))))
    assert path.stat().st_size < 300
    _refused(path, "larger than the file")


def test_setstate_with_a_larger_shape_than_reconstruct_is_checked(tmp_path):
    state = (1, (10**12,), np.dtype("u1"), False, b"\x00" * 16)
    path = _write(tmp_path, _Call(_reconstruct(), (np.ndarray, (0,), b"b"), state))
    _refused(path, "larger than the file")


@pytest.mark.parametrize("shape", [(10,), (10**4,)])
def test_object_arrays_are_refused(tmp_path, shape):
    """An object array's setstate with a short list crashes numpy itself (a segmentation fault)."""
    state = (1, shape, np.dtype("O"), False, [1, 2])
    path = _write(tmp_path, _Call(_reconstruct(), (np.ndarray, (0,), b"b"), state))
    _refused(path, "object")


def test_frombuffer_arrays_are_checked(tmp_path):
    from numpy._core.numeric import _frombuffer

    path = _write(tmp_path, _Call(_frombuffer, (b"\x00" * 8, np.dtype("u1"), (10**9,), "C")))
    _refused(path, "larger than the file")


def test_codecs_may_only_decode_latin1(tmp_path):
    import _codecs

    path = _write(tmp_path, _Call(_codecs.encode, (b"\x00" * 64, "hex_codec")))
    _refused(path, "latin1")


def test_lists_shared_through_the_memo_cannot_multiply(tmp_path):
    """Ten references to one row of 3072 values cost 20 bytes in the pickle, 30,720 values as an array;
    nested three deep, 10^9 values from a 10 kB file."""
    row = [0] * 3072
    level = [row] * 1000
    path = _write(tmp_path, [level] * 1000)
    assert path.stat().st_size < 20_000
    _refused(path, "values", "larger than the file")


def test_a_deeply_nested_list_is_one_line(tmp_path):
    """100,000 lists each inside the next, written opcode by opcode (pickle.dumps itself would overflow)."""
    write_cifar10(tmp_path, batches=1)
    path = tmp_path / datasets.CIFAR10_FOLDER / "data_batch_1"
    depth = 100_000
    path.write_bytes(b"\x80\x02}X\x04\x00\x00\x00data" + b"]" * depth + b"a" * (depth - 1) + b"s.")
    _refused(path, "nested")


def test_the_official_layouts_are_still_read(tmp_path):
    for protocol in (2, 4, 5):
        written = write_cifar10(tmp_path / str(protocol), batches=1, per_batch=10, protocol=protocol)
        data = datasets.load_cifar10(tmp_path / str(protocol))
        np.testing.assert_array_equal(data.train_images.reshape(10, -1) * 255, written["train"])
        assert type(datasets.read_cifar_pickle(tmp_path / str(protocol) / datasets.CIFAR10_FOLDER / "data_batch_1")[
            "data"]) is np.ndarray
