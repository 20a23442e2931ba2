"""Does the verdict depend on scale? Table 1's headline claim on every rung of the ladder.

On each rung that runs Table 1 the claim is the same: TRS minus the best other column the
rung runs, decided by the row vote of :func:`trs_lib.companion.claims.compare_claim` (the
rule of every "most rows" claim), under the paper's attacks and under the worst case. A
claim whose decided verdicts (reproduced / not reproduced) differ between rungs is
**scale-dependent**; the summary reports each claim at the highest rung that decides it.
"""
from __future__ import annotations

from . import claims as C
from . import grid as G
from ..records import cell_record
from .rungs import RUNGS
from ..stats import NOT_REPRODUCED, REPRODUCED

__all__ = ["LADDER", "ladder", "scale_dependent", "highest", "ladder_figure", "ladder_frame",
           "convergence_figure"]

#: the rungs in order of closeness to the paper's protocol (App. F: ResNet-20, 40 epochs on
#: MNIST); ``fashion`` changes the data set instead and sits beside the ladder, last.
LADDER = ("cpu", "cpu-40ep", "cpu-r20-2ep", "cpu-r20", "gpu", "fashion")
EVALUATIONS = {"paper": "the paper's attacks", "worst_case": "the strong worst case"}
DECIDED = (REPRODUCED, NOT_REPRODUCED)


def ladder(records: dict) -> list[dict]:
    """One dict per (rung, evaluation) that runs Table 1: ``rung``, ``evaluation``,
    ``verdict``, ``estimate``/``lo``/``hi`` (the deciding statistic: the row vote of TRS minus
    the best other column, points, 95%), ``margin``, ``seeds``, ``points``, ``columns`` (the
    other columns compared) and ``scale`` (the rung's description)."""
    assert set(LADDER) == set(RUNGS), "every rung has a place on the ladder"
    out = []
    for name in LADDER:
        r = RUNGS[name]
        if not r.runs("1") or r.dataset("mnist") is None:
            continue
        others = tuple(c for c in G.table_columns("1", name) if c != "trs" and c not in G.SUCCESSORS)
        check = C.compare_claim("1", "trs", others, "TRS", "most", rung=name)
        for ev in EVALUATIONS:
            res = check(name, records, ev)
            out.append(dict(rung=name, evaluation=ev, columns=others, scale=r.describe("mnist"),
                            **{k: res.get(k) for k in ("verdict", "reading", "estimate", "lo", "hi", "margin",
                                                        "seeds", "points", "evidence")}))
    return out


def scale_dependent(rows: list[dict]) -> dict:
    """``{evaluation: {reading: [rungs]}}`` for each evaluation whose readings differ between
    rungs: decided verdicts, and provisional ones (fewer than 3 seeds) by what their interval
    reads, the rung marked ``(provisional)``; empty when every rung agrees."""
    out = {}
    for ev in EVALUATIONS:
        by = {}
        for r in rows:
            if r["evaluation"] != ev:
                continue
            if r["verdict"] in DECIDED:
                by.setdefault(r["verdict"], []).append(r["rung"])
            elif r["verdict"] == C.PROVISIONAL and r["reading"] in DECIDED:
                by.setdefault(r["reading"], []).append(f"{r['rung']} (provisional)")
        if len(by) > 1:
            out[ev] = by
    return out


def highest(rows: list[dict], evaluation: str) -> dict | None:
    """The row of the highest rung (in :data:`LADDER`'s order, ``fashion`` aside) whose
    verdict is decided or provisional, or None."""
    cands = [r for r in rows if r["evaluation"] == evaluation and r["rung"] != "fashion"
             and r["estimate"] is not None and r["verdict"] in DECIDED + (C.PROVISIONAL,)]
    return max(cands, key=lambda r: LADDER.index(r["rung"]), default=None)


