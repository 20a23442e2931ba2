"""Evaluation of ensembles: :func:`run` turns an :class:`EvalSpec` into an
:class:`~trs_lib.records.EvalRecord`, the one path to an evaluation record (the page
``notebooks/evaluate.ipynb`` and the reproduction grid both call it).

* :class:`EvalSpec`: what to evaluate (a suite of :data:`trs_lib.suites.SUITES`, its rows, the
  points and the attack settings), validated when it is made;
* :func:`run`: the spec's suite on its points, with clean accuracies and provenance;
* ``clean_accuracy``, ``member_accuracies``, ``gradient_cosine``: used by the trainer each epoch.

Everything is batched on the ensemble's device; ``batch_size`` bounds the memory, and the attack
functions halve it on CUDA out-of-memory errors (``run_batched``) and report the size used.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import torch

from . import data
from . import trs as T
from .attacks import presets as _presets
from .member_transfer import member_correct
from .provenance import provenance
from .records import EvalRecord
from .suites import SUITES, SuiteContext, default_rows, spread_indices
from .worst_case import ATTACK_SUITES, _correct, device_of, run_batched

__all__ = ["EvalSpec", "run", "evaluation_points", "SUITES", "predict_logits", "clean_accuracy",
           "member_accuracies", "gradient_cosine"]


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


# ------------------------------------------------------------------------ the spec and the run
def _positive_int(name, v, allow_none=False, allow_zero=False):
    if v is None and allow_none:
        return
    lo = 0 if allow_zero else 1
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"EvalSpec.{name} must be an integer >= {lo}{' or None' if allow_none else ''}, "
                         f"got {v!r}")


@dataclass(frozen=True)
class EvalSpec:
    """One evaluation: ``suite`` (a key of :data:`trs_lib.suites.SUITES`) on ``rows`` (attack
    settings ``{attack, param, value, steps}``; None: the suite's defaults for ``dataset``,
    :func:`trs_lib.suites.default_rows`), on ``n_test`` evenly spaced test points (None: all).

    Attack settings: ``seed`` (random starts), ``restarts`` (a point is robust only if it
    survives every one), ``batch_size``; ``cw_steps`` (None: the paper's 1,000), ``cw_n_test``
    (CW rows on that many evenly spaced points), ``cw_check_points`` (the CW convergence check,
    0: none); the audit's ``audit_steps`` (APGD iterations), ``audit_more_steps`` /
    ``audit_more_restarts`` (the more-effort check), ``audit_strong_steps`` (the sweeps),
    ``audit_square_queries``, ``audit_surrogate_n`` and ``surrogate_seed`` (the seed of the
    vanilla ensemble trained as the transfer check's surrogate; None: an imitation model);
    ``transfer_steps`` (None: the presets'); ``worst_case_suite`` (``linf`` or ``l2``) and
    ``worst_case_overrides``; ``ila_sweep`` (ILA's layer sweep); the black-box suite's
    ``surrogates`` (names of :mod:`trs_lib.surrogates`, trained for ``surrogate_epochs``) and
    ``transfer_attacks`` (names of :mod:`trs_lib.attacks.transfer_attacks`; None: the default
    plan of :mod:`trs_lib.transfer`).

    The grid (``trs_lib.companion.grid``) makes one per cell from its rung; :meth:`quick` is the
    chapter's few-minute preview. Bad values raise ``ValueError`` naming the field."""

    suite: str
    rows: tuple | None = None
    dataset: str = "mnist5k"
    n_test: int | None = None
    seed: int = 0
    restarts: int = 1
    batch_size: int = 256
    cw_steps: int | None = None
    cw_n_test: int | None = None
    cw_check_points: int = 20
    audit_steps: int = 100
    audit_more_steps: int | None = None
    audit_more_restarts: int = 5
    audit_strong_steps: int = 40
    audit_square_queries: int = 1000
    audit_surrogate_n: int = 2000
    surrogate_seed: int | None = 0
    transfer_steps: int | None = None
    worst_case_suite: str = "linf"
    worst_case_overrides: dict | None = None
    ila_sweep: bool = True
    surrogates: tuple = ("small_cnn", "resnet20", "small_cnn+resnet20")
    surrogate_epochs: int | None = None
    transfer_attacks: tuple | None = None

    def __post_init__(self):
        if self.suite not in SUITES:
            raise ValueError(f"unknown suite {self.suite!r}; valid suites: {list(SUITES)}")
        if self.worst_case_suite not in ATTACK_SUITES:
            raise ValueError(f"unknown worst_case_suite {self.worst_case_suite!r}; valid suites: "
                             f"{sorted(ATTACK_SUITES)}")
        data.info(self.dataset)  # raises naming the known data sets
        for name in ("restarts", "batch_size", "audit_steps", "audit_more_restarts", "audit_strong_steps",
                     "audit_square_queries", "audit_surrogate_n"):
            _positive_int(name, getattr(self, name))
        for name in ("n_test", "cw_steps", "cw_n_test", "audit_more_steps", "transfer_steps"):
            _positive_int(name, getattr(self, name), allow_none=True)
        _positive_int("seed", self.seed, allow_zero=True)
        _positive_int("surrogate_seed", self.surrogate_seed, allow_none=True, allow_zero=True)
        _positive_int("cw_check_points", self.cw_check_points, allow_zero=True)
        _positive_int("surrogate_epochs", self.surrogate_epochs, allow_none=True)
        for name in ("surrogates", "transfer_attacks"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, str) or not all(isinstance(a, str) for a in v)):
                raise ValueError(f"EvalSpec.{name} must be a list of names, got {v!r}")
            if v is not None:
                object.__setattr__(self, name, tuple(v))
        if not isinstance(self.ila_sweep, bool):
            raise ValueError(f"EvalSpec.ila_sweep must be True or False, got {self.ila_sweep!r}")
        rows = default_rows(self.suite, self.dataset, self.worst_case_suite) if self.rows is None else self.rows
        if isinstance(rows, (str, dict)) or not all(isinstance(r, dict) and "attack" in r and "value" in r
                                                    for r in rows):
            raise ValueError(f"EvalSpec.rows must be a list of {{attack, param, value, steps}} dicts, got {rows!r}")
        object.__setattr__(self, "rows", tuple(dict(r) for r in rows))

    @classmethod
    def from_dict(cls, d: dict) -> "EvalSpec":
        """The spec of :meth:`to_dict`'s output (or the grid's settings); unknown keys are an
        error naming them and the allowed ones."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"unknown EvalSpec fields {unknown}; allowed: {names}")
        return cls(**d)

    def to_dict(self) -> dict:
        """Plain JSON data (lists, not tuples: a papermill parameter and a record's config)."""
        out = {**dataclasses.asdict(self), "rows": [dict(r) for r in self.rows]}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def quick(cls, suite: str, dataset: str = "mnist5k", **changes) -> "EvalSpec":
        """The chapter's preview: 100 points, CW at 50 iterations (paper: 1,000), a lighter audit
        (APGD-30 at the largest budget only, PGD-20 sweeps, 50 steps x 2 restarts), the worst
        case at the largest PGD budget, transfer attacks at 10 steps; minutes on a CPU."""
        top = max(r["value"] for r in _presets.preset(dataset, "whitebox") if r["attack"] == "pgd")
        rows = None
        if suite == "worst_case":
            rows = [dict(attack="worst_case", param="eps", value=top, steps=None)]
        elif suite == "audit":
            rows = [dict(attack=a, param="eps", value=top, steps=None) for a in ("apgd_ce", "apgd_dlr")]
        elif suite == "blackbox":  # one surrogate, two attacks, one budget
            rows = [dict(attack="transfer", param="eps", value=top, steps=None)]
            changes = {"surrogates": ("small_cnn",), "transfer_attacks": ("mi_fgsm", "di_fgsm"), **changes}
        base = dict(suite=suite, rows=rows, dataset=dataset, n_test=100, cw_steps=50, audit_steps=30,
                    audit_strong_steps=20, audit_more_steps=50, audit_more_restarts=2, transfer_steps=10)
        return cls(**{**base, **changes})


def evaluation_points(dataset: str, n_test: int | None = None, root=None) -> tuple:
    """``n_test`` evenly spaced points of the dataset's test split (all when None): the points
    of every evaluation (``mnist5k``'s split is sorted by class, so the first ``n`` would miss
    classes)."""
    x, y = data.load(dataset, "test", root=root)
    idx = spread_indices(len(x), len(x) if n_test is None else min(int(n_test), len(x)))
    return x[idx], y[idx]


def _fraction_ok(v) -> bool:
    return isinstance(v, float) and math.isfinite(v) and 0.0 <= v <= 1.0


def run(spec: EvalSpec, ensemble, x=None, y=None, *, surrogate=None, surrogates=None, config=None,
        progress=False, log=None, cache_dir=None) -> EvalRecord:
    """Run ``spec`` on ``ensemble`` and return its :class:`~trs_lib.records.EvalRecord` (not yet
    written; ``record.write(path)``). The points are ``spec.n_test`` evenly spaced points of
    ``(x, y)`` (default: the dataset's test split). ``surrogate``: an independently trained
    ensemble for the audit's transfer check; ``surrogates``: ``{name: ensemble}`` for the
    black-box suite (``cache_dir``: where its crafted examples are kept); ``config``: what else the record should say about
    the run (the trained run's folder and config). Every accuracy row carries its 95% interval
    and per-point outcomes (``correct``), or the run fails before writing anything."""
    if not isinstance(spec, EvalSpec):
        raise ValueError(f"run needs an EvalSpec, got {type(spec).__name__}")
    t0 = time.perf_counter()
    if x is None:
        x, y = evaluation_points(spec.dataset, spec.n_test)
    elif spec.n_test is not None and spec.n_test < len(x):
        idx = spread_indices(len(x), spec.n_test)
        x, y = x[idx], y[idx]
    clean = member_accuracies(ensemble, x, y)
    metrics = {"suite": spec.suite, "n_test": len(x), "clean_accuracy": clean["ensemble"],
               "member_clean_accuracy": clean["members"]}
    metrics.update(SUITES[spec.suite](ensemble, x, y, spec, SuiteContext(surrogate, progress, log, surrogates, cache_dir)))
    rows = metrics["rows"]
    missing = [r.get("key") for r in rows if "accuracy" in r and not ("correct" in r and "ci95" in r)]
    if missing:
        raise RuntimeError(f"rows {missing} have an accuracy without 'correct' and 'ci95'")
    bad = [r.get("key") for r in rows if "accuracy" in r and not _fraction_ok(r["accuracy"])]
    if bad:
        raise FloatingPointError(f"rows {bad} gave accuracies outside [0, 1]")
    cfg = {"spec": spec.to_dict(), "attack_conventions": list(_presets.CONVENTIONS), **(config or {})}
    rec = EvalRecord(cfg, metrics, provenance(time.perf_counter() - t0, device_of(ensemble)))
    rec.validate("the evaluation's record")
    return rec
