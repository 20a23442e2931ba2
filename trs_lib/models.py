"""Base models: ResNet-20 (He et al. 2016, CIFAR variant), the TRS authors' ResNet-20 variant and
a small CNN for CPU-scale runs.

Every model takes inputs in [0, 1] and normalises inside ``forward``, so attacks work in
pixel space. ``build(arch, dataset)`` is the registry entry point.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import info

__all__ = ["ARCHS", "BATCHNORM_ARCHS", "build", "ResNet20", "ResNet20Authors", "AUTHORS_NORMALIZATION",
           "SmallCNN", "Normalize", "BatchNorm2d",
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


class ProjectionBlock(BasicBlock):
    """:class:`BasicBlock` with the option B shortcut (He et al. Sec 3.3): where the shape changes
    (stride 2 or more channels) the shortcut is a strided 1x1 convolution followed by BatchNorm,
    elsewhere the identity. The shortcut's layers are named ``downsample.0`` and ``downsample.1``,
    so the state dict's keys are those of the TRS authors' ``cifar_resnet20`` (without the
    normalisation buffers)."""

    def __init__(self, cin, cout, stride):
        super().__init__(cin, cout, stride)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            BatchNorm2d(cout))

    def shortcut(self, x):
        return x if self.downsample is None else self.downsample(x)


class ResNet20(nn.Module):
    """ResNet-20: 3 stages of 3 basic blocks, 16/32/64 channels, about 0.27 M parameters."""

    block = BasicBlock

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
                blocks.append(self.block(cin, cout, stride if i == 0 else 1))
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


# The TRS authors' input normalisation (Transferability-Reduced-Smooth-Ensemble,
# utils/Empirical/datasets.py), by input channels: CIFAR-10's with their std (ours, from the
# data set, is (0.2470, 0.2435, 0.2616)); for 1-channel digits their MNIST constants (0.5, 0.5).
AUTHORS_NORMALIZATION = {3: ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
                         1: ((0.5,), (0.5,))}


class ResNet20Authors(ResNet20):
    """The TRS authors' ResNet-20 (their ``cifar_resnet20``; ``mnist_resnet20`` for 1 channel), built
    from our blocks. It differs from :class:`ResNet20` in three ways:

    * option B shortcuts (:class:`ProjectionBlock`: 1x1 convolution + BatchNorm where the shape
      changes) instead of the zero-padded identity; 272,474 parameters on CIFAR-10 instead of 269,722;
    * normalisation: their constants (:data:`AUTHORS_NORMALIZATION`), not the data set's. On
      3-channel CIFAR-10 mean (0.4914, 0.4822, 0.4465), std (0.2023, 0.1994, 0.2010). On 1-channel
      inputs mean 0.5, std 0.5: their code trains MNIST with ``mnist_resnet20`` (the same network
      with one input channel and a 7x7 average pool, which is our global average pool on 28x28
      inputs) behind ``NormalizeLayer([0.5], [0.5])``, so we do not use the data set's
      (0.1307, 0.3081) there as our :class:`ResNet20` does. They have no Fashion-MNIST setting; it
      gets the same 1-channel constants;
    * initialisation: convolutions N(0, 2 / (k * k * out_channels)) (He, fan-out), the linear layer
      PyTorch's default, BatchNorm weight 1 and bias 0.

    Inputs are in [0, 1]; normalisation is inside ``forward``.
    """

    block = ProjectionBlock

    def __init__(self, in_channels=3, num_classes=10, depth=20):
        if in_channels not in AUTHORS_NORMALIZATION:
            raise ValueError(f"the authors' ResNet-20 takes 1 or 3 input channels, got {in_channels}")
        mean, std = AUTHORS_NORMALIZATION[in_channels]
        super().__init__(in_channels, num_classes, mean, std, depth)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self.fc.reset_parameters()


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
ARCHS = ("resnet20", "resnet20_authors", "small_cnn", "small_cnn_softplus", "small_cnn_gelu")
# the architectures whose training batches are not per-example
BATCHNORM_ARCHS = ("resnet20", "resnet20_authors")


def build(arch: str, dataset: str = "mnist5k") -> nn.Module:
    """A fresh model ``arch`` shaped for ``dataset`` (channels, size, classes, normalisation)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; valid names: {list(ARCHS)}")
    d = info(dataset)
    if arch == "resnet20":
        return ResNet20(d.channels, d.num_classes, d.mean, d.std)
    if arch == "resnet20_authors":
        return ResNet20Authors(d.channels, d.num_classes)
    if arch.startswith("small_cnn_"):
        return SmallCNN(d.channels, d.num_classes, d.mean, d.std, d.size,
                        activation=arch[len("small_cnn_"):])
    return SmallCNN(d.channels, d.num_classes, d.mean, d.std, d.size)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
