"""Per-sample worst case: robust accuracy over restarts and over a suite of attacks (AutoAttack's design).

A point counts as robust only if it is classified correctly clean and survives *every* attack of
the suite (and every random restart): each attack runs only on the points still robust, and the
record says which attack broke each point. This is the number a reviewer accepts; the paper's
single attack at its setting is an upper bound on it.

Suites (``ATTACK_SUITES``; L-inf and L2 kept apart, the budget ``eps`` given by the caller):

* ``linf``: APGD-CE, APGD-T (targeted DLR over the top classes), the reweighing attack on the
  members' logits (MORA-style, :mod:`trs_lib.attacks.reweigh`), Square (gradient-free);
* ``l2``: the same four in the L2 ball, then DDN (minimum-norm, projected to the budget).

The batching machinery shared by every evaluation lives here too (``run_batched`` halves the
batch on CUDA out-of-memory, ``attack_batched``, ``robust_accuracy``), so that ``audit`` and
``evaluate`` both build on this module and not on each other.
"""
from __future__ import annotations

import inspect
import math
import time

import torch

from .attacks import ATTACKS
from .attacks import get as get_attack
from .stats import wilson_interval

__all__ = ["device_of", "run_batched", "attack_batched", "correct_mask", "robust_accuracy",
           "worst_case", "suite_attacks", "ATTACK_SUITES", "interval_fields", "within_budget"]