def ladder_frame(rows: list[dict]):
    """The ladder as a table: rung, evaluation, the difference with its interval, verdict,
    seeds and points per side, the columns compared."""
    import pandas as pd
    return pd.DataFrame([{
        "rung": r["rung"], "evaluation": EVALUATIONS[r["evaluation"]],
        "TRS − best other, row vote [95%]": "not run" if r["estimate"] is None else
        f"{r['estimate']:+.1f} [{r['lo']:+.1f}, {r['hi']:+.1f}]",
        "verdict": r["verdict"],
        "seeds (TRS / other)": "" if not r["seeds"] else "/".join(map(str, r["seeds"])),
        "compared with": ", ".join(r["columns"])} for r in rows]).set_index(["rung", "evaluation"])


def ladder_figure(rows: list[dict]):
    """Rungs on the x axis, the deciding difference with its 95% interval per evaluation,
    the margin drawn, colour by verdict; rungs without records are marked "not run"."""
    import matplotlib.pyplot as plt
    colours = {REPRODUCED: "tab:green", NOT_REPRODUCED: "tab:red"}
    rungs = list(dict.fromkeys(r["rung"] for r in rows))
    fig, axes = plt.subplots(1, len(EVALUATIONS), figsize=(11, 3.6), sharey=True)
    for ax, (ev, title) in zip(axes, EVALUATIONS.items()):
        for i, name in enumerate(rungs):
            r = next(x for x in rows if x["rung"] == name and x["evaluation"] == ev)
            if r["estimate"] is None:
                ax.annotate("not run", (i, 0), ha="center", va="bottom", fontsize=8, color="grey")
                continue
            ax.errorbar([i], [r["estimate"]], yerr=[[r["estimate"] - r["lo"]], [r["hi"] - r["estimate"]]],
                        fmt="o", capsize=4, color=colours.get(r["verdict"], "tab:orange"))
        margin = next((x["margin"] for x in rows if x["margin"] is not None), 0.0)
        ax.axhline(margin, color="k", lw=0.8, ls="--")
        ax.set_xticks(range(len(rungs)), rungs, rotation=20, fontsize=8)
        ax.set_title(f"TRS − best other column, {title}", fontsize=9)
        ax.set_xlim(-0.5, len(rungs) - 0.5)
    axes[0].set_ylabel("points (row vote, 95%)")
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], marker="o", ls="", color=c, label=v) for v, c in
               ((REPRODUCED, "tab:green"), (NOT_REPRODUCED, "tab:red"), ("provisional / inconclusive", "tab:orange"))]
    handles.append(Line2D([], [], color="k", lw=0.8, ls="--", label="margin"))
    axes[-1].legend(handles=handles, fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def convergence_figure(records: dict):
    """One panel per rung with Table 1 trainings recorded: per column (seed 0), clean accuracy
    (solid) and PGD-10 accuracy on the held-out slice (dashed, where recorded) per epoch."""
    import matplotlib.pyplot as plt
    panels = []
    for name in LADDER:
        if not RUNGS[name].runs("1"):
            continue
        trains = G.table_cells("1", name, 0)["train"]
        hist = {col: cell_record(tc, records)["metrics"].get("history", [])
                for col, tc in trains.items() if cell_record(tc, records)}
        if hist:
            panels.append((name, hist))
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(5 * max(len(panels), 1), 3.2), squeeze=False)
    for ax, (name, hist) in zip(axes[0], panels):
        for i, (col, h) in enumerate(hist.items()):
            colour = plt.cm.tab10(i % 10)
            ax.plot([e["epoch"] for e in h], [100 * e["test_acc_ensemble"] for e in h], color=colour, label=col)
            pgd = [(e["epoch"], 100 * e["test_pgd10_acc"]) for e in h if "test_pgd10_acc" in e]
            if pgd:
                ax.plot(*zip(*pgd), color=colour, ls="--")
        ax.set_title(f"{name}: clean (solid), PGD-10 (dashed)", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%)")
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig
