"""The experts of the deep MoE: a small CNN and ResNet-18, with an ``embed`` for SEED's features."""

from __future__ import annotations

import torch
from torch import nn

from .config import DeepConfig


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