def device_of(model: torch.nn.Module) -> torch.device:
    """The device of a model's first parameter or buffer (CPU for a model with neither)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")



def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError)


def run_batched(fn, n: int, batch_size: int, *, min_batch_size: int = 1, progress: bool = False,
                desc: str | None = None, log=None):
    """Call ``fn(start, stop)`` over ``range(n)`` in batches; returns ``(outputs, batch size used)``.

    On ``torch.cuda.OutOfMemoryError`` the failing batch is retried with half the batch size
    (down to ``min_batch_size``, then the error is raised); batches already done are kept.
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    outs, start, bs = [], 0, batch_size
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=n, desc=desc, leave=False)
    else:
        bar = None
    try:
        while start < n:
            stop = min(start + bs, n)
            try:
                out = fn(start, stop)
            except Exception as err:  # noqa: BLE001 - only OOM is handled
                if not _is_oom(err) or bs <= min_batch_size:
                    raise
                bs = max(bs // 2, min_batch_size)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                if log is not None:
                    log(f"CUDA out of memory at batch size {stop - start}; retrying with {bs}")
                continue
            outs.append(out)
            if bar is not None:
                bar.update(stop - start)
            start = stop
    finally:
        if bar is not None:
            bar.close()
    return outs, bs


def _resolve(attack):
    if callable(attack):
        return getattr(attack, "__name__", "attack"), attack
    return attack, get_attack(attack)


def attack_batched(attack, model, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 256,
                   progress: bool = False, desc: str | None = None, **params):
    """``attack(model, x_b, y_b, **params)`` over batches on the model's device.

    ``attack`` is a name of ``trs_lib.attacks`` or a function. Returns ``(x_adv on x's device,
    batch size used)``.
    """
    _, fn = _resolve(attack)
    dev = device_of(model)

    def one(a, b):
        return fn(model, x[a:b].to(dev), y[a:b].to(dev), **params).to(x.device)

    outs, bs = run_batched(one, len(x), batch_size, progress=progress, desc=desc)
    return torch.cat(outs), bs


@torch.no_grad()
def _correct(model, x, y, batch_size):
    dev = device_of(model)
    outs, bs = run_batched(lambda a, b: (model(x[a:b].to(dev)).argmax(-1) == y[a:b].to(dev)).cpu(),
                           len(x), batch_size)
    return torch.cat(outs), bs


def _takes(fn, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def robust_accuracy(model, x: torch.Tensor, y: torch.Tensor, attack, *, restarts: int = 1,
                    seed: int = 0, batch_size: int = 256, progress: bool = True, **params) -> dict:
    """Accuracy of ``model`` under ``attack``: a point counts as robust only if it is classified
    correctly clean and on the adversarial example of every one of ``restarts`` runs.

    Restart ``r`` draws its random start from ``torch.Generator().manual_seed(seed + r)``; an
    attack without a ``generator`` argument is deterministic and runs once whatever ``restarts``.
    Later restarts attack only the points still robust (same result, less work).
    Returns ``accuracy``, ``correct`` and ``ci95`` (:func:`interval_fields`), ``clean_accuracy``,
    ``per_restart`` (accuracy after each restart),
    ``robust`` (bool list), ``n``, ``restarts`` (run), ``batch_size`` (used), ``wall_s``.
    """
    import time
    if not isinstance(restarts, int) or isinstance(restarts, bool) or restarts < 1:
        raise ValueError(f"restarts must be a positive integer, got {restarts!r}")
    if len(x) != len(y):
        raise ValueError(f"len(x)={len(x)} does not match len(y)={len(y)}")
    name, fn = _resolve(attack)
    t0 = time.perf_counter()
    robust, bs = _correct(model, x, y, batch_size)
    clean = int(robust.sum()) / len(robust)
    randomised = _takes(fn, "generator")
    runs = restarts if randomised else 1
    per_restart = []
    for r in range(runs):
        idx = robust.nonzero().squeeze(1)
        if idx.numel():
            kw = dict(params)
            if randomised:
                kw["generator"] = torch.Generator().manual_seed(seed + r)
            x_adv, bs = attack_batched(fn, model, x[idx], y[idx], batch_size=bs, progress=progress,
                                       desc=f"{name} {r + 1}/{runs}", **kw)
            ok, bs = _correct(model, x_adv, y[idx], bs)
            robust[idx] = ok.to(robust.device)
        per_restart.append(int(robust.sum()) / len(robust))
    return {"attack": name, "params": {k: v for k, v in params.items()}, **interval_fields(robust),
            "clean_accuracy": clean, "per_restart": per_restart, "robust": robust.tolist(),
            "n": len(x), "restarts": runs, "batch_size": bs, "wall_s": round(time.perf_counter() - t0, 3)}



correct_mask = _correct


def interval_fields(correct: torch.Tensor) -> dict:
    """``accuracy``, ``correct`` ('0'/'1' per point, in order) and ``ci95`` (Wilson, fractions) of a
    boolean vector."""
    c = torch.as_tensor(correct).bool().flatten().cpu()
    k, n = int(c.sum()), int(c.numel())
    return {"accuracy": k / n, "correct": "".join("1" if v else "0" for v in c.tolist()),
            "ci95": list(wilson_interval(k, n))}


#: the named suites: (attack, keyword arguments) in the order they run. Steps and queries are the
#: CPU-scale defaults (APGD: 100 iterations as AutoAttack; APGD-T: 3 target classes instead of 9;
#: Square: 1,000 queries instead of 5,000); ``overrides`` in :func:`worst_case` change them.
ATTACK_SUITES: dict[str, tuple] = {
    "linf": (("apgd_ce", {"steps": 100}),
             ("apgd_t", {"steps": 100, "n_targets": 3}),
             ("reweigh", {"steps": 100}),
             ("square", {"n_queries": 1000})),
    "l2": (("apgd_ce", {"steps": 100, "norm": "L2"}),
           ("apgd_t", {"steps": 100, "n_targets": 3, "norm": "L2"}),
           ("reweigh", {"steps": 100, "norm": "L2"}),
           ("square", {"n_queries": 1000, "norm": "L2"}),
           ("ddn", {"steps": 100})),
}


def suite_attacks(suite: str = "linf", overrides: dict | None = None) -> list[tuple[str, dict]]:
    """The ``(attack, kwargs)`` list of ``suite`` with ``overrides`` ``{attack: {kw: value}}`` applied."""
    if suite not in ATTACK_SUITES:
        raise ValueError(f"unknown worst-case suite {suite!r}; valid suites: {sorted(ATTACK_SUITES)}")
    overrides = dict(overrides or {})
    names = [a for a, _ in ATTACK_SUITES[suite]]
    bad = sorted(set(overrides) - set(names))
    if bad:
        raise ValueError(f"overrides name attacks {bad} that are not in suite {suite!r}; its attacks: {names}")
    return [(a, {**kw, **overrides.get(a, {})}) for a, kw in ATTACK_SUITES[suite]]


def within_budget(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Per point: is ``x_adv`` inside the ``norm`` ball of radius ``eps`` around ``x`` (float slack)?"""
    d = (x_adv - x).flatten(1)
    size = d.abs().amax(1) if norm == "Linf" else d.norm(dim=1)
    return size <= eps * (1 + 1e-5) + 1e-6


def worst_case(model, x: torch.Tensor, y: torch.Tensor, *, eps: float, suite: str = "linf",
               attacks=None, overrides: dict | None = None, seed: int = 0, batch_size: int = 256,
               progress: bool = False, log=None) -> dict:
    """Per-sample worst case of ``model`` over the attacks of ``suite`` at budget ``eps``.

    ``attacks``: an explicit list of ``(name, kwargs)`` instead of the named suite (the norm is
    still the suite's). Attack ``k`` draws its randomness from ``Generator().manual_seed(seed + k)``.
    Every adversarial example is checked against the budget (outside it: the attack is broken and
    an error is raised). Returns ``accuracy``, ``correct``, ``ci95`` (C1), ``clean_accuracy``,
    ``suite``, ``norm``, ``eps``, ``suite_attacks`` (names in order), ``broken_by`` ({attack:
    points it broke}), ``broken_by_point`` (per point: the attack that broke it, ``"clean"`` if it
    was misclassified clean, ``None`` if still robust), ``after_attack`` (accuracy after each
    attack), ``wall_s`` per attack and in total, ``batch_size`` (used).
    """
    if suite not in ATTACK_SUITES:
        raise ValueError(f"unknown worst-case suite {suite!r}; valid suites: {sorted(ATTACK_SUITES)}")
    norm = "Linf" if suite == "linf" else "L2"
    hi = 1.0 if norm == "Linf" else 1e3
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or not 0 < eps <= hi:
        raise ValueError(f"worst_case: eps={eps!r} is outside the allowed range (0, {hi:g}] of the {norm} suite")
    plan = suite_attacks(suite, overrides) if attacks is None else [(a, dict(k)) for a, k in attacks]
    for name, kw in plan:
        if name not in ATTACKS:
            raise ValueError(f"worst_case: unknown attack {name!r}; valid names: {sorted(ATTACKS)}")
        if "norm" in kw and kw["norm"] != norm:
            raise ValueError(f"worst_case: attack {name!r} has norm {kw['norm']!r} in the {suite!r} suite; "
                             f"valid: {norm!r}")
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"worst_case: need as many labels as points (> 0), got len(x)={len(x)}, len(y)={len(y)}")
    t0 = time.perf_counter()
    robust, bs = _correct(model, x, y, batch_size)
    clean = int(robust.sum()) / len(robust)
    by_point = [None if r else "clean" for r in robust.tolist()]
    broken_by, after, walls = {}, [], {}
    for k, (name, kw) in enumerate(plan):
        t1 = time.perf_counter()
        fn = get_attack(name)
        idx = robust.nonzero().squeeze(1)
        n_broken = 0
        if idx.numel():
            kw = {**kw, "eps": float(eps)}
            if _takes(fn, "generator"):
                kw["generator"] = torch.Generator().manual_seed(seed + k)
            x_adv, bs = attack_batched(fn, model, x[idx], y[idx], batch_size=bs, progress=progress,
                                       desc=f"{name} ({idx.numel()} points)", **kw)
            inside = within_budget(x_adv, x[idx], eps, norm)
            if not inside.all():
                raise RuntimeError(f"worst_case: {name} returned {int((~inside).sum())} examples outside the "
                                   f"{norm} ball of radius {eps:g} (a bug of the attack)")
            ok, bs = _correct(model, x_adv, y[idx], bs)
            newly = idx[~ok.to(idx.device)]
            robust[newly] = False
            for i in newly.tolist():
                by_point[i] = name
            n_broken = int(newly.numel())
        broken_by[name] = n_broken
        after.append(int(robust.sum()) / len(robust))
        walls[name] = round(time.perf_counter() - t1, 3)
        if log is not None:
            log(f"{name}: broke {n_broken}, accuracy {after[-1]:.1%} ({walls[name]:.1f} s)")
    return {**interval_fields(robust), "clean_accuracy": clean, "suite": suite, "norm": norm,
            "eps": float(eps), "suite_attacks": [a for a, _ in plan],
            "suite_kwargs": {a: {k: v for k, v in kw.items()} for a, kw in plan},
            "broken_by": broken_by, "broken_by_point": by_point, "after_attack": after,
            "n": len(x), "wall_s_by_attack": walls, "wall_s": round(time.perf_counter() - t0, 3),
            "batch_size": bs}
