"""Checkpoints whose structure is wrong though their checksum holds, and files that are no checkpoint
at all (issue 25, defect 7): refused in one `CheckpointError` line naming the file."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from moecl import deep
from moecl.deep import checkpoint as ck
from moecl.deep import datasets, streams
from test_deep_checkpoint import rewrite, small

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def stream():
    return streams.one_vs_rest_tasks(datasets.load_sklearn_digits(), samples_per_task=40, test_samples_per_task=20,
                                     seed=0)


@pytest.fixture(scope="module")
def halfway(stream, tmp_path_factory):
    """A two-seed run's last checkpoint (its bytes; a T=2 run relabelled T=4 is itself refused: its records
    have 2 rows, the run's 4)."""
    path = tmp_path_factory.mktemp("ck") / "run.ckpt"
    deep.run(small(), stream, seed=[1, 2], checkpoint=path)
    return path.read_bytes()


def _refused(stream, path, *words):
    with pytest.raises(ck.CheckpointError) as caught:
        deep.run(small(), stream, seed=[1, 2], checkpoint=path)
    message = str(caught.value)
    assert str(path) in message and "can be deleted" in message and "\n" not in message
    for word in words:
        assert word in message, message


def _edited(tmp_path, data, edit):
    path = tmp_path / "run.ckpt"
    path.write_bytes(data)
    state, tensors = ck.read_checkpoint(path)
    edit(state, tensors)
    rewrite(path, state, tensors)  # the checksum is recomputed: only the structure check can tell
    return path


def test_the_untouched_checkpoint_resumes(stream, halfway, tmp_path):
    path = tmp_path / "run.ckpt"
    path.write_bytes(halfway)
    resumed = deep.run(small(), stream, seed=[1, 2], checkpoint=path)
    whole = deep.run(small(), stream, seed=[1, 2])
    for a, b in zip(resumed, whole):
        np.testing.assert_allclose(a.test_loss, b.test_loss, rtol=1e-5)


def test_a_removed_generator_state_is_refused(stream, halfway, tmp_path):
    """The audit's case: one RNG state removed, the checksum recomputed; it resumed with other numbers."""
    path = _edited(tmp_path, halfway, lambda state, tensors: state["rng"].pop())
    _refused(stream, path, "'rng'", "for 2 replicates")


def test_a_generator_state_of_another_generator_is_refused(stream, halfway, tmp_path):
    def edit(state, tensors):
        state["rng"][1] = {"bit_generator": "MT19937", "state": {"key": [0] * 624, "pos": 0}}
    _refused(stream, _edited(tmp_path, halfway, edit), "generator state")


def test_a_records_array_of_another_shape_is_refused(stream, halfway, tmp_path):
    def edit(state, tensors):
        key = state["replicates"][0]["__dict__"]
        records = dict(key)["records"]["__records__"]["test_loss"]["__array__"]
        tensors[records] = tensors[records][:1].clone()
    _refused(stream, _edited(tmp_path, halfway, edit), "test_loss")


def test_a_removed_expert_tensor_is_refused(stream, halfway, tmp_path):
    def edit(state, tensors):
        state["models"][1][0]["__dict__"].pop()
    _refused(stream, _edited(tmp_path, halfway, edit), "expert 0")


def test_a_link_to_an_endless_device_is_refused_unread(stream, tmp_path):
    path = tmp_path / "run.ckpt"
    os.symlink("/dev/zero", path)
    started = time.perf_counter()
    _refused(stream, path, "not a regular file")
    assert time.perf_counter() - started < 30


def test_a_file_larger_than_the_run_can_write_is_refused_unread(stream, halfway, tmp_path):
    path = tmp_path / "run.ckpt"
    with open(path, "wb") as file:
        file.write(halfway)
        file.truncate(10**11)  # 100 GB, sparse: nothing is written
    _refused(stream, path, "more than this run's checkpoints can be")
