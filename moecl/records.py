"""The records of a run of Algorithm 1, declared once (below the engine, `moecl.algorithm`).

`RECORDS` lists every record of a run; it gives each its place in `SimulationResult`,
its allocation in the engine (`allocate_records`) and its share of the memory budget
(`record_bytes_per_round`, read by `moecl.limits` and `moecl.sweep`). `BATCHABLE_FIELDS`
names the `Config` fields that may differ between configurations of one batch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .config import Config
from .tasks import Pool


@dataclass(frozen=True)
class Record:
    """One record of a run: its name, its axes after the replicate axis (``"T"`` first for a
    per-round record), dtype, the value it is allocated with (``None``: every entry is
    written by the engine) and its meaning."""

    name: str
    axes: tuple
    dtype: type
    fill: float | int | None
    doc: str

    @property
    def per_round(self) -> bool:
        return self.axes[:1] == ("T",)

    def shape(self, config: Config) -> tuple:
        """The shape after the replicate axis."""
        sizes = {"T": config.T, "M": config.M, "d": config.d}
        return tuple(sizes[axis] for axis in self.axes)


#: The records of a run, each array with the replicate axis R first. Adding a record
#: here gives it its place in `SimulationResult`, its allocation in the engine and its
#: share of `record_bytes_per_round`; the engine's steps write it.
RECORDS = (
    Record("tasks", ("T",), np.int64, None, "the ground truth n_t of each round"),
    Record("experts", ("T",), np.int64, None, "the expert m_t that learned it (the routing history)"),
    Record("forgetting", ("T",), np.float64, np.nan, "F_t (NaN at t = 1, where it is undefined)"),
    Record("generalization", ("T",), np.float64, None, "G_t"),
    Record("gate_values", ("T", "M"), np.float64, None, "h_m(X_t) at routing time"),
    Record("change_norm", ("T",), np.float64, None, "||w_t - w_{t-1}|| of the selected expert"),
    Record("closest_truth", ("T", "M"), np.int16, None,
           "index of the ground truth closest to each expert's model after the round"),
    Record("termination_round", (), np.int64, -1,
           "the round T2 at which the gate first stopped training (-1: never)"),
    Record("drift_generalization", ("T",), np.float64, np.nan,
           "with ``Config.drift_round`` T_d, G_t restricted to the tasks that arrived after the drift, "
           "``1/(t - T_d) sum_{T_d < i <= t} E_i(w_t^(m_i))`` (NaN up to T_d, and without drift)"),
    Record("gate_trained", ("T",), np.bool_, None,
           "whether the gate took its step Eq. (9) in round t (it may train again after a re-opening, "
           "``Config.reopen``)"),
    Record("final_experts", ("M", "d"), np.float64, 0.0, "the experts' models at the end"),
    Record("final_theta", ("M", "d"), np.float64, 0.0, "the gate's parameters Theta at the end"),
)


def record_bytes_per_round(config: Config) -> int:
    """Bytes of the per-round records of one replicate and one round (what grows with R T)."""
    return sum(np.dtype(record.dtype).itemsize * math.prod(record.shape(config)[1:])
               for record in RECORDS if record.per_round)


def allocate_records(config: Config, replicates: int) -> dict:
    """The arrays of `RECORDS` for ``replicates`` rows, filled with their start values."""
    records = {}
    for record in RECORDS:
        shape = (replicates, *record.shape(config))
        if record.fill is None:
            records[record.name] = np.empty(shape, dtype=record.dtype)
        else:
            records[record.name] = np.full(shape, record.fill, dtype=record.dtype)
    return records


class _ResultMethods:
    """What a `SimulationResult` computes from its records."""

    # Fields of `SimulationResult` these methods read (declared for type checkers; not dataclass fields).
    config: Config
    experts: np.ndarray
    replicates: np.ndarray

    @property
    def rounds(self) -> np.ndarray:
        """Round numbers t = 1..T."""
        return np.arange(1, self.config.T + 1)

    def load(self) -> np.ndarray:
        """f_t^(m): fraction of rounds 1..t routed to each expert, (R, T, M)."""
        onehot = self.experts[..., None] == np.arange(self.config.M)
        return np.cumsum(onehot, axis=1) / self.rounds[:, None]

    def replicate(self, k: int) -> "SimulationResult":
        """The records of the k-th simulated replicate alone (a batch of one)."""
        pick = slice(k, k + 1)
        return dataclasses.replace(
            cast(Any, self), replicates=self.replicates[pick], **{record.name: getattr(self, record.name)[pick] for record in RECORDS}
        )


def _axes_text(record: Record) -> str:
    return "(" + ", ".join(("R",) + record.axes) + ")"


if TYPE_CHECKING:  # a type checker cannot see fields made from `RECORDS`: every attribute reads as Any
    class SimulationResult(_ResultMethods):
        def __init__(self, **fields: Any) -> None: ...
        def __getattr__(self, name: str) -> Any: ...
else:
    SimulationResult = dataclasses.make_dataclass(
        "SimulationResult",
        [("config", Config), ("seed", int), ("replicates", np.ndarray), ("pool", Pool)]
        + [(record.name, np.ndarray) for record in RECORDS]
        + [("wall_time", float, field(default=0.0, compare=False))],
        bases=(_ResultMethods,),
        namespace={
            "__module__": __name__,
            "__doc__": "Per-round records of R replicates of Algorithm 1 (replicate axis first).\n\n"
            + "\n".join(f"{record.name} {_axes_text(record)}: {record.doc}." for record in RECORDS)
            + "\n\nconfig, seed: the run's `Config` and seed. pool: the ground truths and feature signals shared by "
            "all replicates. replicates: the replicate indices simulated. wall_time: seconds of the engine call.",
        },
    )


#: `Config` fields that may differ between the configurations of one `simulate_many`
#: call: scales that enter the computation as numbers. Every other field fixes a shape
#: or a mechanism and must be the same in all of them.
BATCHABLE_FIELDS = ("sigma0", "eta", "alpha", "lambda_", "Gamma", "T1", "beta", "sigma_t", "v_norm", "cluster_spread")
