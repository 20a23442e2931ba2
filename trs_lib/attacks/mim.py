"""Momentum iterative method (Dong et al. 2018), as Section 4.1 of the paper writes it.

    g_{i+1} = mu * g_i + grad_x L(f(x_i), y) / ||grad_x L(f(x_i), y)||_1
    x_{i+1} = clip_{x, eps}( x_i + (eps / r) * sign(g_{i+1}) )

Momentum accumulates the *per-example L1-normalised* gradient (the normalisation is what makes
the momentum meaningful across iterations of very different gradient scale). The paper's
formula writes ``l(x_i, y)`` for the gradient in the numerator and drops the ``sign`` in the
update; both are typos: Dong et al. Alg. 1 and the authors' advertorch evaluation use the
gradient and the sign. Default step ``eps / steps`` (the paper's ``eps / r``), ``mu = 1.0``
(Dong et al.). Targeted mode descends the target's cross-entropy. Eval mode is the caller's job.
"""
from __future__ import annotations

import torch

from ._common import check_int, check_real, input_grad, linf_common, project_linf

__all__ = ["mim"]


def mim(model, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int = 10,
        step_size: float | None = None, decay: float = 1.0, targeted: bool = False) -> torch.Tensor:
    """MI-FGSM in the L-inf ball of radius ``eps``; ``decay`` is the momentum factor mu in [0, 10]."""
    steps = check_int("steps", steps, 1, attack="mim")
    eps, steps, step_size = linf_common("mim", x, y, eps, steps, step_size, targeted,
                                        default_div=float(steps))
    decay = check_real("decay", decay, 0.0, 10.0, attack="mim")
    x = x.detach()
    if eps == 0.0:
        return x.clone()
    y = y.to(device=x.device, dtype=torch.long)
    x_adv, g = x.clone(), torch.zeros_like(x)
    for _ in range(steps):
        grad, _, _ = input_grad(model, x_adv, y, targeted)
        l1 = grad.abs().flatten(1).sum(1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))
        g = decay * g + grad / l1
        x_adv = project_linf(x_adv + step_size * g.sign(), x, eps)
    return x_adv.detach()
