"""The paper's own numbers, typed in once from the paper and never retyped (RobustBench style).

Tables 1-6 are robust accuracies in percent, exactly as printed in the paper (Sec. 4.3 Table 1;
App. F Table 2; App. H Tables 3-5; App. I Table 6). Each table is a :class:`PaperTable`: its
rows are attack settings (:class:`Row`), its columns the ensembles compared, and ``values`` the
printed numbers, ``values[i][j]`` for row ``i`` and column ``j``.

Figures 2-4 (transfer matrices) are images in the paper: the text gives no numbers, only the
claim that the members of a TRS ensemble are more accurate on each other's adversarial examples
than those of a vanilla ensemble. :data:`FIGURES` records what each figure shows.

Notes on the transcription:

* Table 1's ``PGD`` rows are PGD with 10 iterations (Table 3 prints the same values as
  ``PGD - 10 iter``).
* Table 6 (App. I) has four rows: MNIST ``eps = 0.1, 0.15`` and CIFAR-10 ``eps = 0.01, 0.02``
  (the last row prints 37.13, 58.28, 57.77, 51.93).
* Table 3 prints ``1.18`` (two decimals) for ADP under PGD-110 at ``eps = 0.15``; kept as printed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["row_key", "UNREPORTED_ROWS", "Row", "PaperTable", "PaperFigure", "TABLES", "FIGURES", "table", "figure",
           "MNIST_WHITEBOX_ROWS", "CIFAR_WHITEBOX_ROWS"]


def row_key(row, prefix: str | None = None) -> str:
    """The one name of an attack row, from a :class:`Row` or a mapping with ``attack``,
    ``param``, ``value`` and optional ``steps`` and ``dataset``: ``pgd110/eps=0.15``,
    ``cw/c=10``, ``mnist:ila/eps=0.1``. ``prefix`` replaces the data set's (the worst case's
    rows: ``worst_case:linf/eps=0.15``). The step count is part of PGD's name only (PGD-10 vs
    PGD-110 in Tables 3-4)."""
    get = row.get if isinstance(row, dict) else (lambda k, d=None: getattr(row, k, d))
    steps = get("steps")
    steps = "" if steps is None or get("attack") != "pgd" else str(steps)
    pre = prefix or get("dataset")
    return f"{pre + ':' if pre else ''}{get('attack')}{steps}/{get('param')}={get('value'):g}"


@dataclass(frozen=True)
class Row:
    """One attack setting of a table: ``attack`` (an attack name of ``trs_lib.attacks``),
    its budget ``param`` (``"eps"`` for L-infinity attacks, ``"c"`` for CW) and ``value``,
    ``steps`` for iterative attacks whose iteration count the table states (PGD-10, PGD-110,
    ILA 10), and the ``dataset`` of the row (Table 6 mixes MNIST and CIFAR-10 rows)."""

    attack: str
    param: str
    value: float
    steps: int | None = None
    dataset: str | None = None

    @property
    def key(self) -> str:
        """A stable name, e.g. ``pgd110/eps=0.15`` or ``cw/c=10`` (:func:`row_key`)."""
        return row_key(self)

    @property
    def label(self) -> str:
        """The row's label in the paper's layout, e.g. ``PGD-110`` and ``eps = 0.15``."""
        name = self.attack.upper()
        if self.attack == "pgd" and self.steps:
            name = f"PGD-{self.steps}"
        return name

    @property
    def para(self) -> str:
        return f"{'ε' if self.param == 'eps' else self.param} = {self.value:g}"


@dataclass(frozen=True)
class PaperTable:
    """A table of the paper: rows x columns of robust accuracy (percent), as printed."""

    id: str
    caption: str
    source: str
    dataset: str | None                 # "mnist" or "cifar10"; None when rows carry their own
    columns: tuple[str, ...]            # column keys (see trs_lib.companion.grid for what each one trains)
    column_labels: tuple[str, ...]      # as printed in the paper
    rows: tuple[Row, ...]
    values: tuple[tuple[float | None, ...], ...]
    notes: str = ""

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.rows), len(self.columns)

    def value(self, row: Row | str, column: str) -> float | None:
        """The paper's number for ``row`` (a Row or its key) and ``column`` (a column key)."""
        keys = [r.key for r in self.rows]
        rkey = row.key if isinstance(row, Row) else row
        if rkey not in keys:
            raise KeyError(f"table {self.id} has no row {rkey!r}; rows: {keys}")
        if column not in self.columns:
            raise KeyError(f"table {self.id} has no column {column!r}; columns: {list(self.columns)}")
        return self.values[keys.index(rkey)][self.columns.index(column)]

    def frame(self):
        """The table as a ``pandas.DataFrame`` in the paper's layout."""
        import pandas as pd
        index = pd.MultiIndex.from_tuples([(r.label, r.para) for r in self.rows],
                                          names=["attack", "para."])
        return pd.DataFrame([list(v) for v in self.values], index=index,
                            columns=list(self.column_labels))


