"""The grid behind each table and figure: which ensembles to train and which evaluations to run.

A table of the paper is a set of columns (ensembles) times rows (attack settings). Here every
column is a :class:`TrainCell` (method + config overrides on a data set, one per seed) and every
group of rows an :class:`EvalCell` (one run of ``notebooks/evaluate.ipynb`` on one trained
ensemble: a ``suite`` of attacks at one setting). Cells are named by the hash of what defines
them (the seed included), so the same ensemble or evaluation needed by two tables is run once,
and a record already in ``results/`` means the cell is done.

Every column of a table is trained with each seed of the scale (:attr:`Scale.seeds`); the seed
fixes the members' initialisation and the batch order (``trs_lib.train``) and the attacks'
random starts (the evaluation's ``seed`` setting is the training's seed). Every row is measured
twice (issue 16): by the paper's attack at the paper's setting (suite ``whitebox``, evaluation
``"paper"``) and by the strong ``worst_case`` suite at the same L-infinity budget (evaluation
``"worst_case"``; CW rows have no budget and no worst case).

Two scales (:data:`SCALES`):

* ``cpu``: the companion's CPU scale. MNIST tables on ``mnist5k`` (4,000 training / 1,000 test
  real MNIST digits) with the small CNN, 4 epochs, 3 seeds per Table 1 column, all 1,000 test
  points (the adaptive audit's sanity checks: 200), CW with the paper's 1,000 iterations on 200
  of them, the worst case at eps 0.15; the columns only Tables 3-5 have with one seed (the
  budget's cut, see :data:`SCALES`). The paper's architecture is checked by its own target
  ``r20``: ResNet-20 columns (vanilla, TRS, TRS as published, ADP) on ``mnist5k``, 2 epochs,
  1 seed, 100 test points (CW on 50). CIFAR-10 tables have no cells.
* ``paper``: the paper's protocol (App. F): ResNet-20, 40 epochs on MNIST and 180 on CIFAR-10,
  the whole test set, CW with 1,000 iterations, one seed. Needs a GPU and the data sets on disk.

:func:`cells_for` orders the cells by the issue's priority, so that a partial run leaves whole
columns of the most important tables: Table 1 seed by seed (every column of seed 0, then of
seed 1, ...), then the figures and Table 6, then Tables 3 and 5, then the ResNet-20 columns,
then the audits' sanity checks.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property

from .. import paper_numbers as P
from ..attacks import presets as _presets
from ..recipes import config_hash, make_config

__all__ = ["Scale", "SCALES", "COLUMNS", "EXTRA_COLUMNS", "table_columns", "SUITES", "TrainCell", "EvalCell", "WorstCaseRow",
           "TARGETS", "scale", "cells_for", "table_cells", "seeds_for", "train_cell", "whitebox_rows",
           "worst_case_rows", "normalise_target", "TRAIN_NOTEBOOK_PARAMS", "TRANSFER_ATTACKS",
           "AUDIT_ATTACKS", "R20_COLUMNS"]

# The parameters of notebooks/train_trs.ipynb a grid cell may set (others: the recipe's).
TRAIN_NOTEBOOK_PARAMS = ("num_models", "arch", "epochs", "lam", "c", "batch_size", "seed",
                         "variant", "optimiser", "faithful", "data_parallel")

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
    seeds: tuple = (0,)                   # training seeds of every column (= attack seeds)
    audit_n_test: int | None = None       # test points of the audit's sanity checks (None: n_test)
    r20_train: dict | None = None         # target "r20": overrides of its ResNet-20 trainings
    r20_n_test: int | None = None         # ... its test points (None: n_test)
    r20_seeds: tuple = (0,)               # ... its seeds
    worst_case_suite: str = "linf"        # the worst_case suite's name (trs_lib.evaluate)
    worst_case_eps: tuple | None = None   # its budgets (None: every L-inf budget of the rows)
    cw_n_test: int | None = None          # test points of the CW rows (None: n_test)
    late_seeds: tuple | None = None       # seeds of the columns only Tables 3-5 have (None: seeds)
    r20_cw_n_test: int | None = None      # target "r20": points of its CW rows (None: cw_n_test)

    def dataset(self, paper_dataset: str) -> str | None:
        """The data set standing in for ``paper_dataset`` (None: not run at this scale)."""
        return self.datasets.get(paper_dataset)

    def describe(self, paper_dataset: str) -> str:
        ds = self.dataset(paper_dataset)
        if ds is None:
            return f"not run at scale {self.name!r}"
        cfg = make_config(ds, "trs", **self.train)
        n = "all" if self.n_test is None else str(self.n_test)
        seeds = f"{len(self.seeds)} seed{'s' if len(self.seeds) > 1 else ''} per column"
        cw = f"CW {self.cw_steps} iterations" + (f" on {self.cw_n_test} points" if self.cw_n_test else "")
        wc = ("worst case at every L-inf budget" if self.worst_case_eps is None else
              "worst case at eps " + ", ".join(f"{e:g}" for e in self.worst_case_eps))
        late = ("" if self.late_seeds is None else
                f"; columns only Tables 3-5 have: {len(self.late_seeds)} seed(s)")
        return (f"{ds}, {cfg.arch}, {cfg.num_models} members (unless the column says), "
                f"{cfg.epochs} epochs, {seeds}, {n} test points, {cw}, {wc}, "
                f"{self.restarts} restart(s){late}")

    def describe_r20(self) -> str:
        """The scale of target ``r20`` (the ResNet-20 columns on the MNIST stand-in)."""
        ds = self.dataset("mnist")
        if ds is None or self.r20_train is None:
            return f"not run at scale {self.name!r}"
        cfg = make_config(ds, "trs", **{**self.train, **self.r20_train})
        n = self.r20_n_test or self.n_test
        return (f"{ds}, {cfg.arch}, {cfg.num_models} members, {cfg.epochs} epochs, "
                f"{len(self.r20_seeds)} seed(s), {'all' if n is None else n} test points, "
                f"CW {self.cw_steps} iterations on {self.r20_cw_n_test or self.cw_n_test or n} points")


SCALES: dict[str, Scale] = {
    # Issue 16: 3 seeds per Table 1 column, all 1,000 mnist5k test points, so that a paired
    # difference between two columns has a 95% interval of about +-3-6 points. 4 epochs (TRS + AT
    # runs 11 PGD steps per batch); the audit's sanity checks on 200 points (checks, not the
    # numbers of a verdict). The cut that keeps the regrid within its 5-hour budget on 2 cores
    # (benchmarks/reproduce.py --estimate), each part measured, none silent:
    # * CW-L2 with the paper's 1,000 iterations (converged: doubling them moved TRS seed 0's
    #   accuracy at c = 10 by 0.5 points and at c = 0.1 by 0, on 200 points) but on 200 evenly
    #   spaced test points (CW costs 0.4 s per point, PGD-10 0.005 s); every cell re-runs the
    #   c = 10 check with the iterations doubled on its own points and records it;
    # * the worst case at eps 0.15 only (the larger of Table 1's iterative budgets; eps 0.1 costs
    #   twice as much, since twice as many points stay robust and every robust point gets every
    #   attack's full budget);
    # * the columns only Tables 3-5 have (k = 2, TRS + AT, c = 0.5, c = 1) with seed 0 only;
    # * target "r20" (ResNet-20, whose step costs about 13 small-CNN steps here): 2 epochs,
    #   1 seed, 100 test points, CW on 50.
    "cpu": Scale("cpu", {"mnist": "mnist5k"}, {"epochs": 4}, n_test=1000, cw_steps=1000, restarts=1,
                 audit_steps=50, audit_more_steps=50, audit_more_restarts=3, transfer_steps=10,
                 seeds=(0, 1, 2), audit_n_test=200, worst_case_eps=(0.15,), cw_n_test=200,
                 late_seeds=(0,), r20_train={"arch": "resnet20", "epochs": 2}, r20_n_test=100,
                 r20_seeds=(0,), r20_cw_n_test=50),
    "paper": Scale("paper", {"mnist": "mnist", "cifar10": "cifar10"}, {}, n_test=None,
                   cw_steps=1000, restarts=1, audit_steps=100, transfer_steps=10, seeds=(0,),
                   r20_train={"arch": "resnet20"}),
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
    # Issue 16 (contract C3): TRS as its authors ran it (the published variant of the loss in
    # the authors' training loop, with their values as the recipe's defaults, and their
    # optimiser: weight decay and step schedule, trs_lib.optimiser; their nn.DataParallel over
    # 3 GPUs, which changes BatchNorm's statistics on ResNet-20), and two more
    # diversity baselines the TRS authors compare with in their code.
    "trs_published": ("trs", {"num_models": 3, "variant": "published", "optimiser": "authors",
                              "faithful": True, "data_parallel": 3}),
    "gal": ("gal", {"num_models": 3}),
    "dverge": ("dverge", {"num_models": 3}),
}
# Target "r20": the paper's architecture at the CPU scale (the scale's r20_train overrides).
R20_COLUMNS = ("r20_vanilla", "r20_trs", "r20_trs_published", "r20_adp")
for _c in R20_COLUMNS:
    COLUMNS[_c] = COLUMNS[_c.removeprefix("r20_")]
del _c

# Columns a table has at our scales beyond the paper's own (the paper prints no number for them).
EXTRA_COLUMNS: dict[str, tuple[str, ...]] = {"1": ("trs_published", "gal", "dverge")}

# The order of the columns within a group of the driver's plan: the headline comparison first
# (TRS, ADP, TRS as published), the most expensive training (TRS + AT) last.
PRIORITY = ("trs", "adp", "trs_published", "vanilla", "cossim", "ckae", "adaboost",
            "gradientboost", "gal", "dverge", "trs_k2", "trs_c0.5", "trs_c1", "trs_at") + R20_COLUMNS


def _short_hash(obj, length=10) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]


@dataclass(frozen=True)
class WorstCaseRow:
    """A row of the ``worst_case`` suite: every attack of the suite at one budget, the worst
    case per point (contract C1). ``key``: ``worst_case:linf/eps=0.15``."""

    value: float
    norm: str = "linf"
    param: str = "eps"
    attack: str = "worst_case"
    steps: int | None = None

    @property
    def key(self) -> str:
        return f"worst_case:{self.norm}/{self.param}={self.value:g}"


@dataclass(frozen=True)
class TrainCell:
    """One training: ``method`` on ``dataset`` with ``overrides`` of the recipe."""

    dataset: str
    method: str
    overrides: tuple = ()                 # sorted (key, value) pairs

    kind = "train"

    def config(self):
        return make_config(self.dataset, self.method, **dict(self.overrides))

    @cached_property  # the config's hash: computed once per cell
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

    Suites: ``whitebox`` (robust accuracy of the ensemble under each row's attack),
    ``worst_case`` (per point, the worst case over the strong suite at each row's budget), ``audit``
    (APGD-CE / APGD-DLR at the rows' budgets and the sanity checks), ``transfer`` (member-to-member
    transfer matrices at one eps), ``ila`` (ILA crafted on member 1, Table 6), ``smoothness``
    (the members' local smoothness at the rows' L2 radii, Sec. 3's premise).
    """

    train: TrainCell
    suite: str
    rows: tuple = ()                      # the P.Row settings evaluated
    settings: tuple = ()                  # sorted (key, value) pairs: n_test, cw_steps, ...

    kind = "eval"

    @cached_property
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
                              steps=r.steps, **({"norm": r.norm} if hasattr(r, "norm") else {}))
                         for r in self.rows],
                **dict(self.settings)}


