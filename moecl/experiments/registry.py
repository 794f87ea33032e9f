"""The registry of named experiments, their size presets and `run_experiment`.

Each experiment is a function ``(scale, seed, replicates=None, progress=False,
rounds=None, overrides=None) -> (header, arrays)`` registered with `experiment`;
`EXPERIMENTS` maps names to them and `run_experiment` calls one by name.

Each experiment declares the fields it owns (``owns``): the fields it sweeps or fixes
(``M`` in ``termination``, ``sigma0`` in ``too-early``) and ``T``, which its scale
sets. An override of an owned field is refused (`check_overrides`), so a results file's
labels and header always say what ran. Its size presets (``presets``, default
`SCALES`) let the command line name results files by what differs from the preset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Scale:
    """A size preset: replicates R and rounds T."""

    replicates: int
    rounds: int


#: Size presets. ``ci``: seconds on a laptop; ``paper``: the full-size runs of the book.
SCALES = {"ci": Scale(replicates=40, rounds=300), "paper": Scale(replicates=500, rounds=2000)}


@dataclass(frozen=True)
class Experiment:
    """A registered experiment: its name, a one-line description, the function, the fields it
    owns (``{field: why}``, not overridable), its size presets (``None``: `SCALES`) and the
    traits the command line asks of it (`moecl.cli`):

    * ``device``: it trains on a torch device and takes ``--device`` (the deep experiments);
      the others run on numpy;
    * ``needs_data``: it reads a data set, so the data directory is checked before it runs;
    * ``checkpoints``: it takes ``overrides["checkpoint"]``, a folder it writes checkpoints
      to as it runs and resumes from (the command line passes ``<results file>.ckpt``).
    """

    name: str
    description: str
    function: Callable
    owns: dict = field(default_factory=dict)
    presets: dict | None = None
    device: bool = False
    needs_data: bool = False
    checkpoints: bool = False

    def preset(self, scale: str):
        """The size preset (``replicates``, ``rounds``) of ``scale``, or None for an unknown scale."""
        return (SCALES if self.presets is None else self.presets).get(scale)


#: The registry: experiment name -> `Experiment`, in the order they were defined.
EXPERIMENTS: dict[str, Experiment] = {}


#: Why ``T`` is owned by every experiment.
ROUNDS_OWNER = "its scale sets the rounds (--scale)"


def experiment(name: str, description: str, owns=None, presets=None, device: bool = False,
               needs_data: bool = False, checkpoints: bool = False):
    """Decorator registering an experiment function under ``name``.

    ``owns``: ``{field: why}`` (or a sequence of fields) that the experiment sweeps or
    fixes; ``T`` is always owned. ``presets``: its own size presets (default `SCALES`).
    ``device``, ``needs_data``, ``checkpoints``: its traits (`Experiment`).
    """
    owned = {"T": ROUNDS_OWNER}
    if isinstance(owns, dict):
        owned.update(owns)
    else:
        owned.update({name_: "the experiment sets it" for name_ in owns or ()})

    def register(function):
        if name in EXPERIMENTS:
            raise ValueError(f"experiment {name!r} is registered twice")
        EXPERIMENTS[name] = Experiment(name, description, function, owned, presets, device=device,
                                       needs_data=needs_data, checkpoints=checkpoints)
        return function

    return register


def check_overrides(name: str, overrides) -> dict:
    """The overrides as a dict; ValueError (one line) for a field experiment ``name`` owns."""
    overrides = dict(overrides or {})
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
    owns = EXPERIMENTS[name].owns
    for field_name in overrides:
        if field_name in owns:
            raise ValueError(f"--set {field_name}: {name} sets {field_name} itself ({owns[field_name]}); "
                             "it cannot be overridden")
    return overrides


def run_experiment(name: str, scale: str = "ci", seed: int = 0, replicates=None, progress: bool = False, rounds=None, overrides=None):
    """Run the registered experiment ``name``; returns ``(header, arrays)``.

    ``overrides`` ({field: value}) changes `Config` fields in every setting of the
    experiment, e.g. ``{"balance_loss": "entropy"}``; a field the experiment sets or
    varies itself cannot be overridden (ValueError).
    """
    overrides = check_overrides(name, overrides)
    return EXPERIMENTS[name].function(
        scale, seed, replicates=replicates, progress=progress, rounds=rounds, overrides=overrides
    )


def resolve_scale(scale: str, replicates=None, rounds=None) -> tuple[int, int]:
    """(R, T) of a preset, with optional overrides; checks them."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose from {', '.join(SCALES)}")
    preset = SCALES[scale]
    R = preset.replicates if replicates is None else replicates
    T = preset.rounds if rounds is None else rounds
    if isinstance(R, bool) or not isinstance(R, (int, np.integer)) or R < 2:
        raise ValueError(f"replicates={R!r} must be an integer of at least 2 (standard errors need two)")
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 2:
        raise ValueError(f"rounds={T!r} must be an integer of at least 2")
    return int(R), int(T)


def own_scale(presets: dict, scale: str, replicates=None, rounds=None) -> tuple:
    """(R, T) of an experiment with its own presets (``replicates``/``rounds`` attributes);
    the overrides are checked by `Recorder`."""
    if scale not in presets:
        raise ValueError(f"unknown scale {scale!r}; choose from {', '.join(presets)}")
    preset = presets[scale]
    return (preset.replicates if replicates is None else replicates,
            preset.rounds if rounds is None else rounds)
