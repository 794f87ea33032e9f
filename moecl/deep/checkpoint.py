"""Checkpoints of a deep run: written atomically, restored only into the same run."""

from __future__ import annotations

import os
import tempfile

import torch


def save_checkpoint(path, identity, t, replicates) -> None:
    """Write the checkpoint atomically: a temporary file in the same folder, then rename."""
    payload = {
        "identity": identity,
        "state": {"t": t, "replicates": [dict(rep.state) for rep in replicates]},
        "models": [[{k: v.cpu() for k, v in model.state_dict().items()} for model in rep.models]
                   for rep in replicates],
        "rng": [rep.rng.bit_generator.state for rep in replicates],
    }
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".checkpoint-", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(payload, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def restore_checkpoint(path, identity, replicates) -> int:
    """Load a checkpoint of the same run into the replicates; returns the last round it holds."""
    payload = torch.load(path, weights_only=False)
    if payload.get("identity") != identity:
        raise ValueError(
            f"checkpoint {os.fspath(path)!r} belongs to another run (configuration, seeds or stream differ); "
            "delete it or choose another checkpoint path"
        )
    for rep, state, models, rng_state in zip(replicates, payload["state"]["replicates"], payload["models"],
                                             payload["rng"]):
        rep.state.update(state)
        for model, weights in zip(rep.models, models):
            model.load_state_dict(weights)
        rep.rng.bit_generator.state = rng_state
    return int(payload["state"]["t"])
