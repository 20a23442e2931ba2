"""Transfer worst case: robust accuracy against examples crafted on models the target never saw.

The threat model TRS was built for (Sec. 1 and 3 of the paper: orthogonal, smooth members make
an example crafted on one model fail on another; LOTOS, ICLR 2025, reports black-box transfer
from independently trained surrogates). For each (surrogate, attack, eps) the adversarial
examples are crafted once and cached on disk under a content hash (the surrogate's weights, the
attack's name and full settings, eps, the points, the batch size), so they are reused for every
target ensemble: a new column costs only forward passes (``torch.inference_mode``).

A point counts as robust only if the target classifies it correctly clean and on the examples
of *every* (surrogate, attack) pair, as :func:`trs_lib.worst_case.worst_case` for white-box
attacks; the result says which pair broke each point. :func:`transfer_suite` gives one row per
budget keyed like the white-box worst case (``transfer:linf/eps=0.1``).
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .atomic import atomic_write_bytes
from .attacks.transfer_attacks import TRANSFER_ATTACKS, applies_to, attack_settings, transfer_attack
from .paper_numbers import row_key
from .worst_case import device_of, interval_fields, run_batched, within_budget

__all__ = ["weights_hash", "points_hash", "craft_key", "craft", "check_plan", "transfer_worst_case",
           "transfer_suite", "transfer_rows", "suite_row_key", "DEFAULT_ATTACKS", "SUITE_NAME"]

#: the evaluation suite's name (``transfer`` is taken: member-to-member matrices, Figures 2-3)
SUITE_NAME = "blackbox"

#: the default attack plan: (name, settings) of :mod:`trs_lib.attacks.transfer_attacks`
DEFAULT_ATTACKS = tuple((n, {}) for n in ("mi_fgsm", "di_fgsm", "ti_fgsm", "ni_fgsm", "si_ni_fgsm",
                                          "vmi_fgsm", "admix", "sgm", "ilpd", "fia", "ila"))


def weights_hash(model: torch.nn.Module) -> str:
    """sha256 of the model's state dict (names, dtypes, shapes and bytes, in name order)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def points_hash(x: torch.Tensor, y: torch.Tensor) -> str:
    """sha256 of the points and labels (dtype, shape and bytes)."""
    h = hashlib.sha256()
    for t in (x, y):
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def craft_key(surrogate_hash: str, attack: str, settings: dict, eps: float, pts_hash: str,
              batch_size: int) -> str:
    """The cache key of one crafting (a sha256 of everything the examples depend on)."""
    blob = json.dumps({"surrogate": surrogate_hash, "attack": attack, "settings": settings,
                       "eps": float(eps), "points": pts_hash, "batch_size": batch_size},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def craft(surrogate, attack: str, x: torch.Tensor, y: torch.Tensor, *, eps: float, cache_dir,
          settings: dict | None = None, batch_size: int = 256, log=None):
    """Adversarial examples of ``attack`` on ``surrogate`` for all of ``x``, from the cache when
    present. Returns ``(x_adv on x's device, info)``, ``info``: ``key``, ``path``, ``hit`` (bool),
    ``wall_s``. Batch ``b`` (from point ``a``) is crafted with ``seed + a``."""
    s = attack_settings(attack, **(settings or {}))
    key = craft_key(weights_hash(surrogate), attack, s, eps, points_hash(x, y), batch_size)
    path = Path(cache_dir) / f"{attack}-{key[:24]}.safetensors"
    t0 = time.perf_counter()
    if path.is_file():
        blob = st_load(path.read_bytes())
        x_adv = blob["x_adv"].to(x.device, x.dtype)
        if x_adv.shape == x.shape and bytes(blob["key"].numpy()).decode() == key:
            return x_adv, {"key": key, "path": str(path), "hit": True,
                           "wall_s": round(time.perf_counter() - t0, 3)}
    dev = device_of(surrogate)
    seed = s.pop("seed")

    def one(a, b):
        return transfer_attack(attack, surrogate, x[a:b].to(dev), y[a:b].to(dev), eps=eps,
                               seed=seed + a, **s).to(x.device)

    outs, _ = run_batched(one, len(x), batch_size)
    x_adv = torch.cat(outs)
    inside = within_budget(x_adv, x, eps, "Linf")
    if not inside.all():
        raise RuntimeError(f"craft: {attack} returned {int((~inside).sum())} examples outside the "
                           f"L-inf ball of radius {eps:g} (a bug of the adapter)")
    key_bytes = torch.frombuffer(bytearray(key.encode()), dtype=torch.uint8)
    atomic_write_bytes(path, st_save({"x_adv": x_adv.detach().cpu().contiguous(), "key": key_bytes}))
    if log is not None:
        log(f"crafted {attack} at eps {eps:g} on {len(x)} points ({time.perf_counter() - t0:.1f} s)")
    return x_adv, {"key": key, "path": str(path), "hit": False,
                   "wall_s": round(time.perf_counter() - t0, 3)}


def _out_shape(model, x1):
    with torch.inference_mode():
        return tuple(model(x1.to(device_of(model))).shape[1:])


def check_plan(target, x, y, surrogates: dict, attacks, eps_list) -> list:
    """Refuse a bad plan before any work, one ValueError naming the value and the allowed ones:
    surrogates not a ``{name: model}`` mapping, unknown attack names or settings, a surrogate
    that does not take the target's inputs or has another class count, eps outside [0, 1] or
    not finite. Returns the plan ``[(attack, settings)]``."""
    if not isinstance(surrogates, dict) or not surrogates:
        raise ValueError(f"surrogates must be a non-empty {{name: model}} mapping "
                         f"(trs_lib.surrogates.surrogate_ensembles builds one), got {surrogates!r}")
    for name, m in surrogates.items():
        if not isinstance(m, torch.nn.Module):
            raise ValueError(f"surrogate {name!r} must be a torch.nn.Module, got {type(m).__name__}; "
                             f"load names with trs_lib.surrogates.surrogate_ensembles")
    plan = []
    for item in attacks:
        name, kw = (item, {}) if isinstance(item, str) else (item[0], dict(item[1]))
        attack_settings(name, **kw)   # unknown attack or parameter: ValueError naming the valid ones
        plan.append((name, kw))
    if not plan:
        raise ValueError(f"attacks is empty; valid attacks: {sorted(TRANSFER_ATTACKS)}")
    for name, _ in plan:
        if not any(applies_to(name, m) for m in surrogates.values()):
            raise ValueError(f"transfer attack {name!r} applies to none of the surrogates "
                             f"{sorted(surrogates)} (SGM needs skip connections: a ResNet)")
    if isinstance(eps_list, (int, float)):
        eps_list = [eps_list]
    for e in eps_list:
        if isinstance(e, bool) or not isinstance(e, (int, float)) or not math.isfinite(e) or not 0 <= e <= 1:
            raise ValueError(f"transfer: eps={e!r} is outside the allowed range [0, 1] (L-inf, "
                             f"finite)")
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"transfer: need as many labels as points (> 0), got len(x)={len(x)}, "
                         f"len(y)={len(y)}")
    want = _out_shape(target, x[:1])
    for name, m in surrogates.items():
        try:
            got = _out_shape(m, x[:1])
        except RuntimeError as err:
            raise ValueError(f"surrogate {name!r} does not take the target's inputs of shape "
                             f"{tuple(x.shape[1:])}: {str(err).splitlines()[0]}") from None
        if got != want:
            raise ValueError(f"surrogate {name!r} outputs shape {got} per point but the target "
                             f"outputs {want}: the class counts differ (allowed: {want[-1]} classes)")
    return plan


