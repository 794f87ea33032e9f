"""Results files: round trip, atomic writes, clear errors, summaries."""

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import moecl
from moecl import results
from moecl.results import ResultsFileError, load_results, make_header, save_results, summarise


def _example():
    header = {
        "experiment": "demo",
        "seed": 3,
        "configs": {"M8": moecl.Config(T=10).as_dict(), "M8-noterm": moecl.Config(T=10, termination="none").as_dict()},
        "labels": ["M8", "M8-noterm"],
        "numpy_scalar": np.int64(7),
        "unicode": "σ₀ = 0.1",
    }
    arrays = {
        "rounds": np.arange(1, 11),
        "M8/forgetting/mean": np.r_[np.nan, np.linspace(0.0, 1.0, 9)],
        "M8/load/mean": np.random.default_rng(0).random((10, 8)),
        "M8/T1": np.asarray(26),
        "M8/closest_truth": np.zeros((10, 8), dtype=np.int16),
        "flags": np.array([True, False]),
    }
    return header, arrays


def _files(directory):
    return sorted(os.listdir(directory))


def _written(header):
    """The header as stored: the format tag and the arrays' shapes and dtypes are added."""
    return {key: value for key, value in header.items() if key not in ("format", "shapes", "dtypes")}


def test_round_trip(tmp_path):
    header, arrays = _example()
    path = tmp_path / "demo.npz"
    assert save_results(path, header, arrays) == str(path)
    loaded_header, loaded = load_results(path)
    assert _written(loaded_header) == json.loads(json.dumps({**header, "numpy_scalar": 7}))
    assert loaded_header["format"] == results.FORMAT
    assert loaded_header["shapes"] == {name: list(np.shape(value)) for name, value in arrays.items()}
    assert loaded_header["dtypes"] == {name: np.asarray(value).dtype.str for name, value in arrays.items()}
    assert set(loaded) == set(arrays)
    for name, value in arrays.items():
        assert loaded[name].dtype == value.dtype and loaded[name].shape == value.shape
        np.testing.assert_array_equal(loaded[name], value)
    assert _files(tmp_path) == ["demo.npz"]  # no temporary file left


def test_file_is_a_plain_npz_with_a_json_header(tmp_path):
    header, arrays = _example()
    path = tmp_path / "demo.npz"
    save_results(path, header, arrays)
    with np.load(path, allow_pickle=False) as archive:
        assert json.loads(str(archive["__header__"]))["experiment"] == "demo"
        assert set(archive.files) == set(arrays) | {"__header__"}


def test_overwrites_an_older_file(tmp_path):
    header, arrays = _example()
    path = tmp_path / "demo.npz"
    save_results(path, {"old": True}, {"x": np.zeros(3)})
    save_results(path, header, arrays)
    assert load_results(path)[0]["experiment"] == "demo"
    assert _files(tmp_path) == ["demo.npz"]


@pytest.mark.parametrize("previous", [False, True])
def test_failure_midway_leaves_nothing_behind(tmp_path, previous):
    path = tmp_path / "demo.npz"
    if previous:
        save_results(path, {"old": True}, {"x": np.arange(5)})
        before = path.read_bytes()
    header, arrays = _example()
    arrays["broken"] = np.array([{"not": "serialisable"}], dtype=object)  # written after the others
    with pytest.raises(ValueError, match="broken"):
        save_results(path, header, arrays)
    if previous:
        assert _files(tmp_path) == ["demo.npz"]
        assert path.read_bytes() == before
        assert _written(load_results(path)[0]) == {"old": True}
    else:
        assert _files(tmp_path) == []


