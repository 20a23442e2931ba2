"""The per-sample worst case over a suite of attacks (trs_lib.worst_case) and its records (C1).

Each test builds its own model (a fresh copy), uses few points and cut-down attack budgets.
"""
from __future__ import annotations

import pytest
import torch

from trs_lib import evaluate as E
from trs_lib import worst_case as W
from trs_lib.attacks.testing import quick_ensemble, quick_model, test_points


def _suite(ens, x, y, suite, rows=None, settings=None, **_):
    """The metrics of ``trs_lib.evaluate.run`` for one suite on exactly these points."""
    return E.run(E.EvalSpec.from_dict({"suite": suite, "rows": rows, **(settings or {})}), ens, x, y).metrics

FAST = {"apgd_ce": {"steps": 10}, "apgd_t": {"steps": 10, "n_targets": 2},
        "reweigh": {"steps": 10}, "square": {"n_queries": 60}}
FAST_L2 = dict(FAST, ddn={"steps": 20})


def _acc(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def test_worst_case_record_and_bookkeeping():
    ens = quick_ensemble()
    x, y = test_points(32)
    r = W.worst_case(ens, x, y, eps=0.15, suite="linf", overrides=FAST)
    n = len(x)
    assert r["suite_attacks"] == ["apgd_ce", "apgd_t", "reweigh", "square"]
    assert len(r["correct"]) == n and set(r["correct"]) <= {"0", "1"}
    assert r["accuracy"] == pytest.approx(r["correct"].count("1") / n)
    lo, hi = r["ci95"]
    assert 0 <= lo <= r["accuracy"] <= hi <= 1
    bp = r["broken_by_point"]
    assert len(bp) == n
    # a point is robust exactly when nobody broke it; counts agree with the per-point names
    assert [c == "1" for c in r["correct"]] == [b is None for b in bp]
    for a in r["suite_attacks"]:
        assert r["broken_by"][a] == sum(b == a for b in bp)
    assert sum(b == "clean" for b in bp) == round((1 - r["clean_accuracy"]) * n)
    # accuracy after each attack can only fall
    after = r["after_attack"]
    assert all(b <= a + 1e-12 for a, b in zip(after, after[1:]))
    assert after[-1] == pytest.approx(r["accuracy"])


def test_worst_case_is_no_weaker_than_any_of_its_attacks_alone():
    model = quick_model()
    x, y = test_points(32)
    r = W.worst_case(model, x, y, eps=0.1, suite="linf", overrides=FAST)
    for k, (name, kw) in enumerate(W.suite_attacks("linf", FAST)):
        res = W.robust_accuracy(model, x, y, name, seed=k, progress=False, eps=0.1, **kw)
        assert r["accuracy"] <= res["accuracy"] + 1e-9, name


def test_worst_case_runs_each_attack_only_on_still_robust_points(monkeypatch):
    model = quick_model()
    x, y = test_points(24)
    seen = []
    real = W.attack_batched

    def spy(fn, m, xb, yb, **kw):
        seen.append(len(xb))
        return real(fn, m, xb, yb, **kw)

    monkeypatch.setattr(W, "attack_batched", spy)
    r = W.worst_case(model, x, y, eps=0.1, suite="linf", overrides=FAST)
    n = len(x)
    expected = [round(a * n) for a in [r["clean_accuracy"]] + r["after_attack"][:-1]]
    assert seen == [e for e in expected if e > 0]


def test_l2_suite_stays_in_the_l2_ball():
    model = quick_model()
    x, y = test_points(16)
    r = W.worst_case(model, x, y, eps=1.5, suite="l2", overrides=FAST_L2)
    assert r["norm"] == "L2" and r["suite_attacks"][-1] == "ddn"
    assert r["accuracy"] <= _acc(model, x, y) - 0.2


def test_budget_violation_is_caught(monkeypatch):
    def cheat(model, x, y, *, eps):
        return (x + 3 * eps).clamp(0, 1)

    monkeypatch.setattr(W, "get_attack", lambda name: cheat)
    model = quick_model()
    x, y = test_points(8)
    with pytest.raises(RuntimeError, match="outside"):
        W.worst_case(model, x, y, eps=0.05, suite="linf", attacks=[("fgsm", {})])


@pytest.mark.parametrize("kw,match", [
    (dict(suite="linf2"), "unknown worst-case suite 'linf2'.*l2.*linf"),
    (dict(eps=-0.1), "eps=-0.1"), (dict(eps=float("nan")), "eps=nan"), (dict(eps=float("inf")), "eps=inf"),
    (dict(eps=1.5), "eps=1.5"), (dict(eps=0.0), "eps=0.0"),
    (dict(overrides={"pgd": {"steps": 3}}), "not in suite"),
    (dict(attacks=[("nope", {})]), "unknown attack 'nope'"),
    (dict(attacks=[("apgd_ce", {"norm": "L2"})]), "norm 'L2'"),
])
def test_bad_worst_case_arguments_fail_before_any_work(kw, match, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(W, "_correct", boom)
    x, y = test_points(4)
    args = dict(eps=0.1, suite="linf")
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        W.worst_case(quick_model(), x, y, **args)


def test_evaluate_suite_worst_case_rows_follow_contract_c1():
    ens = quick_ensemble()
    x, y = test_points(16)
    m = _suite(ens, x, y, "worst_case", [dict(attack="worst_case", param="eps", value=0.15)],
                         {"worst_case_overrides": FAST}, progress=False, log=None)
    (row,) = m["rows"]
    assert row["key"] == "worst_case:linf/eps=0.15"
    for k in ("accuracy", "correct", "ci95", "suite_attacks", "broken_by", "broken_by_point"):
        assert k in row
    assert len(row["correct"]) == len(x) == len(row["broken_by_point"])
    m2 = _suite(ens, x, y, "worst_case", [dict(attack="worst_case", param="eps", value=1.5)],
                          {"worst_case_suite": "l2", "worst_case_overrides": FAST_L2}, progress=False, log=None)
    assert m2["rows"][0]["key"] == "worst_case:l2/eps=1.5"
    with pytest.raises(ValueError, match="unknown worst_case_suite 'l3'"):
        _suite(ens, x, y, "worst_case", None, {"worst_case_suite": "l3"}, progress=False)
    for bad in (-0.1, float("nan"), 2.0):
        with pytest.raises(ValueError, match="budget"):
            _suite(ens, x, y, "worst_case", [dict(attack="worst_case", param="eps", value=bad)],
                             {}, progress=False)


def test_every_accuracy_row_has_an_interval():
    ens = quick_ensemble()
    x, y = test_points(16)
    rows = [dict(attack="fgsm", param="eps", value=0.1, steps=None), dict(attack="pgd", param="eps", value=0.1, steps=2)]
    m = _suite(ens, x, y, "whitebox", rows, {}, progress=False)
    i = _suite(ens, x, y, "ila", [dict(attack="ila", param="eps", value=0.1, steps=2)], {}, progress=False)
    for row in m["rows"] + i["rows"]:
        assert len(row["correct"]) == len(x)
        assert row["accuracy"] == pytest.approx(row["correct"].count("1") / len(x))
        assert row["ci95"][0] <= row["accuracy"] <= row["ci95"][1]


def test_interval_fields_by_hand():
    f = W.interval_fields(torch.tensor([True, False, True, True]))
    assert f["correct"] == "1011" and f["accuracy"] == 0.75
    lo, hi = f["ci95"]
    assert lo == pytest.approx(0.3006, abs=1e-3) and hi == pytest.approx(0.9544, abs=1e-3)  # Wilson, k=3, n=4


def test_audit_suite_records_the_per_sample_worst_case_row():
    ens = quick_ensemble()
    x, y = test_points(16)
    rows = [dict(attack="apgd_ce", param="eps", value=0.15, steps=5)]
    s = {"audit_steps": 5, "audit_more_steps": 5, "audit_more_restarts": 1, "audit_strong_steps": 5,
         "audit_square_queries": 30, "audit_surrogate_n": 300}
    m = _suite(ens, x, y, "audit", rows, s, progress=False)
    wc = next(r for r in m["rows"] if r["key"] == "worst_case:linf/eps=0.15")
    assert wc["suite_attacks"] == ["apgd_ce", "apgd_t", "reweigh", "square"]
    assert len(wc["correct"]) == len(x) == len(wc["broken_by_point"])
    assert [c == "1" for c in wc["correct"]] == [b is None for b in wc["broken_by_point"]]
    apgd = next(r for r in m["rows"] if r["attack"] == "apgd_ce")
    assert wc["accuracy"] <= apgd["accuracy"] + 0.2  # same points; different seeds, so noise allowed
    assert m["audit_worst_case"]["accuracy"] == wc["accuracy"]
