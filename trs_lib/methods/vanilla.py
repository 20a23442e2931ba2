"""Vanilla ensemble: the sum of member cross-entropies (the paper's ECE, Algorithm 1)."""
from __future__ import annotations

import torch.nn.functional as F

from .base import Method


def ece_loss(ensemble, x, y, cfg, ctx):
    """``sum_k CE(f_k(x), y)``, each member's loss averaged over the batch."""
    logits = ensemble.member_logits(x)
    n = logits.shape[0]
    ce = F.cross_entropy(logits.flatten(0, 1), y.repeat(n), reduction="none").view(n, -1).mean(1)
    loss = ce.sum()
    return loss, {"ce": loss}


VANILLA = Method("vanilla", ece_loss, doc="sum of member cross-entropies (ECE)")
