"""Algorithm 1 with deep experts: the run loop over rounds and replicates (book chapter: deep experts).

The paper carries its linear analysis to deep networks. This module runs the same
Algorithm 1 with neural experts:

* each round t draws a task type ``n_t`` uniformly from the stream's N types and
  ``samples_per_round`` of its training images (seeded);
* the gate is the linear gate of Eq. (1)-(3) on a fixed feature of the task's
  batch, ``xbar_t`` (**book choice**: the batch's mean flattened image minus the
  mean image of the whole stream, optionally followed by a fixed random projection
  to ``gate_dim`` dimensions, see `gate_feature`); noisy top-1 routing Eq. (2);
* only the selected expert trains, on the task's samples, by Adam for ``epochs``
  epochs (a fresh optimiser per task: the deep analogue of Eq. (5));
* the gate takes the step Eq. (9) on the locality loss Eq. (6), whose
  ``||w_t - w_{t-1}||`` is the norm of the selected expert's parameter change, plus
  the load-balancing loss Eq. (7), until the termination rule stops it after T1
  rounds. The gate code is `moecl.gate`, the same as the linear engine's.

The same loop runs the methods the book compares the paper's MoE with
(``DeepConfig.method``, `moecl.deep.methods`): SEED-style expert selection with
a Bayes ensemble (Rypesc et al., ICLR 2024), one network fine-tuned on every task, and
joint training on every task seen so far. Only the choice of the expert, what it
trains on and how the ensemble predicts differ.

Metrics (`RoundRecords`) after every round, on held-out test images of every task
type: test loss (cross-entropy) and accuracy of every expert on every type, SEED's
ensemble prediction, and on class-incremental streams each method's prediction over
all classes seen so far. The paper's forgetting and generalization error, the
accuracy matrix, average accuracy, forgetting and backward transfer follow from these
tables and the routing history in either scenario (`prediction_tables`,
`accuracy_matrix`, `summarise`, all through `moecl.metrics`).

Several seeds run as replicates in lockstep (``run(config, stream, seed=[s1, s2, ...])``
or `run_replicates`): each keeps its own seeded state, while the training of the
experts the replicates selected and their evaluation are batched over the replicates
with stacked parameters (`torch.func.stack_module_state`, ``torch.vmap`` of
`torch.func.functional_call`), so that small per-task batches still fill a GPU.

Long runs write a checkpoint every ``checkpoint_every`` rounds (atomically); running
the same call again resumes from it and ends with the same numbers as an
uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Sequence

import numpy as np
import torch

from .._checks import check_int
from ..progress import progress_bar
from . import methods
from .checkpoint import restore_checkpoint, save_checkpoint
from .config import DeepConfig, resolve_device
from .networks import make_expert, parameter_vector
from .records import RoundRecords
from .training import features, test_outputs, test_outputs_stacked, test_set, train


def gate_feature(images: np.ndarray, centre: np.ndarray, projection: np.ndarray | None) -> np.ndarray:
    """``xbar_t`` for a task's batch (book choice; the deep analogue of Eq. (1)).

    The batch's mean flattened image minus ``centre`` (the mean image of the stream),
    times ``projection`` (gate_dim, C*H*W) when one is given.
    """
    xbar = images.reshape(len(images), -1).mean(axis=0, dtype=np.float64) - centre
    return xbar if projection is None else projection @ xbar


def _context(config: DeepConfig, stream, seed_sequence) -> dict:
    """What the strategies need to know about the stream: gate feature, class numbering."""
    centre = np.mean([task.train_images.reshape(len(task.train_images), -1).mean(axis=0) for task in stream],
                     axis=0, dtype=np.float64)
    dim = centre.size
    projection = None
    if config.gate_dim is not None:
        projection = np.random.default_rng(seed_sequence).standard_normal((config.gate_dim, dim)) / math.sqrt(dim)
    k = stream.num_outputs
    global_labels = stream.scenario == "class"
    outputs = [np.unique(np.concatenate([task.train_labels, task.test_labels])) for task in stream]

    def class_index(n, labels):
        """SEED's class numbering: global labels in the class scenario, else ``n * outputs + label``."""
        labels = np.asarray(labels)
        return labels if global_labels else n * k + labels

    return {
        "centre": centre, "projection": projection, "gate_dim": config.gate_dim or dim,
        "gate_feature": lambda images: gate_feature(images, centre, projection),
        "class_index": class_index, "num_classes": k if global_labels else stream.N * k,
        "outputs": outputs, "global_labels": global_labels,
    }


def _check_seeds(seed, name: str) -> list[int]:
    """The seeds of a run as a list of distinct non-negative integers (ValueError naming ``name``)."""
    def check(value):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"seed={value!r} must be a non-negative integer")
        return int(value)

    if isinstance(seed, (str, bytes)) or not hasattr(seed, "__iter__"):
        return [check(seed)]
    seeds = [check(value) for value in seed]
    if not seeds:
        raise ValueError(f"{name}={seed!r} must hold at least one seed")
    repeated = sorted({value for value in seeds if seeds.count(value) > 1})
    if repeated:
        raise ValueError(f"{name}={seeds!r} repeats seed {repeated[0]}: replicates must be independent")
    return seeds


class _Replicate:
    """One seed's share of a run: its generators, experts, strategy, records and test outputs.

    Everything here is what a single-seed run has; a batched run holds one per seed
    and keeps them apart, so replicate k of a batch is the run of its seed alone.
    """

    def __init__(self, config: DeepConfig, stream, seed: int, device, tests):
        M, N, T = config.M, stream.N, config.T
        init_ss, draw_ss, gate_ss = np.random.SeedSequence(seed).spawn(3)
        torch.manual_seed(int(init_ss.generate_state(1)[0]))
        self.models = [make_expert(config, stream.image_shape, stream.num_outputs).to(device) for _ in range(M)]
        self.rng = np.random.default_rng(draw_ss)
        self.context = _context(config, stream, gate_ss)
        with torch.no_grad():  # in eval mode: a one-image batch must not touch BatchNorm's statistics
            self.context["feature_dim"] = int(self.models[0].eval().embed(
                torch.zeros((1, *stream.image_shape), device=device)).shape[1])
        self.strategy = methods.make_strategy(config, stream, self.context)
        class_scenario = stream.scenario == "class"
        self.state = {
            "strategy": self.strategy.initial_state(),
            "seen": np.zeros(N, dtype=bool),
            "records": RoundRecords(
                tasks=np.zeros(T, dtype=np.int64),
                experts=np.zeros(T, dtype=np.int64),
                test_loss=np.zeros((T, M, N)),
                test_accuracy=np.zeros((T, M, N)),
                gate_values=np.zeros((T, M)),
                change_norm=np.zeros(T),
                source=stream.source,
                method=config.method,
                scenario=stream.scenario,
                ensemble_loss=np.full((T, N), np.nan) if config.method == "seed" else None,
                ensemble_accuracy=np.full((T, N), np.nan) if config.method == "seed" else None,
                class_loss=np.full((T, N), np.nan) if class_scenario else None,
                class_accuracy=np.full((T, N), np.nan) if class_scenario else None,
            ),
        }
        self.gate_inputs = None
        if class_scenario and config.method == "gate":
            self.gate_inputs = [(np.asarray(x.cpu(), dtype=np.float64).reshape(len(x), -1) - self.context["centre"])
                                for x, _ in tests]
            if self.context["projection"] is not None:
                self.gate_inputs = [g @ self.context["projection"].T for g in self.gate_inputs]
        self.outputs = None
        self.device = device

    def embed(self, k, images):
        return features(self.models[k], torch.as_tensor(np.array(images), device=self.device))


def run(config: DeepConfig, stream, seed: int | Sequence[int] = 0, checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int = 10, progress: bool = False) -> RoundRecords | list[RoundRecords]:
    """Run Algorithm 1 with deep experts on a task stream (`moecl.deep.streams.TaskStream`).

    One loop serves every method of ``config.method`` (`moecl.deep.methods`): each
    round draws a task type and ``samples_per_round`` of its images, the strategy picks
    the expert, that expert alone trains (Adam, cross-entropy), the strategy updates its
    state (gate step Eq. (9) and termination; SEED's class Gaussians) and every
    prediction is evaluated on every type's test images (`RoundRecords`).

    ``seed`` seeds everything (expert initialisation, task draws, sampling, batch
    order, routing noise). An integer runs one seed and returns its `RoundRecords`; a
    sequence of distinct seeds runs them as replicates in lockstep, their training and
    evaluation batched (`run_replicates`), and returns one `RoundRecords` per seed.
    With ``checkpoint`` a file is written atomically every ``checkpoint_every`` rounds;
    if it exists when the run starts, the run resumes from it (the configuration,
    seeds and stream must be the same).
    """
    if isinstance(seed, (str, bytes)) or not hasattr(seed, "__iter__"):
        return run_replicates(config, stream, _check_seeds(seed, "seed"), checkpoint, checkpoint_every, progress)[0]
    return run_replicates(config, stream, _check_seeds(seed, "seed"), checkpoint, checkpoint_every, progress)


