"""The configuration of one linear MoE continual-learning experiment.

`Config` names every quantity of the paper's setting (Section 3 and Algorithm 1 of
Li et al., ICLR 2025) plus the scales that the paper fixes only up to constants. Its
field names follow the paper's notation (`N`, `M`, `T1`, `lambda_`, `eta`, ...).

Book choices
------------
The paper gives Gamma, lambda, eta and alpha only up to constants,
``Gamma = O(sigma0**1.25)``, ``lambda = Theta(sigma0**1.25)``, ``eta = O(sigma0**0.5)``,
``alpha = O(sigma0**0.5)`` and ``T1 = ceil(M / eta)``. A field left at ``None`` is
derived from ``sigma0`` with the constants of `BOOK_CONSTANTS` (a book choice, not a
quote from the paper); a value passed explicitly is used as it is.

The default scales put the model in the regime where expert sets form
(book chapter: regimes): feature signals of norm ``sqrt(d)`` (``v_norm=None``), ``beta=1``
and noise columns with ``sigma_t=0.1``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ._checks import check_int, check_real

FEATURE_MODELS = ("definition1", "isotropic")
#: The model error E_i(w) behind F_t and G_t: the paper's ``||w - w_n||^2`` or the
#: Sigma-weighted ``(w - w_n)^T Sigma (w - w_n)`` (the test error under the features).
ERROR_METRICS = ("euclidean", "sigma")
#: What happens to the other experts of the selected expert's set once the gate has
#: terminated (`moecl.experts.share_within_set`).
SHARING_RULES = ("none", "update", "average")

#: Book choice: constants multiplying the paper's O(.) scalings in sigma0.
#: ``Gamma = 1.0 * sigma0**1.25``, ``lambda_ = 1.0 * sigma0**1.25``,
#: ``eta = 1.0 * sigma0**0.5``, ``alpha = 1.0 * sigma0**0.5``.
BOOK_CONSTANTS = {"Gamma": 1.0, "lambda_": 1.0, "eta": 1.0, "alpha": 1.0}
_EXPONENTS = {"Gamma": 1.25, "lambda_": 1.25, "eta": 0.5, "alpha": 0.5}

#: Integer fields (counts, sizes, rounds) and real fields (scales) of `Config`. Values are
#: stored as plain ``int`` and ``float`` (numpy scalars are converted), so `Config.as_dict`
#: is JSON-serialisable; a string such as ``"0.1"`` is refused (``ValueError`` naming the field).
INT_FIELDS = ("d", "s", "N", "M", "T", "T1", "K", "gradient_steps", "drift_round", "drift_count", "reopen_patience")
REAL_FIELDS = ("sigma0", "eta", "alpha", "lambda_", "Gamma", "beta", "sigma_t", "v_norm", "cluster_spread",
               "reopen_threshold", "anisotropy")
#: Upper bound of every integer field (a sanity bound: memory is checked per run by
#: `moecl.limits.check_memory`), and the tighter one of ``gradient_steps``.
MAX_COUNT = 10**9
MAX_GRADIENT_STEPS = 10_000
#: Sane range of the scales: positive scales lie in [`MIN_SCALE`, `MAX_SCALE`], the others
#: at most `MAX_SCALE` (beyond it float64 arithmetic of the model over- or underflows).
MIN_SCALE, MAX_SCALE = 1e-6, 1e6


@dataclass(frozen=True)
class Config:
    """Parameters of one experiment (book chapter: the setting).

    Problem size
        d: dimension of models and features. s: samples per task (``s < d``,
        overparameterised). N: number of ground-truth models in the pool.
        M: number of experts (``M = 1`` is the single-expert baseline).
        T: number of rounds (tasks).
    Pool
        sigma0: scale of the ground truths, ``w_n ~ N(0, sigma0**2 I)`` (book choice),
        so model gaps are O(sigma0). K: number of clusters of ground truths
        (``None``: no clusters); truth n belongs to cluster ``n mod K`` and lies
        within ``cluster_spread * sigma0`` (per coordinate) of its cluster's centre.
    Features (Definition 1)
        features: ``"definition1"`` (one column is ``beta * v_n``, the rest
        ``N(0, sigma_t**2 I)``) or ``"isotropic"`` (all s columns ``N(0, sigma_t**2 I)``,
        for which the single-expert closed forms are exact).
        beta: scale of the signal column. sigma_t: noise scale of the other columns.
        v_norm: Euclidean norm of every feature signal v_n (``None``: ``sqrt(d)``, so
        that ``||v_n||_inf = O(1)`` as in the paper).
    Gate and Algorithm 1
        eta: gate learning rate, Eq. (9). alpha: weight of the load-balancing loss,
        Eq. (7). lambda_: routing noise ``Unif[0, lambda_]``, Eq. (2). Gamma:
        termination threshold on gate-value gaps. T1: length of the exploration
        phase (``None``: ``ceil(M / eta)``). termination: name of the early-termination
        strategy (``"gap"``: the book's rule, ``"none"``: the gate trains for ever);
        see `moecl.gate.TERMINATION_RULES`.
    Strategies beyond the paper (book chapters beyond the paper; the defaults are the paper's)
        balance_loss: ``"load_balance"`` (Eq. (7)) or ``"entropy"`` (an entropy bonus
        on the routing probabilities, `moecl.gate.entropy_loss`). locality_loss:
        ``"change"`` (Eq. (6)) or ``"none"`` (an ablation: the gate trains on the
        balancing loss alone; with ``alpha=0`` too it never moves). router: ``"gate"``
        (Eq. (2)) or ``"least_change"`` (the expert that Eq. (5) would move least,
        chosen from the task's data; the gate is not used). expert_update:
        ``"exact"`` (Eq. (5)) or ``"gradient"`` (``gradient_steps`` steps of gradient
        descent with step ``1 / lambda_max(X^T X)``).
        sharing: ``"none"`` (the paper's isolated experts), ``"update"`` or
        ``"average"``: once the gate has terminated, the other experts of the selected
        expert's set also learn the task by Eq. (5), or the set is replaced by its mean
        (`moecl.experts.share_within_set`).
        drift_round: ``None`` (a fixed pool) or the round T_d after which the first
        ``drift_count`` ground truths are replaced by new ones (fresh truths and
        feature signals; the pool then holds ``N + drift_count`` truths, see
        `pool_size`). reopen: when a terminated gate trains again (for T1 more rounds
        before its next termination check), `moecl.gate.REOPEN_RULES`: ``"never"`` (the
        paper); ``"locality"``: the selected expert's change ``||w_t - w_{t-1}||`` has
        exceeded ``reopen_threshold`` in ``reopen_patience`` rounds in a row
        (`moecl.gate.LocalityReopening`); ``"window"``: its mean over the last
        ``reopen_patience`` frozen rounds exceeds ``reopen_threshold``
        (`moecl.gate.WindowReopening`); ``"at-drift"``: once, at ``drift_round + 1`` (a
        reference that is told when the drift happens, `moecl.gate.AtDriftReopening`).
        anisotropy: ratio kappa >= 1 of the largest to the smallest variance of the
        noise features, covariance ``sigma_t**2 Sigma`` (`moecl.tasks.feature_variances`).
        error_metric: ``"euclidean"`` (the paper's model error) or ``"sigma"``
        (Sigma-weighted, the test error on such features).
    """

    d: int = 20
    s: int = 6
    N: int = 4
    M: int = 8
    T: int = 1000
    sigma0: float = 0.1
    eta: float | None = None
    alpha: float | None = None
    lambda_: float | None = None
    Gamma: float | None = None
    T1: int | None = None
    beta: float = 1.0
    sigma_t: float = 0.1
    v_norm: float | None = None
    termination: str = "gap"
    features: str = "definition1"
    K: int | None = None
    cluster_spread: float = 0.1
    balance_loss: str = "load_balance"
    locality_loss: str = "change"
    router: str = "gate"
    expert_update: str = "exact"
    gradient_steps: int = 1
    sharing: str = "none"
    drift_round: int | None = None
    drift_count: int = 1
    reopen: str = "never"
    reopen_threshold: float = 0.1
    reopen_patience: int = 5
    anisotropy: float = 1.0
    error_metric: str = "euclidean"

    def __post_init__(self) -> None:
        self._normalise_numbers()
        for name in ("d", "s", "N", "M", "T"):
            _check_count(name, getattr(self, name), minimum=1)
        if self.s >= self.d:
            raise ValueError(
                f"s={self.s} must be smaller than d={self.d}: the model is "
                "overparameterised (fewer samples per task than dimensions)"
            )
        _check_scale("sigma0", self.sigma0, positive=True, high=MAX_SCALE**0.8,
                     why="Gamma and lambda_ derived from it, sigma0**1.25, must stay below 1e6")
        for name, exponent in _EXPONENTS.items():
            if getattr(self, name) is None:
                value = BOOK_CONSTANTS[name] * self.sigma0**exponent
                object.__setattr__(self, name, float(value))
        _check_scale("eta", self.eta, positive=True, low=0.0)
        _check_scale("alpha", self.alpha)
        _check_scale("lambda_", self.lambda_)
        _check_scale("Gamma", self.Gamma)
        if self.T1 is None:
            T1 = math.ceil(self.M / self.eta)
            if T1 > MAX_COUNT:
                raise ValueError(f"eta={self.eta!r} is too small: T1 = ceil(M / eta) = {T1:.3g} rounds exceeds "
                                 f"{MAX_COUNT:.0e}")
            object.__setattr__(self, "T1", int(T1))
        _check_count("T1", self.T1, minimum=0)
        _check_scale("beta", self.beta, positive=True)
        _check_scale("sigma_t", self.sigma_t, positive=True)
        if self.v_norm is None:
            object.__setattr__(self, "v_norm", float(math.sqrt(self.d)))
        _check_scale("v_norm", self.v_norm, positive=True)
        _check_scale("cluster_spread", self.cluster_spread)
        if self.K is not None:
            _check_count("K", self.K, minimum=1)
            if self.K > self.N:
                raise ValueError(f"K={self.K} clusters cannot exceed N={self.N} ground truths")
        from .experts import EXPERT_UPDATES
        from .gate import BALANCE_LOSSES, LOCALITY_LOSSES, REOPEN_RULES, ROUTERS, TERMINATION_RULES

        for name, allowed in (
            ("features", FEATURE_MODELS),
            ("termination", TERMINATION_RULES),
            ("balance_loss", BALANCE_LOSSES),
            ("locality_loss", LOCALITY_LOSSES),
            ("router", ROUTERS),
            ("expert_update", EXPERT_UPDATES),
            ("sharing", SHARING_RULES),
            ("reopen", REOPEN_RULES),
            ("error_metric", ERROR_METRICS),
        ):
            value = getattr(self, name)
            if not isinstance(value, str) or value not in allowed:
                raise ValueError(f"{name}={value!r} is not one of {tuple(allowed)}")
        _check_count("gradient_steps", self.gradient_steps, minimum=1, maximum=MAX_GRADIENT_STEPS)
        _check_count("drift_count", self.drift_count, minimum=1)
        if self.drift_round is not None:
            _check_count("drift_round", self.drift_round, minimum=1)
            if self.drift_round >= self.T:
                raise ValueError(f"drift_round={self.drift_round} must be smaller than T={self.T}")
            if self.drift_count > self.N:
                raise ValueError(f"drift_count={self.drift_count} cannot exceed N={self.N} ground truths")
        _check_scale("reopen_threshold", self.reopen_threshold)
        _check_count("reopen_patience", self.reopen_patience, minimum=1)
        _check_scale("anisotropy", self.anisotropy, low=1.0)

    def _normalise_numbers(self) -> None:
        """Numbers as plain int/float (numpy scalars converted); strings and other types refused by name."""
        for name in INT_FIELDS:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _check_type(name, value, check_int))
        for name in REAL_FIELDS:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _check_type(name, value, check_real))

    @property
    def pool_size(self) -> int:
        """Ground truths in the pool: N, plus the ``drift_count`` that arrive at ``drift_round``."""
        return self.N + (self.drift_count if self.drift_round is not None else 0)

    def replace(self, **changes) -> "Config":
        """A copy with some fields changed; derived fields are derived again unless given."""
        fields = dataclasses.asdict(self)
        for name in ("eta", "alpha", "lambda_", "Gamma", "v_norm"):
            if name not in changes and _derived(self, name):
                fields[name] = None
        if "T1" not in changes and self.T1 == int(math.ceil(self.M / self.eta)):
            fields["T1"] = None
        fields.update(changes)
        return Config(**fields)

    def as_dict(self) -> dict:
        """All fields (derived ones resolved), JSON-serialisable: plain int, float, str and None."""
        return dataclasses.asdict(self)


def _check_type(name: str, value, check) -> int | float:
    """``value`` as an int (``check_int``) or a finite float (``check_real``); a string is refused."""
    if isinstance(value, (str, bytes)):
        kind = "an integer" if check is check_int else "a real number"
        raise ValueError(f"{name}={value!r} must be {kind}, not a string")
    if check is check_int:
        return check_int(name, value)
    try:
        return check_real(name, value, low=-math.inf)
    except OverflowError:  # an int too large for a float
        raise ValueError(f"{name}={value!r} must be a finite real number") from None


def _check_count(name: str, value: int, minimum: int, maximum: int = MAX_COUNT) -> None:
    check_int(name, value, minimum=minimum)
    if value > maximum:
        raise ValueError(f"{name}={value!r} must be at most {maximum:_}")


def _check_scale(name: str, value: float, positive: bool = False, low: float = 0.0, high: float = MAX_SCALE,
                 why: str = "larger scales overflow float64") -> None:
    """A scale within the sane range: [MIN_SCALE, high] if ``positive``, else [low, high]."""
    if positive and low == 0.0:
        low = MIN_SCALE
    check_real(name, value, low=low)
    if value > high:
        raise ValueError(f"{name}={value!r} must be at most {high:.3g} ({why})")


def _derived(config: Config, name: str) -> bool:
    value = getattr(config, name)
    if name == "v_norm":
        return value == math.sqrt(config.d)
    return value == BOOK_CONSTANTS[name] * config.sigma0 ** _EXPONENTS[name]
