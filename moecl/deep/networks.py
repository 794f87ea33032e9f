"""The experts of the deep MoE: a small CNN and ResNet-18, with an ``embed`` for SEED's features.

Every module of an expert must run under ``torch.use_deterministic_algorithms(True)`` on
CUDA, which the deep engine sets by default (`moecl.deep.DeepConfig.deterministic`):
`CUDA_RAISING_MODULES` lists the module types torch documents as raising there, and
neither network uses one (tests/test_deep_networks.py walks every architecture).
The two poolings torch's adaptive average pooling would give are written as fixed ones:
`QuadrantAveragePool` (the small CNN's 2 x 2 maps) and `GlobalAveragePool` (ResNet-18's
head).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .config import DeepConfig


#: Module types whose use raises a RuntimeError under ``torch.use_deterministic_algorithms(True)``
#: on CUDA (most of them when differentiated, i.e. in training): the ``torch.nn`` classes of the list
#: "The following normally-nondeterministic operations will throw a RuntimeError when mode=True" in
#: the documentation of ``torch.use_deterministic_algorithms``, torch 2.13.0. The functions of that
#: list (``interpolate``, ``grid_sample``, ``histc``, ``cumsum``, ...) are in `CUDA_RAISING_OPS`.
#: tests/test_deep_networks.py checks that this tuple covers every ``torch.nn`` class of that list in
#: the installed torch's docstring, so a torch that documents a new one fails the test.
CUDA_RAISING_MODULES = (
    "AvgPool3d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d", "AdaptiveMaxPool2d", "FractionalMaxPool2d",
    "FractionalMaxPool3d", "MaxUnpool1d", "MaxUnpool2d", "MaxUnpool3d", "ReflectionPad1d", "ReflectionPad2d",
    "ReflectionPad3d", "NLLLoss", "CTCLoss", "EmbeddingBag",
)


#: The ATen operators behind that list (the modules' backward kernels and the listed functions), as
#: a trace of an expert's forward and backward on the CPU names them (``torch.utils._python_dispatch``;
#: tests/test_deep_networks.py): an expert that calls one of them functionally, which no module walk
#: sees, fails on CUDA under deterministic mode. A superset on purpose: ``cumsum``, ``bincount`` and
#: ``nll_loss2d_forward`` raise only for some dtypes, arguments or reductions.
CUDA_RAISING_OPS = (
    "avg_pool3d_backward", "_adaptive_avg_pool2d_backward", "_adaptive_avg_pool3d_backward",
    "adaptive_max_pool2d_backward", "fractional_max_pool2d_backward", "fractional_max_pool3d_backward",
    "max_unpool2d", "max_unpool3d", "reflection_pad1d_backward", "reflection_pad2d_backward",
    "reflection_pad3d_backward", "nll_loss2d_forward", "_ctc_loss_backward", "_embedding_bag_backward",
    "_embedding_bag_dense_backward", "put_", "put", "histc", "bincount", "median", "grid_sampler_2d_backward",
    "grid_sampler_3d_backward", "upsample_linear1d_backward", "upsample_bilinear2d_backward",
    "upsample_bicubic2d_backward", "upsample_trilinear3d_backward", "cumsum", "scatter_reduce",
)


def raising_modules(model: nn.Module) -> list[str]:
    """``"name: Type"`` of each submodule of ``model`` that `CUDA_RAISING_MODULES` lists (empty: none)."""
    raising = tuple(getattr(nn, name) for name in CUDA_RAISING_MODULES)
    return [f"{name or '<root>'}: {type(module).__name__}" for name, module in model.named_modules()
            if isinstance(module, raising)]


class QuadrantAveragePool(nn.Module):
    """The mean of each quadrant of a feature map: ``nn.AdaptiveAvgPool2d(2)`` as a fixed pooling.

    For a map of side n, adaptive pooling to 2 averages the rows ``[0, ceil(n/2))`` and
    ``[floor(n/2), n)`` (overlapping by one row when n is odd), and so do the columns; that
    is an average pooling with kernel ``ceil(n/2)`` and stride ``floor(n/2)``, whose CUDA
    backward is deterministic where adaptive pooling's raises under
    ``torch.use_deterministic_algorithms(True)``. A side of 1 is repeated (both halves are
    that row). On the CPU the outputs and gradients are those of ``nn.AdaptiveAvgPool2d(2)``
    bit for bit when the window sides are powers of two (every map the book's images give:
    2 x 2, 7 x 7, 8 x 8, 16 x 16 from 8 x 8 digits, 28 x 28 MNIST, 32 x 32 CIFAR, 64 x 64
    Tiny ImageNet), and within a rounding of them otherwise (one divides by the window
    size, the other by its sides in turn).
    """

    def forward(self, x):
        if x.shape[-2] == 1:
            x = torch.cat([x, x], dim=-2)
        if x.shape[-1] == 1:
            x = torch.cat([x, x], dim=-1)
        h, w = x.shape[-2:]
        return F.avg_pool2d(x, (math.ceil(h / 2), math.ceil(w / 2)), (h // 2, w // 2))


class GlobalAveragePool(nn.Module):
    """The mean over the spatial axes, as (N, C, 1, 1): ``nn.AdaptiveAvgPool2d(1)`` as a plain mean.

    On the CPU torch computes adaptive pooling to 1 x 1 as this mean (bit for bit), but its module is on the list of
    operations that raise on CUDA under deterministic mode (`CUDA_RAISING_MODULES`), so the
    network says what it computes.
    """

    def forward(self, x):
        return x.mean(dim=(-2, -1), keepdim=True)


class SmallCNN(nn.Module):
    """The paper's small CNN: two convolutional and three fully connected layers.

    Works for any image size of at least 4 x 4 (8 x 8 scikit-learn digits, 28 x 28
    MNIST, 32 x 32 CIFAR, 64 x 64 Tiny ImageNet): the convolutions keep the size, two
    2 x 2 poolings halve it twice and `QuadrantAveragePool` brings the maps to 2 x 2.
    """

    def __init__(self, in_channels: int, num_outputs: int, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            QuadrantAveragePool(), nn.Flatten(),
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


class BasicBlock(nn.Module):
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
                blocks.append(BasicBlock(cin, cout, stride))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(GlobalAveragePool(), nn.Flatten(), nn.Linear(cin, num_outputs))

    def embed(self, x):
        """Penultimate features (8 * width): the pooled output of the last stage.

        The images are made contiguous (N, C, H, W) first: Tiny ImageNet's arrive as a transposed
        view of the decoded (N, H, W, C) pixels, i.e. channels-last, and on that layout torch 2.13.0's
        CPU backward of a 1 x 1 stride-2 convolution with few channels (the shortcut of the second
        stage at width 4, on 64 x 64 images) corrupts the heap and kills the process
        (tests/test_deep_networks.py).
        """
        return self.head[:-1](self.blocks(self.stem(x.contiguous())))

    def forward(self, x, features: bool = False):
        """Logits; with ``features``, (logits, penultimate features)."""
        z = self.embed(x)
        logits = self.head[-1](z)
        return (logits, z) if features else logits


def make_expert(config: DeepConfig, image_shape: tuple, num_outputs: int) -> nn.Module:
    """One expert network of ``config.architecture`` for images (C, H, W)."""
    if config.architecture == "paper-cnn":
        return PaperCNN(image_shape[0], num_outputs, config.width, image_shape[1:])
    cls = SmallCNN if config.architecture == "cnn" else ResNet18
    return cls(image_shape[0], num_outputs, config.width)


def model_outputs(model: nn.Module) -> int:
    """Width of an expert's output layer."""
    return (model.classifier[-1] if isinstance(model, SmallCNN) else model.head[-1]).out_features


