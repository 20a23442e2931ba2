"""The evaluation suites: one function per kind of evaluation, in the registry :data:`SUITES`.

A suite function takes ``(ensemble, x, y, spec, ctx)`` (``spec`` an
:class:`trs_lib.evaluate.EvalSpec`, ``ctx`` a :class:`SuiteContext`) and returns the suite's part
of an :class:`~trs_lib.records.EvalRecord`'s metrics: ``rows`` (one per attack setting, keyed by
:func:`trs_lib.paper_numbers.row_key`) and the suite's extras. The suites:

* ``whitebox``: robust accuracy under the paper's attacks (Tables 1-5), CW optionally on an evenly
  spaced subset, and the CW convergence check;
* ``worst_case``: the per-sample worst case over a strong suite (:func:`trs_lib.worst_case.worst_case`);
* ``audit``: APGD-CE / APGD-DLR rows and the sanity checks of :func:`trs_lib.audit.audit`;
* ``transfer``: member-to-member transfer matrices (Figures 2-4);
* ``ila``: the ILA table crafted on member 1 (Table 6) and its layer sweep;
* ``smoothness``: the members' local smoothness at L2 radii (Sec. 3's premise);
* ``blackbox``: transfer from surrogates the defender never saw (:mod:`trs_lib.transfer`),
  the worst case per point over every (surrogate, attack) pair.

Adding a kind of evaluation is adding a function here and an entry in :data:`SUITES`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch

from . import data
from .attacks import presets as _presets
from .audit import audit
from .member_transfer import ila_layer_sweep, ila_table, transfer_matrix
from .paper_numbers import row_key
from .paths import runs_dir
from .theory.estimators import input_gradient, local_smoothness
from .transfer import DEFAULT_ATTACKS, transfer_rows
from .worst_case import device_of, interval_fields, robust_accuracy, run_batched, worst_case

__all__ = ["SUITES", "SuiteContext", "default_rows", "spread_indices", "cw_convergence",
           "whitebox_table", "worst_case_table", "smoothness_table", "WORST_CASE_EPS",
           "SMOOTHNESS_RADII"]

#: radii (L2, pixel units) of the ``smoothness`` suite's rows (:mod:`trs_lib.attacks.presets`)
SMOOTHNESS_RADII = _presets.SMOOTHNESS_RADII

#: default budgets of the worst-case suites per paper data set when no rows are given (L-inf: the
#: whitebox presets' budgets; L2: the usual MNIST / CIFAR-10 L2 budgets of RobustBench-style work).
WORST_CASE_EPS = {"l2": {"mnist": (1.5,), "cifar10": (0.5,)}}


@dataclass(frozen=True)
class SuiteContext:
    """What a suite needs beyond its spec: an independently trained ``surrogate`` ensemble (the
    audit's transfer check; None: the audit trains a small imitation model), the black-box
    suite's ``surrogates`` (``{name: ensemble}``, :func:`trs_lib.surrogates.surrogate_ensembles`)
    and the folder of its crafted examples (``cache_dir``, default ``runs/transfer_cache``),
    progress bars and a ``log`` function (None: quiet)."""

    surrogate: torch.nn.Module | None = None
    progress: bool = False
    log: Callable | None = None
    surrogates: dict | None = None
    cache_dir: object = None


def spread_indices(n: int, k: int) -> torch.Tensor:
    """Indices of ``k`` evenly spaced points among ``n`` (first and last included; ``k <= n``):
    the test points of every evaluation (:func:`trs_lib.evaluate.evaluation_points`)
    and the CW rows' points when the scale runs CW on fewer (``mnist5k``'s test split is sorted
    by class, so the first ``k`` would miss classes)."""
    if isinstance(n, bool) or not isinstance(n, int) or isinstance(k, bool) or not isinstance(k, int) \
            or not 1 <= k <= n:
        raise ValueError(f"spread_indices: need integers 1 <= k <= n, got n={n!r}, k={k!r}")
    return torch.linspace(0, n - 1, k).round().long()


def cw_convergence(model, x: torch.Tensor, y: torch.Tensor, *, c: float, steps: int,
                   binary_search_steps: int = 1, batch_size: int = 256, progress: bool = False,
                   base_accuracy: float | None = None, **params) -> dict:
    """Is CW-L2 converged at ``steps`` iterations and ``binary_search_steps``? Runs it as given and
    with both doubled (with ``binary_search_steps == 1``, the paper's fixed ``c``, only the steps
    are doubled: a search would change the budget) and reports both accuracies; ``converged`` when
    they differ by less than one point. ``base_accuracy``: the accuracy at the given
    settings on these points when already measured (CW is deterministic), so only the doubled
    run is computed."""
    t0 = time.perf_counter()
    bss2 = 2 * binary_search_steps if binary_search_steps > 1 else 1
    if base_accuracy is not None:
        base = {"accuracy": float(base_accuracy)}
    else:
        base = robust_accuracy(model, x, y, "cw", c=c, steps=steps, binary_search_steps=binary_search_steps,
                               batch_size=batch_size, progress=progress, **params)
    dbl = robust_accuracy(model, x, y, "cw", c=c, steps=2 * steps, binary_search_steps=bss2,
                          batch_size=batch_size, progress=progress, **params)
    diff = dbl["accuracy"] - base["accuracy"]
    return {"c": c, "steps": steps, "binary_search_steps": binary_search_steps,
            "accuracy": base["accuracy"], "doubled_steps": 2 * steps, "doubled_binary_search_steps": bss2,
            "doubled_accuracy": dbl["accuracy"], "difference": diff, "converged": abs(diff) < 0.01,
            "n": len(x), "base_reused": base_accuracy is not None,
            "wall_s": round(time.perf_counter() - t0, 3)}


def whitebox_table(model, x: torch.Tensor, y: torch.Tensor, rows, *, restarts: int = 1,
                   seed: int = 0, batch_size: int = 256, progress: bool = True, overrides=None) -> list:
    """Robust accuracy of ``model`` for each row ``{attack, param, value, steps}`` (a preset,
    :func:`trs_lib.attacks.presets.preset`). ``overrides``: ``{attack: {kw: value}}`` applied
    on top of the presets (e.g. ``{"cw": {"steps": 100}}``). Returns one dict per row with its
    ``key``, ``attack``, ``param``, ``value``, ``steps``, ``accuracy`` and the run's details."""
    overrides = overrides or {}
    out = []
    for row in rows:
        row = dict(row)
        name, kw = _presets.attack_kwargs(row, **overrides.get(row["attack"], {}))
        res = robust_accuracy(model, x, y, name, restarts=restarts, seed=seed, batch_size=batch_size,
                              progress=progress, **kw)
        res.pop("robust")
        out.append({"key": row.get("key") or row_key(row), **{k: row.get(k) for k in ("attack", "param", "value", "steps")},
                    "accuracy": res["accuracy"], "correct": res["correct"], "ci95": res["ci95"],
                    "clean_accuracy": res["clean_accuracy"],
                    "per_restart": res["per_restart"], "restarts": res["restarts"],
                    "kwargs": kw, "batch_size": res["batch_size"], "wall_s": res["wall_s"]})
    return out


