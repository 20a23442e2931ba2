"""DVERGE (Yang et al. 2020): cross-adversarial training on distilled non-robust features.

For a source batch ``(x_s, y_s)`` and target inputs ``x`` (here a random permutation of the
same batch; DVERGE draws a second, independently shuffled batch), every member ``j`` *distils*
its non-robust features of ``x`` into an image that looks like ``x_s``:

    x'_j = argmin_{||z - x_s||_inf <= eps} || h_j(z) - h_j(x) ||_2^2

found by ``dverge_steps`` steps of size ``dverge_step_size`` of sign gradient descent with the
DVERGE code's momentum (gradients scaled to unit L1 norm per example and summed, no random
start). ``x'_j`` keeps the label ``y_s`` for a human, but member ``j`` sees ``x``'s features in
it. Every other member ``i`` is then trained to classify it as ``y_s`` (Yang et al. 2020, Sec. 3):

    L = sum_i sum_{j != i} CE(f_i(x'_j), y_s),

which removes the vulnerability that ``j`` has from the members ``i`` and so diversifies the
members' non-robust features. Member ``i``'s term depends only on ``i``'s parameters, so one
Adam step on the sum is DVERGE's per-member update.

Choices of this companion (DVERGE's code differs): the distillation layer ``h_j`` is the
penultimate representation ``member.features`` (after its ReLU) for every model, where DVERGE
draws a random ResNet block per epoch and takes its pre-activation output; the distillation runs
with the members in eval mode, so the perturbed images leave the BatchNorm statistics alone;
training starts from scratch rather than from a pre-trained vanilla ensemble. The defaults
``eps = 0.07``, step ``0.007``, 10 steps are DVERGE's CIFAR-10 settings.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Method, eval_mode

__all__ = ["distill", "dverge_loss", "DVERGE"]


def distill(features_fn, x_source: torch.Tensor, x_target: torch.Tensor, *, eps: float,
            steps: int, step_size: float, momentum: bool = True) -> torch.Tensor:
    """DVERGE's feature distillation: ``z`` within ``eps`` (L-inf) of ``x_source`` and in [0, 1]
    whose features ``features_fn(z)`` approach those of ``x_target`` (squared error).

    With ``momentum`` each step uses ``sign(g_1/|g_1|_1 + ... + g_t/|g_t|_1)`` per example, as in
    the DVERGE code; ``eps = 0`` or ``steps = 0`` returns ``x_source``. No parameter gradients
    are kept.
    """
    x_source = x_source.detach()
    with torch.no_grad():
        target = features_fn(x_target.detach())
    z = x_source.clone()
    if eps <= 0:
        return z
    velocity = torch.zeros_like(z)
    for _ in range(steps):
        z.requires_grad_(True)
        dist = ((features_fn(z) - target) ** 2).sum()
        (grad,) = torch.autograd.grad(dist, z)
        with torch.no_grad():
            if momentum:
                l1 = grad.flatten(1).abs().sum(1).clamp_min(1e-12)
                velocity = velocity + grad / l1.view(-1, *([1] * (grad.dim() - 1)))
                grad = velocity
            z = z - step_size * grad.sign()
            z = torch.min(torch.max(z, x_source - eps), x_source + eps).clamp(0, 1)
    return z.detach()


def dverge_loss(ensemble, x, y, cfg, ctx):
    """``sum_i sum_{j != i} CE(f_i(x'_j), y)`` with ``x'_j`` distilled by member ``j``."""
    perm = torch.randperm(x.shape[0], generator=ctx.generator, device=x.device)
    x_target = x[perm]
    with eval_mode(ensemble):
        distilled = [distill(m.features, x, x_target, eps=cfg.dverge_eps, steps=cfg.dverge_steps,
                             step_size=cfg.dverge_step_size) for m in ensemble.members]
    loss = x.new_zeros(())
    for i, member in enumerate(ensemble.members):
        for j, x_j in enumerate(distilled):
            if j != i:  # one forward per distilled batch, as DVERGE (BatchNorm batch statistics)
                loss = loss + F.cross_entropy(member(x_j), y)
    return loss, {"cross_ce": loss}


DVERGE = Method("dverge", dverge_loss, doc="cross-adversarial training on distilled non-robust "
                                           "features (Yang et al. 2020)")
