"""Evaluation of ensembles: clean accuracy, gradient alignment, and robustness under attack.

* ``clean_accuracy``, ``member_accuracies``, ``gradient_cosine``: used by the trainer each epoch.
* ``robust_accuracy``: accuracy under an attack of ``trs_lib.attacks``, a point counting as robust
  only if it is correct clean and survives every one of R random restarts (Tables 1-5).
* ``transfer_matrix``: cell (i, j) = accuracy of member i on examples crafted against member j
  (Figures 2-4); ``ila_table``: ILA crafted on member 1, accuracy of every member and the
  ensemble (Table 6); ``whitebox_table`` and ``evaluate_suite``: rows of presets at once (what
  ``notebooks/evaluate.ipynb`` and the reproduction grid call).

Everything is batched on the ensemble's device; ``batch_size`` bounds the memory, and the attack
functions halve it on CUDA out-of-memory errors (``run_batched``) and report the size used.
"""
from __future__ import annotations

import math
import time

import torch

from . import data
from . import trs as T
from .attacks import presets as _presets
from .audit import audit
from .member_transfer import ila_layer_sweep, ila_table, member_correct, transfer_matrix
from .paper_numbers import row_key
from .theory.estimators import input_gradient, local_smoothness
from .worst_case import SUITES as _WC
from .worst_case import (_correct, attack_batched, device_of,  # noqa: F401
                         interval_fields, robust_accuracy, run_batched, worst_case)

__all__ = ["predict_logits", "clean_accuracy", "member_accuracies", "gradient_cosine",
           "device_of"]