def parameter_vector(model: nn.Module) -> torch.Tensor:
    """All trainable parameters of a model as one flat float64 vector (for ||w_t - w_{t-1}||)."""
    return torch.cat([p.detach().reshape(-1).double().cpu() for p in model.parameters()])


class PaperCNN(SmallCNN):
    """The paper's digits network as its Appendix A.4 describes it (book chapter: the paper's digits experiment).

    Five layers, two convolutional and three fully connected, ReLU after the first four, a
    sigmoid output, and a 2 x 2 max-pooling of stride 2 after the first convolution only::

        conv 3x3 (width) - ReLU - max-pool 2x2/2 - conv 3x3 (2 width) - ReLU - flatten
        - linear (8 width) - ReLU - linear (4 width) - ReLU - linear (1) - sigmoid

    **Book choices** (the paper leaves them open; book/choices.md): 3 x 3 kernels with
    padding 1 (so that 8 x 8 scikit-learn digits pass too), the widths (``width``,
    ``2 width`` channels; ``8 width``, ``4 width`` and 1 units, those of `SmallCNN`).
    The flattened map has ``2 width (H // 2) (W // 2)`` values, so unlike `SmallCNN` the
    first fully connected layer's size follows the image's.

    The output is one unit: the network returns its logit ``z`` (n, 1) and the sigmoid
    ``p = sigmoid(z)``, the probability that the image is the task's digit, is applied by
    the loss, binary cross-entropy on ``p`` computed from ``z`` (`moecl.deep.training`),
    and by the evaluation, which scores ``p > 1/2`` (`moecl.deep.training.two_class_logits`).
    So it fits binary tasks only: ``num_outputs`` is the stream's number of classes and
    must be 2 (the one-vs-rest digits). It keeps `SmallCNN`'s layout (``features``,
    ``classifier``, `embed`), which the training and evaluation code reads.

    Deterministic on CUDA: ``nn.MaxPool2d`` is not among the operations torch 2.13.0
    documents as nondeterministic or raising under ``torch.use_deterministic_algorithms``
    (only ``MaxPool3d``, adaptive and fractional max-pooling are; `CUDA_RAISING_MODULES`),
    and with a 2 x 2 window of stride 2 the windows do not overlap, so each input gets at
    most one gradient term; tests/test_deep_networks.py traces its training step.
    """

    def __init__(self, in_channels: int, num_outputs: int, width: int = 16, image_size: tuple = (28, 28)):
        if num_outputs != 2:
            raise ValueError(f"architecture='paper-cnn' is the paper's one-sigmoid network for binary tasks "
                             f"(one-vs-rest); this stream's tasks have {num_outputs} classes")
        nn.Module.__init__(self)
        height, width_px = (int(side) // 2 for side in image_size)
        if height < 1 or width_px < 1:
            raise ValueError(f"architecture='paper-cnn' needs images of at least 2 x 2 pixels, got {image_size}")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, stride=2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.Flatten(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(2 * width * height * width_px, 8 * width), nn.ReLU(),
            nn.Linear(8 * width, 4 * width), nn.ReLU(),
            nn.Linear(4 * width, 1),
        )
