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
5. ``transfer``: black-box transfer from an independently trained (vanilla) surrogate is not
   stronger than white-box PGD (skipped without a surrogate).

"Noise" is two binomial standard errors of the base accuracy over the ``n`` test points, at
least 1 point: ``max(0.01, 2 sqrt(p (1 - p) / n))``. Points are the same in all attacks.
"""
from __future__ import annotations

import math

import torch

from .evaluate import robust_accuracy

__all__ = ["audit", "noise", "audit_frame", "CHECKS"]

CHECKS = ("large_eps", "unbounded", "more_steps_restarts", "apgd", "transfer")


def noise(p: float, n: int) -> float:
    """Tolerance of the checks: two binomial standard errors of accuracy ``p`` on ``n`` points, >= 0.01."""
    return max(0.01, 2.0 * math.sqrt(max(p * (1.0 - p), 0.0) / max(n, 1)))


def _verdict(name, passed, detail, values, tol=None):
    status = "skipped" if passed is None else ("pass" if passed else "FAIL")
    return {"check": name, "passed": passed, "status": status, "detail": detail,
            "values": values, "tolerance": tol}


def audit(model, x: torch.Tensor, y: torch.Tensor, *, eps: float, surrogate=None, steps: int = 10,
          seed: int = 0, batch_size: int = 256, progress: bool = False, apgd_steps: int = 100,
          large_eps: float = 0.5, large_max_acc: float = 0.05, unbounded_max_acc: float = 0.01,
          checks=CHECKS, precomputed: dict | None = None, more_steps: int | None = None,
          more_restarts: int = 5, strong_steps: int = 40) -> list[dict]:
    """Run the sanity checks on ``model`` at L-inf budget ``eps``; returns one verdict per check.

    The base attack is the paper's PGD (``steps`` steps of eps/10, random start); the
    ``more_steps_restarts`` check reruns it with ``more_steps`` (default ``10 * steps``) steps
    and ``more_restarts`` restarts. ``large_eps`` and ``unbounded`` use PGD with ``strong_steps``
    steps of ``2.5 eps / strong_steps`` (Madry et al.'s step rule).
    ``precomputed``: accuracies already measured at this ``eps`` (keys ``pgd``, ``apgd_ce``,
    ``apgd_dlr``) to reuse. Each verdict: ``check``, ``passed``, ``status`` (pass / FAIL /
    skipped), ``detail`` (one sentence), ``values`` and ``tolerance``.
    """
    unknown = sorted(set(checks) - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown checks {unknown}; valid checks: {list(CHECKS)}")
    if not (isinstance(eps, (int, float)) and 0 < eps <= 1):
        raise ValueError(f"eps must be in (0, 1], got {eps!r}")
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
    if "transfer" in checks:
        if surrogate is None:
            out.append(_verdict("transfer", None, "no surrogate ensemble given", {}, tol))
        else:
            from .evaluate import _correct, attack_batched
            gen = torch.Generator().manual_seed(seed)
            x_adv, _ = attack_batched("pgd", surrogate, x, y, batch_size=batch_size, eps=eps,
                                      steps=steps, generator=gen)
            clean_ok, _ = _correct(model, x, y, batch_size)
            adv_ok, _ = _correct(model, x_adv, y, batch_size)
            t = (clean_ok & adv_ok).float().mean().item()
            wb = min([base] + [v for k, v in pre.items() if k in ("apgd_ce", "apgd_dlr")])
            out.append(_verdict("transfer", t >= wb - tol,
                                f"transfer PGD-{steps} from the surrogate: {t:.1%}; white-box: "
                                f"{wb:.1%} (noise {tol:.1%})", {"transfer": t, "whitebox": wb}, tol))
    return out


def audit_frame(checks: list[dict]):
    """The verdicts as a ``pandas.DataFrame`` (check, status, detail)."""
    import pandas as pd
    return pd.DataFrame([{k: c[k] for k in ("check", "status", "detail")} for c in checks]).set_index("check")
