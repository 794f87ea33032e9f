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
    parameter change; locality (T,): the locality signal the gate used
    (``DeepConfig.locality_signal``; 0 for the other methods). termination_round: T2
    (-1: never; the gate only). current_experts (T, N): the expert the method answers
    type n with after round t (the gate as it is then, no noise, on the type's test
    batch; 0 for one network), for the ``"current"`` scoring rule.

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
    locality: np.ndarray | None = None
    current_experts: np.ndarray | None = None

    def load(self) -> np.ndarray:
        """f_t^(m): fraction of rounds 1..t routed to each expert, (T, M)."""
        M = self.test_loss.shape[1]
        onehot = self.experts[:, None] == np.arange(M)
        return np.cumsum(onehot, axis=0) / np.arange(1, len(self.experts) + 1)[:, None]


#: Scoring rules of the task-incremental prediction (`prediction_tables`).
RULES = ("round", "current")


def prediction_tables(records: RoundRecords, scenario: str = "task", rule: str = "round"):
    """(loss, accuracy, experts) of the method's prediction, for `moecl.metrics`.

    ``loss`` and ``accuracy`` are (T, M', N) tables and ``experts`` (T,) says which row
    answers round i's task. Task-incremental, ``rule="round"``: the expert m_i that
    learned the task (the paper's definition; for one network, that network), or SEED's
    Bayes ensemble over the task's classes. ``rule="current"``: the method's current
    predictor, the expert the gate as it is after round t sends the task's type to
    (`RoundRecords.current_experts`; for the other methods the same as ``"round"``).
    Class-incremental: the method's prediction over every class seen so far
    (`RoundRecords.class_accuracy`; the rule does not apply).
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario={scenario!r} is not one of {SCENARIOS}")
    if rule not in RULES:
        raise ValueError(f"rule={rule!r} is not one of {RULES}")
    zeros = np.zeros(len(records.tasks), dtype=np.int64)
    if scenario == "class":
        if records.class_accuracy is None:
            raise ValueError(f"scenario='class' needs a class-incremental stream; this run's stream is "
                             f"{records.scenario!r}")
        return records.class_loss[:, None, :], records.class_accuracy[:, None, :], zeros
    if records.ensemble_accuracy is not None:
        return records.ensemble_loss[:, None, :], records.ensemble_accuracy[:, None, :], zeros
    if rule == "current" and records.method == "gate" and records.current_experts is not None:
        pick = records.current_experts[:, None, :]  # (T, 1, N)
        return (np.take_along_axis(records.test_loss, pick, axis=1),
                np.take_along_axis(records.test_accuracy, pick, axis=1), zeros)
    return records.test_loss, records.test_accuracy, records.experts


def accuracy_matrix(records: RoundRecords, scenario: str = "task", rule: str = "round") -> np.ndarray:
    """R[t, i] of a run in a scenario (`prediction_tables`, `moecl.metrics.accuracy_matrix`)."""
    _, accuracy, experts = prediction_tables(records, scenario, rule)
    return metrics.accuracy_matrix(accuracy, records.tasks, experts)


def max_forgetting(R: np.ndarray) -> float:
    """Average forgetting of Chaudhry et al. (2018): ``1/(T-1) sum_{i<T} max_{i<=l<T} R[l, i] - R[T, i]``.

    For each task but the last, the best accuracy it ever had before the end minus its
    final accuracy; never below 0 for a task at its best at the end. Unlike
    ``-backward_transfer`` (which compares with the accuracy just after learning) it
    counts a task that improved and then fell back.
    """
    R = np.asarray(R, dtype=np.float64)
    T = R.shape[0]
    if R.ndim != 2 or R.shape[1] != T or T < 2:
        raise ValueError(f"R of shape {R.shape} must be (T, T) with T >= 2")
    best = np.array([np.max(R[i:T - 1, i]) for i in range(T - 1)])
    return float(np.mean(best - R[-1, :-1]))


def summarise(records: RoundRecords, after: int = 0, scenario: str = "task", rule: str = "round") -> dict:
    """Final numbers of one deep run in a scenario under a scoring rule (`prediction_tables`).

    The paper's F_T and G_T (test loss), and from the accuracy matrix R: the average
    final accuracy ``average_accuracy``, the backward transfer ``backward_transfer``
    (Lopez-Paz & Ranzato 2017, ``1/(T-1) sum_{i<T} R[T,i] - R[i,i]``) and the average
    forgetting ``average_forgetting`` of Chaudhry et al. 2018 (`max_forgetting`); and
    routing concentration over rounds ``after + 1 .. T``.
    """
    loss, accuracy, experts = prediction_tables(records, scenario, rule)
    forgetting, generalization = metrics.forgetting_and_generalization(loss, records.tasks, experts)
    R = metrics.accuracy_matrix(accuracy, records.tasks, experts)
    return {
        "forgetting": float(forgetting[-1]),
        "generalization": float(generalization[-1]),
        "average_accuracy": metrics.average_accuracy(R),
        "backward_transfer": metrics.backward_transfer(R),
        "average_forgetting": max_forgetting(R),
        "concentration": metrics.routing_concentration(
            records.tasks[after:], records.experts[after:], records.test_loss.shape[2]),
    }
