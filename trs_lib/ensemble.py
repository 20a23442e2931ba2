"""An ensemble of N members of one architecture.

``Ensemble.member_logits(x)`` returns every member's logits, shape (N, B, C);
``Ensemble(x)`` returns the ensemble's log-probabilities, shape (B, C). The paper's
combination is ``log(mean_k softmax(f_k(x)))``; boosted ensembles use a weighted one
(see ``COMBINES``), so every attack and table treats all ensembles alike.

``Ensemble.member_logits_each(xs)`` feeds member k its own input ``xs[k]``: with one autograd
leaf per member, one backward pass gives every member's input gradient
(``trs_lib.trs.input_gradients``). The members run in a Python loop: on the 2-core CPU this
was measured against one grouped-convolution pass over stacked members
(``benchmarks/README.md``).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from . import models

__all__ = ["Ensemble", "build_ensemble", "COMBINES", "combine_logits"]

COMBINES = ("mean_softmax", "weighted_softmax", "sum_logits")


def combine_logits(logits: torch.Tensor, combine: str = "mean_softmax",
                   weights: torch.Tensor | None = None) -> torch.Tensor:
    """Ensemble log-probabilities (B, C) from member logits (N, B, C).

    * ``mean_softmax``: ``log(1/N sum_k softmax(z_k))`` (the paper's ensemble, Sec. 4.3).
    * ``weighted_softmax``: ``log(sum_k w_k softmax(z_k) / sum_k w_k)`` (AdaBoost, soft SAMME vote).
    * ``sum_logits``: ``log_softmax(sum_k w_k z_k)`` (GradientBoost's additive model).
    """
    n = logits.shape[0]
    log_p = torch.log_softmax(logits, dim=-1)
    if combine == "mean_softmax":
        return torch.logsumexp(log_p, dim=0) - math.log(n)
    if weights is None:
        raise ValueError(f"combine={combine!r} needs member weights")
    w = weights.to(logits.dtype).view(n, *([1] * (logits.dim() - 1)))
    if combine == "weighted_softmax":
        if (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"weighted_softmax needs non-negative weights with a positive sum, got {weights.tolist()}")
        return torch.logsumexp(log_p + torch.log(w / w.sum()), dim=0)
    if combine == "sum_logits":
        return torch.log_softmax((w * logits).sum(0), dim=-1)
    raise ValueError(f"unknown combine {combine!r}; valid names: {list(COMBINES)}")


class Ensemble(nn.Module):
    """N members and a combination rule; ``forward`` returns log-probabilities (B, C)."""

    def __init__(self, members, combine: str = "mean_softmax", weights=None):
        super().__init__()
        members = list(members)
        if len(members) < 1:
            raise ValueError("an ensemble needs at least one member")
        if combine not in COMBINES:
            raise ValueError(f"unknown combine {combine!r}; valid names: {list(COMBINES)}")
        self.members = nn.ModuleList(members)
        self.combine = combine
        w = torch.ones(len(members)) if weights is None else torch.as_tensor(weights, dtype=torch.float32)
        self.register_buffer("weights", w.clone())

    @property
    def num_members(self) -> int:
        return len(self.members)

    def member(self, i: int) -> nn.Module:
        """Member ``i`` alone (a plain model returning logits), for transfer studies."""
        return self.members[i]

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of every member, stacked: (N, B, C)."""
        return torch.stack([m(x) for m in self.members])

    def member_logits_each(self, xs) -> torch.Tensor:
        """Logits (N, B, C) of member k at its own input ``xs[k]`` (a sequence of N batches or an
        (N, B, ...) tensor); ``member_logits(x)`` equals ``member_logits_each([x] * N)``."""
        if len(xs) != len(self.members):
            raise ValueError(f"member_logits_each needs one input per member ({len(self.members)}), "
                             f"got {len(xs)}")
        return torch.stack([m(xk) for m, xk in zip(self.members, xs)])

    def combine_member_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return combine_logits(logits, self.combine, self.weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.combine_member_logits(self.member_logits(x))


def build_ensemble(arch: str = "small_cnn", dataset: str = "mnist5k", num_models: int = 3,
                   seed: int = 0, combine: str = "mean_softmax", device="cpu") -> Ensemble:
    """A fresh ensemble of ``num_models`` members, each initialised from ``seed`` + its index."""
    if not isinstance(num_models, int) or num_models < 1:
        raise ValueError(f"num_models must be a positive integer, got {num_models!r}")
    members = []
    for k in range(num_models):
        torch.manual_seed(seed * 1000 + k)
        members.append(models.build(arch, dataset))
    return Ensemble(members, combine).to(device)
