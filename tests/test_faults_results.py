"""Damaged and hostile results files (issue 25, defects 3 and 4): one `ResultsFileError` line naming the file.

Defect 3: bytes flipped in the zip directory, a deeply nested header, an ``.npy`` header
declaring a shape of 10^12, a zip bomb (refused from the zip directory, before anything is
decompressed). Defect 4: dtypes a results file never holds, infinite values, a version-2
header without ``shapes``, header fields outside the schema.
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from moecl import report, results
from moecl.results import ResultsFileError, load_results, save_results


def _save(tmp_path) -> Path:
    path = tmp_path / "run.npz"
    header = {"experiment": "demo", "scale": "ci", "seed": 0, "replicates": 2, "rounds": 3, "labels": ["M2"],
              "configs": {"M2": {"M": 2}}, "arrays": {"rounds": "t", "M2/forgetting/{mean,se}": "F_t"}}
    arrays = {"rounds": np.arange(1, 4), "M2/forgetting/mean": np.array([np.nan, 0.1, 0.2]),
              "M2/forgetting/se": np.array([np.nan, 0.01, 0.02]), "M2/terminates": np.array([True, False])}
    save_results(path, header, arrays)
    load_results(path)
    return path


def _refused(path, *words) -> str:
    with pytest.raises(ResultsFileError) as error:
        load_results(path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message, message
    for word in words:
        assert word in message, message
    return message


def _rewrite(path, header_change=None, **arrays):
    """Rewrite with np.savez: the header changed by ``header_change``, arrays replaced or added."""
    with np.load(path, allow_pickle=False) as archive:
        header = json.loads(str(archive["__header__"]))
        stored = {name: archive[name] for name in archive.files if name != "__header__"}
    if header_change:
        header_change(header)
    stored.update(arrays)
    np.savez(path, __header__=np.array(json.dumps(header)), **stored)


# --------------------------------------------------------------------------- defect 3: damaged archives


def test_every_flipped_byte_of_the_zip_directory_is_one_line(tmp_path):
    """The audit's NotImplementedError (a compression method flipped in the directory) and all its neighbours."""
    path = _save(tmp_path)
    data = path.read_bytes()
    directory = data.rindex(b"PK\x01\x02", 0, data.rindex(b"PK\x05\x06"))
    start = data.index(b"PK\x01\x02")
    assert start < directory
    outcomes = set()
    for position in range(start, len(data)):
        damaged = bytearray(data)
        damaged[position] ^= 0xFF
        path.write_bytes(bytes(damaged))
        try:
            load_results(path)
            outcomes.add("read")
        except ResultsFileError as error:
            assert "\n" not in str(error) and str(path) in str(error)
            outcomes.add("refused")
    assert "refused" in outcomes


def test_an_unknown_compression_method_is_one_line(tmp_path):
    path = _save(tmp_path)
    data = bytearray(path.read_bytes())
    first = data.index(b"PK\x01\x02")
    data[first + 10 : first + 12] = struct.pack("<H", 99)  # compression method of the first member
    path.write_bytes(bytes(data))
    _refused(path)


def test_a_deeply_nested_header_is_one_line(tmp_path):
    path = tmp_path / "nested.npz"
    np.savez(path, __header__=np.array("[" * 100_000 + "]" * 100_000))
    _refused(path, "nested")


def test_an_npy_header_declaring_a_huge_shape_is_refused_before_allocating(tmp_path):
    path = _save(tmp_path)
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000,), }"
    header += b" " * (64 - (10 + len(header) + 1) % 64) + b"\n"
    members["M2/forgetting/mean.npy"] = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + bytes(24)
    with zipfile.ZipFile(path, "w") as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)
    _refused(path, "M2/forgetting/mean", "declares shape")


