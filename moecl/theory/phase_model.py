"""The phase model: Algorithm 1 with routing that does not look at the experts.

the book's MoE theory chapter. The phase model keeps the task stream and the expert update of
the paper (Eq. (5)) but replaces the learned gate by a fixed routing law in two
phases, the idealisation behind Proposition 4 and Theorems 1 and 2 of Li et al.
(ICLR 2025):

* exploration, rounds ``t <= T1``: a task goes to every expert with probability 1/M;
* specialisation, rounds ``t > T1``: task n goes to expert m with probability
  ``Q2[n, m]`` (`default_routing` gives the book's choice of balanced expert sets).

At round t the pair (n_t, m_t) therefore has probability
``q_t[m, n] = (1/N) Q_t[n, m]``, independent of the models. With isotropic Gaussian
features (every column of X_t is N(0, I)) the projector P_t of Eq. (5) is a uniformly
random rank-s projector independent of everything else, ``E[P_t] = (s/d) I``, and
for any fixed u, given (n_t, m_t) = (n', m),

    E||w_t^(m) - u||^2 = r E||w_{t-1}^(m) - u||^2 + (1 - r) ||w_n' - u||^2,  r = 1 - s/d

(the cross term vanishes because (I - P_t) P_t = 0), while the other experts stay
put. Hence ``a[m, n](t) = E||w_t^(m) - w_n||^2`` obeys the affine recursion

    a(t) = (1 - (1-r) qm(t)) a(t-1) + (1-r) (q_t Delta)[m, n],   a[m, n](0) = ||w_n||^2

with ``qm(t) = sum_n' q_t[m, n']`` and ``Delta[n', n] = ||w_n' - w_n||^2``. For the
metrics, let ``B[m, n](t) = E[sum_{i<=t} 1{(n_i, m_i) = (n, m)} ||w_t^(m) - w_n||^2]``
and ``L(t) = E[sum_{i<=t} E_i(w_i^(m_i))]``. Each earlier task (n, m), i < t, has
probability q_i[m, n] and, given it, the same expected increment at round t, so with
``C[m, n](t-1) = sum_{i<t} q_i[m, n]``

    B(t) = (1 - (1-r) qm(t)) B(t-1) + (1-r) C(t-1) (q_t Delta) + r q_t a(t-1)
    L(t) = L(t-1) + r sum_{m,n} q_t[m, n] a[m, n](t-1)

(the last term of B: the task of round t is learned from w_{t-1}, which leaves
``E||w_t - w_n||^2 = r a(t-1)``). Then ``E[G_t] = sum B(t) / t`` and
``E[F_t] = (sum B(t) - r sum q_t a(t-1) - L(t-1)) / (t-1)``.

Sharing within an expert set (``sharing="update"``, book chapter: sharing, book choice):
in phase 2 the experts split into the *expert sets* of Q2 (`expert_sets`: experts
linked by a truth they both serve), and when task (n', m) arrives every expert of
m's set learns it by Eq. (5) with the same projector P_t. Each expert's own model
still takes the step above, only more often: it is *updated* at round t with
probability ``um(t) = sum_n' p_t[m, n']``, where ``p_t = S q_t`` and
``S[m, m'] = 1`` when m and m' share a set (``p_t = q_t`` without sharing). The
"is updated" law p replaces the "is routed" law q wherever an expert moves:

    a(t) = (1 - (1-r) um(t)) a(t-1) + (1-r) (p_t Delta)[m, n]
    B(t) = (1 - (1-r) um(t)) B(t-1) + (1-r) C(t-1) (p_t Delta) + r q_t a(t-1)

while C, L and the fresh term ``r q_t a(t-1)`` keep q: they count the tasks routed
to m (G_t and F_t score task i on the expert m_i that the router picked, whose model
now also moves when a set-mate is picked). The step is exact because the round's
routing is independent of the models and P_t of everything else, so the expected
increment of an old task's error at round t depends on the past only through
||w_(t-1)^(m) - w_n||^2. For balanced sets of equal size (|g| truths each) an
expert is updated with probability |g|/N in phase 2 instead of 1/M: the phase-2
factor becomes ``1 - (1 - r)|g|/N`` (`moecl.theory.sharing_expectations`).

These expectations are exact for the phase model with isotropic Gaussian features
(`phase_model_expectations`, checked against the Monte Carlo `simulate_phase_model`).
For Algorithm 1 they are an approximation twice over: its routing depends on the
models, and under Definition 1 features the span of X_t always contains v_{n_t}, so
P_t is not a uniformly random projector.
"""

