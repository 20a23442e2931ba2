"""Closed forms for linear softmax models, where every term of the theorems is exact, and the
toy data of the theory chapter.
"""
from __future__ import annotations

import math

import torch
from .estimators import bound_terms, bounds_from_terms

__all__ = [
    "linear_softmax_input_hessian",
    "linear_softmax_smoothness",
    "linear_softmax_gradient_bound",
    "binary_linear_model",
    "binary_linear_attack",
    "toy_mixture",
    "linear_softmax_model",
    "main_text_counterexample",
]


def _weight(model_or_w):
    w = model_or_w.weight if isinstance(model_or_w, torch.nn.Module) else model_or_w
    return w.detach()


def linear_softmax_input_hessian(W: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Input Hessian of the cross-entropy of ``softmax(W x + b)``, (N, D, D):
    ``W^T (diag p - p p^T) W`` with ``p = softmax(W x + b)``, the same for every label."""
    p = torch.softmax(x @ W.T + b, dim=-1)
    cov = torch.diag_embed(p) - p.unsqueeze(2) * p.unsqueeze(1)
    return W.T @ cov @ W


def linear_softmax_smoothness(W) -> float:
    """A valid ``beta`` of Definition 6 for the cross-entropy of a linear softmax model:
    ``max_{j,k} ||w_j - w_k||^2 / 4``.

    Proof: ``v^T W^T (diag p - p p^T) W v`` is the variance of ``u_k = w_k . v`` under ``p``, at
    most ``(max u - min u)^2 / 4 <= max_{j,k} ((w_j - w_k) . v)^2 / 4``. For two classes it is
    the exact supremum (reached as ``p -> (1/2, 1/2)``).
    """
    W = _weight(W).double()
    d = torch.cdist(W, W)
    return (d.max() ** 2 / 4).item()


def linear_softmax_gradient_bound(W) -> float:
    """A valid gradient bound ``B`` for the cross-entropy of a linear softmax model over all of
    ``X``: ``||grad_x l(x, y)|| = ||sum_k p_k (w_k - w_y)|| <= max_{j,k} ||w_j - w_k||`` (the
    supremum for two classes)."""
    W = _weight(W).double()
    return torch.cdist(W, W).max().item()


def binary_linear_model(direction, scale: float, offset: float = 0.0,
                        dtype=torch.float64) -> torch.nn.Linear:
    """A two-class linear model with logit margin ``z_1 - z_0 = scale (u . x - offset)``,
    ``u = direction / ||direction||``: decision boundary ``u . x = offset``, inverse temperature
    ``scale``. Its cross-entropy is ``softplus(-+scale (u . x - offset))``, with
    ``beta = scale^2 / 4`` (:func:`linear_softmax_smoothness`) and gradient bound ``scale``."""
    u = torch.as_tensor(direction, dtype=dtype)
    u = u / u.norm()
    model = torch.nn.Linear(len(u), 2).to(dtype)
    with torch.no_grad():
        model.weight.copy_(torch.stack([-scale * u / 2, scale * u / 2]))
        model.bias.copy_(torch.tensor([scale * offset / 2, -scale * offset / 2], dtype=dtype))
    return model


def binary_linear_attack(model, x: torch.Tensor, y: torch.Tensor, epsilon: float) -> torch.Tensor:
    """The exact Definition-1 attack on a two-class linear model (``model.weight`` (2, D)).

    ``l(x + delta, y) = softplus(-(w_y - w_{1-y}) . (x + delta) - (b_y - b_{1-y}))`` is increasing
    in ``-(w_y - w_{1-y}) . delta``, so the maximiser over the L2 ball is
    ``delta = epsilon (w_{1-y} - w_y) / ||w_{1-y} - w_y||``; the targeted attack towards
    ``y_t = 1 - y`` minimises ``l(x + delta, y_t)`` with the same ``delta``.
    """
    W = _weight(model)
    if W.shape[0] != 2:
        raise ValueError(f"binary_linear_attack needs a two-class linear model, got {W.shape[0]} classes")
    u = W[1] - W[0]
    u = u / u.norm()
    direction = torch.where((y == 1).unsqueeze(1), -u, u)  # towards the other class
    return (x + epsilon * direction).detach()


def toy_mixture(n: int, means, std: float = 1.0, *, generator: torch.Generator | None = None,
                dtype=torch.float64):
    """``n`` points per class from isotropic Gaussians at ``means`` (C, D): ``(x (nC, D), y)``.

    The theory chapter uses the *empirical* distribution of such a sample as ``P_x``, so every
    probability, minimum and mean of the theorems is an exact finite computation.
    """
    means = torch.as_tensor(means, dtype=dtype)
    xs, ys = [], []
    for k, mu in enumerate(means):
        xs.append(mu + std * torch.randn(n, means.shape[1], generator=generator, dtype=dtype))
        ys.append(torch.full((n,), k, dtype=torch.long))
    return torch.cat(xs), torch.cat(ys)


def linear_softmax_model(W, b=None, dtype=torch.float64) -> torch.nn.Linear:
    """The linear softmax model ``x -> W x + b`` (logits) as an ``nn.Linear``; ``b`` defaults to 0."""
    W = torch.as_tensor(W, dtype=dtype)
    if W.dim() != 2:
        raise ValueError(f"W must be a (classes, inputs) matrix, got shape {tuple(W.shape)}")
    b = torch.zeros(W.shape[0], dtype=dtype) if b is None else torch.as_tensor(b, dtype=dtype)
    if b.shape != (W.shape[0],):
        raise ValueError(f"b must have shape ({W.shape[0]},), got {tuple(b.shape)}")
    model = torch.nn.Linear(W.shape[1], W.shape[0]).to(dtype)
    with torch.no_grad():
        model.weight.copy_(W)
        model.bias.copy_(b)
    return model


def main_text_counterexample(a: float = math.sqrt(0.02), margin_f: float | None = None,
                             c: float = 0.01, d: float = 0.1, e: float = 0.03,
                             margin_g: float = 0.012, epsilon: float = 1.0) -> dict:
    """A distribution on which Theorem 1 *as printed in Sec. 2.2.2* (with the upper similarity
    ``S_upper``) is false, while the appendix form (Eq. B.38, ``S_lower``) holds.

    Two 3-class linear softmax models in the plane, ``P_x`` = the single point ``x0 = (0.99, 0)``
    with label 0, ``epsilon = 1``:

    * ``F``: ``w_0 = 0, w_1 = w_2 = -a e_1``, biases so that ``z_1 - z_0 = -margin_f`` at ``x0``.
      ``l_F(x, 0)`` depends on ``x_1`` only and decreases in it, so the exact Definition-1
      maximiser is ``x^A = x0 - epsilon e_1`` (closed form, no solver). ``F``'s input gradients
      are ``-(p_1 + p_2) a e_1`` (label 0) and ``a p_0 e_1`` (labels 1, 2): always along ``e_1``.
    * ``G``: ``w_0 = 0, w_1 = (-c, d), w_2 = (-c, -e)`` with ``c, d, e > 0``, the margin of
      class 0 over class 1 at ``x0`` is ``margin_g > c`` (so the attack, which raises ``z_1 - z_0``
      by ``c epsilon``, does not flip ``G``: true transferability 0).
    * Over the whole plane ``(p_0, p_1, p_2)`` of ``G`` ranges over the open simplex, and the
      cosine of the two models' loss gradients is, for label 0, ``c (p_1 + p_2) / ||.||``, equal
      to 1 where ``p_1 d = p_2 e``; for labels 1, 2 it is ``p_0 c / ||.|| > 0``, tending to 0 as
      ``p_0 -> 0``. Hence exactly ``S_upper = 1`` (Definition 5, attained) and ``S_lower = 0``
      (Definition 4, an infimum).
    * ``beta = max_{j,k} ||w_j - w_k||^2 / 4`` over both models
      (:func:`linear_softmax_smoothness`, a valid smoothness constant): ``a^2 / 4 = 0.005``.

    Returns the models, ``x, y, x_adv``, the exact ``terms`` (:func:`bound_terms` on the one-point
    support, with the exact similarities) and ``bounds`` (:func:`bounds_from_terms`):
    ``bounds["lower_main_text"]`` is about 0.95 while ``terms["transferability"]`` is 0.
    """

    margin_f = 0.98 * a if margin_f is None else margin_f
    if not (a > 0 and c > 0 and d > 0 and e > 0):
        raise ValueError(f"a, c, d, e must be > 0, got {(a, c, d, e)}")
    if not 0 < margin_f < a * epsilon:
        raise ValueError(f"margin_f must be in (0, a epsilon) = (0, {a * epsilon}) so that the "
                         f"attack flips F, got {margin_f}")
    if not margin_g > c * epsilon:
        raise ValueError(f"margin_g must exceed c epsilon = {c * epsilon} so that G is not "
                         f"flipped, got {margin_g}")
    x = torch.tensor([[0.99, 0.0]], dtype=torch.float64)
    y = torch.tensor([0])
    model_f = linear_softmax_model([[0.0, 0.0], [-a, 0.0], [-a, 0.0]],
                                   [0.0, 0.99 * a - margin_f, 0.99 * a - margin_f - 3.0])
    model_g = linear_softmax_model([[0.0, 0.0], [-c, d], [-c, -e]],
                                   [0.0, 0.99 * c - margin_g, 0.99 * c - margin_g - 3.0])
    x_adv = x - torch.tensor([[epsilon, 0.0]], dtype=torch.float64)
    beta = max(linear_softmax_smoothness(model_f), linear_softmax_smoothness(model_g))
    terms = bound_terms(model_f, model_g, x, y, x_adv, epsilon, beta=beta,
                        S_lower=0.0, S_upper=1.0)
    return {"model_f": model_f, "model_g": model_g, "x": x, "y": y, "x_adv": x_adv,
            "epsilon": epsilon, "beta": beta, "terms": terms, "bounds": bounds_from_terms(terms)}
