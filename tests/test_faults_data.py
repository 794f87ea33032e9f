"""Faults thrown at the data loaders: each is one line naming the path, of a documented type.

Stray files, decompression bombs, non-UTF-8 text, overflowing IDX headers, permission
errors, oversized arrays in a CIFAR pickle, Tiny ImageNet paths that leave the data set,
and an explicit data directory (``MOECL_DATA``) that is missing or empty.
"""

from __future__ import annotations

import builtins
import gzip
import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from moecl.deep import datasets
from moecl.deep.datasets import DataError
from test_data import idx_bytes, write_cifar10, write_mnist, write_tiny_imagenet


def _one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- stray files


def test_stray_files_beside_the_cifar_batches_are_ignored(tmp_path):
    write_cifar10(tmp_path, batches=2)
    folder = tmp_path / datasets.CIFAR10_FOLDER
    (folder / "data_batch_1.bak").write_bytes(b"old copy")
    (folder / "data_batch_3.part").write_bytes(b"half a download")
    (folder / "data_batch_x").write_bytes(b"?")
    data = datasets.load_cifar10(tmp_path)
    assert len(data.train_images) == 40
    assert "2 of 5 training batches: data_batch_1, data_batch_2" in data.source


# --------------------------------------------------------------------------- IDX headers and gzip


@pytest.mark.parametrize("dims", [(2**32 - 1,) * 3, (2**32 - 1, 2**32 - 1), (60000, 28, 28, 28, 28)])
def test_idx_headers_whose_sizes_overflow_are_refused(tmp_path, dims):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 0x08, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + bytes(100))
    with pytest.raises(DataError) as error:
        datasets.read_idx(path)
    message = _one_line(error)
    assert str(path) in message and "more than" in message


def test_a_gzip_bomb_is_not_decompressed_past_the_promised_size(tmp_path, monkeypatch):
    """The header promises 4 values; the stream holds 5 MB of zeros: at most 5 values are read."""
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    header = idx_bytes(np.zeros(4, dtype=np.uint8))
    path.write_bytes(gzip.compress(header + bytes(5_000_000), compresslevel=9))
    reads = []
    original = gzip.GzipFile.read

    def counting(self, size=-1):
        data = original(self, size)
        reads.append(len(data))
        return data

    monkeypatch.setattr(gzip.GzipFile, "read", counting)
    with pytest.raises(DataError, match="promises 4 values .* holds more than 4"):
        datasets.read_idx(path)
    assert sum(reads) <= len(header) + 1


# --------------------------------------------------------------------------- text files


def test_non_utf8_wnids_is_one_line_naming_the_file(tmp_path):
    folder = write_tiny_imagenet(tmp_path)
    (folder / "wnids.txt").write_bytes(b"n00000001\n\xff\xfe\xfa\n")
    with pytest.raises(DataError) as error:
        datasets.load_tiny_imagenet(tmp_path)
    assert str(folder / "wnids.txt") in _one_line(error) and "UTF-8" in str(error.value)


def test_non_utf8_annotations_is_one_line_naming_the_file(tmp_path):
    folder = write_tiny_imagenet(tmp_path)
    (folder / "val" / "val_annotations.txt").write_bytes(b"val_0.JPEG\tn00000001\n\x80\x81\n")
    with pytest.raises(DataError) as error:
        datasets.load_tiny_imagenet(tmp_path)
    assert "val_annotations.txt" in _one_line(error)


# --------------------------------------------------------------------------- Tiny ImageNet paths


@pytest.mark.parametrize("name", ["../../../secret.JPEG", "../images2/x.JPEG", "/etc/hostname"])
def test_annotation_paths_cannot_leave_the_data_set(tmp_path, name):
    folder = write_tiny_imagenet(tmp_path)
    (tmp_path / "secret.JPEG").write_bytes(b"outside")
    with (folder / "val" / "val_annotations.txt").open("a") as stream:
        stream.write(f"{name}\tn00000001\t0\t0\t63\t63\n")
    with pytest.raises(DataError) as error:
        datasets.load_tiny_imagenet(tmp_path)
    message = _one_line(error)
    assert "outside" in message and "val_annotations.txt" in message


@pytest.mark.parametrize("wnid", ["../../etc", "a/b", ".."])
def test_class_ids_that_are_not_folder_names_are_refused(tmp_path, wnid):
    folder = write_tiny_imagenet(tmp_path)
    (folder / "wnids.txt").write_text(f"n00000001\n{wnid}\n")
    with pytest.raises(DataError) as error:
        datasets.load_tiny_imagenet(tmp_path)
    assert "wnids.txt" in _one_line(error) and "folder name" in str(error.value)


# --------------------------------------------------------------------------- decompression bombs


