"""The command line: listing, running, and one-line errors with exit status 2."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import moecl
from moecl import cli
from moecl.experiments import EXPERIMENTS
from moecl.results import load_results, make_header
from small_runs import error_line


def test_list(capsys):
    assert cli.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(EXPERIMENTS)
    for line, (name, entry) in zip(lines, EXPERIMENTS.items()):
        assert line.startswith(name + " ") and line.endswith(entry.description)


@pytest.mark.parametrize(
    "argv, names",
    [
        (["run", "nope"], ["unknown experiment", "'nope'"]),
        (["run", "termination", "--scale", "huge"], ["--scale", "'huge'"]),
        (["run", "termination", "--seed", "-1"], ["--seed", "-1"]),
        (["run", "termination", "--seed=-7"], ["--seed", "-7"]),
        (["run", "termination", "--seed", "x"], ["--seed", "'x'"]),
        (["run", "termination", "--replicates", "1"], ["--replicates", "at least 2"]),
        (["run", "termination", "--bogus"], ["unrecognized arguments", "--bogus"]),
        (["run"], ["NAME"]),
        ([], ["COMMAND"]),
    ],
)
def test_argument_errors(capsys, tmp_path, monkeypatch, argv, names):
    monkeypatch.chdir(tmp_path)  # the default --out is relative: nothing may appear here
    assert cli.main(argv) == 2
    line = error_line(capsys)
    assert line.startswith("moecl")
    for name in names:
        assert name in line
    assert list(tmp_path.iterdir()) == []


def test_value_errors_become_one_line(capsys, tmp_path, monkeypatch):
    def reject(*args, **kwargs):
        raise ValueError("M=0 must be\nat least 1")

    monkeypatch.setattr(cli, "run_experiment", reject)
    assert cli.main(["run", "termination", "--out", str(tmp_path)]) == 2
    assert error_line(capsys) == "moecl: error: M=0 must be at least 1"
    assert list(tmp_path.iterdir()) == []


def test_run_writes_the_results_file(capsys, tmp_path):
    out = tmp_path / "results"
    argv = ["run", "specialisation", "--seed", "3", "--replicates", "2", "--out", str(out)]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    path = out / "specialisation-ci-seed3-R2.npz"  # R = 2 differs from the preset's 40
    assert captured.out == f"{path}\n"
    assert "[1/1] M8" in captured.err  # which configuration is running
    header, arrays = load_results(path)
    assert (header["experiment"], header["scale"], header["seed"], header["replicates"]) == (
        "specialisation", "ci", 3, 2)
    assert header["moecl_version"] == moecl.__version__
    assert header["configs"]["M8"]["T"] == header["rounds"] == 300
    assert arrays["M8/closest_truth"].shape == (300, 8)
    assert [p.name for p in out.iterdir()] == [path.name]


def test_no_progress_is_quiet(capsys, tmp_path):
    argv = ["run", "specialisation", "--replicates", "2", "--out", str(tmp_path), "--no-progress"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out.strip() == cli.result_path(tmp_path, "specialisation", "ci", 0, replicates=2)


def test_run_help_documents_every_option(capsys):
    assert cli.main(["run", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("NAME", "--scale", "ci", "paper", "--seed", "--replicates", "--out", "--set", "--device",
                   "--no-progress"):
        assert option in text
    for name in EXPERIMENTS:
        assert name in text


def test_python_dash_m_help():
    root = Path(moecl.__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-m", "moecl", "--help"], capture_output=True, text=True, env=env,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "usage: moecl" in done.stdout and "run" in done.stdout and "list" in done.stdout


def test_result_path():
    assert cli.result_path("results", "blind-gate", "paper", 12) == os.path.join("results", "blind-gate-paper-seed12.npz")


def test_set_overrides_config_fields(capsys, tmp_path):
    argv = ["run", "specialisation", "--replicates", "2", "--out", str(tmp_path), "--no-progress",
            "--set", "expert_update=gradient", "--set", "gradient_steps=3"]
    assert cli.main(argv) == 0
    path = tmp_path / "specialisation-ci-seed0-R2-expert_update=gradient-gradient_steps=3.npz"
    assert capsys.readouterr().out == f"{path}\n"
    header, _ = load_results(path)
    assert header["overrides"] == {"expert_update": "gradient", "gradient_steps": 3}
    assert header["configs"]["M8"]["expert_update"] == "gradient"
    assert header["configs"]["M8"]["gradient_steps"] == 3


@pytest.mark.parametrize(
    "override, words",
    [
        ("M=3", ["forgetting-vs-experts sets M itself", "cannot be overridden"]),
        ("colour=red", ["colour: not a field of moecl.Config"]),
        ("eta=-1", ["eta=-1"]),
        ("balance_loss=kl", ["balance_loss='kl'"]),
    ],
)
def test_bad_overrides_exit_2(capsys, tmp_path, override, words):
    argv = ["run", "forgetting-vs-experts", "--replicates", "2", "--out", str(tmp_path), "--no-progress",
            "--set", override]
    assert cli.main(argv) == 2
    line = error_line(capsys)
    for word in words:
        assert word in line
    assert list(tmp_path.iterdir()) == []


def test_set_needs_field_equals_value(capsys):
    assert cli.main(["run", "termination", "--set", "entropy"]) == 2
    assert "FIELD=VALUE" in capsys.readouterr().err


def test_device_reaches_the_deep_experiments_only(capsys, tmp_path, monkeypatch):
    seen = {}

    def record(name, **kwargs):
        seen[name] = kwargs["overrides"]
        raise ValueError("stop here")

    monkeypatch.setattr(cli, "run_experiment", record)
    assert cli.main(["run", "deep-methods", "--device", "cuda", "--out", str(tmp_path)]) == 2
    checkpoint = seen["deep-methods"].pop("checkpoint")  # deep-methods resumes from <results file>.ckpt
    assert checkpoint.endswith(".npz.ckpt") and seen == {"deep-methods": {"device": "cuda"}}
    capsys.readouterr()
    assert cli.main(["run", "termination", "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "--device applies to the deep experiments" in error_line(capsys)
    assert cli.main(["run", "deep-methods", "--device", "cpu", "--set", "device=cuda", "--out", str(tmp_path)]) == 2
    assert "give the device once" in error_line(capsys)
    assert cli.main(["run", "deep-methods", "--device", "tpu"]) == 2
    assert "tpu" in error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_deep_checkpoints_are_kept_until_the_results_file_is_written(capsys, tmp_path, monkeypatch):
    """An interrupted deep-methods run keeps its checkpoint folder (a rerun resumes from it); a run
    that writes its results file removes the folder, whose content the file now holds."""
    folders = []

    def interrupted(name, **kwargs):
        folder = kwargs["overrides"]["checkpoint"]
        os.makedirs(folder, exist_ok=True)
        open(os.path.join(folder, "finetune.safetensors"), "wb").close()
        folders.append(folder)
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_experiment", interrupted)
    assert cli.main(["run", "deep-methods", "--out", str(tmp_path), "--no-progress"]) == 130
    assert os.listdir(folders[0]) == ["finetune.safetensors"]

    def finished(name, **kwargs):
        assert kwargs["overrides"]["checkpoint"] == folders[0]  # the rerun is pointed at the same folder
        header = make_header("deep-methods", "ci", 0, 2, wall_time=1.0, rounds=10)
        return header, {"finetune/concentration": np.ones(2)}

    monkeypatch.setattr(cli, "run_experiment", finished)
    capsys.readouterr()
    assert cli.main(["run", "deep-methods", "--out", str(tmp_path), "--no-progress"]) == 0
    written = capsys.readouterr().out.strip()
    assert os.path.isfile(written) and not os.path.exists(folders[0])


def test_unreadable_data_is_one_line_with_status_1(capsys, tmp_path, monkeypatch):
    def corrupt(*args, **kwargs):
        raise OSError("data_batch_1: truncated file")

    monkeypatch.setattr(cli, "run_experiment", corrupt)
    assert cli.main(["run", "deep-methods", "--out", str(tmp_path)]) == 1
    assert error_line(capsys) == "moecl: error: cannot read the data: data_batch_1: truncated file"
    assert list(tmp_path.iterdir()) == []