from __future__ import annotations


import numpy as np

from .._checks import check_int
from ..experts import min_norm_change

#: Tolerance on the row sums of a routing matrix.
ROW_SUM_TOL = 1e-9

#: Sharing rules of the phase model: the paper's isolated experts, or every expert of
#: the selected expert's set learning the task in phase 2 (module docstring).
PHASE_SHARING_RULES = ("none", "update")


# --------------------------------------------------------------------------- inputs


def check_r(r) -> float:
    """The contraction factor r = 1 - s/d as a float in the open interval (0, 1)."""
    if isinstance(r, bool):
        raise ValueError(f"r={r!r} must be a real number in (0, 1)")
    try:
        value = float(r)
    except (TypeError, ValueError):
        raise ValueError(f"r={r!r} must be a real number in (0, 1)") from None
    if not 0.0 < value < 1.0:
        raise ValueError(f"r={r!r} must lie strictly between 0 and 1 (r = 1 - s/d)")
    return value


def check_pool_matrix(W) -> np.ndarray:
    """Ground truths W as a finite float (N, d) array."""
    W = np.asarray(getattr(W, "W", W), dtype=float)
    if W.ndim != 2 or W.shape[0] < 1 or W.shape[1] < 1:
        raise ValueError(f"W has shape {W.shape}, expected (N, d) with N, d >= 1")
    if not np.all(np.isfinite(W)):
        raise ValueError("W contains non-finite values")
    return W


def check_phases(T, T1) -> tuple[int, int]:
    """(T, T1) as ints with T >= 1 and 0 <= T1 <= T."""
    T = check_int("T", T, minimum=1)
    T1 = check_int("T1", T1, minimum=0)
    if T1 > T:
        raise ValueError(f"T1={T1} exceeds T={T}")
    return T, T1


def check_routing(Q2, N: int, M: int) -> np.ndarray:
    """A phase-2 routing matrix Q2[n, m] = P(expert m | task n): shape (N, M), rows sum to 1."""
    Q2 = np.asarray(Q2, dtype=float)
    if Q2.shape != (N, M):
        raise ValueError(f"Q2 has shape {Q2.shape}, expected (N, M) = ({N}, {M})")
    if not np.all(np.isfinite(Q2)):
        raise ValueError("Q2 contains non-finite values")
    if np.any(Q2 < 0):
        n, m = np.argwhere(Q2 < 0)[0]
        raise ValueError(f"Q2[{n}, {m}]={float(Q2[n, m])!r} is negative: Q2 holds probabilities")
    sums = Q2.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > ROW_SUM_TOL)
    if bad.size:
        n = int(bad[0])
        raise ValueError(f"Q2 row {n} sums to {float(sums[n])!r}, not 1: Q2[n, m] = P(expert m | task n)")
    return Q2


def squared_gaps(W: np.ndarray) -> np.ndarray:
    """Delta[n', n] = ||w_n' - w_n||^2 (N, N), from the differences (no cancellation for close truths)."""
    diff = W[:, None, :] - W[None, :, :]
    return np.sum(diff * diff, axis=-1)


def check_sharing(sharing) -> str:
    """The phase model's sharing rule, one of `PHASE_SHARING_RULES`, or ValueError naming it."""
    if not isinstance(sharing, str) or sharing not in PHASE_SHARING_RULES:
        extra = (
            " (the phase model has no closed form for averaging; use moecl.simulate(Config(sharing='average')))"
            if sharing == "average"
            else ""
        )
        raise ValueError(f"sharing={sharing!r} is not one of {PHASE_SHARING_RULES}{extra}")
    return sharing


# --------------------------------------------------------------------------- routing


