"""Tests of robustness evaluation (trs_lib.evaluate), presets and the adaptive audit (trs_lib.audit)."""
from __future__ import annotations

import inspect

import pytest
import torch

from trs_lib import audit as A
from trs_lib import evaluate as E
from trs_lib import paper_numbers as P
from trs_lib.attacks import get, presets
from trs_lib.attacks.testing import quick_ensemble, quick_model, test_points
from trs_lib.ensemble import Ensemble
from trs_lib import member_transfer as MT
from trs_lib import suites as S
from trs_lib import worst_case as W


def _suite(ens, x, y, suite, rows=None, settings=None, **_):
    """The metrics of ``trs_lib.evaluate.run`` for one suite on exactly these points."""
    return E.run(E.EvalSpec.from_dict({"suite": suite, "rows": rows, **(settings or {})}), ens, x, y).metrics


@pytest.fixture
def model():
    return quick_model()  # a fresh copy per test (the training is cached)


@pytest.fixture
def ens():
    return quick_ensemble()


@pytest.fixture(scope="module")
def pts():
    return test_points(40)


# ------------------------------------------------------------------------------ OOM handling
def test_run_batched_halves_the_batch_on_cuda_oom_and_reports_it():
    calls = []

    def fn(a, b):
        calls.append(b - a)
        if b - a > 12:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return torch.arange(a, b)

    logs = []
    outs, bs = W.run_batched(fn, 100, 64, log=logs.append)
    assert bs == 8
    assert torch.equal(torch.cat(outs), torch.arange(100))
    assert calls[:4] == [64, 32, 16, 8] and max(calls[4:]) == 8
    assert len(logs) == 3 and "retrying with 8" in logs[-1]


def test_run_batched_keeps_done_batches_and_reraises_other_errors():
    seen = []

    def fn(a, b):
        if a >= 20 and b - a > 5:
            raise torch.cuda.OutOfMemoryError("late OOM")
        seen.append((a, b))
        return torch.arange(a, b)

    outs, bs = W.run_batched(fn, 40, 10)
    assert bs == 5 and seen[:2] == [(0, 10), (10, 20)]
    assert torch.equal(torch.cat(outs), torch.arange(40))
    with pytest.raises(KeyError):
        W.run_batched(lambda a, b: {}[a], 4, 2)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        W.run_batched(lambda a, b: (_ for _ in ()).throw(torch.cuda.OutOfMemoryError("x")), 4, 2)
    with pytest.raises(ValueError, match="batch_size"):
        W.run_batched(lambda a, b: None, 4, 0)


def test_robust_accuracy_survives_simulated_oom(model, pts):
    x, y = pts
    pgd = get("pgd")

    def oom_pgd(m, xb, yb, **kw):
        if len(xb) > 8:
            raise torch.cuda.OutOfMemoryError("simulated")
        return pgd(m, xb, yb, **kw)

    oom_pgd.__signature__ = inspect.signature(pgd)
    res = W.robust_accuracy(model, x, y, oom_pgd, batch_size=32, progress=False, eps=0.1, steps=2)
    ref = W.robust_accuracy(model, x, y, "pgd", batch_size=8, progress=False, eps=0.1, steps=2)
    assert res["batch_size"] == 8
    assert res["accuracy"] == ref["accuracy"]


# ------------------------------------------------------------------------------ robust accuracy
def _coin(x, u):
    """Whether the fake attack fools each point: a hash of the point shifted by the restart's draw."""
    return torch.frac(x.flatten(1).sum(1) * 7.31 + u) < 0.3


def _coin_attack(model, x, y, *, generator=None):
    """A fake randomised attack: fools a point (returns a blank image) when its coin says so."""
    u = torch.rand(1, generator=generator)
    out = x.clone()
    out[_coin(x, u)] = 0.0
    return out


def test_robust_only_if_every_restart_survives(model, pts):
    x, y = pts
    with torch.no_grad():
        blank_pred = model(torch.zeros(1, *x.shape[1:])).argmax(1).item()
        keep = y != blank_pred          # a blank image is wrong for these points
        x, y = x[keep], y[keep]
        clean = model(x).argmax(1) == y
    res = W.robust_accuracy(model, x, y, _coin_attack, restarts=4, seed=5, batch_size=1000,
                            progress=False)
    survive, per = clean.clone(), []
    for r in range(4):  # independent re-computation: AND over restarts of each restart's outcome
        survive &= ~_coin(x, torch.rand(1, generator=torch.Generator().manual_seed(5 + r)))
        per.append(survive.float().mean().item())
    assert res["restarts"] == 4
    assert res["robust"] == survive.tolist()
    assert res["per_restart"] == pytest.approx(per)
    assert res["accuracy"] < res["per_restart"][0] < res["clean_accuracy"]


