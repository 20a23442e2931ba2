"""trs_lib.stats: the seed-and-point bootstrap, paired differences and the verdict rule."""
import numpy as np
import pytest

from trs_lib import stats as S


def _table(p, seeds=3, points=400, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((seeds, points)) < p).astype(float)


def test_wilson_matches_hand_value():
    lo, hi = S.wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    with pytest.raises(ValueError, match="positive"):
        S.wilson_interval(0, 0)


def test_as_array_reads_correct_strings_and_refuses_ragged_or_bad():
    arr = S.as_array(["0110", "1111"])
    assert arr.shape == (2, 4) and arr.sum() == 6
    assert S.as_array(np.array([1, 0, 1])).shape == (1, 3)
    with pytest.raises(ValueError, match="same test points"):
        S.as_array(["01", "011"])
    with pytest.raises(ValueError, match="only '0' and '1'"):
        S.as_array(["0a1"])


def test_bootstrap_mean_is_deterministic_contains_mean_and_narrows_with_points():
    small, big = _table(0.7, points=100), _table(0.7, points=2000)
    m, lo, hi = S.bootstrap_mean(small)
    assert lo < m < hi and (m, lo, hi) == S.bootstrap_mean(small)
    _, lo2, hi2 = S.bootstrap_mean(big)
    assert hi2 - lo2 < (hi - lo) / 2
    assert S.bootstrap_mean(np.ones((3, 10))) == (1.0, 1.0, 1.0)


def test_seed_spread_widens_the_interval():
    """Seeds that disagree (0.5 vs 0.9) must give a wider interval than seeds that agree."""
    agree = np.vstack([_table(0.7, 1, 1000, s)[0] for s in range(3)])
    disagree = np.vstack([_table(p, 1, 1000, s)[0] for s, p in enumerate((0.5, 0.7, 0.9))])
    w_agree = np.subtract(*S.bootstrap_mean(agree)[2:0:-1])
    w_dis = np.subtract(*S.bootstrap_mean(disagree)[2:0:-1])
    assert w_dis > 3 * w_agree


def test_accuracy_interval_does_not_collapse_at_zero_or_one():
    """0 of 100 points: the bootstrap alone says [0, 0], the accuracy interval Wilson's [0, 3.7%];
    at 100% symmetric; in the middle with seeds that disagree, the bootstrap's (wider) interval."""
    zeros = np.zeros((1, 100))
    assert S.bootstrap_mean(zeros)[1:] == (0.0, 0.0)
    m, lo, hi = S.accuracy_interval(zeros)
    assert m == 0 and lo == 0 and hi == pytest.approx(S.wilson_interval(0, 100)[1]) and 0.03 < hi < 0.045
    m1, lo1, hi1 = S.accuracy_interval(np.ones((2, 100)))
    assert m1 == 1 and hi1 == 1 and 0.95 < lo1 < 0.985
    rng = np.random.default_rng(2)
    spread = np.stack([rng.random(500) < p for p in (0.3, 0.5, 0.7)]).astype(float)
    _, blo, bhi = S.bootstrap_mean(spread)
    assert S.accuracy_interval(spread)[1:] == (blo, bhi)   # wider than Wilson's of 1,500 pooled
    with pytest.raises(ValueError, match="0/1 per-point results"):
        S.accuracy_interval(np.full((1, 10), 0.5))


def test_interval_sources_name_the_noise_that_widens():
    """Seeds that disagree give a wide seeds-only and a narrow points-only half-width; the same
    points' noise without seed disagreement the reverse; the crossed interval is about their
    quadrature sum; one seed has no seed part."""
    rng = np.random.default_rng(1)
    base = rng.random(1000) < 0.5
    seedy = np.stack([base | (rng.random(1000) < q) for q in (0.0, 0.3, 0.6)]).astype(float)
    src = S.interval_sources(seedy)
    assert src["seeds"] > 3 * src["points"] > 0
    flat = np.stack([rng.random(200) < 0.5 for _ in range(3)]).astype(float)
    flat[1:] = flat[0]   # identical seeds: only the points vary
    src2 = S.interval_sources(flat)
    assert src2["seeds"] == 0.0 and src2["points"] > 0.05
    _, lo, hi = S.bootstrap_mean(seedy)
    both = (src["seeds"] ** 2 + src["points"] ** 2) ** 0.5
    assert 0.6 * both < (hi - lo) / 2 < 1.4 * both
    assert S.interval_sources(seedy[:1])["seeds"] == 0.0


def test_one_seed_interval_is_close_to_wilson():
    row = _table(0.6, 1, 1000)
    m, lo, hi = S.bootstrap_mean(row)
    wlo, whi = S.wilson_interval(int(row.sum()), 1000)
    assert lo == pytest.approx(wlo, abs=0.01) and hi == pytest.approx(whi, abs=0.01)


def test_paired_difference_cancels_shared_hard_points():
    """b = a with 30 of 1000 points flipped to wrong: the paired interval is tight around 3
    points, far tighter than the unpaired one from the two accuracies."""
    a = _table(0.6, 3, 1000)
    b = a.copy()
    b[:, np.flatnonzero(a[0] * a[1] * a[2])[:30]] = 0
    d, lo, hi = S.paired_difference(a, b)
    assert d == pytest.approx(0.03) and 0.015 < lo < d < hi < 0.045
    ud, ulo, uhi = S.unpaired_difference(a.mean(1), b.mean(1), 1000)
    assert ud == pytest.approx(d) and uhi - ulo > 2 * (hi - lo)
    with pytest.raises(ValueError, match="same seeds and points"):
        S.paired_difference(a, b[:2])


def test_unpaired_mean_one_seed_is_wilson():
    assert S.unpaired_mean([0.5], 100)[1:] == pytest.approx(S.wilson_interval(50, 100))
    m, lo, hi = S.unpaired_mean([0.6, 0.7, 0.8], 1000)
    assert m == pytest.approx(0.7) and lo < 0.6 < 0.8 < hi  # seed spread dominates


@pytest.mark.parametrize("lo,hi,margin,direction,expected", [
    (1.0, 3.0, 0.0, "greater", S.REPRODUCED),
    (-3.0, -1.0, 0.0, "greater", S.NOT_REPRODUCED),
    (-1.0, 3.0, 0.0, "greater", S.INCONCLUSIVE),
    (-2.0, 0.5, 1.0, "less", S.REPRODUCED),
    (1.5, 4.0, 1.0, "less", S.NOT_REPRODUCED),
    (0.5, 1.5, 1.0, "less", S.INCONCLUSIVE),
])
def test_verdict_rule(lo, hi, margin, direction, expected):
    assert S.verdict(lo, hi, margin, direction) == expected


def test_verdict_refuses_bad_input():
    with pytest.raises(ValueError, match="direction"):
        S.verdict(0, 1, direction="bigger")
    with pytest.raises(ValueError, match="lo <= hi"):
        S.verdict(2, 1)


def test_combine_verdicts():
    R, N, I = S.REPRODUCED, S.NOT_REPRODUCED, S.INCONCLUSIVE
    assert S.combine_verdicts([R, R], "all") == R
    assert S.combine_verdicts([R, I], "all") == I
    assert S.combine_verdicts([R, I, N], "all") == N
    assert S.combine_verdicts([R, R, I], "most") == R
    assert S.combine_verdicts([R, I, I, N], "most") == I      # 3 of 4 possible
    assert S.combine_verdicts([R, N, N, I], "most") == N      # at most 2 of 4
    with pytest.raises(ValueError, match="rule"):
        S.combine_verdicts([R], "some")