@torch.no_grad()
def predict_logits(model, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """``model(x)`` in batches (halved on CUDA OOM), on the model's device."""
    dev = device_of(model)
    outs, _ = run_batched(lambda a, b: model(x[a:b].to(dev)), len(x), batch_size)
    return torch.cat(outs)


def clean_accuracy(model, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Fraction of ``x`` that ``model`` classifies as ``y`` (argmax of logits or log-probs)."""
    return _correct(model, x, y, batch_size)[0].float().mean().item()


def member_accuracies(ensemble, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> dict:
    """Clean accuracy of every member and of the ensemble, from one pass of member logits."""
    acc = member_correct(ensemble, x, y, batch_size)[0].float().mean(1).tolist()
    return {"members": acc[:-1], "ensemble": acc[-1]}


def gradient_cosine(ensemble, x: torch.Tensor, y: torch.Tensor, batch_size: int = 250) -> dict:
    """Cosine of the members' input-loss gradients over ``x``, per pair and overall.

    Returns ``mean_abs_cos`` (mean over pairs and points of |cos|), ``mean_cos`` and the
    per-pair means ``pairs`` (list of ``[j, k, mean cos]``). Needs at least 2 members.
    """
    dev = device_of(ensemble)
    was_training = ensemble.training
    ensemble.eval()
    cos = []
    try:
        for i in range(0, len(x), batch_size):
            _, g = T.input_gradients(ensemble.member_logits, x[i:i + batch_size].to(dev),
                                     y[i:i + batch_size].to(dev), create_graph=False)
            cos.append(T.pairwise_cosine(g).detach())
    finally:
        ensemble.train(was_training)
    cos = torch.cat(cos, dim=1)  # (P, B)
    j, k = T.pair_indices(ensemble.num_members)
    pairs = [[int(a), int(b), float(c)] for a, b, c in zip(j, k, cos.mean(1))]
    return {"mean_abs_cos": cos.abs().mean().item(), "mean_cos": cos.mean().item(), "pairs": pairs}


# ------------------------------------------------------------------------ robustness
# Robust accuracy, transfer matrices and the ILA table, batched on the model's device. Every
# function that runs attacks catches CUDA out-of-memory, halves its batch and goes on from the
# batch that failed, and reports the batch size it finished with (``batch_size`` in the result).

__all__ += ["run_batched", "attack_batched", "robust_accuracy", "transfer_matrix", "ila_table",
            "ila_layer_sweep", "cw_convergence", "spread_indices", "whitebox_table", "worst_case_table", "worst_case",
            "evaluate_suite", "smoothness_table", "SUITES", "WORST_CASE_EPS", "SMOOTHNESS_RADII"]

SUITES = ("whitebox", "audit", "transfer", "ila", "worst_case", "smoothness")
#: radii (L2, pixel units) of the ``smoothness`` suite's rows (:mod:`trs_lib.attacks.presets`)
SMOOTHNESS_RADII = _presets.SMOOTHNESS_RADII

#: default budgets of the worst-case suites per paper data set when no rows are given (L-inf: the
#: whitebox presets' budgets; L2: the usual MNIST / CIFAR-10 L2 budgets of RobustBench-style work).
WORST_CASE_EPS = {"l2": {"mnist": (1.5,), "cifar10": (0.5,)}}


def spread_indices(n: int, k: int) -> torch.Tensor:
    """Indices of ``k`` evenly spaced points among ``n`` (first and last included; ``k <= n``):
    the test points of every evaluation (``notebooks/evaluate``, :func:`trs_lib.companion.zoo.eval_points`)
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


def _fraction_ok(v) -> bool:
    return isinstance(v, float) and math.isfinite(v) and 0.0 <= v <= 1.0


def evaluate_suite(ensemble, x: torch.Tensor, y: torch.Tensor, suite: str, rows=None, settings=None,
                   *, surrogate=None, dataset: str = "mnist5k", progress: bool = True, log=print) -> dict:
    """One evaluation suite (the unit of ``notebooks/evaluate.ipynb`` and of ``trs_lib.companion.grid``).

    * ``whitebox``: robust accuracy of the ensemble per row (CW steps from ``settings["cw_steps"]``).
    * ``audit``: APGD-CE / APGD-DLR rows (``settings["audit_steps"]``) and the sanity checks of
      :func:`trs_lib.audit.audit` at the largest L-inf budget of the rows, plus the audit's number:
      a ``worst_case:linf/eps=<v>`` row (white-box worst case and Square, per point).
    * ``worst_case``: :func:`worst_case_table` at each row's budget, suite
      ``settings["worst_case_suite"]`` (``linf`` or ``l2``), ``settings["worst_case_overrides"]``.
    * ``transfer``: one member-to-member matrix per row.
    * ``ila``: the ILA table per row (crafted on member 1).

    ``rows`` default to the presets of ``dataset``; ``settings`` keys: ``n_test`` (used by the
    caller), ``seed``, ``restarts``, ``cw_steps``, ``cw_n_test`` (CW rows on that many evenly
    spaced points, :func:`spread_indices`; their rows say ``n_test``), ``audit_steps``, ``transfer_steps``,
    ``batch_size``, ``audit_more_steps``, ``audit_more_restarts``, ``audit_strong_steps``. ``surrogate``: an independently
    trained ensemble for the audit's transfer check (skipped without one). Returns metrics with ``rows`` (each with ``key`` and ``accuracy`` or
    ``matrix`` / ``accuracy_by_model``), ``clean_accuracy`` and ``member_clean_accuracy``.
    """
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; valid suites: {list(SUITES)}")
    s = dict(settings or {})
    wc_suite = s.get("worst_case_suite", "linf")
    if wc_suite not in _WC:
        raise ValueError(f"unknown worst_case_suite {wc_suite!r}; valid suites: {sorted(_WC)}")
    seed, bs = int(s.get("seed", 0)), int(s.get("batch_size", 256))
    if rows is None:
        if suite == "audit":
            eps = sorted({r["value"] for r in _presets.preset(dataset, "whitebox") if r["param"] == "eps"})
            rows = [dict(attack=a, param="eps", value=e, steps=None) for a in ("apgd_ce", "apgd_dlr") for e in eps]
        elif suite == "worst_case":
            if wc_suite == "linf":
                eps = sorted({r["value"] for r in _presets.preset(dataset, "whitebox")
                              if r["param"] == "eps" and r["attack"] != "fgsm"})
            else:
                eps = WORST_CASE_EPS["l2"][_presets.paper_dataset(dataset)]
            rows = [dict(attack="worst_case", param="eps", value=e, steps=None) for e in eps]
        elif suite == "smoothness":
            rows = [dict(attack="smoothness", param="r", value=r, steps=None) for r in SMOOTHNESS_RADII]
        else:
            rows = _presets.preset(dataset, suite)
    rows = [dict(r) for r in rows]
    if suite == "smoothness":  # radii and budgets checked before any work
        _check_row_values(rows, "r", math.inf, "smoothness rows need a positive finite radius")
    if suite == "worst_case":
        hi = 1.0 if wc_suite == "linf" else 1e3
        _check_row_values(rows, "eps", hi, f"worst_case rows need a budget in (0, {hi:g}] for suite {wc_suite!r}")
    clean = member_accuracies(ensemble, x, y)
    metrics = {"suite": suite, "n_test": len(x), "clean_accuracy": clean["ensemble"],
               "member_clean_accuracy": clean["members"], "rows": []}
    if suite == "whitebox":
        over = {"cw": {"steps": int(s["cw_steps"]), "stop_on_success": True}} if s.get("cw_steps") else \
            {"cw": {"stop_on_success": True}}
        kw = dict(restarts=int(s.get("restarts", 1)), seed=seed, batch_size=bs, progress=progress,
                  overrides=over)
        cw_n = s.get("cw_n_test")
        if cw_n is None:
            metrics["rows"] = whitebox_table(ensemble, x, y, rows, **kw)
        else:  # CW on an evenly spaced subset (its per-point cost is 10-100x PGD's)
            cw_n = int(cw_n)
            if not 1 <= cw_n <= len(x):
                raise ValueError(f"cw_n_test={cw_n!r} is outside the allowed range [1, {len(x)}] "
                                 f"(the points of this evaluation)")
            sub = spread_indices(len(x), cw_n)
            is_cw = [r["attack"] == "cw" for r in rows]
            other = iter(whitebox_table(ensemble, x, y, [r for r, c in zip(rows, is_cw) if not c], **kw))
            cw_rows = iter(whitebox_table(ensemble, x[sub], y[sub], [r for r, c in zip(rows, is_cw) if c], **kw))
            metrics["rows"] = [{**next(cw_rows), "n_test": cw_n} if c else next(other) for c in is_cw]
    elif suite == "audit":
        over = {a: {"steps": int(s["audit_steps"])} for a in ("apgd_ce", "apgd_dlr")} if s.get("audit_steps") else {}
        metrics["rows"] = whitebox_table(ensemble, x, y, rows, restarts=int(s.get("restarts", 1)), seed=seed,
                                         batch_size=bs, progress=progress, overrides=over)
        eps = max([r["value"] for r in rows if r["param"] == "eps"], default=None)
        if eps is not None:
            pre = {r["attack"]: r["accuracy"] for r in metrics["rows"]
                   if r["value"] == eps and r["attack"] in ("apgd_ce", "apgd_dlr")}
            metrics["audit_eps"] = eps
            metrics["checks"] = audit(ensemble, x, y, eps=eps, surrogate=surrogate, seed=seed,
                                      batch_size=bs, progress=progress, precomputed=pre,
                                      apgd_steps=int(s.get("audit_steps", 100)),
                                      more_steps=s.get("audit_more_steps"),
                                      more_restarts=int(s.get("audit_more_restarts", 5)),
                                      strong_steps=int(s.get("audit_strong_steps", 40)),
                                      square_queries=int(s.get("audit_square_queries", 1000)),
                                      surrogate_data=None if surrogate is not None else
                                      _surrogate_data(dataset, int(s.get("audit_surrogate_n", 2000)), x.device))
            sq = next((c for c in metrics["checks"] if c["check"] == "square"), None)
            if sq is not None:  # the audit's number: the per-sample worst case (white-box suite + Square)
                v = sq["values"]
                ok = torch.tensor([c == "1" for c in v["combined_correct"]])
                bp = v["broken_by_point"]
                row = {"key": f"worst_case:linf/eps={float(eps):g}", "attack": "worst_case", "param": "eps",
                       "value": float(eps), "steps": None, "suite": "linf", **interval_fields(ok),
                       "suite_attacks": v["suite_attacks"],
                       "broken_by": {a: sum(b == a for b in bp) for a in v["suite_attacks"]},
                       "broken_by_point": bp}
                metrics["rows"].append(row)
                metrics["audit_worst_case"] = {"eps": eps, "accuracy": row["accuracy"], "ci95": row["ci95"]}
    elif suite == "smoothness":
        metrics["rows"] = smoothness_table(ensemble, x, y, [r["value"] for r in rows], seed=seed,
                                           batch_size=bs)
    elif suite == "worst_case":
        metrics["worst_case_suite"] = wc_suite
        metrics["rows"] = worst_case_table(ensemble, x, y, [r["value"] for r in rows], suite=wc_suite,
                                           overrides=s.get("worst_case_overrides"), seed=seed,
                                           batch_size=bs, progress=progress, log=log)
    elif suite == "transfer":
        for row in rows:
            name, kw = _presets.attack_kwargs(row)
            if s.get("transfer_steps") and name != "fgsm" and row.get("steps") is None:
                kw["steps"] = int(s["transfer_steps"])
            res = transfer_matrix(ensemble, x, y, name, batch_size=bs, progress=progress, seed=seed, **kw)
            metrics["rows"].append({"key": row.get("key") or row_key(row), "attack": name,
                                    "param": row["param"], "value": row["value"], "steps": row.get("steps"),
                                    **{k: res[k] for k in ("matrix", "ensemble_row", "batch_size")}})
    else:  # ila
        for row in rows:
            res = ila_table(ensemble, x, y, eps=float(row["value"]), steps=int(row.get("steps") or 10),
                            batch_size=bs, progress=progress)
            metrics["rows"].append({"key": row.get("key") or row_key(row), "attack": "ila",
                                    "param": "eps", "value": row["value"], "steps": res["steps"],
                                    "accuracy_by_model": res["accuracy_by_model"],
                                    "accuracy": res["accuracy_by_model"]["ensemble"],
                                    "correct": res["correct"], "ci95": res["ci95"], "layer": res["layer"],
                                    "accuracy_by_model_guide": res["accuracy_by_model_guide"],
                                    "accuracy_by_model_best": res["accuracy_by_model_best"],
                                    "best_of": res["best_of"], "batch_size": res["batch_size"]})
    missing = [r.get("key") for r in metrics["rows"] if "accuracy" in r and not ("correct" in r and "ci95" in r)]
    if missing:
        raise RuntimeError(f"rows {missing} have an accuracy without 'correct' and 'ci95'")
    bad = [r.get("key") for r in metrics["rows"] if "accuracy" in r and not _fraction_ok(r["accuracy"])]
    if bad:
        raise FloatingPointError(f"rows {bad} gave accuracies outside [0, 1]")
    return metrics
