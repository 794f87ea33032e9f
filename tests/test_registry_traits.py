"""The command line asks the registry's traits of an experiment (device, data, checkpoints), never its
name (issue 26): an experiment registered with a trait gets the behaviour, whatever it is called."""

from __future__ import annotations

import numpy as np
import pytest

from moecl import cli
from moecl.experiments import EXPERIMENTS, Scale
from moecl.experiments.registry import Experiment
from moecl.results import make_header


def test_the_registered_traits():
    for name in ("deep-methods", "deep-paper"):
        deep = EXPERIMENTS[name]
        assert deep.device and deep.needs_data and deep.checkpoints
    linear = [entry for name, entry in EXPERIMENTS.items() if name not in ("deep-methods", "deep-paper")]
    assert linear and not any(entry.device or entry.needs_data or entry.checkpoints for entry in linear)


def _register(monkeypatch, calls, **traits):
    def run(scale, seed, replicates=None, progress=False, rounds=None, overrides=None):
        calls.append(dict(overrides or {}))
        return make_header("toy", scale, seed, 2, 0.0), {"x": np.arange(3.0)}

    monkeypatch.setitem(EXPERIMENTS, "toy", Experiment("toy", "a toy", run, {}, {"ci": Scale(2, 2)}, **traits))


@pytest.mark.parametrize("traits", [{}, {"device": True}, {"checkpoints": True}, {"device": True, "checkpoints": True}])
def test_device_and_checkpoint_follow_the_traits(monkeypatch, tmp_path, capsys, traits):
    calls: list = []
    _register(monkeypatch, calls, **traits)
    status = cli.main(["run", "toy", "--out", str(tmp_path), "--no-progress", "--device", "cpu"])
    if not traits.get("device"):
        assert status == 2 and "--device applies to the deep experiments" in capsys.readouterr().err
        assert not calls
        return
    assert status == 0, capsys.readouterr().err
    (given,) = calls
    assert given["device"] == "cpu"
    path = capsys.readouterr().out.strip()
    assert given.get("checkpoint") == (path + ".ckpt" if traits.get("checkpoints") else None)


def test_the_data_directory_is_checked_only_for_an_experiment_that_needs_data(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MOECL_DATA", str(tmp_path / "absent"))
    calls: list = []
    _register(monkeypatch, calls)
    assert cli.main(["run", "toy", "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    _register(monkeypatch, calls, needs_data=True)
    assert cli.main(["run", "toy", "--out", str(tmp_path / "out2"), "--no-progress"]) == 1
    assert "cannot read the data" in capsys.readouterr().err
    assert len(calls) == 1
