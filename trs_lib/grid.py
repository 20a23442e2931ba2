"""The grid behind each table and figure: which ensembles to train and which evaluations to run.

A table of the paper is a set of columns (ensembles) times rows (attack settings). Here every
column is a :class:`TrainCell` (method + config overrides on a data set) and every group of rows
an :class:`EvalCell` (one run of ``notebooks/evaluate.ipynb`` on one trained ensemble: a
``suite`` of attacks at one setting). Cells are named by the hash of what defines them, so the
same ensemble or evaluation needed by two tables is run once, and a record already in
``results/`` means the cell is done.

Two scales (:data:`SCALES`):

* ``cpu``: the companion's CPU scale. MNIST tables on ``mnist5k`` (4,000 training / 1,000 test
  real MNIST digits) with the small CNN and the recipe's CPU epochs; robust accuracy on the first
  ``n_test`` test points; CW with fewer iterations than the paper. CIFAR-10 tables have no cells.
* ``paper``: the paper's protocol (App. F): ResNet-20, 40 epochs on MNIST and 180 on CIFAR-10,
  the whole test set, CW with 1,000 iterations. Needs a GPU and the data sets on disk.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from . import paper_numbers as P
from .recipes import config_hash, make_config

__all__ = ["Scale", "SCALES", "COLUMNS", "TrainCell", "EvalCell", "TARGETS", "scale",
           "cells_for", "table_cells", "train_cell", "whitebox_rows", "normalise_target", "TRAIN_NOTEBOOK_PARAMS",
           "TRANSFER_ATTACKS", "AUDIT_ATTACKS"]

# The parameters of notebooks/train_trs.ipynb a grid cell may set (others: the recipe's).
TRAIN_NOTEBOOK_PARAMS = ("num_models", "arch", "epochs", "lam", "c", "batch_size", "seed")

# L-infinity attacks of the transfer matrices (Figures 2-4). The paper's text does not name the
# two attacks of Figure 2; Figure 3 shows "the untargeted attack" on every member.
TRANSFER_ATTACKS = ("fgsm", "pgd")
# The adaptive audit, beyond the paper (issue 3): AutoAttack's APGD with CE and DLR losses.
AUDIT_ATTACKS = ("apgd_ce", "apgd_dlr")


@dataclass(frozen=True)
class Scale:
    """How big the runs of a scale are; ``describe`` is the scale column of every table."""

    name: str
    datasets: dict                        # paper data set -> data set used at this scale
    train: dict                           # overrides of the recipe for every training
    n_test: int | None                    # test points for attacks (None: the whole test split)
    cw_steps: int                         # CW-L2 iterations (paper, via its code: 1000)
    restarts: int = 1                     # random restarts of PGD (worst case over restarts)
    audit_steps: int = 100                # APGD iterations of the audit
    audit_more_steps: int | None = None   # the audit's "more steps" check (None: 10x PGD's)
    audit_more_restarts: int = 5          # ... and its restarts
    transfer_steps: int = 10              # PGD iterations of the transfer matrices
    seed: int = 0

    def dataset(self, paper_dataset: str) -> str | None:
        """The data set standing in for ``paper_dataset`` (None: not run at this scale)."""
        return self.datasets.get(paper_dataset)

    def describe(self, paper_dataset: str) -> str:
        ds = self.dataset(paper_dataset)
        if ds is None:
            return f"not run at scale {self.name!r}"
        cfg = make_config(ds, "trs", **self.train)
        n = "all" if self.n_test is None else str(self.n_test)
        return (f"{ds}, {cfg.arch}, {cfg.num_models} members (unless the column says), "
                f"{cfg.epochs} epochs, {n} test points, CW {self.cw_steps} iterations, "
                f"{self.restarts} restart(s)")


SCALES: dict[str, Scale] = {
    # Sized so that the whole MNIST grid (11 trainings, 29 evaluations) runs in well under an
    # hour on a shared 2-core CPU: 4 epochs instead of the recipe's 8 (TRS + AT runs 11 PGD
    # steps per batch), 200 test points (standard error of an accuracy near 50%: 3.5 points),
    # CW with 50 iterations instead of 1,000, APGD with 50.
    "cpu": Scale("cpu", {"mnist": "mnist5k"}, {"epochs": 4}, n_test=200, cw_steps=50, restarts=1,
                 audit_steps=50, audit_more_steps=50, audit_more_restarts=3, transfer_steps=10),
    "paper": Scale("paper", {"mnist": "mnist", "cifar10": "cifar10"}, {}, n_test=None,
                   cw_steps=1000, restarts=1, audit_steps=100, transfer_steps=10),
}


def scale(name) -> Scale:
    if isinstance(name, Scale):
        return name
    if name not in SCALES:
        raise ValueError(f"unknown scale {name!r}; valid scales: {sorted(SCALES)}")
    return SCALES[name]


# Column key -> (method, overrides): what each column of Tables 1-6 and Figures 2-4 trains.
COLUMNS: dict[str, tuple[str, dict]] = {
    "vanilla": ("vanilla", {"num_models": 3}),
    "trs": ("trs", {"num_models": 3}),
    "cossim": ("cossim", {"num_models": 3}),
    "ckae": ("ckae", {"num_models": 3}),
    "adaboost": ("adaboost", {"num_models": 3}),
    "gradientboost": ("gradientboost", {"num_models": 3}),
    "adp": ("adp", {"num_models": 3}),
    "trs_k2": ("trs", {"num_models": 2}),
    "trs_at": ("trs_at", {"num_models": 3}),
    "trs_c0.5": ("trs", {"num_models": 3, "c": 0.5}),
    "trs_c1": ("trs", {"num_models": 3, "c": 1.0}),
}


# The order in which the driver runs the columns: the headline comparison first (TRS, the
# vanilla reference of the figures, ADP), the most expensive training (TRS + AT) last.
PRIORITY = ("trs", "vanilla", "adp", "cossim", "ckae", "adaboost", "gradientboost", "trs_k2",
            "trs_c0.5", "trs_c1", "trs_at")
AUDIT_PRIORITY = ("trs", "adp", "cossim", "ckae", "adaboost", "gradientboost", "trs_at", "trs_k2",
                  "trs_c0.5", "trs_c1")


def _short_hash(obj, length=10) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]


@dataclass(frozen=True)
class TrainCell:
    """One training: ``method`` on ``dataset`` with ``overrides`` of the recipe."""

    dataset: str
    method: str
    overrides: tuple = ()                 # sorted (key, value) pairs

    kind = "train"

    def config(self):
        return make_config(self.dataset, self.method, **dict(self.overrides))

    @property
    def key(self) -> str:
        return config_hash(self.config())

    @property
    def name(self) -> str:
        """``<method>-<dataset>-<config hash>``, the name ``trs_lib.train`` gives its run folder."""
        return f"{self.method}-{self.dataset}-{self.key}"

    def parameters(self) -> dict:
        """Parameters of notebooks/train_trs.ipynb (the recipe fills in everything else)."""
        return {"dataset": self.dataset, "method": self.method, **dict(self.overrides)}


@dataclass(frozen=True)
class EvalCell:
    """One evaluation of a trained ensemble: a ``suite`` of attacks with fixed settings.

    Suites: ``whitebox`` (robust accuracy of the ensemble under each row's attack), ``audit``
    (APGD-CE / APGD-DLR at the rows' budgets and the sanity checks), ``transfer`` (member-to-member
    transfer matrices at one eps), ``ila`` (ILA crafted on member 1, Table 6).
    """

    train: TrainCell
    suite: str
    rows: tuple = ()                      # the P.Row settings evaluated
    settings: tuple = ()                  # sorted (key, value) pairs: n_test, cw_steps, ...

    kind = "eval"

    @property
    def key(self) -> str:
        return _short_hash({"train": self.train.key, "suite": self.suite,
                            "rows": [r.key for r in self.rows], "settings": list(self.settings)})

    @property
    def name(self) -> str:
        return f"{self.suite}-{self.train.method}-{self.train.dataset}-{self.train.key}-{self.key}"

    def spec(self) -> dict:
        """What the evaluation computes, as plain data (kept in its record)."""
        return {"suite": self.suite, "train": self.train.name,
                "rows": [dict(key=r.key, attack=r.attack, param=r.param, value=r.value,
                              steps=r.steps) for r in self.rows],
                **dict(self.settings)}


SUITES = ("whitebox", "audit", "transfer", "ila")


def train_cell(column: str, dataset: str, scale_="cpu") -> TrainCell:
    """The training behind ``column`` (a key of :data:`COLUMNS`) on ``dataset``."""
    if column not in COLUMNS:
        raise KeyError(f"unknown column {column!r}; valid columns: {sorted(COLUMNS)}")
    method, over = COLUMNS[column]
    sc = scale(scale_)
    merged = {**sc.train, **over}
    bad = sorted(set(merged) - set(TRAIN_NOTEBOOK_PARAMS))
    if bad:
        raise ValueError(f"column {column!r}: {bad} are not parameters of train_trs.ipynb; "
                         f"allowed: {TRAIN_NOTEBOOK_PARAMS}")
    return TrainCell(dataset, method, tuple(sorted(merged.items())))


def whitebox_rows(paper_dataset: str) -> tuple:
    """The attack rows of Tables 1/2 (and 3/4 without PGD-110, and 5) for a data set."""
    return P.MNIST_WHITEBOX_ROWS if paper_dataset == "mnist" else P.CIFAR_WHITEBOX_ROWS


def _eval(tc: TrainCell, suite: str, rows, sc: Scale, **extra) -> EvalCell:
    settings = {"n_test": sc.n_test, "seed": sc.seed, **extra}
    if suite == "whitebox":
        settings.update(cw_steps=sc.cw_steps, restarts=sc.restarts)
    elif suite == "audit":
        settings.update(audit_steps=sc.audit_steps, audit_more_restarts=sc.audit_more_restarts)
        if sc.audit_more_steps is not None:
            settings.update(audit_more_steps=sc.audit_more_steps)
    elif suite == "transfer":
        settings.update(transfer_steps=sc.transfer_steps)
    return EvalCell(tc, suite, tuple(rows), tuple(sorted(settings.items())))


def _audit_rows(rows) -> tuple:
    """The budgets of a table's iterative L-infinity rows (BIM, PGD, MIM), once each: the audit
    attacks them with APGD (the FGSM-only budget, MNIST eps = 0.2, is left out)."""
    eps = sorted({r.value for r in rows if r.param == "eps" and r.attack != "fgsm"})
    return tuple(P.Row(a, "eps", e) for a in AUDIT_ATTACKS for e in eps)


def table_cells(target: str, scale_="cpu") -> dict:
    """The cells behind one table or figure at a scale.

    Returns ``{"train": {column: TrainCell}, "eval": {(column, part): EvalCell}}`` with part
    ``whitebox``, ``pgd110``, ``audit``, ``transfer`` or ``ila:<paper data set>``;
    empty when the target's data set is not run at this scale (CIFAR-10 at scale ``cpu``).
    """
    sc = scale(scale_)
    target = str(target)
    out = {"train": {}, "eval": {}}
    if target.startswith("fig"):
        fig = P.figure(target)
        ds = sc.dataset(fig.dataset)
        if ds is None:
            return out
        rows = tuple(P.Row(a, "eps", fig.eps, sc.transfer_steps if a != "fgsm" else None)
                     for a in TRANSFER_ATTACKS)
        for col in fig.ensembles:
            tc = train_cell(col, ds, sc)
            out["train"][col] = tc
            out["eval"][(col, "transfer")] = _eval(tc, "transfer", rows, sc)
        return out
    tab = P.table(target)
    if tab.id == "6":
        for pds in sorted({r.dataset for r in tab.rows}):
            ds = sc.dataset(pds)
            if ds is None:
                continue
            tc = train_cell("trs", ds, sc)
            out["train"]["trs"] = tc
            rows = tuple(r for r in tab.rows if r.dataset == pds)
            out["eval"][("trs", f"ila:{pds}")] = _eval(tc, "ila", rows, sc)
        return out
    ds = sc.dataset(tab.dataset)
    if ds is None:
        return out
    base = whitebox_rows(tab.dataset)
    for col in tab.columns:
        tc = train_cell(col, ds, sc)
        out["train"][col] = tc
        out["eval"][(col, "whitebox")] = _eval(tc, "whitebox", base, sc)
        if tab.id in ("3", "4"):  # PGD-110: its own cell, so Table 1's whitebox cell is shared
            out["eval"][(col, "pgd110")] = _eval(
                tc, "whitebox", tuple(r for r in tab.rows if r.steps == 110), sc)
        out["eval"][(col, "audit")] = _eval(tc, "audit", _audit_rows(tab.rows), sc)
    return out


TARGETS = ("1", "2", "3", "4", "5", "6", "fig2", "fig3", "fig4")


def normalise_target(t) -> str:
    """``1``, ``"table1"`` -> ``"1"``; ``"fig2"``, ``"figure2"`` -> ``"fig2"``."""
    key = str(t).strip().lower().replace(" ", "").replace("figure", "fig").removeprefix("table")
    if key not in TARGETS:
        raise ValueError(f"unknown table or figure {t!r}; valid targets: {list(TARGETS)}")
    return key


def cells_for(targets, scale_="cpu") -> list:
    """Every cell the targets need, each once: every training followed by its evaluations,
    then the audits.

    Whitebox evaluations that differ only in their rows (Table 1 vs Table 3's PGD-110) are
    kept as separate cells; identical ones are merged by name.
    """
    trains, evals = {}, {}
    for t in targets:
        cells = table_cells(normalise_target(t), scale_)
        for tc in cells["train"].values():
            trains.setdefault(tc.name, tc)
        for ec in cells["eval"].values():
            evals.setdefault(ec.name, ec)
    rank = {}
    for i, col in enumerate(PRIORITY):
        for tc in trains.values():
            if tc.method == COLUMNS[col][0] and tc.name == train_cell(col, tc.dataset, scale_).name:
                rank.setdefault(tc.name, i)
    trains = sorted(trains.values(), key=lambda tc: rank.get(tc.name, len(PRIORITY)))
    ordered = []
    for tc in trains:  # each training followed by its evaluations: a partial run leaves
        ordered.append(tc)  # whole columns, the headline ones first
        ordered.extend(ec for ec in evals.values()
                       if ec.train.name == tc.name and ec.suite != "audit")
    # the audits last (the most expensive cells, beyond the paper): the distinct methods first,
    # then the TRS variants of Tables 3 and 5
    audit_rank = {name: i for i, name in enumerate(AUDIT_PRIORITY)}
    col_of = {tc.name: PRIORITY[r] for tc in trains if (r := rank.get(tc.name)) is not None}
    for tc in sorted(trains, key=lambda tc: audit_rank.get(col_of.get(tc.name), len(PRIORITY))):
        ordered.extend(ec for ec in evals.values()
                       if ec.train.name == tc.name and ec.suite == "audit")
    return ordered
