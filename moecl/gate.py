"""The gating network, its training losses and early termination (Eq. (1)-(3), (6)-(9)).

All functions are batched: arrays may carry any leading axes (typically the
replicate axis R). ``theta`` has shape (..., M, d), a gate input ``xbar`` (..., d).

With ``g = xbar_t`` and ``d pi_k / d theta^(m) = pi_k (1[k = m] - pi_m) g`` the
gradients of both training losses are rank one, ``grad_{theta^(m)} L = c_m g``, so each
gradient function returns the coefficients ``c`` (..., M) and `gate_step` applies
``theta^(m) <- theta^(m) - eta c_m g`` (Eq. (9)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import experts


def gate_input(X: np.ndarray) -> np.ndarray:
    """``xbar_t``: the sum of the columns of X_t (..., d, s) -> (..., d) (Eq. (1))."""
    return np.sum(X, axis=-1)


def gate_values(theta: np.ndarray, xbar: np.ndarray) -> np.ndarray:
    """``h_m(X_t) = theta^(m)T xbar_t`` for every expert (Eq. (1)). Returns (..., M)."""
    return (theta @ xbar[..., :, None])[..., 0]


def route(h: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Noisy top-1 routing ``m_t = argmax_m h_m + r^(m)`` (Eq. (2)). Returns (...,) ints."""
    return np.argmax(h + noise, axis=-1)


def softmax(h: np.ndarray) -> np.ndarray:
    """Routing probabilities ``pi_m = exp(h_m) / sum_m' exp(h_m')`` (Eq. (3))."""
    z = np.exp(h - np.max(h, axis=-1, keepdims=True))
    return z / np.sum(z, axis=-1, keepdims=True)


