"""The methods of the deep runs: the paper's gate, SEED, fine-tuning, replay, joint training.

`moecl.deep.run` has one loop (plan the round, train the selected experts, evaluate and
record); what differs between the methods it compares is a set of hooks the loop calls
and never asks which method it has (`Method`): which expert a task goes to, what it
trains on, whether it restarts (refits), its feature distillation, the locality signal,
the bookkeeping after training, how the method predicts, and which optional records it
fills. One class per method, registered in `METHOD_CLASSES` and chosen by
``DeepConfig.method``; adding a method touches this module (and its tests) only:

* ``"gate"`` - the paper's MoE: linear gate Eq. (1), noisy top-1 routing Eq. (2),
  gate step Eq. (9) on the locality and load-balancing losses Eq. (6)-(7), frozen by
  the termination rule after T1 rounds (`moecl.gate`).
* ``"seed"`` - SEED-style selection (Rypesc et al., ICLR 2024, "Divide and not
  forget"): every expert keeps a diagonal Gaussian per class on its penultimate
  features; while some expert has never been trained, a new task goes to the first
  untrained one (SEED's first K tasks); afterwards to the expert in whose feature
  space the task's classes are most separated, the largest mean pairwise symmetric KL
  divergence between their Gaussians (`symmetric_kl`, `kl_scores`). After training,
  every trained expert fits Gaussians to the task's classes. Prediction is the Bayes
  ensemble `bayes_ensemble_log_posterior`, in which a class's score averages only the
  experts that have fitted a Gaussian to it (SEED leaves the other pairs out). The
  selected expert, once it has been trained before, fine-tunes with SEED's feature
  distillation: cross-entropy plus ``DeepConfig.seed_distillation`` times the mean
  squared distance between its penultimate features and those of its own previous
  version on the task's images (`moecl.deep.training.train`).
* ``"finetune"`` - one network (M = 1) trained on every task in turn (lower reference).
* ``"replay"`` - one network trained each round on the task's fresh samples plus, for
  every other task type seen so far, as many samples drawn from everything seen of
  that type (a bounded experience replay; a round costs at most N times a fine-tuning
  round).
* ``"joint"`` - the standard upper reference: one network trained **from scratch,
  offline**, on every sample drawn so far (all tasks seen), every
  ``DeepConfig.joint_refit_every`` rounds and after the last round; in between it keeps
  its last fit. With ``joint_refit_every = T`` only the final row of its accuracy
  matrix is a joint fit (the form for long runs: one offline fit on everything).

A method keeps its state in a plain dict (numpy arrays and numbers) so that the
run's checkpoint can store it; what it derives from the seed and the data at the start
of a run (`Method.start`: the gate's features of the test images, joint training's
initial weights) it keeps on itself, and a resumed run derives it again.
"""

from __future__ import annotations

import math

import numpy as np

from .. import gate

# --------------------------------------------------------------------------- SEED's Gaussians