def test_a_decompression_bomb_image_is_refused_before_decoding(tmp_path):
    from PIL import Image

    folder = write_tiny_imagenet(tmp_path)
    bomb = folder / "train" / "n00000001" / "images" / "n00000001_0.JPEG"
    Image.new("L", (4100, 4100), 0).save(bomb, "PNG")  # a few kB on disk, 17 M pixels
    assert bomb.stat().st_size < 200_000
    with pytest.raises(DataError) as error:
        datasets.load_tiny_imagenet(tmp_path, classes=[0])
    message = _one_line(error)
    assert str(bomb) in message and "larger than" in message


# --------------------------------------------------------------------------- CIFAR arrays


class _Huge:
    """Pickles as numpy's array reconstruction with a shape far larger than the file."""

    def __init__(self, shape, dtype="u1"):
        self.shape, self.dtype = shape, dtype

    def __reduce__(self):
        from numpy.core.multiarray import _reconstruct

        return _reconstruct, (np.ndarray, self.shape, np.dtype(self.dtype))


@pytest.mark.parametrize("shape, dtype", [((10**12,), "u1"), ((10, 3072), "u1"), ((1,), "V100000000")])
def test_cifar_arrays_larger_than_the_file_are_refused(tmp_path, shape, dtype):
    write_cifar10(tmp_path, batches=1)
    path = tmp_path / datasets.CIFAR10_FOLDER / "data_batch_1"
    payload = {b"data": _Huge(shape, dtype), b"labels": [0] * 10}
    path.write_bytes(pickle.dumps(payload, protocol=2))
    assert path.stat().st_size < 30_720
    with pytest.raises(DataError) as error:
        datasets.read_cifar_pickle(path)
    message = _one_line(error)
    assert str(path) in message and "larger than the file" in message


def test_cifar_arrays_that_fit_are_still_read(tmp_path):
    written = write_cifar10(tmp_path, batches=1, per_batch=10)
    entry = datasets.read_cifar_pickle(tmp_path / datasets.CIFAR10_FOLDER / "data_batch_1")
    np.testing.assert_array_equal(entry["data"], written["train"])


# --------------------------------------------------------------------------- permission errors


def _deny(monkeypatch, denied: Path):
    """Opening ``denied`` fails as the OS does for a file without read permission."""
    original = builtins.open

    def guarded(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and Path(file) == denied:
            raise PermissionError(13, "Permission denied", str(file))
        return original(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
    monkeypatch.setattr(io, "open", guarded)


@pytest.mark.parametrize("which", ["mnist", "cifar", "wnids", "image"])
def test_permission_errors_are_one_line_naming_the_path(tmp_path, monkeypatch, which):
    write_mnist(tmp_path / "mnist")
    write_cifar10(tmp_path, batches=1)
    tiny = write_tiny_imagenet(tmp_path)
    denied = {"mnist": tmp_path / "mnist" / "train-images-idx3-ubyte.gz",
              "cifar": tmp_path / datasets.CIFAR10_FOLDER / "data_batch_1",
              "wnids": tiny / "wnids.txt",
              "image": tiny / "train" / "n00000001" / "images" / "n00000001_0.JPEG"}[which]
    load = {"mnist": datasets.load_mnist, "cifar": datasets.load_cifar10,
            "wnids": datasets.load_tiny_imagenet, "image": datasets.load_tiny_imagenet}[which]
    _deny(monkeypatch, denied)
    with pytest.raises(PermissionError) as error:
        load(tmp_path)
    message = _one_line(error)
    assert str(denied) in message and "ermission denied" in message


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads files without permission")
def test_a_real_unreadable_file(tmp_path):
    write_mnist(tmp_path / "mnist")
    path = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    path.chmod(0)
    with pytest.raises(PermissionError, match="t10k-labels-idx1-ubyte.gz"):
        datasets.load_mnist(tmp_path)


# --------------------------------------------------------------------------- explicit data directory


@pytest.mark.parametrize("layout, words", [("missing", "does not exist"), ("file", "not a folder"),
                                           ("empty", "holds no data set")])
def test_moecl_data_missing_or_empty_is_refused(tmp_path, monkeypatch, layout, words):
    data = tmp_path / "data"
    if layout == "file":
        data.write_text("x")
    elif layout == "empty":
        (data / "unrelated").mkdir(parents=True)
    monkeypatch.setenv(datasets.DATA_ENV, str(data))
    for call in (datasets.check_data_dir, datasets.load_digits):
        with pytest.raises(datasets.DataDirError) as error:
            call()
        assert f"MOECL_DATA={data}" in _one_line(error) and words in str(error.value)


def test_no_fallback_while_moecl_data_is_set(tmp_path, monkeypatch):
    write_cifar10(tmp_path, batches=1)  # a data set, but no MNIST
    monkeypatch.setenv(datasets.DATA_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no fallback"):
        datasets.load_digits()


def test_the_fallback_is_announced_on_stderr(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(datasets.DATA_ENV, raising=False)
    data = datasets.load_digits(tmp_path)
    assert "scikit-learn" in data.source and "fallback" in data.source
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "MNIST not found" in err and "scikit-learn" in err
