"""trs_lib.companion.claims: paired differences over seeds and points, the margin, the verdicts."""
import re
import zlib

import numpy as np
import pytest

from trs_lib import stats as S
from trs_lib.evaluate import spread_indices
from trs_lib.records import load_records

from trs_lib.companion import claims as C
from trs_lib import paper_numbers as P
from trs_lib.companion import dashboard as D
from trs_lib.companion import grid as G
from trs_lib.companion import verdicts as V


def _records(accs, target="1", parts=("whitebox", "worst_case"), n=200, shared=True, seeds=None,
             at=None):
    """Fake evaluation records for ``target``: column -> accuracy (``at``: row key -> column
    -> accuracy, overriding it in that row). ``shared``: every column's per-point results are
    drawn from the same uniforms, so columns with equal accuracy agree point by point (a paired
    comparison then sees no noise)."""
    recs = {}
    for seed in (G.seeds_for(target, "cpu") if seeds is None else seeds):
        cells = G.table_cells(target, "cpu", seed)
        for (col, part), ec in cells["eval"].items():
            if col not in accs or part not in parts:
                continue
            rows = []
            for i, r in enumerate(ec.rows):
                u = np.random.default_rng(1000 * seed + i + (0 if shared else zlib.crc32(col.encode()) % 97)).random(n)
                acc = (at or {}).get(r.key, {}).get(col, accs[col])
                c = "".join("1" if v < acc else "0" for v in u)
                rows.append({"key": r.key, "attack": r.attack, "accuracy": c.count("1") / n,
                             "correct": c})
            recs[f"eval/{ec.name}"] = {"kind": "evaluate", "config": {}, "provenance": {},
                                       "metrics": {"rows": rows, "n_test": n,
                                                   "clean_accuracy": 0.97}}
    return recs


def _by(results, cid, evaluation="paper"):
    return next(r for r in results if r["id"] == cid and r["evaluation"] == evaluation)


T1 = P1 = ("cossim", "ckae", "adaboost", "gradientboost", "adp", "trs")


KEYS = {"id", "text", "source", "page", "evaluation", "verdict", "reading", "statistic", "kind",
        "direction", "estimate", "lo", "hi", "unit", "margin", "margin_source", "at_half_margin",
        "at_twice_margin", "margin_sensitive", "fragile", "simultaneous", "sides", "seeds",
        "points", "rows", "parts", "evidence", "rung"}


def test_check_claims_has_the_contract_keys_and_every_claim():
    out = C.check_claims("cpu", {})
    assert {"mnist-most", "trs-published-most", "members-robust", "smoothness", "ila",
            "r20-most", "members", "benign", "mechanism"} <= {r["id"] for r in out}
    for r in out:
        assert set(r) == KEYS, set(r) ^ KEYS
        assert r["evaluation"] in ("paper", "worst_case", "n/a", "blackbox")
        assert r["verdict"] == C.NOT_YET_RUN  # no records
        assert r["margin_source"]
    assert {r["evaluation"] for r in out if r["id"] == "mnist-most"} == {"paper", "worst_case"}
    assert "smoothness" in _by(out, "smoothness", "n/a")["evidence"]


def test_every_margin_names_its_source():
    """A margin's source quotes the paper with a line of the paper's text or says it is the
    companion's choice; the c margin is the paper's Table 5 largest spread."""
    for name, m in C.MARGINS.items():
        assert "companion's choice" in m.source or re.search(r"line[s]? \d+", m.source), name
    t5 = P.table(5).values
    assert C.MARGINS["C_SPREAD"].value == pytest.approx(max(max(r) - min(r) for r in t5))


def test_clear_winner_is_reproduced_and_a_tie_is_inconclusive():
    accs = {c: 0.5 for c in T1} | {"trs": 0.9}
    r = _by(C.check_claims("cpu", _records(accs)), "mnist-most")
    assert r["verdict"] == C.REPRODUCED and r["margin"] == 0.0 and r["kind"] == "most"
    assert 35 < r["estimate"] < 45 and r["lo"] > 0 and r["seeds"] == (3, 3)
    assert "target <= 6" in r["evidence"] and r["points"] == (200,)
    # a tie point by point: the paired difference is exactly 0, which straddles the margin 0
    tie = _by(C.check_claims("cpu", _records({c: 0.6 for c in T1})), "mnist-most", "worst_case")
    assert tie["verdict"] == C.INCONCLUSIVE and tie["estimate"] == 0.0
    # TRS clearly worse: not reproduced
    worse = _by(C.check_claims("cpu", _records(accs | {"trs": 0.2})), "mnist-most")
    assert worse["verdict"] == C.NOT_REPRODUCED and worse["hi"] < 0