@torch.inference_mode()
def _correct(model, x, y, batch_size):
    dev = device_of(model)
    outs, _ = run_batched(lambda a, b: (model(x[a:b].to(dev)).argmax(-1) == y[a:b].to(dev)).cpu(),
                          len(x), batch_size)
    return torch.cat(outs)


def _correct_plain(model, x, y, batch_size):
    """:func:`_correct` as a normal tensor (inference tensors refuse in-place updates)."""
    return _correct(model, x, y, batch_size).clone()


def transfer_worst_case(target, x: torch.Tensor, y: torch.Tensor, *, surrogates: dict, eps: float,
                        attacks=DEFAULT_ATTACKS, cache_dir, batch_size: int = 256, log=None,
                        _plan=None) -> dict:
    """Per-point worst case of ``target`` over every (surrogate, attack) pair at budget ``eps``.

    Returns the white-box worst case's shape: ``accuracy``, ``correct`` ('0'/'1' per point),
    ``ci95`` (Wilson), ``clean_accuracy``, ``norm`` ("Linf"), ``eps``, ``pairs`` (``"surrogate/
    attack"`` in order), ``pair_settings``, ``broken_by`` ({pair: points it broke first}),
    ``broken_by_point`` (per point: the first pair that broke it, ``"clean"`` if misclassified
    clean, None if robust), ``pair_accuracy`` ({pair: target accuracy on that pair's examples
    alone}), ``after_pair`` (accuracy after each pair), ``cache_hit`` ({pair: bool}),
    ``skipped_pairs`` (pairs whose attack does not apply: SGM without skip connections), ``n``,
    ``wall_s_craft``, ``wall_s_eval``, ``wall_s``.
    """
    plan = _plan or check_plan(target, x, y, surrogates, attacks, [eps])
    t0 = time.perf_counter()
    robust = _correct_plain(target, x, y, batch_size)
    clean = int(robust.sum()) / len(robust)
    by_point = [None if r else "clean" for r in robust.tolist()]
    broken_by, pair_acc, after, crafted, settings, skipped = {}, {}, [], {}, {}, []
    t_craft = t_eval = 0.0
    for sname, sur in surrogates.items():
        for aname, kw in plan:
            pair = f"{sname}/{aname}"
            if not applies_to(aname, sur):   # SGM on a surrogate without skip connections
                skipped.append(pair)
                continue
            t1 = time.perf_counter()
            x_adv, info = craft(sur, aname, x, y, eps=eps, cache_dir=cache_dir, settings=kw,
                                batch_size=batch_size, log=log)
            t2 = time.perf_counter()
            ok = _correct(target, x_adv, y, batch_size)
            t_craft, t_eval = t_craft + t2 - t1, t_eval + time.perf_counter() - t2
            newly = (robust & ~ok).nonzero().squeeze(1)
            robust &= ok
            for i in newly.tolist():
                by_point[i] = pair
            broken_by[pair] = int(newly.numel())
            pair_acc[pair] = float(ok.float().mean())
            after.append(int(robust.sum()) / len(robust))
            crafted[pair] = info["hit"]
            settings[pair] = attack_settings(aname, **kw)
    return {**interval_fields(robust), "clean_accuracy": clean, "norm": "Linf", "eps": float(eps),
            "pairs": list(broken_by), "pair_settings": settings, "broken_by": broken_by,
            "broken_by_point": by_point, "pair_accuracy": pair_acc, "after_pair": after,
            "cache_hit": crafted, "skipped_pairs": skipped, "n": len(x), "wall_s_craft": round(t_craft, 3),
            "wall_s_eval": round(t_eval, 3), "wall_s": round(time.perf_counter() - t0, 3)}


