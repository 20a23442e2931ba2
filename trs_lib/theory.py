"""The paper's theory as code (Sec. 2, App. A-C): definitions, lemmas, theorems and bounds.

Every function cites the definition or equation it implements. Four groups:

1. **Definitions 1-8** (Sec. 2.1-2.2.1, App. A): the attack model, attack effectiveness,
   transferability, lower/upper loss-gradient similarity, smoothness, total variation and
   rho-conservative attacks; plus the TRS formula of Sec. 3 read literally and as a cosine.
2. **Lemmas 3, 5, 6 and Theorem 4** (App. A-C) as predicates and bounds that a check can
   evaluate on any input.
3. **Theorems 1 and 2** (Sec. 2.2.2-2.2.3, App. B-C): the lower and upper bounds on
   transferability, untargeted and targeted, as functions of their terms
   ``(alpha, eta_F, eta_G, epsilon, c_F, c_G, S, beta, B, xi_F, xi_G, l_min)``, and the terms
   ``c_F, c_G, l_min`` computed from losses.
4. **Estimators for real networks** (``nn.Module`` returning logits): sampled lower/upper
   gradient similarity, the smoothness ``beta`` as the largest input-Hessian eigenvalue (in
   magnitude) by power iteration with Hessian-vector products, the gradient bound ``B``; and
   closed forms for linear softmax models, where every term is exact.

Conventions. ``l_F(x, y)`` is the cross-entropy of model ``F`` (the paper's "model-dependent
loss"); a model predicts the label of smallest loss, i.e. the arg-max of its logits.
Probabilities ``Pr`` are over ``x ~ P_x``; on a finite sample they are sample means, and on a
finite *support* (the toy models of the theory chapter) they are exact. Where the paper's
statement and its proof disagree, the bound functions follow the proof; ``book/errata.md``
lists each case with the check that shows it.
"""
from __future__ import annotations

import math
from numbers import Real

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    # definitions
    "definition1_attack", "attack_effectiveness", "is_effective", "transferability_indicator",
    "transferability", "risk", "empirical_risk", "gradient_cosines", "lower_gradient_similarity",
    "upper_gradient_similarity", "smoothness_difference_quotient", "total_variation",
    "total_variation_by_events", "pushforward", "is_rho_conservative",
    "frobenius_outer", "trs_similarity_literal", "trs_similarity_cosine",
    # lemmas and Theorem 4
    "lemma3_bound", "theorem4_alpha", "lemma5", "lemma6",
    # Theorems 1 and 2
    "aux_untargeted", "aux_targeted", "c_terms", "l_min_untargeted", "l_min_targeted",
    "lower_bound_untargeted", "lower_bound_untargeted_main_text", "lower_bound_targeted",
    "upper_bound_untargeted", "upper_bound_targeted", "lower_bound_denominator",
    "upper_bound_denominator",
    # estimators
    "label_losses", "input_gradient", "all_label_gradients", "estimate_gradient_similarity",
    "input_hvp", "hessian_spectral_norm", "estimate_smoothness", "estimate_gradient_bound",
    "bound_terms", "bounds_from_terms",
    # linear softmax closed forms and toy data
    "linear_softmax_input_hessian", "linear_softmax_smoothness", "linear_softmax_gradient_bound",
    "binary_linear_model", "binary_linear_attack", "toy_mixture",
]

_TINY = 1e-30


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def _is_symbolic(*values) -> bool:
    return any(type(v).__module__.split(".")[0] == "sympy" for v in values)


def _sqrt(v):
    """``sqrt`` for numbers, arrays (negative rounding noise clipped to 0) and sympy expressions."""
    if _is_symbolic(v):
        import sympy
        return sympy.sqrt(v)
    return np.sqrt(np.maximum(v, 0.0))


def _check_prob(name, value):
    if _is_symbolic(value):
        return
    v = np.asarray(value, dtype=float)
    if np.any(~np.isfinite(v)) or np.any(v < 0) or np.any(v > 1):
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")


def _check_positive(name, value):
    if _is_symbolic(value):
        return
    v = np.asarray(value, dtype=float)
    if np.any(~(v > 0)):
        raise ValueError(f"{name} must be > 0, got {value!r}")


def _check_similarity(name, value):
    if _is_symbolic(value):
        return
    v = np.asarray(value, dtype=float)
    if np.any(~np.isfinite(v)) or np.any(v < -1 - 1e-12) or np.any(v > 1 + 1e-12):
        raise ValueError(f"{name} must be a cosine similarity in [-1, 1], got {value!r}")


