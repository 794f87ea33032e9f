"""Deep MoE in continual learning: CNN experts routed by the paper's gate (THEORY.md section 6).

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
(``DeepConfig.method``, `moecl.strategies_deep`): SEED-style expert selection with
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

import copy
import dataclasses
import math
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from . import gate, metrics, strategies_deep
from .config import _check_int, _check_real
from .progress import progress_bar

ARCHITECTURES = ("cnn", "resnet18")
DEVICES = ("auto", "cpu", "cuda")
TASK_ORDERS = ("random", "cyclic")
#: Evaluation scenarios: task-incremental (the task's identity is known at test time)
#: and class-incremental (prediction over every class seen so far).
SCENARIOS = ("task", "class")


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class DeepConfig:
    """Parameters of one deep MoE run.

    M: experts (``M = 1``: one network fine-tuned on every task). T: rounds.
    samples_per_round: training images of the task drawn each round (the paper: 100).
    epochs, batch_size, lr: training of the selected expert (Adam).
    architecture: ``"cnn"`` (two conv + three fully connected layers, the paper's small
    CNN) or ``"resnet18"`` (a ResNet-18-style network of ``width`` base channels).
    Gate: eta (Eq. (9)), alpha (Eq. (7)), lambda_ (routing noise, Eq. (2)) default to
    the values of a public copy of the authors' deep setup (0.3, 0.3, 0.005; THEORY.md
    section 6); Gamma (termination threshold, **book choice** 0.05, about
    sigma0**1.25 for that setup's sigma0 = 0.1), T1 (exploration rounds; ``None``:
    ``ceil(M / eta)``), termination (``"gap"`` or ``"none"``),
    gate_dim (``None``: the centred mean image itself; an integer: a fixed Gaussian
    random projection of it to that many dimensions).
    test_samples: test images per task type used for the metrics (``None``: all).
    device: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``; on CUDA the
    experts train in bf16 autocast.
    method: how the expert of a round is chosen (`moecl.strategies_deep`): ``"gate"``
    (the paper's MoE), ``"seed"`` (SEED-style KL selection and Bayes ensemble),
    ``"finetune"`` (one network, M = 1) or ``"joint"`` (one network trained on all task
    types seen so far, M = 1).
    task_order: ``"random"`` (the paper: each round's type uniform over the N types) or
    ``"cyclic"`` (types 0, 1, ..., N-1, 0, 1, ...: the literature's sequence of tasks).
    shrinkage: SEED's variance shrinkage (`moecl.strategies_deep.fit_gaussian`).
    """

    M: int = 4
    T: int = 60
    samples_per_round: int = 100
    epochs: int = 5
    batch_size: int = 25
    lr: float = 2e-3
    architecture: str = "cnn"
    width: int = 16
    eta: float = 0.3
    alpha: float = 0.3
    lambda_: float = 0.005
    Gamma: float = 0.05
    T1: int | None = None
    termination: str = "gap"
    gate_dim: int | None = None
    test_samples: int | None = 200
    device: str = "auto"
    method: str = "gate"
    task_order: str = "random"
    shrinkage: float = 0.5

    def __post_init__(self):
        for name in ("M", "T", "samples_per_round", "epochs", "batch_size", "width"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("lr", "eta"):
            _check_real(name, getattr(self, name), low=0.0, low_open=True)
        for name in ("alpha", "lambda_", "Gamma"):
            _check_real(name, getattr(self, name), low=0.0)
        if self.T1 is None:
            object.__setattr__(self, "T1", int(math.ceil(self.M / self.eta)))
        _check_int("T1", self.T1, minimum=0)
        for name in ("gate_dim", "test_samples"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), minimum=1)
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture={self.architecture!r} is not one of {ARCHITECTURES}")
        if self.termination not in gate.TERMINATION_RULES:
            raise ValueError(f"termination={self.termination!r} is not one of {tuple(gate.TERMINATION_RULES)}")
        if self.device not in DEVICES:
            raise ValueError(f"device={self.device!r} is not one of {DEVICES}")
        if self.method not in strategies_deep.METHODS:
            raise ValueError(f"method={self.method!r} is not one of {strategies_deep.METHODS}")
        if self.method in ("finetune", "joint") and self.M != 1:
            raise ValueError(f"method={self.method!r} trains one network: M must be 1, got M={self.M}")
        if self.task_order not in TASK_ORDERS:
            raise ValueError(f"task_order={self.task_order!r} is not one of {TASK_ORDERS}")
        _check_real("shrinkage", self.shrinkage, low=0.0)
        if self.shrinkage > 1:
            raise ValueError(f"shrinkage={self.shrinkage!r} must lie in [0, 1]")

    def replace(self, **changes) -> "DeepConfig":
        """A copy with some fields changed (T1 derived again unless given or set by hand)."""
        fields = dataclasses.asdict(self)
        if "T1" not in changes and self.T1 == int(math.ceil(self.M / self.eta)):
            fields["T1"] = None
        fields.update(changes)
        return DeepConfig(**fields)


def resolve_device(name: str) -> torch.device:
    """``"auto"``: CUDA when available, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but torch sees no CUDA device")
    return torch.device(name)


# --------------------------------------------------------------------------- experts


class SmallCNN(nn.Module):
    """The paper's small CNN: two convolutional and three fully connected layers.

    Works for any image size of at least 4 x 4 (8 x 8 scikit-learn digits, 28 x 28
    MNIST, 32 x 32 CIFAR): the convolutions keep the size, two 2 x 2 poolings halve it
    twice and an adaptive pooling brings the maps to 2 x 2.
    """

    def __init__(self, in_channels: int, num_outputs: int, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(8 * width, 8 * width), nn.ReLU(),
            nn.Linear(8 * width, 4 * width), nn.ReLU(),
            nn.Linear(4 * width, num_outputs),
        )

    def embed(self, x):
        """Penultimate features (4 * width): the input of the last linear layer."""
        return self.classifier[:-1](self.features(x))

    def forward(self, x, features: bool = False):
        """Logits; with ``features``, (logits, penultimate features)."""
        z = self.embed(x)
        logits = self.classifier[-1](z)
        return (logits, z) if features else logits


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """A ResNet-18-style expert (four stages of two basic blocks) for 32 x 32 and 64 x 64 images.

    ``width`` is the first stage's channel count (64 in the original; smaller for CPU runs).
    """

    def __init__(self, in_channels: int, num_outputs: int, width: int = 64):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        blocks, cin = [], width
        for stage, cout in enumerate((width, 2 * width, 4 * width, 8 * width)):
            for block in range(2):
                stride = 2 if stage > 0 and block == 0 else 1
                blocks.append(_BasicBlock(cin, cout, stride))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_outputs))

    def embed(self, x):
        """Penultimate features (8 * width): the pooled output of the last stage."""
        return self.head[:-1](self.blocks(self.stem(x)))

    def forward(self, x, features: bool = False):
        """Logits; with ``features``, (logits, penultimate features)."""
        z = self.embed(x)
        logits = self.head[-1](z)
        return (logits, z) if features else logits


def make_expert(config: DeepConfig, image_shape: tuple, num_outputs: int) -> nn.Module:
    """One expert network of ``config.architecture`` for images (C, H, W)."""
    cls = SmallCNN if config.architecture == "cnn" else ResNet18
    return cls(image_shape[0], num_outputs, config.width)


def model_outputs(model: nn.Module) -> int:
    """Width of an expert's output layer."""
    return (model.classifier[-1] if isinstance(model, SmallCNN) else model.head[-1]).out_features


def parameter_vector(model: nn.Module) -> torch.Tensor:
    """All trainable parameters of a model as one flat float64 vector (for ||w_t - w_{t-1}||)."""
    return torch.cat([p.detach().reshape(-1).double().cpu() for p in model.parameters()])


# --------------------------------------------------------------------------- gate feature


def gate_feature(images: np.ndarray, centre: np.ndarray, projection: np.ndarray | None) -> np.ndarray:
    """``xbar_t`` for a task's batch (book choice; the deep analogue of Eq. (1)).

    The batch's mean flattened image minus ``centre`` (the mean image of the stream),
    times ``projection`` (gate_dim, C*H*W) when one is given.
    """
    xbar = images.reshape(len(images), -1).mean(axis=0, dtype=np.float64) - centre
    return xbar if projection is None else projection @ xbar


# --------------------------------------------------------------------------- records


@dataclass
class RoundRecords:
    """What a deep run records, rounds first (length T).

    tasks, experts: the routing history n_t, m_t. test_loss, test_accuracy (T, M, N):
    each expert's cross-entropy and accuracy on each task type's test images after
    round t, task-incremental (its outputs restricted to the type's classes).
    gate_values (T, M): the selection scores at routing time: the gate values h_m for
    ``method="gate"``, SEED's KL scores for ``"seed"`` (NaN while SEED fills its
    experts), zeros otherwise. change_norm (T,): norm of the selected expert's
    parameter change. termination_round: T2 (-1: never; the gate only).

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

    def load(self) -> np.ndarray:
        """f_t^(m): fraction of rounds 1..t routed to each expert, (T, M)."""
        M = self.test_loss.shape[1]
        onehot = self.experts[:, None] == np.arange(M)
        return np.cumsum(onehot, axis=0) / np.arange(1, len(self.experts) + 1)[:, None]


# --------------------------------------------------------------------------- the run


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
        self.strategy = strategies_deep.make_strategy(config, stream, self.context)
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
        return _features(self.models[k], torch.as_tensor(np.array(images), device=self.device))


def run(config: DeepConfig, stream, seed: int | Sequence[int] = 0, checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int = 10, progress: bool = False) -> RoundRecords | list[RoundRecords]:
    """Run Algorithm 1 with deep experts on a task stream (`moecl.data.TaskStream`).

    One loop serves every method of ``config.method`` (`moecl.strategies_deep`): each
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
      tensors on the sum of the R losses (`_train`); Adam acts elementwise, so this is
      R independent Adams;
    * evaluation: the R trained experts run on every type's test images in one
      ``torch.vmap`` call (`_outputs_stacked`).

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
    _check_int("checkpoint_every", checkpoint_every, minimum=1)
    device = resolve_device(config.device)
    started = time.perf_counter()
    N, T = stream.N, config.T
    identity = {"config": dataclasses.asdict(config), "seeds": list(seeds), "stream": repr(stream)}

    tests = [_test_set(task, config.test_samples, device) for task in stream]
    replicates = [_Replicate(config, stream, seed, device, tests) for seed in seeds]
    t_done = 0
    if checkpoint is not None and os.path.exists(checkpoint):
        t_done = _restore(checkpoint, identity, replicates)
    # Logits and features of every expert on every type's test images; after a resume,
    # of the restored experts. Only the trained expert's entry changes in a round. They
    # come from the same code (one network, or stacked over the replicates) as in the
    # rounds, so that a resumed run repeats an uninterrupted one bit for bit.
    if len(replicates) == 1:
        replicates[0].outputs = [_outputs(model, tests) for model in replicates[0].models]
    else:
        for replicate in replicates:
            replicate.outputs = [None] * config.M
        for m in range(config.M):
            for replicate, output in zip(replicates, _outputs_stacked([r.models[m] for r in replicates], tests)):
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
            _train(trained, [r[5] for r in rounds], [r[6] for r in rounds], config,
                   [rep.rng for rep in replicates], device)
            outputs = [_outputs(trained[0], tests)] if len(trained) == 1 else _outputs_stacked(trained, tests)

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
                _save(checkpoint, identity, t, replicates)
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
            return strategies_deep.bayes_ensemble_log_posterior(
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


def _test_set(task, limit, device):
    images, labels = task.test_images, task.test_labels
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return torch.as_tensor(np.array(images), device=device), torch.as_tensor(np.array(labels), device=device)


def _autocast(device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def _train(models, images, labels, config: DeepConfig, rngs, device) -> None:
    """Train each replicate's selected expert on its task's samples (the deep analogue of Eq. (5)).

    ``models``, ``images``, ``labels``, ``rngs``: one entry per replicate. Each expert
    trains by Adam (a fresh optimiser, learning rate ``config.lr``) for ``epochs``
    passes in its own seeded batch order, on the cross-entropy over the outputs of the
    classes present in its training set (**book choice**, the usual masked loss of
    class-incremental fine-tuning: a new task's classes are learned without pushing
    down the logits of classes it does not contain; with every output present, as in
    the one-vs-rest tasks, it is the plain loss).

    Replicates whose training sets have the same size train together, stacked
    (`_train_stacked`); a replicate alone trains by the plain loop (`_train_one`).
    One network (not in a list) with its images, labels and generator is one replicate.
    """
    if isinstance(models, nn.Module):
        models, images, labels, rngs = [models], [images], [labels], [rngs]
    groups: dict[int, list[int]] = {}
    for r, y in enumerate(labels):
        groups.setdefault(len(y), []).append(r)
    for members in groups.values():
        if len(members) == 1:
            r = members[0]
            _train_one(models[r], images[r], labels[r], config, rngs[r], device)
        else:
            _train_stacked([models[r] for r in members], [images[r] for r in members],
                           [labels[r] for r in members], config, [rngs[r] for r in members], device)


def _train_one(model, images, labels, config: DeepConfig, rng, device) -> None:
    """One expert, Adam, ``epochs`` passes, seeded batch order, masked cross-entropy (`_train`)."""
    present = np.unique(labels)
    x = torch.as_tensor(np.array(images), device=device)
    y = torch.as_tensor(np.searchsorted(present, np.array(labels)), device=device)
    columns = torch.as_tensor(present, device=device)
    full = len(present) == model_outputs(model) and np.array_equal(present, np.arange(len(present)))
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    model.train()
    for _ in range(config.epochs):
        order = torch.as_tensor(rng.permutation(len(y)), device=device)
        for start in range(0, len(y), config.batch_size):
            batch = order[start:start + config.batch_size]
            optimiser.zero_grad(set_to_none=True)
            with _autocast(device):
                logits = model(x[batch])
                loss = nn.functional.cross_entropy(logits if full else logits[:, columns], y[batch])
            loss.backward()
            optimiser.step()


def _template(model: nn.Module) -> nn.Module:
    """A parameterless copy of an expert (on the meta device) for `torch.func.functional_call`."""
    return copy.deepcopy(model).to("meta")


def _train_stacked(models, images, labels, config: DeepConfig, rngs, device) -> None:
    """R experts (one per replicate, training sets of one size) trained at once, as R `_train_one`.

    Their parameters and buffers are stacked along a new leading axis
    (`torch.func.stack_module_state`); ``torch.vmap`` of `torch.func.functional_call`
    computes the R experts' logits on their own replicates' batches, (R, B, K). The
    masked cross-entropy of replicate r sets the logits of the classes absent from its
    training set to -inf (the same log-softmax as keeping only the present columns), and
    one Adam steps on the sum of the R mean losses: replicate r's slice of the stacked
    tensors gets exactly its own loss's gradient, and Adam is elementwise, so the slices
    follow R independent Adams. BatchNorm (ResNet-18) trains with its stacked running
    statistics, updated in place per replicate under vmap. The trained slices are
    written back into the experts.
    """
    R = len(models)
    K = model_outputs(models[0])
    mask = torch.zeros((R, K), dtype=torch.bool)
    for r, y in enumerate(labels):
        mask[r, np.unique(y)] = True
    mask = mask.to(device)[:, None, :]
    x = torch.as_tensor(np.stack([np.asarray(im) for im in images]), device=device)  # (R, n, C, H, W)
    y = torch.as_tensor(np.stack([np.asarray(lab) for lab in labels]), device=device)  # (R, n): output columns
    for model in models:
        model.train()
    parameters, buffers = torch.func.stack_module_state(models)
    template = _template(models[0]).train()

    def logits_of(p, b, images_batch):
        return torch.func.functional_call(template, (p, b), (images_batch,))

    batched_logits = torch.vmap(logits_of)
    optimiser = torch.optim.Adam(list(parameters.values()), lr=config.lr)
    rows = torch.arange(R, device=device)[:, None]
    size = y.shape[1]
    for _ in range(config.epochs):
        order = torch.as_tensor(np.stack([rng.permutation(size) for rng in rngs]), device=device)
        for start in range(0, size, config.batch_size):
            batch = order[:, start:start + config.batch_size]
            optimiser.zero_grad(set_to_none=True)
            with _autocast(device):
                logits = batched_logits(parameters, buffers, x[rows, batch])
                logits = logits.masked_fill(~mask, float("-inf"))
                losses = nn.functional.cross_entropy(logits.flatten(0, 1), y[rows, batch].flatten(), reduction="none")
                loss = losses.view(R, -1).mean(dim=1).sum()
            loss.backward()
            optimiser.step()
    with torch.no_grad():
        for r, model in enumerate(models):
            for name, value in model.named_parameters():
                value.copy_(parameters[name][r])
            for name, value in model.named_buffers():
                value.copy_(buffers[name][r])


@torch.no_grad()
def _features(model, x) -> np.ndarray:
    """Penultimate features of images x, float64 (n, D)."""
    model.eval()
    with _autocast(x.device):
        return np.asarray(model.embed(x).float().cpu(), dtype=np.float64)


@torch.no_grad()
def _outputs(model, tests) -> list[tuple[np.ndarray, np.ndarray]]:
    """(logits, penultimate features) of one expert on every task type's test set, float64."""
    model.eval()
    result = []
    for x, _ in tests:
        with _autocast(x.device):
            z = model.embed(x)
            logits = (model.classifier[-1] if isinstance(model, SmallCNN) else model.head[-1])(z)
        result.append((np.asarray(logits.float().cpu(), dtype=np.float64),
                       np.asarray(z.float().cpu(), dtype=np.float64)))
    return result


@torch.no_grad()
def _outputs_stacked(models, tests) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """`_outputs` of R experts at once (stacked parameters, ``torch.vmap`` over the experts).

    Returns one list per expert, as `_outputs` would.
    """
    for model in models:
        model.eval()
    parameters, buffers = torch.func.stack_module_state(models)
    template = _template(models[0]).eval()

    def outputs_of(p, b, x):
        return torch.func.functional_call(template, (p, b), (x,), {"features": True})

    batched = torch.vmap(outputs_of, in_dims=(0, 0, None))
    result = [[] for _ in models]
    for x, _ in tests:
        with _autocast(x.device):
            logits, z = batched(parameters, buffers, x)
        logits = np.asarray(logits.float().cpu(), dtype=np.float64)
        z = np.asarray(z.float().cpu(), dtype=np.float64)
        for r in range(len(models)):
            result[r].append((logits[r], z[r]))
    return result


def _save(path, identity, t, replicates) -> None:
    """Write the checkpoint atomically: a temporary file in the same folder, then rename."""
    payload = {
        "identity": identity,
        "state": {"t": t, "replicates": [dict(rep.state) for rep in replicates]},
        "models": [[{k: v.cpu() for k, v in model.state_dict().items()} for model in rep.models]
                   for rep in replicates],
        "rng": [rep.rng.bit_generator.state for rep in replicates],
    }
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".checkpoint-", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(payload, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _restore(path, identity, replicates) -> int:
    """Load a checkpoint of the same run into the replicates; returns the last round it holds."""
    payload = torch.load(path, weights_only=False)
    if payload.get("identity") != identity:
        raise ValueError(
            f"checkpoint {os.fspath(path)!r} belongs to another run (configuration, seeds or stream differ); "
            "delete it or choose another checkpoint path"
        )
    for rep, state, models, rng_state in zip(replicates, payload["state"]["replicates"], payload["models"],
                                             payload["rng"]):
        rep.state.update(state)
        for model, weights in zip(rep.models, models):
            model.load_state_dict(weights)
        rep.rng.bit_generator.state = rng_state
    return int(payload["state"]["t"])


# --------------------------------------------------------------------------- metrics


def prediction_tables(records: RoundRecords, scenario: str = "task"):
    """(loss, accuracy, experts) of the method's prediction, for `moecl.metrics`.

    ``loss`` and ``accuracy`` are (T, M', N) tables and ``experts`` (T,) says which row
    answers round i's task. Task-incremental: the expert m_i that learned the task (the
    paper's definition; for fine-tuning and joint training the one network), or SEED's
    Bayes ensemble over the task's classes. Class-incremental: the method's prediction
    over every class seen so far (`RoundRecords.class_accuracy`).
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario={scenario!r} is not one of {SCENARIOS}")
    zeros = np.zeros(len(records.tasks), dtype=np.int64)
    if scenario == "class":
        if records.class_accuracy is None:
            raise ValueError(f"scenario='class' needs a class-incremental stream; this run's stream is "
                             f"{records.scenario!r}")
        return records.class_loss[:, None, :], records.class_accuracy[:, None, :], zeros
    if records.ensemble_accuracy is not None:
        return records.ensemble_loss[:, None, :], records.ensemble_accuracy[:, None, :], zeros
    return records.test_loss, records.test_accuracy, records.experts


def accuracy_matrix(records: RoundRecords, scenario: str = "task") -> np.ndarray:
    """R[t, i] of a run in a scenario (`prediction_tables`, `moecl.metrics.accuracy_matrix`)."""
    _, accuracy, experts = prediction_tables(records, scenario)
    return metrics.accuracy_matrix(accuracy, records.tasks, experts)


def summarise(records: RoundRecords, after: int = 0, scenario: str = "task") -> dict:
    """Final numbers of one deep run in a scenario: the paper's F_T and G_T (test loss),
    the continual-learning accuracy metrics (average accuracy, forgetting, backward
    transfer, all from the accuracy matrix) and routing concentration over rounds
    ``after + 1 .. T``."""
    loss, accuracy, experts = prediction_tables(records, scenario)
    forgetting, generalization = metrics.forgetting_and_generalization(loss, records.tasks, experts)
    R = metrics.accuracy_matrix(accuracy, records.tasks, experts)
    return {
        "forgetting": float(forgetting[-1]),
        "generalization": float(generalization[-1]),
        "average_accuracy": metrics.average_accuracy(R),
        "accuracy_forgetting": metrics.accuracy_forgetting(R),
        "backward_transfer": metrics.backward_transfer(R),
        "concentration": metrics.routing_concentration(
            records.tasks[after:], records.experts[after:], records.test_loss.shape[2]),
    }
