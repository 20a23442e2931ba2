"""Elastic-net attack EAD (Chen et al. 2018), Section 4.1 of the paper.

    min_{x' in [0,1]^d}  c * f(x') + ||x' - x||_2^2 + beta * ||x' - x||_1

with ``f`` the CW margin loss (:func:`.cw.margin`, correct on log-probabilities). Solved by
FISTA: a gradient step on ``c f + ||.||_2^2`` at the slack point ``s_k`` with a square-root
decaying learning rate, then the projected shrinkage-thresholding operator

    S_beta(z)_i = min(z_i - beta, 1)  if z_i - x_i >  beta
                = x_i                 if |z_i - x_i| <= beta
                = max(z_i + beta, 0)  if z_i - x_i < -beta

and ``s_{k+1} = x_{k+1} + k / (k + 3) (x_{k+1} - x_k)``. The returned example per input is the
successful iterate with the smallest elastic-net distance (``decision_rule="EN"``) or L1
(``"L1"``); failing that, the closest iterate misclassified with a margin below kappa; failing
that, ``x``. ``binary_search_steps`` searches ``c`` as CW does.
Defaults follow the authors' evaluation (advertorch ``ElasticNetL1Attack``): beta 0.01,
kappa 0.1 in the presets, 100 iterations, lr 0.01, 9 binary-search steps.
Examples stop early one by one: ``abort_early`` when the objective has not decreased by 0.01 %
over ``steps // 10`` iterations, ``stop_on_success`` at their first success (their best point
is kept; the robust accuracy is unchanged).
Putting the model in eval mode is the caller's job.
"""
from __future__ import annotations

import torch

from ._common import MAX_STEPS, check_bool, check_choice, check_inputs, check_int, check_real
from .cw import MAX_C, cw_success, margin

__all__ = ["ead"]


def _shrink(z, x, beta):
    d = z - x
    return torch.where(d > beta, (z - beta).clamp(max=1.0),
                       torch.where(d < -beta, (z + beta).clamp(min=0.0), x))


def ead(model, x: torch.Tensor, y: torch.Tensor, *, c: float = 1.0, beta: float = 0.01,
        kappa: float = 0.0, steps: int = 100, lr: float = 0.01, binary_search_steps: int = 9,
        decision_rule: str = "EN", targeted: bool = False, abort_early: bool = True,
        stop_on_success: bool = False) -> torch.Tensor:
    """EAD adversarial examples (``y`` = targets when ``targeted``); ``beta`` in [0, 1e3]."""
    check_inputs(x, y, "ead", "target" if targeted is True else "y")
    c = check_real("c", c, 0.0, MAX_C, lo_open=True, attack="ead")
    beta = check_real("beta", beta, 0.0, 1e3, attack="ead")
    kappa = check_real("kappa", kappa, 0.0, 1e3, attack="ead")
    steps = check_int("steps", steps, 1, MAX_STEPS, attack="ead")
    lr = check_real("lr", lr, 0.0, 10.0, lo_open=True, attack="ead")
    bss = check_int("binary_search_steps", binary_search_steps, 1, 100, attack="ead")
    check_choice("decision_rule", decision_rule, ("EN", "L1"), attack="ead")
    check_bool("targeted", targeted, attack="ead")
    check_bool("abort_early", abort_early, attack="ead")
    check_bool("stop_on_success", stop_on_success, attack="ead")
    window = max(steps // 10, 1)
    x = x.detach()
    b, dev = x.shape[0], x.device
    y = y.to(device=dev, dtype=torch.long)
    const = torch.full((b,), c, device=dev, dtype=x.dtype)
    lower, upper = torch.zeros_like(const), torch.full_like(const, MAX_C)
    best_d = torch.full((b,), float("inf"), device=dev, dtype=x.dtype)
    best_adv = x.clone()
    fb_d, fb_adv = best_d.clone(), x.clone()  # fallback: misclassified with a margin < kappa
    for _ in range(bss):
        xk, sk = x.clone(), x.clone()
        succeeded = torch.zeros(b, dtype=torch.bool, device=dev)
        active = torch.arange(b, device=dev)
        prev = torch.full((b,), float("inf"), device=dev, dtype=x.dtype)
        for k in range(steps):
            lr_k = lr * (1 - k / steps) ** 0.5
            sa, xa0 = sk[active].requires_grad_(True), x[active]
            with torch.enable_grad():
                mg = margin(model(sa), y[active])
                f = (-mg if targeted else mg).clamp_min(-kappa)
                loss = const[active] * f + (sa - xa0).flatten(1).pow(2).sum(1)
                (g,) = torch.autograd.grad(loss.sum(), sa)
            with torch.no_grad():
                x_new = _shrink(sa.detach() - lr_k * g, xa0, beta)
                sk[active] = x_new + k / (k + 3.0) * (x_new - xk[active])
                xk[active] = x_new
                z_new = model(x_new)
                ok = cw_success(z_new, y[active], kappa, targeted)
                d1 = (x_new - xa0).flatten(1).abs().sum(1)
                en = (x_new - xa0).flatten(1).pow(2).sum(1) + beta * d1
                d = d1 if decision_rule == "L1" else en
                better = ok & (d < best_d[active])
                best_d[active[better]] = d[better]
                best_adv[active[better]] = x_new[better]
                if kappa > 0:
                    fb = cw_success(z_new, y[active], 0.0, targeted) & (d < fb_d[active])
                    fb_d[active[fb]] = d[fb]
                    fb_adv[active[fb]] = x_new[fb]
                succeeded[active[ok]] = True
                keep = ~ok if stop_on_success else torch.ones_like(ok)
                if abort_early and (k + 1) % window == 0:
                    mg_new = margin(z_new, y[active])
                    obj = const[active] * (-mg_new if targeted else mg_new).clamp_min(-kappa) + en
                    keep &= obj <= prev[active] * 0.9999  # still improving by > 0.01 %
                    prev[active] = obj
                active = active[keep]
                if active.numel() == 0:
                    break
        if bss > 1:
            upper = torch.where(succeeded, torch.minimum(upper, const), upper)
            lower = torch.where(succeeded, lower, torch.maximum(lower, const))
            const = torch.where(upper < MAX_C / 10, (lower + upper) / 2, const * 10)
    none = torch.isinf(best_d)
    best_adv[none] = fb_adv[none]
    return best_adv.clamp_(0.0, 1.0).detach()
