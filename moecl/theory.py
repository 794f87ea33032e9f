"""Closed forms for the expected forgetting and generalization error (THEORY.md section 5).

Proposition 4 (one expert, M = 1) and Theorems 1 (M > N) and 2 (M < N) of Li, Lin,
Duan, Liang and Shroff (ICLR 2025) give the expected forgetting E[F_t] and
generalization error E[G_t] of the linear MoE in continual learning. This module
states them as sympy expressions derived from the second-moment recursion of the
phase model (`moecl.phase_model`), and evaluates them numerically.

Which feature model they are exact for
--------------------------------------
Every form here is an exact expectation for **isotropic Gaussian features** (all s
columns of X_t i.i.d. N(0, I), `Config(features="isotropic")`) under the phase
model's routing (uniform for t <= T1, Q2 afterwards, independent of the models);
for M = 1 the routing is trivial and the forms are exact for Algorithm 1 itself.
Under the paper's **Definition 1** features the span of X_t always contains
v_{n_t}, so P_t is not a uniformly random projector and the forms are only an
approximation; for M > 1, Algorithm 1's routing also depends on the models.

Symbols (`SYMBOLS`)
-------------------
r = 1 - s/d, t (or T) the round, T1 the end of exploration, M the number of experts,
rho = 1 - (1 - r)/M (the factor by which one expert's expected error shrinks in a
round, since it gets the task with probability 1/M), S = (1/N) sum_n ||w_n||^2,
D = (1/N^2) sum_{n,n'} ||w_n - w_n'||^2 and D_in, the mean squared gap between a truth
and the truths routed to the same experts (`pool_quantities`).

Derivation (balanced expert sets)
---------------------------------
In phase 2 let the truths form groups g served by disjoint expert sets E_g, a task of
group g going uniformly to E_g, with ``|g| / |E_g| = N / M`` (the balanced load of
Proposition 3; `moecl.phase_model.balanced_groups`). Then every expert gets a task with
probability 1/M in both phases, the retention factor of `phase_model_expectations`
is rho for every expert, and the sums over (m, n) of its recursion close on scalars:
with ``Abar(u) = rho^u (S - D) + D`` (mean error of an expert against a random truth
after u exploration rounds), ``A(j) = rho^j (Abar(T1) - D_in) + D_in`` (mean error of an
expert against the truths of its group, j rounds after T1),
``Sigma(t) = sum_{m,n} B[m, n](t)`` and ``L(t)`` as in `moecl.phase_model`:

    Sigma(t) = rho Sigma(t-1) + (1 - rho) (t - 1) D + r Abar(t - 1)              t <= T1
    Sigma(t) = rho Sigma(t-1) + (1 - rho) (T1 D + (k - 1) D_in) + r A(k - 1)     t = T1 + k
    L(t)     = L(t-1) + r Abar(t - 1)   (t <= T1),   L(t-1) + r A(k - 1)   (t = T1 + k)

and ``E[G_t] = Sigma(t) / t``, ``E[F_t] = (Sigma(t) - r A - L(t-1)) / (t - 1)``, where
``r A`` is the expected error of round t's own task just after it is learned
(A = Abar(t-1) for t <= T1, A(k-1) for t = T1 + k). `derive_balanced_forms` solves these recursions with sympy's
``Sum(...).doit()``; `moe_expectations` returns the same expressions in a compact
form (collected by hand; the tests check that both agree exactly and that they
match the numeric recursion). All of them are fully closed forms (no sums).
When every group is one truth (M >= N, Theorem 1) D_in = 0; with one group (M = 1)
D_in = D and the forms reduce to Proposition 4. `moe_limits` and `moe_rates` give the
limits t -> oo and the coefficients of 1/t with which they are approached.

Sharing within an expert set (issue 9, section 4)
-------------------------------------------------
When the experts of a set all learn each phase-2 task (`moecl.phase_model`,
``sharing="update"``), an expert of a balanced set with |g| truths per group is updated
with probability |g|/N per phase-2 round, so rho becomes rho_s = 1 - (1 - r)|g|/N after
T1. `derive_sharing_forms` solves the summed recursion with sympy,
`sharing_expectations` states it compactly and `sharing_curves` evaluates it.

Checks against Monte Carlo
--------------------------
`z_scores` compares Monte Carlo means (Algorithm 1 or the phase model) with these
curves round by round, in standard errors, against the book's tolerance `Z_MAX`;
`format_z_scores` prints the comparison. The chapters and tests use both.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import sympy as sp

from .metrics import mean_se
from .phase_model import (
    balanced_groups,
    check_int,
    check_phases,
    check_pool_matrix,
    check_r,
    check_routing,
    default_routing,
    phase_model_expectations,
    simulate_phase_model,
    squared_gaps,
)

#: The sympy symbols of every form here (all positive; t, T, T1 are round counts).
SYMBOLS = SimpleNamespace(
    r=sp.Symbol("r", positive=True),
    rho=sp.Symbol("rho", positive=True),
    M=sp.Symbol("M", positive=True),
    t=sp.Symbol("t", positive=True),
    T=sp.Symbol("T", positive=True),
    T1=sp.Symbol("T1", nonnegative=True),
    S=sp.Symbol("S", positive=True),
    D=sp.Symbol("D", nonnegative=True),
    D_in=sp.Symbol("D_in", nonnegative=True),
)
_i = sp.Symbol("i", integer=True, positive=True)
_j = sp.Symbol("j", integer=True, positive=True)
_k = sp.Symbol("k", integer=True, positive=True)


# --------------------------------------------------------------------------- helpers


def _generic_branch(expr):
    """Replace every Piecewise that ``Sum.doit()`` makes by its generic branch.

    The other branches are the degenerate cases ``rho = 1`` (or ``r = 1``), excluded
    by 0 < r < 1.
    """
    return expr.replace(lambda e: isinstance(e, sp.Piecewise), lambda e: e.args[-1].expr)


def _collect_in(expr, variable, power, basis):
    """Tidy a closed form: coefficients of ``basis`` as partial fractions in ``variable``.

    ``power`` (e.g. r**T) is held fixed while the partial fractions are formed.
    """
    x = sp.Dummy("x", positive=True)
    expr = sp.expand(sp.powsimp(sp.expand(expr), force=True)).subs(power, x)
    parts = sp.collect(sp.expand(expr), basis, evaluate=False)
    out = sp.S.Zero
    for term, coefficient in parts.items():
        fractions = sp.Add.make_args(sp.apart(sp.together(coefficient), variable))
        out += term * sp.Add(*[sp.factor(fraction) for fraction in fractions])
    return out.subs(x, power)


def _limit_in_rounds(expr, base, variable):
    """lim_{variable -> oo} expr for 0 < base < 1 (written base = exp(-lambda))."""
    lam = sp.Symbol("lambda", positive=True)
    value = sp.limit(expr.subs(base, sp.exp(-lam)), variable, sp.oo)
    return sp.simplify(value.subs(lam, -sp.log(base)))


# --------------------------------------------------------------------------- Proposition 4


def single_expert_generalization():
    """E[G_T] for one expert (M = 1): ``r^T S + (1 - r^T)(1 - 1/T) D`` (Proposition 4).

    Symbols r, T, S, D of `SYMBOLS`. Exact for isotropic Gaussian features (where,
    with M = 1, the phase model is Algorithm 1); an approximation under Definition 1.
    """
    r, T, S, D = SYMBOLS.r, SYMBOLS.T, SYMBOLS.S, SYMBOLS.D
    return r**T * S + (1 - r**T) * (1 - 1 / T) * D


def single_expert_forgetting(evaluate: bool = True):
    """E[F_T] for one expert (M = 1), T >= 2 (Proposition 4).

    The statement of THEORY.md section 5,

        E[F_T] = 1/(T-1) sum_{i=1}^{T-1} [ (r^T - r^i) S
                 + ((1 - r) - r^T + r^i - (1 - r) r^{T-i}) D ],

    as an unevaluated sympy ``Sum`` (``evaluate=False``) or summed by sympy
    (``Sum(...).doit()``, geometric sums, valid for 0 < r < 1) and collected into a
    closed form without a sum, equal to

        r^T S + (1 - r - r^T) D - (r - r^T)(S - r D) / ((1 - r)(T - 1)).

    Exact for isotropic Gaussian features; an approximation under Definition 1.
    """
    r, T, S, D = SYMBOLS.r, SYMBOLS.T, SYMBOLS.S, SYMBOLS.D
    i = _i
    summand = (r**T - r**i) * S + ((1 - r) - r**T + r**i - (1 - r) * r ** (T - i)) * D
    total = sp.Sum(summand, (i, 1, T - 1))
    if not evaluate:
        return total / (T - 1)
    return _single_expert_forgetting_closed()


@functools.lru_cache(maxsize=None)
def _single_expert_forgetting_closed():
    r, T, S, D = SYMBOLS.r, SYMBOLS.T, SYMBOLS.S, SYMBOLS.D
    summed = _generic_branch(single_expert_forgetting(evaluate=False).doit())
    return _collect_in(summed, T, r**T, [S, D])


def single_expert_limits() -> dict:
    """lim_{T -> oo} of E[G_T] and E[F_T] for one expert, 0 < r < 1 (sympy ``limit``).

    Returns ``{"generalization": D, "forgetting": (1 - r) D}``: the expert ends near
    the last task's truth, so an old task's error tends to the mean squared gap D,
    and forgetting to the share (1 - r) D that a task loses after it is learned.
    """
    r, T = SYMBOLS.r, SYMBOLS.T
    return {
        "generalization": _limit_in_rounds(single_expert_generalization(), r, T),
        "forgetting": _limit_in_rounds(single_expert_forgetting(), r, T),
    }


# --------------------------------------------------------------------------- Theorems 1 and 2


@functools.lru_cache(maxsize=None)
def derive_balanced_forms() -> dict:
    """sympy's own solution of the balanced recursions (module docstring).

    Solves the scalar recursions for Sigma(t) and L(t) by ``Sum(...).doit()`` (generic
    branch, rho != 1) and returns ``{"exploration": {...}, "specialisation": {...}}``,
    each with ``"generalization"`` and ``"forgetting"`` in the symbols r, rho, t, T1,
    S, D, D_in of `SYMBOLS`; exploration for 1 <= t <= T1, specialisation for t > T1.
    `moe_expectations` states the same expressions compactly.
    """
    r, rho, t, T1, S, D, D_in = (getattr(SYMBOLS, name) for name in ("r", "rho", "t", "T1", "S", "D", "D_in"))
    i, j, k = _i, _j, _k

    def abar(u):
        return rho**u * S + (1 - rho**u) * D

    def own(u):
        return rho**u * (abar(T1) - D_in) + D_in

    def doit(summand, index, upper):
        return _generic_branch(sp.Sum(summand, (index, 1, upper)).doit())

    sigma1 = doit(rho ** (t - i) * ((1 - rho) * (i - 1) * D + r * abar(i - 1)), i, t)

    def loss1(u):
        return doit(r * abar(i - 1), i, u)

    sigma2 = rho**k * sigma1.subs(t, T1) + doit(
        rho ** (k - j) * ((1 - rho) * (T1 * D + (j - 1) * D_in) + r * own(j - 1)), j, k
    )
    loss2 = loss1(T1) + doit(r * own(j - 1), j, k - 1)
    return {
        "exploration": {
            "generalization": sigma1 / t,
            "forgetting": (sigma1 - r * abar(t - 1) - loss1(t - 1)) / (t - 1),
        },
        "specialisation": {
            "generalization": (sigma2 / t).subs(k, t - T1),
            "forgetting": ((sigma2 - r * own(k - 1) - loss2) / (t - 1)).subs(k, t - T1),
        },
    }


@functools.lru_cache(maxsize=None)
def _compact_forms() -> dict:
    """The balanced forms stated compactly, in r, rho, M (with (1 - r) = M (1 - rho)), t, T1, S, D, D_in."""
    r, rho, M, t, T1, S, D, D_in = (
        getattr(SYMBOLS, name) for name in ("r", "rho", "M", "t", "T1", "S", "D", "D_in")
    )
    k = t - T1
    # Exploration: Sigma(t) = r t rho^(t-1) (S - D) + t D - M D (1 - rho^t).
    g1 = D + r * rho ** (t - 1) * (S - D) - M * D * (1 - rho**t) / t
    f1 = (
        r * rho ** (t - 1) * (S - D)
        + (1 - r) * D
        + ((1 - r) * D - M * D * (1 - rho**t) - r * (S - D) * (1 - rho ** (t - 1)) / (1 - rho)) / (t - 1)
    )
    # Specialisation, k = t - T1 rounds after exploration.
    a0 = rho**T1 * (S - D) + D  # Abar(T1)
    sigma_t1 = r * T1 * rho ** (T1 - 1) * (S - D) + T1 * D - M * D * (1 - rho**T1)
    loss_t1 = r * ((S - D) * (1 - rho**T1) / (1 - rho) + T1 * D)
    sigma = (
        rho**k * sigma_t1
        + T1 * D * (1 - rho**k)
        + k * D_in
        + r * k * rho ** (k - 1) * (a0 - D_in)
        - M * D_in * (1 - rho**k)
    )
    fresh = r * (rho ** (k - 1) * (a0 - D_in) + D_in)
    loss = loss_t1 + r * ((a0 - D_in) * (1 - rho ** (k - 1)) / (1 - rho) + (k - 1) * D_in)
    return {
        "exploration": {"generalization": g1, "forgetting": f1},
        "specialisation": {"generalization": sigma / t, "forgetting": (sigma - fresh - loss) / (t - 1)},
    }


def moe_expectations(M=None, N=None, K=None, Q2=None, keep_rho: bool = False) -> dict:
    """E[G_t] and E[F_t] of the MoE with balanced expert sets (Theorems 1 and 2).

    Under the phase model: uniform routing for t <= T1 (exploration), then the
    balanced routing Q2 (``None``: `moecl.phase_model.default_routing(N, M, K)`).
    Theorem 1 (M > N, or M = N): each truth has its own expert set, D_in = 0.
    Theorem 2 (M < N): expert m serves a cluster of truths and the forms depend on
    the mean squared gap within clusters D_in (`pool_quantities`). M = 1 gives
    Proposition 4 (D_in = D).

    M: the number of experts (``None``: keep the symbol M); N, K: pool size and
    number of clusters, used only to build Q2 and to read off D_in = 0 (singleton
    groups) or D_in = D (one group); without N, D_in stays a symbol.
    keep_rho: keep the symbol rho = 1 - (1 - r)/M rather than substituting it.

    The forms (``M (1 - rho) = 1 - r``; ``Abar = rho^T1 (S - D) + D``, the mean error of an
    expert against a random truth at the end of exploration):

    exploration, 1 <= t <= T1::

        E[G_t] = D + r rho^(t-1) (S - D) - M D (1 - rho^t) / t
        E[F_t] = r rho^(t-1) (S - D) + (1 - r) D
                 + [(1 - r) D - M D (1 - rho^t) - r (S - D)(1 - rho^(t-1)) / (1 - rho)] / (t - 1)

    specialisation, t = T1 + k, k >= 1::

        Sigma_T1 = r T1 rho^(T1-1) (S - D) + T1 D - M D (1 - rho^T1)
        Sigma_t  = rho^k Sigma_T1 + T1 D (1 - rho^k) + k D_in
                   + r k rho^(k-1) (Abar - D_in) - M D_in (1 - rho^k)
        L_(t-1)  = r [(S - D)(1 - rho^T1) / (1 - rho) + T1 D
                      + (Abar - D_in)(1 - rho^(k-1)) / (1 - rho) + (k - 1) D_in]
        E[G_t]   = Sigma_t / t
        E[F_t]   = (Sigma_t - r (rho^(k-1) (Abar - D_in) + D_in) - L_(t-1)) / (t - 1)

    Sigma_t is the expected total error of the t tasks seen so far and L_(t-1) the
    expected total of the errors just after learning. With D_in = 0 (Theorem 1) the
    exploration phase leaves E[G_t] ~ T1 D / t: a longer exploration (T1 grows with
    M) costs generalization for longer.

    Returns ``{"exploration": {"generalization", "forgetting"},
    "specialisation": {"generalization", "forgetting"}, "rho": rho}``, sympy
    expressions in r, t, T1, S, D (and D_in, M, rho), fully closed (no sums);
    exploration holds for 1 <= t <= T1, specialisation for t > T1; forgetting needs
    t >= 2. Exact for isotropic Gaussian features under the phase model; for
    Algorithm 1 an approximation (model-dependent routing; Definition 1 features).
    Raises ValueError when Q2 is not balanced (use `phase_model_expectations`).
    """
    forms = _compact_forms()
    M_value = SYMBOLS.M if M is None else _positive_int("M", M)
    rho = 1 - (1 - SYMBOLS.r) / M_value
    changes = {SYMBOLS.M: M_value}
    if N is not None:
        if M is None:
            raise ValueError("M=None: the routing of N truths needs a number of experts M")
        N = _positive_int("N", N)
        Q2 = default_routing(N, M_value, K) if Q2 is None else check_routing(Q2, N, M_value)
        groups = balanced_groups(Q2)
        sizes = np.bincount(groups)
        if np.all(sizes == 1):
            changes[SYMBOLS.D_in] = sp.S.Zero
        elif sizes.size == 1:
            changes[SYMBOLS.D_in] = SYMBOLS.D
    elif Q2 is not None:
        raise ValueError("Q2 given without N")
    if not keep_rho:
        changes[SYMBOLS.rho] = rho
    out = {
        phase: {name: expr.subs(changes) for name, expr in metrics.items()} for phase, metrics in forms.items()
    }
    out["rho"] = rho
    return out


def moe_limits() -> dict:
    """lim_{t -> oo} of the specialisation forms (sympy ``limit``, 0 < rho < 1).

    Returns ``{"generalization": D_in, "forgetting": (1 - r) D_in}``: once each expert
    sees only its own group, an old task's error tends to the spread of its group
    (0 for M >= N, Theorem 1), and forgetting to the share (1 - r) D_in.
    """
    forms = _compact_forms()["specialisation"]
    return {name: sp.limit(_drop_decaying(expr), SYMBOLS.t, sp.oo) for name, expr in forms.items()}


def _drop_decaying(expr):
    """Drop the terms of a specialisation form that vanish geometrically as t -> oo.

    Every power rho^(t - T1 + c) decays like rho^t (0 < rho < 1), faster than any power
    of t grows, so for limits and 1/t rates it can be set to 0; what is left is
    rational in t, where ``sympy.limit`` is quick and safe.
    """
    rho, t = SYMBOLS.rho, SYMBOLS.t
    return expr.replace(lambda e: isinstance(e, sp.Pow) and e.base == rho and e.exp.has(t), lambda e: sp.S.Zero)


def moe_rates() -> dict:
    """How fast the specialisation forms approach their limits: the coefficients of 1/t.

    ``E[G_t] = D_in + c_G / t + o(1/t)`` and ``E[F_t] = (1 - r) D_in + c_F / t + o(1/t)``
    as t -> oo (Theorems 1 and 2, balanced expert sets), with
    ``c = lim_{t -> oo} t (E[.]_t - limit)`` computed by sympy ``limit`` (0 < rho < 1)
    and returned as ``{"generalization": c_G, "forgetting": c_F}`` in r, M, T1, S, D,
    D_in (rho substituted). For Theorem 1 (D_in = 0) they read

        c_G = T1 D,        c_F = (1 - r) T1 D - r M S / (1 - r):

    the T1 exploration rounds leave their tasks a squared gap D away for good (no
    later round serves them), so E[G_t] ~ T1 D / t, and since T1 = ceil(M / eta)
    grows with M, more experts make this tail longer.
    """
    return dict(_moe_rates())


@functools.lru_cache(maxsize=None)
def _moe_rates():
    rho, t = SYMBOLS.rho, SYMBOLS.t
    forms = _compact_forms()["specialisation"]
    limits = moe_limits()
    out = {}
    for name, expr in forms.items():
        coefficient = sp.limit(sp.together(t * (_drop_decaying(expr) - limits[name])), t, sp.oo)
        out[name] = sp.simplify(coefficient.subs(rho, 1 - (1 - SYMBOLS.r) / SYMBOLS.M))
    return tuple(out.items())


# --------------------------------------------------------------------------- numbers


def pool_quantities(W, groups=None) -> dict:
    """S, D and D_in of a pool W (N, d) (or a `moecl.Pool`).

    S = (1/N) sum_n ||w_n||^2; D = (1/N^2) sum_{n,n'} ||w_n - w_n'||^2;
    D_in = (1/N) sum_n (1/|g(n)|) sum_{n' in g(n)} ||w_n - w_n'||^2, the mean squared
    gap between a truth and the truths of its group g(n) (``groups``: one label per
    truth, e.g. from `moecl.phase_model.balanced_groups`; ``None``: singletons,
    D_in = 0). For equal groups D_in is the mean of ||w_n - w_n'||^2 over ordered
    pairs in the same group, the pair (n, n) included, as in D.
    """
    W = check_pool_matrix(W)
    N = W.shape[0]
    norms = np.sum(W * W, axis=1)
    Delta = squared_gaps(W)
    groups = np.arange(N) if groups is None else np.asarray(groups)
    if groups.shape != (N,):
        raise ValueError(f"groups has shape {groups.shape}, expected (N,) = ({N},)")
    same = groups[:, None] == groups[None, :]
    D_in = float(np.mean(np.sum(Delta * same, axis=1) / np.sum(same, axis=1)))
    return {"S": float(norms.mean()), "D": float(Delta.mean()), "D_in": D_in}


@functools.lru_cache(maxsize=None)
def _numeric_forms():
    """The compact forms lambdified in (r, rho, M, t, T1, S, D, D_in)."""
    args = [getattr(SYMBOLS, name) for name in ("r", "rho", "M", "t", "T1", "S", "D", "D_in")]
    forms = _compact_forms()
    return {
        phase: {name: sp.lambdify(args, expr, modules="numpy") for name, expr in metrics.items()}
        for phase, metrics in forms.items()
    }


def curves(W, r, M, T, T1, Q2=None, K=None) -> dict:
    """E[G_t] and E[F_t] for t = 1..T from the closed forms of `moe_expectations`.

    W: ground truths (N, d) (or a `moecl.Pool`); r = 1 - s/d; M experts; T rounds;
    exploration for t <= T1; phase-2 routing Q2 (``None``: `default_routing(N, M, K)`),
    which must be balanced. Returns ``{"generalization": (T,), "forgetting": (T,),
    "S", "D", "D_in"}`` (forgetting NaN at t = 1). Equals
    `phase_model_expectations` for balanced routing; exact for isotropic Gaussian
    features under the phase model.
    """
    W = check_pool_matrix(W)
    r = check_r(r)
    M = _positive_int("M", M)
    T, T1 = check_phases(T, T1)
    N = W.shape[0]
    Q2 = default_routing(N, M, K) if Q2 is None else check_routing(Q2, N, M)
    quantities = pool_quantities(W, balanced_groups(Q2))
    rho = 1.0 - (1.0 - r) / M
    numeric = _numeric_forms()
    t = np.arange(1, T + 1, dtype=float)
    G = np.empty(T)
    F = np.full(T, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        for phase, rounds in (("exploration", t <= T1), ("specialisation", t > T1)):
            if not np.any(rounds):
                continue
            args = (r, rho, M, t[rounds], T1, quantities["S"], quantities["D"], quantities["D_in"])
            G[rounds] = numeric[phase]["generalization"](*args)
            F[rounds] = numeric[phase]["forgetting"](*args)
    F[0] = np.nan
    return {"generalization": G, "forgetting": F, **quantities}


# --------------------------------------------------------------------------- sharing within an expert set

#: The phase-2 retention factor with sharing (issue 9 section 4): rho_s = 1 - (1 - r) u,
#: u = |g| / N the probability that an expert is updated in a phase-2 round.
SYMBOLS.rho_s = sp.Symbol("rho_s", positive=True)


@functools.lru_cache(maxsize=None)
def derive_sharing_forms() -> dict:
    """sympy's solution of the balanced recursions when an expert set learns together.

    The phase model with ``sharing="update"`` (`moecl.phase_model`, module docstring):
    in phase 2 every expert of the selected expert's set learns the task with the same
    P_t. With balanced sets of equal size (every group g has |g| truths, served by
    |E_g| = M |g| / N experts), an expert is updated with probability
    ``u = |E_g| / M = |g| / N`` per phase-2 round instead of 1/M, towards a truth of
    its own group (each with probability 1/N). Summing the recursion of
    `moecl.phase_model` over (m, n) as in the module docstring, with
    ``rho_s = 1 - (1 - r) |g| / N`` in place of rho after T1 only:

        A(k)     = rho_s^k (Abar(T1) - D_in) + D_in
        Sigma(t) = rho_s Sigma(t-1) + (1 - rho_s)(T1 D + (k - 1) D_in) + r A(k - 1),  t = T1 + k
        L(t)     = L(t-1) + r A(k - 1)

    (the (1 - rho_s) in front of T1 D: a task learned in exploration by expert m now
    moves whenever m's set is updated, towards a truth of m's group, and the mean of
    those gaps over the exploration tasks is D because every truth is served by the
    same number of experts). Sigma(T1) and L(T1) come from `derive_balanced_forms`
    (exploration is not shared). Solved by ``Sum(...).doit()`` (generic branch);
    returns ``{"generalization", "forgetting"}`` for t > T1 in r, rho, rho_s, t, T1,
    S, D, D_in of `SYMBOLS`. With rho_s = rho (sets of one expert) it is the
    specialisation form of `derive_balanced_forms`.
    """
    r, rho, rho_s, t, T1, S, D, D_in = (
        getattr(SYMBOLS, name) for name in ("r", "rho", "rho_s", "t", "T1", "S", "D", "D_in")
    )
    j, k = _j, _k
    exploration = derive_balanced_forms()["exploration"]
    # Sigma(t) = t E[G_t]; L(t) = L(t-1) + r Abar(t-1) = Sigma(t) - (t - 1) E[F_t].
    sigma1 = sp.expand(t * exploration["generalization"])
    loss1 = sp.expand(sigma1 - (t - 1) * exploration["forgetting"])
    sigma_t1, loss_t1 = sigma1.subs(t, T1), loss1.subs(t, T1)
    abar = rho**T1 * (S - D) + D

    def own(u):
        return rho_s**u * (abar - D_in) + D_in

    def doit(summand, upper):
        return _generic_branch(sp.Sum(summand, (j, 1, upper)).doit())

    sigma = rho_s**k * sigma_t1 + doit(rho_s ** (k - j) * ((1 - rho_s) * (T1 * D + (j - 1) * D_in) + r * own(j - 1)), k)
    loss = loss_t1 + doit(r * own(j - 1), k - 1)
    return {
        "generalization": (sigma / t).subs(k, t - T1),
        "forgetting": ((sigma - r * own(k - 1) - loss) / (t - 1)).subs(k, t - T1),
    }


@functools.lru_cache(maxsize=None)
def _compact_sharing_forms() -> dict:
    """The sharing forms stated compactly (`sharing_expectations`), in r, rho, rho_s, M, t, T1, S, D, D_in."""
    r, rho, rho_s, M, t, T1, S, D, D_in = (
        getattr(SYMBOLS, name) for name in ("r", "rho", "rho_s", "M", "t", "T1", "S", "D", "D_in")
    )
    k = t - T1
    M_s = (1 - r) / (1 - rho_s)  # N / |g|: the number of experts an isolated expert would share with
    a0 = rho**T1 * (S - D) + D
    sigma_t1 = r * T1 * rho ** (T1 - 1) * (S - D) + T1 * D - M * D * (1 - rho**T1)
    loss_t1 = r * ((S - D) * (1 - rho**T1) / (1 - rho) + T1 * D)
    sigma = (
        rho_s**k * sigma_t1
        + T1 * D * (1 - rho_s**k)
        + k * D_in
        + r * k * rho_s ** (k - 1) * (a0 - D_in)
        - M_s * D_in * (1 - rho_s**k)
    )
    fresh = r * (rho_s ** (k - 1) * (a0 - D_in) + D_in)
    loss = loss_t1 + r * ((a0 - D_in) * (1 - rho_s ** (k - 1)) / (1 - rho_s) + (k - 1) * D_in)
    return {"generalization": sigma / t, "forgetting": (sigma - fresh - loss) / (t - 1)}


def _equal_group_size(Q2) -> int:
    """|g| when the balanced routing Q2 has groups of one size; ValueError otherwise."""
    sizes = np.bincount(balanced_groups(Q2))
    if np.any(sizes != sizes[0]):
        raise ValueError(
            f"the groups of Q2 have sizes {sizes.tolist()}: the sharing closed form needs groups of equal "
            "size (use moecl.phase_model.phase_model_expectations(..., sharing='update'))"
        )
    return int(sizes[0])


def sharing_expectations(M=None, N=None, K=None, Q2=None) -> dict:
    """E[G_t] and E[F_t], t > T1, when the experts of a set learn together (issue 9, section 4).

    The phase model with ``sharing="update"`` (`moecl.phase_model`): exploration as in
    `moe_expectations` (nothing is shared while the gate explores), then in phase 2
    every expert of the selected expert's set learns the task with the same projector
    P_t. With balanced sets of equal size |g| (truths per group), an expert is updated
    with probability |g| / N per round instead of 1 / M, so its error contracts by

        rho_s = 1 - (1 - r) |g| / N      instead of      rho = 1 - (1 - r) / M

    (for M >= N with one truth per set: 1 - (1 - r)/N). With ``M_s = N / |g|`` and
    ``Abar = rho^T1 (S - D) + D``, for t = T1 + k, k >= 1::

        Sigma_t = rho_s^k Sigma_T1 + T1 D (1 - rho_s^k) + k D_in
                  + r k rho_s^(k-1) (Abar - D_in) - M_s D_in (1 - rho_s^k)
        L_(t-1) = L_T1 + r [(Abar - D_in)(1 - rho_s^(k-1)) / (1 - rho_s) + (k - 1) D_in]
        E[G_t]  = Sigma_t / t
        E[F_t]  = (Sigma_t - r (rho_s^(k-1) (Abar - D_in) + D_in) - L_(t-1)) / (t - 1)

    with Sigma_T1 and L_T1 of `moe_expectations` (exploration, rate rho): the
    specialisation form of Theorems 1 and 2 with (rho, M) replaced by (rho_s, M_s) in
    every term that counts phase-2 rounds. `derive_sharing_forms` is sympy's own
    solution; the tests check that both agree and match `phase_model_expectations`.

    M, N, K, Q2 as in `moe_expectations` (``N=None``: rho_s stays a symbol). Returns
    ``{"generalization", "forgetting", "rho", "rho_s", "group_size"}`` (group_size
    None when symbolic). When every set is one expert (M <= N with default routing)
    rho_s = rho and the forms equal `moe_expectations`' specialisation forms.
    Raises ValueError when Q2 is not balanced or its groups differ in size.
    """
    forms = _compact_sharing_forms()
    M_value = SYMBOLS.M if M is None else _positive_int("M", M)
    rho = 1 - (1 - SYMBOLS.r) / M_value
    changes = {SYMBOLS.M: M_value, SYMBOLS.rho: rho}
    rho_s = SYMBOLS.rho_s
    group_size = None
    if N is not None:
        if M is None:
            raise ValueError("M=None: the routing of N truths needs a number of experts M")
        N = _positive_int("N", N)
        Q2 = default_routing(N, M_value, K) if Q2 is None else check_routing(Q2, N, M_value)
        group_size = _equal_group_size(Q2)
        rho_s = 1 - (1 - SYMBOLS.r) * sp.Rational(group_size, N)
        changes[SYMBOLS.rho_s] = rho_s
        if group_size == 1:
            changes[SYMBOLS.D_in] = sp.S.Zero
        elif group_size == N:
            changes[SYMBOLS.D_in] = SYMBOLS.D
    elif Q2 is not None:
        raise ValueError("Q2 given without N")
    out = {name: expr.subs(changes) for name, expr in forms.items()}
    out.update(rho=rho, rho_s=rho_s, group_size=group_size)
    return out


@functools.lru_cache(maxsize=None)
def _numeric_sharing_forms():
    """The compact sharing forms lambdified in (r, rho, rho_s, M, t, T1, S, D, D_in)."""
    args = [getattr(SYMBOLS, name) for name in ("r", "rho", "rho_s", "M", "t", "T1", "S", "D", "D_in")]
    return {name: sp.lambdify(args, expr, modules="numpy") for name, expr in _compact_sharing_forms().items()}


def sharing_curves(W, r, M, T, T1, Q2=None, K=None) -> dict:
    """E[G_t] and E[F_t], t = 1..T, from the closed forms with sharing (`sharing_expectations`).

    Arguments as in `curves` (Q2 balanced, groups of equal size); rounds t <= T1 come
    from `curves` (exploration is not shared). Returns ``{"generalization": (T,),
    "forgetting": (T,), "S", "D", "D_in", "rho", "rho_s"}``. Equals
    ``phase_model_expectations(..., sharing="update")`` for such routings; exact for
    isotropic Gaussian features under the phase model.
    """
    out = curves(W, r, M, T, T1, Q2=Q2, K=K)
    W = check_pool_matrix(W)
    r = check_r(r)
    N = W.shape[0]
    Q2 = default_routing(N, M, K) if Q2 is None else check_routing(Q2, N, M)
    rho = 1.0 - (1.0 - r) / M
    rho_s = 1.0 - (1.0 - r) * _equal_group_size(Q2) / N
    t = np.arange(1, T + 1, dtype=float)
    later = t > T1
    if np.any(later):
        args = (r, rho, rho_s, M, t[later], T1, out["S"], out["D"], out["D_in"])
        numeric = _numeric_sharing_forms()
        with np.errstate(divide="ignore", invalid="ignore"):
            out["generalization"][later] = numeric["generalization"](*args)
            out["forgetting"][later] = numeric["forgetting"](*args)
    out["forgetting"][0] = np.nan
    out.update(rho=rho, rho_s=rho_s)
    return out


# --------------------------------------------------------------------------- checks against Monte Carlo

#: Book choice: a closed form passes a Monte Carlo check at a round when the mean is
#: within Z_MAX standard errors of it. With a few dozen comparisons per chapter, a
#: correct form fails with probability about 1e-3 at most (normal tails, two-sided).
Z_MAX = 4.0

METRICS = ("generalization", "forgetting")


def z_scores(samples, expected, rounds, names=METRICS) -> list:
    """Compare Monte Carlo means with expected curves at some rounds.

    samples: per-replicate curves (R, T) by metric name, as a dict or an object with
    those attributes (a `moecl.SimulationResult`, the dict of `simulate_phase_model`);
    expected: curves (T,) by name (`curves`, `phase_model_expectations`); rounds: the
    rounds t (1-based) to compare; NaN points (F_1) are skipped.

    Returns one dict per comparison with keys ``metric, t, mean, se, expected, z``
    (the Monte Carlo mean minus the expected value, in standard errors), ``relative``
    (the relative deviation) and ``detectable`` (Z_MAX standard errors relative to the
    expected value: the smallest relative error the check would catch).
    """
    rows = []
    for name in names:
        values = samples[name] if isinstance(samples, dict) else getattr(samples, name)
        values = np.asarray(values, dtype=float)
        target = np.asarray(expected[name], dtype=float)
        if values.ndim != 2 or values.shape[1] != target.shape[0]:
            raise ValueError(f"samples[{name!r}] has shape {values.shape}, expected (R, {target.shape[0]})")
        mean, se = mean_se(values)
        for t in rounds:
            t = check_int("t", t, minimum=1)
            if t > target.shape[0]:
                raise ValueError(f"t={t} exceeds the {target.shape[0]} rounds of the curves")
            if np.isnan(target[t - 1]):
                continue
            if not se[t - 1] > 0:
                raise ValueError(f"{name} at t={t} has no spread over replicates (se={se[t - 1]!r})")
            z = (mean[t - 1] - target[t - 1]) / se[t - 1]
            scale = abs(target[t - 1])
            rows.append(
                {
                    "metric": name,
                    "t": t,
                    "mean": float(mean[t - 1]),
                    "se": float(se[t - 1]),
                    "expected": float(target[t - 1]),
                    "z": float(z),
                    "relative": float((mean[t - 1] - target[t - 1]) / scale) if scale > 0 else np.nan,
                    "detectable": float(Z_MAX * se[t - 1] / scale) if scale > 0 else np.inf,
                }
            )
    return rows


def format_z_scores(rows, label: str = "") -> str:
    """The rows of `z_scores` as a table, one comparison a line."""
    lines = []
    for row in rows:
        lines.append(
            f"{label:>14} {row['metric'][0].upper()}_{row['t']:<4} mean {row['mean']:+.5f} "
            f"expected {row['expected']:+.5f}  z = {row['z']:+6.2f}  "
            f"relative {row['relative']:+7.2%}  detectable {row['detectable']:6.2%}"
        )
    return "\n".join(lines)


def _positive_int(name, value) -> int:
    return check_int(name, value, minimum=1)


__all__ = [
    "METRICS",
    "SYMBOLS",
    "Z_MAX",
    "curves",
    "default_routing",
    "derive_balanced_forms",
    "derive_sharing_forms",
    "moe_expectations",
    "moe_limits",
    "moe_rates",
    "phase_model_expectations",
    "pool_quantities",
    "sharing_curves",
    "sharing_expectations",
    "simulate_phase_model",
    "single_expert_forgetting",
    "single_expert_generalization",
    "single_expert_limits",
    "z_scores",
    "format_z_scores",
]
