"""Jacobian-based saliency map attack JSMA (Papernot et al. 2016), Section 4.1 of the paper.

Greedy: each iteration changes the pair of features (p, q) with the largest saliency and adds
``theta`` to both (clipped to [0, 1]). For a target t, with ``a = grad_x Z_t`` and
``b = grad_x sum_{j != t} Z_j``, the saliency of a pair is

    S(p, q) = (a_p + a_q) * |b_p + b_q|   if a_p + a_q > 0 and b_p + b_q < 0, else 0

(signs flipped when ``theta < 0``). ``Z`` is the model output (logits, or an ensemble's
log-probabilities). The search domain holds features not yet changed that can still move in the
direction of ``theta``; at most ``gamma * d / 2`` iterations (``gamma`` = the largest fraction of
features changed). An example stops once it reaches its target (targeted) or leaves its class
(untargeted). JSMA is targeted by nature; the untargeted mode uses ``t = y`` with the roles of
``a`` and ``b`` swapped (decrease the true class, increase the others). The pair search is
O(d^2) memory per example, so the batch is processed in chunks of ``chunk`` examples.
Defaults: ``theta = 1`` (the authors' advertorch evaluation), ``gamma = 0.1``.
Putting the model in eval mode is the caller's job.
"""
from __future__ import annotations

import torch

from ._common import check_bool, check_inputs, check_int, check_real

__all__ = ["jsma"]


def _jsma_chunk(model, x, y, theta, max_iters, targeted):
    b, d = x.shape[0], x[0].numel()
    xa = x.clone().flatten(1)
    shape = x.shape
    domain = (xa < 1.0) if theta > 0 else (xa > 0.0)
    active = torch.ones(b, dtype=torch.bool, device=x.device)
    triu = torch.ones(d, d, dtype=torch.bool, device=x.device).triu(1)
    for _ in range(max_iters):
        idx = active.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        xi = xa[idx].clone().requires_grad_(True)
        with torch.enable_grad():
            z = model(xi.view(-1, *shape[1:]))
            zt = z.gather(1, y[idx, None]).squeeze(1)
            (a,) = torch.autograd.grad(zt.sum(), xi, retain_graph=True)
            (tot,) = torch.autograd.grad(z.sum(), xi)
        pred = z.detach().argmax(1)
        done = (pred == y[idx]) if targeted else (pred != y[idx])
        bvec = tot - a
        if not targeted:  # decrease the true class, increase the others
            a, bvec = bvec, a
        if theta < 0:
            a, bvec = -a, -bvec
        dom = domain[idx]
        A = a[:, :, None] + a[:, None, :]
        B = bvec[:, :, None] + bvec[:, None, :]
        valid = (A > 0) & (B < 0) & dom[:, :, None] & dom[:, None, :] & triu
        S = torch.where(valid, A * B.abs(), torch.zeros((), device=x.device, dtype=A.dtype))
        best_val, best = S.flatten(1).max(1)
        stuck = best_val <= 0
        p, q = best // d, best % d
        move = ~done & ~stuck
        rows = idx[move]
        for feat in (p[move], q[move]):
            xa[rows, feat] = (xa[rows, feat] + theta).clamp(0.0, 1.0)
            domain[rows, feat] = False
        active[idx[done | stuck]] = False
    return xa.view(shape)


def jsma(model, x: torch.Tensor, y: torch.Tensor, *, gamma: float = 0.1, theta: float = 1.0,
         targeted: bool = True, chunk: int = 16) -> torch.Tensor:
    """JSMA; ``y`` holds targets when ``targeted`` (the default), true labels otherwise.

    ``gamma`` in [0, 1] (fraction of features changed; 0 returns ``x``), ``theta`` in [-1, 1]
    nonzero, ``chunk`` in [1, 4096] examples per pair search.
    """
    check_inputs(x, y, "jsma", "target" if targeted is True else "y")
    gamma = check_real("gamma", gamma, 0.0, 1.0, attack="jsma")
    theta = check_real("theta", theta, -1.0, 1.0, attack="jsma")
    if theta == 0.0:
        raise ValueError("jsma: theta=0.0 is outside the allowed range [-1, 0) U (0, 1]")
    check_bool("targeted", targeted, attack="jsma")
    chunk = check_int("chunk", chunk, 1, 4096, attack="jsma")
    x = x.detach()
    y = y.to(device=x.device, dtype=torch.long)
    max_iters = int(gamma * x[0].numel() / 2)
    if max_iters == 0:
        return x.clone()
    out = [_jsma_chunk(model, x[i:i + chunk], y[i:i + chunk], theta, max_iters, targeted)
           for i in range(0, x.shape[0], chunk)]
    return torch.cat(out).clamp_(0.0, 1.0).detach()