def _selected(array: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    return np.take_along_axis(array, np.asarray(chosen)[..., None], axis=-1)[..., 0]


def locality_loss(pi: np.ndarray, chosen: np.ndarray, change_norm: np.ndarray) -> np.ndarray:
    """``L_loc = sum_m pi_m ||w_t^(m) - w_{t-1}^(m)||`` (Eq. (6)).

    Only the chosen expert moved, so ``L_loc = pi_{m_t} ||Delta w_t||``.
    """
    return _selected(pi, chosen) * change_norm


def locality_grad(pi: np.ndarray, chosen: np.ndarray, change_norm: np.ndarray) -> np.ndarray:
    """Coefficients c (..., M) of ``grad_{theta^(m)} L_loc = c_m xbar`` (gradient of Eq. (6)).

    ``c_m = ||Delta w_t|| pi_{m_t} (1[m = m_t] - pi_m)``.
    """
    onehot = np.arange(pi.shape[-1]) == np.asarray(chosen)[..., None]
    return (change_norm * _selected(pi, chosen))[..., None] * (onehot - pi)


def load_balance_loss(pi: np.ndarray, frequency: np.ndarray, alpha: float, t: int) -> np.ndarray:
    """The round-t term of ``L_aux`` that depends on the current gate (Eq. (7)).

    ``alpha (M / t) sum_m f_t^(m) pi_m(X_t)``, with ``f_t^(m)`` the fraction of rounds
    1..t routed to expert m. Earlier terms of the sum are constants for Theta_t.
    """
    M = pi.shape[-1]
    return alpha * M / t * np.sum(frequency * pi, axis=-1)


def load_balance_grad(pi: np.ndarray, frequency: np.ndarray, alpha: float, t: int) -> np.ndarray:
    """Coefficients c (..., M) of ``grad_{theta^(m)} L_aux = c_m xbar`` (gradient of Eq. (7)).

    ``c_m = alpha (M / t) pi_m (f_m - sum_k f_k pi_k)``.
    """
    M = pi.shape[-1]
    mean_frequency = np.sum(frequency * pi, axis=-1, keepdims=True)
    return alpha * M / t * pi * (frequency - mean_frequency)


def entropy_loss(pi: np.ndarray, alpha: float) -> np.ndarray:
    """Entropy bonus in place of Eq. (7) (**book choice**, book/strategies.md): ``L_ent = alpha sum_m pi_m log pi_m``.

    Minimising it maximises the entropy ``H(pi) = -sum_m pi_m log pi_m`` of the routing
    probabilities of the current task, pushing the gate towards spreading tasks, without
    the load history ``f`` that Eq. (7) uses.
    """
    return alpha * np.sum(pi * np.log(pi), axis=-1)


def entropy_grad(pi: np.ndarray, alpha: float) -> np.ndarray:
    """Coefficients c (..., M) of ``grad_{theta^(m)} L_ent = c_m xbar``.

    ``c_m = alpha pi_m (log pi_m + H(pi))``, from ``d pi_k / d h_m = pi_k (1[k = m] - pi_m)``.
    """
    log_pi = np.log(pi)
    entropy = -np.sum(pi * log_pi, axis=-1, keepdims=True)
    return alpha * pi * (log_pi + entropy)


#: Locality terms by name (``Config.locality_loss``), as gradient-coefficient functions
#: ``(pi, chosen, change_norm) -> c``: the paper's Eq. (6), or none (**book choice**, an
#: ablation: the gate then trains on the balancing loss alone).
LOCALITY_LOSSES = {
    "change": locality_grad,
    "none": lambda pi, chosen, change_norm: np.zeros_like(pi),
}


#: Balancing losses by name (``Config.balance_loss``), as gradient-coefficient functions
#: ``(pi, frequency, alpha, t) -> c``: the paper's Eq. (7), or the entropy bonus.
BALANCE_LOSSES = {
    "load_balance": load_balance_grad,
    "entropy": lambda pi, frequency, alpha, t: entropy_grad(pi, alpha),
}


def gate_step(theta: np.ndarray, coefficients: np.ndarray, xbar: np.ndarray, eta: float, out=None) -> np.ndarray:
    """Gradient step ``theta^(m) <- theta^(m) - eta c_m xbar`` on ``L_tr = L_loc + L_aux`` (Eq. (8)-(9)).

    ``out=theta`` updates in place.
    """
    step = np.multiply((eta * coefficients)[..., None], xbar[..., None, :])
    return np.subtract(theta, step, out=out)


class GapTermination:
    """Early termination by gate-value gaps (book choice of the exact test).

    Each expert carries a flag ``I^(m)``, initially set. At every round t > T1 the
    flag of every expert whose gate value is within ``Gamma`` of the selected expert's,
    ``|h_m - h_{m_t}| < Gamma``, is cleared (the selected expert's own flag among
    them). Once every flag is cleared the gate stops training for good.
    """

    name = "gap"

    def initial_flags(self, shape: tuple) -> np.ndarray:
        return np.ones(shape, dtype=bool)

    def update(self, flags, h, chosen, t: int, T1, Gamma: float):
        """Return (flags, stop): the new flags and whether the gate stops now (...,).

        ``T1`` is the exploration length, or an array (...,) of per-replicate rounds
        before which no flag is cleared (after a re-opening, `REOPEN_RULES`).
        """
        if np.ndim(T1) == 0:
            if t <= T1:
                return flags, np.zeros(flags.shape[:-1], dtype=bool)
            checking = True
        else:
            checking = (t > np.asarray(T1))[..., None]
        gaps = np.abs(h - _selected(h, chosen)[..., None])
        flags = flags & ~((gaps < Gamma) & checking)
        return flags, ~np.any(flags, axis=-1)


class NoTermination(GapTermination):
    """The gate trains in every round (the setting of Proposition 2)."""

    name = "none"

    def update(self, flags, h, chosen, t: int, T1, Gamma: float):
        return flags, np.zeros(flags.shape[:-1], dtype=bool)


#: Early-termination strategies by name (``Config.termination``).
TERMINATION_RULES = {rule.name: rule for rule in (GapTermination(), NoTermination())}


class NeverReopening:
    """The paper: once terminated, the gate stays frozen for good.

    Every re-opening rule has the same two methods: `initial_state`, the rule's memory of
    a frozen gate (here and for ``"locality"`` a count per replicate), and `update`.
    """

    name = "never"

    def initial_state(self, replicates: int, config):
        """The rule's memory for ``replicates`` replicates of ``config``: a count per replicate."""
        return np.zeros(replicates, dtype=np.int64)

    def update(self, state, terminated, change_norm, threshold: float, patience: int):
        """Return (state, reopen): the updated memory and which replicates re-open now."""
        return state, np.zeros(np.shape(terminated), dtype=bool)


class LocalityReopening(NeverReopening):
    """Re-open a terminated gate when the locality loss stays high (**book choice**, book/drift.md).

    After termination the selected expert of a well-routed task barely moves. When its
    change ``||w_t - w_{t-1}||`` (what the locality loss Eq. (6) weighs) exceeds
    ``threshold`` in ``patience`` consecutive rounds of a terminated gate, the tasks are
    evidently new to their experts: the gate trains again, every termination flag is
    set, and the next termination check comes after T1 more rounds of exploration.
    """

    name = "locality"

    def update(self, state, terminated, change_norm, threshold: float, patience: int):
        """``state``: the number of large changes in a row (the drift chapter's "strikes")."""
        state = np.where(terminated & (change_norm > threshold), state + 1, 0)
        reopen = state >= patience
        return np.where(reopen, 0, state), reopen


@dataclass
class ChangeWindow:
    """Memory of `WindowReopening` per replicate (leading axis R).

    recent (R, k): ring buffer of the last k change norms of the frozen gate;
    frozen (R,): rounds counted since the gate (re)terminated.
    """

    recent: np.ndarray
    frozen: np.ndarray


class WindowReopening(NeverReopening):
    """Re-open a frozen gate while its experts keep moving (**book choice**, book/drift.md).

    Let ``c_t = ||w_t - w_{t-1}||`` be the selected expert's change in round t, the factor
    that the locality loss Eq. (6) weighs. Over the rounds since the gate last terminated,
    with ``k = patience``, the gate re-opens when the mean of the last k changes exceeds
    ``threshold`` (a norm, on the scale of the model gaps sigma0)::

        (1/k) sum_{i = t-k+1}^{t} c_i > threshold        (at least k rounds since termination)

    Once expert sets have formed and tasks reach their own set, the changes are small; tasks
    routed to experts that serve other truths (after a drift of the pool, or when the gate froze
    before routing was clean) keep them large. Averaging over k rounds keeps single large
    changes from firing the rule. A training gate forgets the memory, and so does a re-opening:
    the rule fires again only after k more frozen rounds.
    """

    name = "window"

    def initial_state(self, replicates: int, config) -> ChangeWindow:
        return ChangeWindow(np.zeros((replicates, config.reopen_patience)), np.zeros(replicates, dtype=np.int64))

    def update(self, state: ChangeWindow, terminated, change_norm, threshold: float, patience: int):
        """Return (state, reopen); ``state`` is updated in place."""
        k = patience
        terminated = np.asarray(terminated, dtype=bool)
        rows = np.flatnonzero(terminated)
        state.recent[rows, state.frozen[rows] % k] = np.asarray(change_norm)[rows]
        state.frozen[rows] += 1
        reopen = terminated & (state.frozen >= k) & (state.recent.sum(axis=1) / k > threshold)
        forget = ~terminated | reopen
        state.recent[forget] = 0.0
        state.frozen[forget] = 0
        return state, reopen


@dataclass
class RoundClock:
    """Memory of `AtDriftReopening`: the rounds seen so far (R,) and the drift round (None: no drift)."""

    rounds: np.ndarray
    drift_round: int | None


class AtDriftReopening(NeverReopening):
    """Re-open every frozen gate in round ``drift_round + 1``: a rule that is *told* the drift (book/drift.md).

    Not a learner's rule (no learner knows T_d): a reference that bounds what a detector such as
    `WindowReopening` can reach with the same re-exploration. ``threshold`` and ``patience`` are unused.
    """

    name = "at-drift"

    def initial_state(self, replicates: int, config) -> RoundClock:
        return RoundClock(np.zeros(replicates, dtype=np.int64), config.drift_round)

    def update(self, state: RoundClock, terminated, change_norm, threshold: float, patience: int):
        state.rounds += 1
        if state.drift_round is None:
            return state, np.zeros(np.shape(terminated), dtype=bool)
        return state, np.asarray(terminated, dtype=bool) & (state.rounds == state.drift_round + 1)


#: Re-opening strategies by name (``Config.reopen``).
REOPEN_RULES = {rule.name: rule for rule in (NeverReopening(), LocalityReopening(), WindowReopening(), AtDriftReopening())}


class GateRouter:
    """Noisy top-1 routing by the gate, Eq. (2): ``m_t = argmax_m h_m + r^(m)``.

    Every router has the method `choose`: from the gate values h (R, M), the routing noise
    (R, M), the round's samples Z (R, s, d) with their Gram factors L (R, s, s), the
    ground truths w_{n_t} (R, d) and the experts' models (R, M, d), the expert of each row.
    """

    name = "gate"

    def choose(self, h, noise, Z, L, target, models) -> np.ndarray:
        return route(h, noise)


class LeastChangeRouter(GateRouter):
    """The expert that Eq. (5) would move least (**book choice**, book/strategies.md).

    A linear analogue of SEED (Rypesc et al. 2024): `moecl.experts.change_norms` of every
    expert from the task's data; the gate's values and noise are not used. Ties go to the
    lowest index, and norms within `TIE_TOLERANCE` of the least count as tied: experts that
    are equal (untrained ones at zero) have equal norms in exact arithmetic, and another
    CPU's kernels round the rows of one batched product differently, which must not decide
    the routing.
    """

    name = "least_change"

    def choose(self, h, noise, Z, L, target, models) -> np.ndarray:
        norms = experts.change_norms(Z, L, target[:, None, :] - models)
        least = norms.min(axis=1, keepdims=True)
        return np.argmax(norms <= least * (1 + TIE_TOLERANCE), axis=1)


#: Relative difference below which two change norms tie (`LeastChangeRouter`): far above the
#: rounding of a norm (1e-15), far below any difference between experts that are not equal.
TIE_TOLERANCE = 1e-9


#: Routers by name (``Config.router``).
ROUTERS = {router.name: router for router in (GateRouter(), LeastChangeRouter())}
