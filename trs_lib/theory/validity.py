"""Searches for violations of Theorems 1 and 2 where the bounds are informative.

A bound can only be *refuted* where it says something: a lower bound strictly between 0 and 1, an
upper bound strictly below 1, and a true transferability that is not already 0 or 1 (a lower
bound below 1 always holds where everything transfers, an upper bound at least 0 where nothing
does). The searches below draw exact distributions -- finite supports with rational
probabilities, models whose every term has a closed form or an estimate that errs on the safe
side -- keep the informative cases and count violations. Each returns a DataFrame, one row per
case; :func:`summarize` gives cases, informative cases, violations and the smallest slack.

Families:

* :func:`binary_logistic_terms` -- two logistic-regression models in the plane; every term of
  Theorems 1 and 2 is a closed-form function of the points' logit margins (the attack of
  Definition 1 moves each point by ``epsilon`` along ``F``'s weight direction, the gradient
  cosine is ``cos theta`` everywhere, ``beta = s^2 / 4``). Used for Theorem 1 and Theorem B.
* :func:`junction_case` -- two 3-class linear softmax models whose decision boundaries meet near
  a point of the support (all three probabilities close to 1/3, so every loss is close to
  ``log 3``), plus confidently classified points. Used for Theorem 2 and Theorem C, whose proofs
  do not need the attack to be optimal.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from scipy import special

from .bounds import (lower_bound_targeted, lower_bound_untargeted, upper_bound_targeted,
                     upper_bound_untargeted)
from .estimators import bound_terms, bounds_from_terms, estimate_gradient_similarity, label_losses
from .exact import linear_softmax_model, linear_softmax_smoothness
from .exact import binary_linear_model

__all__ = [
    "binary_logistic_terms", "binary_logistic_points", "search_theorem1",
    "circle_attack", "junction_case", "search_theorem2", "summarize",
    "targeted_lower_bound_gap",
]


def _softplus(t):
    return np.logaddexp(0.0, t)


def _sigmoid(t):
    return special.expit(np.asarray(t, dtype=float))


def _aux(mu_f, mu_g, af, ag, s_f, s_g, shift, targeted):
    """The auxiliary functions of App. B per point (``aux_untargeted`` / ``aux_targeted``)."""
    if targeted:   # Theorem B: target 1 - y; min over both labels of the attacked losses
        return ((_softplus(-np.abs(af)) - _softplus(mu_f) + shift) / (s_f * _sigmoid(mu_f)),
                (_softplus(-np.abs(ag)) - _softplus(mu_g) - shift) / (s_g * _sigmoid(mu_g)))
    # Theorem 1: the min over wrong labels is the other label's loss at the attacked point
    return ((_softplus(af) - _softplus(-mu_f) - shift) / (s_f * _sigmoid(-mu_f)),
            (_softplus(ag) - _softplus(-mu_g) + shift) / (s_g * _sigmoid(-mu_g)))


def binary_logistic_terms(mu_f, mu_g, weights, s_f: float, s_g: float, cos_theta: float,
                          epsilon: float, targeted: bool = False) -> dict:
    """Every term of Theorems 1-2 for two binary logistic models, from the logit margins.

    A point of the support has label ``y``; ``mu_f = s_f (u_F . x - o_F)`` signed towards ``y``
    (positive: ``F`` is right) and likewise ``mu_g``; ``weights`` are the probabilities.
    ``l_F(x, y) = softplus(-mu_f)``, ``l_F(x, 1 - y) = softplus(mu_f)``, gradient norms
    ``s_f sigmoid(-+mu_f)``. The exact Definition-1 attack on ``F`` (untargeted, and targeted
    towards ``1 - y``: the same point, :func:`binary_linear_attack`) lowers ``mu_f`` by
    ``s_f epsilon`` and ``mu_g`` by ``s_g epsilon cos_theta``. Both loss gradients are multiples
    of the weight directions, so ``S_lower = S_upper = cos_theta`` over all of the plane;
    ``beta = max(s_f, s_g)^2 / 4`` (:func:`linear_softmax_smoothness`); ``B`` is the largest
    gradient norm over the support and both labels. Returns the terms (the keys of
    :func:`bound_terms`) plus ``lower`` (Eq. B.38 or B.29, guarded) and ``upper`` (C.21 / C.1).
    """
    mu_f, mu_g, w = (np.asarray(v, dtype=float) for v in (mu_f, mu_g, weights))
    if not (mu_f.shape == mu_g.shape == w.shape and w.ndim == 1):
        raise ValueError(f"mu_f, mu_g, weights must be 1-d of one length, got shapes "
                         f"{mu_f.shape}, {mu_g.shape}, {w.shape}")
    if np.any(w <= 0) or not math.isclose(w.sum(), 1.0, abs_tol=1e-9):
        raise ValueError(f"weights must be positive and sum to 1, got sum {w.sum()!r}")
    beta = max(s_f, s_g) ** 2 / 4
    af, ag = mu_f - s_f * epsilon, mu_g - s_g * epsilon * cos_theta

    def prob(mask):
        return float(min(1.0, w[mask].sum()))

    alpha, eta_f, eta_g = prob(af > 0), prob(mu_f <= 0), prob(mu_g <= 0)
    tr = prob((mu_f > 0) & (mu_g > 0) & (af < 0) & (ag < 0))
    shift = beta * epsilon ** 2 / 2
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero gradient gives +-inf
        f, g = _aux(mu_f, mu_g, af, ag, s_f, s_g, shift, targeted)
    if targeted:
        c_f, c_g = float(f.max()), float(g.min())
    else:
        c_f, c_g = float(f.min()), float(g.max())
    xi_f, xi_g = float((w * _softplus(-mu_f)).sum()), float((w * _softplus(-mu_g)).sum())
    l_min = float(min(_softplus(mu_f).min(), _softplus(mu_g).min()))
    B = float(max(s_f * _sigmoid(np.abs(mu_f)).max(), s_g * _sigmoid(np.abs(mu_g)).max()))
    S = float(np.clip(cos_theta, -1.0, 1.0))
    args = (alpha, eta_f, eta_g, epsilon, c_f, c_g, S)
    lower = lower_bound_targeted(*args) if targeted else lower_bound_untargeted(*args)
    upper_fn = upper_bound_targeted if targeted else upper_bound_untargeted
    return {"targeted": targeted, "alpha": alpha, "eta_F": eta_f, "eta_G": eta_g,
            "xi_F": xi_f, "xi_G": xi_g, "c_F": c_f, "c_G": c_g, "l_min": l_min, "B": B,
            "beta": beta, "S_lower": S, "S_upper": S, "epsilon": float(epsilon),
            "transferability": tr, "lower": lower,
            "upper": upper_fn(xi_f, xi_g, l_min, epsilon, B, beta, S)}


def binary_logistic_points(mu_f, mu_g, s_f: float, s_g: float, theta: float):
    """Points of the plane with label 1 that have the given margins for ``F`` (normal ``(1, 0)``,
    boundary through 0) and ``G`` (normal at angle ``theta`` radians, through 0), and the two
    models: ``(x, y, model_f, model_g)``, for cross-checking :func:`binary_logistic_terms`
    against :func:`bound_terms`."""
    if not 0 < theta < math.pi:
        raise ValueError(f"theta must be in (0, pi) so that the margins fix the point, got {theta}")
    A = torch.tensor([[1.0, 0.0], [math.cos(theta), math.sin(theta)]], dtype=torch.float64)
    d = torch.stack([torch.as_tensor(mu_f, dtype=torch.float64) / s_f,
                     torch.as_tensor(mu_g, dtype=torch.float64) / s_g], 1)
    x = torch.linalg.solve(A, d.T).T
    y = torch.ones(len(x), dtype=torch.long)
    return (x, y, binary_linear_model([1.0, 0.0], s_f),
            binary_linear_model([math.cos(theta), math.sin(theta)], s_g))


def _is_informative_lower(bound, tr):
    return 0 < bound < 1 and 0 < tr < 1


def _is_informative_upper(bound, tr):
    return bound < 1 and 0 < tr < 1


def search_theorem1(n_cases: int = 2000, seed: int = 0, targeted: bool = False) -> pd.DataFrame:
    """Theorem 1 (Eq. B.38) or Theorem B (``targeted``, Eq. B.29) on random binary-logistic
    distributions built to make the lower bound informative.

    Each case: an angle ``theta`` between the normals (0.5-8 degrees; up to 90 for Theorem B),
    scales ``s_F, s_G`` (0.01-3; up to 30 for Theorem B), ``epsilon`` (0.2-2), 2-6 support points
    with integer weights (exact rational probabilities). The untargeted bound is positive only if
    ``c_F > c_G`` (chapter 03), i.e. every point is farther from ``F``'s boundary than from
    ``G``'s by about ``epsilon (1 - cos theta) / 2``: distances to ``F``'s boundary are drawn in
    ``[D, D + 0.3 epsilon]``, to ``G``'s below ``D - epsilon (1 - cos theta) / 2``, and the first
    point is on ``G``'s wrong side (no transfer there, so the true transferability is below 1).
    One row per case with the bound, the exact transferability, ``informative``, ``violation``
    and ``slack = transferability - bound``; for Theorem B also ``targeted_gap``
    (:func:`targeted_lower_bound_gap`, never negative if the proposition there is right).
    """
    rng = np.random.default_rng(seed)
    rows = []
    for case in range(n_cases):
        theta = math.radians(rng.uniform(0.5, 90.0 if targeted else 8.0))
        cos = math.cos(theta)
        s_f, s_g = 10 ** rng.uniform(-2, 1.5 if targeted else 0.5, 2)
        eps = rng.uniform(0.2, 2.0)
        k = int(rng.integers(2, 7))
        D = rng.uniform(0.5, 1.0) * eps
        d_f = D + rng.uniform(0, 0.3, k) * eps
        top = D - eps * (1 - cos) / 2
        d_g = rng.uniform(0.0, 1.0, k) * top
        d_g[0] = -rng.uniform(0.01, 1.0) * abs(top)
        w = rng.integers(1, 10, k).astype(float)
        w[0] = rng.integers(1, 3)
        t = binary_logistic_terms(s_f * d_f, s_g * d_g, w / w.sum(), s_f, s_g, cos, eps,
                                  targeted)
        tr, bound = t["transferability"], t["lower"]
        inf = _is_informative_lower(bound, tr)
        rows.append({"case": case, "theorem": "B (targeted)" if targeted else "1 (appendix)",
                     "theta": theta, "s_F": s_f, "s_G": s_g, "epsilon": eps, "points": k,
                     "c_F": t["c_F"], "c_G": t["c_G"], "S": t["S_lower"], "alpha": t["alpha"],
                     "transferability": tr, "bound": bound, "informative": inf,
                     "violation": bool(bound > tr + 1e-12), "slack": tr - bound,
                     "targeted_gap": (targeted_lower_bound_gap(t) if targeted else np.nan)})
    return pd.DataFrame(rows)


def targeted_lower_bound_gap(terms: dict) -> float:
    """``epsilon sqrt(2 - 2 S_lower) - (c_G - c_F)`` for the targeted terms (Theorem B).

    For beta-smooth models, wherever the targeted attack hits ``y_t`` on ``F`` at some point of
    the support, ``c_F >= delta . grad l_F / ||grad l_F||`` and ``c_G <= delta . grad l_G /
    ||grad l_G||`` at that point (both by the beta-smoothness Taylor bound), so
    ``c_G - c_F <= ||delta|| ||n_G - n_F|| <= epsilon sqrt(2 - 2 S_lower)``: the gap is
    ``>= 0``. (Where ``alpha = 1`` the premise fails and the gap is NaN; the bound is then
    ``-(eta_F + eta_G) - 2 epsilon / (c_G + epsilon) < 0`` directly.) Substituted into Eq. B.29 (chapter 03, sympy), this makes the targeted lower bound
    ``<= -(eta_F + eta_G) - 2 epsilon alpha / (c_G + epsilon) <= 0``: never informative.
    """
    if terms["alpha"] >= 1:
        return float("nan")
    return terms["epsilon"] * math.sqrt(max(0.0, 2 - 2 * terms["S_lower"])) - (
        terms["c_G"] - terms["c_F"])


def circle_attack(model, x: torch.Tensor, labels: torch.Tensor, epsilon: float, *,
                  targeted: bool = False, n_angles: int = 720) -> torch.Tensor:
    """Definition 1 for 2-d inputs and a loss convex in ``x`` (linear softmax models): the
    extremum over the disc of a convex loss's maximum lies on the circle, so the best of
    ``n_angles`` points of the circle (a grid maximiser, within ``(pi / n_angles)^2``
    relative) for the untargeted attack; for the targeted one the best point of the circle
    and the centre's neighbourhood is not guaranteed, and Theorems 2 and C do not need it
    (their proofs hold for any ``||delta|| <= epsilon``)."""
    if x.dim() != 2 or x.shape[1] != 2:
        raise ValueError(f"circle_attack needs inputs of shape (N, 2), got {tuple(x.shape)}")
    ang = torch.arange(n_angles, dtype=x.dtype) * (2 * math.pi / n_angles)
    dirs = torch.stack([ang.cos(), ang.sin()], 1)                       # (A, 2)
    pts = x.unsqueeze(1) + epsilon * dirs.unsqueeze(0)                  # (N, A, 2)
    losses = label_losses(model, pts.reshape(-1, 2)).reshape(len(x), n_angles, -1)
    val = losses.gather(2, labels.view(-1, 1, 1).expand(-1, n_angles, 1)).squeeze(2)
    best = (val.argmin(1) if targeted else val.argmax(1))
    return pts[torch.arange(len(x)), best].detach()


def _junction_weights(rng, s, tilt):
    base = np.radians([0.0, 120.0, 240.0]) + tilt + rng.uniform(-0.15, 0.15, 3)
    return s * np.stack([np.cos(base), np.sin(base)], 1)


def junction_case(rng: np.random.Generator, targeted: bool = False, grid=None) -> dict:
    """One Theorem 2 (or Theorem C) case: two 3-class linear softmax models whose decision
    boundaries meet near the origin, a support of one point near the junction (probability
    ``q`` up to 0.35) and 2-4 confidently classified points; labels are ``F``'s predictions.

    The attack is :func:`circle_attack` against ``F``; ``beta`` the closed form; ``B``, ``l_min``
    and the risks exact over the support; ``S_upper`` the largest gradient cosine over ``grid``
    (points of the plane out to radius ``10 / s_F``) and all labels, a *lower* estimate of Definition 5's
    supremum, so the computed bound is at most the true one: a case without violation stays one
    (``S_lower``, the smallest cosine there, is an upper estimate of Definition 4's infimum).
    Returns the terms, the bounds and the informative flag.
    """
    s_f = 10 ** rng.uniform(-0.5, 1.0)
    s_g = s_f * 10 ** rng.uniform(-0.2, 0.2)
    tilt = rng.uniform(0, 2 * np.pi)
    eps = rng.uniform(0.02, 0.15) / s_f
    r = rng.uniform(0.02, 0.3) * eps
    model_f = linear_softmax_model(_junction_weights(rng, s_f, tilt))
    model_g = linear_softmax_model(_junction_weights(rng, s_g, tilt + rng.uniform(-0.1, 0.1)),
                                   rng.normal(0, 0.3, 3) * s_g * r)
    junction = r * np.array([math.cos(tilt + rng.uniform(-1, 1)), math.sin(tilt + rng.uniform(-1, 1))])
    m = int(rng.integers(2, 5))
    far_ang = tilt + np.radians(120.0) * rng.integers(0, 3, m) + rng.uniform(-0.3, 0.3, m)
    far = (rng.uniform(4, 12, m) / s_f)[:, None] * np.stack([np.cos(far_ang), np.sin(far_ang)], 1)
    x = torch.tensor(np.vstack([junction, far]), dtype=torch.float64)
    q = rng.uniform(0.02, 0.35)
    counts = np.concatenate([[round(q * 100)], rng.multinomial(100 - round(q * 100), np.ones(m) / m)])
    keep = counts > 0
    x = x[torch.as_tensor(keep)].repeat_interleave(torch.as_tensor(counts[keep]), 0)
    with torch.no_grad():
        y = model_f(x).argmax(-1)
    target = (y + 1 + int(rng.integers(0, 2))) % 3 if targeted else None
    x_adv = circle_attack(model_f, x, target if targeted else y, eps, targeted=targeted)
    if grid is None:  # out to logit differences of about 20: beyond, p - e_y rounds to 0 and
        # autograd's gradients are rounding noise
        rad = torch.logspace(-2, 1, 12, dtype=torch.float64) / s_f
        ang = torch.arange(36, dtype=torch.float64) * (2 * math.pi / 36)
        grid = (rad[:, None, None] * torch.stack([ang.cos(), ang.sin()], 1)[None]).reshape(-1, 2)
    sim = estimate_gradient_similarity(model_f, model_g, torch.cat([grid, x]))
    beta = max(linear_softmax_smoothness(model_f), linear_softmax_smoothness(model_g))
    terms = bound_terms(model_f, model_g, x, y, x_adv, eps, beta=beta,
                        S_lower=max(-1.0, sim["lower"]), S_upper=min(1.0, sim["upper"]),
                        target=target)
    bounds = bounds_from_terms(terms)
    return {"terms": terms, "bounds": bounds,
            "informative": _is_informative_upper(bounds["upper"], terms["transferability"])}


def search_theorem2(n_cases: int = 200, seed: int = 0, targeted: bool = False) -> pd.DataFrame:
    """Theorem 2 (Eq. C.21) or Theorem C (``targeted``, Eq. C.1) on :func:`junction_case`
    distributions; one row per case (columns as :func:`search_theorem1`)."""
    rng = np.random.default_rng(seed)
    rows = []
    for case in range(n_cases):
        res = junction_case(rng, targeted)
        t, b = res["terms"], res["bounds"]
        tr, bound = t["transferability"], b["upper"]
        rows.append({"case": case, "theorem": "C (targeted)" if targeted else "2",
                     "epsilon": t["epsilon"], "beta": t["beta"], "B": t["B"], "l_min": t["l_min"],
                     "S": t["S_upper"], "alpha": t["alpha"], "transferability": tr,
                     "bound": bound, "informative": res["informative"],
                     "violation": bool(tr > bound + 1e-12), "slack": bound - tr,
                     "lower": b["lower"],
                     "targeted_gap": targeted_lower_bound_gap(t) if targeted else np.nan})
    return pd.DataFrame(rows)


def summarize(df: pd.DataFrame) -> dict:
    """Cases, informative cases, violations among them, and the smallest slack (bound to truth)
    over the informative cases (NaN when there are none)."""
    inf = df[df["informative"]]
    return {"cases": len(df), "informative": int(len(inf)),
            "violations": int(inf["violation"].sum()),
            "min_slack": float(inf["slack"].min()) if len(inf) else float("nan")}