@dataclass(frozen=True)
class PaperFigure:
    """A transfer-matrix figure: what it shows (its numbers are not in the paper's text)."""

    id: str
    caption: str
    source: str
    dataset: str
    eps: float
    ensembles: tuple[str, ...] = ("vanilla", "trs")
    claim: str = ""
    notes: str = field(default="")


def _rows(dataset=None, *specs) -> tuple[Row, ...]:
    return tuple(Row(a, p, v, s, dataset) for a, p, v, s in specs)


# Tables 1, 3, 5 (MNIST) and 2, 4 (CIFAR-10) share their attack rows (Sec. 4.1 attacks).
MNIST_WHITEBOX_ROWS = _rows(None,
    ("fgsm", "eps", 0.1, None), ("fgsm", "eps", 0.2, None),
    ("bim", "eps", 0.1, 10), ("bim", "eps", 0.15, 10),
    ("pgd", "eps", 0.1, 10), ("pgd", "eps", 0.15, 10),
    ("mim", "eps", 0.1, 10), ("mim", "eps", 0.15, 10),
    ("cw", "c", 0.1, None), ("cw", "c", 10.0, None))
CIFAR_WHITEBOX_ROWS = _rows(None,
    ("fgsm", "eps", 0.02, None), ("fgsm", "eps", 0.04, None),
    ("bim", "eps", 0.01, 10), ("bim", "eps", 0.02, 10),
    ("pgd", "eps", 0.01, 10), ("pgd", "eps", 0.02, 10),
    ("mim", "eps", 0.01, 10), ("mim", "eps", 0.02, 10),
    ("cw", "c", 0.001, None), ("cw", "c", 0.1, None))


# Sec. 4.1 names EAD and JSMA among its attacks but prints no number for them: the settings the
# companion runs them at (EAD at Table 1/2's CW budgets, JSMA at gamma = 0.1), per data set.
UNREPORTED_ROWS = {
    "mnist": _rows(None, ("ead", "c", 0.1, None), ("ead", "c", 10.0, None), ("jsma", "gamma", 0.1, None)),
    "cifar10": _rows(None, ("ead", "c", 0.001, None), ("ead", "c", 0.1, None), ("jsma", "gamma", 0.1, None)),
}


def _with_pgd110(rows: tuple[Row, ...]) -> tuple[Row, ...]:
    """Tables 3-4: the whitebox rows with PGD-110 inserted after PGD-10."""
    out = list(rows)
    pgd = [r for r in rows if r.attack == "pgd"]
    at = max(i for i, r in enumerate(out) if r.attack == "pgd") + 1
    return tuple(out[:at] + [Row("pgd", r.param, r.value, 110, r.dataset) for r in pgd] + out[at:])


