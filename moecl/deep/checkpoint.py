"""Checkpoints of a deep run: a format that cannot carry code, verified, restored only into the same run.

A checkpoint is one `safetensors <https://github.com/huggingface/safetensors>`_ file:
every tensor and numpy array of the run (the experts' weights, the methods' and
records' arrays) as a named tensor, and everything else (the round reached, numbers,
the generators' states, the run's identity) as JSON in the file's metadata. Neither
part is unpickled, so a crafted file can at worst be refused, never run code. A
SHA-256 checksum over the JSON and every tensor's bytes is stored with them and
verified on load (torch's own files have none), so a truncated, flipped or edited file
is refused with one error naming it and saying that it can be deleted
(`CheckpointError`).

Independently of the checksum (which anyone who edits a file can recompute), a
checkpoint must have the structure of the run it resumes: every replicate's state, every
array in it with the shape and dtype the run's own arrays have, every expert's tensors
(``load_state_dict``, strict, same dtypes), and one generator state per replicate, of the
same generator. A checkpoint must be a regular file (a link to ``/dev/zero`` is refused)
and no larger than the run's own checkpoints can be (`checkpoint_size_limit`); it is
never read past that size.

The identity (`run_identity`) covers everything that determines the run: the
configuration, the seeds, the stream's name, seed, scenario and sizes, a hash of its
task arrays, and the format version; a checkpoint of another run is refused in one line
that names what differs (ValueError).

Writes are atomic (a temporary file in the same folder, then ``os.replace``); the
temporary file is removed when the write fails or is interrupted, SIGTERM included
(`moecl.deep.engine.run_replicates` turns SIGTERM into an exception while it runs).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import stat
import struct

import numpy as np
import torch

from ..atomic import write_atomically
from ..errors import CheckpointError

#: Tag and version of the checkpoint format (version 1: safetensors + JSON metadata).
FORMAT = "moecl-deep-checkpoint"
VERSION = 1


def stream_identity(stream) -> dict:
    """What identifies a task stream: name, seed, scenario, outputs, image shape, source, sizes and
    a BLAKE2b hash of every task's image and label arrays."""
    digest = hashlib.blake2b(digest_size=20)
    sizes = []
    for task in stream:
        for array in (task.train_images, task.train_labels, task.test_images, task.test_labels):
            array = np.ascontiguousarray(array)
            digest.update(f"{array.dtype.str}{array.shape}".encode())
            digest.update(memoryview(array).cast("B"))
        sizes.append([int(len(task.train_labels)), int(len(task.test_labels))])
    return {"name": stream.name, "seed": int(getattr(stream, "seed", -1)), "scenario": stream.scenario,
            "N": int(stream.N), "outputs": int(stream.num_outputs), "image_shape": list(stream.image_shape),
            "source": stream.source, "sizes": sizes, "data_hash": digest.hexdigest()}


def run_identity(config, seeds, stream) -> dict:
    """The identity a checkpoint must match: format version, configuration, seeds and stream."""
    return _normalise({"format_version": VERSION, "config": dataclasses.asdict(config), "seeds": list(seeds),
                       "stream": stream_identity(stream)})


def _normalise(value):
    """``value`` as JSON would give it back (tuples become lists, ...)."""
    return json.loads(json.dumps(value))


# --------------------------------------------------------------------------- encoding