SUITES = ("whitebox", "worst_case", "audit", "transfer", "ila", "smoothness")
# The rows of a "smoothness" cell: the L2 radii of trs_lib.theory.local_smoothness.
SMOOTHNESS_ROWS = tuple(P.Row("smoothness", "r", r) for r in _presets.SMOOTHNESS_RADII)


def train_cell(column: str, dataset: str, scale_="cpu", seed: int = 0) -> TrainCell:
    """The training behind ``column`` (a key of :data:`COLUMNS`) on ``dataset`` with ``seed``."""
    if column not in COLUMNS:
        raise KeyError(f"unknown column {column!r}; valid columns: {sorted(COLUMNS)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    method, over = COLUMNS[column]
    sc = scale(scale_)
    r20 = (sc.r20_train or {}) if column in R20_COLUMNS else {}
    merged = {**sc.train, **r20, **over,
              "seed": seed}
    bad = sorted(set(merged) - set(TRAIN_NOTEBOOK_PARAMS))
    if bad:
        raise ValueError(f"column {column!r}: {bad} are not parameters of train_trs.ipynb; "
                         f"allowed: {TRAIN_NOTEBOOK_PARAMS}")
    return TrainCell(dataset, method, tuple(sorted(merged.items())))


def whitebox_rows(paper_dataset: str) -> tuple:
    """The attack rows of Tables 1/2 (and 3/4 without PGD-110, and 5) for a data set."""
    return P.MNIST_WHITEBOX_ROWS if paper_dataset == "mnist" else P.CIFAR_WHITEBOX_ROWS


def worst_case_rows(rows, norm: str = "linf", scale_=None) -> tuple:
    """One :class:`WorstCaseRow` per L-infinity budget of ``rows`` (CW rows have none), only
    those of the scale's ``worst_case_eps`` when it names them."""
    keep = None if scale_ is None else scale(scale_).worst_case_eps
    return tuple(WorstCaseRow(v, norm) for v in sorted({r.value for r in rows if r.param == "eps"})
                 if keep is None or any(abs(v - k) < 1e-12 for k in keep))


def _eval(tc: TrainCell, suite: str, rows, sc: Scale, n_test=None, cw_n_test=None, **extra) -> EvalCell:
    seed = dict(tc.overrides).get("seed", 0)
    settings = {"n_test": sc.n_test if n_test is None else n_test, "seed": seed, **extra}
    if suite == "whitebox":
        settings.update(cw_steps=sc.cw_steps, restarts=sc.restarts)
        cw_n = sc.cw_n_test if cw_n_test is None else cw_n_test
        if cw_n is not None and any(r.attack == "cw" for r in rows):
            cw_n = min(cw_n, settings["n_test"] or cw_n)
            # CW on cw_n evenly spaced points; its convergence check (steps doubled) on the same
            settings.update(cw_n_test=cw_n, cw_check_points=cw_n)
    elif suite == "worst_case":
        settings.update(worst_case_suite=sc.worst_case_suite)
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


TARGETS = ("1", "2", "3", "4", "5", "6", "fig2", "fig3", "fig4", "r20")


def table_columns(target: str) -> tuple:
    """The columns of a table at our scales: the paper's, then :data:`EXTRA_COLUMNS`
    (``r20``: :data:`R20_COLUMNS`)."""
    target = normalise_target(target)
    if target == "r20":
        return R20_COLUMNS
    return tuple(P.table(target).columns) + EXTRA_COLUMNS.get(target, ())


def seeds_for(target, scale_="cpu") -> tuple:
    """The seeds the scale trains every column of ``target`` with."""
    sc = scale(scale_)
    return sc.r20_seeds if normalise_target(target) == "r20" else sc.seeds


def table_cells(target: str, scale_="cpu", seed: int = 0) -> dict:
    """The cells behind one table or figure at a scale, for one training ``seed``.

    Returns ``{"train": {column: TrainCell}, "eval": {(column, part): EvalCell}}`` with part
    ``whitebox`` (the paper's attacks), ``worst_case`` (the strong suite at the same budgets),
    ``pgd110``, ``audit`` (seed 0 only), ``transfer``, ``smoothness`` or ``ila:<paper data set>``; empty when the
    target's data set is not run at this scale (CIFAR-10 at scale ``cpu``). Every seed of
    :func:`seeds_for` is a cell of the grid; other seeds give cells the driver does not run.
    """
    sc = scale(scale_)
    target = normalise_target(target)
    out = {"train": {}, "eval": {}}
    if target.startswith("fig"):
        fig = P.figure(target)
        ds = sc.dataset(fig.dataset)
        if ds is None:
            return out
        rows = tuple(P.Row(a, "eps", fig.eps, sc.transfer_steps if a != "fgsm" else None)
                     for a in TRANSFER_ATTACKS)
        for col in fig.ensembles:
            tc = train_cell(col, ds, sc, seed)
            out["train"][col] = tc
            out["eval"][(col, "transfer")] = _eval(tc, "transfer", rows, sc)
            # the smoothness premise (Sec. 3): the same vanilla and TRS members, each seed
            out["eval"][(col, "smoothness")] = _eval(tc, "smoothness", SMOOTHNESS_ROWS, sc)
        return out
    if target == "6":
        tab = P.table(target)
        for pds in sorted({r.dataset for r in tab.rows}):
            ds = sc.dataset(pds)
            if ds is None:
                continue
            tc = train_cell("trs", ds, sc, seed)
            out["train"]["trs"] = tc
            rows = tuple(r for r in tab.rows if r.dataset == pds)
            out["eval"][("trs", f"ila:{pds}")] = _eval(tc, "ila", rows, sc)
        return out
    if target == "r20":
        ds = sc.dataset("mnist")
        if ds is None or sc.r20_train is None:
            return out
        base = whitebox_rows("mnist")
        for col in R20_COLUMNS:
            tc = train_cell(col, ds, sc, seed)
            out["train"][col] = tc
            out["eval"][(col, "whitebox")] = _eval(tc, "whitebox", base, sc, sc.r20_n_test,
                                                   cw_n_test=sc.r20_cw_n_test)
            out["eval"][(col, "worst_case")] = _eval(tc, "worst_case", worst_case_rows(base, scale_=sc),
                                                     sc, sc.r20_n_test)
        return out
    tab = P.table(target)
    ds = sc.dataset(tab.dataset)
    if ds is None:
        return out
    base = whitebox_rows(tab.dataset)
    table1 = set(table_columns("1")) | set(table_columns("2"))
    for col in table_columns(target):
        if sc.late_seeds is not None and col not in table1 and seed not in sc.late_seeds:
            continue  # the budget's cut: a column only Tables 3-5 have, at fewer seeds
        tc = train_cell(col, ds, sc, seed)
        out["train"][col] = tc
        out["eval"][(col, "whitebox")] = _eval(tc, "whitebox", base, sc)
        out["eval"][(col, "worst_case")] = _eval(tc, "worst_case", worst_case_rows(base, scale_=sc), sc)
        if tab.id in ("3", "4"):  # PGD-110: its own cell, so Table 1's whitebox cell is shared
            out["eval"][(col, "pgd110")] = _eval(
                tc, "whitebox", tuple(r for r in tab.rows if r.steps == 110), sc)
        if seed == 0 and col in tab.columns:  # the audit's sanity checks: one seed suffices
            out["eval"][(col, "audit")] = _eval(tc, "audit", _audit_rows(tab.rows), sc,
                                                sc.audit_n_test)
    return out


def normalise_target(t) -> str:
    """``1``, ``"table1"`` -> ``"1"``; ``"fig2"``, ``"figure2"`` -> ``"fig2"``;
    ``"resnet20"`` -> ``"r20"``."""
    key = str(t).strip().lower().replace(" ", "").replace("figure", "fig").removeprefix("table")
    key = {"resnet20": "r20", "resnet-20": "r20"}.get(key, key)
    if key not in TARGETS:
        raise ValueError(f"unknown table or figure {t!r}; valid targets: {list(TARGETS)}")
    return key


# The driver's groups, in order (issue 16: "seeds for the Table 1 columns come first, then the
# figures, then Tables 3 and 5"); within a group: seed, then column (PRIORITY), then each
# training followed by its evaluations.
def _group(target: str, part: str) -> int:
    if part == "audit":
        return 5
    if target in ("1", "2"):
        return 0
    if target.startswith("fig") or target == "6":
        return 1
    if target in ("3", "4", "5"):
        return 2
    return 3  # r20


_PART_ORDER = ("whitebox", "worst_case", "transfer", "smoothness", "ila", "pgd110", "audit")


def cells_for(targets, scale_="cpu") -> list:
    """Every cell the targets need, each once, for every seed of the scale, in the driver's
    order (module docstring): a partial run leaves whole columns of the most important
    tables, each training before its evaluations.

    Whitebox evaluations that differ only in their rows (Table 1 vs Table 3's PGD-110) are
    kept as separate cells; identical ones are merged by name.
    """
    rank, cells = {}, {}
    col_rank = {c: i for i, c in enumerate(PRIORITY)}

    def put(cell, key):
        cells.setdefault(cell.name, cell)
        rank[cell.name] = min(rank.get(cell.name, key), key)

    for t in targets:
        t = normalise_target(t)
        for seed in seeds_for(t, scale_):
            cells_t = table_cells(t, scale_, seed)
            for (col, part), ec in cells_t["eval"].items():
                base = (_group(t, part), seed, col_rank.get(col, len(PRIORITY)))
                put(ec.train, base + (0, 0))
                put(ec, base + (1, _PART_ORDER.index(part.split(":")[0])))
            for col, tc in cells_t["train"].items():
                put(tc, (_group(t, "whitebox"), seed, col_rank.get(col, len(PRIORITY)), 0, 0))
    ordered = sorted(cells.values(), key=lambda c: (rank[c.name], c.kind != "train", c.name))
    # a training always precedes its evaluations (it does by construction; keep it so)
    seen, out = set(), []
    for c in ordered:
        if c.kind == "eval" and c.train.name not in seen:
            out.append(c.train)
            seen.add(c.train.name)
        if c.name not in seen:
            out.append(c)
            seen.add(c.name)
    return out
