"""Targeted APGD on the DLR loss over the top-k classes (APGD-T; Croce & Hein 2020, AutoAttack).

For each of the ``n_targets`` most likely wrong classes ``t`` of the clean output (ranked 2nd,
3rd, ... by the model), APGD ascends the targeted DLR loss

    DLR_t(z, y) = -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)

with ``pi`` the scores in decreasing order (shift- and scale-invariant, so the same on logits and
on an ensemble's log-probabilities; needs at least 4 classes). A point counts as broken when it
is misclassified (any wrong class, as in AutoAttack), and each later target only runs on the
points not yet broken. The differentiated output is the model's (for an
:class:`~trs_lib.ensemble.Ensemble`: ``log(mean softmax)``). L-inf or L2 (``norm``).
"""
from __future__ import annotations

import torch

from ._common import (MAX_RESTARTS, MAX_STEPS, check_budget, check_inputs, check_int, check_norm,
                      check_real)
from .apgd import apgd_loop, in_turns

__all__ = ["apgd_t", "dlr_targeted_loss"]


def dlr_targeted_loss(z: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Per-example targeted DLR loss (to be maximised) of scores ``z`` (B, C >= 4)."""
    zs = z.sort(1, descending=True).values
    z_y = z.gather(1, y[:, None]).squeeze(1)
    z_t = z.gather(1, t[:, None]).squeeze(1)
    return -(z_y - z_t) / (zs[:, 0] - 0.5 * (zs[:, 2] + zs[:, 3]) + 1e-12)


def apgd_t(model, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int = 100,
           n_targets: int = 9, restarts: int = 1, rho: float = 0.75, norm: str = "Linf",
           generator: torch.Generator | None = None) -> torch.Tensor:
    """APGD-T adversarial examples for labels ``y`` (untargeted in effect: any wrong class counts).

    ``n_targets``: how many of the top wrong classes to try, in [1, C - 1] (AutoAttack: 9).
    """
    check_inputs(x, y, "apgd_t")
    norm = check_norm(norm, attack="apgd_t")
    eps = check_budget(eps, norm, attack="apgd_t")
    steps = check_int("steps", steps, 1, MAX_STEPS, attack="apgd_t")
    n_targets = check_int("n_targets", n_targets, 1, 10_000, attack="apgd_t")
    restarts = check_int("restarts", restarts, 1, MAX_RESTARTS, attack="apgd_t")
    rho = check_real("rho", rho, 0.0, 1.0, lo_open=True, attack="apgd_t")
    x = x.detach()
    if eps == 0.0:
        return x.clone()
    y = y.to(device=x.device, dtype=torch.long)
    with torch.no_grad():
        z0 = model(x)
    c = z0.shape[1]
    if c < 4:
        raise ValueError(f"apgd_t: the targeted DLR loss needs at least 4 classes, got {c}")
    if (y >= c).any():
        raise ValueError(f"apgd_t: y must be < num_classes={c}, got max {int(y.max())}")
    if n_targets > c - 1:
        raise ValueError(f"apgd_t: n_targets={n_targets} is outside the allowed range [1, {c - 1}] "
                         f"(the number of wrong classes)")
    ranked = z0.scatter(1, y[:, None], float("-inf")).argsort(1, descending=True)  # wrong classes first

    def make_run(k, idx):
        t = ranked[idx, k]

        def run(xs, ys, r):
            tt = t.repeat(r)
            return apgd_loop(model, xs, ys, lambda z, yy, i: dlr_targeted_loss(z, yy, tt[i]),
                             lambda z, yy: z.argmax(1) != yy, eps=eps, steps=steps, rho=rho,
                             norm=norm, generator=generator)
        return run

    # points already misclassified need no attack
    return in_turns(model, x, y, range(n_targets), restarts, make_run, todo=z0.argmax(1) == y)
