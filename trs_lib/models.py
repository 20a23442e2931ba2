"""Base models: ResNet-20 (He et al. 2016, CIFAR variant) and a small CNN for CPU-scale runs.

Every model takes inputs in [0, 1] and normalises inside ``forward``, so attacks work in
pixel space. ``build(arch, dataset)`` is the registry entry point.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import info

__all__ = ["ARCHS", "BATCHNORM_ARCHS", "build", "ResNet20", "SmallCNN", "Normalize", "BatchNorm2d",
           "set_data_parallel", "count_parameters"]


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, with the constants as buffers."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` that can normalise a training batch as ``nn.DataParallel`` over
    ``data_parallel`` devices does (the authors wrap every member in it, over 3 GPUs).

    DataParallel scatters the batch with ``torch.chunk`` and runs a replica of the model on each
    chunk: in training mode each replica normalises with its own chunk's statistics, and only the
    replica on the first device shares its buffers with the model, so only the first chunk's
    statistics reach the running averages. With ``data_parallel = 1`` (the default) and in eval
    mode this is ``nn.BatchNorm2d``; the state dict is the same either way.
    """

    data_parallel: int = 1

    def forward(self, x):
        k = self.data_parallel
        if k == 1 or not self.training or x.shape[0] < 2:
            return super().forward(x)
        first, *rest = x.chunk(k, 0)
        out = [super().forward(first)]   # the first device's replica: updates the running stats
        out += [F.batch_norm(c, None, None, self.weight, self.bias, True, 0.0, self.eps) for c in rest]
        return torch.cat(out, 0)


def set_data_parallel(model: nn.Module, devices: int) -> nn.Module:
    """Normalise training batches of every :class:`BatchNorm2d` of ``model`` as ``nn.DataParallel``
    over ``devices`` devices would (1: as one device). Returns ``model``."""
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ValueError(f"data_parallel must be a positive integer, got {devices!r}")
    for m in model.modules():
        if isinstance(m, BatchNorm2d):
            m.data_parallel = devices
    return model


class BasicBlock(nn.Module):
    """3x3-3x3 residual block; option A shortcut (zero-padded identity), as in He et al. Sec 4.2."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = BatchNorm2d(cout)
        self.stride, self.pad = stride, cout - cin

    def shortcut(self, x):
        if self.stride == 1 and self.pad == 0:
            return x
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet20(nn.Module):
    """ResNet-20: 3 stages of 3 basic blocks, 16/32/64 channels, about 0.27 M parameters."""

    def __init__(self, in_channels=3, num_classes=10, mean=(0.0,), std=(1.0,), depth=20):
        super().__init__()
        n = (depth - 2) // 6
        self.normalize = Normalize(mean, std)
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = BatchNorm2d(16)
        layers, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(cin, cout, stride if i == 0 else 1))
                cin = cout
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def features(self, x):
        """Penultimate representation (after global average pooling), shape (B, 64)."""
        out = F.relu(self.bn1(self.conv1(self.normalize(x))))
        out = self.layer3(self.layer2(self.layer1(out)))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def forward(self, x):
        return self.fc(self.features(x))


class SmallCNN(nn.Module):
    """Two conv layers and two dense layers: the CPU-scale model for 28x28 digits."""

    def __init__(self, in_channels=1, num_classes=10, mean=(0.0,), std=(1.0,), size=28, width=16,
                 activation="relu"):
        super().__init__()
        # activation "softplus" / "gelu": a twice-differentiable variant (with average pooling) whose
        # input-Hessian, hence the smoothness beta of the theory chapter, is finite
        if activation not in SMOOTH_ACTIVATIONS and activation != "relu":
            raise ValueError(f"unknown activation {activation!r}; valid: "
                             f"{['relu', *SMOOTH_ACTIVATIONS]}")
        self.activation = activation
        self.normalize = Normalize(mean, std)
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, 1, 1)
        self.fc1 = nn.Linear(2 * width * (size // 4) ** 2, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def features(self, x):
        """Penultimate representation, shape (B, 128)."""
        if self.activation != "relu":
            act = SMOOTH_ACTIVATIONS[self.activation]
            out = F.avg_pool2d(act(self.conv1(self.normalize(x))), 2)
            out = F.avg_pool2d(act(self.conv2(out)), 2)
            return act(self.fc1(out.flatten(1)))
        # relu(max_pool(z)) is max_pool(relu(z)) exactly, gradients and second derivatives
        # included (ReLU is monotone; both route the gradient to the window's first maximum, and
        # ReLU's derivative is 0 at 0), so pooling first applies ReLU to a quarter of the values.
        # channels_last: PyTorch's CPU max-pool kernel is about 5x faster in that layout; the
        # outputs agree to rounding (tests/test_models_ensemble.py). Side by side on 2 CPU threads,
        # 3 members, batch 256 (benchmarks/small_cnn_layout.py): forward 2.3x, input gradient
        # 1.35x, training step 1.5x faster.
        out = self.conv1(self.normalize(x)).contiguous(memory_format=torch.channels_last)
        out = F.relu(F.max_pool2d(out, 2))
        out = F.relu(F.max_pool2d(self.conv2(out), 2))
        return F.relu(self.fc1(out.flatten(1)))

    def forward(self, x):
        return self.fc2(self.features(x))


SMOOTH_ACTIVATIONS = {"softplus": F.softplus, "gelu": F.gelu}
ARCHS = ("resnet20", "small_cnn", "small_cnn_softplus", "small_cnn_gelu")
BATCHNORM_ARCHS = ("resnet20",)   # the architectures whose training batches are not per-example


def build(arch: str, dataset: str = "mnist5k") -> nn.Module:
    """A fresh model ``arch`` shaped for ``dataset`` (channels, size, classes, normalisation)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; valid names: {list(ARCHS)}")
    d = info(dataset)
    if arch == "resnet20":
        return ResNet20(d.channels, d.num_classes, d.mean, d.std)
    if arch.startswith("small_cnn_"):
        return SmallCNN(d.channels, d.num_classes, d.mean, d.std, d.size,
                        activation=arch[len("small_cnn_"):])
    return SmallCNN(d.channels, d.num_classes, d.mean, d.std, d.size)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