def worst_case_table(model, x: torch.Tensor, y: torch.Tensor, budgets, *, suite: str = "linf",
                     overrides=None, seed: int = 0, batch_size: int = 256, progress: bool = False,
                     log=None) -> list:
    """:func:`trs_lib.worst_case.worst_case` at each budget; rows keyed ``worst_case:<suite>/eps=<v>``
    with ``accuracy``, ``correct``, ``ci95``, ``suite_attacks``, ``broken_by``, ``broken_by_point`` (C1)."""
    out = []
    for eps in budgets:
        r = worst_case(model, x, y, eps=float(eps), suite=suite, overrides=overrides, seed=seed,
                       batch_size=batch_size, progress=progress, log=log)
        out.append({"key": f"worst_case:{suite}/eps={float(eps):g}", "attack": "worst_case", "param": "eps",
                    "value": float(eps), "steps": None, "suite": suite,
                    **{k: r[k] for k in ("accuracy", "correct", "ci95", "clean_accuracy", "suite_attacks",
                                         "suite_kwargs", "broken_by", "broken_by_point", "after_attack",
                                         "wall_s_by_attack", "wall_s", "batch_size")}})
    return out


def _check_row_values(rows, param: str, hi: float, what: str) -> None:
    """Raise ``ValueError(what ...)`` naming the rows whose ``param`` is not ``param`` or whose
    ``value`` is not a finite number in ``(0, hi]``."""
    bad = [r for r in rows if r.get("param", param) != param or isinstance(r.get("value"), bool)
           or not isinstance(r.get("value"), (int, float)) or not math.isfinite(r["value"])
           or not 0 < r["value"] <= hi]
    if bad:
        raise ValueError(f"{what} (param {param!r}, value in (0, {hi:g}]), got {bad}")