def test_claim_waits_for_every_column_and_every_seed_row():
    accs = {"trs": 0.9, "adp": 0.5}
    assert _by(C.check_claims("cpu", _records(accs)), "mnist-most")["verdict"] == C.NOT_YET_RUN
    # the paper's evaluation complete, the worst case missing: judged separately
    accs = {c: 0.5 for c in T1} | {"trs": 0.9}
    out = C.check_claims("cpu", _records(accs, parts=("whitebox",)))
    assert _by(out, "mnist-most")["verdict"] == C.REPRODUCED
    assert _by(out, "mnist-most", "worst_case")["verdict"] == C.NOT_YET_RUN


def test_no_verdict_before_every_seed_of_the_scale():
    """A clear winner on seed 0 alone gets no verdict: the rows are provisional (numbers shown,
    the claim waits) until every column has every seed of the scale."""
    accs = {c: 0.5 for c in T1} | {"trs": 0.9}
    r = _by(C.check_claims("cpu", _records(accs, seeds=(0,))), "mnist-most")
    assert r["verdict"] == C.NOT_YET_RUN and "recorded so far" in r["evidence"] and "(1 seed)" in r["evidence"]
    frame = C.compare_frame("1", "trs", tuple(c for c in T1 if c != "trs"),
                            records=_records(accs, seeds=(0, 1)))
    assert frame["provisional"].all() and (frame["n_seeds"] == 2).all() and (frame["lo"] > 0).all()
    assert _by(C.check_claims("cpu", _records(accs)), "mnist-most")["verdict"] == C.REPRODUCED


T3 = dict(target="3", parts=("whitebox", "worst_case", "pgd110"))


def _one_seed(recs, columns, target):
    """``recs`` without the seeds after 0 of ``columns`` (a side with one seed recorded)."""
    for seed in G.seeds_for(target, "cpu")[1:]:
        for (col, part), ec in G.table_cells(target, "cpu", seed)["eval"].items():
            if col in columns:
                recs.pop(f"eval/{ec.name}", None)
    return recs


def test_more_members_reads_reproduced_when_k3_wins_and_not_when_it_loses():
    """Table 3's claims flip with the records; while only one seed of the k = 2 and + AT columns
    is recorded (the rung trains three) they wait, with the numbers so far shown."""
    far = C.check_claims("cpu", _records({"trs": 0.8, "trs_k2": 0.6, "adp": 0.5, "trs_at": 0.9}, **T3))
    for cid in ("members", "at", "pgd110"):
        assert _by(far, cid)["verdict"] == C.REPRODUCED, cid
    assert _by(far, "members")["seeds"] == (3, 3)
    flip = C.check_claims("cpu", _records({"trs": 0.6, "trs_k2": 0.8, "adp": 0.7, "trs_at": 0.5}, **T3))
    for cid in ("members", "at", "pgd110"):
        assert _by(flip, cid)["verdict"] == C.NOT_REPRODUCED, cid
    part = C.check_claims("cpu", _one_seed(_records({"trs": 0.8, "trs_k2": 0.6, "adp": 0.5, "trs_at": 0.9}, **T3),
                                           ("trs_k2", "trs_at"), "3"))
    assert _by(part, "members")["verdict"] == C.NOT_YET_RUN and "recorded so far" in _by(part, "members")["evidence"]
    assert _by(part, "pgd110")["verdict"] == C.REPRODUCED   # TRS and ADP: every seed recorded


def test_a_claim_one_row_decides_is_fragile_and_names_the_row():
    accs = {"trs": 0.8, "trs_k2": 0.6, "adp": 0.5, "trs_at": 0.9}
    one = _records(accs, at={"cw/c=10": {"trs": 0.3}}, **T3)
    r = _by(C.check_claims("cpu", one), "members")
    assert r["reading"] == C.NOT_REPRODUCED and r["fragile"] == ["CW c = 10"]
    assert "fragile" in D.flags(r) and "CW c = 10" in D.flags(r)
    two = _records(accs, at={"cw/c=10": {"trs": 0.3}, "fgsm/eps=0.1": {"trs": 0.3}}, **T3)
    r = _by(C.check_claims("cpu", two), "members")
    assert r["reading"] == C.NOT_REPRODUCED and r["fragile"] == []


