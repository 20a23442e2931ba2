"""CKAE (paper Sec. 4.2, App. D): ECE plus the linear CKA between members' representations.

The paper trains a baseline that penalises the similarity of the members' penultimate
representations, measured by linear centred kernel alignment (Kornblith et al. 2019, Eq. 4 with
a linear kernel):

    CKA(X, Y) = ||Y_c^T X_c||_F^2 / (||X_c^T X_c||_F ||Y_c^T Y_c||_F),

``X_c``, ``Y_c`` the (B, d) batch representations with each column centred over the batch. The
loss is ``sum_k CE_k + ckae_weight * mean_{j<k} CKA(h_j(x), h_k(x))`` on every batch. Neither the
paper nor its code gives the weight; ``ckae_weight = 1`` (the recipe) puts the penalty, a number
in [0, 1], on the scale of one member's cross-entropy.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import trs as T
from .base import Method

__all__ = ["linear_cka", "pairwise_cka", "features_and_logits", "ckae_loss", "CKAE"]

_EPS = 1e-12


def linear_cka(x: torch.Tensor, y: torch.Tensor, eps: float = _EPS) -> torch.Tensor:
    """Linear CKA of two representations of the same B examples, (B, d1) and (B, d2) -> scalar.

    Computed from the centred Gram matrices, ``<K_c, L_c>_F / (||K_c||_F ||L_c||_F)``, which equals
    Kornblith et al.'s feature-space form and costs O(B^2 d). In [0, 1]; 0 when a representation
    is constant over the batch (no NaN).
    """
    x = x.flatten(1) - x.flatten(1).mean(0, keepdim=True)
    y = y.flatten(1) - y.flatten(1).mean(0, keepdim=True)
    k, l = x @ x.T, y @ y.T
    hsic = (k * l).sum()
    return hsic / (T.safe_norm(k.flatten(), eps=eps) * T.safe_norm(l.flatten(), eps=eps))


def pairwise_cka(features: list[torch.Tensor]) -> torch.Tensor:
    """Linear CKA of every pair j<k of member representations, shape (P,)."""
    j, k = T.pair_indices(len(features))
    return torch.stack([linear_cka(features[a], features[b]) for a, b in zip(j.tolist(), k.tolist())])


def _head(member: nn.Module) -> nn.Linear:
    linears = [m for m in member.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise TypeError(f"{type(member).__name__} has no nn.Linear classifier; CKAE needs "
                        "logits = last_linear(features(x))")
    return linears[-1]


def features_and_logits(member: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass giving the penultimate representation and the logits.

    The representation is the input of the member's last linear layer, which for every model of
    ``trs_lib.models`` is ``member.features(x)`` (tested); a single pass keeps BatchNorm statistics
    updated once per batch, as for every other method.
    """
    seen = {}
    hook = _head(member).register_forward_pre_hook(lambda mod, args: seen.__setitem__("h", args[0]))
    try:
        logits = member(x)
    finally:
        hook.remove()
    return seen["h"], logits


def ckae_loss(ensemble, x, y, cfg, ctx):
    """``sum_k CE_k + ckae_weight * mean_{j<k} CKA(h_j, h_k)`` on the batch (see module doc)."""
    feats, ce = [], []
    for member in ensemble.members:
        h, logits = features_and_logits(member, x)
        feats.append(h)
        ce.append(F.cross_entropy(logits, y))
    ece = torch.stack(ce).sum()
    cka = pairwise_cka(feats).mean()
    penalty = cfg.ckae_weight * cka
    return ece + penalty, {"ce": ece, "cka_penalty": penalty, "cka": cka.detach()}


CKAE = Method("ckae", ckae_loss, doc="ECE + mean pairwise linear CKA of penultimate features "
                                     "(Kornblith et al. 2019; paper Sec. 4.2)")
