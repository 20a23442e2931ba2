"""Auto-PGD (Croce & Hein 2020) with the cross-entropy and the DLR loss, for the adaptive audit.

APGD is PGD with momentum and a step size that needs no tuning: it starts at ``2 eps`` and is
halved at checkpoints ``w_j`` (``p_0 = 0``, ``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j - p_{j-1}
- 0.03, 0.06)`` of the iterations) whenever (1) the loss increased in at most 75 % of the
steps since the last checkpoint, or (2) the step was not reduced at the last checkpoint and the
best loss has not improved since; on a halving the iterate restarts from the best point. Step:

    z_{k+1} = P(x_k + eta_k sign(grad L(x_k)))
    x_{k+1} = P(x_k + alpha (z_{k+1} - x_k) + (1 - alpha)(x_k - x_{k-1})),   alpha = 0.75

(``alpha = 1`` at the first step). In the L2 ball (``norm="L2"``) the signed step becomes
``eta_k grad / ||grad||_2`` and ``P`` scales the perturbation back to norm ``eps`` (AutoAttack's
L2 APGD); the random start is a Gaussian direction of norm ``eps``. DLR loss, shift- and scale-invariant in the scores (so the
same on logits and on log-probabilities), with ``pi`` the scores sorted in decreasing order:

    DLR(z, y) = -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3 + 1e-12)

``apgd_ce`` supports targeted mode (descend the target's cross-entropy); ``apgd_dlr`` is
untargeted (the targeted DLR of AutoAttack needs both the label and a target). Restarts run in
one stacked batch; per example the output is an iterate that fools the model if one was found,
else the highest-loss iterate. Eval mode is the caller's job.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ._common import (MAX_RESTARTS, MAX_STEPS, check_bool, check_budget, check_inputs, check_int,
                      check_norm, check_real, input_grad, project, project_l2, project_linf,
                      rand_uniform)

__all__ = ["apgd", "apgd_ce", "apgd_dlr", "apgd_loop", "best_of_restarts", "in_turns", "dlr_loss",
           "checkpoints"]


def dlr_loss(z: torch.Tensor, y: torch.Tensor, targeted: bool = False) -> torch.Tensor:
    """Per-example DLR loss (to be maximised); needs at least 3 classes."""
    if targeted:
        raise ValueError("apgd_dlr: targeted=True is not supported (the targeted DLR needs the true label too); use apgd_ce")
    if z.shape[1] < 3:
        raise ValueError(f"apgd_dlr: the DLR loss needs at least 3 classes, got {z.shape[1]}")
    zs = z.sort(1, descending=True).values
    z_y = z.gather(1, y[:, None]).squeeze(1)
    other = z.scatter(1, y[:, None], float("-inf")).amax(1)
    return -(z_y - other) / (zs[:, 0] - zs[:, 2] + 1e-12)


def _ce(z, y, targeted):
    ce = F.cross_entropy(z, y, reduction="none")
    return -ce if targeted else ce


def checkpoints(steps: int) -> list[int]:
    """Iterations at which APGD checks its step size (Croce & Hein 2020, Sec. 3.2)."""
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return sorted({int(round(q * steps)) for q in p[1:] if q <= 1 and 0 < int(round(q * steps)) <= steps})


def apgd(model, x, y, *, eps, steps=100, loss="ce", targeted=False, restarts=1, rho=0.75,
         generator=None, norm="Linf", _name="apgd"):
    """APGD in the L-inf or L2 ball (``norm``); ``loss`` in ("ce", "dlr")."""
    check_inputs(x, y, _name, "target" if targeted is True else "y")
    norm = check_norm(norm, attack=_name)
    eps = check_budget(eps, norm, attack=_name)
    steps = check_int("steps", steps, 1, MAX_STEPS, attack=_name)
    check_bool("targeted", targeted, attack=_name)
    restarts = check_int("restarts", restarts, 1, MAX_RESTARTS, attack=_name)
    if loss not in ("ce", "dlr"):
        raise ValueError(f"{_name}: unknown loss {loss!r}; valid values: ['ce', 'dlr']")
    lossf = _ce if loss == "ce" else dlr_loss
    if loss == "dlr" and targeted:
        raise ValueError(f"{_name}: targeted=True is not supported with the DLR loss (the targeted DLR needs the true label too); use apgd_ce or apgd_t")
    rho = check_real("rho", rho, 0.0, 1.0, lo_open=True, attack=_name)
    x = x.detach()
    if eps == 0.0:
        return x.clone()
    y = y.to(device=x.device, dtype=torch.long)

    def loss_(z, yy, _i):
        if loss == "dlr" and z.shape[1] < 3:
            raise ValueError(f"{_name}: the DLR loss needs at least 3 classes, got {z.shape[1]}")
        return lossf(z, yy, targeted)

    def fooled_(z, yy):
        return (z.argmax(1) == yy) if targeted else (z.argmax(1) != yy)

    return best_of_restarts(model, x, y, restarts, lambda xs, ys, _r: apgd_loop(
        model, xs, ys, loss_, fooled_, eps=eps, steps=steps, rho=rho, norm=norm, generator=generator))


def best_of_restarts(model, x, y, restarts, run):
    """Stack ``restarts`` copies of the batch, ``run(xs, ys, restarts) -> (x_out, loss, fooled)``,
    and keep per example a restart that fooled the model, else the one of highest loss."""
    b = x.shape[0]
    xs = x.repeat(restarts, *([1] * (x.dim() - 1)))
    ys = y.repeat(restarts)
    out, l_best, fooled = run(xs, ys, restarts)
    score = (l_best.float() + 1e6 * fooled.float()).view(restarts, b)
    idx = score.argmax(0) * b + torch.arange(b, device=x.device)
    return out[idx].detach()


def in_turns(model, x, y, variants, restarts, make_run, todo=None):
    """Run APGD variants one after another (APGD-T's targets, the reweighing's mixings), each
    on the points no earlier variant misclassified: ``make_run(variant, idx)`` gives the
    :func:`best_of_restarts` runner for rows ``idx`` of the batch. ``todo``: the points to attack
    (default: those ``model`` classifies correctly). Returns the adversarial examples."""
    if todo is None:
        with torch.no_grad():
            todo = model(x).argmax(1) == y
    out = x.clone()
    for v in variants:
        idx = todo.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        adv = best_of_restarts(model, x[idx], y[idx], restarts, make_run(v, idx))
        with torch.no_grad():
            broken = model(adv).argmax(1) != y[idx]
        out[idx] = adv
        todo[idx[broken]] = False
    return out.detach()


def apgd_loop(model, xs, ys, lossf, fooledf, *, eps, steps, rho, norm, generator, output=None,
              model_for=None):
    """The APGD iteration on validated arguments (shared by APGD-CE/DLR, APGD-T and the reweighing
    attack). ``lossf(z, ys[i], i)`` is the per-example loss to ascend on the model output ``z`` of
    the rows ``i`` of the batch; ``fooledf(s, ys[i])`` the success test on the scores
    ``s = output(z)`` (default ``z`` itself); ``model_for(i)`` the model to call on rows ``i``
    (default ``model``). A point stops at its first fooling iterate (the others' trajectories are
    unchanged: every quantity is per example), so the work shrinks as points fall.
    Returns ``(x_out, best loss, fooled)``: per example the first fooling iterate, else the best-loss one."""
    output = output or (lambda z: z)
    n = xs.shape[0]
    view = (-1,) + (1,) * (xs.dim() - 1)

    def grad(xa, i):
        m = model if model_for is None else model_for(i)
        g, lv, z = input_grad(m, xa, ys[i], False, loss=lambda z, yy, _t: lossf(z, yy, i))
        return g, lv, fooledf(output(z), ys[i])

    def step(xa, g, eta, xo):
        if norm == "Linf":
            return project_linf(xa + eta.view(view) * g.sign(), xo, eps)
        gn = g.flatten(1).norm(dim=1).clamp_min(1e-12).view(view)
        return project_l2(xa + eta.view(view) * g / gn, xo, eps)

    if norm == "Linf":
        t = rand_uniform(xs.shape, generator, xs.device, xs.dtype)
        x_adv = project_linf(xs + eps * t / t.flatten(1).abs().amax(1).clamp_min(1e-12).view(view), xs, eps)
    else:
        gdev = generator.device if generator is not None else xs.device
        t = torch.randn(xs.shape, generator=generator, device=gdev).to(xs.device, xs.dtype)
        x_adv = project_l2(xs + eps * t / t.flatten(1).norm(dim=1).clamp_min(1e-12).view(view), xs, eps)
    everyone = torch.arange(n, device=xs.device)
    g, lv, fooled = grad(x_adv, everyone)
    x_fool = torch.where(fooled.view(view), x_adv, xs)
    x_best, g_best, l_best = x_adv.clone(), g.clone(), lv.clone()
    eta = torch.full((n,), 2 * eps, device=xs.device, dtype=xs.dtype)
    x_old = x_adv.clone()
    checks = set(checkpoints(steps))
    last_check, n_incr = 0, torch.zeros(n, device=xs.device)
    l_best_last = l_best.clone()
    reduced_last = torch.zeros(n, dtype=torch.bool, device=xs.device)
    l_prev = lv.clone()
    for it in range(steps):
        a = 0.75 if it > 0 else 1.0
        i = (~fooled).nonzero().squeeze(1)
        if i.numel() == 0:
            break
        xa, xo = x_adv[i], xs[i]
        z1 = step(xa, g[i], eta[i], xo)
        x_new = project(xa + a * (z1 - xa) + (1 - a) * (xa - x_old[i]), xo, eps, norm)
        x_old[i] = xa
        x_adv[i] = x_new
        gi, lvi, f = grad(x_new, i)
        g[i] = gi
        x_fool[i[f]] = x_new[f]
        fooled[i] = f
        n_incr[i] += (lvi > l_prev[i]).float()
        l_prev[i] = lvi
        imp = lvi > l_best[i]
        x_best[i[imp]] = x_new[imp]
        g_best[i[imp]] = gi[imp]
        l_best[i[imp]] = lvi[imp]
        if it + 1 in checks:
            k = it + 1 - last_check
            osc = n_incr <= rho * k
            no_impr = ~reduced_last & (l_best_last >= l_best)
            cut = osc | no_impr
            reduced_last = cut
            l_best_last = l_best.clone()
            eta = torch.where(cut, eta / 2, eta)
            x_adv = torch.where(cut.view(view), x_best, x_adv)
            g = torch.where(cut.view(view), g_best, g)
            last_check, n_incr = it + 1, torch.zeros_like(n_incr)
    out = torch.where(fooled.view(view), x_fool, x_best)
    return out, l_best, fooled


def apgd_ce(model, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int = 100,
            targeted: bool = False, restarts: int = 1, rho: float = 0.75,
            generator: torch.Generator | None = None, norm: str = "Linf") -> torch.Tensor:
    """APGD on the cross-entropy (AutoAttack's ``apgd-ce``), L-inf or L2 (``norm``)."""
    return apgd(model, x, y, eps=eps, steps=steps, loss="ce", targeted=targeted, restarts=restarts,
                rho=rho, generator=generator, norm=norm, _name="apgd_ce")


def apgd_dlr(model, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int = 100,
             restarts: int = 1, rho: float = 0.75, generator: torch.Generator | None = None,
             norm: str = "Linf") -> torch.Tensor:
    """APGD on the DLR loss (AutoAttack's ``apgd-dlr``, untargeted), L-inf or L2 (``norm``)."""
    return apgd(model, x, y, eps=eps, steps=steps, loss="dlr", targeted=False, restarts=restarts,
                rho=rho, generator=generator, norm=norm, _name="apgd_dlr")
