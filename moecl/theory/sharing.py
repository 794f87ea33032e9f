"""Sharing within an expert set: the closed forms of the MoE when every expert of a set learns each phase-2 task (book chapter: sharing).

When the experts of a set all learn each phase-2 task (`moecl.theory.phase_model`,
``sharing="update"``), an expert of a balanced set with |g| truths per group is updated
with probability |g|/N per phase-2 round, so rho becomes rho_s = 1 - (1 - r)|g|/N after
T1. `derive_sharing_forms` solves the summed recursion with sympy,
`sharing_expectations` states it compactly and `sharing_curves` evaluates it.
"""

from __future__ import annotations

import functools

import numpy as np
import sympy as sp

from .balanced import check_positive, curves, derive_balanced_forms
from .phase_model import balanced_groups, check_pool_matrix, check_r, check_routing, default_routing
from .symbolic import INDEX, SYMBOLS, generic_branch


@functools.lru_cache(maxsize=None)
def derive_sharing_forms() -> dict:
    """sympy's solution of the balanced recursions when an expert set learns together.

    The phase model with ``sharing="update"`` (`moecl.theory.phase_model`, module docstring):
    in phase 2 every expert of the selected expert's set learns the task with the same
    P_t. With balanced sets of equal size (every group g has |g| truths, served by
    |E_g| = M |g| / N experts), an expert is updated with probability
    ``u = |E_g| / M = |g| / N`` per phase-2 round instead of 1/M, towards a truth of
    its own group (each with probability 1/N). Summing the recursion of
    `moecl.theory.phase_model` over (m, n) as in the module docstring, with
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
    j, k = INDEX.j, INDEX.k
    exploration = derive_balanced_forms()["exploration"]
    # Sigma(t) = t E[G_t]; L(t) = L(t-1) + r Abar(t-1) = Sigma(t) - (t - 1) E[F_t].
    sigma1 = sp.expand(t * exploration["generalization"])
    loss1 = sp.expand(sigma1 - (t - 1) * exploration["forgetting"])
    sigma_t1, loss_t1 = sigma1.subs(t, T1), loss1.subs(t, T1)
    abar = rho**T1 * (S - D) + D

    def own(u):
        return rho_s**u * (abar - D_in) + D_in

    def doit(summand, upper):
        return generic_branch(sp.Sum(summand, (j, 1, upper)).doit())

    sigma = rho_s**k * sigma_t1 + doit(rho_s ** (k - j) * ((1 - rho_s) * (T1 * D + (j - 1) * D_in) + r * own(j - 1)), k)
    loss = loss_t1 + doit(r * own(j - 1), k - 1)
    return {
        "generalization": (sigma / t).subs(k, t - T1),
        "forgetting": ((sigma - r * own(k - 1) - loss) / (t - 1)).subs(k, t - T1),
    }


@functools.lru_cache(maxsize=None)
def compact_sharing_forms() -> dict:
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
            "size (use moecl.theory.phase_model.phase_model_expectations(..., sharing='update'))"
        )
    return int(sizes[0])


def sharing_expectations(M=None, N=None, K=None, Q2=None) -> dict:
    """E[G_t] and E[F_t], t > T1, when the experts of a set learn together (book chapter: sharing).

    The phase model with ``sharing="update"`` (`moecl.theory.phase_model`): exploration as in
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
    forms = compact_sharing_forms()
    M_value = SYMBOLS.M if M is None else check_positive("M", M)
    rho = 1 - (1 - SYMBOLS.r) / M_value
    changes = {SYMBOLS.M: M_value, SYMBOLS.rho: rho}
    rho_s = SYMBOLS.rho_s
    group_size = None
    if N is not None:
        if M is None:
            raise ValueError("M=None: the routing of N truths needs a number of experts M")
        N = check_positive("N", N)
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
    return {name: sp.lambdify(args, expr, modules="numpy") for name, expr in compact_sharing_forms().items()}


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
