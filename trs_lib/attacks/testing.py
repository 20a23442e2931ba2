"""Small models for the attack tests, notebooks' smoke checks and the benchmark (cached).

``quick_model()`` trains the small CNN on 2,000 shuffled ``mnist5k`` training digits for one
epoch (a few seconds on one CPU core, about 90 % test accuracy); ``quick_ensemble()`` does the
same for a 3-member ensemble trained on the ensemble cross-entropy. ``linear_model()`` is a
tiny analytic softmax-regression model on 2x3x3 inputs whose gradients are known in closed form.
All are returned in eval mode, with ``requires_grad`` left on.
"""
from __future__ import annotations

import copy
import functools

import torch
import torch.nn as nn
import torch.nn.functional as F
from .. import data, models
from ..ensemble import build_ensemble

__all__ = ["quick_model", "quick_ensemble", "linear_model", "test_points", "LogProbs"]


class LogProbs(nn.Module):
    """Wrap a logits model so that it returns log-probabilities (like an ensemble)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return torch.log_softmax(self.model(x), dim=-1)


def _train(model, loss_fn, n=2000, epochs=1, seed=0, batch=50, lr=2e-3):
    g = torch.Generator().manual_seed(seed)
    x, y = data.load("mnist5k", "train")
    perm = torch.randperm(len(x), generator=g)[:n]
    x, y = x[perm], y[perm]
    opt = torch.optim.Adam(model.parameters(), lr)
    model.train()
    for _ in range(epochs):
        for i in range(0, n, batch):
            loss = loss_fn(model(x[i:i + batch]), y[i:i + batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


@functools.lru_cache(maxsize=4)
def _quick_model(seed, n, epochs):
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        return _train(models.build("small_cnn", "mnist5k"), F.cross_entropy, n, epochs, seed)
    finally:
        torch.random.set_rng_state(state)


@functools.lru_cache(maxsize=4)
def _quick_ensemble(seed, num_models, n, epochs):
    ens = build_ensemble("small_cnn", "mnist5k", num_models, seed=seed)
    return _train(ens, F.nll_loss, n, epochs, seed)


def quick_model(seed: int = 0, n: int = 2000, epochs: int = 1):
    """A small CNN (logits) trained briefly on mnist5k, in eval mode. The training is cached per
    arguments, but every call returns its own copy: a test that flips the mode or touches the
    weights (as torchattacks does) cannot change what the next test gets."""
    return copy.deepcopy(_quick_model(seed, n, epochs)).eval()


def quick_ensemble(seed: int = 0, num_models: int = 3, n: int = 2000, epochs: int = 1):
    """A ``num_models``-member ensemble (log-probabilities) trained briefly; a fresh copy per call."""
    return copy.deepcopy(_quick_ensemble(seed, num_models, n, epochs)).eval()


def test_points(n: int = 64, offset: int = 0):
    """``n`` mnist5k test digits, every class represented (strided through the sorted split)."""
    x, y = data.load("mnist5k", "test")
    idx = (torch.arange(n) * (len(x) // n) + offset) % len(x)
    return x[idx], y[idx]


test_points.__test__ = False  # not a pytest test


def linear_model(seed: int = 0, num_classes: int = 4):
    """Softmax regression ``z = W flatten(x) + b`` on (B, 2, 3, 3) inputs; eval mode."""
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(18, num_classes)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(num_classes, 18, generator=g))
        lin.bias.copy_(torch.randn(num_classes, generator=g) * 0.1)
    return nn.Sequential(nn.Flatten(), lin).eval()
