"""`DeepConfig`: the parameters of one deep MoE run (book chapter: deep experts), and the device it runs on."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from .. import gate
from .._checks import check_int, check_real
from . import methods


#: Expert networks, devices and task orders a `DeepConfig` accepts.
ARCHITECTURES = ("cnn", "resnet18", "paper-cnn")
GATE_INPUTS = ("mean-image", "colour-stats", "random-features", "gradient-histogram")
GATE_CENTRINGS = ("running", "none")
LOCALITY_SIGNALS = ("change", "gradient", "loss")
DEVICES = ("auto", "cpu", "cuda")
TASK_ORDERS = ("random", "cyclic")
#: Largest value of each numeric setting (**book choice**: far past any run the book or a GPU makes, short of
#: what only a typo asks for: ``width=1e9`` would allocate terabytes, ``lr=1e300`` overflows Adam's first step).
MAX_SETTINGS = {"M": 1024, "T": 10**6, "samples_per_round": 10**6, "epochs": 10**4, "batch_size": 10**6,
                "width": 4096, "joint_refit_every": 10**6, "T1": 10**6, "gate_dim": 2**20, "test_samples": 10**7,
                "lr": 1.0, "eta": 1e6, "alpha": 1e6, "lambda_": 1e6, "Gamma": 1e12, "seed_distillation": 1e6,
                "shrinkage": 1.0}


@dataclass(frozen=True)
class DeepConfig:
    """Parameters of one deep MoE run.

    M: experts (``M = 1``: one network fine-tuned on every task). T: rounds.
    samples_per_round: training images of the task drawn each round (the paper: 100).
    epochs, batch_size, lr: training of the selected expert (Adam).
    architecture: ``"cnn"`` (two conv + three fully connected layers, the paper's small
    CNN) or ``"resnet18"`` (a ResNet-18-style network of ``width`` base channels) or
    ``"paper-cnn"`` (the paper's digits network with one sigmoid output, binary tasks only;
    `moecl.deep.networks.PaperCNN`).
    Gate: eta (Eq. (9)), alpha (Eq. (7)), lambda_ (routing noise, Eq. (2)) default to
    the values of a public copy of the authors' deep setup (0.3, 0.3, 0.005; book
    chapter: deep experts); Gamma (termination threshold, **book choice** 0.05, about
    sigma0**1.25 for that setup's sigma0 = 0.1), T1 (exploration rounds; ``None``:
    ``ceil(M / eta)``), termination (``"gap"`` or ``"none"``),
    gate_input (**book choice**, `moecl.deep.gate_inputs.gate_map`): the per-image feature whose
    batch mean the gate sees: ``"mean-image"`` (the flattened image; with ``gate_dim``, a
    fixed Gaussian random projection of it), ``"colour-stats"`` (per-channel mean and
    standard deviation plus a fixed random projection of the image to ``gate_dim``,
    default 64, dimensions), ``"random-features"`` (``gate_dim``, default 256, fixed
    random ReLU features of the image) or ``"gradient-histogram"`` (**book choice**, book
    chapter deep experts: HOG-like histograms of gradient orientation, 8 orientations on
    a 4 x 4 grid, blind to brightness and contrast; `moecl.deep.gate_inputs`). gate_centring (**book choice**): ``"running"``
    subtracts the running mean of the batch features of the rounds so far (only data
    already seen), ``"none"`` subtracts nothing.
    locality_signal (**book choice**): the deep analogue of the locality loss's
    ``||w_t - w_{t-1}||``: ``"change"`` (the norm of the selected expert's parameter
    change over its Adam training), ``"gradient"`` (the norm of the gradient of its
    loss on the task's batch before training: what one gradient step would change) or
    ``"loss"`` (its loss on the task's batch before training).
    test_samples: test images per task type used for the metrics (``None``: all).
    device: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``; on CUDA the
    experts train in bf16 autocast.
    method: how the expert of a round is chosen (`moecl.deep.methods`): ``"gate"``
    (the paper's MoE), ``"seed"`` (SEED-style KL selection and Bayes ensemble),
    ``"finetune"`` (one network, M = 1), ``"replay"`` (one network trained on the task
    plus a bounded replay of every type seen, M = 1) or ``"joint"`` (one network trained
    from scratch, offline, on every sample seen so far, M = 1).
    seed_distillation: weight of SEED's feature distillation (``method="seed"`` only; 0
    turns it off). joint_refit_every: ``method="joint"`` refits every so many rounds
    and after round T.
    deterministic: deterministic kernels (``torch.use_deterministic_algorithms``, the
    cuBLAS workspace, cuDNN without benchmarking) so that a resumed run equals an
    uninterrupted one on a GPU too; ``False`` trades that for speed.
    task_order: ``"random"`` (the paper: each round's type uniform over the N types) or
    ``"cyclic"`` (types 0, 1, ..., N-1, 0, 1, ...: the literature's sequence of tasks).
    shrinkage: SEED's variance shrinkage (`moecl.methods.fit_gaussian`).
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
    gate_input: str = "mean-image"
    gate_centring: str = "running"
    locality_signal: str = "gradient"
    seed_distillation: float = 1.0
    joint_refit_every: int = 1
    deterministic: bool = True

    def __post_init__(self):
        for name in ("M", "T", "samples_per_round", "epochs", "batch_size", "width", "joint_refit_every"):
            check_int(name, getattr(self, name), minimum=1)
        for name in ("lr", "eta"):
            check_real(name, getattr(self, name), low=0.0, low_open=True)
        for name in ("alpha", "lambda_", "Gamma"):
            check_real(name, getattr(self, name), low=0.0)
        if self.T1 is None:
            object.__setattr__(self, "T1", int(math.ceil(self.M / self.eta)))
        check_int("T1", self.T1, minimum=0)
        for name in ("gate_dim", "test_samples"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), minimum=1)
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture={self.architecture!r} is not one of {ARCHITECTURES}")
        if self.termination not in gate.TERMINATION_RULES:
            raise ValueError(f"termination={self.termination!r} is not one of {tuple(gate.TERMINATION_RULES)}")
        if self.device not in DEVICES:
            raise ValueError(f"device={self.device!r} is not one of {DEVICES}")
        if self.method not in methods.METHODS:
            raise ValueError(f"method={self.method!r} is not one of {methods.METHODS}")
        for name, allowed in (("gate_input", GATE_INPUTS), ("gate_centring", GATE_CENTRINGS),
                              ("locality_signal", LOCALITY_SIGNALS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} is not one of {allowed}")
        check_real("seed_distillation", self.seed_distillation, low=0.0)
        if not isinstance(self.deterministic, bool):
            raise ValueError(f"deterministic={self.deterministic!r} must be True or False")
        if self.method in methods.SINGLE_NETWORK_METHODS and self.M != 1:
            raise ValueError(f"method={self.method!r} trains one network: M must be 1, got M={self.M}")
        if self.task_order not in TASK_ORDERS:
            raise ValueError(f"task_order={self.task_order!r} is not one of {TASK_ORDERS}")
        check_real("shrinkage", self.shrinkage, low=0.0)
        if self.shrinkage > 1:
            raise ValueError(f"shrinkage={self.shrinkage!r} must lie in [0, 1]")
        for name, largest in MAX_SETTINGS.items():
            value = getattr(self, name)
            if value is not None and value > largest:
                raise ValueError(f"{name}={value!r} is absurdly large for a deep run (at most {largest:g}; "
                                 "moecl.deep.config.MAX_SETTINGS)")

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
