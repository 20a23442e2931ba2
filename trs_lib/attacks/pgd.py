"""Projected gradient descent in the L-inf ball (Madry et al. 2018), Section 4.1 of the paper.

    x_0 = x + U(-eps, eps)             (random start, clipped to [0, 1])
    x_{t+1} = Proj_{B_inf(x, eps) ∩ [0,1]^d}( x_t + alpha * sign(grad_x L(f(x_t), y)) )

with ``L`` the cross-entropy of the model output. For a model that returns log-probabilities
(an :class:`~trs_lib.ensemble.Ensemble`) the cross-entropy is the same, since ``log_softmax``
leaves log-probabilities unchanged. Targeted mode descends the cross-entropy of the target.

Step size: ``alpha = eps / 10`` unless given (the companion's convention for iterative L-inf
attacks; the paper does not state it). ``restarts`` runs R random starts in one stacked batch
(R*B examples) and returns, per example, a restart that fools the model if any does, else the
one of highest loss.

Gradients are taken w.r.t. the input only (``torch.autograd.grad``), so calling this inside a
training loop (PGD adversarial training) leaves parameter gradients untouched; the output is
detached. Putting the model in eval mode is the caller's job.
"""
from __future__ import annotations

import torch

from ._common import (MAX_RESTARTS, check_bool, check_int, input_grad, linf_common, pick_restarts,
                      project_linf, rand_uniform)

__all__ = ["pgd", "linf_iterate"]


def pgd(model, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int = 10,
        step_size: float | None = None, random_start: bool = True, targeted: bool = False,
        restarts: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
    """L-inf PGD adversarial examples for ``x`` (B, ...) in [0, 1] with labels (or targets) ``y``.

    Args:
        model: maps (B, ...) inputs to (B, C) logits or log-probabilities.
        eps: L-inf radius in [0, 1]. ``eps = 0`` returns ``x``.
        steps: number of gradient steps (>= 0; 0 with ``random_start`` is uniform noise).
        step_size: per-step size alpha; default ``eps / 10``.
        random_start: start from a uniform point of the ball (Madry et al.) instead of ``x``.
        targeted: if True, ``y`` holds target classes and the attack moves towards them.
        restarts: number of random starts, run together as one batch.
        generator: torch.Generator for the random start (reproducibility).
    Returns:
        ``x_adv`` detached, same shape/dtype/device as ``x``, inside the ball and [0, 1].
    """
    eps, steps, step_size = linf_common("pgd", x, y, eps, steps, step_size, targeted, steps_lo=0)
    restarts = check_int("restarts", restarts, 1, MAX_RESTARTS, attack="pgd")
    check_bool("random_start", random_start, attack="pgd")
    return linf_iterate(model, x, y, eps, steps, step_size, random_start, targeted, restarts, generator)


def linf_iterate(model, x, y, eps, steps, step_size, random_start, targeted, restarts=1, generator=None):
    """The PGD/BIM loop on already validated arguments (shared with :mod:`.bim`)."""
    x = x.detach()
    if eps == 0.0:
        return x.clone()
    y = y.to(device=x.device, dtype=torch.long)
    xs = x.repeat(restarts, *([1] * (x.dim() - 1))) if restarts > 1 else x
    ys = y.repeat(restarts) if restarts > 1 else y
    if random_start:
        x_adv = (xs + eps * rand_uniform(xs.shape, generator, xs.device, xs.dtype)).clamp_(0.0, 1.0)
    else:
        x_adv = xs.clone()
    for _ in range(steps):
        g, _, _ = input_grad(model, x_adv, ys, targeted)
        x_adv = project_linf(x_adv + step_size * g.sign(), xs, eps)
    return pick_restarts(model, x_adv, y, restarts, targeted).detach()
