"""The scale ladder (trs_lib.companion.ladder): every rung has a place, disagreeing rungs make a
claim scale-dependent, and the highest deciding rung is reported."""
import re

from trs_lib.companion import claims as C
from trs_lib.companion import ladder as L
from trs_lib.companion.rungs import RUNGS
from trs_lib.records import load_records


def _row(rung, ev, verdict, reading=None, est=1.0):
    return dict(rung=rung, evaluation=ev, verdict=verdict, reading=reading or verdict,
                estimate=est, lo=None if est is None else est - 1, hi=None if est is None else est + 1)


def test_disagreeing_rungs_are_scale_dependent_and_agreeing_ones_are_not():
    agree = [_row("cpu", "paper", C.NOT_REPRODUCED), _row("cpu-40ep", "paper", C.NOT_REPRODUCED),
             _row("cpu-r20", "paper", C.INCONCLUSIVE)]
    assert L.scale_dependent(agree) == {}
    flip = agree + [_row("cpu-r20-2ep", "paper", C.PROVISIONAL, C.REPRODUCED),
                    _row("cpu", "worst_case", C.NOT_REPRODUCED)]
    assert L.scale_dependent(flip) == {"paper": {C.NOT_REPRODUCED: ["cpu", "cpu-40ep"],
                                                 C.REPRODUCED: ["cpu-r20-2ep (provisional)"]}}


def test_highest_is_the_rung_closest_to_the_paper_with_a_number():
    rows = [_row("cpu", "paper", C.NOT_REPRODUCED), _row("cpu-r20-2ep", "paper", C.PROVISIONAL, C.REPRODUCED),
            _row("cpu-r20", "paper", C.NOT_YET_RUN, est=None), _row("fashion", "paper", C.REPRODUCED)]
    assert L.highest(rows, "paper")["rung"] == "cpu-r20-2ep"
    rows.append(_row("cpu-r20", "worst_case", C.REPRODUCED))
    assert L.highest(rows, "worst_case")["rung"] == "cpu-r20" and L.highest([], "paper") is None


def test_ladder_on_the_committed_records():
    assert set(L.LADDER) == set(RUNGS)
    rows = L.ladder(load_records())
    table1 = [n for n in L.LADDER if RUNGS[n].runs("1")]
    assert [r["rung"] for r in rows] == [n for n in table1 for _ in L.EVALUATIONS]
    cpu = [r for r in rows if r["rung"] == "cpu"]
    assert all(r["verdict"] in C.VERDICTS and r["seeds"] == (3, 3) and r["lo"] <= r["estimate"] <= r["hi"]
               for r in cpu)
    assert all("trs" not in r["columns"] for r in rows)


def test_readme_findings_are_the_claims_findings():
    """The README's findings paragraph is what the claims say now (regenerate it with
    ``python -m trs_lib.companion.landing README.md`` when records land)."""
    from trs_lib.companion import landing
    from trs_lib.paths import project_root
    text = (project_root() / "README.md").read_text(encoding="utf-8")
    block = landing.readme_block(load_records())
    assert block in text, "README.md's findings are stale: python -m trs_lib.companion.landing README.md"
    found = [ln for ln in block.splitlines() if ln.startswith("* ")]
    assert 3 <= len(found) <= 6
    for f in found:  # a number with its interval, or an exact counterexample's numbers
        assert re.search(r"\[[+-]?\d+\.\d+, [+-]?\d+\.\d+\]", f) or (
            "exact counterexample" in f and re.search(r"\d\.\d+ > ", f)), f
