"""Paired differences between columns, row by row: the numbers a claim of the form "column A
beats the best of B, C, ..." is judged on (``trs_lib.companion.claims``), each with its 95%
interval from the seed-and-point bootstrap (``trs_lib.stats``) and its row's verdict."""
from __future__ import annotations

import numpy as np

from . import grid as G
from . import tables as R
from .. import paper_numbers as P
from .. import stats as S
from ..records import load_records
from .verdicts import Margin

__all__ = ["rows_of", "compare_frame", "common_seeds", "paired_difference", "MARGIN", "BENIGN_MARGIN", "HALF_WIDTH_TARGET",
           "REPRODUCED", "NOT_REPRODUCED", "INCONCLUSIVE", "NOT_YET_RUN", "BETTER", "BENIGN",
           "C_SPREAD", "SMOOTHER", "ILA_GAP", "SMOOTHNESS_UNIT", "MARGINS"]

# ------------------------------------------------------------------ the claims' margins, sourced
BETTER = Margin(0.0, "points", "companion's choice: 'outperforms' (paper line 168), 'more robust', "
                "'less transferable' (line 133) give no size, so any difference the interval "
                "shows above 0 counts")
BENIGN = Margin(1.0, "points", "companion's choice: the paper says only 'similar performance' "
                "(line 133) and 'above 99.3%' for every method (line 168); 1 point of clean "
                "accuracy is the companion's reading of 'similar'")
C_SPREAD = Margin(round(max(max(r) - min(r) for r in P.table(5).values), 2), "points",
                  "the largest spread over c that the paper's Table 5 prints (BIM ε = 0.15, "
                  "paper lines 643-653), the paper's 'will not affect the model's robustness too "
                  "much' (line 603); for the paper's rows only")
SMOOTHNESS_UNIT = "gradient change per unit L2 distance"
SMOOTHER = Margin(0.0, SMOOTHNESS_UNIT, "companion's choice: 'smoother' (Sec. 3, line 129) "
                  "gives no size")
ILA_GAP = Margin(0.0, "points", "the paper's Table 6 (lines 665-666): 'does not affect the "
                 "performance of other sub-models' (line 660) read as the other members and the "
                 "ensemble keeping at least the paper's own gap over sub-model 1, row by row; each "
                 "row's paper gap is subtracted, so the claim's margin is 0")
MARGINS = {"BETTER": BETTER, "BENIGN": BENIGN, "C_SPREAD": C_SPREAD, "SMOOTHER": SMOOTHER,
           "ILA_GAP": ILA_GAP}
MARGIN = BETTER.value          # points: the margin of every "better than" claim
BENIGN_MARGIN = BENIGN.value   # points: "about as accurate" on benign inputs
HALF_WIDTH_TARGET = 6.0  # points: the half-width target for Table 1's headline differences
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = S.REPRODUCED, S.NOT_REPRODUCED, S.INCONCLUSIVE
NOT_YET_RUN = "not yet run at this scale"


# ------------------------------------------------------------------------ rows and differences
def rows_of(target, evaluation, scale="cpu"):
    """``[(label, eval part, entry key)]`` of a table under an evaluation (``paper``; the worst
    case at the budgets the scale runs it, :func:`trs_lib.companion.grid.worst_case_rows`;
    ``blackbox``: transfer from unseen surrogates at every L-inf budget)."""
    rows = P.table(target).rows
    if evaluation == "paper":
        return [(f"{r.label} {r.para}", "pgd110" if r.steps == 110 else "whitebox", r.key)
                for r in rows]
    if evaluation == "blackbox":  # transfer from unseen surrogates, at every L-inf budget
        return [(f"transfer ε = {b.value:g}", "blackbox", b.key) for b in G.blackbox_rows(rows)]
    return [(f"worst case ε = {w.value:g}", "worst_case", w.key)
            for w in G.worst_case_rows(rows, rung_=scale)]


def common_seeds(a: R.RowResults, b: R.RowResults) -> list:
    return [s for s in a.seeds if s in b.seeds]


