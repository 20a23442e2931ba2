"""Lemmas 3, 5, 6, Theorem 4 (App. A-C) and the bounds of Theorems 1 and 2 (Sec. 2.2.2-2.2.3,
App. B-C), untargeted and targeted, as functions of their terms.

Where the paper's statement and its proof disagree, the functions follow the proof;
``book/errata.md`` lists each case with the check that shows it.
"""
from __future__ import annotations

import numpy as np
import torch

from ._common import (_TINY, _as_float, _check_positive, _check_prob, _check_similarity,
                      _is_symbolic, _sqrt)

__all__ = [
    "lemma3_bound",
    "theorem4_alpha",
    "lemma5",
    "lemma6",
    "aux_untargeted",
    "aux_targeted",
    "c_terms",
    "l_min_untargeted",
    "l_min_targeted",
    "lower_bound_untargeted",
    "lower_bound_untargeted_main_text",
    "lower_bound_targeted",
    "upper_bound_untargeted",
    "upper_bound_targeted",
    "lower_bound_denominator",
    "upper_bound_denominator",
]


def lemma3_bound(risk_bound, rho):
    """Lemma 3 (App. A): ``Pr(f(A(x)) != g(A(x))) <= 2 epsilon + rho`` for classifiers of risk at
    most ``epsilon`` (here ``risk_bound``) and a rho-conservative attack."""
    return 2 * risk_bound + rho


def theorem4_alpha(delta, risk_bound, rho, form: str = "paper"):
    """Theorem 4 (App. A): an attack ``(delta, F)``-effective is ``(alpha, G)``-effective with

    * ``form="paper"``: ``alpha = delta + 4 epsilon + rho`` (the statement; its proof uses
      "effective" as "flips F's prediction", ``Pr(f(x) = f(A(x))) <= delta``);
    * ``form="definition2"``: ``alpha = delta + 2 epsilon + rho``, which holds with Definition 2's
      effectiveness (``Pr(F(A(x)) = y) <= delta``) by one union bound and Lemma 3, for any
      number of classes (see the errata).
    """
    if form == "paper":
        return delta + 4 * risk_bound + rho
    if form == "definition2":
        return delta + 2 * risk_bound + rho
    raise ValueError(f"unknown form {form!r}; valid forms: ['paper', 'definition2']")


def _unit_check(name, v, tol=1e-6):
    n = v.norm(dim=-1)
    if not torch.allclose(n, torch.ones_like(n), atol=tol):
        raise ValueError(f"{name} must hold unit vectors (norms in [{n.min().item():.6g}, "
                         f"{n.max().item():.6g}])")


def lemma5(delta: torch.Tensor, x: torch.Tensor, y: torch.Tensor, c, epsilon, strict=True):
    """Lemma 5 (App. B) as ``(premise, conclusion)``, bool tensors over the leading dimensions.

    For unit ``x, y`` with ``cos<x, y> = m`` and ``||delta|| <= epsilon``:
    ``delta . y > c + epsilon sqrt(2 - 2m)  =>  delta . x > c``. The lemma holds where
    ``~premise | conclusion``; ``premise`` also requires ``||delta|| <= epsilon``.
    ``strict=False`` checks the ``>=`` version (also true, same proof).
    """
    _unit_check("x", x)
    _unit_check("y", y)
    m = (x * y).sum(-1).clamp(-1, 1)
    lhs = (delta * y).sum(-1)
    thr = c + epsilon * torch.sqrt(2 - 2 * m)
    in_ball = delta.norm(dim=-1) <= epsilon * (1 + 1e-12)
    dx = (delta * x).sum(-1)
    if strict:
        return in_ball & (lhs > thr), dx > c
    return in_ball & (lhs >= thr), dx >= c


def lemma6(delta: torch.Tensor, x: torch.Tensor, y: torch.Tensor, S, strict=True):
    """Lemma 6 (App. C) as ``(premise, conclusion)``, bool tensors over the leading dimensions.

    ``strict=True`` (as stated): unit ``x, y`` with ``x . y < S`` give
    ``min(delta . x, delta . y) < ||delta|| sqrt((1 + S) / 2)``. This fails for ``delta = 0``,
    and at ``x . y = S`` with ``delta`` along ``x + y`` equality holds. ``strict=False``: the
    version the proof of Theorem 2 needs and that always holds,
    ``x . y <= S  =>  min(delta . x, delta . y) <= ||delta|| sqrt((1 + S) / 2)``.
    """
    _unit_check("x", x)
    _unit_check("y", y)
    xy = (x * y).sum(-1)
    rhs = delta.norm(dim=-1) * torch.sqrt(torch.as_tensor((1 + S) / 2, dtype=delta.dtype))
    lhs = torch.minimum((delta * x).sum(-1), (delta * y).sum(-1))
    if strict:
        return xy < S, lhs < rhs
    return xy <= S, lhs <= rhs


# ---------------------------------------------------------------------------------------------
# 3. Theorems 1 and 2: terms and bounds
# ---------------------------------------------------------------------------------------------

