"""Faults thrown at the command line: it keeps results files, refuses in one line, exits as documented.

Exit status 2: usage errors (checked before anything runs); 1: data or files that cannot
be read or written, or a results file of another run that would be written over.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import moecl
from moecl import cli, limits
from moecl.algorithm import record_bytes_per_round
from moecl.experiments import EXPERIMENTS
from moecl.experiments.recorder import Recorder
from moecl.results import load_results, save_results
from small_runs import error_line

ROOT = Path(moecl.__file__).resolve().parent.parent


def _never_run(monkeypatch):
    """Make any simulation fail the test: the refusals must come before the run."""
    def run(*args, **kwargs):
        raise AssertionError("the experiment ran although the command should have been refused first")

    monkeypatch.setattr(cli, "run_experiment", run)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- names and overwriting (item 4)


def test_the_name_says_what_differs_from_the_preset():
    path = cli.result_path("r", "termination", "paper", 0, {"alpha": 0.5}, replicates=2, data="sklearn-digits")
    assert os.path.basename(path) == "termination-paper-seed0-R2-alpha=0.5-data=sklearn-digits.npz"
    assert cli._preset_replicates("termination", "paper", 500) is None  # the preset's R: no suffix
    assert cli._preset_replicates("termination", "paper", 2) == 2
    assert cli._preset_replicates("regime-map", "paper", 200) is None  # its own presets
    assert cli._preset_replicates("drift", "ci", 60) is None


def test_override_values_cannot_leave_the_directory():
    path = cli.result_path("out", "deep-methods", "ci", 0, {"stream": "../../etc/x"})
    assert os.path.dirname(path) == "out" and "/" not in os.path.basename(path)


def test_a_file_of_another_run_is_kept_unless_forced(capsys, tmp_path, monkeypatch):
    """Same name, another header (caught before the run from the scale; after it from the configs)."""
    stored = tmp_path / "specialisation-ci-seed0-R2.npz"
    save_results(stored, {"experiment": "specialisation", "scale": "paper", "seed": 0, "replicates": 2}, {"x": [1]})
    before = _sha(stored)
    argv = ["run", "specialisation", "--replicates", "2", "--out", str(tmp_path), "--no-progress"]
    assert cli.main(argv) == 1
    line = error_line(capsys)
    assert str(stored) in line and "scale" in line and "--force" in line
    assert _sha(stored) == before

    # a file that matches before the run but holds other configurations: refused after it, nothing written
    assert cli.main(argv[:-1] + ["--no-progress", "--set", "alpha=0.5"]) == 0
    other = tmp_path / "specialisation-ci-seed0-R2-alpha=0.5.npz"
    assert capsys.readouterr().out.strip() == str(other)
    os.replace(other, stored)
    before = _sha(stored)
    assert cli.main(argv) == 1
    line = error_line(capsys)
    assert "configs" in line and "overrides" in line and "not written" in line
    assert _sha(stored) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [stored.name]

    assert cli.main(argv + ["--force"]) == 0
    assert load_results(stored)[0]["overrides"] == {}
    capsys.readouterr()
    assert cli.main(argv) == 0  # the same run again: allowed


def test_a_file_that_is_not_a_results_file_is_kept(capsys, tmp_path, monkeypatch):
    _never_run(monkeypatch)
    target = tmp_path / "specialisation-ci-seed0.npz"
    target.write_text("my notes")
    assert cli.main(["run", "specialisation", "--out", str(tmp_path)]) == 1
    assert "not a valid results file" in error_line(capsys)
    assert target.read_text() == "my notes"


def test_committed_results_are_never_modified_without_force(tmp_path):
    """In a scratch copy of the repository: a small paper-scale run (the issue's case: R = 2 instead of the
    preset's 500), and a run whose name is taken by a file of another run."""
    scratch = tmp_path / "repo"
    shutil.copytree(ROOT / "moecl", scratch / "moecl", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "results", scratch / "results")
    stored = sorted((scratch / "results").glob("*.npz"))
    assert stored, "no committed results files"
    # a decoy: a stored paper-scale file under the name a default (ci) run writes
    shutil.copy(scratch / "results" / "termination-paper-seed0.npz", scratch / "results" / "termination-ci-seed0.npz")
    stored.append(scratch / "results" / "termination-ci-seed0.npz")
    before = {path.name: _sha(path) for path in stored}
    env = dict(os.environ, PYTHONPATH=str(scratch))
    env.pop("MOECL_DATA", None)

    def moecl_run(*args):
        return subprocess.run([sys.executable, "-m", "moecl", "run", *args, "--no-progress"], cwd=scratch, env=env,
                              capture_output=True, text=True, timeout=300)

    small = moecl_run("specialisation", "--scale", "paper", "--replicates", "2")
    assert small.returncode == 0, small.stderr
    assert small.stdout.strip() == os.path.join("results", "specialisation-paper-seed0-R2.npz")
    decoy = moecl_run("termination")
    assert decoy.returncode == 1 and "--force" in decoy.stderr and decoy.stdout == ""
    after = {path.name: _sha(path) for path in stored}
    assert after == before
    names = sorted(path.name for path in (scratch / "results").iterdir())
    assert names == sorted([*before, "README.md", "specialisation-paper-seed0-R2.npz"])


# --------------------------------------------------------------------------- owned fields (item 5)


@pytest.mark.parametrize("name, field", [(name, field) for name, entry in EXPERIMENTS.items()
                                         for field in entry.owns])
def test_overriding_a_field_the_experiment_owns_is_refused(capsys, tmp_path, monkeypatch, name, field):
    _never_run(monkeypatch)
    assert cli.main(["run", name, "--set", f"{field}=4", "--out", str(tmp_path)]) == 2
    line = error_line(capsys)
    assert f"{name} sets {field} itself" in line and "cannot be overridden" in line
    assert list(tmp_path.iterdir()) == []


def test_every_experiment_owns_its_rounds_and_what_it_sweeps():
    owns = {name: set(entry.owns) for name, entry in EXPERIMENTS.items()}
    assert all("T" in fields for name, fields in owns.items() if not name.startswith("deep"))
    assert {"M", "termination"} <= owns["termination"]
    assert {"M", "sigma0", "termination"} <= owns["too-early"]
    assert {"sigma_t", "sigma0", "M", "termination"} <= owns["regime-map"]
    assert {"drift_round", "reopen", "M"} <= owns["drift"]


# --------------------------------------------------------------------------- non-finite and singular (item 6)


@pytest.mark.parametrize("override, field", [("beta=1e200", "beta"), ("sigma_t=1e200", "sigma_t"),
                                             ("sigma_t=1e-300", "sigma_t"), ("v_norm=1e-300", "v_norm"),
                                             ("beta=1e-300", "beta"), ("sigma0=1e300", "sigma0")])
def test_scales_that_break_float64_are_refused_naming_the_field(capsys, tmp_path, override, field):
    argv = ["run", "specialisation", "--replicates", "2", "--set", override, "--out", str(tmp_path), "--no-progress"]
    assert cli.main(argv) == 2
    assert error_line(capsys).startswith(f"moecl: error: {field}=")
    assert list(tmp_path.iterdir()) == []


def test_non_finite_curves_and_singular_matrices_are_refused_naming_the_scales():
    config = moecl.Config(T=5, beta=1e5, sigma_t=1e-5)
    result = moecl.simulate(config, replicates=2)
    result.generalization[0, 3] = np.inf
    with pytest.raises(limits.RunLimitError, match=r"non-finite G_t .*beta=100000.*sigma_t=1e-05"):
        Recorder._guarded([config], lambda: [result])

    def singular():
        raise np.linalg.LinAlgError("Matrix is not positive definite")

    with pytest.raises(limits.RunLimitError, match=r"singular .*beta=100000.*sigma_t=1e-05") as error:
        Recorder._guarded([config], singular)
    assert "\n" not in str(error.value)


def test_infinite_arrays_are_never_written(capsys, tmp_path, monkeypatch):
    def infinite(*args, **kwargs):
        return {"experiment": "termination", "scale": "ci", "seed": 0, "replicates": 40, "rounds": 3}, {
            "M8/forgetting/mean": np.array([np.nan, 1.0, np.inf])}

    monkeypatch.setattr(cli, "run_experiment", infinite)
    assert cli.main(["run", "termination", "--out", str(tmp_path), "--no-progress"]) == 1
    assert "M8/forgetting/mean" in error_line(capsys)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- data sources and exit codes (8, 9)


def _mnist_files(folder: Path, damage: bool = False):
    from test_data import write_mnist

    write_mnist(folder)
    if damage:
        path = folder / "train-images-idx3-ubyte.gz"
        path.write_bytes(path.read_bytes()[:40])


@pytest.mark.parametrize("layout, words", [
    ("missing", ["does not exist"]),
    ("file", ["is not a folder"]),
    ("empty", ["holds no data set"]),
    ("cifar-only", ["MNIST not found", "does not fall back"]),
])
def test_moecl_data_set_but_missing_or_empty_is_refused(capsys, tmp_path, monkeypatch, layout, words):
    _never_run(monkeypatch)
    data = tmp_path / "data"
    if layout == "file":
        data.write_text("x")
    elif layout == "empty":
        data.mkdir()
    elif layout == "cifar-only":
        (data / "cifar-10-batches-py").mkdir(parents=True)
    monkeypatch.setenv("MOECL_DATA", str(data))
    out = tmp_path / "out"
    assert cli.main(["run", "deep-methods", "--out", str(out)]) == 1
    line = error_line(capsys)
    assert line.startswith("moecl: error: cannot read the data: ") and str(data) in line
    for word in words:
        assert word in line
    assert not out.exists()


def test_the_fallback_is_announced_and_recorded(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("MOECL_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # ~/.cache/moecl: no MNIST

    def fake(name, **kwargs):
        return {"experiment": name, "scale": "ci", "seed": 0, "replicates": 2, "rounds": 10,
                "source": "scikit-learn digits"}, {"x": np.zeros(2)}

    monkeypatch.setattr(cli, "run_experiment", fake)
    assert cli.main(["run", "deep-methods", "--out", str(tmp_path), "--no-progress"]) == 0
    path = tmp_path / "deep-methods-ci-seed0-data=sklearn-digits.npz"
    assert capsys.readouterr().out.strip() == str(path)
    assert load_results(path)[0]["data_fallback"] == "sklearn-digits"


@pytest.mark.parametrize("stream", ["digits", "cifar10"])
def test_unreadable_data_exits_1_with_the_loaders_real_exceptions(capsys, tmp_path, monkeypatch, stream):
    """A truncated MNIST (DataError from the loader) and an absent CIFAR-10 (FileNotFoundError)."""
    data = tmp_path / "data"
    _mnist_files(data / "mnist", damage=(stream == "digits"))
    monkeypatch.setenv("MOECL_DATA", str(data))
    out = tmp_path / "out"
    argv = ["run", "deep-methods", "--set", f"stream={stream}", "--out", str(out), "--no-progress"]
    assert cli.main(argv) == 1
    line = error_line(capsys)
    assert line.startswith("moecl: error: cannot read the data: ")
    assert ("train-images-idx3-ubyte.gz" if stream == "digits" else "cifar-10-batches-py") in line
    assert list(out.iterdir()) == []


# --------------------------------------------------------------------------- the output directory (item 10)


@pytest.mark.parametrize("kind", ["file", "under-a-file", "unwritable"])
def test_a_bad_out_is_reported_before_the_run(capsys, tmp_path, monkeypatch, kind):
    _never_run(monkeypatch)
    (tmp_path / "plain").write_text("x")
    out = {"file": tmp_path / "plain", "under-a-file": tmp_path / "plain" / "sub",
           "unwritable": Path("/proc/moecl-cannot-write-here")}[kind]
    assert cli.main(["run", "termination", "--out", str(out)]) == 1
    line = error_line(capsys)
    assert line.startswith("moecl: error: cannot write results: --out ") and str(out) in line


# --------------------------------------------------------------------------- memory up front (item 12)


def test_a_run_that_cannot_fit_in_memory_is_refused_with_the_estimate(capsys, tmp_path):
    argv = ["run", "termination", "--replicates", "10000000", "--out", str(tmp_path), "--no-progress"]
    assert cli.main(argv) == 2
    line = error_line(capsys)
    assert "needs about" in line and "TB" in line and "R=10000000" in line and "--replicates" in line
    assert list(tmp_path.iterdir()) == []


def test_memory_estimate_follows_the_shape(monkeypatch):
    config = moecl.Config(T=1000)
    one = limits.estimate_bytes(config, 100)
    assert limits.estimate_bytes(config, 200) > 1.9 * one
    assert limits.estimate_bytes(config.replace(T=4000), 100) > 2 * one
    assert limits.estimate_bytes(config.replace(M=32), 100) > 1.5 * one  # records grow 2.9x, the rest less
    per_round = record_bytes_per_round(config)  # the records' one declaration
    assert 100 * 1000 * per_round < one < 4 * 100 * 1000 * per_round
    with pytest.raises(limits.RunLimitError, match="needs about"):
        limits.check_memory(config, 100, available=one // 2)
    monkeypatch.setenv(limits.MEMORY_ENV, str(one // 2))
    with pytest.raises(limits.RunLimitError, match="needs about"):
        limits.check_memory(config, 100)


def test_simulate_refuses_a_run_that_cannot_fit_before_allocating(monkeypatch):
    monkeypatch.setenv(limits.MEMORY_ENV, "1e6")
    config = moecl.Config(T=100)
    with pytest.raises(limits.RunLimitError, match=r"needs about .*R=50 replicates x T=100 rounds"):
        moecl.simulate(config, replicates=50)
    with pytest.raises(limits.RunLimitError, match=r"R=100 replicates"):
        moecl.simulate_many([config, config.replace(sigma0=0.2)], replicates=50)
    moecl.simulate(config, replicates=2)  # a run that fits is not touched


def test_a_small_run_stored_under_the_preset_name_is_caught_before_the_run(capsys, tmp_path, monkeypatch):
    """A file named like the preset (e.g. written by an older moecl) whose header has R = 2."""
    _never_run(monkeypatch)
    stored = tmp_path / "termination-paper-seed0.npz"
    save_results(stored, {"experiment": "termination", "scale": "paper", "seed": 0, "replicates": 2}, {"x": [1]})
    assert cli.main(["run", "termination", "--scale", "paper", "--out", str(tmp_path)]) == 1
    line = error_line(capsys)
    assert "replicates differs" in line and "nothing run" in line