def _as_float(v):
    """A 0-d numpy result as a Python float; arrays and sympy expressions unchanged."""
    if isinstance(v, np.ndarray) and v.ndim == 0:
        return float(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


# ---------------------------------------------------------------------------------------------
# 1. Definitions 1-8
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# 2. Lemmas 3, 5, 6 and Theorem 4
# ---------------------------------------------------------------------------------------------

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
    value = ((1 - alpha) - (eta_F + eta_G) - (epsilon * (1 + alpha) + cf * (1 - alpha)) / den
             - epsilon * (1 - alpha) / den * _sqrt(2 - 2 * S))
    if guard and not _is_symbolic(value):
        value = np.where(np.asarray(den, dtype=float) > 0, value, -np.inf)
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


# ---------------------------------------------------------------------------------------------
# 4. Estimators for networks (nn.Module returning logits)
# ---------------------------------------------------------------------------------------------

def label_losses(model, x: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every label at every input, (N, C): ``l(x, y') = -log softmax(f(x))_y'``."""
    with torch.no_grad():
        return -torch.log_softmax(model(x), dim=-1)


def input_gradient(model, x: torch.Tensor, labels: torch.Tensor):
    """``(l(x, y), grad_x l(x, y))`` per example, for the cross-entropy of ``model``."""
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        loss = F.cross_entropy(model(xr), labels, reduction="none")
        (g,) = torch.autograd.grad(loss.sum(), xr)
    return loss.detach(), g.detach()


def all_label_gradients(model, x: torch.Tensor) -> torch.Tensor:
    """``grad_x l(x, y')`` for every label ``y'``: (N, C, D), one backward pass per label."""
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        logp = torch.log_softmax(model(xr), dim=-1)
        grads = []
        for k in range(logp.shape[1]):
            (g,) = torch.autograd.grad(-logp[:, k].sum(), xr, retain_graph=k < logp.shape[1] - 1)
            grads.append(_flat(g))
    return torch.stack(grads, 1).detach()


def estimate_gradient_similarity(model_f, model_g, x: torch.Tensor, labels="all") -> dict:
    """Sampled lower and upper loss-gradient similarity (Definitions 4-5).

    ``labels="all"``: over every ``(x_i, y')`` with ``y'`` any label (Definitions 4-5 range over
    all of ``Y``); a label tensor (N,): over ``(x_i, labels_i)`` only. A sample gives an inner
    estimate: ``lower`` >= the true infimum, ``upper`` <= the true supremum. Returns ``lower``,
    ``upper`` and the cosines ``cos`` ((N, C) or (N,)).
    """
    if isinstance(labels, str):
        if labels != "all":
            raise ValueError(f"labels must be 'all' or a tensor of labels, got {labels!r}")
        gf, gg = all_label_gradients(model_f, x), all_label_gradients(model_g, x)
        cos = gradient_cosines(gf.reshape(-1, gf.shape[-1]), gg.reshape(-1, gg.shape[-1]))
        cos = cos.view(gf.shape[0], gf.shape[1])
    else:
        _, gf = input_gradient(model_f, x, labels)
        _, gg = input_gradient(model_g, x, labels)
        cos = gradient_cosines(gf, gg)
    valid = cos[~torch.isnan(cos)]
    return {"lower": valid.min().item(), "upper": valid.max().item(), "cos": cos}


def input_hvp(loss_fn, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Hessian-vector product ``H v`` of ``sum_b loss_fn(x)_b`` w.r.t. the input (double backward).

    With per-example losses that depend on their own input only, the Hessian is block diagonal
    and row ``b`` of the result is ``H_b v_b``.
    """
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(loss_fn(xr).sum(), xr, create_graph=True)
        (hv,) = torch.autograd.grad((g * v).sum(), xr)
    return hv.detach()


def hessian_spectral_norm(loss_fn, x: torch.Tensor, *, iters: int = 50, tol: float = 1e-7,
                          generator: torch.Generator | None = None) -> dict:
    """Largest eigenvalue in magnitude of each example's input Hessian, by power iteration.

    ``loss_fn(x)`` returns per-example losses (B,), example ``b`` depending on ``x[b]`` only.
    Each iteration is one Hessian-vector product (double backward) for the whole batch:
    ``v_b <- H_b v_b / ||H_b v_b||``. Returns ``norm`` (B,) = ``||H_b v_b||`` (the spectral norm
    ``max |lambda|``, which is what Definition 6's Lipschitz constant of the gradient bounds and
    what ``|xi^T H xi| <= beta ||xi||^2`` in App. B needs), ``eigenvalue`` (B,) the signed Rayleigh
    quotient ``v^T H v``, ``vector`` and ``iterations``. Stops when every ``norm`` changes by less
    than ``tol`` (relative).
    """
    if not isinstance(iters, int) or iters < 1:
        raise ValueError(f"iters must be an integer >= 1, got {iters!r}")
    x = x.detach()
    shape = (-1,) + (1,) * (x.dim() - 1)
    v = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    v = v / _flat(v).norm(dim=1).view(shape)
    with torch.enable_grad():
        xr = x.requires_grad_(True)
        (g,) = torch.autograd.grad(loss_fn(xr).sum(), xr, create_graph=True)
    norm = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    it = 0
    for it in range(1, iters + 1):
        (hv,) = torch.autograd.grad((g * v).sum(), xr, retain_graph=True)
        new = _flat(hv).norm(dim=1)
        v = torch.where(new.view(shape) > 0, hv / new.clamp_min(_TINY).view(shape), v)
        done = ((new - norm).abs() <= tol * new.clamp_min(_TINY)).all()
        norm = new
        if done:
            break
    (hv,) = torch.autograd.grad((g * v).sum(), xr)
    eig = (_flat(hv) * _flat(v)).sum(1)
    return {"norm": _flat(hv).norm(dim=1).detach(), "eigenvalue": eig.detach(),
            "vector": v.detach(), "iterations": it}


def _segment_points(x, x_adv, t_values):
    return torch.cat([x + t * (x_adv - x) for t in t_values])


def estimate_smoothness(model, x: torch.Tensor, labels, *, x_adv: torch.Tensor | None = None,
                        t_values=(0.0, 0.5, 1.0), iters: int = 30,
                        generator: torch.Generator | None = None) -> dict:
    """Estimate of Definition 6's ``beta``: the largest input-Hessian norm of the cross-entropy.

    At the points ``x`` or, with ``x_adv``, at ``x + t (x_adv - x)`` for ``t`` in ``t_values``
    (the segments on which the proofs' Taylor expansions need the bound, Eqs. B.4-B.7, C.6).
    ``labels``: a tensor (N,) or ``"all"`` (every label, C times the work). The supremum of
    Definition 6 is over all of ``X``, so this is a lower estimate. For a network that is
    piecewise linear in its input (ReLU, max-pooling), the logits' Hessian is zero almost
    everywhere, so the cross-entropy's Hessian is ``J^T (diag p - p p^T) J`` whatever the label.
    Returns ``beta`` (the max), ``norms`` per point and the points' ``t``.
    """
    if isinstance(labels, str) and labels != "all":
        raise ValueError(f"labels must be 'all' or a tensor of labels, got {labels!r}")
    pts = x if x_adv is None else _segment_points(x, x_adv, t_values)
    reps = 1 if x_adv is None else len(t_values)
    with torch.no_grad():
        num_classes = model(x[:1]).shape[-1]
    label_sets = range(num_classes) if isinstance(labels, str) else [labels.repeat(reps)]
    norms = []
    for lab in label_sets:
        lab_t = (torch.full((pts.shape[0],), lab, dtype=torch.long, device=pts.device)
                 if isinstance(lab, int) else lab)
        res = hessian_spectral_norm(lambda z: F.cross_entropy(model(z), lab_t, reduction="none"),
                                    pts, iters=iters, generator=generator)
        norms.append(res["norm"])
    norms = torch.stack(norms).max(0).values
    return {"beta": norms.max().item(), "norms": norms}


def estimate_gradient_bound(model, x: torch.Tensor, labels="all") -> dict:
    """Estimate of ``B`` in Theorem 2: the largest ``||grad_x l(x, y')||``.

    The proof of Theorem 2 uses the bound at clean points, for the true label and the target or
    wrong labels (Eqs. C.15-C.18: ``||grad l_F(x, y)|| <= B`` and ``|delta . grad l_F(x, y_t)|
    <= eps B``), so the default takes every label at the points ``x``. Returns ``B`` and the
    norms.
    """
    if isinstance(labels, str):
        if labels != "all":
            raise ValueError(f"labels must be 'all' or a tensor of labels, got {labels!r}")
        norms = all_label_gradients(model, x).norm(dim=-1)
    else:
        norms = _flat(input_gradient(model, x, labels)[1]).norm(dim=1)
    return {"B": norms.max().item(), "norms": norms}


def bound_terms(model_f, model_g, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor,
                epsilon: float, *, beta: float, B: float | None = None,
                S_lower: float | None = None, S_upper: float | None = None,
                target: torch.Tensor | None = None) -> dict:
    """Every term of Theorems 1 and 2 for an attack ``x_adv`` built against ``model_f``.

    Probabilities, minima and maxima are over the points ``(x, y)`` given: exact when they are
    the whole (finite) support of the distribution, sample estimates otherwise. ``beta`` must be
    supplied (closed form or :func:`estimate_smoothness`); ``B`` and the similarities default to
    estimates over ``x`` and every label. ``target`` (N,) switches to the targeted terms.
    Returns a dict with ``alpha, eta_F, eta_G, xi_F, xi_G, c_F, c_G, l_min, B, beta, S_lower,
    S_upper, transferability`` and ``targeted``.
    """
    targeted = target is not None
    with torch.no_grad():
        pf, pg = model_f(x).argmax(-1), model_g(x).argmax(-1)
        pfa, pga = model_f(x_adv).argmax(-1), model_g(x_adv).argmax(-1)
    lf, lg = label_losses(model_f, x), label_losses(model_g, x)
    lfa, lga = label_losses(model_f, x_adv), label_losses(model_g, x_adv)
    ref = target if targeted else y
    cf, gf = input_gradient(model_f, x, ref)
    cg, gg = input_gradient(model_g, x, ref)
    nf, ng = _flat(gf).norm(dim=1), _flat(gg).norm(dim=1)
    if targeted:
        fv = aux_targeted(lfa, cf, nf, beta, epsilon, "F")
        gv = aux_targeted(lga, cg, ng, beta, epsilon, "G")
        l_min = l_min_targeted(lf, lg, target)
    else:
        fv = aux_untargeted(lfa, cf, nf, y, beta, epsilon, "F")
        gv = aux_untargeted(lga, cg, ng, y, beta, epsilon, "G")
        l_min = l_min_untargeted(lf, lg, y)
    c_F, c_G = c_terms(fv, gv, targeted)
    if S_lower is None or S_upper is None:
        sim = estimate_gradient_similarity(model_f, model_g, x, "all")
        S_lower = sim["lower"] if S_lower is None else S_lower
        S_upper = sim["upper"] if S_upper is None else S_upper
    if B is None:
        B = max(estimate_gradient_bound(model_f, x)["B"], estimate_gradient_bound(model_g, x)["B"])
    idx = torch.arange(len(y))
    return {
        "targeted": targeted,
        "alpha": attack_effectiveness(pfa, y, target),
        "eta_F": risk(pf, y), "eta_G": risk(pg, y),
        "xi_F": empirical_risk(lf[idx, y]), "xi_G": empirical_risk(lg[idx, y]),
        "c_F": c_F, "c_G": c_G, "l_min": l_min, "B": float(B), "beta": float(beta),
        "S_lower": float(S_lower), "S_upper": float(S_upper), "epsilon": float(epsilon),
        "transferability": transferability(y, pf, pg, pfa, pga, target),
    }


def bounds_from_terms(terms: dict) -> dict:
    """The bounds of Theorems 1 and 2 from :func:`bound_terms`' dict.

    Returns ``lower`` (the proved form, guarded: ``-inf`` where the Markov denominator is not
    positive), ``lower_raw`` (the expression), ``lower_main_text`` (untargeted only: the printed
    form with ``S_upper``, raw), ``lower_denominator``, ``upper`` (guarded: ``+inf``),
    ``upper_raw`` and ``upper_denominator``.
    """
    t = terms
    args = (t["alpha"], t["eta_F"], t["eta_G"], t["epsilon"], t["c_F"], t["c_G"])
    up_args = (t["xi_F"], t["xi_G"], t["l_min"], t["epsilon"], t["B"], t["beta"], t["S_upper"])
    if t["targeted"]:
        lower = lower_bound_targeted(*args, t["S_lower"])
        lower_raw = lower_bound_targeted(*args, t["S_lower"], guard=False)
        main = float("nan")
        upper, upper_raw = upper_bound_targeted(*up_args), upper_bound_targeted(*up_args, guard=False)
    else:
        lower = lower_bound_untargeted(*args, t["S_lower"])
        lower_raw = lower_bound_untargeted(*args, t["S_lower"], guard=False)
        main = lower_bound_untargeted_main_text(*args, t["S_upper"], guard=False)
        upper = upper_bound_untargeted(*up_args)
        upper_raw = upper_bound_untargeted(*up_args, guard=False)
    return {"lower": lower, "lower_raw": lower_raw, "lower_main_text": main,
            "lower_denominator": lower_bound_denominator(t["epsilon"], t["c_G"], t["targeted"]),
            "upper": upper, "upper_raw": upper_raw,
            "upper_denominator": upper_bound_denominator(t["l_min"], t["epsilon"], t["B"],
                                                         t["beta"], t["S_upper"])}


# ---------------------------------------------------------------------------------------------
# 5. Linear softmax models: closed forms (the theory chapter's exact toys)
# ---------------------------------------------------------------------------------------------

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
