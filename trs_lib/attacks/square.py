"""Square Attack (Andriushchenko et al. 2020): gradient-free random search, L-inf and L2.

The attack never differentiates anything: it queries the model's output and keeps a random
change when it lowers the margin ``z_y - max_{j != y} z_j`` (the same on logits and on an
ensemble's log-probabilities). That makes it the backstop against gradient masking (a rounded
input, saturated logits, a non-differentiable preprocessing): if it finds much more than the
gradient attacks, their numbers are not to be trusted.

* L-inf: start from vertical stripes of ``+-eps``; at each query move one ``s x s`` window (per
  example, all channels) to ``+-eps`` around ``x``.
* L2: start from a grid of ``+-`` pseudo-Gaussian bumps scaled to norm ``eps``; at each query move
  the mass of one window into another and rescale to norm ``eps``.

The window side follows the paper's schedule ``p`` (fraction of pixels changed, from ``p_init``
halved at queries 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 of a 10,000-query budget,
rescaled to ``n_queries``). Only points not yet fooled are queried. Inputs of shape (B, C, H, W).
"""
from __future__ import annotations

import math

import torch

from ._common import (MAX_RESTARTS, MAX_STEPS, check_budget, check_inputs, check_int, check_norm,
                      check_real)

__all__ = ["square", "p_selection", "pseudo_gaussian"]


def p_selection(p_init: float, it: int, n_queries: int) -> float:
    """Fraction of the image a window covers at query ``it`` (Andriushchenko et al., Sec. 3)."""
    it = int(it / n_queries * 10000)
    for bound, div in ((8000, 512), (6000, 256), (4000, 128), (2000, 64), (1000, 32), (500, 16),
                       (200, 8), (50, 4), (10, 2)):
        if it > bound:
            return p_init / div
    return p_init


def _rectangles(a: int, b: int) -> torch.Tensor:
    d = torch.zeros(a, b)
    ca, cb = a // 2 + 1, b // 2 + 1
    i, j = ca - 1, cb - 1
    for k in range(max(ca, cb)):
        d[max(i, 0):min(i + 2 * k + 1, a), max(j, 0):min(j + 2 * k + 1, b)] += 1.0 / (k + 1) ** 2
        i, j = i - 1, j - 1
    return d / d.pow(2).sum().sqrt()


