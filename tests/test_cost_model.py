"""The grid's cost model (benchmarks/cost_model.py, ``benchmarks/reproduce.py --check``) against
the committed records (issue 26 item 3): predicted vs measured wall time per kind of cell, each
cell predicted from the other records (leave one out), within the stated factors."""
from __future__ import annotations

import copy
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from trs_lib.records import load_records

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


@pytest.fixture(scope="module")
def cost_model():
    spec = importlib.util.spec_from_file_location("cost_model", BENCH / "cost_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # it imports only trs_lib (benchmarks/ is not a package)
    return mod


@pytest.fixture(scope="module")
def records():
    recs = load_records(warn=lambda m: None)
    if not recs:
        pytest.skip("no committed records")
    return recs


def test_every_kind_with_records_is_printed_and_within_the_factor(cost_model, records):
    lines = []
    out = cost_model.check(records, log=lines.append)
    cells = cost_model._grid_cells()
    expected = {cost_model._kind(cells[k], r) for k, r in records.items()
                if k in cells and r["provenance"].get("wall_time_s")}
    assert expected and set(out["kinds"]) >= expected
    # the kinds that matter for the ladder are among them
    assert {"train trs (small_cnn)", "eval worst_case (small_cnn)",
            "eval whitebox CW-L2 rows (small_cnn)"} <= set(out["kinds"])
    for kind, k in out["kinds"].items():
        row = next(line for line in lines if line.strip().startswith(kind + " "))
        pred, meas = map(float, re.findall(r"(\d+)s", row)[:2])
        assert pred == pytest.approx(k["predicted_s"], abs=1) and meas == pytest.approx(k["measured_s"], abs=1)
        assert k["predicted_s"] > 0 and k["measured_s"] > 0
        f = out["factor_assumed"] if k["assumed"] else out["factor"]
        assert 1 / f <= k["ratio"] <= f, (kind, k["ratio"])
    assert out["within"]


def test_an_outlying_record_is_flagged(cost_model, records):
    """The check can fail: one small-CNN whitebox record made 100x slower puts its kind
    outside the factor (the other records still predict the usual cost)."""
    recs = copy.deepcopy(records)
    key = next(k for k, r in recs.items() if k.startswith("eval/whitebox-")
               and cost_model._arch(r) == "small_cnn" and r["provenance"].get("wall_time_s"))
    recs[key]["provenance"]["wall_time_s"] *= 100
    out = cost_model.check(recs, log=lambda m: None)
    assert not out["within"]
    assert not out["kinds"]["eval whitebox (small_cnn)"]["ok"]


def test_worst_case_cost_grows_with_robust_accuracy(cost_model, records):
    """The worst case's rate is a line in the column's robust accuracy, floored at the first
    attack's cost: a more robust column is never projected cheaper."""
    rates, _ = cost_model._rates(records, cost_model._grid_cells())
    a, b, floor = rates[("eval", "worst_case_row")]
    assert b > 0 and floor > 0
    assert max(a + b * 0.0, floor) <= max(a + b * 0.5, floor) <= max(a + b * 1.0, floor)


def test_check_command_exits_zero():
    proc = subprocess.run([sys.executable, str(BENCH / "reproduce.py"), "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "measured/pred" in proc.stdout and "every kind" in proc.stdout
