"""Model-reweighing attack on an ensemble, in the spirit of MORA (Yu et al., NeurIPS 2022).

An attack on the ensemble output ``log(mean softmax)`` (the paper's, and what PGD/APGD here
differentiate) is dominated by the members that are already fooled or very confident: their
softmax saturates and the gradient of the mean says little about the members that still hold.
MORA attacks instead a reweighted combination of the members' outputs that puts the weight on
the members still classifying the point correctly. Here, per example and step (weights detached):

    v_i = (1 - s) / N + s * w_i m_i / sum_j w_j m_j                 (weights summing to 1)
    z_rw(x) = sum_i v_i Z_i(x)                        (output="logits": a reweighted logit average)
    z_rw(x) = log sum_i v_i softmax(Z_i(x))           (output="softmax": a reweighted ``F``)

with ``F`` the ensemble's log-probabilities (``s = 0`` with "softmax" gives ``F`` itself),
``Z_i`` member ``i``'s logits, ``m_i = 1`` if member
``i`` still predicts ``y`` (all members when none does), and ``w_i = softmax(Z_i)_y`` the member's
confidence in the true class (MORA's probability weight). APGD (CE or DLR) ascends the loss of
``z_rw``; a point counts as broken when the *ensemble* misclassifies it, and each value of the
mixing ``s`` in ``scales`` runs on the points the previous ones left (MORA sweeps s in
0..1; defaults: s in (0.5, 1.0) on the members' logits).

So, which output each attack differentiates: ``pgd``, ``apgd_ce``, ``apgd_t``, ``ddn``:
``log(mean softmax)``; ``reweigh``: the members' logits, reweighted, mixed with it; ``square``:
none (queries the margin of ``log(mean softmax)``). A model without ``member_logits`` is treated
as a one-member ensemble.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._common import (MAX_RESTARTS, MAX_STEPS, check_budget, check_choice, check_inputs, check_int,
                      check_norm, check_real)
from .apgd import apgd_loop, dlr_loss, in_turns

__all__ = ["reweigh", "Reweighted"]


class Reweighted(nn.Module):
    """Outputs ``[z_rw, F]`` (B, 2C): the reweighted scores to attack and the ensemble's
    log-probabilities (detached) to judge success. ``y`` is set per batch by the attack."""

    def __init__(self, model, y: torch.Tensor, scale: float, output: str = "softmax"):
        super().__init__()
        self.model, self.y, self.scale, self.output = model, y, scale, output

    def forward(self, x):
        m = self.model
        if hasattr(m, "member_logits") and hasattr(m, "combine_member_logits"):
            zi = m.member_logits(x)                      # (N, B, C)
            f = m.combine_member_logits(zi)              # (B, C)
        else:
            f = m(x)
            zi = f[None]
        n, y = zi.shape[0], self.y
        with torch.no_grad():
            correct = (zi.argmax(-1) == y[None]).to(zi.dtype)                       # (N, B)
            correct = torch.where(correct.sum(0, keepdim=True) > 0, correct, torch.ones_like(correct))
            conf = F.softmax(zi, -1).gather(-1, y[None, :, None].expand(n, -1, 1)).squeeze(-1)
            w = correct * conf.clamp_min(1e-6)
            v = (1 - self.scale) / n + self.scale * w / w.sum(0, keepdim=True)        # (N, B), sums to 1
        if self.output == "softmax":
            z = torch.logsumexp(F.log_softmax(zi, -1) + v.log()[..., None], 0)
        else:
            z = (v[..., None] * zi).sum(0)
        return torch.cat([z, f.detach()], 1)


def reweigh(model, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int = 100,
            scales=(0.5, 1.0), loss: str = "ce", output: str = "logits", norm: str = "Linf", restarts: int = 1,
            rho: float = 0.75, generator: torch.Generator | None = None) -> torch.Tensor:
    """Reweighted-ensemble APGD examples (untargeted); ``scales``: the mixings ``s`` in [0, 1] to try."""
    check_inputs(x, y, "reweigh")
    norm = check_norm(norm, attack="reweigh")
    eps = check_budget(eps, norm, attack="reweigh")
    steps = check_int("steps", steps, 1, MAX_STEPS, attack="reweigh")
    check_choice("loss", loss, ("ce", "dlr"), attack="reweigh")
    check_choice("output", output, ("softmax", "logits"), attack="reweigh")
    restarts = check_int("restarts", restarts, 1, MAX_RESTARTS, attack="reweigh")
    rho = check_real("rho", rho, 0.0, 1.0, lo_open=True, attack="reweigh")
    if isinstance(scales, (int, float)):
        scales = (scales,)
    if not isinstance(scales, (tuple, list)) or not scales:
        raise ValueError(f"reweigh: scales must be a non-empty tuple of numbers in [0, 1], got {scales!r}")
    scales = [check_real("scales", s, 0.0, 1.0, attack="reweigh") for s in scales]
    x = x.detach()
    if eps == 0.0:
        return x.clone()
    y = y.to(device=x.device, dtype=torch.long)

    def make_run(s, _idx):
        def run(xs, ys, r):
            wrapped = Reweighted(model, ys, s, output)

            def lossf(zz, yy, _i):
                c = zz.shape[1] // 2
                z = zz[:, :c]
                if loss == "ce":
                    return F.cross_entropy(z, yy, reduction="none")
                return dlr_loss(z, yy)

            def model_for(i):
                wrapped.y = ys[i]
                return wrapped

            return apgd_loop(wrapped, xs, ys, lossf, lambda f, yy: f.argmax(1) != yy, eps=eps, model_for=model_for,
                             steps=steps, rho=rho, norm=norm, generator=generator,
                             output=lambda zz: zz[:, zz.shape[1] // 2:])
        return run

    return in_turns(model, x, y, scales, restarts, make_run)