def default_routing(N: int, M: int, K: int | None = None) -> np.ndarray:
    """The book's phase-2 routing Q2 (N, M), Q2[n, m] = P(expert m | task n) (book choice).

    The routing is built on *units*: the N ground truths themselves (``K=None``) or
    the K clusters of `moecl.tasks.cluster_of` (truth n in cluster ``n mod K``).
    With ``U`` units:

    * ``M >= U``: expert m serves unit ``m mod U``; a task goes uniformly to the
      experts serving its unit (the expert sets M_n of Proposition 1 / Theorem 1);
    * ``M < U``: expert m serves the units u with ``u mod M == m``, each unit one
      expert (the clusters of Theorem 2); with ``K=None`` expert m serves the truths
      n with ``n mod M == m``, so ``Q2[n, n mod M] = 1``.

    Every unit is served, so every row sums to 1. The load is balanced (each expert
    receives a task with probability 1/M) when U divides M (or M divides U) and the
    units have equal sizes; `balanced_groups` checks this.
    """
    N = check_int("N", N, minimum=1)
    M = check_int("M", M, minimum=1)
    if K is not None:
        K = check_int("K", K, minimum=1)
        if K > N:
            raise ValueError(f"K={K} clusters cannot exceed N={N} ground truths")
    units = N if K is None else K
    unit_of_truth = np.arange(N) % units
    Q2 = np.zeros((N, M))
    for n in range(N):
        u = unit_of_truth[n]
        serving = np.flatnonzero(np.arange(M) % units == u) if M >= units else [u % M]
        Q2[n, serving] = 1.0 / len(serving)
    return Q2


def balanced_groups(Q2) -> np.ndarray:
    """Group label of each truth when Q2 is block-balanced; ValueError otherwise.

    Block-balanced means: the truths split into groups g and the experts into
    disjoint sets E_g; a task of group g goes uniformly to the experts of E_g; and
    every expert carries the same load, ``|g| / |E_g| = N / M``. Then each expert
    receives a task with probability 1/M in phase 2 as in phase 1, which is what the
    closed forms of `moecl.theory` need (the paper's balanced expert sets,
    Proposition 3).
    """
    Q2 = np.asarray(Q2, dtype=float)
    N, M = Q2.shape
    supports = [tuple(int(m) for m in np.flatnonzero(Q2[n] > 0)) for n in range(N)]
    labels = {}
    groups = np.empty(N, dtype=np.int64)
    for n, support in enumerate(supports):
        if not np.allclose(Q2[n, list(support)], 1.0 / len(support), rtol=0, atol=1e-12):
            raise ValueError(f"Q2 row {n} is not uniform over its experts {list(support)}")
        groups[n] = labels.setdefault(support, len(labels))
    used = [m for support in labels for m in support]
    if len(used) != len(set(used)):
        raise ValueError("Q2 is not block-structured: two groups of truths share an expert")
    for support, g in labels.items():
        size = int(np.sum(groups == g))
        if size * M != len(support) * N:
            raise ValueError(
                f"Q2 is not balanced: experts {list(support)} serve {size} of N={N} truths, "
                f"a load of {size}/{len(support)} per expert instead of N/M = {N}/{M}"
            )
    return groups


def expert_sets(Q2) -> np.ndarray:
    """The expert set of every expert under the phase-2 routing Q2 (N, M): labels (M,).

    Two experts are in one set when they serve a common truth (``Q2[n, m] > 0`` and
    ``Q2[n, m'] > 0``), closed transitively (connected components of the bipartite
    truth-expert support graph); an expert that serves no truth is a set of its own.
    For block-structured Q2 (`balanced_groups`) the sets are the blocks E_g, the
    expert sets M_n of Proposition 1; with ``default_routing(N, M)`` and ``M < N``
    every set is one expert. Labels are numbered by first appearance (expert 0 is in
    set 0). This is the phase model's counterpart of the book's choice for Algorithm 1
    (experts with the same closest ground truth), where the routing has formed them.
    """
    Q2 = np.asarray(Q2, dtype=float)
    if Q2.ndim != 2:
        raise ValueError(f"Q2 has shape {Q2.shape}, expected (N, M)")
    M = Q2.shape[1]
    parent = list(range(M))

    def root(m):
        while parent[m] != m:
            parent[m] = parent[parent[m]]
            m = parent[m]
        return m

    for row in Q2:
        support = np.flatnonzero(row > 0)
        for m in support[1:]:
            parent[root(int(m))] = root(int(support[0]))
    roots = [root(m) for m in range(M)]
    labels = {}
    return np.array([labels.setdefault(g, len(labels)) for g in roots], dtype=np.int64)


def check_sets(sets, M: int) -> np.ndarray:
    """Expert-set labels (M,) as an int array, or ValueError naming ``sets``."""
    labels = np.asarray(sets)
    if labels.shape != (M,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"sets={sets!r} must be M={M} integer set labels, one per expert")
    return labels.astype(np.int64)