def test_deterministic_attack_runs_once_and_counts_clean_errors(model, pts):
    x, y = pts
    res = W.robust_accuracy(model, x, y, lambda m, xb, yb: xb, restarts=3, progress=False)
    assert res["restarts"] == 1
    assert res["accuracy"] == pytest.approx(E.clean_accuracy(model, x, y))
    y_wrong = (y + 1) % 10
    assert W.robust_accuracy(model, x, y_wrong, lambda m, xb, yb: xb, progress=False)["accuracy"] == 0.0


def test_restarts_can_only_lower_pgd_accuracy(model, pts):
    x, y = pts
    one = W.robust_accuracy(model, x, y, "pgd", restarts=1, progress=False, eps=0.08, steps=2)
    three = W.robust_accuracy(model, x, y, "pgd", restarts=3, progress=False, eps=0.08, steps=2)
    assert three["accuracy"] <= one["accuracy"]
    assert three["per_restart"][0] == one["accuracy"]


# ------------------------------------------------------------------------------ transfer and ILA
def test_transfer_matrix_layout_identity_attack_and_copies(ens, pts):
    x, y = pts
    res = MT.transfer_matrix(ens, x, y, lambda m, xb, yb: xb, progress=False)
    clean = E.member_accuracies(ens, x, y)
    for i in range(3):
        for j in range(3):
            assert res["matrix"][i][j] == pytest.approx(clean["members"][i])
    # an ensemble of identical copies: every member has the same accuracy on each column
    m0 = ens.member(0)
    twins = Ensemble([m0, m0, m0]).eval()
    res = MT.transfer_matrix(twins, x, y, "pgd", progress=False, eps=0.15, steps=3)
    mat = torch.tensor(res["matrix"])
    assert torch.allclose(mat, mat[0:1].expand(3, 3))
    x_adv = get("pgd")(m0, x, y, eps=0.15, steps=3, generator=torch.Generator().manual_seed(0))
    assert mat[0, 0].item() == pytest.approx(E.clean_accuracy(m0, x_adv, y))


def test_transfer_matrix_cell_is_member_i_on_examples_against_member_j(ens, pts):
    x, y = pts
    res = MT.transfer_matrix(ens, x, y, "fgsm", progress=False, eps=0.2)
    x_adv1 = get("fgsm")(ens.member(1), x, y, eps=0.2)
    acc_0_on_1 = E.clean_accuracy(ens.member(0), x_adv1, y)
    assert res["matrix"][0][1] == pytest.approx(acc_0_on_1)
    assert res["ensemble_row"][1] == pytest.approx(E.clean_accuracy(ens, x_adv1, y))
    diag = sum(res["matrix"][i][i] for i in range(3)) / 3
    off = sum(res["matrix"][i][j] for i in range(3) for j in range(3) if i != j) / 6
    assert diag < off  # white-box beats transfer on a vanilla ensemble


def test_ila_table_hurts_the_source_member_most(ens, pts):
    x, y = pts
    res = MT.ila_table(ens, x, y, eps=0.2, progress=False)
    by = res["accuracy_by_model"]
    assert set(by) == {"member1", "member2", "member3", "ensemble"}
    assert all(0 <= v <= 1 for v in by.values())
    assert by["member1"] <= min(by["member2"], by["member3"])
    with pytest.raises(ValueError, match="source"):
        MT.ila_table(ens, x, y, eps=0.1, source=3)


# ------------------------------------------------------------------------------ presets, suites
def test_presets_match_the_paper_rows_and_conventions():
    # the row keys the records use: one function (paper_numbers.row_key) for rows and presets
    assert [P.row_key(r) for r in presets.preset("mnist5k", "whitebox")][4:6] == \
        ["pgd10/eps=0.1", "pgd10/eps=0.15"]
    assert P.row_key(presets.preset("mnist", "pgd110")[1]) == "pgd110/eps=0.15"
    assert P.row_key({"attack": "linf", "param": "eps", "value": 0.15}, prefix="worst_case") == \
        "worst_case:linf/eps=0.15"
    assert P.row_key(P.table("6").rows[0]) == "mnist:ila/eps=0.1"
    assert [r["value"] for r in presets.preset("mnist", "ila")] == [0.1, 0.15]
    assert [r["value"] for r in presets.preset("cifar10", "ila")] == [0.01, 0.02]
    assert [r["steps"] for r in presets.preset("mnist", "pgd110")] == [110, 110]
    name, kw = presets.attack_kwargs({"attack": "cw", "param": "c", "value": 10})
    assert name == "cw" and kw == dict(c=10.0, kappa=0.1, steps=1000, lr=0.01, binary_search_steps=1)
    with pytest.raises(ValueError, match="budget"):
        presets.attack_kwargs({"attack": "cw", "param": "eps", "value": 0.1})
    with pytest.raises(ValueError, match="unknown dataset"):
        presets.preset("imagenet")


