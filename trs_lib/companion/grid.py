"""The grid behind each table and figure: which ensembles to train and which evaluations to run.

A table of the paper is a set of columns (ensembles) times rows (attack settings). Here every
column is a :class:`TrainCell` (method + config overrides on a data set, one per seed) and every
group of rows an :class:`EvalCell` (one run of ``notebooks/evaluate.ipynb`` on one trained
ensemble: a ``suite`` of attacks at one setting). Cells are named by the hash of what defines
them (the seed included), so the same ensemble or evaluation needed by two tables is run once,
and a record already in ``results/`` means the cell is done.

Every column is trained with each seed of its rung (:attr:`Rung.seeds`); the seed fixes the
members' initialisation and the batch order (``trs_lib.train``) and the attacks' random starts
(the evaluation's ``seed`` setting is the training's seed). Every row is measured twice: by the
paper's attack at the paper's setting (suite ``whitebox``, evaluation ``"paper"``) and by the
strong ``worst_case`` suite at the same L-infinity budget (evaluation ``"worst_case"``; CW rows
have no budget and no worst case).

Rungs (:data:`RUNGS`) are the scale ladder, from the CPU proxy toward the paper's protocol:
``cpu`` (mnist5k, small CNN, 4 epochs, every table), ``cpu-r20-2ep`` (the one-seed ResNet-20
pilot), ``cpu-40ep`` (the paper's MNIST epochs), ``cpu-r20`` (the paper's network, 3 seeds),
``fashion`` (full Fashion-MNIST) and ``gpu`` (the paper's protocol, App. F). A rung is data;
each says why in its ``why``.

:func:`cells_for` orders a rung's cells so that a partial run leaves whole columns of the most
important tables: Table 1 seed by seed (every column of seed 0, then of seed 1, ...), then the
figures and Table 6, then Tables 3 and 5, then the audits' sanity checks.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property

from .. import paper_numbers as P
from ..attacks import presets as _presets
from ..recipes import config_hash, make_config
from ..transfer import suite_row_key
from .rungs import RUNGS, TARGETS, Audit, Rung, normalise_target, rung

__all__ = ["Rung", "Audit", "RUNGS", "rung", "COLUMNS", "EXTRA_COLUMNS", "table_columns",
           "SUITES", "SUITE_SETTINGS", "TrainCell", "EvalCell", "WorstCaseRow", "TARGETS",
           "cells_for", "table_cells", "seeds_for", "train_cell", "eval_cell", "whitebox_rows",
           "worst_case_rows", "normalise_target", "TRAIN_NOTEBOOK_PARAMS", "TRANSFER_ATTACKS",
           "AUDIT_ATTACKS"]

# The parameters of notebooks/train_trs.ipynb a grid cell may set (others: the recipe's).
TRAIN_NOTEBOOK_PARAMS = ("num_models", "arch", "epochs", "lam", "c", "batch_size", "seed",
                         "variant", "optimiser", "faithful", "data_parallel")

# L-infinity attacks of the transfer matrices (Figures 2-4). The paper's text does not name the
# two attacks of Figure 2; Figure 3 shows "the untargeted attack" on every member.
TRANSFER_ATTACKS = ("fgsm", "pgd")
# The adaptive audit, beyond the paper: AutoAttack's APGD with CE and DLR losses.
AUDIT_ATTACKS = ("apgd_ce", "apgd_dlr")


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
    # TRS as its authors ran it: the published variant of the loss in their training loop,
    # their optimiser (weight decay and step schedule, trs_lib.optimiser) and their
    # nn.DataParallel over 3 GPUs (which changes BatchNorm's statistics on ResNet-20); and two
    # more diversity baselines the TRS authors compare with in their code.
    "trs_published": ("trs", {"num_models": 3, "variant": "published", "optimiser": "authors",
                              "faithful": True, "data_parallel": 3}),
    "gal": ("gal", {"num_models": 3}),
    "dverge": ("dverge", {"num_models": 3}),
    # TRS's successor (LOTOS, ICLR 2025: layer-wise orthogonalisation), alone and with TRS as
    # its authors evaluate it (trs_lib.methods.lotos)
    "lotos": ("lotos", {"num_models": 3}),
    "trs_lotos": ("trs_lotos", {"num_models": 3}),
}

# Columns of methods published after the paper: shown beside it, judged by their own claims,
# left out of the claims that compare TRS with the columns the paper knew.
SUCCESSORS = ("lotos", "trs_lotos")

# Columns a table has at our rungs beyond the paper's own (the paper prints no number for them).
EXTRA_COLUMNS: dict[str, tuple[str, ...]] = {"1": ("trs_published", "gal", "dverge") + SUCCESSORS}

# The order of the columns within a group of the driver's plan: the headline comparison first
# (TRS, ADP, TRS as published), the most expensive training (TRS + AT) last.
PRIORITY = ("trs", "adp", "trs_published", "vanilla", "cossim", "ckae", "adaboost",
            "gradientboost", "gal", "dverge", "lotos", "trs_lotos", "trs_k2", "trs_c0.5", "trs_c1",
            "trs_at")


def _short_hash(obj, length=10) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]


@dataclass(frozen=True)
class WorstCaseRow:
    """A row of the ``worst_case`` suite: every attack of the suite at one budget, the worst
    case per point. ``key``: ``worst_case:linf/eps=0.15``."""

    value: float
    norm: str = "linf"
    param: str = "eps"
    attack: str = "worst_case"
    steps: int | None = None

    @property
    def key(self) -> str:
        return P.row_key({"attack": self.norm, "param": self.param, "value": self.value},
                         prefix="worst_case")


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


# The rows of a "smoothness" cell: the L2 radii of trs_lib.theory.local_smoothness.
SMOOTHNESS_ROWS = tuple(P.Row("smoothness", "r", r) for r in _presets.SMOOTHNESS_RADII)


def train_cell(column: str, dataset: str, rung_="cpu", seed: int = 0) -> TrainCell:
    """The training behind ``column`` (a key of :data:`COLUMNS`) on ``dataset`` with ``seed``
    at a rung (its ``train`` overrides, then the column's, then the rung's ``column_train``)."""
    if column not in COLUMNS:
        raise KeyError(f"unknown column {column!r}; valid columns: {sorted(COLUMNS)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    method, over = COLUMNS[column]
    r = rung(rung_)
    merged = {**r.train, **over, **r.column_train.get(column, {}), "seed": seed}
    bad = sorted(set(merged) - set(TRAIN_NOTEBOOK_PARAMS))
    if bad:
        raise ValueError(f"column {column!r}: {bad} are not parameters of train_trs.ipynb; "
                         f"allowed: {TRAIN_NOTEBOOK_PARAMS}")
    return TrainCell(dataset, method, tuple(sorted(merged.items())))


def whitebox_rows(paper_dataset: str) -> tuple:
    """The attack rows of Tables 1/2 (and 3/4 without PGD-110, and 5) for a data set."""
    return P.MNIST_WHITEBOX_ROWS if paper_dataset == "mnist" else P.CIFAR_WHITEBOX_ROWS


def worst_case_rows(rows, norm: str = "linf", rung_=None) -> tuple:
    """One :class:`WorstCaseRow` per L-infinity budget of ``rows`` (CW rows have none), only
    those of the rung's ``worst_case_eps`` when it names them."""
    keep = None if rung_ is None else rung(rung_).worst_case_eps
    return tuple(WorstCaseRow(v, norm) for v in sorted({r.value for r in rows if r.param == "eps"})
                 if keep is None or any(abs(v - k) < 1e-12 for k in keep))


