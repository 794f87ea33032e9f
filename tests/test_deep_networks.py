"""The experts under CUDA's deterministic mode, checked on the CPU (moecl/deep/networks.py).

The deep engine calls ``torch.use_deterministic_algorithms(True)`` on CUDA by default; a module
or operator that torch documents as raising there would stop a GPU run at its first backward
pass (the small CNN's ``nn.AdaptiveAvgPool2d(2)`` did). No GPU is needed to see that: the
modules of every registered architecture are walked, and every ATen operator of a training
step (forward, loss, backward; one network and the stacked ``torch.vmap`` path) is traced.
"""

import math
import re

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from moecl.deep import ARCHITECTURES, DeepConfig, make_expert
from moecl.deep.networks import (
    CUDA_RAISING_MODULES,
    CUDA_RAISING_OPS,
    GlobalAveragePool,
    QuadrantAveragePool,
    ResNet18,
    SmallCNN,
    raising_modules,
)
from moecl.deep.training import sigmoid_loss


#: (C, H, W) of the images the book's streams give: scikit-learn digits, MNIST, CIFAR, Tiny ImageNet.
BOOK_IMAGE_SHAPES = ((1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 64, 64))


def _classes(architecture, classes=5):
    """Classes of the test's tasks: the paper's one-sigmoid network takes binary tasks only."""
    return 2 if architecture == "paper-cnn" else classes


def _loss(logits, y):
    """The training loss of the engine: binary cross-entropy for one (sigmoid) output, else cross-entropy."""
    if logits.shape[-1] == 1:
        return sigmoid_loss(logits, y % 2)
    return F.cross_entropy(logits, y)


