"""Algorithm 1 with deep experts: the run loop over rounds and replicates (book chapter: deep experts).

The paper carries its linear analysis to deep networks. This module runs the same
Algorithm 1 with neural experts:

* each round t draws a task type ``n_t`` uniformly from the stream's N types and
  ``samples_per_round`` of its training images (seeded);
* the gate is the linear gate of Eq. (1)-(3) on a fixed feature of the task's
  batch, ``xbar_t`` (**book choice**: the batch mean of a fixed per-image feature,
  ``DeepConfig.gate_input``, `gate_map`, minus the running mean of the batch
  features seen so far); noisy top-1 routing Eq. (2);
* only the selected expert trains, on the task's samples, by Adam for ``epochs``
  epochs (a fresh optimiser per task: the deep analogue of Eq. (5));
* the gate takes the step Eq. (9) on the locality loss Eq. (6), whose
  ``||w_t - w_{t-1}||`` is ``DeepConfig.locality_signal`` (**book choice**: by default
  the norm of the gradient of the selected expert's loss on the task's batch before
  it trains, which vanishes for an expert that already knows the task), plus
  the load-balancing loss Eq. (7), until the termination rule stops it after T1
  rounds. The gate code is `moecl.gate`, the same as the linear engine's.

The same loop runs the methods the book compares the paper's MoE with
(``DeepConfig.method``, `moecl.deep.methods`): SEED-style expert selection with
a Bayes ensemble (Rypesc et al., ICLR 2024), one network fine-tuned on every task,
bounded replay and joint (offline) training on every task seen so far. A method is a set
of hooks the loop calls (`moecl.deep.methods.Method`: the choice of the expert, what it
trains on, refits, distillation, the prediction, its optional records); the loop never
asks which method it has. Each round takes three named steps over the replicates:
`_plan_round` (a `RoundPlan` per replicate), `_train_selected` (the selected experts
trained and evaluated together) and `_evaluate_and_record`.

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

import contextlib
import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .._checks import check_int, check_seed
from ..progress import progress_bar
from . import methods
from .checkpoint import restore_checkpoint, run_identity, save_checkpoint
from .config import DeepConfig, resolve_device
from .gate_inputs import gate_feature, gate_map  # noqa: F401 - gate_feature: importable from here too
from .networks import make_expert, parameter_vector
from .records import RoundRecords
from .limits import check_run
from .training import NonFiniteLossError, features, locality_signals, test_outputs, test_outputs_stacked, test_set, train


def _context(config: DeepConfig, stream, seed_sequence) -> dict:
    """What the methods need to know about the stream: gate feature, class numbering."""
    phi = gate_map(config, stream.image_shape, seed_sequence)
    k = stream.num_outputs
    global_labels = stream.scenario == "class"
    outputs = [np.unique(np.concatenate([task.train_labels, task.test_labels])) for task in stream]

    def class_index(n, labels):
        """SEED's class numbering: global labels in the class scenario, else ``n * outputs + label``."""
        labels = np.asarray(labels)
        return labels if global_labels else n * k + labels

    return {
        "gate_map": phi, "gate_dim": int(phi(np.zeros((1, *stream.image_shape), dtype=np.float32)).shape[1]),
        "class_index": class_index, "num_classes": k if global_labels else stream.N * k,
        "outputs": outputs, "global_labels": global_labels,
    }


class Terminated(BaseException):
    """Raised in place of the default SIGTERM action while a run holds files open (see `_sigterm_raises`)."""


@contextlib.contextmanager
def _sigterm_raises():
    """While a run lasts, SIGTERM (sent by ``timeout``, CI runners and schedulers) raises `Terminated`, so
    that a checkpoint being written removes its temporary file before the process exits with 143."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except Terminated:
        signal.signal(signal.SIGTERM, previous)
        raise SystemExit(128 + signal.SIGTERM) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def reproducible(config: DeepConfig, device):
    """Deterministic kernels for the run when ``config.deterministic`` and the device is CUDA.

    ``torch.use_deterministic_algorithms(True)``, the cuBLAS workspace that makes its
    matrix products deterministic (``CUBLAS_WORKSPACE_CONFIG=:4096:8``, set only if unset)
    and cuDNN without benchmarking, restored afterwards. On the CPU torch's kernels are
    already deterministic and nothing changes.
    """
    if not (config.deterministic and device.type == "cuda"):
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    saved = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[1], saved[2]


def _check_seeds(seed, name: str) -> list[int]:
    """The seeds of a run as a list of distinct non-negative integers (ValueError naming ``name``)."""
    if isinstance(seed, (str, bytes)) or not hasattr(seed, "__iter__"):
        return [check_seed(seed)]
    seeds = [check_seed(value) for value in seed]
    if not seeds:
        raise ValueError(f"{name}={seed!r} must hold at least one seed")
    repeated = sorted({value for value in seeds if seeds.count(value) > 1})
    if repeated:
        raise ValueError(f"{name}={seeds!r} repeats seed {repeated[0]}: replicates must be independent")
    return seeds


class _Replicate:
    """One seed's share of a run: its generators, experts, method, records and test outputs.

    Everything here is what a single-seed run has; a batched run holds one per seed
    and keeps them apart, so replicate k of a batch is the run of its seed alone.
    ``state`` is what a checkpoint stores: the method's state, the types seen, the records.
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
        self.method = methods.make_method(config, stream, self.context)
        class_scenario = stream.scenario == "class"
        optional = {name: np.full((T, N), np.nan) for name in self.method.optional_records}
        self.state = {
            "method": self.method.initial_state(),
            "seen": np.zeros(N, dtype=bool),
            "records": RoundRecords(
                tasks=np.zeros(T, dtype=np.int64),
                experts=np.zeros(T, dtype=np.int64),
                test_loss=np.zeros((T, M, N)),
                test_accuracy=np.zeros((T, M, N)),
                gate_values=np.zeros((T, M)),
                change_norm=np.zeros(T),
                locality=np.zeros(T),
                current_experts=np.zeros((T, N), dtype=np.int64),
                source=stream.source,
                method=config.method,
                scenario=stream.scenario,
                class_loss=np.full((T, N), np.nan) if class_scenario else None,
                class_accuracy=np.full((T, N), np.nan) if class_scenario else None,
                **optional,
            ),
        }
        self.method.start(self.models, tests)
        self.outputs = None
        self.device = device

    def embed(self, k, images):
        return features(self.models[k], torch.as_tensor(np.array(images), device=self.device))


@dataclass
class RoundPlan:
    """One replicate's round t as planned before training (`_plan_round`): the task's type ``n`` and
    its samples (``images``, ``labels``), the expert ``m`` and its selection ``scores``, what it trains
    on (``train_x``, ``train_y``; empty: no training this round), its parameters ``before`` training,
    the weight ``distill`` of its feature distillation and the ``locality`` signal measured so far."""

    n: int
    m: int
    images: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    train_x: np.ndarray
    train_y: np.ndarray
    before: torch.Tensor
    distill: float
    locality: float