@dataclass(frozen=True)
class BlackboxRow:
    """A row of the ``blackbox`` suite: every (surrogate, attack) pair at one L-inf budget, the
    worst case per point. ``key``: ``transfer:linf/eps=0.15`` (:func:`trs_lib.transfer.suite_row_key`)."""

    value: float
    attack = "transfer"
    param = "eps"
    steps = None

    @property
    def key(self) -> str:
        return suite_row_key(self.value)


def blackbox_rows(rows) -> tuple:
    """The black-box cell's rows: every L-inf budget of a table's rows, once each."""
    return tuple(BlackboxRow(v) for v in sorted({r.value for r in rows if r.param == "eps"}))


def _audit_rows(rows) -> tuple:
    """The budgets of a table's iterative L-infinity rows (BIM, PGD, MIM), once each: the audit
    attacks them with APGD (the FGSM-only budget, MNIST eps = 0.2, is left out)."""
    eps = sorted({r.value for r in rows if r.param == "eps" and r.attack != "fgsm"})
    return tuple(P.Row(a, "eps", e) for a in AUDIT_ATTACKS for e in eps)


# ------------------------------------------------------------------ the evaluation suites
# Per suite: the settings an evaluation cell of that suite takes from its rung (the page
# notebooks/evaluate.ipynb reads them as parameters). Adding a kind of cell is adding an entry.
def _whitebox_settings(r: Rung, rows, n_test) -> dict:
    out = {"cw_steps": r.cw_steps, "restarts": r.restarts}
    if r.cw_n_test is not None and any(row.attack == "cw" for row in rows):
        cw_n = min(r.cw_n_test, n_test or r.cw_n_test)
        out.update(cw_n_test=cw_n, cw_check_points=cw_n)  # CW and its check on the same points
    return out


