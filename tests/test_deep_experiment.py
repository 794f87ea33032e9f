"""The ``deep-methods`` experiment: --set T and every DeepConfig field, too-short runs refused, methods
subsets, and a checkpoint folder from which a rerun resumes."""

import numpy as np
import pytest

from moecl import experiments
from moecl.deep import datasets

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

TINY = {"stream": "digits", "epochs": 1, "samples_per_round": 8, "test_samples": 10, "width": 4,
        "batch_size": 8}


@pytest.fixture
def sklearn_digits(monkeypatch, tmp_path):
    """The digits stream from scikit-learn's digits (no MNIST in an empty data directory is refused, so
    the data variable is unset)."""
    monkeypatch.delenv(datasets.DATA_ENV, raising=False)
    monkeypatch.setattr(datasets, "find_mnist", lambda *args, **kwargs: None)


def test_too_short_long_runs_are_refused_in_one_line():
    with pytest.raises(ValueError, match=r"T=20 is too short to test termination: .* T >= 5 x T1 = 135 "
                                         r"\(T1 = 27 for M = 8\)"):
        experiments.run_experiment("deep-methods", scale="long", overrides={"T": 20})
    with pytest.raises(ValueError, match=r"T=60 is too short.*T1 = 14 for M = 4"):
        experiments.run_experiment("deep-methods", scale="long",
                                   overrides={"T": 60, "methods": "finetune,gate-M4"})
    with pytest.raises(ValueError, match="methods='gate-M3'"):
        experiments.run_experiment("deep-methods", scale="long", overrides={"methods": "gate-M3"})
    with pytest.raises(ValueError, match="gate_input='pixels'"):
        experiments.run_experiment("deep-methods", scale="ci", overrides={"gate_input": "pixels"})


def test_set_T_any_field_and_resume_from_the_checkpoint(sklearn_digits, tmp_path):
    overrides = dict(TINY, T=70, methods="finetune,gate-M4", locality_signal="loss",
                     checkpoint=str(tmp_path / "run.ckpt"))
    header, arrays = experiments.run_experiment("deep-methods", scale="long", seed=2, replicates=2,
                                                overrides=dict(overrides))
    assert header["rounds"] == 70 and header["labels"] == ["finetune", "gate-M4"]
    config = header["configs"]["gate-M4"]
    assert (config["T"], config["locality_signal"], config["task_order"]) == (70, "loss", "random")
    assert sorted(p.name for p in (tmp_path / "run.ckpt").iterdir()) == ["finetune.safetensors",
                                                                        "gate-M4.safetensors"]
    assert arrays["gate-M4/task-current/accuracy_curve"].shape == (2, 70)
    assert arrays["gate-M4/termination_round"].shape == (2,)
    assert arrays["gate-M4/tasks"].shape == arrays["gate-M4/experts"].shape == (2, 70)  # the routing history
    assert set(np.unique(arrays["finetune/experts"])) == {0} and arrays["gate-M4/experts"].max() < 4
    # A rerun with the same arguments resumes from the finished checkpoints: the same numbers.
    again_header, again = experiments.run_experiment("deep-methods", scale="long", seed=2, replicates=2,
                                                     overrides=dict(overrides))
    for name, value in arrays.items():
        np.testing.assert_array_equal(again[name], value, err_msg=name)