_BASELINES = ("cossim", "ckae", "adaboost", "gradientboost", "adp", "trs")
_BASELINE_LABELS = ("CosSim", "CKAE", "AdaBoost", "GradientBoost", "ADP_{2,0.5}", "TRS")
_MEMBERS = ("trs_k2", "trs", "trs_at", "adp")
_MEMBER_LABELS = ("TRS (k = 2)", "TRS (k = 3)", "TRS (k = 3) + AT", "ADP_{2,0.5}")

TABLES: dict[str, PaperTable] = {t.id: t for t in (
    PaperTable(
        "1", "Robustness of different approaches against various white-box attacks (MNIST).",
        "Sec. 4.3, Table 1", "mnist", _BASELINES, _BASELINE_LABELS, MNIST_WHITEBOX_ROWS,
        ((91.1, 91.7, 92.2, 93.4, 96.3, 95.0),
         (60.1, 52.7, 45.3, 48.5, 52.8, 65.7),
         (86.2, 87.2, 82.0, 84.3, 88.5, 91.7),
         (73.4, 70.1, 69.5, 70.2, 73.6, 74.4),
         (83.2, 80.1, 74.3, 78.2, 82.8, 93.3),
         (51.6, 45.2, 36.2, 38.1, 41.0, 74.0),
         (87.2, 90.4, 85.1, 85.3, 92.0, 92.5),
         (73.6, 73.2, 72.2, 71.9, 77.5, 75.4),
         (93.2, 90.1, 92.8, 94.1, 97.3, 95.2),
         (34.2, 40.1, 30.2, 31.3, 23.8, 43.2)),
        notes="Ensembles of 3 members; benign accuracy of all methods above 99.3% (Sec. 4.3)."),
    PaperTable(
        "2", "Robustness of different models against various whitebox attacks on CIFAR-10.",
        "App. F, Table 2", "cifar10", _BASELINES, _BASELINE_LABELS, CIFAR_WHITEBOX_ROWS,
        ((31.0, 38.2, 32.1, 33.2, 61.7, 40.9),
         (20.1, 18.5, 20.5, 23.1, 46.2, 15.2),
         (18.1, 46.8, 19.5, 50.5, 46.6, 65.2),
         (9.3, 32.3, 15.9, 31.5, 31.0, 33.8),
         (21.5, 46.1, 35.2, 52.1, 48.4, 73.1),
         (9.1, 28.2, 15.1, 31.2, 30.4, 47.3),
         (22.5, 45.6, 41.2, 49.7, 52.1, 66.0),
         (10.1, 24.1, 15.2, 28.5, 35.9, 36.0),
         (65.1, 81.2, 70.3, 75.4, 80.6, 83.7),
         (13.6, 23.0, 18.4, 26.2, 25.6, 62.6))),
    PaperTable(
        "3", "Robustness of TRS-based models on MNIST; k is the number of members, AT adds "
             "adversarial training.", "App. H, Table 3", "mnist", _MEMBERS, _MEMBER_LABELS,
        _with_pgd110(MNIST_WHITEBOX_ROWS),
        ((94.8, 95.0, 97.4, 96.3),
         (61.6, 65.7, 91.2, 52.8),
         (91.4, 91.7, 97.2, 88.5),
         (67.2, 74.4, 94.2, 73.6),
         (92.8, 93.3, 97.6, 82.8),
         (71.5, 74.0, 95.7, 41.0),
         (88.6, 89.7, 97.1, 28.1),
         (48.6, 53.2, 93.3, 1.18),
         (92.1, 92.5, 97.3, 92.0),
         (73.1, 75.4, 94.6, 77.5),
         (94.8, 95.2, 96.0, 97.3),
         (39.4, 43.2, 57.2, 23.8))),
    PaperTable(
        "4", "Robustness of TRS-based models on CIFAR-10; k is the number of members, AT adds "
             "adversarial training.", "App. H, Table 4", "cifar10", _MEMBERS, _MEMBER_LABELS,
        _with_pgd110(CIFAR_WHITEBOX_ROWS),
        ((42.0, 40.9, 67.1, 61.7),
         (21.8, 15.2, 44.9, 46.2),
         (59.2, 65.2, 78.4, 46.6),
         (36.7, 33.8, 64.9, 31.0),
         (65.4, 73.1, 81.0, 48.4),
         (46.6, 47.3, 71.9, 30.4),
         (57.7, 63.1, 78.0, 15.1),
         (32.1, 27.9, 62.8, 5.3),
         (59.8, 66.0, 78.5, 52.1),
         (38.5, 36.0, 65.8, 35.9),
         (73.8, 83.7, 85.5, 80.6),
         (61.6, 62.6, 82.4, 25.6))),
    PaperTable(
        "5", "Robustness of TRS ensembles (k = 3, lambda_1 = lambda_2 = 0.1) with different "
             "weights c on MNIST.", "App. H, Table 5", "mnist", ("trs_c0.5", "trs_c1", "trs"),
        ("TRS (c = 0.5)", "TRS (c = 1.0)", "TRS (c = 2.0)"), MNIST_WHITEBOX_ROWS,
        ((90.3, 92.1, 95.0),
         (62.4, 64.1, 65.7),
         (89.5, 91.2, 91.7),
         (68.2, 70.0, 74.4),
         (87.3, 90.7, 93.3),
         (72.8, 74.2, 74.0),
         (89.0, 91.7, 92.5),
         (70.7, 73.4, 75.4),
         (94.1, 94.8, 95.2),
         (38.1, 40.5, 43.2))),
    PaperTable(
        "6", "Robustness of TRS ensembles against ILA crafted on sub-model 1 (10 iterations).",
        "App. I, Table 6", None, ("member1", "member2", "member3", "ensemble"),
        ("Sub-model 1", "Sub-model 2", "Sub-model 3", "Ensemble Model"),
        (Row("ila", "eps", 0.1, 10, "mnist"), Row("ila", "eps", 0.15, 10, "mnist"),
         Row("ila", "eps", 0.01, 10, "cifar10"), Row("ila", "eps", 0.02, 10, "cifar10")),
        ((92.66, 96.43, 96.94, 96.22),
         (69.56, 88.03, 89.19, 86.26),
         (71.18, 79.75, 80.17, 78.82),
         (37.13, 58.28, 57.77, 51.93))),
)}

