"""Projected gradient descent in the L2 ball (Madry et al. 2018), the norm of the paper's theorems.

    x_0 = x + eps * u / ||u||_2 * r          (u Gaussian, r uniform in [0, 1]; random start)
    x_{t+1} = Proj_{B_2(x, eps) ∩ [0,1]^d}( x_t + alpha * g_t / ||g_t||_2 ),  g_t = grad_x L(f(x_t), y)

``L`` is the cross-entropy of the model output (for an ensemble: of ``log(mean softmax)``, the
paper's output); targeted mode descends the target's cross-entropy. Step size ``alpha = 2.5 eps /
steps`` unless given (Madry et al.'s rule). ``eps`` is the Euclidean norm of the whole
perturbation (on 28x28 digits in [0, 1], 1.5 is a usual budget). Restarts run stacked, and per
example the output is a restart that fools the model if one does, else the highest-loss one.
"""
from __future__ import annotations

import torch

from ._common import (MAX_RESTARTS, MAX_STEPS, check_bool, check_budget, check_inputs, check_int,
                      check_real, input_grad, pick_restarts, project_l2)

__all__ = ["pgd_l2"]


def pgd_l2(model, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int = 10,
           step_size: float | None = None, random_start: bool = True, targeted: bool = False,
           restarts: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
    """L2 PGD adversarial examples for ``x`` (B, ...) in [0, 1]; ``eps`` in [0, 1000]."""
    check_inputs(x, y, "pgd_l2", "target" if targeted is True else "y")
    eps = check_budget(eps, "L2", attack="pgd_l2")
    steps = check_int("steps", steps, 0, MAX_STEPS, attack="pgd_l2")
    check_bool("targeted", targeted, attack="pgd_l2")
    check_bool("random_start", random_start, attack="pgd_l2")
    restarts = check_int("restarts", restarts, 1, MAX_RESTARTS, attack="pgd_l2")
    if step_size is None:
        step_size = 2.5 * eps / max(steps, 1)
    step_size = check_real("step_size", step_size, 0.0, 1e3, attack="pgd_l2")
    x = x.detach()
    if eps == 0.0:
        return x.clone()
    y = y.to(device=x.device, dtype=torch.long)
    view = (-1,) + (1,) * (x.dim() - 1)
    xs = x.repeat(restarts, *([1] * (x.dim() - 1)))
    ys = y.repeat(restarts)
    if random_start:
        gdev = generator.device if generator is not None else x.device
        u = torch.randn(xs.shape, generator=generator, device=gdev).to(x.device, x.dtype)
        r = torch.rand(xs.shape[0], generator=generator, device=gdev).to(x.device, x.dtype)
        u = u / u.flatten(1).norm(dim=1).clamp_min(1e-12).view(view)
        x_adv = project_l2(xs + eps * r.view(view) * u, xs, eps)
    else:
        x_adv = xs.clone()
    for _ in range(steps):
        g, _, _ = input_grad(model, x_adv, ys, targeted)
        gn = g.flatten(1).norm(dim=1).clamp_min(1e-12).view(view)
        x_adv = project_l2(x_adv + step_size * g / gn, xs, eps)
    return pick_restarts(model, x_adv, y, restarts, targeted).detach()
