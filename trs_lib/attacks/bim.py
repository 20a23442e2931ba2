"""Basic iterative method (Kurakin et al. 2017), Section 4.1 of the paper.

    x_0 = x,   x_i = clip_{x, eps}( x_{i-1} + (eps / r) * sign(grad_x L(f(x_{i-1}), y)) )

with ``r`` the number of iterations, so the default step is ``eps / steps`` (the paper's
``eps / r``; with the default 10 steps this is the companion's eps/10 convention). The paper's
formula omits the ``sign``; BIM as defined by Kurakin et al. (and the authors' advertorch
evaluation) uses it. ``clip`` is the projection onto the L-inf ball intersected with [0, 1].
BIM is PGD without the random start; targeted mode descends the target's cross-entropy.
Putting the model in eval mode is the caller's job.
"""
from __future__ import annotations

import torch

from ._common import check_int, linf_common
from .pgd import linf_iterate

__all__ = ["bim"]


def bim(model, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int = 10,
        step_size: float | None = None, targeted: bool = False) -> torch.Tensor:
    """``steps`` (>= 1) signed-gradient steps of size ``step_size`` (default ``eps / steps``) from ``x``."""
    steps = check_int("steps", steps, 1, attack="bim")
    eps, steps, step_size = linf_common("bim", x, y, eps, steps, step_size, targeted,
                                        default_div=float(steps))
    return linf_iterate(model, x, y, eps, steps, step_size, False, targeted)
