"""How a claim's rows become one statistic, one interval and one verdict (issue 21).

A claim is a list of :class:`Row` (one paired difference per attack setting, in the claim's
unit) and a **statistic** over them: ``mean`` (the mean over rows), ``all`` (the minimum over
rows for "in every row"; the maximum for a "less than" claim), ``most`` (the row vote: the k-th
largest row value, k = more than half the rows, so it clears the margin exactly when more than
half the rows do). :func:`decide` draws **one joint bootstrap** for all the rows (the seeds
resampled once, the test points resampled once over the claim's full point set; a row on fewer
points, CW on an evenly spaced subset, uses the draw's weights at its own points), reads the
statistic's 95% interval from those draws, and the verdict from that interval against the
margin (:func:`trs_lib.stats.verdict`).

* ``mean``: the percentile interval of the draws of the mean over rows.
* ``all`` and ``most``: **simultaneous** row intervals by the max-statistic bootstrap (each row's
  draws standardised by its bootstrap standard error; c is the 95% quantile of the largest
  |standardised deviation| over the rows in a draw; row r's interval is d_r ± c·se_r), and the
  statistic's interval is the same order statistic of the rows' bounds.

Rows without per-point results (accuracies only) are drawn parametrically: each seed's accuracy
as a binomial on its points, with the same seed weights as the other rows.

The verdict is then qualified: fewer than :data:`MIN_SEEDS` seeds on either side gives at most
**provisional** (the interval's reading is kept in ``reading``); a claim whose verdict changes
when any one row is left out is **fragile** (the rows named); a claim whose verdict changes at
half or twice its margin is **margin-sensitive** (margin 0 has no such range).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import stats as S

__all__ = ["Row", "Margin", "decide", "spread_positions", "MIN_SEEDS", "PROVISIONAL",
           "NO_VERDICT", "STATISTICS", "CONFIDENCE"]

MIN_SEEDS = 3          # seeds per side below which a verdict is at most provisional
CONFIDENCE = 0.95
PROVISIONAL = "provisional"
NO_VERDICT = "no verdict (the paper has no counterpart)"
STATISTICS = {"mean": "mean over rows", "all": "worst row",
              "most": "row vote (the k-th best row of n, k more than half)"}


@dataclass(frozen=True)
class Margin:
    """A claim's margin: its value in the claim's unit and where it comes from."""
    value: float
    unit: str
    source: str


@dataclass
class Row:
    """One row of a claim: ``diff`` a ``(seeds, points)`` array of per-point differences a - b
    (paired) or None with ``acc_a``/``acc_b`` per-seed accuracies on ``n`` points (unpaired);
    ``positions``: the row's points among the claim's ``n_full`` (None: all of them);
    ``scale`` converts to the claim's unit (100: fractions to points); ``shift`` is subtracted
    (a per-row margin, e.g. the paper's own gap)."""
    label: str
    seeds: tuple
    diff: np.ndarray | None = None
    acc_a: tuple = ()
    acc_b: tuple = ()
    n: int = 0
    seeds_a: int = 0
    seeds_b: int = 0
    positions: np.ndarray | None = None
    scale: float = 100.0
    shift: float = 0.0
    note: str = field(default="")

    @property
    def estimate(self) -> float:
        if self.diff is not None:
            return self.scale * float(self.diff.mean())
        return self.scale * float(np.mean(self.acc_a) - np.mean(self.acc_b))


def spread_positions(n: int, k: int) -> np.ndarray:
    """The indices of ``k`` evenly spaced points among ``n``: the points of a CW row run on
    fewer points (the rule of ``trs_lib.evaluate.spread_indices``)."""
    return np.round(np.linspace(0, n - 1, k)).astype(int)


def _draws(rows, n_boot, seed):
    """``(B, rows)`` draws of every row's estimate from one joint bootstrap."""
    rng = np.random.default_rng(seed)
    seeds = sorted({s for r in rows for s in r.seeds})
    sc = rng.multinomial(len(seeds), np.full(len(seeds), 1 / len(seeds)), size=n_boot).astype(float)
    n_full = max(r.n if r.positions is None else int(r.positions.max()) + 1 for r in rows)
    pc = rng.multinomial(n_full, np.full(n_full, 1 / n_full), size=n_boot).astype(float)
    out = np.empty((n_boot, len(rows)))
    for j, r in enumerate(rows):
        w = sc[:, [seeds.index(s) for s in r.seeds]]
        tot = w.sum(axis=1, keepdims=True)
        w = np.where(tot > 0, w / np.where(tot > 0, tot, 1), 1 / len(r.seeds))
        if r.diff is not None:
            pos = np.arange(r.diff.shape[1]) if r.positions is None else r.positions
            c = pc[:, pos]
            ct = c.sum(axis=1)
            per_point = w @ r.diff                       # (B, points): seed-weighted
            est = np.where(ct > 0, (per_point * c).sum(axis=1) / np.where(ct > 0, ct, 1),
                           per_point.mean(axis=1))
        else:
            a = rng.binomial(r.n, np.clip(r.acc_a, 0, 1), size=(n_boot, len(r.acc_a))) / r.n
            b = rng.binomial(r.n, np.clip(r.acc_b, 0, 1), size=(n_boot, len(r.acc_b))) / r.n
            est = (w * (a - b)).sum(axis=1)
        out[:, j] = r.scale * est
    return out


def _kth(values, k, direction):
    v = np.sort(np.asarray(values))
    return float(v[-k] if direction == "greater" else v[k - 1])


def _interval(d, draws, kind, direction):
    """``(estimate, lo, hi, row_bounds, c)`` of the statistic ``kind`` over rows ``d``."""
    if kind == "mean" or len(d) == 0:
        m = draws.mean(axis=1)
        lo, hi = np.quantile(m, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
        return float(np.mean(d)), float(lo), float(hi), None, None
    se = draws.std(axis=0)
    t = np.where(se > 0, np.abs(draws - d) / np.where(se > 0, se, 1), 0.0)
    c = float(np.quantile(t.max(axis=1), CONFIDENCE))
    lo_r, hi_r = d - c * se, d + c * se
    k = len(d) if kind == "all" else len(d) // 2 + 1
    return (_kth(d, k, direction), _kth(lo_r, k, direction), _kth(hi_r, k, direction),
            list(zip(lo_r.tolist(), hi_r.tolist())), c)


def _verdict_of(d, draws, kind, direction, margin):
    est, lo, hi, _, _ = _interval(d, draws, kind, direction)
    return S.verdict(lo, hi, margin, direction)


def decide(rows, kind, margin: Margin, direction="greater", n_boot=S.N_BOOT, seed=0,
           sides=("a", "b")) -> dict:
    """The statistic ``kind`` over ``rows`` with its interval and verdict (module docstring):
    ``estimate``, ``lo``, ``hi``, ``reading`` (the interval's verdict), ``verdict`` (at most
    provisional below :data:`MIN_SEEDS` seeds a side), ``statistic``, ``unit``, ``margin``,
    ``margin_source``, ``at_half_margin``, ``at_twice_margin``, ``margin_sensitive``,
    ``fragile`` (the rows whose removal changes the verdict), ``simultaneous`` (how the rows'
    intervals were made), ``seeds`` and ``points`` per side, ``rows`` (label, d, lo, hi)."""
    if kind not in STATISTICS:
        raise ValueError(f"kind must be one of {sorted(STATISTICS)}, got {kind!r}")
    if not rows:
        raise ValueError("a claim needs at least one row")
    raw = _draws(rows, n_boot, seed)
    shift = np.array([r.shift for r in rows])
    d0 = np.array([r.estimate for r in rows])

    def at(factor, keep=None):
        idx = np.arange(len(rows)) if keep is None else np.asarray(keep)
        return d0[idx] - factor * shift[idx], raw[:, idx] - factor * shift[idx]

    d, draws = at(1.0)
    est, lo, hi, bounds, c = _interval(d, draws, kind, direction)
    reading = S.verdict(lo, hi, margin.value, direction)
    fragile = []
    if len(rows) > 1:
        for j in range(len(rows)):
            keep = [i for i in range(len(rows)) if i != j]
            if _verdict_of(*at(1.0, keep), kind, direction, margin.value) != reading:
                fragile.append(rows[j].label)
    sens = {}
    per_row = bool(shift.any())
    if margin.value != 0 or per_row:
        for name, f in (("at_half_margin", 0.5), ("at_twice_margin", 2.0)):
            sens[name] = _verdict_of(*at(f), kind, direction, margin.value * f)
    seeds_a = min(r.seeds_a for r in rows)
    seeds_b = min(r.seeds_b for r in rows)
    points = sorted({r.n for r in rows}, reverse=True)
    provisional = min(seeds_a, seeds_b) < MIN_SEEDS
    rnd = (lambda v: round(float(v), 2 if margin.unit == "points" else 4))
    return dict(
        verdict=PROVISIONAL if provisional else reading, reading=reading,
        statistic=STATISTICS[kind] + {"most": f" (k = {len(rows) // 2 + 1} of {len(rows)})",
                                      "all": f" ({'minimum' if direction == 'greater' else 'maximum'}"
                                             f" over {len(rows)} rows)"}.get(kind, "")
        if len(rows) > 1 else "the one row's difference",
        kind=kind, direction=direction, estimate=rnd(est), lo=rnd(lo), hi=rnd(hi),
        unit=margin.unit, margin=margin.value, margin_source=margin.source,
        at_half_margin=sens.get("at_half_margin"), at_twice_margin=sens.get("at_twice_margin"),
        margin_sensitive=(None if not sens else any(v != reading for v in sens.values())),
        fragile=fragile,
        simultaneous=(None if c is None else
                      f"max-statistic bootstrap over {len(rows)} rows (c = {c:.2f})"),
        sides=tuple(sides), seeds=(seeds_a, seeds_b), points=tuple(points),
        rows=[dict(label=r.label, estimate=rnd(x), lo=None if bounds is None else rnd(bounds[i][0]),
                   hi=None if bounds is None else rnd(bounds[i][1]), note=r.note)
              for i, (r, x) in enumerate(zip(rows, d))])
