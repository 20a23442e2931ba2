"""Intervals, paired comparisons and the verdict rule (issues 12 and 16).

The rliable way: every aggregate comes with an interval estimate.

* :func:`wilson_interval`: the interval of one accuracy over its test points
  (``scipy.stats.binomtest``), used per row of an evaluation record.
* :func:`bootstrap_mean`: the mean of a ``(seeds, points)`` array of per-point results
  (1 = still correct after the attack) with a 95% interval from a **seed-and-point
  bootstrap**: each draw resamples the seeds with replacement and, independently, the test
  points with replacement (the same points for every seed, since every seed is evaluated on
  the same points), and takes the mean of the resampled table. The percentile interval of
  the draws accounts for both sources of noise: which training runs (seeds) and which test
  points. ``scipy.stats.bootstrap`` resamples one axis only, so it cannot draw this crossed
  design; with one seed the two are the same and :func:`bootstrap_mean` uses it.
* :func:`paired_difference`: the same bootstrap applied to ``a - b`` for two columns
  evaluated on the same seeds and points, so that what the two columns share (hard points,
  lucky seeds) cancels.
* :func:`unpaired_difference`: for records that carry only an accuracy and a point count
  (written before per-point results existed): a normal approximation that adds the
  binomial variance of each accuracy and the spread between seeds. Flagged as such.
* :func:`accuracy_interval`: one column's accuracy: that bootstrap, widened where needed to the
  Wilson interval of the pooled results (the bootstrap collapses at 0% and 100%).
* :func:`interval_sources`: why an interval is wide: the half-widths of a seeds-only and a
  points-only bootstrap of the same array (which noise more seeds or more points would cut).
* :func:`verdict`: the rule that turns an interval and the claim's margin into
  ``reproduced`` / ``not reproduced`` / ``inconclusive`` (defined in ``trs_lib.companion.claims``).

With 3 seeds the seed part of the bootstrap is coarse (a resample of 3 values takes 10
distinct forms); the interval is still wider than a points-only one, as it should be.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.stats import binomtest, bootstrap, norm

__all__ = ["wilson_interval", "bootstrap_mean", "accuracy_interval", "interval_sources",
           "paired_difference", "unpaired_difference", "unpaired_mean", "verdict", "combine_verdicts", "as_array", "N_BOOT",
           "REPRODUCED", "NOT_REPRODUCED", "INCONCLUSIVE"]

N_BOOT = 2000   # bootstrap draws (rliable's default)
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n`` (fractions in [0, 1]).

    ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``; ``n = 0`` is an error.
    """
    k, n = int(k), int(n)
    if n <= 0:
        raise ValueError(f"n must be a positive number of test points, got {n!r}")
    if not 0 <= k <= n:
        raise ValueError(f"k must lie in [0, n={n}], got {k!r}")
    _check_confidence(confidence)
    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def _check_confidence(confidence):
    if not (isinstance(confidence, float) and 0.0 < confidence < 1.0 and math.isfinite(confidence)):
        raise ValueError(f"confidence must be a float in (0, 1), got {confidence!r}")


def as_array(correct) -> np.ndarray:
    """A ``(seeds, points)`` float array from per-seed results: strings of ``'0'``/``'1'``
    (the records' ``correct``), sequences of numbers, or an array (1-D: one seed)."""
    if isinstance(correct, np.ndarray):
        arr = correct.astype(float)
    else:
        rows = []
        for c in correct:
            if isinstance(c, str):
                bad = set(c) - {"0", "1"}
                if bad:
                    raise ValueError(f"a 'correct' string holds only '0' and '1', found {sorted(bad)}")
                rows.append(np.frombuffer(c.encode(), dtype=np.uint8) - ord("0"))
            else:
                rows.append(np.asarray(c, dtype=float))
        lengths = {len(r) for r in rows}
        if len(lengths) > 1:
            raise ValueError(f"every seed must cover the same test points; got lengths {sorted(lengths)}")
        arr = np.asarray(rows, dtype=float)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"expected a non-empty (seeds, points) array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("per-point results must be finite numbers")
    return arr