def smoothness_table(ensemble, x: torch.Tensor, y: torch.Tensor, radii=SMOOTHNESS_RADII, *,
                     n_dirs: int = 4, seed: int = 0, batch_size: int = 256) -> list:
    """The members' local smoothness (:func:`trs_lib.theory.estimators.local_smoothness`, the
    cross-entropy at the true label) at each L2 radius: one row per radius, keyed
    ``smoothness/r=<radius>``, with ``values`` (per point, the mean over members), ``mean``,
    ``member_means`` and ``member_values`` (per member, per point). Lower is smoother (Sec. 3's
    premise: TRS members are smoother than vanilla ones)."""
    per_radius = [[] for _ in radii]
    for i in range(ensemble.num_members):
        m = ensemble.member(i)
        dev = device_of(m)
        # the clean gradient once per member, shared by every radius
        g0, _ = run_batched(lambda a, b: input_gradient(m, x[a:b].to(dev), y[a:b].to(dev))[1], len(x), batch_size)
        g0 = torch.cat(g0)
        for k, r in enumerate(radii):
            gen = torch.Generator().manual_seed(seed * 1000 + k)  # the same directions for every member
            vals, _ = run_batched(lambda a, b: local_smoothness(
                m, x[a:b].to(dev), y[a:b].to(dev), radius=float(r), n_dirs=n_dirs, generator=gen,
                clean_gradient=g0[a:b]).cpu(), len(x), batch_size)
            per_radius[k].append(torch.cat(vals))
    out = []
    for r, per_member in zip(radii, per_radius):
        stack = torch.stack(per_member)
        out.append({"key": f"smoothness/r={float(r):g}", "attack": "smoothness", "param": "r",
                    "value": float(r), "steps": None, "n_dirs": n_dirs,
                    "values": [float(f"{v:.6g}") for v in stack.mean(0).tolist()],
                    "mean": float(stack.mean()), "member_means": stack.mean(1).tolist(),
                    "member_values": [[float(f"{v:.6g}") for v in row] for row in stack.tolist()]})
    return out


def _surrogate_data(dataset: str, n: int, device):
    """``n`` training images of ``dataset`` (a seeded random sample: splits may be sorted by class)
    for the audit's surrogate (None if the data are absent)."""
    try:
        xt, _ = data.load(dataset, "train")
    except Exception:  # noqa: BLE001 - no data: the audit trains the surrogate on the test points
        return None
    idx = torch.randperm(len(xt), generator=torch.Generator().manual_seed(0))[:n]
    return xt[idx].to(device)




def _linf_budgets(dataset: str) -> list:
    """The budgets of the dataset's iterative L-inf white-box rows (not FGSM's own)."""
    return sorted({r["value"] for r in _presets.preset(dataset, "whitebox")
                   if r["param"] == "eps" and r["attack"] != "fgsm"})


def default_rows(suite: str, dataset: str, worst_case_suite: str = "linf") -> list:
    """The rows a suite runs when its spec gives none: the dataset's presets (the worst case and
    the audit at every iterative L-inf budget; the L2 worst case at :data:`WORST_CASE_EPS`)."""
    if suite == "audit":
        return [dict(attack=a, param="eps", value=e, steps=None) for a in ("apgd_ce", "apgd_dlr")
                for e in _linf_budgets(dataset)]
    if suite == "worst_case":
        eps = _linf_budgets(dataset) if worst_case_suite == "linf" else \
            WORST_CASE_EPS["l2"][_presets.paper_dataset(dataset)]
        return [dict(attack="worst_case", param="eps", value=e, steps=None) for e in eps]
    if suite == "smoothness":
        return [dict(attack="smoothness", param="r", value=r, steps=None) for r in SMOOTHNESS_RADII]
    if suite == "blackbox":  # every L-inf budget of the white-box rows (MNIST: 0.1, 0.15, 0.2)
        eps = sorted({r["value"] for r in _presets.preset(dataset, "whitebox") if r["param"] == "eps"})
        return [dict(attack="transfer", param="eps", value=e, steps=None) for e in eps]
    return [dict(r) for r in _presets.preset(dataset, suite)]


def _cw_check(ensemble, x, y, spec, rows) -> dict:
    """CW-L2 at the largest preset ``c`` on ``spec.cw_check_points`` evenly spaced points, at the
    spec's steps and doubled (:func:`cw_convergence`), reusing the CW row's accuracy when that
    row ran on the same points."""
    n = len(x)
    k = min(int(spec.cw_check_points), n)
    cw_rows = [r for r in _presets.preset(spec.dataset, "whitebox") if r["attack"] == "cw"]
    top = max(cw_rows, key=lambda r: r["value"])
    steps = spec.cw_steps or _presets.attack_kwargs(top)[1]["steps"]
    same = [r for r in rows if r.get("attack") == "cw" and r.get("value") == top["value"]
            and len(r.get("correct", "")) == k and (spec.cw_n_test or n) == k]
    sub = spread_indices(n, k)  # the CW rows' own points when cw_n_test = k
    return cw_convergence(ensemble, x[sub], y[sub], c=top["value"], steps=int(steps), kappa=0.1,
                          lr=0.01, stop_on_success=True,
                          base_accuracy=same[0]["accuracy"] if same else None)