def test_worst_row_interval_is_simultaneous_and_wider_than_one_row():
    """The max-statistic bootstrap's critical value grows with the number of rows; a row on an
    evenly spaced subset of points is drawn from the same draw (and matches evaluate's rule)."""
    assert (V.spread_positions(1000, 200) == spread_indices(1000, 200).numpy()).all()
    rng = np.random.default_rng(0)
    rows = [V.Row(f"r{i}", (0, 1, 2), diff=(rng.random((3, 500)) < 0.6).astype(float)
                  - (rng.random((3, 500)) < 0.5), n=500, seeds_a=3, seeds_b=3) for i in range(10)]
    one = V.decide(rows[:1], "all", C.MARGINS["BETTER"])
    ten = V.decide(rows, "all", C.MARGINS["BETTER"])
    c1, c10 = (float(x["simultaneous"].split("c = ")[1].rstrip(")")) for x in (one, ten))
    assert 1.7 < c1 < 2.2 < c10
    assert ten["estimate"] == min(x["estimate"] for x in ten["rows"])
    assert ten["lo"] == min(x["lo"] for x in ten["rows"]) and ten["hi"] == min(x["hi"] for x in ten["rows"])
    sub = V.Row("cw", (0, 1, 2), diff=rows[0].diff[:, :100], n=100, seeds_a=3, seeds_b=3,
                positions=V.spread_positions(500, 100))
    mixed = V.decide([rows[0], sub], "mean", C.MARGINS["BETTER"])
    assert mixed["points"] == (500, 100) and mixed["lo"] < mixed["estimate"] < mixed["hi"]


def test_headline_differences_report_half_widths():
    accs = {c: 0.5 for c in T1} | {"trs": 0.7}
    f = C.headline_differences("cpu", records=_records(accs, n=1000, shared=False))
    assert len(f) == 10 and f["meets_target"].all() and (f["half_width"] < 6).all()
    assert (f["n_seeds"] == 3).all() and f["paired"].all()
    assert (f["why"] == "").all() and (f["point_half_width"] > 0).all()


def test_headline_table_shows_both_evaluations_with_the_claims_numbers():
    from trs_lib.companion import pages
    accs = {c: 0.5 for c in T1} | {"trs": 0.7}
    recs = _records(accs, n=1000, shared=False)
    t = pages.headline_table("cpu", recs)
    assert set(t.index.get_level_values(0)) == {"the paper's attack", "worst case"}
    f = C.headline_differences("cpu", records=recs)
    paper = t.loc["the paper's attack"]
    assert len(paper) == len(f)
    for (_, row), r in zip(paper.iterrows(), f.to_dict("records")):
        assert row["TRS − best other [95%]"] == f"{r['estimate']:+.1f} [{r['lo']:+.1f}, {r['hi']:+.1f}]"
        assert row["verdict"] == C.REPRODUCED and row["why wider than the target"] == ""
    # without records: every row says so
    empty = pages.headline_table("cpu", {})
    assert (empty["TRS − best other [95%]"] == "not run").all()


def test_width_reason_names_the_wider_source():
    row = dict(half_width=9.0, seed_half_width=8.5, point_half_width=2.0, n_seeds=3)
    assert C.width_reason(row).startswith("the seeds disagree")
    assert C.width_reason(dict(row, seed_half_width=1.0, point_half_width=8.0)).startswith("the test points")
    assert C.width_reason(dict(row, half_width=5.0)) == ""
    assert "unpaired" in C.width_reason(dict(row, seed_half_width=None))


def _benign_records(vanilla, trs, n=1000, seeds=None):
    recs = {}
    for seed in G.seeds_for("fig2", "cpu") if seeds is None else seeds:
        cells = G.table_cells("fig2", "cpu", seed)
        for col, acc in (("vanilla", vanilla), ("trs", trs)):
            ec = cells["eval"][(col, "transfer")]
            recs[f"eval/{ec.name}"] = {"kind": "evaluate", "config": {}, "provenance": {},
                                       "metrics": {"rows": [], "n_test": n, "clean_accuracy": acc}}
    return recs