def fit_gaussian(features: np.ndarray, shrinkage: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and diagonal variance of one class's features (n, D), float64.

    **Book choice** (SEED fits a full covariance with a growing ridge ``eps``): the
    variance is shrunk towards its mean over dimensions,
    ``var = (1 - s) var_d + s mean_d(var_d) + 1e-4``, ``s = shrinkage``, so that
    dimensions a ReLU keeps at zero do not give zero variance.
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 1:
        raise ValueError(f"features of shape {features.shape} must be (n >= 1, D)")
    mean = features.mean(axis=0)
    var = features.var(axis=0)
    var = (1.0 - shrinkage) * var + shrinkage * var.mean() + 1e-4
    return mean, var


def symmetric_kl(mu_p, var_p, mu_q, var_q) -> np.ndarray:
    """``KL(p||q) + KL(q||p)`` of diagonal Gaussians (last axis: dimensions).

    ``= 1/2 sum_d [var_p/var_q + var_q/var_p - 2 + (mu_p - mu_q)^2 (1/var_p + 1/var_q)]``.
    """
    mu_p, var_p, mu_q, var_q = (np.asarray(a, dtype=np.float64) for a in (mu_p, var_p, mu_q, var_q))
    difference = (mu_p - mu_q) ** 2
    return 0.5 * np.sum(var_p / var_q + var_q / var_p - 2.0 + difference * (1.0 / var_p + 1.0 / var_q), axis=-1)


def kl_scores(mu: np.ndarray, var: np.ndarray) -> np.ndarray:
    """SEED's selection score of every expert: mean pairwise symmetric KL of the task's classes.

    ``mu``, ``var``: (M, k, D), the Gaussians of the new task's k classes in each of
    the M experts' feature spaces. Returns (M,): ``2/(k(k-1)) sum_{i<j} KL_sym(c_i, c_j)``.
    SEED fine-tunes the expert with the largest score (`np.argmax`; the first on ties).
    """
    mu, var = np.asarray(mu, dtype=np.float64), np.asarray(var, dtype=np.float64)
    if mu.ndim != 3 or mu.shape != var.shape:
        raise ValueError(f"mu {mu.shape} and var {var.shape} must both be (M, k, D)")
    k = mu.shape[1]
    if k < 2:
        raise ValueError(f"a task with k={k} class has no pairs of classes to separate; SEED needs k >= 2")
    if np.any(var <= 0):
        raise ValueError("var must be positive")
    i, j = np.triu_indices(k, 1)
    return symmetric_kl(mu[:, i], var[:, i], mu[:, j], var[:, j]).mean(axis=1)


def log_likelihoods(features: np.ndarray, mu: np.ndarray, var: np.ndarray) -> np.ndarray:
    """``log N(z; mu_c, diag var_c)`` for features (n, D) and classes (C, D) -> (n, C)."""
    features = np.asarray(features, dtype=np.float64)
    return -0.5 * (np.sum(np.log(2 * math.pi * var), axis=-1)[None, :]
                   + np.sum((features[:, None, :] - mu[None]) ** 2 / var[None], axis=-1))


def bayes_ensemble_log_posterior(features: np.ndarray, mu: np.ndarray, var: np.ndarray,
                                 fitted: np.ndarray | None = None) -> np.ndarray:
    """SEED's Bayes ensemble: ``log softmax_c (mean_{m fitted c} log N(z_m; mu_mc, var_mc))``.

    ``features`` (M, n, D): each expert's penultimate features of n images;
    ``mu``, ``var`` (M, C, D): the candidate classes' Gaussians in each expert;
    ``fitted`` (M, C) bool: which expert/class pairs hold a fitted Gaussian (``None``:
    all). A class's score averages only the experts that fitted it, as SEED does: a
    pair never fitted holds a placeholder, not a model of the class, and must not vote;
    a class no expert has fitted gets probability 0.
    Returns the log posterior (n, C) over the candidate classes. (SEED's published code
    softmaxes each expert's log-likelihoods with a temperature before averaging; the book
    averages the log-likelihoods, the product-of-experts form of the Bayes rule.)
    """
    features, mu, var = (np.asarray(a, dtype=np.float64) for a in (features, mu, var))
    if features.ndim != 3 or mu.ndim != 3 or mu.shape != var.shape or features.shape[0] != mu.shape[0] \
            or features.shape[2] != mu.shape[2]:
        raise ValueError(f"features {features.shape} must be (M, n, D) and mu, var {mu.shape} (M, C, D)")
    fitted = np.ones(mu.shape[:2], dtype=bool) if fitted is None else np.asarray(fitted, dtype=bool)
    if fitted.shape != mu.shape[:2]:
        raise ValueError(f"fitted {fitted.shape} must be (M, C) = {mu.shape[:2]}")
    likelihoods = np.array([log_likelihoods(z, m, v) for z, m, v in zip(features, mu, var)])  # (M, n, C)
    voters = fitted.sum(axis=0)
    weights = fitted / np.maximum(voters, 1)  # (M, C): mean over the experts that fitted c
    score = np.einsum("mnc,mc->nc", np.where(fitted[:, None, :], likelihoods, 0.0), weights)
    score[:, voters == 0] = -np.inf  # a class no expert has fitted cannot be predicted
    score -= score.max(axis=1, keepdims=True)
    return score - np.log(np.sum(np.exp(score), axis=1, keepdims=True))


# --------------------------------------------------------------------------- methods


def _log_softmax(scores: np.ndarray) -> np.ndarray:
    scores = scores - scores.max(axis=1, keepdims=True)
    return scores - np.log(np.sum(np.exp(scores), axis=1, keepdims=True))


def score(log_posterior: np.ndarray, candidates: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Cross-entropy and accuracy of a (n, C) log posterior over ``candidates`` against labels."""
    position = np.searchsorted(candidates, labels)
    rows = np.arange(len(labels))
    loss = float(-np.mean(log_posterior[rows, position]))
    accuracy = float(np.mean(candidates[np.argmax(log_posterior, axis=1)] == labels))
    return loss, accuracy


def logits_log_posterior(logits: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """The log posterior (n, C) over ``classes`` of one network's logits (n, outputs)."""
    return _log_softmax(logits[:, classes])


class Method:
    """A method of the deep loop, as the hooks the loop calls; the defaults are fine-tuning's.

    Per round the loop calls, per replicate: `select` (the expert and its selection scores),
    `training_set` (what it trains on), `before_training` (a refit restarts it),
    `locality_before_training` and `distillation`; then it trains the selected experts of
    every replicate together and calls `after_training` (bookkeeping; True when the gate
    terminates) and `record` (the optional records, `optional_records`, and the
    ``current_experts`` record) and `class_log_posterior` (the class-incremental prediction).
    `start` runs once per run, after the experts are made.
    """

    #: ``DeepConfig.method`` of the class.
    name = "finetune"
    #: Whether the method trains one network (``M`` must be 1).
    single_network = True
    #: `moecl.deep.RoundRecords` fields (T, N) the method fills (NaN until it does; the others stay ``None``).
    optional_records: tuple = ()
    #: Whether a round trains on every sample drawn so far and keeps the initial weights (memory,
    #: `moecl.deep.limits`).
    trains_on_everything_seen = False
    #: Whether the method routes by gate inputs of every test image (memory, `moecl.deep.limits`).
    keeps_gate_inputs = False

    def __init__(self, config, stream, context):
        self.config, self.stream, self.context = config, stream, context

    def initial_state(self) -> dict:
        return {}

    def start(self, models, tests) -> None:
        """Once per run, after the experts are made: keep what the method derives from them and the
        test sets (``tests``: (images, labels) per type). Not stored in checkpoints: derived again."""

    def select(self, state, t, n, images, labels, rng, embed):
        """(expert m_t, selection scores (M,)) for round t's task of type n."""
        return 0, np.zeros(self.config.M)

    def training_set(self, state, t, n, picked, rng):
        """{type: indices into its training set} that the selected expert trains on ({}: no training)."""
        return {n: picked}

    def refit(self, state, t) -> bool:
        """True when the selected expert restarts from its initial weights before training."""
        return False

    def before_training(self, state, t, m, model) -> None:
        """Before expert ``m`` (``model``) trains in round t: nothing (joint training restarts it)."""

    def locality_before_training(self, measure) -> float:
        """The locality signal of Eq. (6) measured before the expert trains (0: none; the gate's).
        ``measure(which)``: the signals ``which`` of the selected expert on its training batch
        (`moecl.deep.training.locality_signals`)."""
        return 0.0

    def distillation(self, state, m) -> float:
        """Weight of the feature distillation towards the expert's previous version (0: none)."""
        return 0.0

    def after_training(self, state, t, n, m, images, labels, scores, change_norm, embed) -> bool:
        """Bookkeeping after the expert trained; returns True when the gate terminates this round."""
        return False

    def current_experts(self, state, type_features) -> np.ndarray:
        """The expert the method answers each task type with now, (N,) (one network: 0)."""
        return np.zeros(len(type_features), dtype=np.int64)

    def record(self, records, row, state, outputs, labels) -> None:
        """Fill the method's records of round ``row`` beyond every method's (`optional_records`,
        ``current_experts``) from the experts' test outputs ``outputs[m][n]`` = (logits, features)
        and each type's test labels."""

    def class_log_posterior(self, state, outputs, n, seen) -> np.ndarray:
        """The method's class-incremental log posterior (images, len(seen)) over the classes ``seen``
        on type n's test images: one network's logits."""
        return logits_log_posterior(outputs[0][n][0], seen)


class FineTuneMethod(Method):
    """Fine-tuning: one network (expert 0) trained on every task in turn (lower reference)."""

    name = "finetune"


class GateMethod(Method):
    """The paper's gate: Eq. (1)-(3) routing, Eq. (6)-(9) training, termination after T1.

    The gate sees the batch mean of a fixed per-image feature (``DeepConfig.gate_input``,
    `moecl.deep.gate_inputs.gate_map`), centred (``DeepConfig.gate_centring = "running"``) by
    the running mean of the batch features of every round so far, this one included:
    only data already seen (book choice).
    """

    name = "gate"
    single_network = False
    keeps_gate_inputs = True

    def initial_state(self):
        M, d = self.config.M, self.context["gate_dim"]
        return {"theta": np.zeros((M, d)),
                "flags": gate.TERMINATION_RULES[self.config.termination].initial_flags((M,)),
                "training": True, "routed": np.zeros(M), "xbar": None,
                "centre_sum": np.zeros(d), "centre_count": 0}

    def start(self, models, tests):
        """The per-image gate features of every type's test images (for `current_experts` and routing)."""
        self.test_features = [self.context["gate_map"](np.asarray(x.cpu())) for x, _ in tests]

    def centre(self, state) -> np.ndarray:
        if self.config.gate_centring == "none" or state["centre_count"] == 0:
            return np.zeros_like(state["centre_sum"])
        return state["centre_sum"] / state["centre_count"]

    def select(self, state, t, n, images, labels, rng, embed):
        feature = self.context["gate_map"](images).mean(axis=0)
        state["centre_sum"] = state["centre_sum"] + feature
        state["centre_count"] += 1
        xbar = feature - self.centre(state)
        h = gate.gate_values(state["theta"], xbar)  # Eq. (1)
        m = int(gate.route(h, self.config.lambda_ * rng.random(self.config.M)))  # Eq. (2)
        state["xbar"] = xbar
        return m, h

    def locality_before_training(self, measure):
        """``DeepConfig.locality_signal`` of the selected expert on the task's batch, before it trains
        (``"change"``, the parameter change, is measured after; the loop takes it then)."""
        signal = self.config.locality_signal
        return 0.0 if signal == "change" else measure((signal,))[signal]

    def after_training(self, state, t, n, m, images, labels, scores, change_norm, embed):
        config, h, xbar = self.config, scores, state["xbar"]
        state["routed"][m] += 1
        rule = gate.TERMINATION_RULES[config.termination]
        state["flags"], stop = rule.update(state["flags"], h, m, t, config.T1, config.Gamma)
        stopped_now = bool(state["training"] and stop)
        if stopped_now:
            state["training"] = False
        if state["training"]:
            pi = gate.softmax(h)
            c = gate.locality_grad(pi, m, change_norm) + gate.load_balance_grad(
                pi, state["routed"] / t, config.alpha, t)
            state["theta"] = gate.gate_step(state["theta"], c, xbar, config.eta)  # Eq. (9)
        return stopped_now

    def route_images(self, state, image_features) -> np.ndarray:
        """The expert the gate (no noise) sends each image to, from per-image features (n, d)."""
        return np.argmax((image_features - self.centre(state)) @ state["theta"].T, axis=1)

    def current_experts(self, state, type_features):
        """The expert the gate as it is now (no noise) sends each type's test batch to."""
        xbar = np.array([f.mean(axis=0) for f in type_features]) - self.centre(state)
        return np.argmax(xbar @ state["theta"].T, axis=1)

    def record(self, records, row, state, outputs, labels):
        """The expert the gate as it is now sends each type's test batch to."""
        records.current_experts[row] = self.current_experts(state, self.test_features)

    def class_log_posterior(self, state, outputs, n, seen):
        """Each test image routed by the gate, no noise (book choice), and scored by its expert."""
        routed = self.route_images(state, self.test_features[n])
        logits = np.stack([outputs[m][n][0] for m in range(len(outputs))])[routed, np.arange(len(routed))]
        return logits_log_posterior(logits, seen)


class SeedMethod(Method):
    """SEED: KL-based choice of the expert to fine-tune, Gaussians per class, Bayes ensemble."""

    name = "seed"
    single_network = False
    optional_records = ("ensemble_loss", "ensemble_accuracy")

    def initial_state(self):
        M, C, D = self.config.M, self.context["num_classes"], self.context["feature_dim"]
        return {"mu": np.zeros((M, C, D)), "var": np.ones((M, C, D)), "fitted": np.zeros(C, dtype=bool),
                "fitted_pairs": np.zeros((M, C), dtype=bool), "trained": np.zeros(M, dtype=bool)}

    def _fit(self, features, labels, classes):
        mu, var = zip(*[fit_gaussian(features[labels == c], self.config.shrinkage) for c in classes])
        return np.array(mu), np.array(var)

    def select(self, state, t, n, images, labels, rng, embed):
        M = self.config.M
        untrained = np.flatnonzero(~state["trained"])
        if untrained.size:  # SEED's first K tasks: a fresh expert each
            return int(untrained[0]), np.full(M, np.nan)
        classes = self.context["class_index"](n, labels)
        present = np.unique(classes)
        if present.size < 2:  # a batch with one class: nothing to separate, keep expert 0
            return 0, np.full(M, np.nan)
        fits = [self._fit(embed(k, images), classes, present) for k in range(M)]
        scores = kl_scores(np.array([f[0] for f in fits]), np.array([f[1] for f in fits]))
        return int(np.argmax(scores)), scores

    def distillation(self, state, m):
        """SEED's feature distillation, once the expert has a previous version to keep close to."""
        return float(self.config.seed_distillation) if state["trained"][m] else 0.0

    def after_training(self, state, t, n, m, images, labels, scores, change_norm, embed):
        state["trained"][m] = True
        classes = self.context["class_index"](n, labels)
        present = np.unique(classes)
        for k in np.flatnonzero(state["trained"]):
            state["mu"][k, present], state["var"][k, present] = self._fit(embed(k, images), classes, present)
            state["fitted_pairs"][k, present] = True
        state["fitted"][present] = True
        return False

    def ensemble(self, state, features, classes) -> np.ndarray:
        """Log posterior (n, C) of the Bayes ensemble over ``classes``; ``features`` (M, n, D) of every
        expert. Only the trained experts, and per class only those that fitted it, vote."""
        trained = np.flatnonzero(state["trained"])
        return bayes_ensemble_log_posterior(
            np.asarray(features)[trained], state["mu"][np.ix_(trained, classes)],
            state["var"][np.ix_(trained, classes)], state["fitted_pairs"][np.ix_(trained, classes)])

    @staticmethod
    def _features(outputs, n) -> np.ndarray:
        return np.array([outputs[k][n][1] for k in range(len(outputs))])

    def record(self, records, row, state, outputs, labels):
        """The Bayes ensemble over each type's classes, once every one of them has been fitted."""
        class_index, task_classes = self.context["class_index"], self.context["outputs"]
        for n in range(len(labels)):
            classes = class_index(n, task_classes[n])
            if state["fitted"][classes].all():
                records.ensemble_loss[row, n], records.ensemble_accuracy[row, n] = score(
                    self.ensemble(state, self._features(outputs, n), classes), classes, class_index(n, labels[n]))

    def class_log_posterior(self, state, outputs, n, seen):
        return self.ensemble(state, self._features(outputs, n), seen)


class ReplayMethod(Method):
    """Bounded experience replay of every task type seen so far (see the module docstring)."""

    name = "replay"

    def initial_state(self):
        return {"seen": {}}

    def training_set(self, state, t, n, picked, rng):
        seen = state["seen"]
        seen[n] = np.union1d(seen.get(n, np.zeros(0, dtype=np.int64)), picked)
        chosen = {}
        for other in sorted(seen):
            if other == n:
                chosen[other] = picked
            else:
                pool = seen[other]
                chosen[other] = rng.choice(pool, size=min(len(picked), len(pool)), replace=False)
        return chosen


class JointMethod(Method):
    """Joint training: one network refit from scratch, offline, on every sample drawn so far."""

    name = "joint"
    trains_on_everything_seen = True

    def initial_state(self):
        return {"seen": {}}

    def start(self, models, tests):
        """The initial weights, which every refit restarts from."""
        self.initial = [{k: v.detach().clone() for k, v in model.state_dict().items()} for model in models]

    def _refit_round(self, t) -> bool:
        return t % self.config.joint_refit_every == 0 or t == self.config.T

    def training_set(self, state, t, n, picked, rng):
        seen = state["seen"]
        seen[n] = np.union1d(seen.get(n, np.zeros(0, dtype=np.int64)), picked)
        return {k: seen[k] for k in sorted(seen)} if self._refit_round(t) else {}

    def refit(self, state, t):
        return self._refit_round(t)

    def before_training(self, state, t, m, model):
        if self.refit(state, t):
            model.load_state_dict(self.initial[m])


#: The registered methods, by ``DeepConfig.method``, in the book's order.
METHOD_CLASSES = {cls.name: cls for cls in (GateMethod, SeedMethod, FineTuneMethod, ReplayMethod, JointMethod)}

#: The names of the methods (``DeepConfig.method``).
METHODS = tuple(METHOD_CLASSES)

#: Methods that train one network (M = 1).
SINGLE_NETWORK_METHODS = tuple(name for name, cls in METHOD_CLASSES.items() if cls.single_network)


def make_method(config, stream, context) -> Method:
    """The method object of ``config.method``."""
    if config.method not in METHOD_CLASSES:
        raise ValueError(f"method={config.method!r} is not one of {METHODS}")
    return METHOD_CLASSES[config.method](config, stream, context)
