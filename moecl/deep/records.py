"""What a deep run records (`RoundRecords`) and the metrics that follow from it (book chapters: deep experts, SEED)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import metrics
from .streams import SCENARIOS


@dataclass
class RoundRecords:
    """What a deep run records, rounds first (length T).

    tasks, experts: the routing history n_t, m_t. test_loss, test_accuracy (T, M, N):
    each expert's cross-entropy and accuracy on each task type's test images after
    round t, task-incremental (its outputs restricted to the type's classes).
    gate_values (T, M): the selection scores at routing time: the gate values h_m for
    ``method="gate"``, SEED's KL scores for ``"seed"`` (NaN while SEED fills its
    experts), zeros otherwise. change_norm (T,): norm of the selected expert's
    parameter change. termination_round: T2 (-1: never; the gate only).

    method, scenario: the config's method and the stream's scenario.
    ensemble_loss, ensemble_accuracy (T, N): SEED's Bayes-ensemble prediction over the
    type's classes (``None`` for the other methods, whose task-incremental prediction
    is the expert that learned the task). class_loss, class_accuracy (T, N): the
    method's class-incremental prediction over every class seen by round t (NaN for
    types not seen yet; ``None`` unless the stream's scenario is ``"class"``).
    """

    tasks: np.ndarray
    experts: np.ndarray
    test_loss: np.ndarray
    test_accuracy: np.ndarray
    gate_values: np.ndarray
    change_norm: np.ndarray
    termination_round: int = -1
    source: str = ""
    wall_time: float = field(default=0.0, compare=False)
    method: str = "gate"
    scenario: str = ""
    ensemble_loss: np.ndarray | None = None
    ensemble_accuracy: np.ndarray | None = None
    class_loss: np.ndarray | None = None
    class_accuracy: np.ndarray | None = None

    def load(self) -> np.ndarray:
        """f_t^(m): fraction of rounds 1..t routed to each expert, (T, M)."""
        M = self.test_loss.shape[1]
        onehot = self.experts[:, None] == np.arange(M)
        return np.cumsum(onehot, axis=0) / np.arange(1, len(self.experts) + 1)[:, None]


def prediction_tables(records: RoundRecords, scenario: str = "task"):
    """(loss, accuracy, experts) of the method's prediction, for `moecl.metrics`.

    ``loss`` and ``accuracy`` are (T, M', N) tables and ``experts`` (T,) says which row
    answers round i's task. Task-incremental: the expert m_i that learned the task (the
    paper's definition; for fine-tuning and joint training the one network), or SEED's
    Bayes ensemble over the task's classes. Class-incremental: the method's prediction
    over every class seen so far (`RoundRecords.class_accuracy`).
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario={scenario!r} is not one of {SCENARIOS}")
    zeros = np.zeros(len(records.tasks), dtype=np.int64)
    if scenario == "class":
        if records.class_accuracy is None:
            raise ValueError(f"scenario='class' needs a class-incremental stream; this run's stream is "
                             f"{records.scenario!r}")
        return records.class_loss[:, None, :], records.class_accuracy[:, None, :], zeros
    if records.ensemble_accuracy is not None:
        return records.ensemble_loss[:, None, :], records.ensemble_accuracy[:, None, :], zeros
    return records.test_loss, records.test_accuracy, records.experts


def accuracy_matrix(records: RoundRecords, scenario: str = "task") -> np.ndarray:
    """R[t, i] of a run in a scenario (`prediction_tables`, `moecl.metrics.accuracy_matrix`)."""
    _, accuracy, experts = prediction_tables(records, scenario)
    return metrics.accuracy_matrix(accuracy, records.tasks, experts)


def summarise(records: RoundRecords, after: int = 0, scenario: str = "task") -> dict:
    """Final numbers of one deep run in a scenario: the paper's F_T and G_T (test loss),
    the continual-learning accuracy metrics (average accuracy, forgetting, backward
    transfer, all from the accuracy matrix) and routing concentration over rounds
    ``after + 1 .. T``."""
    loss, accuracy, experts = prediction_tables(records, scenario)
    forgetting, generalization = metrics.forgetting_and_generalization(loss, records.tasks, experts)
    R = metrics.accuracy_matrix(accuracy, records.tasks, experts)
    return {
        "forgetting": float(forgetting[-1]),
        "generalization": float(generalization[-1]),
        "average_accuracy": metrics.average_accuracy(R),
        "accuracy_forgetting": metrics.accuracy_forgetting(R),
        "backward_transfer": metrics.backward_transfer(R),
        "concentration": metrics.routing_concentration(
            records.tasks[after:], records.experts[after:], records.test_loss.shape[2]),
    }
