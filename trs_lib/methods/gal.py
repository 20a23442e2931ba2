"""GAL, the Gradient Alignment Loss (Kariyappa and Qureshi 2019), a later peer of TRS.

GAL trains the members jointly so that the input gradients of their losses are misaligned:

    L_GAL = 1/N sum_k CE_k + lambda * log( sum_{j<k} exp(cos(g_j, g_k)) ),

``g_k = grad_x CE(f_k(x), y)`` per example. The log-sum-exp is a smooth maximum of the pairwise
cosines, so it pushes hardest on the most aligned pair; unlike TRS it has no smoothness term.
The form (mean of the member losses, coherence per example averaged over the batch,
``lambda = 0.5``, the recipe's ``gal_weight``) is that of the DVERGE authors' reimplementation
of GAL (Yang et al. 2020), the one later comparisons use.

This companion reports every method's ``ce`` as the sum of member losses (ECE), so the loss here
is ``N`` times the one above: ``sum_k CE_k + N * gal_weight * coherence``. Every update has GAL's
direction, and Adam is invariant to the overall scale.
"""
from __future__ import annotations

import torch

from .. import trs as T
from .base import Method

__all__ = ["gradient_coherence", "gal_loss", "GAL"]


def gradient_coherence(grads: torch.Tensor) -> torch.Tensor:
    """``log sum_{j<k} exp(cos(g_j, g_k))`` per example, (B,), from gradients (N, B, D)."""
    return torch.logsumexp(T.pairwise_cosine(grads), dim=0)


def gal_loss(ensemble, x, y, cfg, ctx):
    """``sum_k CE_k + N * gal_weight * mean_b coherence`` (GAL scaled by N, see module doc)."""
    ce, grads = T.input_gradients(ensemble.member_logits, x, y, create_graph=True)
    n = ce.shape[0]
    ece = ce.sum()
    coherence = gradient_coherence(grads).mean()
    term = n * cfg.gal_weight * coherence
    with torch.no_grad():
        cos = T.pairwise_cosine(grads).abs().mean()
    return ece + term, {"ce": ece, "coherence": term, "abs_cos": cos}


GAL = Method("gal", gal_loss, doc="ECE + log-sum-exp of pairwise input-gradient cosines "
                                  "(Kariyappa and Qureshi 2019)")