def whitebox_suite(ensemble, x, y, spec, ctx) -> dict:
    """The paper's attacks per row (CW on ``spec.cw_n_test`` evenly spaced points when set: its
    per-point cost is 10-100x PGD's), then the CW convergence check when the rows have CW."""
    over = {"cw": {"stop_on_success": True, **({"steps": int(spec.cw_steps)} if spec.cw_steps else {})}}
    kw = dict(restarts=spec.restarts, seed=spec.seed, batch_size=spec.batch_size, progress=ctx.progress,
              overrides=over)
    rows = list(spec.rows)
    is_cw = [r["attack"] == "cw" for r in rows]
    if spec.cw_n_test is None or not any(is_cw):
        out = whitebox_table(ensemble, x, y, rows, **kw)
    else:
        cw_n = int(spec.cw_n_test)
        if not 1 <= cw_n <= len(x):
            raise ValueError(f"cw_n_test={cw_n!r} is outside the allowed range [1, {len(x)}] "
                             f"(the points of this evaluation)")
        sub = spread_indices(len(x), cw_n)
        other = iter(whitebox_table(ensemble, x, y, [r for r, c in zip(rows, is_cw) if not c], **kw))
        cw = iter(whitebox_table(ensemble, x[sub], y[sub], [r for r, c in zip(rows, is_cw) if c], **kw))
        out = [{**next(cw), "n_test": cw_n} if c else next(other) for c in is_cw]
    metrics = {"rows": out}
    if spec.cw_check_points and any(is_cw):
        metrics["cw_convergence"] = _cw_check(ensemble, x, y, spec, out)
    return metrics


def worst_case_suite(ensemble, x, y, spec, ctx) -> dict:
    """:func:`worst_case_table` at each row's budget with ``spec.worst_case_suite``."""
    hi = 1.0 if spec.worst_case_suite == "linf" else 1e3
    _check_row_values(spec.rows, "eps", hi, f"worst_case rows need a budget in (0, {hi:g}] for "
                      f"suite {spec.worst_case_suite!r}")
    rows = worst_case_table(ensemble, x, y, [r["value"] for r in spec.rows], suite=spec.worst_case_suite,
                            overrides=spec.worst_case_overrides, seed=spec.seed,
                            batch_size=spec.batch_size, progress=ctx.progress, log=ctx.log)
    return {"rows": rows, "worst_case_suite": spec.worst_case_suite}


def audit_suite(ensemble, x, y, spec, ctx) -> dict:
    """APGD-CE / APGD-DLR rows, then :func:`trs_lib.audit.audit`'s checks at the largest budget,
    whose Square check adds the audit's number: a ``worst_case:linf/eps=<v>`` row (the white-box
    worst case and Square, per point)."""
    over = {a: {"steps": int(spec.audit_steps)} for a in ("apgd_ce", "apgd_dlr")}
    rows = whitebox_table(ensemble, x, y, spec.rows, restarts=spec.restarts, seed=spec.seed,
                          batch_size=spec.batch_size, progress=ctx.progress, overrides=over)
    metrics = {"rows": rows}
    eps = max([r["value"] for r in spec.rows if r["param"] == "eps"], default=None)
    if eps is None:
        return metrics
    pre = {r["attack"]: r["accuracy"] for r in rows if r["value"] == eps and r["attack"] in ("apgd_ce", "apgd_dlr")}
    metrics["audit_eps"] = eps
    metrics["checks"] = audit(ensemble, x, y, eps=eps, surrogate=ctx.surrogate, seed=spec.seed,
                              batch_size=spec.batch_size, progress=ctx.progress, precomputed=pre,
                              apgd_steps=int(spec.audit_steps), more_steps=spec.audit_more_steps,
                              more_restarts=int(spec.audit_more_restarts),
                              strong_steps=int(spec.audit_strong_steps),
                              square_queries=int(spec.audit_square_queries),
                              surrogate_data=None if ctx.surrogate is not None else
                              _surrogate_data(spec.dataset, int(spec.audit_surrogate_n), x.device))
    sq = next((c for c in metrics["checks"] if c["check"] == "square"), None)
    if sq is not None:
        v = sq["values"]
        ok = torch.tensor([c == "1" for c in v["combined_correct"]])
        bp = v["broken_by_point"]
        row = {"key": f"worst_case:linf/eps={float(eps):g}", "attack": "worst_case", "param": "eps",
               "value": float(eps), "steps": None, "suite": "linf", **interval_fields(ok),
               "suite_attacks": v["suite_attacks"],
               "broken_by": {a: sum(b == a for b in bp) for a in v["suite_attacks"]},
               "broken_by_point": bp}
        rows.append(row)
        metrics["audit_worst_case"] = {"eps": eps, "accuracy": row["accuracy"], "ci95": row["ci95"]}
    return metrics


