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

import torch

from . import trs as T

__all__ = ["predict_logits", "clean_accuracy", "member_accuracies", "gradient_cosine",
           "device_of"]


def device_of(model: torch.nn.Module) -> torch.device:
    """The device of a model's first parameter or buffer (CPU for a model with neither)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


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
    acc = _member_correct(ensemble, x, y, batch_size)[0].float().mean(1).tolist()
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


# ------------------------------------------------------------------------ robustness (issue 3)
# Robust accuracy, transfer matrices and the ILA table, batched on the model's device. Every
# function that runs attacks catches CUDA out-of-memory, halves its batch and goes on from the
# batch that failed, and reports the batch size it finished with (``batch_size`` in the result).

import inspect  # noqa: E402
import math  # noqa: E402

from .attacks import get as get_attack  # noqa: E402
from .attacks import presets as _presets  # noqa: E402

__all__ += ["run_batched", "attack_batched", "robust_accuracy", "transfer_matrix", "ila_table",
            "whitebox_table", "evaluate_suite", "SUITES"]

SUITES = ("whitebox", "audit", "transfer", "ila")


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
    Returns ``accuracy``, ``clean_accuracy``, ``per_restart`` (accuracy after each restart),
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
    clean = robust.float().mean().item()
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
        per_restart.append(robust.float().mean().item())
    return {"attack": name, "params": {k: v for k, v in params.items()}, "accuracy": per_restart[-1] if per_restart else clean,
            "clean_accuracy": clean, "per_restart": per_restart, "robust": robust.tolist(),
            "n": len(x), "restarts": runs, "batch_size": bs, "wall_s": round(time.perf_counter() - t0, 3)}


@torch.no_grad()
def _member_correct(ensemble, x, y, batch_size):
    """(N+1, B) bool: every member's correctness, then the ensemble's (one member pass)."""
    dev = device_of(ensemble)

    def one(a, b):
        logits = ensemble.member_logits(x[a:b].to(dev))
        yy = y[a:b].to(dev)
        rows = [(logits.argmax(-1) == yy), (ensemble.combine_member_logits(logits).argmax(-1) == yy)[None]]
        return torch.cat(rows).cpu()

    outs, bs = run_batched(one, len(x), batch_size)
    return torch.cat(outs, dim=1), bs


def transfer_matrix(ensemble, x: torch.Tensor, y: torch.Tensor, attack="pgd", *, batch_size: int = 256,
                    progress: bool = True, seed: int = 0, **params) -> dict:
    """Member-to-member transferability (Figures 2-4 of the paper).

    ``matrix[i][j]`` is the accuracy of member ``i`` on adversarial examples crafted against
    member ``j`` alone (white-box on the diagonal). ``ensemble_row[j]``: accuracy of the whole
    ensemble on the examples crafted against member ``j``. Accuracies are fractions.
    """
    name, fn = _resolve(attack)
    n_members = ensemble.num_members
    mat, ens_row, bs = [], [], batch_size
    for j in range(n_members):
        kw = dict(params)
        if _takes(fn, "generator"):
            kw["generator"] = torch.Generator().manual_seed(seed + j)
        x_adv, bs = attack_batched(fn, ensemble.member(j), x, y, batch_size=bs, progress=progress,
                                   desc=f"{name} on member {j + 1}", **kw)
        correct, bs = _member_correct(ensemble, x_adv, y, bs)
        acc = correct.float().mean(1).tolist()
        mat.append(acc[:n_members])
        ens_row.append(acc[n_members])
    matrix = [[mat[j][i] for j in range(n_members)] for i in range(n_members)]  # [evaluated][crafted]
    return {"attack": name, "params": dict(params), "matrix": matrix, "ensemble_row": ens_row,
            "n": len(x), "batch_size": bs}


def ila_table(ensemble, x: torch.Tensor, y: torch.Tensor, *, eps: float, source: int = 0,
              steps: int = 10, batch_size: int = 256, progress: bool = True, **params) -> dict:
    """Table 6: ILA crafted on member ``source`` (0 = the paper's sub-model 1), then the accuracy
    of every member and of the ensemble on it. ``accuracy_by_model`` keys: ``member1``..., ``ensemble``."""
    if not isinstance(source, int) or not 0 <= source < ensemble.num_members:
        raise ValueError(f"source must be a member index in [0, {ensemble.num_members - 1}], got {source!r}")
    x_adv, bs = attack_batched("ila", ensemble.member(source), x, y, batch_size=batch_size,
                               progress=progress, desc=f"ila on member {source + 1}",
                               eps=eps, steps=steps, **params)
    correct, bs = _member_correct(ensemble, x_adv, y, bs)
    acc = correct.float().mean(1).tolist()
    by = {f"member{k + 1}": acc[k] for k in range(ensemble.num_members)}
    by["ensemble"] = acc[-1]
    return {"attack": "ila", "eps": eps, "steps": steps, "source": source,
            "accuracy_by_model": by, "n": len(x), "batch_size": bs}


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
        out.append({"key": row.get("key") or _presets.row_key(row), **{k: row.get(k) for k in ("attack", "param", "value", "steps")},
                    "accuracy": res["accuracy"], "clean_accuracy": res["clean_accuracy"],
                    "per_restart": res["per_restart"], "restarts": res["restarts"],
                    "kwargs": kw, "batch_size": res["batch_size"], "wall_s": res["wall_s"]})
    return out


def _fraction_ok(v) -> bool:
    return isinstance(v, float) and math.isfinite(v) and 0.0 <= v <= 1.0


def evaluate_suite(ensemble, x: torch.Tensor, y: torch.Tensor, suite: str, rows=None, settings=None,
                   *, surrogate=None, dataset: str = "mnist5k", progress: bool = True, log=print) -> dict:
    """One evaluation suite (the unit of ``notebooks/evaluate.ipynb`` and of ``trs_lib.grid``).

    * ``whitebox``: robust accuracy of the ensemble per row (CW steps from ``settings["cw_steps"]``).
    * ``audit``: APGD-CE / APGD-DLR rows (``settings["audit_steps"]``) and the sanity checks of
      :func:`trs_lib.audit.audit` at the largest L-inf budget of the rows.
    * ``transfer``: one member-to-member matrix per row.
    * ``ila``: the ILA table per row (crafted on member 1).

    ``rows`` default to the presets of ``dataset``; ``settings`` keys: ``n_test`` (used by the
    caller), ``seed``, ``restarts``, ``cw_steps``, ``audit_steps``, ``transfer_steps``,
    ``batch_size``, ``audit_more_steps``, ``audit_more_restarts``, ``audit_strong_steps``. ``surrogate``: an independently
    trained ensemble for the audit's transfer check (skipped without one). Returns metrics with ``rows`` (each with ``key`` and ``accuracy`` or
    ``matrix`` / ``accuracy_by_model``), ``clean_accuracy`` and ``member_clean_accuracy``.
    """
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; valid suites: {list(SUITES)}")
    s = dict(settings or {})
    seed, bs = int(s.get("seed", 0)), int(s.get("batch_size", 256))
    if rows is None:
        if suite == "audit":
            eps = sorted({r["value"] for r in _presets.preset(dataset, "whitebox") if r["param"] == "eps"})
            rows = [dict(attack=a, param="eps", value=e, steps=None) for a in ("apgd_ce", "apgd_dlr") for e in eps]
        else:
            rows = _presets.preset(dataset, suite)
    rows = [dict(r) for r in rows]
    clean = member_accuracies(ensemble, x, y)
    metrics = {"suite": suite, "n_test": len(x), "clean_accuracy": clean["ensemble"],
               "member_clean_accuracy": clean["members"], "rows": []}
    if suite == "whitebox":
        over = {"cw": {"steps": int(s["cw_steps"]), "stop_on_success": True}} if s.get("cw_steps") else \
            {"cw": {"stop_on_success": True}}
        metrics["rows"] = whitebox_table(ensemble, x, y, rows, restarts=int(s.get("restarts", 1)), seed=seed,
                                         batch_size=bs, progress=progress, overrides=over)
    elif suite == "audit":
        over = {a: {"steps": int(s["audit_steps"])} for a in ("apgd_ce", "apgd_dlr")} if s.get("audit_steps") else {}
        metrics["rows"] = whitebox_table(ensemble, x, y, rows, restarts=int(s.get("restarts", 1)), seed=seed,
                                         batch_size=bs, progress=progress, overrides=over)
        from .audit import audit
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
                                      strong_steps=int(s.get("audit_strong_steps", 40)))
    elif suite == "transfer":
        for row in rows:
            name, kw = _presets.attack_kwargs(row)
            if s.get("transfer_steps") and name != "fgsm" and row.get("steps") is None:
                kw["steps"] = int(s["transfer_steps"])
            res = transfer_matrix(ensemble, x, y, name, batch_size=bs, progress=progress, seed=seed, **kw)
            metrics["rows"].append({"key": row.get("key") or _presets.row_key(row), "attack": name,
                                    "param": row["param"], "value": row["value"], "steps": row.get("steps"),
                                    **{k: res[k] for k in ("matrix", "ensemble_row", "batch_size")}})
    else:  # ila
        for row in rows:
            res = ila_table(ensemble, x, y, eps=float(row["value"]), steps=int(row.get("steps") or 10),
                            batch_size=bs, progress=progress)
            metrics["rows"].append({"key": row.get("key") or _presets.row_key(row), "attack": "ila",
                                    "param": "eps", "value": row["value"], "steps": res["steps"],
                                    "accuracy_by_model": res["accuracy_by_model"],
                                    "accuracy": res["accuracy_by_model"]["ensemble"],
                                    "batch_size": res["batch_size"]})
    bad = [r.get("key") for r in metrics["rows"] if "accuracy" in r and not _fraction_ok(r["accuracy"])]
    if bad:
        raise FloatingPointError(f"rows {bad} gave accuracies outside [0, 1]")
    return metrics