def _audit_settings(r: Rung, rows, n_test) -> dict:
    out = {"audit_steps": r.audit.steps, "audit_more_restarts": r.audit.more_restarts}
    if r.audit.more_steps is not None:
        out["audit_more_steps"] = r.audit.more_steps
    return out


SUITE_SETTINGS = {
    "whitebox": _whitebox_settings,
    "worst_case": lambda r, rows, n: {"worst_case_suite": r.worst_case_suite},
    "audit": _audit_settings,
    "transfer": lambda r, rows, n: {"transfer_steps": r.transfer_steps},
    "ila": lambda r, rows, n: {},
    "smoothness": lambda r, rows, n: {},
    "blackbox": lambda r, rows, n: {"surrogate_epochs": r.train.get("epochs"),
                                    "transfer_attacks": r.transfer_attacks},
}
SUITES = tuple(SUITE_SETTINGS)  # the evaluation suites a cell can run (trs_lib.suites.SUITES)


def eval_cell(tc: TrainCell, suite: str, rows, rung_="cpu", n_test=None) -> EvalCell:
    """The evaluation of ``tc`` by ``suite`` on ``rows`` with the rung's settings."""
    if suite not in SUITE_SETTINGS:
        raise ValueError(f"unknown suite {suite!r}; valid suites: {list(SUITES)}")
    r = rung(rung_)
    settings = {"n_test": r.n_test if n_test is None else n_test,
                "seed": dict(tc.overrides).get("seed", 0)}
    settings.update(SUITE_SETTINGS[suite](r, rows, settings["n_test"]))
    return EvalCell(tc, suite, tuple(rows), tuple(sorted(settings.items())))


def table_columns(target: str, rung_=None) -> tuple:
    """The columns of a table on a rung: the rung's ``columns`` for Tables 1/2 when it names
    them, else the paper's then :data:`EXTRA_COLUMNS`."""
    target = normalise_target(target)
    if rung_ is not None and target in ("1", "2") and rung(rung_).columns is not None:
        return rung(rung_).columns
    return tuple(P.table(target).columns) + EXTRA_COLUMNS.get(target, ())


def seeds_for(target, rung_="cpu", column=None) -> tuple:
    """The seeds the rung trains ``target``'s columns with (``column``: that column's)."""
    r = rung(rung_)
    if not r.runs(target):
        return ()
    return r.column_seeds.get(column, r.seeds) if column is not None else r.seeds