def update_law(q, Q2, sets=None) -> np.ndarray:
    """p[m, n] = P(expert m is updated towards truth n) under sharing: ``p = S q``.

    q (M, N): the routing law of the round, q[m, n] = P(m_t = m, n_t = n); S the
    (M, M) same-set indicator of the set labels ``sets`` (``None``: `expert_sets(Q2)`).
    Each expert of the selected expert's set learns the task, so expert m moves
    towards n when the task is n and any expert of m's set is picked.
    """
    labels = expert_sets(Q2) if sets is None else np.asarray(sets)
    same = (labels[:, None] == labels[None, :]).astype(float)
    return same @ q


def routing_matrices(Q2) -> tuple[np.ndarray, np.ndarray]:
    """q1, q2 (M, N): the joint law q[m, n] of (m_t, n_t) in exploration and in specialisation."""
    Q2 = np.asarray(Q2, dtype=float)
    N, M = Q2.shape
    return np.full((M, N), 1.0 / (N * M)), Q2.T / N


# --------------------------------------------------------------------------- exact expectations


def phase_model_expectations(W, r, M, T, T1, Q2=None, sharing="none", sets=None) -> dict:
    """Exact E[G_t] and E[F_t], t = 1..T, of the phase model (module docstring).

    W: ground truths (N, d) (or a `moecl.Pool`); r = 1 - s/d in (0, 1); M experts;
    T rounds; exploration for the first T1 rounds (uniform routing), then routing by
    Q2 (N, M) (``None``: `default_routing(N, M)`). Works for any pool and any routing
    matrix, in O(T M N^2). sharing: ``"none"`` (the paper's isolated experts) or
    ``"update"`` (in phase 2 every expert of the selected expert's set, `expert_sets`,
    learns the task with the same P_t; module docstring). sets: labels (M,) of the
    expert sets that share (``None``: `expert_sets(Q2)`); given, they may differ from
    Q2's support, e.g. pure sets under impure routing (a misrouted task then updates
    the whole set it was sent to).

    Returns ``{"generalization": (T,), "forgetting": (T,)}``; forgetting is NaN at
    t = 1 (no earlier task). Exact for isotropic Gaussian features; only an
    approximation for Algorithm 1 (model-dependent routing, Definition 1 features).
    """
    W = check_pool_matrix(W)
    r = check_r(r)
    M = check_int("M", M, minimum=1)
    T, T1 = check_phases(T, T1)
    N = W.shape[0]
    Q2 = default_routing(N, M) if Q2 is None else check_routing(Q2, N, M)
    sharing = check_sharing(sharing)
    sets = None if sets is None else check_sets(sets, M)[None]
    out = _expectations(W, r, M, T, T1, Q2[None], sharing=sharing, sets=sets)
    return {name: values[0] for name, values in out.items()}


def expectations_over_routings(W, r, M, T, T1, Q2s, sharing="none", sets=None) -> dict:
    """E[G_t] and E[F_t] of the phase model whose phase-2 routing is itself random.

    Q2s (R, N, M): R routing matrices, each with rows summing to 1. The phase model
    first draws one of them uniformly (independently of the tasks, the data and the
    models), then runs as in `phase_model_expectations`. Its expectations are
    therefore the mean over the R matrices of `phase_model_expectations`, computed
    here in one vectorised pass. With the per-replicate routing that Algorithm 1
    actually used after T1 (`measured_routing`) this is "the phase model with the
    routing Algorithm 1 achieved": what is left between it and Algorithm 1 comes from
    the routing's dependence on the models and from the feature model.

    sharing: as in `phase_model_expectations`; sets: ``None`` (each replicate's sets
    from its own Q2, `expert_sets`), labels (M,) for all, or (R, M), one row a routing.

    Returns ``{"generalization": (T,), "forgetting": (T,)}`` (forgetting NaN at t = 1).
    """
    W = check_pool_matrix(W)
    r = check_r(r)
    M = check_int("M", M, minimum=1)
    T, T1 = check_phases(T, T1)
    N = W.shape[0]
    Q2s = np.asarray(Q2s, dtype=float)
    if Q2s.ndim != 3 or Q2s.shape[0] < 1:
        raise ValueError(f"Q2s has shape {Q2s.shape}, expected (R, N, M) = (R, {N}, {M}) with R >= 1")
    for Q2 in Q2s:
        check_routing(Q2, N, M)
    sharing = check_sharing(sharing)
    if sets is not None:
        labels = np.asarray(sets)
        if labels.ndim == 2 and labels.shape[0] == Q2s.shape[0]:
            sets = np.stack([check_sets(row, M) for row in labels])
        else:
            sets = np.broadcast_to(check_sets(labels, M), (Q2s.shape[0], M))
    out = _expectations(W, r, M, T, T1, Q2s, sharing=sharing, sets=sets)
    return {name: values.mean(axis=0) for name, values in out.items()}