def test_interrupted_writer_leaves_nothing_behind(tmp_path, monkeypatch):
    path = tmp_path / "demo.npz"
    save_results(path, {"old": True}, {"x": np.arange(5)})
    before = path.read_bytes()
    original = np.lib.format.write_array
    calls = []

    def write_then_die(stream, array, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # even a BaseException cleans up
        return original(stream, array, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        save_results(path, *_example())
    assert len(calls) == 3
    assert _files(tmp_path) == ["demo.npz"]
    assert path.read_bytes() == before


def test_header_must_be_json(tmp_path):
    with pytest.raises(TypeError, match="JSON"):
        save_results(tmp_path / "x.npz", {"bad": object()}, {})
    assert _files(tmp_path) == []


@pytest.mark.parametrize("name", ["__header__", "", "x.npy"])
def test_bad_array_names(tmp_path, name):
    with pytest.raises(ValueError, match="array name"):
        save_results(tmp_path / "x.npz", {}, {name: np.zeros(1)})


def test_creates_the_directory(tmp_path):
    path = tmp_path / "a" / "b" / "x.npz"
    save_results(path, {"k": 1}, {"x": np.ones(2)})
    assert _written(load_results(path)[0]) == {"k": 1}


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "absent.npz"
    with pytest.raises(FileNotFoundError, match="absent.npz"):
        load_results(path)


def _truncated(path):
    save_results(path, *_example())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path):
    path.write_bytes(b"this is not an npz archive\n" * 10)


def _no_header(path):
    np.savez(path, x=np.zeros(3))


def _npy(path):
    with open(path, "wb") as stream:
        np.save(stream, np.zeros(3))


def _bad_json(path):
    np.savez(path, __header__=np.array("{not json"))


def _flipped_bytes(path):
    save_results(path, {"k": 1}, {"x": np.random.default_rng(1).random(2000)})
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("corrupt", [_truncated, _garbage, _no_header, _npy, _bad_json, _flipped_bytes])
def test_corrupt_file_raises_naming_the_path(tmp_path, corrupt):
    path = tmp_path / "corrupt.npz"
    corrupt(path)
    with pytest.raises(ResultsFileError, match="corrupt.npz"):
        load_results(path)


def test_summarise():
    values = np.array([[np.nan, 1.0, 2.0], [np.nan, 3.0, 2.0], [np.nan, 5.0, 2.0]])
    stats = summarise(values)
    assert tuple(stats) == results.STATISTICS == ("mean", "se", "p2.5", "p50", "p97.5")
    np.testing.assert_allclose(stats["mean"][1:], [3.0, 2.0])
    np.testing.assert_allclose(stats["se"][1:], [2.0 / np.sqrt(3), 0.0])
    np.testing.assert_allclose(stats["p50"][1:], [3.0, 2.0])
    np.testing.assert_allclose(stats["p2.5"][1], 1.1)
    np.testing.assert_allclose(stats["p97.5"][1], 4.9)
    assert all(np.isnan(stats[name][0]) for name in stats)  # F_1 is undefined
    cube = summarise(np.zeros((4, 5, 3)), prefix="M3/load")
    assert set(cube) == {f"M3/load/{name}" for name in results.STATISTICS}
    assert all(value.shape == (5, 3) for value in cube.values())
    with pytest.raises(ValueError, match="two replicates"):
        summarise(np.zeros((1, 5)))


def test_make_header():
    header = make_header("demo", "ci", 4, 40, 1.5, labels=["M1"])
    assert header["moecl_version"] == moecl.__version__
    assert header["numpy_version"] == np.__version__
    assert (header["experiment"], header["scale"], header["seed"], header["replicates"]) == ("demo", "ci", 4, 40)
    assert header["labels"] == ["M1"] and header["wall_time"] == 1.5
    created = dt.datetime.fromisoformat(header["created"])
    assert created.utcoffset() == dt.timedelta(0)
    json.dumps(header)


def test_written_archive_is_compressed(tmp_path):
    path = tmp_path / "zeros.npz"
    save_results(path, {}, {"x": np.zeros(100_000)})
    assert path.stat().st_size < 10_000
    with zipfile.ZipFile(path) as archive:
        assert all(info.compress_type == zipfile.ZIP_DEFLATED for info in archive.infolist())


# --------------------------------------------------------------------------- validation on load


def _rewrite_header(path, change):
    """Rewrite a saved file's header with ``change(header)`` (arrays kept)."""
    with np.load(path, allow_pickle=False) as archive:
        header = json.loads(str(archive["__header__"]))
        arrays = {name: archive[name] for name in archive.files if name != "__header__"}
    change(header)
    np.savez(path, __header__=np.array(json.dumps(header)), **arrays)


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda h: h.update(format="moecl-results/99"), ["version 99", "newer"]),
        (lambda h: h.update(format="moecl-results/0"), ["version 0"]),
        (lambda h: h.update(format="other-tool/1"), ["'other-tool/1'"]),
        (lambda h: h.pop("format"), ["format None"]),
        (lambda h: h.update(seed="zero"), ["'seed'"]),
        (lambda h: h["shapes"].update({"rounds": [11]}), ["'rounds'", "shape"]),
        (lambda h: h["shapes"].update({"M8/absent": [3]}), ["'M8/absent'", "missing"]),
        (lambda h: h["shapes"].pop("flags"), ["flags", "not in the header"]),
        (lambda h: h["arrays"].update({"M8/gone/{mean,se}": "x"}), ["'M8/gone/mean'"]),
        (lambda h: h["labels"].append("M99"), ["M99", "no configuration"]),
    ],
)
def test_load_validates_format_version_and_schema(tmp_path, change, words):
    header, arrays = _example()
    header["arrays"] = {"rounds": "round numbers", "M8/forgetting/{mean}": "F_t"}
    path = tmp_path / "checked.npz"
    save_results(path, header, arrays)
    load_results(path)  # valid as written
    _rewrite_header(path, change)
    with pytest.raises(ResultsFileError) as error:
        load_results(path)
    message = str(error.value)
    assert "checked.npz" in message and "\n" not in message
    for word in words:
        assert word in message