def test_a_zip_bomb_is_refused_from_the_directory_before_decompressing(tmp_path, monkeypatch):
    """With the limit lowered to 1 MB: 32 MB of zeros in a 32 kB file (the audit's was 3 GB in 3.1 MB)."""
    monkeypatch.setattr(results, "MAX_UNCOMPRESSED_BYTES", 2**20)
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("__header__.npy", b"")
        archive.writestr("big.npy", bytes(2**25))
    assert path.stat().st_size < 50_000
    opened = []
    original = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, *a, **k: opened.append(a) or original(self, *a, **k))
    _refused(path, "zip bomb")
    assert opened == []


def test_a_non_regular_file_is_refused(tmp_path):
    import os

    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    _refused(fifo, "regular file")


def test_the_report_helpers_give_the_same_line(tmp_path, monkeypatch):
    path = _save(tmp_path)
    data = bytearray(path.read_bytes())
    first = data.index(b"PK\x01\x02")
    data[first + 10 : first + 12] = struct.pack("<H", 99)
    stored = tmp_path / report.stored_name("demo")
    stored.write_bytes(bytes(data))
    with pytest.raises(ResultsFileError) as error:
        report.load_stored("demo", folder=tmp_path)
    assert str(stored) in str(error.value) and "\n" not in str(error.value)


# --------------------------------------------------------------------------- defect 4: the schema


@pytest.mark.parametrize("value, words", [
    (np.array(["a", "b", "c"]), ["text"]),
    (np.array([1 + 2j, 0, 0]), ["complex"]),
    (np.array(["2020-01-01"] * 3, dtype="datetime64[D]"), ["datetime"]),
    (np.array([True, False, True]), ["summary", "bool"]),
    (np.array([1, 2, 3]), ["summary", "int64"]),
])
def test_arrays_of_a_wrong_dtype_are_refused(tmp_path, value, words):
    path = _save(tmp_path)
    _rewrite(path, lambda h: h.pop("dtypes"), **{"M2/forgetting/mean": value})
    _refused(path, "M2/forgetting/mean", *words)


def test_a_dtype_other_than_the_header_records_is_refused(tmp_path):
    path = _save(tmp_path)
    _rewrite(path, rounds=np.array([True, False, True]))
    _refused(path, "'rounds'", "the header says <i8")


@pytest.mark.parametrize("value", [np.full(3, np.inf), np.array([np.nan, -np.inf, 0.2])])
def test_infinite_values_are_refused(tmp_path, value):
    path = _save(tmp_path)
    _rewrite(path, **{"M2/forgetting/mean": value})
    _refused(path, "M2/forgetting/mean", "infinite")


def test_a_version_2_header_without_shapes_is_refused(tmp_path):
    path = _save(tmp_path)
    _rewrite(path, lambda h: h.pop("shapes"))
    _refused(path, "shapes")


@pytest.mark.parametrize("field, value", [
    ("replicates", -5), ("replicates", 0), ("seed", -1), ("rounds", 0), ("wall_time", -1.0),
    ("labels", ["M2", "M2"]), ("labels", [3]), ("shapes", {"rounds": [-3]}), ("dtypes", {"rounds": "c16"}),
    ("experiment", ""), ("seeds", [0, 0]), ("configs", {"M2": 5}), ("simulation_wall_times", {"M2": "x"}),
    ("seeds_per_piece", 0), ("scenarios", [""]),
])
def test_header_fields_outside_the_schema_are_refused(tmp_path, field, value):
    path = _save(tmp_path)
    _rewrite(path, lambda h: h.update({field: value}))
    _refused(path, repr(field))


def test_seeds_must_match_the_replicates(tmp_path):
    path = _save(tmp_path)
    _rewrite(path, lambda h: h.update(seeds=[0, 1, 2]))
    _refused(path, "3 seeds for 2 replicates")


def test_valid_files_still_load_with_their_values(tmp_path):
    path = _save(tmp_path)
    header, arrays = load_results(path)
    np.testing.assert_array_equal(arrays["rounds"], [1, 2, 3])
    assert arrays["M2/terminates"].dtype == bool and header["dtypes"]["rounds"] == "<i8"
    fortran = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    save_results(tmp_path / "f.npz", {}, {"x": fortran})
    np.testing.assert_array_equal(load_results(tmp_path / "f.npz")[1]["x"], fortran)
