"""Closed forms for linear softmax models, where every term of the theorems is exact, and the
toy data of the theory chapter.
"""
from __future__ import annotations

import torch

__all__ = [
    "linear_softmax_input_hessian",
    "linear_softmax_smoothness",
    "linear_softmax_gradient_bound",
    "binary_linear_model",
    "binary_linear_attack",
    "toy_mixture",
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
