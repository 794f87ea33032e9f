"""Checkpoints of deep runs: no code runs from a crafted file, the identity covers the run, damage is
reported in one error naming the file, SIGTERM leaves no temporary file."""

import dataclasses
import json
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from moecl import deep
from moecl.deep import checkpoint as ck
from moecl.deep import datasets, streams

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def stream():
    return streams.one_vs_rest_tasks(datasets.load_sklearn_digits(), samples_per_task=40, test_samples_per_task=20,
                                     seed=0)


def small(**changes):
    base = dict(M=2, T=4, samples_per_round=16, epochs=1, batch_size=8, width=4, device="cpu", T1=2, test_samples=20)
    base.update(changes)
    return deep.DeepConfig(**base)


@pytest.fixture(scope="module")
def saved(stream, tmp_path_factory):
    """A finished run's checkpoint (its bytes) and its records."""
    path = tmp_path_factory.mktemp("ck") / "run.ckpt"
    records = deep.run(small(), stream, seed=1, checkpoint=path, checkpoint_every=2)
    return path.read_bytes(), records


def rewrite(path, state, tensors):
    """Write a checkpoint with edited contents and a valid checksum (a well-formed but wrong file)."""
    from safetensors.torch import save

    state_json = json.dumps(state, sort_keys=True)
    path.write_bytes(save(tensors, metadata={"format": ck.FORMAT, "version": str(ck.VERSION), "state": state_json,
                                             "checksum": ck._checksum(state_json, tensors)}))


class Payload:
    """A pickle that, when loaded, creates a marker file (what an attacker's checkpoint would do)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_a_malicious_pickle_runs_nothing(stream, tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "run.ckpt"
    with open(path, "wb") as file:
        (torch.save if writer == "torch.save" else pickle.dump)({"state": Payload(marker)}, file)
    with pytest.raises(ck.CheckpointError, match=r"run\.ckpt.*can be deleted"):
        deep.run(small(), stream, seed=1, checkpoint=path)
    assert not marker.exists()


def test_resume_from_the_file_equals_the_run(stream, saved, tmp_path):
    data, records = saved
    path = tmp_path / "run.ckpt"
    path.write_bytes(data)
    again = deep.run(small(), stream, seed=1, checkpoint=path)  # finished: everything comes from the file
    for name in ("tasks", "experts", "test_loss", "gate_values", "locality", "current_experts"):
        np.testing.assert_array_equal(getattr(again, name), getattr(records, name), err_msg=name)


def test_identity_covers_stream_seed_sizes_and_data(stream, saved, tmp_path):
    data, _ = saved
    path = tmp_path / "run.ckpt"
    path.write_bytes(data)
    other_seed = streams.one_vs_rest_tasks(datasets.load_sklearn_digits(), samples_per_task=40,
                                           test_samples_per_task=20, seed=5)
    other_size = streams.one_vs_rest_tasks(datasets.load_sklearn_digits(), samples_per_task=42,
                                           test_samples_per_task=20, seed=0)
    task = stream[1]
    flipped = dataclasses.replace(task, train_images=np.array(task.train_images))
    flipped.train_images.flags.writeable = True
    flipped.train_images[0, 0, 0, 0] += 0.25
    other_data = dataclasses.replace(stream, tasks=(stream[0], flipped, stream[2]))
    assert repr(other_data) == repr(stream) and repr(other_seed) == repr(stream)  # the old identity saw none of it
    for other, field in ((other_seed, "stream.seed"), (other_size, "stream.sizes"), (other_data, "stream.data_hash")):
        with pytest.raises(ValueError, match=r"belongs to another run \(stream\.") as caught:
            deep.run(small(), other, seed=1, checkpoint=path)
        assert field in str(caught.value) or "stream.data_hash" in str(caught.value)
    for config, seed, field in ((small(lr=0.01), 1, "config.lr"), (small(), 2, "seeds")):
        with pytest.raises(ValueError, match=rf"\({field} is"):
            deep.run(config, stream, seed=seed, checkpoint=path)
    assert ck.run_identity(small(), [1], stream)["format_version"] == ck.VERSION


def damaged(data: bytes, how: str, tmp_path) -> Path:
    path = tmp_path / "run.ckpt"
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "text":
        path.write_text("this is not a checkpoint\n" * 10)
    elif how.startswith("flipped"):
        position = {"flipped-tensor": len(data) - 10, "flipped-state": data.index(b'\\"t\\": ') + 7}[how]
        corrupt = bytearray(data)
        corrupt[position] ^= 0x01
        path.write_bytes(bytes(corrupt))
    else:
        state, tensors = ck.read_checkpoint(_write(tmp_path / "good.ckpt", data))
        if how == "missing-key":
            del state["rng"]
        elif how == "t-outside":
            state["t"] = 99
        elif how == "t-negative":
            state["t"] = -1
        elif how == "future-version":
            path.write_bytes(data.replace(b'"version":"1"', b'"version":"9"'))
            return path
        rewrite(path, state, tensors)
    return path


def _write(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("how", ["empty", "truncated", "text", "flipped-tensor", "flipped-state", "missing-key",
                                 "t-outside", "t-negative", "future-version"])
def test_damaged_checkpoints_give_one_error_naming_the_file(stream, saved, tmp_path, how):
    path = damaged(saved[0], how, tmp_path)
    with pytest.raises(ck.CheckpointError) as caught:
        deep.run(small(), stream, seed=1, checkpoint=path)
    message = str(caught.value)
    assert str(path) in message and "can be deleted" in message and "\n" not in message
    assert isinstance(caught.value, OSError)  # the command line: status 1, "cannot read"


def test_a_stray_temporary_file_from_a_crash_does_not_matter(stream, tmp_path):
    (tmp_path / ".checkpoint-abc123.tmp").write_bytes(b"half a checkpoint")
    path = tmp_path / "run.ckpt"
    deep.run(small(), stream, seed=1, checkpoint=path)
    assert ck.read_checkpoint(path)[0]["t"] == small().T


def test_sigterm_while_writing_leaves_no_temporary_file(tmp_path):
    # The child writes a checkpoint every round, slowed down inside the write; SIGTERM arrives while a
    # temporary file exists. The child must exit (status 143) and leave only complete files.
    script = textwrap.dedent(f"""
        import os, sys, time
        import torch
        torch.set_num_threads(1)
        from moecl import deep
        from moecl.deep import checkpoint, datasets, streams
        real_fsync = os.fsync
        def slow_fsync(fd):
            print("writing", flush=True)
            time.sleep(30)
            real_fsync(fd)
        checkpoint.os.fsync = slow_fsync
        stream = streams.one_vs_rest_tasks(datasets.load_sklearn_digits(), samples_per_task=40,
                                           test_samples_per_task=20, seed=0)
        config = deep.DeepConfig(M=2, T=4, samples_per_round=16, epochs=1, batch_size=8, width=4, device="cpu",
                                 T1=2, test_samples=20)
        deep.run(config, stream, seed=1, checkpoint={str(tmp_path / 'run.ckpt')!r}, checkpoint_every=1)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "writing"
        assert any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
        child.send_signal(signal.SIGTERM)
        status = child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert status == 128 + signal.SIGTERM
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