def _resamples(rng, s: int, p: int, n_boot: int):
    """The crossed bootstrap's draws: ``(seed weights (draws, s), point indices (draws, p))``,
    the seed counts of a resample with replacement divided by ``s``, and the drawn points."""
    cs = rng.multinomial(s, np.full(s, 1 / s), size=n_boot) / s
    return cs, rng.integers(0, p, size=(n_boot, p))


def bootstrap_mean(values, confidence: float = 0.95, n_boot: int = N_BOOT,
                   seed: int = 0) -> tuple[float, float, float]:
    """``(mean, lo, hi)`` of a ``(seeds, points)`` array with the seed-and-point bootstrap's
    percentile interval (module docstring). Deterministic for a given ``seed``."""
    _check_confidence(confidence)
    arr = as_array(values)
    s, p = arr.shape
    mean = float(arr.mean())
    if np.ptp(arr) == 0:  # every value equal: no spread to resample
        return mean, mean, mean
    rng = np.random.default_rng(seed)
    alpha = (1 - confidence) / 2
    if s == 1:  # one seed: points only, which scipy does
        res = bootstrap((arr[0],), np.mean, confidence_level=confidence, n_resamples=n_boot,
                        method="percentile", random_state=rng, vectorized=True)
        return mean, float(res.confidence_interval.low), float(res.confidence_interval.high)
    # mean of arr[seeds*][:, points*]: the seed counts weight the rows, then the drawn points
    cs, points = _resamples(rng, s, p, n_boot)
    draws = np.take_along_axis(cs @ arr, points, axis=1).mean(axis=1)
    lo, hi = np.quantile(draws, [alpha, 1 - alpha])
    return mean, float(lo), float(hi)


def accuracy_interval(values, confidence: float = 0.95, n_boot: int = N_BOOT,
                      seed: int = 0) -> tuple[float, float, float]:
    """``(mean, lo, hi)`` of an accuracy from a ``(seeds, points)`` array of 0/1 results: the
    seed-and-point bootstrap's interval (:func:`bootstrap_mean`), widened where needed to the
    Wilson interval of all the results pooled. The percentile bootstrap collapses at 0% and 100%
    (every resample of an all-zero table is zero: 0 of 100 points would read [0, 0]); Wilson's
    does not (0 of 100: [0, 3.7]), and across seeds the bootstrap keeps the seeds' spread."""
    arr = as_array(values)
    if not np.isin(arr, (0.0, 1.0)).all():
        raise ValueError("accuracy_interval needs 0/1 per-point results")
    mean, lo, hi = bootstrap_mean(arr, confidence, n_boot, seed)
    wlo, whi = wilson_interval(int(arr.sum()), arr.size, confidence)
    return mean, min(lo, wlo), max(hi, whi)


def interval_sources(values, confidence: float = 0.95, n_boot: int = N_BOOT,
                     seed: int = 0) -> dict:
    """Where the width of :func:`bootstrap_mean`'s interval comes from, for a ``(seeds, points)``
    array: ``{"seeds": h_s, "points": h_p}``, the half-widths (in the array's units) of the
    percentile interval when only the seeds are resampled (the points held fixed) and when only
    the points are (each draw's points shared by every seed). ``h_s`` is 0 with one seed. The
    crossed bootstrap's half-width is roughly ``sqrt(h_s**2 + h_p**2)``."""
    _check_confidence(confidence)
    arr = as_array(values)
    s, p = arr.shape
    rng = np.random.default_rng(seed)
    alpha = (1 - confidence) / 2

    def half(draws):
        lo, hi = np.quantile(draws, [alpha, 1 - alpha])
        return float(hi - lo) / 2

    cs, drawn = _resamples(rng, s, p, n_boot)        # the crossed bootstrap's draws, split
    seeds = half((cs @ arr).mean(axis=1)) if s > 1 else 0.0       # seeds only
    points = half(arr.mean(axis=0)[drawn].mean(axis=1))           # points only
    return {"seeds": seeds, "points": points}


