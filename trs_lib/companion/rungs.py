"""The rungs of the scale ladder, as data: which data set, network, epochs, test points and
seeds a grid's cells use, from the CPU proxy (``cpu``) toward the paper's protocol (``gpu``,
App. F). Adding a rung is adding an entry of :data:`RUNGS`; :mod:`trs_lib.companion.grid`
turns a rung into cells."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..recipes import make_config

__all__ = ["Audit", "Rung", "RUNGS", "rung", "TARGETS", "normalise_target"]

# The paper's tables and figures the grid knows.
TARGETS = ("1", "2", "3", "4", "5", "6", "fig2", "fig3", "fig4")


@dataclass(frozen=True)
class Audit:
    """The adaptive audit's settings on a rung: APGD iterations, the "more steps" check's
    iterations (None: 10x PGD's) and restarts, and its test points (None: the rung's)."""

    steps: int = 100
    more_steps: int | None = None
    more_restarts: int = 5
    n_test: int | None = None


@dataclass(frozen=True)
class Rung:
    """One rung of the scale ladder: which data, network, epochs, test points and seeds the
    grid's cells use. ``describe`` is the scale column of every table.

    A rung is data: adding one is adding an entry of :data:`RUNGS`. ``targets`` are the tables
    and figures run at the rung; ``columns`` (when set) replaces the columns of Tables 1/2 there;
    ``column_seeds`` gives a column fewer seeds than ``seeds`` (the budget's cut);
    ``column_train`` overrides the training of one column on this rung only.
    """

    name: str
    datasets: dict                        # paper data set -> data set used on this rung
    train: dict                           # overrides of the recipe for every training
    n_test: int | None                    # test points for attacks (None: the whole test split)
    seeds: tuple = (0,)                   # training seeds of every column (= attack seeds)
    cw_steps: int = 1000                  # CW-L2 iterations (paper, via its code: 1000)
    cw_n_test: int | None = None          # test points of the CW rows (None: n_test)
    restarts: int = 1                     # random restarts of PGD (worst case over restarts)
    worst_case_suite: str = "linf"        # the worst_case suite's name (trs_lib.evaluate)
    worst_case_eps: tuple | None = None   # its budgets (None: every L-inf budget of the rows)
    transfer_steps: int = 10              # PGD iterations of the transfer matrices
    blackbox: bool = False                # Tables 1/2 get transfer from unseen surrogates
    transfer_attacks: tuple | None = None  # its attacks (None: trs_lib.transfer's default plan)
    audit: Audit | None = None            # the adaptive audit (None: not run on this rung)
    targets: tuple | None = None          # tables/figures run on this rung (None: every one)
    columns: tuple | None = None          # Tables 1/2's columns on this rung (None: the table's)
    column_seeds: dict = field(default_factory=dict)   # column -> its seeds, when fewer
    column_train: dict = field(default_factory=dict)   # column -> extra training overrides
    why: str = ""                         # why this rung exists and why its numbers
    label: str = ""                       # shown beside a column's name from this rung

    def dataset(self, paper_dataset: str) -> str | None:
        """The data set standing in for ``paper_dataset`` (None: not run on this rung)."""
        return self.datasets.get(paper_dataset)

    def runs(self, target: str) -> bool:
        """Whether ``target`` has cells on this rung."""
        return self.targets is None or normalise_target(target) in self.targets

    def describe(self, paper_dataset: str = "mnist") -> str:
        ds = self.dataset(paper_dataset)
        if ds is None:
            return f"not run on rung {self.name!r}"
        cfg = make_config(ds, "trs", **self.train)
        n = "all" if self.n_test is None else str(self.n_test)
        seeds = f"{len(self.seeds)} seed{'s' if len(self.seeds) > 1 else ''} per column"
        cw = f"CW {self.cw_steps} iterations" + (f" on {self.cw_n_test} points" if self.cw_n_test else "")
        wc = ("worst case at every L-inf budget" if self.worst_case_eps is None else
              "worst case at eps " + ", ".join(f"{e:g}" for e in self.worst_case_eps))
        fewer = sorted({len(s) for s in self.column_seeds.values()})
        late = ("" if not self.column_seeds else
                f"; {', '.join(sorted(self.column_seeds))}: {'/'.join(map(str, fewer))} seed(s)")
        return (f"{ds}, {cfg.arch}, {cfg.num_models} members (unless the column says), "
                f"{cfg.epochs} epochs, {seeds}, {n} test points, {cw}, {wc}, "
                f"{self.restarts} restart(s){late}")


_LADDER_COLUMNS = ("vanilla", "trs", "trs_published", "adp", "dverge", "gal", "lotos", "trs_lotos")

RUNGS: dict[str, Rung] = {
    # 3 seeds per Table 1 column, all 1,000 mnist5k test points, so that a paired difference
    # between two columns has a 95% interval of about +-3-6 points; 4 epochs (TRS + AT runs 11
    # PGD steps per batch). The cut that kept the regrid within 5 hours on 2 cores
    # (benchmarks/reproduce.py --estimate), each part measured:
    # * CW-L2 with the paper's 1,000 iterations (converged: doubling them moved TRS seed 0 at
    #   c = 10 by 0.5 points and at c = 0.1 by 0) on 200 evenly spaced points (CW costs 0.4 s
    #   per point, PGD-10 0.005 s); every cell re-runs c = 10 with the iterations doubled;
    # * the worst case at eps 0.15 only (eps 0.1 costs twice as much: twice as many points stay
    #   robust, and each gets every attack's full budget);
    # * the columns only Tables 3-5 have (k = 2, TRS + AT, c = 0.5, c = 1) with seed 0.
    "cpu": Rung("cpu", {"mnist": "mnist5k"}, {"epochs": 4}, n_test=1000, seeds=(0, 1, 2),
                cw_n_test=200, worst_case_eps=(0.15,),
                audit=Audit(steps=50, more_steps=50, more_restarts=3, n_test=200),
                targets=("1", "2", "3", "4", "5", "6", "fig2", "fig3", "fig4"), blackbox=True,
                why="the companion's CPU proxy: every table, 3 seeds"),
    # The paper's architecture at the CPU proxy, a one-seed pilot (a ResNet-20 step costs about
    # 13 small-CNN steps here): 2 epochs, 100 test points, CW on 50.
    "cpu-r20-2ep": Rung("cpu-r20-2ep", {"mnist": "mnist5k"}, {"arch": "resnet20", "epochs": 2},
                        n_test=100, seeds=(0,), cw_n_test=50, worst_case_eps=(0.15,),
                        targets=("1",), columns=("vanilla", "trs", "trs_published", "adp"),
                        why="pilot of the paper's network: one seed, 2 epochs, 100 points",
                        label="ResNet-20"),
    # The ladder toward the paper's protocol: one change at a time from the proxy.
    "cpu-40ep": Rung("cpu-40ep", {"mnist": "mnist5k"}, {"epochs": 40}, n_test=1000,
                     seeds=(0, 1, 2), cw_n_test=200, worst_case_eps=(0.15,), targets=("1",),
                     columns=_LADDER_COLUMNS, blackbox=True,
                     why="the paper's MNIST epoch count (App. F: 40) on the proxy's network",
                     label="40 epochs"),
    # 10 epochs: the fewest the ladder issue allows; at ~13x the small CNN's step a 3-seed
    # column costs ~40 min of one core for TRS, so more epochs do not fit the ladder's budget.
    "cpu-r20": Rung("cpu-r20", {"mnist": "mnist5k"}, {"arch": "resnet20", "epochs": 10},
                    n_test=1000, seeds=(0, 1, 2), cw_n_test=200, worst_case_eps=(0.15,),
                    targets=("1",), columns=_LADDER_COLUMNS, blackbox=True,
                    column_train={"trs_published": {"arch": "resnet20_authors"}},
                    why="the paper's network (ResNet-20; the authors' for TRS as published)",
                    label="ResNet-20, 10 epochs"),
    "fashion": Rung("fashion", {"mnist": "fashion_mnist"}, {"arch": "small_cnn", "epochs": 10},
                    n_test=1000, seeds=(0, 1, 2), cw_n_test=200, worst_case_eps=(0.15,),
                    targets=("1",), columns=_LADDER_COLUMNS, blackbox=True,
                    why="a harder real data set (60,000 Fashion-MNIST images): is the ranking "
                        "a property of digits?", label="Fashion-MNIST"),
    # The paper's protocol (App. F): ResNet-20, 40 epochs on MNIST and 180 on CIFAR-10, the
    # whole test set; needs a GPU and the data sets on disk.
    "gpu": Rung("gpu", {"mnist": "mnist", "cifar10": "cifar10"}, {}, n_test=None,
                seeds=(0, 1, 2), audit=Audit(steps=100), blackbox=True,
                column_train={"trs_published": {"arch": "resnet20_authors"}},
                why="the paper's protocol, for one CUDA GPU"),
}


def rung(name) -> Rung:
    """The rung called ``name`` (a :class:`Rung` is returned as it is)."""
    if isinstance(name, Rung):
        return name
    if name not in RUNGS:
        raise ValueError(f"unknown rung {name!r}; valid rungs: {sorted(RUNGS)}")
    return RUNGS[name]


def normalise_target(t) -> str:
    """``1``, ``"table1"`` -> ``"1"``; ``"fig2"``, ``"figure2"`` -> ``"fig2"``."""
    key = str(t).strip().lower().replace(" ", "").replace("figure", "fig").removeprefix("table")
    if key not in TARGETS:
        raise ValueError(f"unknown table or figure {t!r}; valid targets: {list(TARGETS)}")
    return key