def paired_difference(a: R.RowResults, b: R.RowResults):
    """``(d, lo, hi, paired, diff_array)`` of a - b in points over their common seeds; None
    when they share no seed. ``diff_array``: the (seeds, points) array of a - b when paired."""
    seeds = common_seeds(a, b)
    if not seeds:
        return None
    if a.paired and b.paired and len(a.correct[0]) == len(b.correct[0]):
        arr = a.array(seeds) - b.array(seeds)
        d, lo, hi = S.bootstrap_mean(arr)
        return 100 * d, 100 * lo, 100 * hi, True, arr
    n = min(x for x in a.n + b.n if x) if all(a.n + b.n) else None
    if n is None:
        return None
    acc_a = [a.accuracy[a.seeds.index(s)] for s in seeds]
    acc_b = [b.accuracy[b.seeds.index(s)] for s in seeds]
    d, lo, hi = S.unpaired_difference(acc_a, acc_b, n)
    return 100 * d, 100 * lo, 100 * hi, False, None


def compare_frame(target, column, others, evaluation="paper", scale="cpu", records=None,
                  root=None, parts=None, direction="greater", margin=MARGIN):
    """Per row of ``target``: ``column`` minus the best of ``others`` (by mean accuracy), its
    95% interval in points, the row's verdict, and how the interval was computed.

    Columns: ``row``, ``label``, ``best_other``, ``ours``, ``other``, ``estimate``, ``lo``,
    ``hi``, ``half_width``, ``seed_half_width`` and ``point_half_width`` (the half-widths with
    only the seeds or only the points resampled, :func:`trs_lib.stats.interval_sources`; None
    when unpaired), ``n_seeds``, ``paired``, ``verdict`` (``not yet run at this scale``
    when a number is missing, or when a column lacks one of the scale's seeds: then
    ``provisional`` is True and the numbers are those of the seeds recorded so far). ``parts``
    keeps only rows of those evaluation parts.
    """
    import pandas as pd
    target = G.normalise_target(target)
    records = load_records(root) if records is None else records
    cells = R.seed_cells(target, scale)
    # the seeds the scale trains each column with (fewer for a column the budget cuts)
    want = {c: {s for s, by in cells.items() if c in by["train"]} for c in (column, *others)}
    out = []
    for label, part, key in rows_of(target, evaluation, scale):
        if parts is not None and part not in parts:
            continue
        res = {c: R.row_results(target, c, part, key, scale, records, cells) for c in (column, *others)}
        row = dict(row=key, label=label, best_other=None, ours=None, other=None, estimate=None,
                   lo=None, hi=None, half_width=None, seed_half_width=None, point_half_width=None,
                   n_seeds=0, paired=False, verdict=NOT_YET_RUN,
                   provisional=False)
        if all(r.seeds for r in res.values()):
            mean = {c: float(np.mean(r.accuracy)) for c, r in res.items()}
            best = max(others, key=lambda c: mean[c])
            diff = paired_difference(res[column], res[best])
            if diff is not None:
                d, lo, hi, paired, arr = diff
                if arr is not None:
                    src = S.interval_sources(arr)
                    row.update(seed_half_width=round(100 * src["seeds"], 2),
                               point_half_width=round(100 * src["points"], 2))
                row.update(best_other=best, ours=round(100 * mean[column], 2),
                           other=round(100 * mean[best], 2), estimate=round(d, 2),
                           lo=round(lo, 2), hi=round(hi, 2), half_width=round((hi - lo) / 2, 2),
                           n_seeds=len(common_seeds(res[column], res[best])), paired=paired,
                           verdict=S.verdict(lo, hi, margin, direction))
                # a verdict needs every seed of the scale in every column: before that the
                # row's numbers are shown as provisional and the row waits
                if not all(want[c] <= set(r.seeds) for c, r in res.items()):
                    row.update(verdict=NOT_YET_RUN, provisional=True)
        out.append(row)
    return pd.DataFrame(out)