def run(config: DeepConfig, stream, seed: int | Sequence[int] = 0, checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int = 10, progress: bool = False) -> RoundRecords | list[RoundRecords]:
    """Run Algorithm 1 with deep experts on a task stream (`moecl.deep.streams.TaskStream`).

    One loop serves every method of ``config.method`` (`moecl.deep.methods`): each
    round draws a task type and ``samples_per_round`` of its images, the method picks
    the expert, that expert alone trains (Adam, cross-entropy), the method updates its
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
    projection), experts, method state and records. Per round the cheap work (task
    draw, the method's choice of the expert, bookkeeping, the gate step) loops over
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
    check_run(config, stream, seeds, device)  # refuse what cannot fit, before any work
    started = time.perf_counter()
    T = config.T
    identity = run_identity(config, seeds, stream) if checkpoint is not None else None

    with reproducible(config, device), _sigterm_raises():
        tests = [test_set(task, config.test_samples, device) for task in stream]
        replicates = [_Replicate(config, stream, seed, device, tests) for seed in seeds]
        t_done = 0
        if checkpoint is not None and os.path.exists(checkpoint):
            t_done = restore_checkpoint(checkpoint, identity, replicates)
        _first_outputs(replicates, tests, config)

        bar = progress_bar(T, progress, initial=t_done)
        try:
            for t in range(t_done + 1, T + 1):
                plans = [_plan_round(rep, config, stream, t, device) for rep in replicates]
                try:
                    trained, outputs = _train_selected(replicates, plans, config, device, tests)
                except NonFiniteLossError as error:
                    message = str(error).replace("non-finite", f"non-finite in round {t} of {T}", 1)
                    raise NonFiniteLossError(message) from None
                for rep, plan, model, output in zip(replicates, plans, trained, outputs):
                    _evaluate_and_record(rep, plan, t, model, output, tests, config)
                bar.update(1)
                if checkpoint is not None and (t % checkpoint_every == 0 or t == T):
                    save_checkpoint(checkpoint, identity, t, replicates)
        finally:
            bar.close()
    wall_time = time.perf_counter() - started
    for rep in replicates:
        rep.state["records"].wall_time = wall_time
    return [rep.state["records"] for rep in replicates]


def _first_outputs(replicates: list, tests, config: DeepConfig) -> None:
    """Logits and features of every expert on every type's test images; after a resume, of the
    restored experts. Only the trained expert's entry changes in a round. They come from the
    same code (one network, or stacked over the replicates) as in the rounds, so that a
    resumed run repeats an uninterrupted one bit for bit."""
    if len(replicates) == 1:
        replicates[0].outputs = [test_outputs(model, tests) for model in replicates[0].models]
        return
    for replicate in replicates:
        replicate.outputs = [None] * config.M
    for m in range(config.M):
        for replicate, output in zip(replicates, test_outputs_stacked([r.models[m] for r in replicates], tests)):
            replicate.outputs[m] = output


def _plan_round(rep: _Replicate, config: DeepConfig, stream, t: int, device) -> RoundPlan:
    """Step 1, per replicate: draw the task and its samples, let the method pick the expert and
    what it trains on, restart it if the method refits, and measure the locality signal."""
    rng, method, state = rep.rng, rep.method, rep.state["method"]
    n = int(rng.integers(stream.N)) if config.task_order == "random" else (t - 1) % stream.N
    task = stream[n]
    picked = rng.choice(len(task.train_labels), size=min(config.samples_per_round, len(task.train_labels)),
                        replace=False)
    images, labels = task.train_images[picked], task.train_labels[picked]
    m, scores = method.select(state, t, n, images, labels, rng, rep.embed)
    chosen = method.training_set(state, t, n, picked, rng)
    if chosen:
        train_x = np.concatenate([stream[k].train_images[idx] for k, idx in chosen.items()])
        train_y = np.concatenate([stream[k].train_labels[idx] for k, idx in chosen.items()])
    else:  # this round trains nothing (joint training between refits)
        train_x, train_y = images[:0], labels[:0]
    model = rep.models[m]
    method.before_training(state, t, m, model)
    locality = method.locality_before_training(
        lambda which: locality_signals(model, train_x, train_y, device, which=which))
    return RoundPlan(n, m, images, labels, scores, train_x, train_y, parameter_vector(model),
                     method.distillation(state, m), locality)


def _train_selected(replicates: list, plans: list, config: DeepConfig, device, tests) -> tuple[list, list]:
    """Step 2: the selected expert of every replicate trained together (those with something to train
    on), then evaluated on every type's test images; returns the experts and their test outputs."""
    trained = [rep.models[plan.m] for rep, plan in zip(replicates, plans)]
    active = [k for k, plan in enumerate(plans) if len(plan.train_y)]
    train([trained[k] for k in active], [plans[k].train_x for k in active], [plans[k].train_y for k in active],
          config, [replicates[k].rng for k in active], device, distill=[plans[k].distill for k in active])
    outputs = [test_outputs(trained[0], tests)] if len(trained) == 1 else test_outputs_stacked(trained, tests)
    return trained, outputs


def _evaluate_and_record(rep: _Replicate, plan: RoundPlan, t: int, model, output, tests, config: DeepConfig) -> None:
    """Step 3, per replicate: the expert's change, the method's bookkeeping (the gate's step and
    termination, SEED's Gaussians) and the round's records."""
    change_norm = float(torch.linalg.vector_norm(parameter_vector(model) - plan.before))
    locality = change_norm if config.locality_signal == "change" else plan.locality
    rep.outputs[plan.m] = output
    records = rep.state["records"]
    if rep.method.after_training(rep.state["method"], t, plan.n, plan.m, plan.images, plan.labels, plan.scores,
                                 locality, rep.embed):
        records.termination_round = t
    rep.state["seen"][plan.n] = True
    records.tasks[t - 1], records.experts[t - 1] = plan.n, plan.m
    records.gate_values[t - 1], records.change_norm[t - 1] = plan.scores, change_norm
    records.locality[t - 1] = locality
    _record_round(records, t - 1, rep.outputs, tests, rep.method, rep.state)


def _record_round(records, row, outputs, tests, method, state) -> None:
    """Fill round ``row`` of the tables (`RoundRecords`) from the experts' test outputs: every
    expert on every type (task-incremental), the method's own records, and the method's
    class-incremental prediction over the classes seen so far."""
    M, N = len(outputs), len(tests)
    labels = [np.asarray(y.cpu()) for _, y in tests]
    task_classes = method.context["outputs"]  # expert outputs of each type (its labels)
    for m in range(M):
        for n in range(N):
            records.test_loss[row, m, n], records.test_accuracy[row, m, n] = methods.score(
                methods.logits_log_posterior(outputs[m][n][0], task_classes[n]), task_classes[n], labels[n])
    method.record(records, row, state["method"], outputs, labels)
    if records.class_accuracy is not None:
        seen = np.unique(np.concatenate([task_classes[n] for n in np.flatnonzero(state["seen"])]))
        for n in np.flatnonzero(state["seen"]):
            log_posterior = method.class_log_posterior(state["method"], outputs, n, seen)
            records.class_loss[row, n], records.class_accuracy[row, n] = methods.score(log_posterior, seen, labels[n])
