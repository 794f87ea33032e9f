"""Theorems 1 and 2: E[F_t], E[G_t] of the MoE with balanced expert sets (book chapter: MoE theory).

Theorems 1 (M > N) and 2 (M < N) of Li, Lin, Duan, Liang and Shroff (ICLR 2025) as
sympy expressions derived from the second-moment recursion of the phase model
(`moecl.theory.phase_model`), evaluated numerically by `curves`. Exact for isotropic
Gaussian features under the phase model's routing (see `moecl.theory`).

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
Proposition 3; `moecl.theory.phase_model.balanced_groups`). Then every expert gets a task with
probability 1/M in both phases, the retention factor of `phase_model_expectations`
is rho for every expert, and the sums over (m, n) of its recursion close on scalars:
with ``Abar(u) = rho^u (S - D) + D`` (mean error of an expert against a random truth
after u exploration rounds), ``A(j) = rho^j (Abar(T1) - D_in) + D_in`` (mean error of an
expert against the truths of its group, j rounds after T1),
``Sigma(t) = sum_{m,n} B[m, n](t)`` and ``L(t)`` as in `moecl.theory.phase_model`:

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
"""

from __future__ import annotations

import functools

import numpy as np
import sympy as sp

from .._checks import check_int
from .phase_model import (
    balanced_groups,
    check_phases,
    check_pool_matrix,
    check_r,
    check_routing,
    default_routing,
    squared_gaps,
)
from .symbolic import INDEX, SYMBOLS, drop_decaying, generic_branch


def check_positive(name, value) -> int:
    """``value`` as an integer of at least 1 (ValueError naming ``name``)."""
    return check_int(name, value, minimum=1)


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
    i, j, k = INDEX.i, INDEX.j, INDEX.k

    def abar(u):
        return rho**u * S + (1 - rho**u) * D

    def own(u):
        return rho**u * (abar(T1) - D_in) + D_in

    def doit(summand, index, upper):
        return generic_branch(sp.Sum(summand, (index, 1, upper)).doit())

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
def compact_forms() -> dict:
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
    balanced routing Q2 (``None``: `moecl.theory.phase_model.default_routing(N, M, K)`).
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
    forms = compact_forms()
    M_value = SYMBOLS.M if M is None else check_positive("M", M)
    rho = 1 - (1 - SYMBOLS.r) / M_value
    changes = {SYMBOLS.M: M_value}
    if N is not None:
        if M is None:
            raise ValueError("M=None: the routing of N truths needs a number of experts M")
        N = check_positive("N", N)
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
    forms = compact_forms()["specialisation"]
    return {name: sp.limit(drop_decaying(expr), SYMBOLS.t, sp.oo) for name, expr in forms.items()}


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
    forms = compact_forms()["specialisation"]
    limits = moe_limits()
    out = {}
    for name, expr in forms.items():
        coefficient = sp.limit(sp.together(t * (drop_decaying(expr) - limits[name])), t, sp.oo)
        out[name] = sp.simplify(coefficient.subs(rho, 1 - (1 - SYMBOLS.r) / SYMBOLS.M))
    return tuple(out.items())


def pool_quantities(W, groups=None) -> dict:
    """S, D and D_in of a pool W (N, d) (or a `moecl.Pool`).

    S = (1/N) sum_n ||w_n||^2; D = (1/N^2) sum_{n,n'} ||w_n - w_n'||^2;
    D_in = (1/N) sum_n (1/|g(n)|) sum_{n' in g(n)} ||w_n - w_n'||^2, the mean squared
    gap between a truth and the truths of its group g(n) (``groups``: one label per
    truth, e.g. from `moecl.theory.phase_model.balanced_groups`; ``None``: singletons,
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
    forms = compact_forms()
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
    M = check_positive("M", M)
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
