"""Every registered deep method passes the same checks (as scikit-learn's ``check_estimator`` runs every
estimator): a checkpoint round-trip and a resumed run equal to an uninterrupted one, seeds in a batch equal
to the same seeds alone (to float32 rounding), and its records filled as it declares
(`moecl.deep.methods.Method.optional_records`). A new method registered in `METHOD_CLASSES` is checked
without touching this file. And the loop never asks which method it runs (issue 26)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from moecl import deep
from moecl.deep import methods
from moecl.deep.checkpoint import read_checkpoint
from small_runs import split_digits_stream

T = 4
#: Every optional record a method may declare.
OPTIONAL = sorted({name for cls in methods.METHOD_CLASSES.values() for name in cls.optional_records})
#: Records compared between a batch and its seeds alone (floats to float32 rounding, see test_deep).
FLOATS = ("test_loss", "test_accuracy", "gate_values", "change_norm", "locality")


@pytest.fixture(scope="module")
def stream():
    return split_digits_stream()  # three two-class tasks, class-incremental labels


def tiny(name: str) -> deep.DeepConfig:
    M = 1 if methods.METHOD_CLASSES[name].single_network else 2
    return deep.DeepConfig(method=name, M=M, T=T, T1=2, samples_per_round=16, epochs=1, batch_size=8, width=4,
                           device="cpu", task_order="cyclic", joint_refit_every=2, test_samples=20)


def _fields(records) -> dict:
    return {f.name: getattr(records, f.name) for f in dataclasses.fields(records) if f.name != "wall_time"}


def _assert_same(a, b, where: str) -> None:
    for name, value in _fields(a).items():
        other = getattr(b, name)
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, other, err_msg=f"{where}: {name}")
        else:
            assert value == other, f"{where}: {name}"


@pytest.mark.parametrize("name", methods.METHODS)
def test_checkpoint_round_trip_and_resume_equal_the_uninterrupted_run(name, stream, tmp_path, interrupt_training):
    config = tiny(name)
    whole = deep.run(config, stream, seed=[2, 5])
    path = tmp_path / f"{name}.safetensors"
    interrupt_training(T)  # stopped in the last round, after the checkpoint of round 2
    with pytest.raises(KeyboardInterrupt):
        deep.run(config, stream, seed=[2, 5], checkpoint=path, checkpoint_every=2)
    interrupt_training(None)
    assert read_checkpoint(path)[0]["t"] == 2
    resumed = deep.run(config, stream, seed=[2, 5], checkpoint=path, checkpoint_every=2)
    for k in range(2):
        _assert_same(resumed[k], whole[k], f"{name}, replicate {k}")
    again = deep.run(config, stream, seed=[2, 5], checkpoint=path)  # a finished checkpoint: nothing left to run
    _assert_same(again[1], whole[1], f"{name}, from the final checkpoint")


@pytest.mark.parametrize("name", methods.METHODS)
def test_seeds_in_a_batch_equal_the_same_seeds_alone(name, stream):
    config = tiny(name)
    batched = deep.run(config, stream, seed=[3, 7])
    for inside, seed in zip(batched, [3, 7]):
        alone = deep.run(config, stream, seed=seed)
        for field in ("tasks", "experts", "current_experts"):
            np.testing.assert_array_equal(getattr(inside, field), getattr(alone, field), err_msg=f"{name}: {field}")
        assert inside.termination_round == alone.termination_round
        for field in FLOATS + tuple(OPTIONAL) + ("class_loss", "class_accuracy"):
            value = getattr(alone, field)
            if value is not None:  # 1e-4 relative: float32 rounding amplified by training (test_deep)
                np.testing.assert_allclose(getattr(inside, field), value, rtol=1e-4, atol=1e-6,
                                           err_msg=f"{name}: {field}")


@pytest.mark.parametrize("name", methods.METHODS)
def test_records_are_filled_as_declared(name, stream):
    config = tiny(name)
    records = deep.run(config, stream, seed=1)
    declared = methods.METHOD_CLASSES[name].optional_records
    assert records.method == name
    for field in OPTIONAL:
        value = getattr(records, field)
        if field in declared:
            assert value.shape == (T, stream.N)
            assert np.isfinite(value[-1]).all(), f"{name} declares {field} but left its last row unfilled"
        else:
            assert value is None, f"{name} fills {field}, which it does not declare"
    assert records.current_experts.shape == (T, stream.N) and set(np.unique(records.current_experts)) <= set(
        range(config.M))
    for field in ("class_loss", "class_accuracy"):  # a class-incremental stream: every method predicts over
        assert np.isfinite(getattr(records, field)[-1]).all()  # all classes seen, every type seen by round T
    assert ((records.experts >= 0) & (records.experts < config.M)).all()
    assert np.isfinite(records.test_loss).all() and np.isfinite(records.change_norm).all()


def test_the_loop_never_asks_which_method_it_runs():
    package = Path(methods.__file__).resolve().parents[1]
    asking = [f"{path.relative_to(package)}:{number}" for path in sorted(package.rglob("*.py"))
              if path.name != "methods.py"
              for number, line in enumerate(path.read_text().splitlines(), 1)
              if re.search(r"config\.method\s*(==|!=)", line)]
    assert not asking, "config.method tested outside moecl/deep/methods.py: " + ", ".join(asking)


def test_every_method_is_registered_under_its_name():
    assert methods.METHODS == tuple(methods.METHOD_CLASSES)
    for name, cls in methods.METHOD_CLASSES.items():
        assert cls.name == name and issubclass(cls, methods.Method)
    assert set(methods.SINGLE_NETWORK_METHODS) == {"finetune", "replay", "joint"}
