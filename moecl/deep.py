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

Metrics (`RoundRecords`) after every round, on held-out test images of every task
type: test loss (cross-entropy) and accuracy of every expert on every type. The
paper's forgetting and generalization error, the accuracy matrix, average accuracy
and backward transfer follow from these tables and the routing history
(`moecl.metrics`).

Long runs write a checkpoint every ``checkpoint_every`` rounds (atomically); running
the same call again resumes from it and ends with the same numbers as an
uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from . import gate
from .config import _check_int, _check_real
from .progress import progress_bar

ARCHITECTURES = ("cnn", "resnet18")
DEVICES = ("auto", "cpu", "cuda")


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

    def forward(self, x):
        return self.classifier(self.features(x))


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

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


def make_expert(config: DeepConfig, image_shape: tuple, num_outputs: int) -> nn.Module:
    """One expert network of ``config.architecture`` for images (C, H, W)."""
    cls = SmallCNN if config.architecture == "cnn" else ResNet18
    return cls(image_shape[0], num_outputs, config.width)


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
    round t. gate_values (T, M): h_m at routing time. change_norm (T,): norm of the
    selected expert's parameter change. termination_round: T2 (-1: never).
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

    def load(self) -> np.ndarray:
        """f_t^(m): fraction of rounds 1..t routed to each expert, (T, M)."""
        M = self.test_loss.shape[1]
        onehot = self.experts[:, None] == np.arange(M)
        return np.cumsum(onehot, axis=0) / np.arange(1, len(self.experts) + 1)[:, None]


# --------------------------------------------------------------------------- the run


def run(config: DeepConfig, stream, seed: int = 0, checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int = 10, progress: bool = False) -> RoundRecords:
    """Run Algorithm 1 with deep experts on a task stream (`moecl.data.TaskStream`).

    ``seed`` seeds everything (expert initialisation, task draws, sampling, batch
    order, routing noise). With ``checkpoint`` a file is written atomically every
    ``checkpoint_every`` rounds; if it exists when the run starts, the run resumes
    from it (the configuration, seed and stream must be the same).
    """
    if not isinstance(config, DeepConfig):
        raise ValueError(f"config must be a moecl.deep.DeepConfig, got {type(config).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative integer")
    _check_int("checkpoint_every", checkpoint_every, minimum=1)
    device = resolve_device(config.device)
    started = time.perf_counter()
    M, N, T = config.M, stream.N, config.T
    identity = {"config": dataclasses.asdict(config), "seed": int(seed), "stream": repr(stream)}

    init_ss, draw_ss, gate_ss = np.random.SeedSequence(int(seed)).spawn(3)
    torch.manual_seed(int(init_ss.generate_state(1)[0]))
    models = [make_expert(config, stream.image_shape, stream.num_outputs).to(device) for _ in range(M)]
    rng = np.random.default_rng(draw_ss)

    centre = np.mean([task.train_images.reshape(len(task.train_images), -1).mean(axis=0) for task in stream],
                     axis=0, dtype=np.float64)
    dim = centre.size
    projection = None
    if config.gate_dim is not None:
        projection = np.random.default_rng(gate_ss).standard_normal((config.gate_dim, dim)) / math.sqrt(dim)
    tests = [_test_set(task, config.test_samples, device) for task in stream]

    rule = gate.TERMINATION_RULES[config.termination]
    state = {
        "t": 0,
        "theta": np.zeros((M, config.gate_dim or dim)),
        "flags": rule.initial_flags((M,)),
        "training": True,
        "routed": np.zeros(M),
        "records": RoundRecords(
            tasks=np.zeros(T, dtype=np.int64),
            experts=np.zeros(T, dtype=np.int64),
            test_loss=np.zeros((T, M, N)),
            test_accuracy=np.zeros((T, M, N)),
            gate_values=np.zeros((T, M)),
            change_norm=np.zeros(T),
            source=stream.source,
        ),
    }
    if checkpoint is not None and os.path.exists(checkpoint):
        _restore(checkpoint, identity, state, models, rng)
    # (M, N) tables of the current experts; after a resume, of the restored experts.
    current_loss, current_acc = (np.array(table) for table in zip(*[_evaluate(model, tests) for model in models]))

    records = state["records"]
    bar = progress_bar(T, progress, initial=state["t"])
    try:
        for t in range(state["t"] + 1, T + 1):
            n = int(rng.integers(N))
            task = stream[n]
            picked = rng.choice(len(task.train_labels), size=min(config.samples_per_round, len(task.train_labels)),
                                replace=False)
            images, labels = task.train_images[picked], task.train_labels[picked]
            xbar = gate_feature(images, centre, projection)
            h = gate.gate_values(state["theta"], xbar)  # Eq. (1)
            m = int(gate.route(h, config.lambda_ * rng.random(M)))  # Eq. (2)

            before = parameter_vector(models[m])
            _train(models[m], images, labels, config, rng, device)
            change_norm = float(torch.linalg.vector_norm(parameter_vector(models[m]) - before))
            current_loss[m], current_acc[m] = _evaluate(models[m], tests)

            state["routed"][m] += 1
            flags, stop = rule.update(state["flags"], h, m, t, config.T1, config.Gamma)
            state["flags"] = flags
            if state["training"] and stop:
                records.termination_round = t
                state["training"] = False
            if state["training"]:
                pi = gate.softmax(h)
                c = gate.locality_grad(pi, m, change_norm) + gate.load_balance_grad(
                    pi, state["routed"] / t, config.alpha, t)
                state["theta"] = gate.gate_step(state["theta"], c, xbar, config.eta)  # Eq. (9)

            records.tasks[t - 1], records.experts[t - 1] = n, m
            records.test_loss[t - 1], records.test_accuracy[t - 1] = current_loss, current_acc
            records.gate_values[t - 1], records.change_norm[t - 1] = h, change_norm
            state["t"] = t
            bar.update(1)
            if checkpoint is not None and (t % checkpoint_every == 0 or t == T):
                _save(checkpoint, identity, state, models, rng)
    finally:
        bar.close()
    records.wall_time = time.perf_counter() - started
    return records