def test_known_older_version_is_read(tmp_path):
    """Version 1 files (the stored results) have no shapes: they are still read and checked."""
    path = tmp_path / "old.npz"
    header, arrays = _example()
    save_results(path, header, arrays)
    _rewrite_header(path, lambda h: (h.update(format="moecl-results/1"), h.pop("shapes")))
    loaded, _ = load_results(path)
    assert loaded["format"] == "moecl-results/1"


def test_the_stored_results_are_valid():
    root = Path(moecl.__file__).resolve().parent.parent / "results"
    for path in sorted(root.glob("*.npz")):
        header, _ = load_results(path)
        assert header["format"] in {f"moecl-results/{v}" for v in results.READABLE_VERSIONS}


def test_identity_differences():
    header, _ = _example()
    header.update(scale="ci", replicates=40)
    assert results.identity_differences(header, dict(header, wall_time=9.0, created="now")) == []
    assert results.identity_differences(header, dict(header, replicates=2)) == ["replicates"]


# --------------------------------------------------------------------------- termination signals

_SIGNAL_WRITER = r"""
import os, signal, sys
# the default disposition, as in a terminal: a parent started under nohup passes SIGHUP on ignored,
# and moecl.atomic then rightly leaves it ignored (the writer would survive it)
signal.signal(getattr(signal, sys.argv[2]), signal.SIG_DFL)
import numpy as np
from moecl.results import save_results
original = np.lib.format.write_array
calls = []
def write_then_signal(stream, array, **kwargs):
    calls.append(1)
    if len(calls) == 3:
        os.kill(os.getpid(), getattr(signal, sys.argv[2]))
    return original(stream, array, **kwargs)
np.lib.format.write_array = write_then_signal
save_results(sys.argv[1], {"new": True}, {f"a{k}": np.arange(50) for k in range(6)})
print("survived")
"""


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
def test_termination_signal_leaves_no_temporary_file(tmp_path, name):
    path = tmp_path / "demo.npz"
    save_results(path, {"old": True}, {"x": np.arange(5)})
    before = path.read_bytes()
    root = Path(moecl.__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root))
    done = subprocess.run([sys.executable, "-c", _SIGNAL_WRITER, str(path), name], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == -getattr(signal, name), done.stderr  # ended by the signal, as asked
    assert "survived" not in done.stdout
    assert _files(tmp_path) == ["demo.npz"]
    assert path.read_bytes() == before


def test_an_older_header_without_newer_config_fields_is_the_same_run():
    config = moecl.Config(T=10).as_dict()
    new = {"experiment": "demo", "scale": "ci", "seed": 0, "replicates": 2, "overrides": {},
           "labels": ["M8"], "configs": {"M8": config}}
    old = dict(new, configs={"M8": {k: v for k, v in config.items() if k not in ("sharing", "anisotropy")}})
    del old["overrides"]
    assert results.identity_differences(old, new) == []
    changed = dict(new, configs={"M8": dict(config, sharing="average")})
    assert results.identity_differences(old, changed) == ["configs"]