def _encode(value, key: str, tensors: dict):
    """A JSON-able tree of ``value``; numpy arrays and tensors go to ``tensors`` under ``key``."""
    from .records import RoundRecords

    if isinstance(value, np.ndarray):
        tensors[key] = torch.from_numpy(np.array(value, copy=True, order="C"))
        return {"__array__": key}
    if isinstance(value, torch.Tensor):
        tensors[key] = value.detach().cpu().clone().contiguous()
        return {"__tensor__": key}
    if isinstance(value, RoundRecords):
        return {"__records__": {f.name: _encode(getattr(value, f.name), f"{key}.{f.name}", tensors)
                                for f in dataclasses.fields(value)}}
    if isinstance(value, dict):
        if not all(isinstance(k, (str, int)) and not isinstance(k, bool) for k in value):
            raise TypeError(f"checkpoint keys must be str or int, got {list(value)!r}")
        return {"__dict__": [[k, _encode(v, f"{key}.{k}", tensors)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store {type(value).__name__} at {key} in a checkpoint")


def _decode(tree, tensors: dict):
    from .records import RoundRecords

    if isinstance(tree, list):
        return [_decode(v, tensors) for v in tree]
    if isinstance(tree, dict):
        if set(tree) == {"__array__"}:
            return tensors[tree["__array__"]].numpy().copy()
        if set(tree) == {"__tensor__"}:
            return tensors[tree["__tensor__"]]
        if set(tree) == {"__records__"}:
            return RoundRecords(**{k: _decode(v, tensors) for k, v in tree["__records__"].items()})
        if set(tree) == {"__dict__"}:
            return {k: _decode(v, tensors) for k, v in tree["__dict__"]}
        raise ValueError(f"unknown node {sorted(tree)}")
    return tree


def _checksum(state_json: str, tensors: dict) -> str:
    digest = hashlib.sha256(state_json.encode())
    for key in sorted(tensors):
        tensor = tensors[key].contiguous()
        digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


# --------------------------------------------------------------------------- save and restore


def save_checkpoint(path, identity, t, replicates) -> None:
    """Write the checkpoint atomically: a temporary file in the same folder, then rename."""
    from safetensors.torch import save

    tensors: dict = {}
    state = {
        "identity": identity,
        "t": int(t),
        "replicates": [_encode(dict(rep.state), f"state.{r}", tensors) for r, rep in enumerate(replicates)],
        "models": [[_encode(dict(model.state_dict()), f"model.{r}.{m}", tensors) for m, model in enumerate(rep.models)]
                   for r, rep in enumerate(replicates)],
        "rng": [rep.rng.bit_generator.state for rep in replicates],
    }
    state_json = json.dumps(state, sort_keys=True)
    data = save(tensors, metadata={"format": FORMAT, "version": str(VERSION), "state": state_json,
                                   "checksum": _checksum(state_json, tensors)})
    write_atomically(path, lambda stream: stream.write(data))


def read_checkpoint(path, max_bytes: int | None = None) -> tuple[dict, dict]:
    """(state, tensors) of a checkpoint file, verified; `CheckpointError` naming the path otherwise.

    The file must be a regular file (after links) of at most ``max_bytes`` bytes (None: no
    limit), and is never read past that size.
    """
    from safetensors.torch import load

    try:
        with open(path, "rb") as file:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise CheckpointError(path, "not a regular file (a device, pipe or folder, or a link to one)")
            if max_bytes is not None and info.st_size > max_bytes:
                raise CheckpointError(path, f"{info.st_size:,} bytes, more than this run's checkpoints can be "
                                            f"({max_bytes:,} bytes)")
            data = file.read() if max_bytes is None else file.read(max_bytes + 1)
    except CheckpointError:
        raise
    except OSError as error:
        raise CheckpointError(path, f"cannot be read: {error.strerror or error}") from None
    if max_bytes is not None and len(data) > max_bytes:
        raise CheckpointError(path, f"grew past this run's largest checkpoint ({max_bytes:,} bytes) while read")
    if len(data) < 8:
        raise CheckpointError(path, f"{len(data)} bytes: empty or truncated")
    (length,) = struct.unpack("<Q", data[:8])
    if length > len(data) - 8:
        raise CheckpointError(path, "truncated, or not a checkpoint")
    try:
        header = json.loads(data[8:8 + length])
        metadata = header["__metadata__"]
        assert metadata["format"] == FORMAT
    except Exception:
        raise CheckpointError(path, "not a moecl checkpoint (no safetensors header with its format tag)") from None
    try:
        version = int(metadata["version"])
    except (KeyError, ValueError):
        raise CheckpointError(path, "no format version") from None
    if version != VERSION:
        raise CheckpointError(path, f"format version {version}; this moecl reads version {VERSION}")
    try:
        tensors = load(data)
        state_json = metadata["state"]
        if _checksum(state_json, tensors) != metadata["checksum"]:
            raise ValueError("checksum mismatch")
        state = json.loads(state_json)
        for key in ("identity", "t", "replicates", "models", "rng"):
            state[key]
    except Exception as error:
        reason = "checksum mismatch: the file was altered or damaged" if str(error) == "checksum mismatch" \
            else f"corrupt: {type(error).__name__}"
        raise CheckpointError(path, reason) from None
    return state, tensors


def checkpoint_size_limit(identity, replicates) -> int:
    """The most bytes a checkpoint of this run can have (a file larger is refused unread).

    The run's fresh state, encoded as `save_checkpoint` would: its tensors' bytes twice
    over, its JSON 64 times over (numbers written longer as the run goes on), plus every
    training index a replay or joint strategy can remember (int64, twice) and 16 MiB.
    """
    tensors: dict = {}
    tree = {"replicates": [_encode(dict(rep.state), f"state.{r}", tensors) for r, rep in enumerate(replicates)],
            "models": [[_encode(dict(model.state_dict()), f"model.{r}.{m}", tensors) for m, model in enumerate(rep.models)]
                       for r, rep in enumerate(replicates)],
            "rng": [rep.rng.bit_generator.state for rep in replicates], "identity": identity}
    tensor_bytes = sum(t.numel() * t.element_size() + 256 for t in tensors.values())
    remembered = sum(train for train, _ in identity["stream"]["sizes"]) * 8 * len(replicates)
    return int(2 * tensor_bytes + 64 * len(json.dumps(tree)) + 2 * remembered + 2**24)


def _check_structure(restored, fresh, where: str) -> None:
    """``restored`` has the structure of the run's own ``fresh`` value (ValueError naming ``where`` otherwise).

    Arrays and tensors: same shape and dtype; dicts that the run starts non-empty: the
    same keys; records: every field; scalars: the same type. What the run starts as
    None or as an empty dict or list (filled as it goes) is not constrained.
    """
    from .records import RoundRecords

    if fresh is None:
        return
    if isinstance(fresh, np.ndarray):
        if not isinstance(restored, np.ndarray) or restored.shape != fresh.shape or restored.dtype != fresh.dtype:
            found = (f"{restored.dtype} {restored.shape}" if isinstance(restored, np.ndarray)
                     else type(restored).__name__)
            raise ValueError(f"{where} is {found}, the run has {fresh.dtype} {fresh.shape}")
    elif isinstance(fresh, torch.Tensor):
        if not isinstance(restored, torch.Tensor) or restored.shape != fresh.shape or restored.dtype != fresh.dtype:
            raise ValueError(f"{where} differs in shape or dtype from the run's {fresh.dtype} {tuple(fresh.shape)}")
    elif isinstance(fresh, RoundRecords):
        if not isinstance(restored, RoundRecords):
            raise ValueError(f"{where} is not a table of records")
        for field in dataclasses.fields(fresh):
            _check_structure(getattr(restored, field.name), getattr(fresh, field.name), f"{where}.{field.name}")
    elif isinstance(fresh, dict):
        if not isinstance(restored, dict):
            raise ValueError(f"{where} is {type(restored).__name__}, not a dict")
        if fresh:
            if set(restored) != set(fresh):
                raise ValueError(f"{where} has the keys {sorted(map(str, restored))}, the run "
                                 f"{sorted(map(str, fresh))}")
            for key, value in fresh.items():
                _check_structure(restored[key], value, f"{where}.{key}")
    elif isinstance(fresh, (list, tuple)):
        if not isinstance(restored, (list, tuple)):
            raise ValueError(f"{where} is {type(restored).__name__}, not a list")
        if fresh and len(restored) == len(fresh):
            for k, (a, b) in enumerate(zip(restored, fresh)):
                _check_structure(a, b, f"{where}[{k}]")
    elif isinstance(fresh, bool) or isinstance(restored, bool):
        if type(restored) is not type(fresh):
            raise ValueError(f"{where} is {restored!r}, the run has a {type(fresh).__name__}")
    elif isinstance(fresh, (int, float, np.generic)):
        if not isinstance(restored, (int, float)) or (isinstance(restored, float) and not math.isfinite(restored)
                                                      and isinstance(fresh, (int, np.integer))):
            raise ValueError(f"{where} is {restored!r}, the run has a number")
    elif isinstance(fresh, str) and not isinstance(restored, str):
        raise ValueError(f"{where} is {type(restored).__name__}, the run has text")


def restore_checkpoint(path, identity, replicates) -> int:
    """Load a checkpoint of the same run into the replicates; returns the last round it holds.

    Refused (`CheckpointError` naming the file) unless it is a regular file no larger
    than `checkpoint_size_limit`, its checksum holds, and its structure is the run's
    (`_check_structure`: every state, array, tensor and generator state present with the
    run's shapes), whatever the checksum says; a checkpoint of another run is a
    ValueError naming what differs.
    """
    state, tensors = read_checkpoint(path, checkpoint_size_limit(identity, replicates))
    if state["identity"] != identity:
        raise ValueError(f"checkpoint {os.fspath(path)!r} belongs to another run ({_difference(state['identity'], identity)}); "
                         "delete it or choose another checkpoint path")
    T = identity["config"]["T"]
    t = state["t"]
    if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t <= T:
        raise CheckpointError(path, f"round t={t!r} outside [0, {T}]")
    for field in ("replicates", "models", "rng"):
        if not isinstance(state[field], list) or len(state[field]) != len(replicates):
            found = len(state[field]) if isinstance(state[field], list) else type(state[field]).__name__
            raise CheckpointError(path, f"{found} entries of {field!r} for {len(replicates)} replicates")
    try:
        decoded = []
        for r, (rep, rep_state, models, rng_state) in enumerate(zip(replicates, state["replicates"], state["models"],
                                                                     state["rng"])):
            restored = _decode(rep_state, tensors)
            _check_structure(restored, dict(rep.state), f"replicate {r}'s state")
            fresh_rng = rep.rng.bit_generator.state
            if not isinstance(rng_state, dict) or set(rng_state) != set(fresh_rng) or \
                    rng_state.get("bit_generator") != fresh_rng["bit_generator"] or \
                    not isinstance(rng_state.get("state"), dict) or set(rng_state["state"]) != set(fresh_rng["state"]):
                raise ValueError(f"replicate {r}'s generator state is missing or not a {fresh_rng['bit_generator']} state")
            if not isinstance(models, list) or len(models) != len(rep.models):
                raise ValueError(f"replicate {r} has {len(models) if isinstance(models, list) else '?'} experts, "
                                 f"the run {len(rep.models)}")
            weights = [_decode(w, tensors) for w in models]
            for m, (model, w) in enumerate(zip(rep.models, weights)):
                own = model.state_dict()
                if not isinstance(w, dict) or set(w) != set(own):
                    raise ValueError(f"replicate {r}'s expert {m} lacks or adds tensors")
                for key, value in own.items():
                    _check_structure(w[key], value, f"replicate {r}'s expert {m} tensor {key}")
            decoded.append((restored, weights, rng_state))
        for rep, (restored, weights, rng_state) in zip(replicates, decoded):
            rep.state.update(restored)
            for model, w in zip(rep.models, weights, strict=True):
                model.load_state_dict(w)
            rep.rng.bit_generator.state = rng_state
    except Exception as error:
        raise CheckpointError(path, f"corrupt: {type(error).__name__}: {' '.join(str(error).split())[:200]}") from None
    return t


def _difference(stored: dict, wanted: dict, prefix: str = "") -> str:
    """The first field in which two identities differ, as 'field: stored vs this run'."""
    for key in sorted(set(stored) | set(wanted)):
        a, b = stored.get(key, "<absent>"), wanted.get(key, "<absent>")
        if a != b:
            if isinstance(a, dict) and isinstance(b, dict):
                return _difference(a, b, f"{prefix}{key}.")
            text_a, text_b = (json.dumps(v)[:60] for v in (a, b))
            return f"{prefix}{key} is {text_a} in the checkpoint, {text_b} in this run"
    return "no difference found"