def _expectations(W, r, M, T, T1, Q2s, sharing="none", sets=None) -> dict:
    """The recursion of the module docstring for a stack Q2s (R, N, M) of checked routings.

    q is the law of the routed pair (m_t, n_t), p the law of "expert m is updated
    towards n": p = q without sharing (the very same array, so those numbers are
    unchanged), p = S q in phase 2 with ``sharing="update"`` (`update_law`).
    """
    N = W.shape[0]
    R = Q2s.shape[0]
    q1 = np.full((1, M, N), 1.0 / (N * M))
    q2 = np.swapaxes(Q2s, 1, 2) / N  # q[m, n] = Q2[n, m] / N
    if sharing == "update":
        labels = [None] * R if sets is None else sets
        p2 = np.stack([update_law(q, Q2, s) for q, Q2, s in zip(q2, Q2s, labels)])
    else:
        p2 = q2

    norms = np.sum(W * W, axis=1)
    Delta = squared_gaps(W)
    # per phase: q, (p Delta)[m, n] and the retention factor 1 - (1 - r) pm
    phases = [(q, p @ Delta, 1.0 - (1.0 - r) * p.sum(axis=2, keepdims=True)) for q, p in ((q1, q1), (q2, p2))]

    a = np.broadcast_to(norms, (R, M, N)).copy()
    B = np.zeros((R, M, N))
    C = np.zeros((R, M, N))
    L = np.zeros(R)
    G = np.empty((R, T))
    F = np.full((R, T), np.nan)
    for t in range(1, T + 1):
        q, qDelta, keep = phases[0] if t <= T1 else phases[1]
        fresh = r * q * a  # E[1{task t = (n, m)} E_t(w_t)]
        fresh_total = fresh.sum(axis=(1, 2))
        B = keep * B + (1.0 - r) * C * qDelta + fresh
        a = keep * a + (1.0 - r) * qDelta
        total = B.sum(axis=(1, 2))
        G[:, t - 1] = total / t
        if t > 1:
            F[:, t - 1] = (total - fresh_total - L) / (t - 1)
        L = L + fresh_total
        C = C + q
    return {"generalization": G, "forgetting": F}


def measured_routing(tasks, experts, N, M, start=0, end=None) -> np.ndarray:
    """The routing matrix each replicate used in rounds ``start + 1 .. end``, (R, N, M).

    tasks, experts (R, T): the ground truth n_t and the expert m_t of every round (as
    in `moecl.SimulationResult` or `simulate_phase_model`); ``end=None`` means T.
    Entry [k, n, m] is the share of the tasks of truth n in those rounds of
    replicate k that went to expert m: the empirical Q2[n, m] = P(expert m | task n)
    of the phase model. A truth that never occurred in the window gets the uniform
    row 1/M (it then carries no weight in that replicate's routing anyway).
    """
    tasks = np.asarray(tasks)
    experts = np.asarray(experts)
    if tasks.ndim != 2 or tasks.shape != experts.shape:
        raise ValueError(f"tasks {tasks.shape} and experts {experts.shape} must be (R, T) arrays of one shape")
    N = check_int("N", N, minimum=1)
    M = check_int("M", M, minimum=1)
    R, T = tasks.shape
    end = T if end is None else check_int("end", end, minimum=1)
    start = check_int("start", start, minimum=0)
    if not start < end <= T:
        raise ValueError(f"start={start}, end={end}: need 0 <= start < end <= T={T}")
    n, m = tasks[:, start:end], experts[:, start:end]
    if n.min() < 0 or n.max() >= N:
        raise ValueError(f"tasks hold truth indices outside 0..N-1 = 0..{N - 1}")
    if m.min() < 0 or m.max() >= M:
        raise ValueError(f"experts hold expert indices outside 0..M-1 = 0..{M - 1}")
    counts = np.zeros((R, N, M))
    np.add.at(counts, (np.arange(R)[:, None], n, m), 1.0)
    totals = counts.sum(axis=2, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, counts / totals, 1.0 / M)


# --------------------------------------------------------------------------- Monte Carlo