def run_replicates(config: DeepConfig, stream, seeds: Sequence[int], checkpoint: str | os.PathLike | None = None,
                   checkpoint_every: int = 10, progress: bool = False) -> list[RoundRecords]:
    """Run one replicate of Algorithm 1 per seed, in lockstep; one `RoundRecords` per seed.

    Each replicate keeps everything a single-seed `run` has: its own seeded generators
    (a ``SeedSequence(seed)`` spawned into expert initialisation, draws and the gate
    projection), experts, strategy state and records. Per round the cheap work (task
    draw, the strategy's choice of the expert, bookkeeping, the gate step) loops over
    the replicates; the expensive work is batched over them (**book choice**, so that a
    small per-task batch still fills a GPU):

    * training: the R selected experts (one per replicate) are stacked
      (`torch.func.stack_module_state`) and trained together, each on its own
      replicate's samples in its own seeded batch order, by one Adam over the stacked
      tensors on the sum of the R losses (`train`); Adam acts elementwise, so this is
      R independent Adams;
    * evaluation: the R trained experts run on every type's test images in one
      ``torch.vmap`` call (`test_outputs_stacked`).

    With one seed both go through the plain single-network code, so ``seeds=[s]``
    gives exactly ``run(config, stream, seed=s)``. In a batch the same arithmetic runs
    in another order (grouped convolutions, float32 sums), so a replicate agrees with
    its seed run alone to float32 rounding (about 1e-6 relative per step, growing
    through training) rather than bit for bit. ``wall_time`` of every record is the
    whole call's.
    """
    if not isinstance(config, DeepConfig):
        raise ValueError(f"config must be a moecl.deep.DeepConfig, got {type(config).__name__}")
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise ValueError(f"seeds={seeds!r} must be a sequence of seeds (for one seed: run(..., seed=s))")
    seeds = _check_seeds(seeds, "seeds")
    check_int("checkpoint_every", checkpoint_every, minimum=1)
    device = resolve_device(config.device)
    started = time.perf_counter()
    N, T = stream.N, config.T
    identity = {"config": dataclasses.asdict(config), "seeds": list(seeds), "stream": repr(stream)}

    tests = [test_set(task, config.test_samples, device) for task in stream]
    replicates = [_Replicate(config, stream, seed, device, tests) for seed in seeds]
    t_done = 0
    if checkpoint is not None and os.path.exists(checkpoint):
        t_done = restore_checkpoint(checkpoint, identity, replicates)
    # Logits and features of every expert on every type's test images; after a resume,
    # of the restored experts. Only the trained expert's entry changes in a round. They
    # come from the same code (one network, or stacked over the replicates) as in the
    # rounds, so that a resumed run repeats an uninterrupted one bit for bit.
    if len(replicates) == 1:
        replicates[0].outputs = [test_outputs(model, tests) for model in replicates[0].models]
    else:
        for replicate in replicates:
            replicate.outputs = [None] * config.M
        for m in range(config.M):
            for replicate, output in zip(replicates, test_outputs_stacked([r.models[m] for r in replicates], tests)):
                replicate.outputs[m] = output

    bar = progress_bar(T, progress, initial=t_done)
    try:
        for t in range(t_done + 1, T + 1):
            rounds = []
            for rep in replicates:  # per replicate: draw the task, pick the expert, gather its training set
                rng = rep.rng
                n = int(rng.integers(N)) if config.task_order == "random" else (t - 1) % N
                task = stream[n]
                picked = rng.choice(len(task.train_labels), size=min(config.samples_per_round, len(task.train_labels)),
                                    replace=False)
                images, labels = task.train_images[picked], task.train_labels[picked]
                m, scores = rep.strategy.select(rep.state["strategy"], t, n, images, labels, rng, rep.embed)
                chosen = rep.strategy.training_set(rep.state["strategy"], n, picked, rng)
                train_x = np.concatenate([stream[k].train_images[idx] for k, idx in chosen.items()])
                train_y = np.concatenate([stream[k].train_labels[idx] for k, idx in chosen.items()])
                rounds.append((n, m, images, labels, scores, train_x, train_y, parameter_vector(rep.models[m])))

            trained = [rep.models[r[1]] for rep, r in zip(replicates, rounds)]
            train(trained, [r[5] for r in rounds], [r[6] for r in rounds], config,
                   [rep.rng for rep in replicates], device)
            outputs = [test_outputs(trained[0], tests)] if len(trained) == 1 else test_outputs_stacked(trained, tests)

            for rep, (n, m, images, labels, scores, _, _, before), model, output in zip(
                    replicates, rounds, trained, outputs):
                change_norm = float(torch.linalg.vector_norm(parameter_vector(model) - before))
                rep.outputs[m] = output
                records = rep.state["records"]
                if rep.strategy.after_training(rep.state["strategy"], t, n, m, images, labels, scores, change_norm,
                                               rep.embed):
                    records.termination_round = t
                rep.state["seen"][n] = True
                records.tasks[t - 1], records.experts[t - 1] = n, m
                records.gate_values[t - 1], records.change_norm[t - 1] = scores, change_norm
                _record_round(records, t - 1, rep.outputs, tests, rep.context, rep.state, config, rep.gate_inputs)
            bar.update(1)
            if checkpoint is not None and (t % checkpoint_every == 0 or t == T):
                save_checkpoint(checkpoint, identity, t, replicates)
    finally:
        bar.close()
    wall_time = time.perf_counter() - started
    for rep in replicates:
        rep.state["records"].wall_time = wall_time
    return [rep.state["records"] for rep in replicates]