def test_benign_uses_the_one_point_margin_and_flags_margin_sensitivity():
    same = _by(C.check_claims("cpu", _benign_records(0.98, 0.98, n=10000)), "benign", "n/a")
    assert same["verdict"] == C.REPRODUCED and same["margin"] == C.BENIGN_MARGIN
    assert "companion's choice" in same["margin_source"] and same["margin_sensitive"] is False
    worse = _by(C.check_claims("cpu", _benign_records(0.98, 0.90, n=10000)), "benign", "n/a")
    assert worse["verdict"] == C.NOT_REPRODUCED and worse["lo"] > 1.0
    # 0.5 points apart, measured finely: below the margin 1, but not below half of it
    half = _by(C.check_claims("cpu", _benign_records(0.98, 0.975, n=100000)), "benign", "n/a")
    assert half["verdict"] == C.REPRODUCED and half["estimate"] == pytest.approx(0.5)
    assert half["at_half_margin"] == C.INCONCLUSIVE and half["margin_sensitive"] is True
    assert "margin-sensitive" in D.flags(half)


def _smoothness_records(trs_scale, seeds=(0, 1, 2), n=300):
    """Fake smoothness records of the figures' vanilla and TRS cells: per point, vanilla's values
    are lognormal draws and TRS's the same draws times ``trs_scale`` times a little noise."""
    recs = {}
    for seed in seeds:
        cells = G.table_cells("fig2", "cpu", seed)["eval"]
        base = np.random.default_rng(seed).lognormal(0.0, 0.5, n)
        noise = np.random.default_rng(100 + seed).lognormal(0.0, 0.05, n)
        for col, vals in (("vanilla", base), ("trs", base * trs_scale * noise)):
            ec = cells[(col, "smoothness")]
            recs[f"eval/{ec.name}"] = {"metrics": {"rows": [
                {"key": r.key, "attack": "smoothness", "value": r.value, "values": vals.tolist()}
                for r in ec.rows]}}
    return recs


def test_smoothness_claim_is_paired_over_points_and_seeds():
    """TRS members half as rough as vanilla: reproduced; twice as rough: not reproduced; the
    same up to 5% noise per point: inconclusive (the paired interval contains 0); a seed with
    only one of the two records is left out, not compared unpaired."""
    smooth = _by(C.check_claims("cpu", _smoothness_records(0.5)), "smoothness", "n/a")
    assert smooth["verdict"] == C.REPRODUCED and smooth["hi"] < 0 and smooth["seeds"] == (3, 3)
    assert smooth["unit"] != "points" and "points" not in D.claims("cpu", _smoothness_records(0.5))[
        [c["id"] for c in C.check_claims("cpu", {})].index("smoothness")]["statistic"]
    rough = _by(C.check_claims("cpu", _smoothness_records(2.0)), "smoothness", "n/a")
    assert rough["verdict"] == C.NOT_REPRODUCED and rough["lo"] > 0
    same = _by(C.check_claims("cpu", _smoothness_records(1.0)), "smoothness", "n/a")
    assert same["verdict"] == C.INCONCLUSIVE and same["lo"] < 0 < same["hi"]
    recs = _smoothness_records(0.5)
    ec = G.table_cells("fig2", "cpu", 2)["eval"][("trs", "smoothness")]
    del recs[f"eval/{ec.name}"]
    left = _by(C.check_claims("cpu", recs), "smoothness", "n/a")
    assert left["seeds"] == (2, 3) and left["verdict"] == C.PROVISIONAL and left["reading"] == C.REPRODUCED


def _transfer_records(trs_off, trs_diag, van_off=0.5, van_diag=0.3, n=1000):
    recs = {}
    for seed in G.seeds_for("fig2", "cpu"):
        for col, off, diag in (("trs", trs_off, trs_diag), ("vanilla", van_off, van_diag)):
            ec = G.table_cells("fig2", "cpu", seed)["eval"][(col, "transfer")]
            m = [[diag if i == j else off for j in range(3)] for i in range(3)]
            recs[f"eval/{ec.name}"] = {"metrics": {"n_test": n, "clean_accuracy": 0.98, "rows": [
                {"attack": a, "matrix": m} for a in G.TRANSFER_ATTACKS]}}
    return recs