def simulate_phase_model(W, d, s, M, T, T1, Q2=None, replicates=1000, seed=0, sharing="none", sets=None) -> dict:
    """Monte Carlo of the phase model, vectorised over replicates.

    Each replicate: experts start at 0; round t draws n_t uniformly from the N
    truths, m_t from row n_t of the routing matrix of its phase (uniform for
    t <= T1, Q2 afterwards; ``None``: `default_routing(N, M)`), and isotropic data
    X_t (d x s, i.i.d. N(0, 1) entries); expert m_t takes the min-norm step of
    Eq. (5) towards w_{n_t} (`moecl.experts.min_norm_change`), the others stay put;
    with ``sharing="update"``, in phase 2 (t > T1) the other experts of m_t's set
    (labels ``sets``; ``None``: `expert_sets(Q2)`) learn the task too, each by Eq. (5) from its own model with
    the same X_t. The routing never looks at the models, and the random stream does
    not depend on ``sharing`` (same seed, same tasks, routing and data).

    Returns ``{"generalization": (R, T), "forgetting": (R, T), "tasks": (R, T),
    "experts": (R, T)}``, forgetting NaN at t = 1, with the metrics of the paper
    (book chapter: router). Its mean estimates `phase_model_expectations` with
    ``r = 1 - s/d``.
    """
    W = check_pool_matrix(W)
    N, dim = W.shape
    d = check_int("d", d, minimum=1)
    s = check_int("s", s, minimum=1)
    if d != dim:
        raise ValueError(f"d={d} does not match W of shape {W.shape}")
    if s >= d:
        raise ValueError(f"s={s} must be smaller than d={d}")
    M = check_int("M", M, minimum=1)
    T, T1 = check_phases(T, T1)
    R = check_int("replicates", replicates, minimum=1)
    Q2 = default_routing(N, M) if Q2 is None else check_routing(Q2, N, M)
    sharing = check_sharing(sharing)
    set_of = expert_sets(Q2) if sets is None else check_sets(sets, M)
    cdf1 = np.cumsum(np.full((N, M), 1.0 / M), axis=1)
    cdf2 = np.cumsum(Q2, axis=1)
    rng = np.random.default_rng(seed)

    everyone = np.arange(R)
    models = np.zeros((R, M, d))
    norms = np.sum(W * W, axis=1)
    errors = np.broadcast_to(norms, (R, M, N)).copy()  # ||w^(m) - w_n||^2
    learned = np.zeros((R, M, N))
    error_when_learned = np.zeros(R)
    out = {
        "generalization": np.empty((R, T)),
        "forgetting": np.full((R, T), np.nan),
        "tasks": np.empty((R, T), dtype=np.int64),
        "experts": np.empty((R, T), dtype=np.int64),
    }
    for t in range(1, T + 1):
        n = rng.integers(0, N, size=R)
        cdf = (cdf1 if t <= T1 else cdf2)[n]
        m = np.minimum(np.sum(rng.random(R)[:, None] >= cdf, axis=1), M - 1)
        X = rng.standard_normal((R, d, s))
        labels = (np.swapaxes(X, 1, 2) @ W[n][:, :, None])[..., 0]
        selected = models[everyone, m]
        selected = selected + min_norm_change(selected, X, labels)
        models[everyone, m] = selected
        diff = selected[:, None, :] - W
        errors[everyone, m] = np.sum(diff * diff, axis=-1)
        if sharing == "update" and t > T1:
            mates = (set_of[None, :] == set_of[m][:, None]) & (np.arange(M)[None, :] != m[:, None])
            for k in np.flatnonzero(mates.any(axis=0)):
                rows = np.flatnonzero(mates[:, k])
                models[rows, k] += min_norm_change(models[rows, k], X[rows], labels[rows])
                diff = models[rows, k][:, None, :] - W
                errors[rows, k] = np.sum(diff * diff, axis=-1)
        total_before = np.sum(learned * errors, axis=(1, 2))
        if t > 1:
            out["forgetting"][:, t - 1] = (total_before - error_when_learned) / (t - 1)
        learned[everyone, m, n] += 1
        current = errors[everyone, m, n]
        error_when_learned += current
        out["generalization"][:, t - 1] = (total_before + current) / t
        out["tasks"][:, t - 1] = n
        out["experts"][:, t - 1] = m
    return out


__all__ = [
    "PHASE_SHARING_RULES",
    "balanced_groups",
    "check_sets",
    "check_sharing",
    "default_routing",
    "expert_sets",
    "expectations_over_routings",
    "measured_routing",
    "phase_model_expectations",
    "routing_matrices",
    "simulate_phase_model",
    "squared_gaps",
    "update_law",
]