class _OperatorTrace(TorchDispatchMode):
    """Records the name of every ATen operator dispatched while it is active."""

    def __init__(self):
        super().__init__()
        self.names = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(func._overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def _training_step_operators(model, shape, outputs=5):
    """ATen operators of one training step of ``model`` (forward, cross-entropy, backward)."""
    torch.manual_seed(0)
    x = torch.randn(6, *shape)
    y = torch.arange(6) % outputs
    model.train()
    with _OperatorTrace() as trace:
        logits, features = model(x, features=True)
        loss = _loss(logits, y) + features.pow(2).mean()
        loss.backward()
    return trace.names


def _stacked_step_operators(models, shape, outputs=5):
    """The same for R experts stacked as the engine's batched path stacks them (vmap of functional_call)."""
    import copy

    parameters, buffers = torch.func.stack_module_state(models)
    template = copy.deepcopy(models[0]).to("meta")
    x = torch.randn(len(models), 6, *shape)
    y = torch.arange(6) % outputs

    def loss_of(p, b, images):
        logits = torch.func.functional_call(template, (p, b), (images,))
        return _loss(logits, y)

    with _OperatorTrace() as trace:
        losses = torch.vmap(loss_of)(parameters, buffers, x)
        losses.sum().backward()
    return trace.names


def _documented_raising_modules():
    """The ``torch.nn`` classes of the installed torch's list of operations that raise under deterministic mode."""
    doc = torch.use_deterministic_algorithms.__doc__
    start = doc.index("normally-nondeterministic operations will throw")
    end = doc.index("In addition", start)
    return set(re.findall(r":class:`torch\.nn\.(\w+)`", doc[start:end]))


def test_the_package_list_covers_the_installed_torch_documentation():
    documented = _documented_raising_modules()
    assert "AdaptiveAvgPool2d" in documented, "the docstring's list was not found where expected"
    missing = documented - set(CUDA_RAISING_MODULES)
    assert not missing, f"torch {torch.__version__} documents more raising modules: {sorted(missing)}"
    assert all(isinstance(getattr(nn, name), type) for name in CUDA_RAISING_MODULES)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("shape", BOOK_IMAGE_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_no_architecture_uses_a_module_or_operator_that_raises_on_cuda(architecture, shape):
    config = DeepConfig(architecture=architecture, width=4)
    model = make_expert(config, shape, _classes(architecture))
    assert raising_modules(model) == [], raising_modules(model)
    used = _training_step_operators(model, shape)
    assert "convolution_backward" in used  # the trace did see the backward pass
    assert not used & set(CUDA_RAISING_OPS), sorted(used & set(CUDA_RAISING_OPS))
    stacked = _stacked_step_operators([make_expert(config, shape, _classes(architecture)) for _ in range(2)], shape)
    assert "convolution_backward" in stacked
    assert not stacked & set(CUDA_RAISING_OPS), sorted(stacked & set(CUDA_RAISING_OPS))


def _as_before(model):
    """``model`` with the adaptive poolings the networks had before (the GPU path's first failure)."""
    if isinstance(model, SmallCNN):
        model.features[6] = nn.AdaptiveAvgPool2d(2)
    else:
        model.head[0] = nn.AdaptiveAvgPool2d(1)
    return model


def test_the_checks_catch_the_adaptive_pooling_the_networks_had():
    small = _as_before(SmallCNN(3, 5, width=4))
    assert raising_modules(small) == ["features.6: AdaptiveAvgPool2d"]
    assert "_adaptive_avg_pool2d_backward" in _training_step_operators(small, (3, 32, 32))
    resnet = _as_before(ResNet18(3, 5, width=4))
    assert raising_modules(resnet) == ["head.0: AdaptiveAvgPool2d"]
    # a subclass is caught too
    class Pool(nn.AdaptiveMaxPool2d):
        pass
    assert raising_modules(nn.Sequential(nn.Conv2d(1, 1, 1), Pool(2))) == ["1: Pool"]


@pytest.mark.parametrize("side", [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16])
def test_quadrant_pool_is_adaptive_pooling_to_two(side):
    torch.manual_seed(side)
    for width in (side, side + 1):
        x = torch.randn(4, 3, side, width, dtype=torch.float64, requires_grad=True)
        ours, theirs = QuadrantAveragePool()(x), F.adaptive_avg_pool2d(x, 2)
        assert ours.shape == (4, 3, 2, 2)
        weights = torch.randn_like(ours)
        (g_ours,), (g_theirs,) = (torch.autograd.grad(out, x, weights) for out in (ours, theirs))
        torch.testing.assert_close(ours, theirs, rtol=1e-14, atol=0)
        torch.testing.assert_close(g_ours, g_theirs, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("shape", BOOK_IMAGE_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_the_small_cnn_computes_what_it_computed_before_on_the_book_images(shape):
    """Bit for bit in float32, forward and gradients: the stored results' runs are unchanged.

    The maps reaching the pooling are 2, 7, 8 and 16 pixels wide; each window side is a power of
    two, so dividing by the window or by its sides in turn is exact and the sums run in the same order.
    """
    torch.manual_seed(1)
    new = SmallCNN(shape[0], 5, width=8)
    old = _as_before(SmallCNN(shape[0], 5, width=8))
    old.load_state_dict(new.state_dict())
    x = torch.randn(10, *shape)
    outputs = []
    for model in (new, old):
        logits, features = model(x, features=True)
        logits.pow(2).sum().backward()
        outputs.append([logits, features] + [p.grad for p in model.parameters()])
    for ours, theirs in zip(*outputs):
        assert torch.equal(ours, theirs)


def test_global_pool_is_adaptive_pooling_to_one():
    x = torch.randn(3, 8, 5, 7)
    assert torch.equal(GlobalAveragePool()(x), F.adaptive_avg_pool2d(x, 1))


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("shape", BOOK_IMAGE_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_the_experts_take_every_book_image_size(architecture, shape):
    model = make_expert(DeepConfig(architecture=architecture, width=4), shape, _classes(architecture, 7))
    logits, features = model(torch.randn(2, *shape), features=True)
    assert logits.shape == (2, 1 if architecture == "paper-cnn" else 7)
    assert features.shape == (2, 32 if architecture == "resnet18" else 16)
    assert math.isfinite(float(logits.detach().sum()))


_CHANNELS_LAST_STEP = """
import torch
from moecl.deep.networks import ResNet18
torch.manual_seed(0)
torch.set_num_threads(1)
model = ResNet18(3, 8, width=4)
images = torch.rand(8, 64, 64, 3).permute(0, 3, 1, 2)  # as Tiny ImageNet's arrays arrive: channels-last
for _ in range(3):
    loss = model(images).square().mean()
    torch.autograd.grad(loss, list(model.parameters()))
print("done")
"""


def test_resnet18_trains_on_channels_last_64_pixel_images():
    """torch 2.13.0's CPU weight gradient of a 1 x 1 stride-2 convolution on a channels-last 64 x 64 map
    of 4 channels corrupts the heap (the process dies); ResNet18 makes its input contiguous. Run in a
    subprocess, so that a crash is a failure of this test and not of the test session."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _CHANNELS_LAST_STEP], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "done", done.stderr[-2000:]


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_no_operator_of_a_whole_run_raises_on_cuda(architecture):
    """Every ATen operator of two-round runs (one seed, and two batched), not only the networks': the
    engine's training, evaluation, locality signal, SEED's features and distillation. (Replay and joint
    training train and evaluate by the same calls as fine-tuning.)"""
    from small_runs import split_digits_stream, tiny

    from moecl import deep
    from moecl.deep import datasets, streams

    stream = split_digits_stream()
    if architecture == "paper-cnn":  # binary tasks only: the paper's one-vs-rest digits
        stream = streams.one_vs_rest_tasks(datasets.load_sklearn_digits(), samples_per_task=40,
                                           test_samples_per_task=20, seed=0)
    used = set()
    for method, M in (("gate", 2), ("seed", 2), ("finetune", 1)):
        config = tiny(method=method, M=M, T=2, architecture=architecture, samples_per_round=10, epochs=1)
        with _OperatorTrace() as trace:
            deep.run(config, stream, seed=0)
            deep.run(config, stream, seed=[0, 1])
        used |= trace.names
    loss_backward = ("binary_cross_entropy_with_logits" if architecture == "paper-cnn"
                     else "_log_softmax_backward_data")
    assert {"convolution_backward", loss_backward} <= used
    assert not used & set(CUDA_RAISING_OPS), sorted(used & set(CUDA_RAISING_OPS))