def pseudo_gaussian(s: int, flip: bool = False) -> torch.Tensor:
    """The L2 attack's ``s x s`` bump: two half-windows of opposite sign, unit L2 norm."""
    d = torch.zeros(s, s)
    d[:s // 2] = _rectangles(s // 2, s)
    d[s // 2:] = -_rectangles(s - s // 2, s)
    d = d / d.pow(2).sum().sqrt()
    return d.t() if flip else d


def _margin(model, x, y):
    with torch.no_grad():
        z = model(x)
    return z.gather(1, y[:, None]).squeeze(1) - z.scatter(1, y[:, None], float("-inf")).amax(1)


def square(model, x: torch.Tensor, y: torch.Tensor, *, eps: float, n_queries: int = 1000,
           norm: str = "Linf", p_init: float = 0.8, restarts: int = 1,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Square Attack examples for ``x`` (B, C, H, W) in [0, 1] with labels ``y`` (untargeted)."""
    check_inputs(x, y, "square")
    norm = check_norm(norm, attack="square")
    eps = check_budget(eps, norm, attack="square")
    n_queries = check_int("n_queries", n_queries, 1, MAX_STEPS, attack="square")
    p_init = check_real("p_init", p_init, 0.0, 1.0, lo_open=True, attack="square")
    restarts = check_int("restarts", restarts, 1, MAX_RESTARTS, attack="square")
    if x.dim() != 4:
        raise ValueError(f"square: x must be images of shape (B, C, H, W), got shape {tuple(x.shape)}")
    x = x.detach()
    if eps == 0.0:
        return x.clone()
    y = y.to(device=x.device, dtype=torch.long)
    gdev = generator.device if generator is not None else torch.device("cpu")
    out = x.clone()
    for _ in range(restarts):
        m = _margin(model, out, y)
        idx = (m > 0).nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        run = _linf if norm == "Linf" else _l2
        out[idx] = run(model, x[idx], y[idx], eps, n_queries, p_init, generator, gdev)
    return out.detach()


def _rand(shape, generator, gdev, dev):
    return torch.rand(shape, generator=generator, device=gdev).to(dev)


def _sign(shape, generator, gdev, dev, dtype):
    return (2.0 * (_rand(shape, generator, gdev, dev) < 0.5).to(dtype) - 1.0)


def _randint(lo, hi, generator, gdev) -> int:
    return int(torch.randint(lo, hi + 1, (1,), generator=generator, device=gdev).item())


def _linf(model, x, y, eps, n_queries, p_init, generator, gdev):
    b, c, h, w = x.shape
    dev, dt = x.device, x.dtype
    x_best = (x + eps * _sign((b, c, 1, w), generator, gdev, dev, dt)).clamp(0.0, 1.0)
    m_best = _margin(model, x_best, y)
    for it in range(n_queries - 1):
        act = (m_best > 0).nonzero().squeeze(1)
        if act.numel() == 0:
            break
        xa, xb = x[act], x_best[act]
        p = p_selection(p_init, it, n_queries)
        s = min(max(int(round(math.sqrt(p * h * w))), 1), h - 1)
        vh, vw = _randint(0, h - s, generator, gdev), _randint(0, w - s, generator, gdev)
        new = xb.clone()
        sign = _sign((act.numel(), c, 1, 1), generator, gdev, dev, dt)
        new[:, :, vh:vh + s, vw:vw + s] = (xa[:, :, vh:vh + s, vw:vw + s] + eps * sign)
        new = torch.min(torch.max(new, xa - eps), xa + eps).clamp(0.0, 1.0)
        m = _margin(model, new, y[act])
        better = m < m_best[act]
        x_best[act[better]] = new[better]
        m_best[act[better]] = m[better]
    return x_best


def _l2(model, x, y, eps, n_queries, p_init, generator, gdev):
    b, c, h, w = x.shape
    dev, dt = x.device, x.dtype
    view = (-1, 1, 1, 1)

    def norm_(d):
        return d.flatten(1).norm(dim=1).view(view)

    def flip():
        return bool(_rand((1,), generator, gdev, "cpu").item() > 0.5)

    delta = torch.zeros_like(x)
    s = max(h // 5, 1)
    sp = (h - s * 5) // 2 if h >= 5 else 0
    vh = sp
    for _ in range(h // s):
        vw = sp
        for _ in range(w // s):
            bump = pseudo_gaussian(s, flip()).to(dev, dt).view(1, 1, s, s)
            delta[:, :, vh:vh + s, vw:vw + s] += bump * _sign((b, c, 1, 1), generator, gdev, dev, dt)
            vw += s
        vh += s
    x_best = (x + eps * delta / norm_(delta).clamp_min(1e-12)).clamp(0.0, 1.0)
    m_best = _margin(model, x_best, y)
    for it in range(n_queries - 1):
        act = (m_best > 0).nonzero().squeeze(1)
        if act.numel() == 0:
            break
        xa = x[act]
        d = x_best[act] - xa
        p = p_selection(p_init, it, n_queries)
        s = max(int(round(math.sqrt(p * h * w))), 3)
        s = s + 1 if s % 2 == 0 else s
        s = min(s, h - 1 if (h - 1) % 2 else h - 2)
        s = max(s, 1)
        vh, vw = _randint(0, h - s, generator, gdev), _randint(0, w - s, generator, gdev)
        vh2, vw2 = _randint(0, h - s, generator, gdev), _randint(0, w - s, generator, gdev)
        mask = torch.zeros_like(xa)
        mask[:, :, vh:vh + s, vw:vw + s] = 1.0
        mask[:, :, vh2:vh2 + s, vw2:vw2 + s] = 1.0
        norm_img = norm_(d)
        norm_win = norm_(d * mask)
        win1 = d[:, :, vh:vh + s, vw:vw + s]
        old = win1 / (1e-12 + win1.pow(2).sum((-2, -1), keepdim=True).sqrt())
        new = pseudo_gaussian(s, flip()).to(dev, dt).view(1, 1, s, s) * \
            _sign((act.numel(), c, 1, 1), generator, gdev, dev, dt) + old
        room = ((eps ** 2 - norm_img ** 2).clamp_min(0.0) / c + norm_win ** 2).sqrt()
        new = new / (1e-12 + new.pow(2).sum((-2, -1), keepdim=True).sqrt()) * room
        d = d.clone()
        d[:, :, vh2:vh2 + s, vw2:vw2 + s] = 0.0
        d[:, :, vh:vh + s, vw:vw + s] = new
        cand = (xa + eps * d / norm_(d).clamp_min(1e-12)).clamp(0.0, 1.0)
        m = _margin(model, cand, y[act])
        better = m < m_best[act]
        x_best[act[better]] = cand[better]
        m_best[act[better]] = m[better]
    return x_best