# Parts of a table's cells: (part, suite, the rows, whether the column gets it). A part is an
# evaluation of every column's ensemble; adding a kind of cell is adding an entry.
def _table_parts(tab, r: Rung, seed: int, col: str):
    base = whitebox_rows(tab.dataset)
    yield "whitebox", "whitebox", base
    yield "worst_case", "worst_case", worst_case_rows(base, rung_=r)
    if tab.id in ("3", "4"):  # PGD-110: its own cell, so Table 1's whitebox cell is shared
        yield "pgd110", "whitebox", tuple(row for row in tab.rows if row.steps == 110)
    if r.blackbox and tab.id in ("1", "2"):  # transfer from unseen surrogates, every L-inf budget
        yield "blackbox", "blackbox", blackbox_rows(base)
    if r.audit is not None and seed == 0 and col in tab.columns:  # sanity checks: one seed
        yield "audit", "audit", _audit_rows(tab.rows)


def table_cells(target: str, rung_="cpu", seed: int = 0) -> dict:
    """The cells behind one table or figure on a rung, for one training ``seed``.

    Returns ``{"train": {column: TrainCell}, "eval": {(column, part): EvalCell}}`` with part
    ``whitebox`` (the paper's attacks), ``worst_case`` (the strong suite at the same budgets),
    ``pgd110``, ``audit`` (seed 0 only), ``transfer``, ``smoothness`` or ``ila:<paper data
    set>``; empty when the rung does not run the target or its data set (CIFAR-10 on ``cpu``).
    A column whose ``column_seeds`` leave out ``seed`` has no cells for it.
    """
    r = rung(rung_)
    target = normalise_target(target)
    out = {"train": {}, "eval": {}}
    if not r.runs(target):
        return out
    if target.startswith("fig"):
        fig = P.figure(target)
        ds = r.dataset(fig.dataset)
        if ds is None:
            return out
        rows = tuple(P.Row(a, "eps", fig.eps, r.transfer_steps if a != "fgsm" else None)
                     for a in TRANSFER_ATTACKS)
        for col in fig.ensembles:
            tc = train_cell(col, ds, r, seed)
            out["train"][col] = tc
            out["eval"][(col, "transfer")] = eval_cell(tc, "transfer", rows, r)
            # the smoothness premise (Sec. 3): the same vanilla and TRS members, each seed
            out["eval"][(col, "smoothness")] = eval_cell(tc, "smoothness", SMOOTHNESS_ROWS, r)
        return out
    tab = P.table(target)
    if target == "6":
        for pds in sorted({row.dataset for row in tab.rows}):
            ds = r.dataset(pds)
            if ds is None:
                continue
            tc = train_cell("trs", ds, r, seed)
            out["train"]["trs"] = tc
            rows = tuple(row for row in tab.rows if row.dataset == pds)
            out["eval"][("trs", f"ila:{pds}")] = eval_cell(tc, "ila", rows, r)
        return out
    ds = r.dataset(tab.dataset)
    if ds is None:
        return out
    for col in table_columns(target, r):
        if seed not in seeds_for(target, r, col):
            continue  # the budget's cut: this column has fewer seeds on this rung
        tc = train_cell(col, ds, r, seed)
        out["train"][col] = tc
        for part, suite, rows in _table_parts(tab, r, seed, col):
            n = r.audit.n_test if part == "audit" else None
            out["eval"][(col, part)] = eval_cell(tc, suite, rows, r, n)
    return out


# The driver's groups, in order: the Table 1 columns first, then the figures and Table 6, then
# Tables 3 and 5, then the audits' sanity checks; within a group: seed, then column
# (PRIORITY), then each training followed by its evaluations.
def _group(target: str, part: str) -> int:
    if part == "audit":
        return 5
    if target in ("1", "2"):
        return 0
    if target.startswith("fig") or target == "6":
        return 1
    return 2


_PART_ORDER = ("whitebox", "worst_case", "blackbox", "transfer", "smoothness", "ila", "pgd110", "audit")


def cells_for(targets, rung_="cpu") -> list:
    """Every cell the targets need on a rung, each once, for every seed, in the driver's
    order: a partial run leaves whole columns of the most important tables, each training
    before its evaluations.

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
        for seed in seeds_for(t, rung_):
            cells_t = table_cells(t, rung_, seed)
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
