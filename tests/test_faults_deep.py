"""Deep runs checked before they start, and stopped when their losses turn non-finite (issue 25, defect 2)."""

from __future__ import annotations

import numpy as np
import pytest

from moecl import deep
from moecl.deep import engine, limits, training
from moecl.deep.streams import Task, TaskStream
from moecl.limits import RunLimitError
from small_runs import split_digits_stream, tiny


@pytest.mark.parametrize("field, value", [
    ("width", 10**9), ("lr", 1e300), ("lr", float("inf")), ("lr", float("nan")), ("samples_per_round", 10**12),
    ("M", 10**6), ("T", 10**9), ("epochs", 10**7), ("batch_size", 10**9), ("gate_dim", 10**9),
    ("test_samples", 10**12), ("eta", 1e300), ("Gamma", float("inf")), ("seed_distillation", 1e200),
])
def test_absurd_settings_are_one_line(field, value):
    with pytest.raises(ValueError) as error:
        tiny(**{field: value})
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{field}=")


def test_the_book_settings_are_accepted():
    tiny(lr=1.0, width=64, Gamma=1e9, M=32, T=4000, batch_size=1000, eta=1e5)


def test_a_run_that_cannot_fit_is_refused_before_any_work(monkeypatch):
    stream = split_digits_stream()
    monkeypatch.setenv("MOECL_MEMORY_LIMIT", str(10**5))
    monkeypatch.setattr(engine, "train", lambda *a, **k: pytest.fail("a refused run trained"))
    with pytest.raises(RunLimitError) as error:
        deep.run(tiny(), stream, seed=[0, 1])
    message = str(error.value)
    assert "\n" not in message and "needs about" in message and "2 seed(s)" in message


def test_too_many_seeds_are_refused_before_any_work(monkeypatch):
    monkeypatch.setattr(engine, "train", lambda *a, **k: pytest.fail("a refused run trained"))
    with pytest.raises(RunLimitError, match="at most 10,000"):
        deep.run(tiny(), split_digits_stream(), seed=list(range(limits.MAX_SEEDS + 1)))


def test_the_estimate_grows_with_seeds_experts_and_width():
    stream = split_digits_stream()
    base = limits.estimate_bytes(tiny(), stream, 2)["host"]
    assert limits.estimate_bytes(tiny(), stream, 4)["host"] > 1.9 * base * 0.9
    assert limits.estimate_bytes(tiny(M=8), stream, 2)["host"] > base
    assert limits.estimate_bytes(tiny(width=64), stream, 2)["host"] > 10 * base
    assert limits.estimate_bytes(tiny(width=4096), stream, 2)["host"] > 10**10  # what width=1e9 hinted at
    assert base < 50 * 10**6  # a unit-test run is not refused on a small machine


def _poisoned(stream, task: int) -> TaskStream:
    """The stream with one task's training images scaled by infinity: its losses are NaN."""
    tasks = list(stream.tasks)
    with np.errstate(invalid="ignore"):  # 0 x inf: NaN pixels
        poisoned = tasks[task].train_images * np.float32(np.inf)
    tasks[task] = Task(**{**tasks[task].__dict__, "train_images": poisoned})
    return TaskStream(**{**stream.__dict__, "tasks": tuple(tasks)})


@pytest.mark.parametrize("seeds", [0, [0, 1]])
def test_non_finite_losses_stop_the_run_naming_the_round(seeds):
    stream = _poisoned(split_digits_stream(), task=1)
    config = tiny(method="finetune", M=1, lr=1e-3)
    with pytest.raises(training.NonFiniteLossError) as error:
        deep.run(config, stream, seed=seeds)
    message = str(error.value)
    assert "\n" not in message and "in round 2 of 5" in message and "lr=0.001" in message
