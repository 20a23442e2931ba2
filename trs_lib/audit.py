"""Adaptive audit of a robustness number: is the attack that produced it strong enough?

Gradient-regularised ensembles are known to look more robust under plain PGD than they are
(gradient masking; Athalye et al. 2018, Tramèr et al. 2020). Next to every robustness table
the companion reports these checks, each a structured verdict (``passed`` True/False, or None
when skipped), and shows a failing check rather than hiding it:

1. ``large_eps``: accuracy under PGD falls (within noise) as eps grows and is about 0 at eps 0.5.
2. ``unbounded``: an unbounded attack (PGD in the whole box [0, 1]) reaches about 0 accuracy.
3. ``more_steps_restarts``: 10x the steps and 5 restarts (by default) lower the accuracy by no
   more than noise.
4. ``apgd``: APGD-CE and APGD-DLR (Croce & Hein 2020) lower the accuracy by no more than noise.
5. ``worst_case``: the per-sample worst case over the white-box attacks of the L-inf suite
   (APGD-CE, APGD-T, the reweighing attack; :mod:`trs_lib.worst_case`) lowers it by no more than noise.
6. ``square``: the gradient-free Square Attack at the same budget is not much stronger than the
   white-box worst case. Gradient attacks cannot see through a zero or missing gradient (a
   rounded input, a non-differentiable preprocessing, saturated logits); Square only queries
   outputs, so a model whose gradients lie fails here even when checks 3-5 pass.
7. ``transfer``: black-box transfer from a surrogate is not stronger than the white-box worst
   case. Always run: without a given surrogate, one is built with an independent initialisation
   (PyTorch's default, seeded apart from any ensemble member) and trained to imitate the model's
   labels (:func:`independent_surrogate`).

"Noise" is two binomial standard errors of the base accuracy over the ``n`` test points, at
least 1 point: ``max(0.01, 2 sqrt(p (1 - p) / n))``. Points are the same in all attacks.
This module builds on :mod:`trs_lib.worst_case` only; :mod:`trs_lib.evaluate` builds on it.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .worst_case import attack_batched, correct_mask, robust_accuracy, worst_case
from .models import SmallCNN

__all__ = ["audit", "noise", "audit_frame", "independent_surrogate", "CHECKS"]

CHECKS = ("large_eps", "unbounded", "more_steps_restarts", "apgd", "worst_case", "square", "transfer")

#: the white-box part of the L-inf worst-case suite used by the ``worst_case`` check.
WHITEBOX = ("apgd_ce", "apgd_t", "reweigh")


def noise(p: float, n: int) -> float:
    """Tolerance of the checks: two binomial standard errors of accuracy ``p`` on ``n`` points, >= 0.01."""
    return max(0.01, 2.0 * math.sqrt(max(p * (1.0 - p), 0.0) / max(n, 1)))


def _verdict(name, passed, detail, values, tol=None):
    status = "skipped" if passed is None else ("pass" if passed else "FAIL")
    return {"check": name, "passed": passed, "status": status, "detail": detail,
            "values": values, "tolerance": tol}


def independent_surrogate(model, x_train: torch.Tensor, *, seed: int = 12_345, epochs: int = 2,
                          batch: int = 50, lr: float = 2e-3, width: int = 16):
    """A small CNN initialised independently of ``model`` (PyTorch's default initialisation from
    ``manual_seed(seed)``, the global generator restored afterwards) and trained on ``x_train``
    (shuffled; pass a class-balanced sample) for ``epochs`` epochs to imitate ``model``'s
    predicted labels (a black-box attacker's surrogate: it sees outputs, not weights or gradients).
    Inputs (B, C, H, W) in [0, 1]; returned in eval mode."""
    if x_train.dim() != 4:
        raise ValueError(f"independent_surrogate: x_train must be images (B, C, H, W), got shape {tuple(x_train.shape)}")
    dev = x_train.device
    with torch.no_grad():
        labels = torch.cat([model(x_train[i:i + 500]).argmax(1) for i in range(0, len(x_train), 500)])
        k = int(model(x_train[:1]).shape[1])
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        sur = SmallCNN(x_train.shape[1], k, size=x_train.shape[-1], width=width).to(dev)
        perm = torch.randperm(len(x_train))
    finally:
        torch.random.set_rng_state(state)
    opt = torch.optim.Adam(sur.parameters(), lr)
    sur.train()
    for _ in range(epochs):
        for i in range(0, len(x_train), batch):
            j = perm[i:i + batch].to(dev)
            loss = F.cross_entropy(sur(x_train[j]), labels[j])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return sur.eval()


def audit(model, x: torch.Tensor, y: torch.Tensor, *, eps: float, surrogate=None, steps: int = 10,
          seed: int = 0, batch_size: int = 256, progress: bool = False, apgd_steps: int = 100,
          large_eps: float = 0.5, large_max_acc: float = 0.05, unbounded_max_acc: float = 0.01,
          checks=CHECKS, precomputed: dict | None = None, more_steps: int | None = None,
          more_restarts: int = 5, strong_steps: int = 40, square_queries: int = 1000,
          n_targets: int = 3, surrogate_data: torch.Tensor | None = None) -> list[dict]:
    """Run the sanity checks on ``model`` at L-inf budget ``eps``; returns one verdict per check.

    The base attack is the paper's PGD (``steps`` steps of eps/10, random start); the
    ``more_steps_restarts`` check reruns it with ``more_steps`` (default ``10 * steps``) steps
    and ``more_restarts`` restarts. ``large_eps`` and ``unbounded`` use PGD with ``strong_steps``
    steps of ``2.5 eps / strong_steps`` (Madry et al.'s step rule). ``worst_case`` runs APGD-CE,
    APGD-T (``n_targets``) and the reweighing attack with ``apgd_steps`` iterations; ``square``
    runs Square with ``square_queries`` queries on every point; ``transfer`` crafts PGD on
    ``surrogate`` (default: :func:`independent_surrogate` trained on ``surrogate_data``, else on
    ``x``). ``precomputed``: accuracies already measured at this ``eps`` (keys ``pgd``,
    ``apgd_ce``, ``apgd_dlr``) to reuse. Each verdict: ``check``, ``passed``, ``status`` (pass /
    FAIL / skipped), ``detail`` (one sentence), ``values`` and ``tolerance``.
    """
    unknown = sorted(set(checks) - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown checks {unknown}; valid checks: {list(CHECKS)}")
    if isinstance(eps, bool) or not (isinstance(eps, (int, float)) and math.isfinite(eps) and 0 < eps <= 1):
        raise ValueError(f"eps must be in (0, 1], got {eps!r}")
    for name, v, lo in (("steps", steps, 1), ("apgd_steps", apgd_steps, 1), ("square_queries", square_queries, 1),
                        ("more_restarts", more_restarts, 1), ("strong_steps", strong_steps, 1),
                        ("n_targets", n_targets, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    pre = dict(precomputed or {})
    n = len(x)
    kw = dict(seed=seed, batch_size=batch_size, progress=progress)

    def acc(model_, attack, **params):
        return robust_accuracy(model_, x, y, attack, **kw, **params)["accuracy"]

    base = pre.get("pgd")
    if base is None:
        base = acc(model, "pgd", eps=eps, steps=steps)
    tol = noise(base, n)
    out = []
    if "large_eps" in checks:
        sweep = sorted({min(e, large_eps) for e in (eps, 2 * eps, 4 * eps, large_eps)})
        accs = [acc(model, "pgd", eps=e, steps=strong_steps, step_size=2.5 * e / strong_steps) for e in sweep]
        monotone = all(b <= a + tol for a, b in zip(accs, accs[1:]))
        ok = monotone and accs[-1] <= large_max_acc
        out.append(_verdict("large_eps", ok,
                            f"PGD-{strong_steps} accuracy {', '.join(f'{a:.1%}' for a in accs)} at eps "
                            f"{', '.join(f'{e:g}' for e in sweep)}; needs a non-increasing curve ending "
                            f"<= {large_max_acc:.0%}", {"eps": sweep, "accuracy": accs}, tol))
    if "unbounded" in checks:
        a = acc(model, "pgd", eps=1.0, steps=strong_steps, step_size=2.5 / strong_steps)
        out.append(_verdict("unbounded", a <= unbounded_max_acc,
                            f"PGD-{strong_steps} in the whole box [0, 1] leaves {a:.1%} accuracy; "
                            f"needs <= {unbounded_max_acc:.0%}", {"accuracy": a}, None))
    if "more_steps_restarts" in checks:
        ms = more_steps or 10 * steps
        a = acc(model, "pgd", eps=eps, steps=ms, restarts=more_restarts)
        out.append(_verdict("more_steps_restarts", base - a <= tol,
                            f"PGD-{steps}: {base:.1%}; PGD-{ms} x {more_restarts} restarts: {a:.1%} "
                            f"(drop {base - a:+.1%}, noise {tol:.1%})",
                            {"base": base, "strong": a}, tol))
    if "apgd" in checks:
        ce = pre.get("apgd_ce")
        ce = acc(model, "apgd_ce", eps=eps, steps=apgd_steps) if ce is None else ce
        dlr = pre.get("apgd_dlr")
        dlr = acc(model, "apgd_dlr", eps=eps, steps=apgd_steps) if dlr is None else dlr
        worst = min(ce, dlr)
        pre.update(apgd_ce=ce, apgd_dlr=dlr)
        out.append(_verdict("apgd", base - worst <= tol,
                            f"PGD-{steps}: {base:.1%}; APGD-CE: {ce:.1%}, APGD-DLR: {dlr:.1%} "
                            f"(drop {base - worst:+.1%}, noise {tol:.1%})",
                            {"base": base, "apgd_ce": ce, "apgd_dlr": dlr}, tol))
    wb = None
    if any(c in checks for c in ("worst_case", "square", "transfer")):
        plan = [(a, {"steps": apgd_steps, **({"n_targets": n_targets} if a == "apgd_t" else {})}) for a in WHITEBOX]
        wc = worst_case(model, x, y, eps=eps, suite="linf", attacks=plan, seed=seed, batch_size=batch_size,
                        progress=progress)
        wb_correct = torch.tensor([c == "1" for c in wc["correct"]])
        wb = min(wc["accuracy"], base)
    if "worst_case" in checks:
        out.append(_verdict("worst_case", base - wc["accuracy"] <= tol,
                            f"PGD-{steps}: {base:.1%}; worst case over {', '.join(WHITEBOX)}: "
                            f"{wc['accuracy']:.1%} (drop {base - wc['accuracy']:+.1%}, noise {tol:.1%})",
                            {"base": base, "worst_case": wc["accuracy"], "broken_by": wc["broken_by"],
                             "ci95": wc["ci95"]}, tol))
    if "square" in checks:
        sq_res = robust_accuracy(model, x, y, "square", eps=eps, n_queries=square_queries, **kw)
        sq = sq_res["accuracy"]
        sq_correct = torch.tensor([c == "1" for c in sq_res["correct"]])
        both_ok = wb_correct & sq_correct
        both = int(both_ok.sum()) / n
        by_point = [b if b is not None else ("square" if not s_ok else None)
                    for b, s_ok in zip(wc["broken_by_point"], sq_correct.tolist())]
        out.append(_verdict("square", wb - sq <= tol,
                            f"Square ({square_queries} queries, no gradients): {sq:.1%}; white-box worst case: "
                            f"{wb:.1%} (Square stronger by {wb - sq:+.1%}, noise {tol:.1%}); both together: {both:.1%}",
                            {"square": sq, "whitebox": wb, "combined": both,
                             "combined_correct": "".join("1" if v else "0" for v in both_ok.tolist()),
                             "suite_attacks": list(WHITEBOX) + ["square"],
                             "broken_by_point": by_point}, tol))
    if "transfer" in checks:
        made = surrogate is None
        if made:
            data = surrogate_data if surrogate_data is not None else x
            surrogate = independent_surrogate(model, data.to(x.device), seed=12_345 + seed)
        gen = torch.Generator().manual_seed(seed)
        x_adv, _ = attack_batched("pgd", surrogate, x, y, batch_size=batch_size, eps=eps,
                                  steps=max(steps, 20), step_size=2.5 * eps / max(steps, 20), generator=gen)
        clean_ok, _ = correct_mask(model, x, y, batch_size)
        adv_ok, _ = correct_mask(model, x_adv, y, batch_size)
        t = (clean_ok & adv_ok).float().mean().item()
        src = "an independently initialised surrogate trained on the model's labels" if made else "the given surrogate"
        out.append(_verdict("transfer", t >= wb - tol,
                            f"transfer PGD-{max(steps, 20)} from {src}: {t:.1%}; white-box worst case: "
                            f"{wb:.1%} (noise {tol:.1%})", {"transfer": t, "whitebox": wb,
                                                           "surrogate": "independent" if made else "given"}, tol))
    return out


def audit_frame(checks: list[dict]):
    """The verdicts as a ``pandas.DataFrame`` (check, status, detail)."""
    import pandas as pd
    return pd.DataFrame([{k: c[k] for k in ("check", "status", "detail")} for c in checks]).set_index("check")