def _test_set(task, limit, device):
    images, labels = task.test_images, task.test_labels
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return torch.as_tensor(np.array(images), device=device), torch.as_tensor(np.array(labels), device=device)


def _autocast(device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def _train(model, images, labels, config: DeepConfig, rng, device) -> None:
    """Train the selected expert on the task's samples: Adam, ``epochs`` passes, seeded batch order."""
    x = torch.as_tensor(np.array(images), device=device)
    y = torch.as_tensor(np.array(labels), device=device)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    model.train()
    for _ in range(config.epochs):
        order = torch.as_tensor(rng.permutation(len(y)), device=device)
        for start in range(0, len(y), config.batch_size):
            batch = order[start:start + config.batch_size]
            optimiser.zero_grad(set_to_none=True)
            with _autocast(device):
                loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            optimiser.step()


@torch.no_grad()
def _evaluate(model, tests) -> tuple[np.ndarray, np.ndarray]:
    """Test loss and accuracy of one expert on every task type's test set, (N,) each."""
    model.eval()
    losses, accuracies = [], []
    for x, y in tests:
        with _autocast(x.device):
            logits = model(x).float()
        losses.append(float(nn.functional.cross_entropy(logits, y)))
        accuracies.append(float((logits.argmax(dim=1) == y).float().mean()))
    return np.array(losses), np.array(accuracies)


def _save(path, identity, state, models, rng) -> None:
    """Write the checkpoint atomically: a temporary file in the same folder, then rename."""
    payload = {
        "identity": identity,
        "state": {key: value for key, value in state.items()},
        "models": [{k: v.cpu() for k, v in model.state_dict().items()} for model in models],
        "rng": rng.bit_generator.state,
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


def _restore(path, identity, state, models, rng) -> None:
    payload = torch.load(path, weights_only=False)
    if payload["identity"] != identity:
        raise ValueError(
            f"checkpoint {os.fspath(path)!r} belongs to another run (configuration, seed or stream differ); "
            "delete it or choose another checkpoint path"
        )
    state.update(payload["state"])
    for model, weights in zip(models, payload["models"]):
        model.load_state_dict(weights)
    rng.bit_generator.state = payload["rng"]



def summarise(records: RoundRecords, after: int = 0) -> dict:
    """Final numbers of one deep run: the paper's F_T and G_T (test loss), the
    continual-learning accuracy metrics, and routing concentration over rounds ``after + 1 .. T``."""
    from . import metrics

    forgetting, generalization = metrics.forgetting_and_generalization(
        records.test_loss, records.tasks, records.experts)
    R = metrics.accuracy_matrix(records.test_accuracy, records.tasks, records.experts)
    return {
        "forgetting": float(forgetting[-1]),
        "generalization": float(generalization[-1]),
        "average_accuracy": metrics.average_accuracy(R),
        "backward_transfer": metrics.backward_transfer(R),
        "concentration": metrics.routing_concentration(
            records.tasks[after:], records.experts[after:], records.test_loss.shape[2]),
    }
