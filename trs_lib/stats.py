"""Intervals and paired comparisons of accuracies (issues 12 and 16).

The rliable way: every aggregate comes with an interval estimate. This module starts with the
per-point interval of one accuracy; the seed-and-point bootstrap and the verdict rule build on it.
"""
from __future__ import annotations

import math

from scipy.stats import binomtest

__all__ = ["wilson_interval"]


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n`` (fractions in [0, 1]).

    ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``; ``n = 0`` is an error.
    """
    k, n = int(k), int(n)
    if n <= 0:
        raise ValueError(f"n must be a positive number of test points, got {n!r}")
    if not 0 <= k <= n:
        raise ValueError(f"k must lie in [0, n={n}], got {k!r}")
    if not (isinstance(confidence, float) and 0.0 < confidence < 1.0 and math.isfinite(confidence)):
        raise ValueError(f"confidence must be a float in (0, 1), got {confidence!r}")
    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)
