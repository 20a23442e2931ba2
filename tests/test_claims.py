"""trs_lib.companion.claims: paired differences over seeds and points, the margin, the verdicts."""
import zlib

import numpy as np
import pytest

from trs_lib.companion import claims as C
from trs_lib.companion import grid as G


def _records(accs, target="1", parts=("whitebox", "worst_case"), n=200, shared=True, seeds=None):
    """Fake evaluation records for ``target``: column -> accuracy. ``shared``: every column's
    per-point results are drawn from the same uniforms, so columns with equal accuracy agree
    point by point (a paired comparison then sees no noise)."""
    recs = {}
    for seed in (G.seeds_for(target, "cpu") if seeds is None else seeds):
        cells = G.table_cells(target, "cpu", seed)
        for (col, part), ec in cells["eval"].items():
            if col not in accs or part not in parts:
                continue
            rows = []
            for i, r in enumerate(ec.rows):
                u = np.random.default_rng(1000 * seed + i + (0 if shared else zlib.crc32(col.encode()) % 97)).random(n)
                c = "".join("1" if v < accs[col] else "0" for v in u)
                rows.append({"key": r.key, "attack": r.attack, "accuracy": c.count("1") / n,
                             "correct": c})
            recs[f"eval/{ec.name}"] = {"kind": "evaluate", "config": {}, "provenance": {},
                                       "metrics": {"rows": rows, "n_test": n,
                                                   "clean_accuracy": 0.97}}
    return recs


def _by(results, cid, evaluation="paper"):
    return next(r for r in results if r["id"] == cid and r["evaluation"] == evaluation)


T1 = P1 = ("cossim", "ckae", "adaboost", "gradientboost", "adp", "trs")


def test_check_claims_has_the_contract_keys_and_every_claim():
    out = C.check_claims("cpu", {})
    assert {"mnist-most", "trs-published-most", "members-robust", "smoothness", "ila",
            "r20-most", "members", "benign"} <= {r["id"] for r in out}
    for r in out:
        assert set(r) == {"id", "text", "source", "page", "evaluation", "verdict", "estimate",
                          "lo", "hi", "margin", "evidence"}
        assert r["evaluation"] in ("paper", "worst_case", "n/a")
        assert r["verdict"] == C.NOT_YET_RUN  # no records
    assert {r["evaluation"] for r in out if r["id"] == "mnist-most"} == {"paper", "worst_case"}
    assert "smoothness" in _by(out, "smoothness", "n/a")["evidence"]


def test_clear_winner_is_reproduced_and_a_tie_is_inconclusive():
    accs = {c: 0.5 for c in T1} | {"trs": 0.9}
    r = _by(C.check_claims("cpu", _records(accs)), "mnist-most")
    assert r["verdict"] == C.REPRODUCED and r["margin"] == 0.0
    assert 35 < r["estimate"] < 45 and r["lo"] > 0 and "10 reproduced" in r["evidence"]
    assert "target <= 6" in r["evidence"]
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
    assert r["verdict"] == C.NOT_YET_RUN and "provisional" in r["evidence"] and "(1 seed)" in r["evidence"]
    frame = C.compare_frame("1", "trs", tuple(c for c in T1 if c != "trs"),
                            records=_records(accs, seeds=(0, 1)))
    assert frame["provisional"].all() and (frame["n_seeds"] == 2).all() and (frame["lo"] > 0).all()
    assert _by(C.check_claims("cpu", _records(accs)), "mnist-most")["verdict"] == C.REPRODUCED


def test_more_members_needs_k3_better_beyond_the_interval():
    near = _records({"trs": 0.61, "trs_k2": 0.60, "adp": 0.5, "trs_at": 0.9}, target="3",
                    parts=("whitebox", "worst_case", "pgd110"), shared=False)
    r = _by(C.check_claims("cpu", near), "members")
    assert r["verdict"] in (C.INCONCLUSIVE, C.NOT_REPRODUCED)  # 1 point is within the noise
    far = _records({"trs": 0.8, "trs_k2": 0.6, "adp": 0.5, "trs_at": 0.9}, target="3",
                   parts=("whitebox", "worst_case", "pgd110"))
    out = C.check_claims("cpu", far)
    assert _by(out, "members")["verdict"] == C.REPRODUCED
    assert _by(out, "at")["verdict"] == C.REPRODUCED
    assert _by(out, "pgd110")["verdict"] == C.REPRODUCED


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


def test_benign_uses_the_one_point_margin():
    recs = {}
    for seed in G.seeds_for("fig2", "cpu"):
        cells = G.table_cells("fig2", "cpu", seed)
        for col, acc in (("vanilla", 0.98), ("trs", 0.975)):
            ec = cells["eval"][(col, "transfer")]
            recs[f"eval/{ec.name}"] = {"kind": "evaluate", "config": {}, "provenance": {},
                                       "metrics": {"rows": [], "n_test": 1000, "clean_accuracy": acc}}
    r = _by(C.check_claims("cpu", recs), "benign", "n/a")
    assert r["margin"] == C.BENIGN_MARGIN and r["estimate"] == pytest.approx(0.5)
    assert r["verdict"] in (C.REPRODUCED, C.INCONCLUSIVE)
    assert r["hi"] < 2.0


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
    assert smooth["verdict"] == C.REPRODUCED and smooth["hi"] < 0 and "3 seed(s)" in smooth["evidence"]
    rough = _by(C.check_claims("cpu", _smoothness_records(2.0)), "smoothness", "n/a")
    assert rough["verdict"] == C.NOT_REPRODUCED and rough["lo"] > 0
    same = _by(C.check_claims("cpu", _smoothness_records(1.0)), "smoothness", "n/a")
    assert same["verdict"] == C.INCONCLUSIVE and same["lo"] < 0 < same["hi"]
    recs = _smoothness_records(0.5)
    ec = G.table_cells("fig2", "cpu", 2)["eval"][("trs", "smoothness")]
    del recs[f"eval/{ec.name}"]
    assert "2 seed(s)" in _by(C.check_claims("cpu", recs), "smoothness", "n/a")["evidence"]