def _log_softmax(scores: np.ndarray) -> np.ndarray:
    scores = scores - scores.max(axis=1, keepdims=True)
    return scores - np.log(np.sum(np.exp(scores), axis=1, keepdims=True))


def _score(log_posterior: np.ndarray, candidates: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Cross-entropy and accuracy of a (n, C) log posterior over ``candidates`` against labels."""
    position = np.searchsorted(candidates, labels)
    rows = np.arange(len(labels))
    loss = float(-np.mean(log_posterior[rows, position]))
    accuracy = float(np.mean(candidates[np.argmax(log_posterior, axis=1)] == labels))
    return loss, accuracy


def _record_round(records, row, outputs, tests, context, state, config, gate_inputs) -> None:
    """Fill round ``row`` of the tables (`RoundRecords`) from the experts' test outputs."""
    M, N = len(outputs), len(tests)
    labels = [np.asarray(y.cpu()) for _, y in tests]
    task_classes = context["outputs"]  # expert outputs of each type (its labels)
    for m in range(M):
        for n in range(N):
            logits = outputs[m][n][0]
            records.test_loss[row, m, n], records.test_accuracy[row, m, n] = _score(
                _log_softmax(logits[:, task_classes[n]]), task_classes[n], labels[n])
    strategy_state = state["strategy"]
    if config.method == "seed":
        trained = np.flatnonzero(strategy_state["trained"])
        features = [np.array([outputs[k][n][1] for k in trained]) for n in range(N)]

        def ensemble(n, classes):
            return methods.bayes_ensemble_log_posterior(
                features[n], strategy_state["mu"][np.ix_(trained, classes)],
                strategy_state["var"][np.ix_(trained, classes)])

        for n in range(N):
            classes = context["class_index"](n, task_classes[n])
            if strategy_state["fitted"][classes].all():
                records.ensemble_loss[row, n], records.ensemble_accuracy[row, n] = _score(
                    ensemble(n, classes), classes, context["class_index"](n, labels[n]))
    if records.class_accuracy is not None:
        seen = np.unique(np.concatenate([task_classes[n] for n in np.flatnonzero(state["seen"])]))
        for n in np.flatnonzero(state["seen"]):
            if config.method == "seed":
                log_posterior = ensemble(n, seen)
            else:
                if config.method == "gate":  # route each test image by the gate, no noise (book choice)
                    routed = np.argmax(gate_inputs[n] @ strategy_state["theta"].T, axis=1)
                else:
                    routed = np.zeros(len(labels[n]), dtype=np.int64)
                logits = np.stack([outputs[m][n][0] for m in range(M)])[routed, np.arange(len(routed))]
                log_posterior = _log_softmax(logits[:, seen])
            records.class_loss[row, n], records.class_accuracy[row, n] = _score(log_posterior, seen, labels[n])