def test_mechanism_needs_the_premise_and_the_effect():
    """TRS members transfer less but are rougher and weaker: the effect is reproduced, the
    conjunction is not; smoother, stronger and transferring less: the conjunction holds."""
    fails = C.check_claims("cpu", _transfer_records(0.9, 0.1) | _smoothness_records(2.0))
    assert _by(fails, "transfer", "n/a")["verdict"] == C.REPRODUCED
    assert _by(fails, "members-robust", "n/a")["verdict"] == C.NOT_REPRODUCED
    r = _by(fails, "mechanism", "n/a")
    assert r["verdict"] == C.NOT_REPRODUCED and r["fragile"] == []
    holds = C.check_claims("cpu", _transfer_records(0.9, 0.6) | _smoothness_records(0.5))
    assert _by(holds, "mechanism", "n/a")["verdict"] == C.REPRODUCED
    one = _by(C.check_claims("cpu", _transfer_records(0.9, 0.6) | _smoothness_records(2.0)),
              "mechanism", "n/a")
    assert one["verdict"] == C.NOT_REPRODUCED and one["fragile"] == ["smoothness"]


def _ila_records(member1, others, n=1000):
    recs = {}
    for seed in G.seeds_for("6", "cpu"):
        ec = G.table_cells("6", "cpu", seed)["eval"][("trs", "ila:mnist")]
        rows = [{"key": r.key, "accuracy_by_model": {"member1": member1, "member2": others,
                                                     "member3": others, "ensemble": others}}
                for r in P.table(6).rows if r.dataset == "mnist"]
        recs[f"eval/{ec.name}"] = {"metrics": {"n_test": n, "rows": rows}}
    return recs


def test_ila_little_transfer_is_measured_against_the_papers_table6_gap():
    """The others must keep at least the paper's gap over member 1 (3.56 and 16.70 points at
    eps 0.1 and 0.15): a 55-point gap reproduces it, a 5-point gap does not."""
    big = _by(C.check_claims("cpu", _ila_records(0.40, 0.95)), "ila")
    assert big["verdict"] == C.REPRODUCED and big["lo"] > 0
    small = _by(C.check_claims("cpu", _ila_records(0.85, 0.90)), "ila")
    assert small["verdict"] == C.NOT_REPRODUCED and small["hi"] < 0
    assert small["estimate"] == pytest.approx(5.0 - 16.7, abs=0.01)   # the worst row: eps 0.15


def test_shown_interval_is_the_deciding_statistics_for_every_claim():
    """On the committed records: the landing page and the summary show, for every claim, the
    statistic the verdict is read from; no shown interval contradicts its verdict."""
    recs = load_records()
    out = C.check_claims("cpu", recs)
    shown = D.claims("cpu", recs)
    by_id = {(r["id"], r["evaluation"]): r for r in out}
    for r, s in zip(out, shown):
        assert (r["id"], r["verdict"]) == (s["id"], s["verdict"])
        if r["verdict"] == C.NOT_YET_RUN:
            continue
        if r["parts"]:
            for p in r["parts"]:
                part = by_id[(p["id"], "n/a")]
                assert (p["estimate"], p["lo"], p["hi"]) == (part["estimate"], part["lo"], part["hi"])
                assert D._span(p["estimate"], p["lo"], p["hi"], p["unit"]) in s["statistic"]
            continue
        assert D._span(r["estimate"], r["lo"], r["hi"], r["unit"]) in s["statistic"], r["id"]
        assert S.verdict(r["lo"], r["hi"], r["margin"], r["direction"]) == r["reading"], r["id"]
        assert r["lo"] <= r["estimate"] <= r["hi"], r["id"]
        if r["verdict"] == C.PROVISIONAL:
            assert min(r["seeds"]) < V.MIN_SEEDS and "provisional" in s["flags"]
        elif r["verdict"] != C.NO_VERDICT:
            assert r["verdict"] == r["reading"] and min(r["seeds"]) >= V.MIN_SEEDS, r["id"]
        ests = [x["estimate"] for x in r["rows"]]
        if r["kind"] == "all":
            pick = min if r["direction"] == "greater" else max
            assert r["estimate"] == pick(ests) and r["lo"] == pick(x["lo"] for x in r["rows"])
        elif r["kind"] == "most":
            assert r["estimate"] == sorted(ests)[-(len(ests) // 2 + 1)]
