"""The paper's attack settings as data (Tables 1-6, Figures 2-4), per data set.

Where the paper leaves a setting open, the value is the one of the authors' evaluation code
(``eval/Empirical/whitebox.py`` and ``trans_matrix.py`` of the TRS repository, which call
advertorch), and every such choice is listed in :data:`CONVENTIONS`:

* iterative L-inf attacks step ``eps / 10``: PGD always ``eps / 10`` (also with 110 steps),
  BIM and MIM ``eps / r`` with ``r`` = 10 iterations (Sec. 4.1); MIM momentum 1.0;
* CW-L2: confidence kappa 0.1, 1000 iterations, Adam lr 0.01, one value of c (no binary search);
* EAD: beta 0.01, kappa 0.1, 100 iterations, lr 0.01, 9 binary-search steps;
* JSMA: theta 1.0; ILA: 10 iterations after a 10-step BIM guide, at the layer of
  :func:`trs_lib.attacks.ila.default_layer`;
* transfer matrices: PGD with random start, step eps/10 (the authors' code uses 5 steps; the
  companion's grid uses 10), at eps 0.2 (MNIST) and 0.05 (CIFAR-10), and FGSM at the same eps.

``mnist5k`` and ``fashion_mnist`` use the MNIST settings. :func:`attack_kwargs` turns one row
into the keyword arguments of the attack function.
"""
from __future__ import annotations

from .. import paper_numbers as P

__all__ = ["DEFAULTS", "PRESETS", "CONVENTIONS", "SMOOTHNESS_RADII", "SMOOTHNESS_CLAIM_RADIUS",
           "paper_dataset", "preset", "attack_kwargs"]

#: keyword defaults per attack used by every table (the paper's conventions, see module doc).
DEFAULTS: dict[str, dict] = {
    "fgsm": {},
    "bim": {"steps": 10},
    "pgd": {"steps": 10, "random_start": True},
    "mim": {"steps": 10, "decay": 1.0},
    "cw": {"kappa": 0.1, "steps": 1000, "lr": 0.01, "binary_search_steps": 1},
    "ead": {"beta": 0.01, "kappa": 0.1, "steps": 100, "lr": 0.01, "binary_search_steps": 9},
    "jsma": {"theta": 1.0, "targeted": False},
    "ila": {"steps": 10, "guide_steps": 10},
    "apgd_ce": {"steps": 100},
    "apgd_dlr": {"steps": 100},
}

#: L2 radii of the "smoothness" suite (:func:`trs_lib.theory.estimators.local_smoothness`): the
#: rows of every smoothness cell; the smoothness claim is judged at :data:`SMOOTHNESS_CLAIM_RADIUS`.
SMOOTHNESS_RADII = (0.25, 1.0, 4.0)
SMOOTHNESS_CLAIM_RADIUS = 1.0

#: the budget keyword of each attack (``eps`` for L-inf, ``c`` for CW/EAD, ``gamma`` for JSMA).
BUDGET = {"fgsm": "eps", "bim": "eps", "pgd": "eps", "mim": "eps", "cw": "c", "ead": "c",
          "jsma": "gamma", "ila": "eps", "apgd_ce": "eps", "apgd_dlr": "eps"}


def _as_preset(row: P.Row) -> dict:
    return {"attack": row.attack, "param": row.param, "value": row.value, "steps": row.steps}


def _presets_of(paper_dataset: str, whitebox, pgd_table, fig) -> dict:
    """A data set's rows per evaluation, read from the paper's tables (``paper_numbers``)."""
    ila = tuple(r for r in P.table("6").rows if r.dataset == paper_dataset)
    transfer_steps = DEFAULTS["pgd"]["steps"]
    return {
        "whitebox": tuple(_as_preset(r) for r in whitebox),
        "pgd110": tuple(_as_preset(r) for r in P.table(pgd_table).rows if r.steps == 110),
        "transfer": tuple(_as_preset(P.Row(a, "eps", P.figure(fig).eps,
                                           None if a == "fgsm" else transfer_steps))
                          for a in ("fgsm", "pgd")),
        "ila": tuple(_as_preset(P.Row(r.attack, r.param, r.value, r.steps)) for r in ila),
        "extra": tuple(_as_preset(r) for r in P.UNREPORTED_ROWS[paper_dataset]),
    }


#: per paper data set: the rows of each evaluation (``steps`` None = the attack's default),
#: derived from the paper's tables: whitebox (Tables 1, 2, 5), pgd110 (Tables 3, 4), transfer
#: (Figures 2-4), ila (Table 6), extra (Sec. 4.1's attacks without numbers).
PRESETS: dict[str, dict] = {
    "mnist": _presets_of("mnist", P.MNIST_WHITEBOX_ROWS, "3", "fig2"),
    "cifar10": _presets_of("cifar10", P.CIFAR_WHITEBOX_ROWS, "4", "fig4"),
}

CONVENTIONS = (
    "PGD: random start, step eps/10 for any number of steps (authors' code: eps_iter = eps/10).",
    "BIM, MIM: step eps/r with r = 10 iterations (Sec. 4.1); MIM momentum mu = 1.0 (Dong et al.).",
    "CW-L2: kappa = 0.1, 1000 iterations, Adam lr 0.01, no binary search over c (authors' code).",
    "EAD: beta = 0.01, kappa = 0.1, 100 iterations, lr 0.01, 9 binary-search steps (advertorch defaults used by the authors).",
    "JSMA: theta = 1.0, gamma = the table's value.",
    "ILA: BIM guide (10 steps) on member 1, then 10 ILA steps of eps/10 at an intermediate layer.",
    "Transfer matrices: PGD with random start, step eps/10; the authors' code uses 5 steps.",
)

_DATASETS = {"mnist5k": "mnist", "mnist": "mnist", "fashion_mnist": "mnist", "cifar10": "cifar10"}


def paper_dataset(dataset: str) -> str:
    """The paper data set whose settings ``dataset`` uses (``mnist5k`` -> ``mnist``)."""
    if dataset not in _DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; valid names: {sorted(_DATASETS)}")
    return _DATASETS[dataset]


def preset(dataset: str, suite: str = "whitebox") -> tuple[dict, ...]:
    """The rows of ``suite`` (whitebox, pgd110, transfer, ila, extra) for ``dataset``."""
    p = PRESETS[paper_dataset(dataset)]
    if suite not in p:
        raise ValueError(f"unknown preset suite {suite!r}; valid suites: {sorted(p)}")
    return tuple(dict(r) for r in p[suite])


def attack_kwargs(row: dict, **overrides) -> tuple[str, dict]:
    """``(attack name, keyword arguments)`` for a row ``{attack, param, value, steps}``.

    The attack's :data:`DEFAULTS` first, then the row's budget and steps, then ``overrides``
    (e.g. ``steps=100`` for CW at the CPU scale). FGSM ignores ``steps``.
    """
    name = row["attack"]
    if name not in DEFAULTS:
        raise ValueError(f"unknown attack {name!r} in row {row!r}; valid names: {sorted(DEFAULTS)}")
    param = row.get("param", BUDGET[name])
    if param != BUDGET[name]:
        raise ValueError(f"row {row!r}: the budget of {name} is {BUDGET[name]!r}, not {param!r}")
    kw = dict(DEFAULTS[name])
    kw[param] = float(row["value"])
    if row.get("steps") is not None and name != "fgsm":
        kw["steps"] = int(row["steps"])
    kw.update(overrides)
    return name, kw
