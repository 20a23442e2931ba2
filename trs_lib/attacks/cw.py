"""Carlini-Wagner L2 attack (Carlini & Wagner 2017), Section 4.1 of the paper.

    min_w  ||x' - x||_2^2 + c * f(x'),     x' = (tanh(w) + 1) / 2   (box constraint [0, 1])
    f(x') = max( Z_y(x') - max_{j != y} Z_j(x'), -kappa )           (untargeted)
    f(x') = max( max_{j != t} Z_j(x') - Z_t(x'), -kappa )           (targeted at t)

``Z`` is the model output: logits, or the log-probabilities of an ensemble. The best other class
is ``max_{j != y} Z_j``, computed by filling the true class with ``-inf`` *before* the max. The
masked form ``max((1 - onehot) * Z)`` of older libraries returns 0 when every score is negative
(always true of log-probabilities), making ``f`` vanish and the attack useless on an ensemble;
:func:`margin` is the correct one and is unit-tested against that bug.

Optimiser: Adam (lr 0.01) written out per example, so examples can stop early one by one
(``abort_early``: an example stops when its loss has not decreased by 0.01 % over the last
``steps // 10`` iterations, the per-example form of CW's rule; ``stop_on_success``: an example
stops at its first success, which leaves the robust accuracy unchanged). ``binary_search_steps > 1``
runs CW's search over ``c`` (start at ``c``, bisect on success, x10 on failure). The output is,
per example, the smallest-L2 iterate that is misclassified with margin ``kappa`` (the paper's
presets: kappa 0.1, 1000 iterations, one value of c); failing that, the smallest-L2 iterate
misclassified at all (a margin below kappa still fools the model, and robust accuracy must count
it); failing that, ``x`` itself. Putting the
model in eval mode is the caller's job.
"""
from __future__ import annotations

import torch

from ._common import MAX_STEPS, check_bool, check_inputs, check_int, check_real

__all__ = ["cw", "margin", "cw_success"]

MAX_C = 1e10


def margin(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``Z_y - max_{j != y} Z_j`` per example (correct for any sign of the scores)."""
    z_y = z.gather(1, y[:, None]).squeeze(1)
    other = z.scatter(1, y[:, None], float("-inf")).amax(1)
    return z_y - other


def cw_success(z: torch.Tensor, y: torch.Tensor, kappa: float, targeted: bool) -> torch.Tensor:
    """CW's success test: misclassified (or at target) with margin at least ``kappa``."""
    m = margin(z, y)
    return m >= kappa if targeted else m <= -kappa


def cw(model, x: torch.Tensor, y: torch.Tensor, *, c: float = 1.0, kappa: float = 0.0,
       steps: int = 1000, lr: float = 0.01, binary_search_steps: int = 1, targeted: bool = False,
       abort_early: bool = True, stop_on_success: bool = False) -> torch.Tensor:
    """CW-L2 adversarial examples; ``y`` holds targets when ``targeted``.

    Args: ``c`` in (0, 1e10]; ``kappa`` (confidence) in [0, 1e3]; ``steps`` in [1, 1e5];
    ``lr`` in (0, 10]; ``binary_search_steps`` in [1, 100]. ``c`` is validated as positive: c = 0
    would return ``x`` (the L2 term alone is minimised at x). ``stop_on_success``: an example
    stops at its first successful iterate (same robust accuracy, since examples are optimised
    independently; larger distortion; much faster for evaluation).
    """
    check_inputs(x, y, "cw", "target" if targeted is True else "y")
    c = check_real("c", c, 0.0, MAX_C, lo_open=True, attack="cw")
    kappa = check_real("kappa", kappa, 0.0, 1e3, attack="cw")
    steps = check_int("steps", steps, 1, MAX_STEPS, attack="cw")
    lr = check_real("lr", lr, 0.0, 10.0, lo_open=True, attack="cw")
    bss = check_int("binary_search_steps", binary_search_steps, 1, 100, attack="cw")
    check_bool("targeted", targeted, attack="cw")
    check_bool("abort_early", abort_early, attack="cw")
    check_bool("stop_on_success", stop_on_success, attack="cw")
    x = x.detach()
    b, dev = x.shape[0], x.device
    y = y.to(device=dev, dtype=torch.long)
    w0 = torch.atanh((2 * x - 1).clamp(-1 + 1e-6, 1 - 1e-6))
    const = torch.full((b,), c, device=dev, dtype=x.dtype)
    lower = torch.zeros_like(const)
    upper = torch.full_like(const, MAX_C)
    best_l2 = torch.full((b,), float("inf"), device=dev, dtype=x.dtype)
    best_adv = x.clone()
    fb_l2, fb_adv = best_l2.clone(), x.clone()  # fallback: misclassified with a margin < kappa
    window = max(steps // 10, 1)
    b1, b2, adam_eps = 0.9, 0.999, 1e-8
    for _ in range(bss):
        w = w0.clone()
        m, v = torch.zeros_like(w), torch.zeros_like(w)
        prev = torch.full((b,), float("inf"), device=dev, dtype=x.dtype)
        active = torch.arange(b, device=dev)
        succeeded = torch.zeros(b, dtype=torch.bool, device=dev)
        for t in range(1, steps + 1):
            wa = w[active].requires_grad_(True)
            with torch.enable_grad():
                xa = (torch.tanh(wa) + 1) / 2
                z = model(xa)
                ya = y[active]
                mg = margin(z, ya)
                f = (-mg if targeted else mg).clamp_min(-kappa)
                l2 = (xa - x[active]).flatten(1).pow(2).sum(1)
                loss = l2 + const[active] * f
                (g,) = torch.autograd.grad(loss.sum(), wa)
            with torch.no_grad():
                ok = cw_success(z.detach(), ya, kappa, targeted)
                better = ok & (l2.detach() < best_l2[active])
                idx = active[better]
                best_l2[idx] = l2.detach()[better]
                best_adv[idx] = xa.detach()[better]
                if kappa > 0:
                    fb = cw_success(z.detach(), ya, 0.0, targeted) & (l2.detach() < fb_l2[active])
                    fb_l2[active[fb]] = l2.detach()[fb]
                    fb_adv[active[fb]] = xa.detach()[fb]
                succeeded[active[ok]] = True
                m[active] = b1 * m[active] + (1 - b1) * g
                v[active] = b2 * v[active] + (1 - b2) * g * g
                step = lr * (m[active] / (1 - b1 ** t)) / ((v[active] / (1 - b2 ** t)).sqrt() + adam_eps)
                w[active] = wa.detach() - step
                keep = ~ok if stop_on_success else torch.ones_like(ok)
                if abort_early and t % window == 0:
                    lv = loss.detach()
                    keep &= lv <= prev[active] * 0.9999  # still improving by > 0.01 %
                    prev[active] = lv
                active = active[keep]
                if active.numel() == 0:
                    break
        if bss > 1:  # CW's search over c, per example
            upper = torch.where(succeeded, torch.minimum(upper, const), upper)
            lower = torch.where(succeeded, lower, torch.maximum(lower, const))
            const = torch.where(upper < MAX_C / 10, (lower + upper) / 2, const * 10)
    none = torch.isinf(best_l2)
    best_adv[none] = fb_adv[none]
    return best_adv.clamp_(0.0, 1.0).detach()