def paired_difference(a, b, **kw) -> tuple[float, float, float]:
    """``(mean, lo, hi)`` of ``a - b`` for two ``(seeds, points)`` arrays on the same seeds
    and points (the paired comparison of two columns), by :func:`bootstrap_mean`."""
    a, b = as_array(a), as_array(b)
    if a.shape != b.shape:
        raise ValueError(f"a paired difference needs the same seeds and points; shapes {a.shape} "
                         f"and {b.shape}")
    return bootstrap_mean(a - b, **kw)


def unpaired_mean(acc, n, confidence: float = 0.95) -> tuple[float, float, float]:
    """``(mean, lo, hi)`` of per-seed accuracies (fractions) measured on ``n`` points each,
    without per-point results: Wilson for one seed; for several, a normal interval whose
    variance adds the binomial variance of each accuracy and the spread between seeds."""
    acc = [float(a) for a in acc]
    if not acc:
        raise ValueError("need at least one accuracy")
    mean = float(np.mean(acc))
    if len(acc) == 1:
        lo, hi = wilson_interval(round(acc[0] * n), n, confidence)
        return mean, lo, hi
    half = norm.ppf(0.5 + confidence / 2) * math.sqrt(_var_of_mean(acc, n))
    return mean, float(max(0.0, mean - half)), float(min(1.0, mean + half))


def _var_of_mean(acc, n) -> float:
    acc = np.asarray(acc, dtype=float)
    binom = float(np.mean(acc * (1 - acc))) / (len(acc) * int(n))
    seeds = float(np.var(acc, ddof=1)) / len(acc) if len(acc) > 1 else 0.0
    return binom + seeds


def unpaired_difference(acc_a, acc_b, n, confidence: float = 0.95) -> tuple[float, float, float]:
    """``(mean, lo, hi)`` of ``mean(acc_a) - mean(acc_b)`` (fractions) from per-seed
    accuracies on ``n`` points each: a normal interval, wider than the paired one."""
    if len(acc_a) == 0 or len(acc_b) == 0:
        raise ValueError("need at least one accuracy on each side")
    d = float(np.mean(acc_a) - np.mean(acc_b))
    half = norm.ppf(0.5 + confidence / 2) * math.sqrt(_var_of_mean(acc_a, n) + _var_of_mean(acc_b, n))
    return d, float(d - half), float(d + half)


def verdict(lo: float, hi: float, margin: float = 0.0, direction: str = "greater") -> str:
    """The verdict rule: a claim needs the difference to be above ``margin``
    (``direction="greater"``) or below it (``"less"``). ``reproduced`` when the whole
    interval ``[lo, hi]`` is on the claim's side of the margin, ``not reproduced`` when it is
    wholly on the other side, ``inconclusive`` when it contains the margin."""
    if direction not in ("greater", "less"):
        raise ValueError(f"direction must be 'greater' or 'less', got {direction!r}")
    if not lo <= hi:
        raise ValueError(f"need lo <= hi, got [{lo}, {hi}]")
    if direction == "less":
        lo, hi, margin = -hi, -lo, -margin
    if lo > margin:
        return REPRODUCED
    if hi < margin:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def combine_verdicts(verdicts, rule: str = "all") -> str:
    """One verdict from the verdicts of a claim's parts (rows, budgets, attacks).

    ``all``: reproduced when every part is, not reproduced when any part is not, else
    inconclusive. ``most``: reproduced when more than half the parts are; not reproduced when
    even turning every inconclusive part into reproduced would not make more than half.
    """
    v = list(verdicts)
    if not v:
        raise ValueError("no verdicts to combine")
    bad = sorted(set(v) - {REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE})
    if bad:
        raise ValueError(f"unknown verdicts {bad}")
    yes, no = v.count(REPRODUCED), v.count(NOT_REPRODUCED)
    if rule == "all":
        return REPRODUCED if yes == len(v) else NOT_REPRODUCED if no else INCONCLUSIVE
    if rule == "most":
        if yes > len(v) / 2:
            return REPRODUCED
        return NOT_REPRODUCED if len(v) - no <= len(v) / 2 else INCONCLUSIVE
    raise ValueError(f"rule must be 'all' or 'most', got {rule!r}")