def transfer_suite(ensemble, x, y, spec, ctx) -> dict:
    """One member-to-member transfer matrix per row (``spec.transfer_steps`` for the iterative
    attacks whose row leaves the steps open)."""
    rows = []
    for row in spec.rows:
        name, kw = _presets.attack_kwargs(row)
        if spec.transfer_steps and name != "fgsm" and row.get("steps") is None:
            kw["steps"] = int(spec.transfer_steps)
        res = transfer_matrix(ensemble, x, y, name, batch_size=spec.batch_size, progress=ctx.progress,
                              seed=spec.seed, **kw)
        rows.append({"key": row.get("key") or row_key(row), "attack": name, "param": row["param"],
                     "value": row["value"], "steps": row.get("steps"),
                     **{k: res[k] for k in ("matrix", "ensemble_row", "batch_size")}})
    return {"rows": rows}


def ila_suite(ensemble, x, y, spec, ctx) -> dict:
    """The ILA table per row (crafted on member 1), and the layer sweep at the largest budget
    when ``spec.ila_sweep``."""
    rows = []
    for row in spec.rows:
        res = ila_table(ensemble, x, y, eps=float(row["value"]), steps=int(row.get("steps") or 10),
                        batch_size=spec.batch_size, progress=ctx.progress)
        rows.append({"key": row.get("key") or row_key(row), "attack": "ila", "param": "eps",
                     "value": row["value"], "steps": res["steps"],
                     "accuracy_by_model": res["accuracy_by_model"],
                     "accuracy": res["accuracy_by_model"]["ensemble"],
                     "correct": res["correct"], "ci95": res["ci95"], "layer": res["layer"],
                     "accuracy_by_model_guide": res["accuracy_by_model_guide"],
                     "accuracy_by_model_best": res["accuracy_by_model_best"],
                     "best_of": res["best_of"], "batch_size": res["batch_size"]})
    metrics = {"rows": rows}
    if spec.ila_sweep and rows:
        eps = max(r["value"] for r in rows)
        metrics["ila_layer_sweep"] = {"eps": eps, "rows": ila_layer_sweep(ensemble, x, y, eps=eps, steps=10)}
    return metrics


def smoothness_suite(ensemble, x, y, spec, ctx) -> dict:
    """:func:`smoothness_table` at each row's radius."""
    _check_row_values(spec.rows, "r", math.inf, "smoothness rows need a positive finite radius")
    return {"rows": smoothness_table(ensemble, x, y, [r["value"] for r in spec.rows], seed=spec.seed,
                                     batch_size=spec.batch_size)}


def blackbox_suite(ensemble, x, y, spec, ctx) -> dict:
    """Transfer from ``ctx.surrogates`` with ``spec.transfer_attacks`` (None: the default plan of
    :mod:`trs_lib.transfer`) at each row's budget: per point robust only if it survives every
    (surrogate, attack) pair; the examples are crafted once per surrogate and cached."""
    if not ctx.surrogates:
        raise ValueError("the blackbox suite needs surrogates (SuiteContext.surrogates, e.g. from "
                         "trs_lib.surrogates.surrogate_ensembles); got none")
    _check_row_values(spec.rows, "eps", 1.0, "blackbox rows need a budget in (0, 1]")
    attacks = DEFAULT_ATTACKS if spec.transfer_attacks is None else tuple((a, {}) for a in spec.transfer_attacks)
    rows = transfer_rows(ensemble, x, y, ctx.surrogates, attacks, [r["value"] for r in spec.rows],
                         ctx.cache_dir or runs_dir() / "transfer_cache", batch_size=spec.batch_size,
                         log=ctx.log)
    return {"rows": rows, "surrogates": sorted(ctx.surrogates)}


#: the evaluation suites by name (:class:`trs_lib.evaluate.EvalSpec`'s ``suite``)
SUITES: dict[str, Callable] = {"whitebox": whitebox_suite, "audit": audit_suite, "transfer": transfer_suite,
                               "ila": ila_suite, "worst_case": worst_case_suite, "smoothness": smoothness_suite,
                               "blackbox": blackbox_suite}