def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` with ``den = 0`` giving ``+-inf`` by the sign of ``num`` (0 for ``num = 0``)."""
    safe = torch.where(den > 0, num / den.clamp_min(_TINY), torch.sign(num) * float("inf"))
    return torch.where((den == 0) & (num == 0), torch.zeros_like(num), safe)


def aux_untargeted(loss_adv: torch.Tensor, loss_clean: torch.Tensor, grad_norm: torch.Tensor,
                   y: torch.Tensor, beta: float, epsilon: float, role: str) -> torch.Tensor:
    """The auxiliary functions of the untargeted lower bound (App. B, proof of Theorem 1):

    ``f(x,y) = (min_{y' != y} l_F(x^A, y') - l_F(x, y) - beta eps^2 / 2) / ||grad_x l_F(x, y)||``
    (``role="F"``) and ``g(x, y)`` with ``+ beta eps^2 / 2`` and ``G``'s losses (``role="G"``).
    ``loss_adv`` (N, C): losses of every label at ``x^A``; ``loss_clean``, ``grad_norm`` (N,):
    ``l(x, y)`` and ``||grad_x l(x, y)||``. Returns (N,) values (``+-inf`` for a zero gradient).
    """
    if role not in ("F", "G"):
        raise ValueError(f"role must be 'F' or 'G', got {role!r}")
    others = loss_adv.double().clone()
    others[torch.arange(len(y)), y] = float("inf")
    shift = beta * epsilon ** 2 / 2 * (-1 if role == "F" else 1)
    return _ratio(others.min(1).values - loss_clean.double() + shift, grad_norm.double())


def aux_targeted(loss_adv: torch.Tensor, loss_clean_target: torch.Tensor,
                 grad_norm_target: torch.Tensor, beta: float, epsilon: float,
                 role: str) -> torch.Tensor:
    """The auxiliary functions of the targeted lower bound (App. B, proof of Theorem B):

    ``f(x) = (min_y l_F(x^A, y) - l_F(x, y_t) + beta eps^2 / 2) / ||grad_x l_F(x, y_t)||``
    (``role="F"``) and ``g(x)`` with ``- beta eps^2 / 2`` and ``G``'s losses (``role="G"``).
    """
    if role not in ("F", "G"):
        raise ValueError(f"role must be 'F' or 'G', got {role!r}")
    shift = beta * epsilon ** 2 / 2 * (1 if role == "F" else -1)
    return _ratio(loss_adv.double().min(1).values - loss_clean_target.double() + shift,
                  grad_norm_target.double())


def c_terms(f_values: torch.Tensor, g_values: torch.Tensor, targeted: bool = False):
    """``(c_F, c_G)`` of Theorem 1 from the auxiliary values over the support (or a sample).

    Untargeted (Theorem 1, Eq. B.30 ff.): ``c_F = min f``, ``c_G = max g``.
    Targeted (Theorem B): ``c_F = max f``, ``c_G = min g``.
    """
    if targeted:
        return f_values.max().item(), g_values.min().item()
    return f_values.min().item(), g_values.max().item()


def l_min_untargeted(loss_f: torch.Tensor, loss_g: torch.Tensor, y: torch.Tensor) -> float:
    """``l_min`` of Theorem 2 (Eq. C.21): ``min_{x, y' != y} (l_F(x, y'), l_G(x, y'))`` over the
    support (or a sample); ``loss_f``, ``loss_g`` (N, C) hold the clean losses of every label."""
    def wrong(loss):
        loss = loss.double().clone()
        loss[torch.arange(len(y)), y] = float("inf")
        return loss.min()
    return min(wrong(loss_f).item(), wrong(loss_g).item())


def l_min_targeted(loss_f: torch.Tensor, loss_g: torch.Tensor, target: torch.Tensor) -> float:
    """``l_min`` of the targeted upper bound (Eq. C.1): ``min_x (l_F(x, y_t), l_G(x, y_t))``,
    the minimum taken over the support (or a sample) rather than all of ``X``."""
    idx = torch.arange(len(target))
    return min(loss_f.double()[idx, target].min().item(), loss_g.double()[idx, target].min().item())


def lower_bound_denominator(epsilon, c_G, targeted: bool = False):
    """The Markov denominator of Theorem 1: ``epsilon - c_G`` (untargeted, Eq. B.35) or
    ``c_G + epsilon`` (targeted, Eq. B.22). The bound is a theorem only where it is > 0."""
    return _as_float((c_G + epsilon) if targeted else (epsilon - c_G))


def _lower_formula(alpha, eta_F, eta_G, epsilon, c_F, c_G, S, targeted, guard):
    _check_prob("alpha", alpha)
    _check_prob("eta_F", eta_F)
    _check_prob("eta_G", eta_G)
    _check_positive("epsilon", epsilon)
    _check_similarity("S", S)
    den = lower_bound_denominator(epsilon, c_G, targeted)
    cf = c_F if targeted else -c_F
    symbolic = _is_symbolic(alpha, eta_F, eta_G, epsilon, c_F, c_G, S)
    if not symbolic:  # IEEE division: den = 0 gives +-inf or nan, never ZeroDivisionError
        den = np.asarray(den, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = ((1 - alpha) - (eta_F + eta_G) - (epsilon * (1 + alpha) + cf * (1 - alpha)) / den
                 - epsilon * (1 - alpha) / den * _sqrt(2 - 2 * S))
    if guard and not symbolic:
        value = np.where(den > 0, value, -np.inf)
    return _as_float(value)


def lower_bound_untargeted(alpha, eta_F, eta_G, epsilon, c_F, c_G, S_lower, *, guard=True):
    """Theorem 1, untargeted lower bound as proved in App. B (Eq. B.38):

    ``Pr(T_r(F, G, x) = 1) >= (1 - alpha) - (eta_F + eta_G)
    - (eps (1 + alpha) - c_F (1 - alpha)) / (eps - c_G)
    - eps (1 - alpha) / (eps - c_G) sqrt(2 - 2 S_lower)``

    with ``S_lower`` the lower loss-gradient similarity (Definition 4) and ``c_F, c_G`` from
    :func:`c_terms`. The proof's Markov step needs ``eps - c_G > 0``; with ``guard=True`` the
    function returns ``-inf`` (the trivial lower bound) where it is not, with ``guard=False`` the
    raw expression. Arguments may be numbers, numpy arrays or sympy expressions.
    """
    return _lower_formula(alpha, eta_F, eta_G, epsilon, c_F, c_G, S_lower, False, guard)


def lower_bound_untargeted_main_text(alpha, eta_F, eta_G, epsilon, c_F, c_G, S_upper, *,
                                     guard=True):
    """Theorem 1 as printed in Sec. 2.2.2: the expression of Eq. B.38 with the *upper* similarity
    ``S_upper`` (Definition 5). The proof (Lemma 5, Eq. B.34) only supports the lower similarity;
    with ``S_upper >= S_lower`` this is a larger, unproved number (see the errata)."""
    return _lower_formula(alpha, eta_F, eta_G, epsilon, c_F, c_G, S_upper, False, guard)


def lower_bound_targeted(alpha, eta_F, eta_G, epsilon, c_F, c_G, S_lower, *, guard=True):
    """Theorem B, the targeted lower bound (App. B, Eq. B.29):

    ``Pr(T_r(F, G, x, y_t) = 1) >= (1 - alpha) - (eta_F + eta_G)
    - (eps (1 + alpha) + c_F (1 - alpha)) / (c_G + eps)
    - eps (1 - alpha) / (c_G + eps) sqrt(2 - 2 S_lower)``

    with the targeted ``c_F = max f``, ``c_G = min g`` (:func:`c_terms`). Needs ``c_G + eps > 0``
    (``guard`` as in :func:`lower_bound_untargeted`).
    """
    return _lower_formula(alpha, eta_F, eta_G, epsilon, c_F, c_G, S_lower, True, guard)


def upper_bound_denominator(l_min, epsilon, B, beta, S_upper):
    """``l_min - eps B (1 + sqrt((1 + S_upper) / 2)) - beta eps^2`` (Theorem 2, Eq. C.18)."""
    return _as_float(l_min - epsilon * B * (1 + _sqrt((1 + S_upper) / 2)) - beta * epsilon ** 2)


def _upper_formula(xi_F, xi_G, l_min, epsilon, B, beta, S_upper, guard):
    _check_positive("epsilon", epsilon)
    _check_similarity("S_upper", S_upper)
    den = upper_bound_denominator(l_min, epsilon, B, beta, S_upper)
    value = (xi_F + xi_G) / den if _is_symbolic(den) else np.divide(
        xi_F + xi_G, den, out=np.full(np.shape(den), np.nan, dtype=float),
        where=np.asarray(den, dtype=float) != 0)
    if guard and not _is_symbolic(value):
        value = np.where(np.asarray(den, dtype=float) > 0, value, np.inf)
    return _as_float(value)


def upper_bound_untargeted(xi_F, xi_G, l_min, epsilon, B, beta, S_upper, *, guard=True):
    """Theorem 2 (Sec. 2.2.3 and Eq. C.21), the upper bound for an untargeted attack:

    ``Pr(T_r = 1) <= (xi_F + xi_G) / (l_min - eps B (1 + sqrt((1 + S_upper) / 2)) - beta eps^2)``

    with ``l_min`` from :func:`l_min_untargeted`. The paper prints the targeted event
    ``T_r(F, G, x, y_t)`` here; the proof bounds the untargeted event ``T_r(F, G, x)`` (which
    contains it). The Markov step (Eq. C.18) needs a positive denominator: with ``guard=True``
    the function returns ``+inf`` where it is not, with ``guard=False`` the raw expression.
    """
    return _upper_formula(xi_F, xi_G, l_min, epsilon, B, beta, S_upper, guard)


def upper_bound_targeted(xi_F, xi_G, l_min, epsilon, B, beta, S_upper, *, guard=True):
    """Theorem C, the targeted upper bound (Eq. C.1): the same expression as
    :func:`upper_bound_untargeted` with ``l_min`` from :func:`l_min_targeted`."""
    return _upper_formula(xi_F, xi_G, l_min, epsilon, B, beta, S_upper, guard)