def test_every_preset_row_binds_to_its_attack():
    for ds in ("mnist", "cifar10"):
        for suite in presets.PRESETS[ds]:
            for row in presets.preset(ds, suite):
                name, kw = presets.attack_kwargs(row)
                inspect.signature(get(name)).bind(None, None, None, **kw)


def test_iterative_step_size_conventions(model):
    """PGD: eps/10 at any number of steps; BIM/MIM: eps/steps (the paper's eps/r)."""
    from trs_lib.attacks.testing import linear_model
    m = linear_model()
    x = torch.rand(3, 2, 3, 3, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    y = torch.tensor([0, 1, 2])
    a = get("pgd")(m, x, y, eps=0.2, steps=1, random_start=False)
    assert (a - x).abs().max() == pytest.approx(0.02, abs=1e-6)
    b = get("bim")(m, x, y, eps=0.2, steps=4)
    assert (get("bim")(m, x, y, eps=0.2, steps=1) - x).abs().max() == pytest.approx(0.2, abs=1e-6)
    assert (b - x).abs().max() <= 0.2 + 1e-6


def test_evaluate_suite_records_rows_in_the_grid_format(ens, pts):
    x, y = pts[0][:24], pts[1][:24]
    rows = [dict(key="pgd10/eps=0.1", attack="pgd", param="eps", value=0.1, steps=10),
            dict(key="cw/c=10", attack="cw", param="c", value=10.0, steps=None)]
    m = _suite(ens, x, y, "whitebox", rows, {"cw_steps": 20, "seed": 0}, progress=False)
    assert [r["key"] for r in m["rows"]] == ["pgd10/eps=0.1", "cw/c=10"]
    assert m["rows"][1]["kwargs"]["steps"] == 20
    assert all(0 <= r["accuracy"] <= m["clean_accuracy"] for r in m["rows"])
    assert m["n_test"] == 24
    t = _suite(ens, x, y, "transfer", [dict(key="fgsm/eps=0.2", attack="fgsm", param="eps",
                                                        value=0.2, steps=None)], progress=False)
    assert len(t["rows"][0]["matrix"]) == 3
    i = _suite(ens, x, y, "ila", [dict(key="mnist:ila/eps=0.1", attack="ila", param="eps",
                                                   value=0.1, steps=10)], progress=False)
    assert i["rows"][0]["key"] == "mnist:ila/eps=0.1" and "member3" in i["rows"][0]["accuracy_by_model"]
    with pytest.raises(ValueError, match="unknown suite"):
        _suite(ens, x, y, "greybox")


def test_cw_rows_on_an_evenly_spaced_subset(ens, pts):
    """``cw_n_test``: CW rows run on that many evenly spaced points (a class-sorted split must
    not give CW the first classes only), the other rows on all; the CW row equals CW run on those
    points directly; a subset larger than the points is refused before any work."""
    x, y = pts[0][:30], pts[1][:30]
    rows = [dict(key="pgd10/eps=0.1", attack="pgd", param="eps", value=0.1, steps=10),
            dict(key="cw/c=10", attack="cw", param="c", value=10.0, steps=None)]
    m = _suite(ens, x, y, "whitebox", rows, {"cw_steps": 20, "cw_n_test": 7}, progress=False)
    assert [r["key"] for r in m["rows"]] == ["pgd10/eps=0.1", "cw/c=10"]
    assert len(m["rows"][0]["correct"]) == 30 and len(m["rows"][1]["correct"]) == 7
    sub = S.spread_indices(30, 7)
    assert sub.tolist() == [0, 5, 10, 14, 19, 24, 29]
    assert S.spread_indices(30, 30).tolist() == list(range(30)) and S.spread_indices(30, 1).tolist() == [0]
    for n, k in ((30, 31), (30, 0), (30, 2.0), (True, 1)):
        with pytest.raises(ValueError, match="spread_indices: need integers 1 <= k <= n"):
            S.spread_indices(n, k)
    direct = W.robust_accuracy(ens, x[sub], y[sub], "cw", c=10.0, steps=20, kappa=0.1, lr=0.01,
                               binary_search_steps=1, stop_on_success=True, progress=False)
    assert direct["correct"] == m["rows"][1]["correct"]
    with pytest.raises(ValueError, match="cw_n_test=31 is outside the allowed range"):
        _suite(ens, x, y, "whitebox", rows, {"cw_steps": 20, "cw_n_test": 31}, progress=False)
    # the convergence check reuses a base accuracy it is given and times itself
    chk = S.cw_convergence(ens, x[sub], y[sub], c=10.0, steps=20, kappa=0.1, lr=0.01,
                           stop_on_success=True, base_accuracy=direct["accuracy"])
    assert chk["base_reused"] and chk["accuracy"] == direct["accuracy"] and chk["wall_s"] > 0
    assert chk["doubled_steps"] == 40 and chk["doubled_accuracy"] <= direct["accuracy"] + 1e-9


def test_smoothness_suite_rows(ens, pts):
    """The ``smoothness`` suite: one row per radius with per-point values that are the members'
    mean of ``local_smoothness`` (same directions for every member), reproducible from its seed;
    a non-positive radius is refused before any work."""
    from trs_lib.theory import local_smoothness
    x, y = pts[0][:10], pts[1][:10]
    m = _suite(ens, x, y, "smoothness", None, {"seed": 3}, progress=False)
    assert [r["key"] for r in m["rows"]] == ["smoothness/r=0.25", "smoothness/r=1", "smoothness/r=4"]
    r1 = m["rows"][1]
    assert len(r1["values"]) == 10 and len(r1["member_values"]) == ens.num_members
    member0 = local_smoothness(ens.member(0), x, y, radius=1.0, n_dirs=4,
                               generator=torch.Generator().manual_seed(3 * 1000 + 1))
    assert torch.allclose(torch.tensor(r1["member_values"][0]), member0.float(), rtol=1e-4)
    means = torch.tensor(r1["member_values"]).mean(0)
    assert torch.allclose(torch.tensor(r1["values"]), means, rtol=1e-4)
    again = _suite(ens, x, y, "smoothness", None, {"seed": 3}, progress=False)
    assert again["rows"][1]["values"] == r1["values"]
    with pytest.raises(ValueError, match="positive finite radius"):
        _suite(ens, x, y, "smoothness", [dict(attack="smoothness", param="r", value=0.0)])
    # a given clean gradient is used as given (a wrong one changes the values) and checked for shape
    g = torch.zeros_like(x)
    off = local_smoothness(ens.member(0), x, y, radius=1.0, n_dirs=4, clean_gradient=g,
                           generator=torch.Generator().manual_seed(3 * 1000 + 1))
    assert not torch.allclose(off.float(), member0.float(), rtol=1e-2)
    with pytest.raises(ValueError, match="clean_gradient has shape"):
        local_smoothness(ens.member(0), x, y, radius=1.0, clean_gradient=g[:3])


# ------------------------------------------------------------------------------ audit
def test_audit_passes_on_an_undefended_model(model, pts):
    x, y = pts
    checks = A.audit(model, x, y, eps=0.15, apgd_steps=10, checks=("large_eps", "unbounded", "transfer"))
    by = {c["check"]: c for c in checks}
    assert by["large_eps"]["passed"] is True and by["unbounded"]["passed"] is True
    # the transfer check always runs: without a surrogate, an independently initialised one
    assert by["transfer"]["passed"] is True and by["transfer"]["values"]["surrogate"] == "independent"
    for c in checks:
        assert set(c) == {"check", "passed", "status", "detail", "values", "tolerance"}
    frame = A.audit_frame(checks)
    assert list(frame.index) == ["large_eps", "unbounded", "transfer"]


class _Masked(torch.nn.Module):
    """Gradient masking: the input is quantised (zero gradient almost everywhere)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x * 0 + (x * 4).round() / 4)


def test_audit_flags_gradient_masking(model, pts):
    x, y = pts
    masked = _Masked(model).eval()
    checks = A.audit(masked, x, y, eps=0.3, checks=("unbounded", "apgd", "transfer"),
                     apgd_steps=10, surrogate=model)
    by = {c["check"]: c for c in checks}
    assert by["unbounded"]["passed"] is False and by["unbounded"]["status"] == "FAIL"
    # a transfer attack from the unmasked model beats white-box PGD on the masked one
    assert by["transfer"]["passed"] is False
    assert "transfer" in by["transfer"]["detail"]


def test_noise_and_bad_audit_arguments(model, pts):
    assert A.noise(0.5, 100) == pytest.approx(0.1)
    assert A.noise(1.0, 100) == 0.01
    x, y = pts
    with pytest.raises(ValueError, match="unknown checks"):
        A.audit(model, x, y, eps=0.1, checks=("nope",))
    with pytest.raises(ValueError, match="eps"):
        A.audit(model, x, y, eps=0.0)


# ------------------------------------------------------------------------------ the spec and run
@pytest.mark.parametrize("change, field", [
    ({"suite": "greybox"}, "unknown suite 'greybox'"), ({"n_test": 0}, "EvalSpec.n_test"),
    ({"restarts": 1.5}, "EvalSpec.restarts"), ({"seed": -1}, "EvalSpec.seed"),
    ({"worst_case_suite": "l3"}, "unknown worst_case_suite 'l3'"), ({"dataset": "mnist6k"}, "mnist6k"),
    ({"rows": "pgd"}, "EvalSpec.rows"), ({"ila_sweep": 1}, "EvalSpec.ila_sweep"),
    ({"cw_check_points": -1}, "EvalSpec.cw_check_points"), ({"colour": 1}, "unknown EvalSpec fields"),
])
def test_a_bad_spec_names_its_field(change, field):
    E.EvalSpec.from_dict({"suite": "whitebox"})
    with pytest.raises(ValueError, match=field):
        E.EvalSpec.from_dict({"suite": "whitebox", **change})


def test_every_grid_cell_is_an_eval_spec_and_the_suites_agree():
    """The grid's suites are the evaluation's, and every evaluation cell of every rung gives a
    spec (what the driver passes to the page) that round-trips."""
    from trs_lib.companion import grid as G
    from trs_lib.companion import reproduce as R
    from trs_lib.companion.rungs import RUNGS
    assert set(G.SUITE_SETTINGS) == set(E.SUITES)
    n = 0
    for rung in RUNGS:
        for cell in G.cells_for(G.TARGETS, rung):
            if cell.kind == "eval":
                spec = R.eval_parameters(cell, "out.json")["spec"]
                assert E.EvalSpec.from_dict(spec).to_dict() == spec
                assert spec["dataset"] == cell.train.dataset and spec["suite"] == cell.suite
                n += 1
    assert n > 300


def test_run_is_the_suite_with_its_record(ens, pts):
    """``run`` gives the suite's rows unchanged (the same numbers as the table function on the
    same points), the clean accuracies, and a record that parses as an EvalRecord naming its spec;
    ``n_test`` takes evenly spaced points of what it is given."""
    from trs_lib import records
    x, y = pts[0][:30], pts[1][:30]
    rows = [dict(attack="pgd", param="eps", value=0.1, steps=5)]
    spec = E.EvalSpec("whitebox", rows=rows, n_test=10, cw_check_points=0)
    rec = E.run(spec, ens, x, y, config={"run_dir": "runs/x"})
    sub = S.spread_indices(30, 10)
    direct = S.whitebox_table(ens, x[sub], y[sub], rows, progress=False)
    assert rec.rows[0]["correct"] == direct[0]["correct"] and rec.metrics["n_test"] == 10
    assert rec.metrics["clean_accuracy"] == E.clean_accuracy(ens, x[sub], y[sub])
    again = records.parse_record(rec.to_json(), "r")
    assert isinstance(again, records.EvalRecord) and again.config["spec"] == spec.to_dict()
    assert again.config["run_dir"] == "runs/x" and rec.provenance["wall_time_s"] > 0
    with pytest.raises(ValueError, match="run needs an EvalSpec"):
        E.run({"suite": "whitebox"}, ens, x, y)


def test_blackbox_suite_through_run(ens, pts, tmp_path):
    """The black-box suite is one more entry of the registry: transfer from the given surrogates,
    rows keyed like the worst case's, and a clear error without surrogates."""
    from trs_lib.attacks.testing import quick_ensemble
    x, y = pts[0][:12], pts[1][:12]
    spec = E.EvalSpec("blackbox", rows=[dict(attack="transfer", param="eps", value=0.1, steps=None)],
                      transfer_attacks=("mi_fgsm",))
    rec = E.run(spec, ens, x, y, surrogates={"other": quick_ensemble(seed=5)}, cache_dir=tmp_path)
    (row,) = rec.rows
    assert row["key"] == "transfer:linf/eps=0.1" and len(row["correct"]) == 12
    assert rec.metrics["surrogates"] == ["other"] and rec.complete() == []
    assert row["accuracy"] <= rec.metrics["clean_accuracy"] + 1e-9
    with pytest.raises(ValueError, match="needs surrogates"):
        E.run(spec, ens, x, y)
