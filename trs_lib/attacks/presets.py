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

__all__ = ["DEFAULTS", "PRESETS", "CONVENTIONS", "SMOOTHNESS_RADII", "SMOOTHNESS_CLAIM_RADIUS",
           "paper_dataset", "preset", "attack_kwargs", "row_key"]

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


def _r(attack, value, steps=None):
    return {"attack": attack, "param": BUDGET[attack], "value": value, "steps": steps}


#: per paper data set: the rows of each evaluation (``steps`` None = the attack's default).
PRESETS: dict[str, dict] = {
    "mnist": {
        # Tables 1, 3, 5 (Table 3 adds PGD-110)
        "whitebox": (_r("fgsm", 0.1), _r("fgsm", 0.2), _r("bim", 0.1, 10), _r("bim", 0.15, 10),
                     _r("pgd", 0.1, 10), _r("pgd", 0.15, 10), _r("mim", 0.1, 10), _r("mim", 0.15, 10),
                     _r("cw", 0.1), _r("cw", 10.0)),
        "pgd110": (_r("pgd", 0.1, 110), _r("pgd", 0.15, 110)),
        # Figures 2-3: eps 0.2
        "transfer": (_r("fgsm", 0.2), _r("pgd", 0.2, 10)),
        # Table 6
        "ila": (_r("ila", 0.1, 10), _r("ila", 0.15, 10)),
        # not in the paper's tables: the attacks Sec. 4.1 names without numbers
        "extra": (_r("ead", 0.1), _r("ead", 10.0), _r("jsma", 0.1)),
    },
    "cifar10": {
        # Tables 2, 4
        "whitebox": (_r("fgsm", 0.02), _r("fgsm", 0.04), _r("bim", 0.01, 10), _r("bim", 0.02, 10),
                     _r("pgd", 0.01, 10), _r("pgd", 0.02, 10), _r("mim", 0.01, 10), _r("mim", 0.02, 10),
                     _r("cw", 0.001), _r("cw", 0.1)),
        "pgd110": (_r("pgd", 0.01, 110), _r("pgd", 0.02, 110)),
        # Figure 4: eps 0.05
        "transfer": (_r("fgsm", 0.05), _r("pgd", 0.05, 10)),
        "ila": (_r("ila", 0.01, 10), _r("ila", 0.02, 10)),
        "extra": (_r("ead", 0.001), _r("ead", 0.1), _r("jsma", 0.1)),
    },
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


def row_key(row: dict) -> str:
    """A row's stable name, e.g. ``pgd110/eps=0.15``, ``cw/c=10`` (as ``paper_numbers.Row.key``)."""
    steps = row.get("steps")
    s = "" if steps is None or row["attack"] != "pgd" else str(steps)
    ds = f"{row['dataset']}:" if row.get("dataset") else ""
    return f"{ds}{row['attack']}{s}/{row['param']}={row['value']:g}"


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