def suite_row_key(eps: float) -> str:
    """The row key of the transfer worst case at ``eps``: ``transfer:linf/eps=0.1``
    (:func:`trs_lib.paper_numbers.row_key`, as ``worst_case:linf/eps=0.15``)."""
    return row_key({"attack": "linf", "param": "eps", "value": float(eps)}, prefix="transfer")


def transfer_suite(target, x: torch.Tensor, y: torch.Tensor, surrogates: dict, attacks=DEFAULT_ATTACKS,
                   eps_list=(0.1, 0.15, 0.2), cache_dir=None, *, batch_size: int = 256,
                   log=None) -> dict:
    """The transfer evaluation of one target: ``{suite_row_key(eps): transfer_worst_case(...)}``
    for each eps. ``surrogates``: ``{name: model}`` (:func:`trs_lib.surrogates.
    surrogate_ensembles`); ``attacks``: names or ``(name, settings)`` of
    :data:`trs_lib.attacks.transfer_attacks.TRANSFER_ATTACKS`; ``cache_dir``: where the crafted
    examples are kept (shared by every target). The whole plan is checked before any work."""
    if cache_dir is None:
        raise ValueError("transfer_suite: cache_dir is required (a folder for the crafted examples)")
    plan = check_plan(target, x, y, surrogates, attacks, eps_list)
    eps_list = [eps_list] if isinstance(eps_list, (int, float)) else list(eps_list)
    return {suite_row_key(e): transfer_worst_case(target, x, y, surrogates=surrogates, eps=e,
                                                  attacks=plan, cache_dir=cache_dir,
                                                  batch_size=batch_size, log=log, _plan=plan)
            for e in eps_list}


_ROW_FIELDS = ("accuracy", "correct", "ci95", "clean_accuracy", "pairs", "pair_settings", "broken_by",
               "broken_by_point", "pair_accuracy", "after_pair", "cache_hit", "skipped_pairs",
               "wall_s_craft", "wall_s_eval", "wall_s")


def transfer_rows(target, x, y, surrogates: dict, attacks=DEFAULT_ATTACKS, eps_list=(0.1, 0.15, 0.2),
                  cache_dir=None, *, batch_size: int = 256, log=None) -> list:
    """:func:`transfer_suite` as a list of rows in :func:`trs_lib.evaluate.worst_case_table`'s
    format: ``key`` (``transfer:linf/eps=0.1``), ``attack`` ("transfer"), ``param`` ("eps"),
    ``value``, ``steps`` (None), ``suite`` (:data:`SUITE_NAME`), ``surrogates`` (names) and the
    fields of :func:`transfer_worst_case`."""
    res = transfer_suite(target, x, y, surrogates, attacks, eps_list, cache_dir,
                         batch_size=batch_size, log=log)
    return [{"key": key, "attack": "transfer", "param": "eps", "value": r["eps"], "steps": None,
             "suite": SUITE_NAME, "surrogates": sorted(surrogates), **{k: r[k] for k in _ROW_FIELDS}}
            for key, r in res.items()]
