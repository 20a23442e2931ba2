"""Estimators of the theorems' terms for networks (``nn.Module`` returning logits).

Sampled lower/upper gradient similarity, the smoothness ``beta`` (input-Hessian power
iteration), the gradient bound ``B``, and every term of Theorems 1-2 for an attack
(``bound_terms``, ``bounds_from_terms``). Each estimate over a sample is one-sided; the
docstrings say in which direction.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._common import _TINY, _flat
from .bounds import (aux_targeted, aux_untargeted, c_terms, l_min_targeted, l_min_untargeted,
                     lower_bound_denominator, lower_bound_targeted, lower_bound_untargeted,
                     lower_bound_untargeted_main_text, upper_bound_denominator,
                     upper_bound_targeted, upper_bound_untargeted)
from .definitions import (attack_effectiveness, definition1_attack, empirical_risk,
                          gradient_cosines, risk, transferability)

__all__ = [
    "label_losses",
    "input_gradient",
    "all_label_gradients",
    "estimate_gradient_similarity",
    "input_hvp",
    "hessian_spectral_norm",
    "estimate_smoothness",
    "local_smoothness",
    "estimate_gradient_bound",
    "bound_terms",
    "bounds_from_terms",
    "ESTIMATE_DIRECTIONS",
    "trained_pair_bounds",
]


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


def local_smoothness(model, x: torch.Tensor, labels: torch.Tensor, *, radius: float = 1.0,
                     n_dirs: int = 4, generator: torch.Generator | None = None,
                     clean_gradient: torch.Tensor | None = None) -> torch.Tensor:
    """Per point, the gradient's rate of change at L2 distance ``radius`` (Definition 6 at a
    finite scale): ``max_u ||grad l(x + radius u, y) - grad l(x, y)||_2 / radius`` over
    ``n_dirs`` random unit directions ``u``, for the cross-entropy ``l`` at ``labels``.

    Definition 6's ``beta`` is the supremum of this ratio over ``X`` as the radius shrinks; for a
    ReLU network that supremum is infinite (the gradient jumps across every kink) and the Hessian
    at a point misses the kinks (:func:`estimate_smoothness`). At a finite radius the ratio is
    finite, counts the kinks crossed, and is at most ``beta`` for a twice differentiable
    network (mean value theorem): a lower estimate of it per point. Inputs are not clipped to
    the data range (``beta`` is a property of the function). ``clean_gradient``: ``grad l(x, y)``
    when already computed (several radii at the same points). Returns a tensor (N,).
    """
    if not (isinstance(radius, (int, float)) and not isinstance(radius, bool) and radius > 0
            and radius == radius and radius != float("inf")):
        raise ValueError(f"local_smoothness: radius={radius!r} must be a positive finite number")
    if not isinstance(n_dirs, int) or isinstance(n_dirs, bool) or n_dirs < 1:
        raise ValueError(f"local_smoothness: n_dirs={n_dirs!r} must be a positive integer")
    x = x.detach()
    if clean_gradient is None:
        _, g0 = input_gradient(model, x, labels)
    elif clean_gradient.shape != x.shape:
        raise ValueError(f"local_smoothness: clean_gradient has shape {tuple(clean_gradient.shape)}, "
                         f"x has {tuple(x.shape)}; they must match")
    else:
        g0 = clean_gradient.detach().to(x.device, x.dtype)
    gdev = generator.device if generator is not None else torch.device("cpu")
    best = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
    for _ in range(n_dirs):
        u = torch.randn(x.shape, generator=generator, device=gdev).to(x.device, x.dtype)
        u = u / _flat(u).norm(dim=1).clamp_min(_TINY).view(-1, *([1] * (x.dim() - 1)))
        _, g = input_gradient(model, x + radius * u, labels)
        best = torch.maximum(best, _flat(g - g0).norm(dim=1) / radius)
    return best


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



# How each sampled term relates to the quantity the theorems use, and which way that moves the
# bounds (the "direction" columns: "optimistic" = the estimated bound is more informative than the
# true one). Read by chapter 05's table; derived in the docstrings above.
ESTIMATE_DIRECTIONS = [
    {"term": "alpha, eta_F, eta_G, xi_F, xi_G, Pr(T_r)", "estimate": "sample mean over test points",
     "relation to the true term": "two-sided sampling error", "lower bound": "either way",
     "upper bound": "either way (xi)"},
    {"term": "beta", "estimate": "largest input-Hessian norm by power iteration at clean points and "
     "on attack segments", "relation to the true term": "lower estimate of a supremum (infinite for "
     "ReLU networks)", "lower bound": "optimistic (c_F too high, c_G too low)",
     "upper bound": "optimistic (denominator too large)"},
    {"term": "B", "estimate": "largest gradient norm over the points, all labels",
     "relation to the true term": "lower estimate of a supremum", "lower bound": "not used",
     "upper bound": "optimistic"},
    {"term": "S_lower", "estimate": "smallest gradient cosine over the points, all labels",
     "relation to the true term": "upper estimate of an infimum", "lower bound": "optimistic",
     "upper bound": "not used"},
    {"term": "S_upper", "estimate": "largest gradient cosine over the points, all labels",
     "relation to the true term": "lower estimate of a supremum", "lower bound": "not used",
     "upper bound": "optimistic"},
    {"term": "c_F (untargeted: min; targeted: max)", "estimate": "over the points",
     "relation to the true term": "min over a sample >= the population min (max <=)",
     "lower bound": "optimistic", "upper bound": "not used"},
    {"term": "c_G (untargeted: max; targeted: min)", "estimate": "over the points",
     "relation to the true term": "max over a sample <= the population max (min >=)",
     "lower bound": "optimistic where the bound is a theorem", "upper bound": "not used"},
    {"term": "l_min", "estimate": "smallest wrong-label (target) loss over the points",
     "relation to the true term": "upper estimate of a minimum", "lower bound": "not used",
     "upper bound": "optimistic"},
    {"term": "attack", "estimate": "projected gradient solver of Definition 1",
     "relation to the true term": "a local maximiser, not necessarily the global one",
     "lower bound": "unknown (Theorem 1 assumes the maximiser)", "upper bound": "none (Theorem 2 "
     "holds for any attack in the ball)"},
]


def trained_pair_bounds(model_f, model_g, x: torch.Tensor, y: torch.Tensor, epsilons, *,
                        n_beta: int = 30, attack_steps: int = 20, hessian_iters: int = 10,
                        clip=(0.0, 1.0), generator: torch.Generator | None = None) -> list[dict]:
    """Every term and bound of Theorems 1, 2 (untargeted) and B, C (targeted, ``y_t = y + 1 mod
    C``) for an L2 Definition-1 attack on ``model_f`` at each radius, with ``model_g`` as target.

    ``beta`` is the larger member's :func:`estimate_smoothness` at the first ``n_beta`` points and on
    their attack segments at the largest radius, for the true and the target labels (a lower
    estimate, see ``ESTIMATE_DIRECTIONS``); ``B`` and the similarities are estimated over ``x`` and
    all labels. Returns one dict per (radius, untargeted/targeted): the terms of
    :func:`bound_terms`, the bounds of :func:`bounds_from_terms` and ``attack_in_ball`` (the
    attack stayed in the L2 ball and the ``clip`` box).
    """
    if not len(epsilons):
        raise ValueError("epsilons must list at least one radius")
    with torch.no_grad():
        num_classes = model_f(x[:1]).shape[-1]
    target = (y + 1) % num_classes

    def loss_of(model):
        return lambda z, lab: F.cross_entropy(model(z), lab, reduction="none")

    attacks = {}
    for eps in epsilons:
        attacks[(eps, False)] = definition1_attack(loss_of(model_f), x, y, eps, steps=attack_steps,
                                                   clip=clip)
        attacks[(eps, True)] = definition1_attack(loss_of(model_f), x, target, eps, targeted=True,
                                                  steps=attack_steps, clip=clip)
    eps_max = max(epsilons)
    xb = x[:n_beta]
    betas = []
    for targeted, lab in ((False, y[:n_beta]), (True, target[:n_beta])):
        for model in (model_f, model_g):
            betas.append(estimate_smoothness(model, xb, lab, x_adv=attacks[(eps_max, targeted)][:n_beta],
                                             t_values=(0.0, 0.5, 1.0), iters=hessian_iters,
                                             generator=generator)["beta"])
    beta = max(betas)
    B = max(estimate_gradient_bound(model_f, x)["B"], estimate_gradient_bound(model_g, x)["B"])
    sim = estimate_gradient_similarity(model_f, model_g, x, "all")
    rows = []
    for (eps, targeted), x_adv in attacks.items():
        terms = bound_terms(model_f, model_g, x, y, x_adv, eps, beta=beta, B=B,
                            S_lower=sim["lower"], S_upper=sim["upper"],
                            target=target if targeted else None)
        in_ball = bool(((x_adv - x).flatten(1).norm(dim=1) <= eps * (1 + 1e-6)).all())
        if clip is not None:
            in_ball = in_ball and bool(x_adv.min() >= clip[0] and x_adv.max() <= clip[1])
        rows.append({**terms, **bounds_from_terms(terms), "attack_in_ball": in_ball})
    return rows
