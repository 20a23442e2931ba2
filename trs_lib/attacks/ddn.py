"""Decoupled Direction and Norm (DDN; Rony et al. 2019): a minimum-norm L2 attack.

Instead of a fixed budget, DDN looks for the smallest L2 perturbation that fools the model. It
keeps a radius ``r_k`` per example and a perturbation ``delta_k``; each step moves ``delta`` along
the normalised gradient of the cross-entropy, then rescales it onto the sphere of radius ``r_k``:

    delta' = delta_k + alpha_k g_k / ||g_k||_2,         alpha_k cosine-annealed from ``alpha``
    r_{k+1} = r_k (1 - gamma) if x + delta_k fools the model, else r_k (1 + gamma)
    delta_{k+1} = clip_[0,1](x + r_{k+1} delta' / ||delta'||_2) - x

and returns, per example, the smallest fooling perturbation seen (``x`` itself if none). With
``eps`` given the result is projected into the L2 ball of radius ``eps`` (a point then counts as
broken only if it is fooled within the budget). It differentiates the model's output (for an
ensemble: the cross-entropy of ``log(mean softmax)``). Untargeted.
"""
from __future__ import annotations

import math

import torch

from ._common import MAX_STEPS, check_budget, check_inputs, check_int, check_real, input_grad, project_l2

__all__ = ["ddn"]


def ddn(model, x: torch.Tensor, y: torch.Tensor, *, steps: int = 100, eps: float | None = None,
        init_norm: float = 1.0, gamma: float = 0.05, alpha: float = 1.0) -> torch.Tensor:
    """Minimum-L2 adversarial examples (DDN); ``eps`` (optional) bounds the returned perturbation."""
    check_inputs(x, y, "ddn")
    steps = check_int("steps", steps, 1, MAX_STEPS, attack="ddn")
    if eps is not None:
        eps = check_budget(eps, "L2", attack="ddn")
    init_norm = check_real("init_norm", init_norm, 0.0, 1e3, lo_open=True, attack="ddn")
    gamma = check_real("gamma", gamma, 0.0, 1.0, lo_open=True, hi_open=True, attack="ddn")
    alpha = check_real("alpha", alpha, 0.0, 1e3, lo_open=True, attack="ddn")
    x = x.detach()
    if eps == 0.0:
        return x.clone()
    y = y.to(device=x.device, dtype=torch.long)
    b = x.shape[0]
    view = (-1,) + (1,) * (x.dim() - 1)
    delta = torch.zeros_like(x)
    r = torch.full((b,), init_norm, device=x.device, dtype=x.dtype)
    best_l2 = torch.full((b,), float("inf"), device=x.device, dtype=x.dtype)
    best = x.clone()
    for k in range(steps):
        a = 0.01 * alpha + (alpha - 0.01 * alpha) * (1 + math.cos(math.pi * k / steps)) / 2
        xa = x + delta
        g, _, z = input_grad(model, xa, y, False)
        fooled = z.argmax(1) != y
        l2 = delta.flatten(1).norm(dim=1)
        better = fooled & (l2 < best_l2)
        best_l2 = torch.where(better, l2, best_l2)
        best = torch.where(better.view(view), xa, best)
        gn = g.flatten(1).norm(dim=1).clamp_min(1e-12).view(view)
        d = delta + a * g / gn
        r = torch.where(fooled, r * (1 - gamma), r * (1 + gamma))
        if eps is not None:
            r = r.clamp(max=2 * eps)  # no point searching far outside the budget
        dn = d.flatten(1).norm(dim=1).clamp_min(1e-12)
        delta = (x + d * (r / dn).view(view)).clamp(0.0, 1.0) - x
    if eps is not None:
        best = project_l2(best, x, eps)
    return best.detach()