FIGURES: dict[str, PaperFigure] = {f.id: f for f in (
    PaperFigure("fig2", "Transferability for vanilla and TRS members on MNIST (eps = 0.2), two "
                "attacks.", "Sec. 4.2, Figure 2", "mnist", 0.2,
                claim="members of a TRS ensemble are more accurate on each other's adversarial "
                      "examples (lower transferability) than vanilla members"),
    PaperFigure("fig3", "Transferability for vanilla and TRS members on MNIST (eps = 0.2), all "
                "attacks.", "App. G, Figure 3", "mnist", 0.2,
                claim="both each member's robustness and the accuracy on transferred examples rise"),
    PaperFigure("fig4", "Transferability for vanilla and TRS members on CIFAR-10 (eps = 0.05).",
                "App. G, Figure 4", "cifar10", 0.05,
                claim="both each member's robustness and the accuracy on transferred examples rise"),
)}


def table(table_id) -> PaperTable:
    """Table ``table_id`` (``1``..``6``, int or str); the error lists the valid ids."""
    key = str(table_id)
    if key not in TABLES:
        raise KeyError(f"unknown table {table_id!r}; valid ids: {sorted(TABLES)}")
    return TABLES[key]


def figure(figure_id) -> PaperFigure:
    """Figure ``fig2``, ``fig3`` or ``fig4`` (``2`` is accepted for ``fig2``)."""
    key = str(figure_id)
    key = key if key.startswith("fig") else f"fig{key}"
    if key not in FIGURES:
        raise KeyError(f"unknown figure {figure_id!r}; valid ids: {sorted(FIGURES)}")
    return FIGURES[key]
