"""Definitions 1-8 (Sec. 2.1-2.2.1, App. A) and the TRS formula of Sec. 3.

The attack model, attack effectiveness, transferability, risks, lower/upper loss-gradient
similarity, smoothness, total variation and rho-conservative attacks as pure functions
of predictions, gradients or probability vectors.
"""
from __future__ import annotations

import math
from numbers import Real

import numpy as np
import torch

from ._common import _TINY, _check_prob, _flat
def definition1_attack(loss_fn, x: torch.Tensor, labels: torch.Tensor, epsilon: float, *,
                       targeted: bool = False, steps: int = 100, step_size: float | None = None,
                       starts: int = 1, clip: tuple[float, float] | None = None,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """The attack model of Definition 1 (Sec. 2.1) with an L2 ball, solved numerically.

    Untargeted: ``x + delta`` with ``delta in argmax_{||delta||_2 <= epsilon} l(x + delta, y)``;
    targeted: ``argmin_{||delta||_2 <= epsilon} l(x + delta, y_t)`` (``labels`` holds ``y`` or
    ``y_t``). ``loss_fn(x, labels)`` returns per-example losses (B,), example ``b`` depending on
    ``x[b]`` only. Solved by projected normalised-gradient steps on the ball (step size decaying
    from ``2 epsilon / 5`` by default), from ``delta = 0`` and ``starts - 1`` random points of the
    sphere, keeping per example the start with the best objective. It is the theory chapter's
    solver of Definition 1, used wherever a bound is compared with a measured transferability
    (the theorems are about this attack); the attacks of the paper's experiments live in
    ``trs_lib.attacks``. ``clip=(lo, hi)`` also keeps ``x + delta`` in a box (ball projection
    then clipping, which stays in the ball since ``x`` is in the box).
    For a binary linear model the exact maximiser is :func:`binary_linear_attack`.
    """
    if not (isinstance(epsilon, Real) and math.isfinite(epsilon) and epsilon >= 0):
        raise ValueError(f"epsilon must be a finite number >= 0, got {epsilon!r}")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    if not isinstance(starts, int) or starts < 1:
        raise ValueError(f"starts must be an integer >= 1, got {starts!r}")
    x = x.detach()
    if epsilon == 0 or steps == 0:
        return x.clone()
    sign = -1.0 if targeted else 1.0
    step0 = 0.4 * epsilon if step_size is None else float(step_size)
    shape = (-1,) + (1,) * (x.dim() - 1)

    def objective(xa):
        return sign * loss_fn(xa, labels)

    def project(delta):
        norm = _flat(delta).norm(dim=1).view(shape)
        delta = delta * torch.clamp(epsilon / norm.clamp_min(_TINY), max=1.0)
        if clip is not None:
            delta = (x + delta).clamp(*clip) - x
        return delta

    best_x, best_val = None, None
    for s in range(starts):
        if s == 0:
            delta = torch.zeros_like(x)
        else:
            d = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            delta = project(d / _flat(d).norm(dim=1).view(shape) * epsilon)
        for t in range(steps):
            with torch.enable_grad():
                xa = (x + delta).requires_grad_(True)
                (g,) = torch.autograd.grad(objective(xa).sum(), xa)
            gnorm = _flat(g).norm(dim=1).view(shape).clamp_min(_TINY)
            lr = step0 * (1 - t / steps) + 1e-3 * step0
            delta = project(delta + lr * g / gnorm)
        xa = (x + delta).detach()
        with torch.no_grad():
            val = objective(xa)
        if best_x is None:
            best_x, best_val = xa, val
        else:
            better = val > best_val
            best_x = torch.where(better.view(shape), xa, best_x)
            best_val = torch.maximum(val, best_val)
    return best_x

__all__ = [
    "definition1_attack",
    "attack_effectiveness",
    "is_effective",
    "transferability_indicator",
    "transferability",
    "risk",
    "empirical_risk",
    "gradient_cosines",
    "lower_gradient_similarity",
    "upper_gradient_similarity",
    "smoothness_difference_quotient",
    "total_variation",
    "total_variation_by_events",
    "pushforward",
    "is_rho_conservative",
    "frobenius_outer",
    "trs_similarity_literal",
    "trs_similarity_cosine",
]


def attack_effectiveness(pred_adv, y, target=None) -> float:
    """The smallest ``alpha`` for which the attack is ``(alpha, F)``-effective (Definition 2).

    Untargeted: ``Pr(F(A_U(x)) != y) >= 1 - alpha``, so ``alpha = Pr(F(A_U(x)) = y)``.
    Targeted: ``Pr(F(A_T(x)) = y_t) >= 1 - alpha``, so ``alpha = Pr(F(A_T(x)) != y_t)``.
    ``pred_adv`` are ``F``'s predictions on the attacked inputs; the probability is over all of
    ``x ~ P_x`` (Definition 2 does not condition on ``F(x) = y``), here the sample mean.
    """
    pred_adv, y = torch.as_tensor(pred_adv), torch.as_tensor(y)
    if target is None:
        return (pred_adv == y).double().mean().item()
    return (pred_adv != torch.as_tensor(target)).double().mean().item()


def is_effective(pred_adv, y, alpha: float, target=None) -> bool:
    """Definition 2: is the attack ``(alpha, F)``-effective on this sample?"""
    _check_prob("alpha", alpha)
    return attack_effectiveness(pred_adv, y, target) <= alpha


def transferability_indicator(y, pred_f, pred_g, pred_f_adv, pred_g_adv, target=None):
    """``T_r`` of Definition 3 per example (a bool tensor), for an attack built against ``F``.

    Untargeted: ``1[F(x) = G(x) = y and F(A(x)) != y and G(A(x)) != y]``.
    Targeted (``target`` = ``y_t``): ``1[F(x) = G(x) = y and F(A(x)) = G(A(x)) = y_t]``.
    """
    y, pred_f, pred_g = map(torch.as_tensor, (y, pred_f, pred_g))
    pred_f_adv, pred_g_adv = torch.as_tensor(pred_f_adv), torch.as_tensor(pred_g_adv)
    clean = (pred_f == y) & (pred_g == y)
    if target is None:
        return clean & (pred_f_adv != y) & (pred_g_adv != y)
    target = torch.as_tensor(target)
    return clean & (pred_f_adv == target) & (pred_g_adv == target)


def transferability(y, pred_f, pred_g, pred_f_adv, pred_g_adv, target=None) -> float:
    """``Pr(T_r = 1)`` (Definition 3): the mean of :func:`transferability_indicator`."""
    return transferability_indicator(y, pred_f, pred_g, pred_f_adv, pred_g_adv,
                                     target).double().mean().item()


def risk(pred, y) -> float:
    """A classifier's risk ``eta_F = Pr(F(x) != y)`` (Sec. 2), the sample mean."""
    return (torch.as_tensor(pred) != torch.as_tensor(y)).double().mean().item()


def empirical_risk(losses) -> float:
    """The paper's "empirical risk" ``xi_F = E_(x,y)[l_F(x, y)]`` (Sec. 2): the mean loss."""
    return torch.as_tensor(losses).double().mean().item()


def gradient_cosines(grad_f: torch.Tensor, grad_g: torch.Tensor) -> torch.Tensor:
    """``cos(grad l_F, grad l_G)`` per row (the ratio inside Definitions 4-5).

    Inputs (N, ...) are flattened per row; a zero gradient gives NaN (the ratio is undefined),
    which :func:`lower_gradient_similarity` and :func:`upper_gradient_similarity` skip.
    """
    a, b = _flat(grad_f), _flat(grad_g)
    denom = a.norm(dim=1) * b.norm(dim=1)
    cos = (a * b).sum(1) / denom
    return torch.where(denom > 0, cos, torch.full_like(cos, float("nan")))


def lower_gradient_similarity(grad_f: torch.Tensor, grad_g: torch.Tensor) -> float:
    """Definition 4 on a sample: ``inf`` of the gradient cosine over the rows given.

    Definition 4 takes the infimum over all ``x' in X, y in Y``; over a sample the minimum is
    an *upper* estimate of it (the true infimum can only be lower).
    """
    cos = gradient_cosines(grad_f, grad_g)
    cos = cos[~torch.isnan(cos)]
    if cos.numel() == 0:
        raise ValueError("no row with two non-zero gradients: the similarity is undefined")
    return cos.min().item()


def upper_gradient_similarity(grad_f: torch.Tensor, grad_g: torch.Tensor) -> float:
    """Definition 5 on a sample: ``sup`` of the gradient cosine over the rows given (a lower
    estimate of the supremum over all ``x' in X, y in Y``)."""
    cos = gradient_cosines(grad_f, grad_g)
    cos = cos[~torch.isnan(cos)]
    if cos.numel() == 0:
        raise ValueError("no row with two non-zero gradients: the similarity is undefined")
    return cos.max().item()


def smoothness_difference_quotient(grad_1: torch.Tensor, grad_2: torch.Tensor,
                                   x_1: torch.Tensor, x_2: torch.Tensor) -> float:
    """Definition 6 on a sample of pairs: ``max ||grad l(x1,y) - grad l(x2,y)|| / ||x1 - x2||``.

    Rows are pairs ``(x1, x2)`` with the same label. The smallest ``beta`` that makes a model
    beta-smooth is the supremum of this ratio over all pairs, so a sample gives a lower estimate
    of it; it never exceeds the largest input-Hessian norm on the segments joining the pairs.
    """
    num = (_flat(grad_1) - _flat(grad_2)).norm(dim=1)
    den = (_flat(x_1) - _flat(x_2)).norm(dim=1)
    if (den <= 0).any():
        raise ValueError("every pair needs x1 != x2")
    return (num / den).max().item()


def _as_list(p):
    if isinstance(p, torch.Tensor):
        return p.detach().double().reshape(-1).tolist()
    if isinstance(p, np.ndarray):
        return p.reshape(-1).tolist()
    return list(p)


def total_variation(p, q):
    """Definition 7 for distributions on a finite set: ``sup_C |P(C) - Q(C)| = 1/2 ||p - q||_1``.

    The paper says the TV distance "is just the l1 distance" between the probability vectors;
    it is half of it (see :func:`total_variation_by_events` and the errata). Works with floats
    or exact ``fractions.Fraction`` entries.
    """
    p, q = _as_list(p), _as_list(q)
    if len(p) != len(q):
        raise ValueError(f"p and q must have the same length, got {len(p)} and {len(q)}")
    return sum(abs(a - b) for a, b in zip(p, q)) / 2


def total_variation_by_events(p, q):
    """Definition 7 verbatim: the largest ``|P(C) - Q(C)|`` over all ``2^n`` events ``C``
    (n <= 20). Exact with ``Fraction`` entries."""
    p, q = _as_list(p), _as_list(q)
    n = len(p)
    if n != len(q) or n > 20:
        raise ValueError(f"need two vectors of the same length <= 20, got {n} and {len(q)}")
    best = 0
    for mask in range(1 << n):
        d = sum(p[i] - q[i] for i in range(n) if mask >> i & 1)
        best = max(best, abs(d))
    return best


def pushforward(p, mapping, size: int | None = None) -> list:
    """The distribution ``P_A(x)`` of ``A(x)`` for ``x ~ p`` on ``{0..n-1}`` and a deterministic
    attack ``A(i) = mapping[i]`` (App. A, used by Definition 8)."""
    p, mapping = _as_list(p), [int(m) for m in _as_list(mapping)]
    size = len(p) if size is None else size
    out = [0 * p[0] for _ in range(size)]
    for i, m in enumerate(mapping):
        if not 0 <= m < size:
            raise ValueError(f"mapping[{i}] = {m} is outside 0..{size - 1}")
        out[m] = out[m] + p[i]
    return out


def is_rho_conservative(p, p_attacked, rho) -> bool:
    """Definition 8: ``||P_x - P_A(x)||_TV <= rho``."""
    return total_variation(p, p_attacked) <= rho


def frobenius_outer(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``x (x) y`` of Sec. 3: the Frobenius norm of the outer product, ``||x y^T||_F``
    (equal to ``||x|| ||y||``), per row of (N, D) inputs."""
    return torch.linalg.matrix_norm(_flat(x).unsqueeze(2) * _flat(y).unsqueeze(1), ord="fro")


def trs_similarity_literal(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The similarity term of ``L_TRS`` (Sec. 3) as printed: ``(x (x) y) / sqrt((x (x) x)(y (x) y))``.

    Identically 1 for non-zero ``x, y`` (so its gradient is zero): the chapter proves it with
    sympy. What the paper means is :func:`trs_similarity_cosine` (see the errata).
    """
    return frobenius_outer(x, y) / torch.sqrt(frobenius_outer(x, x) * frobenius_outer(y, y))


def trs_similarity_cosine(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The cosine ``x . y / (||x|| ||y||)`` per row: what ``L_TRS`` evidently means and
    ``trs_lib.trs`` implements."""
    return gradient_cosines(x, y)

