"""The results store, the paper's numbers, the grid and the reproduce driver (no real runs)."""
import dataclasses
import json

import pytest

from trs_lib.companion import grid as G
from trs_lib import paper_numbers as P
from trs_lib.companion import reproduce as R
from trs_lib import provenance, records
from trs_lib.companion import tables
from trs_lib.atomic import CorruptFileError, atomic_write_json


# ---------------------------------------------------------------- the paper's numbers
@pytest.mark.parametrize("tid,shape", [("1", (10, 6)), ("2", (10, 6)), ("3", (12, 4)),
                                       ("4", (12, 4)), ("5", (10, 3)), ("6", (4, 4))])
def test_paper_tables_have_the_papers_shape(tid, shape):
    t = P.table(tid)
    assert t.shape == shape
    assert len(t.values) == shape[0] and all(len(r) == shape[1] for r in t.values)
    assert len(t.column_labels) == shape[1]
    assert len({r.key for r in t.rows}) == shape[0], "row keys must be unique"
    assert all(v is None or 0 <= v <= 100 for r in t.values for v in r)


def test_paper_numbers_spot_values_and_shared_cells():
    assert P.table(1).value("pgd10/eps=0.15", "trs") == 74.0
    assert P.table(2).value("cw/c=0.1", "trs") == 62.6
    assert P.table(3).value("pgd110/eps=0.15", "adp") == 1.18
    assert P.table(6).value("mnist:ila/eps=0.1", "ensemble") == 96.22
    # the paper prints the same TRS (k = 3, c = 2) and ADP numbers in Tables 1, 3 and 5
    for row in P.MNIST_WHITEBOX_ROWS:
        assert P.table(1).value(row, "trs") == P.table(3).value(row, "trs") == P.table(5).value(row, "trs")
        assert P.table(1).value(row, "adp") == P.table(3).value(row, "adp")
    with pytest.raises(KeyError, match="valid ids"):
        P.table(7)
    with pytest.raises(KeyError, match="columns"):
        P.table(1).value("fgsm/eps=0.1", "dverge")


# ---------------------------------------------------------------- records
def test_record_round_trip_and_corrupt_file(tmp_path):
    cfg = {"method": "trs", "dataset": "mnist5k", "seed": 0, "epochs": 4, "lam": 0.1}
    path = records.write_record(tmp_path / "train" / "a.json", "train", cfg,
                                {"final": {"acc": 0.5}}, wall_time_s=1.23456)
    rec = records.read_record(path)
    assert rec["config"] == cfg and rec["metrics"] == {"final": {"acc": 0.5}}
    assert rec["provenance"]["wall_time_s"] == 1.235 and "torch" in rec["provenance"]["versions"]
    (tmp_path / "train" / "bad.json").write_text('{"kind": "train", "conf')
    messages = []
    recs = records.load_records(tmp_path, warn=messages.append)
    assert list(recs) == ["train/a"] and recs["train/a"]["_path"] == "train/a.json"
    assert messages and "bad.json" in messages[0]
    with pytest.raises(CorruptFileError):
        records.read_record(tmp_path / "train" / "bad.json")


# ---------------------------------------------------------------- the grid
def test_cpu_grid_shares_cells_and_leaves_cifar_empty():
    cells = G.cells_for(["1", "3", "5", "6", "fig2", "fig3"], "cpu")
    names = [c.name for c in cells]
    assert len(names) == len(set(names))
    trains = [c for c in cells if c.kind == "train"]
    # Table 1: 6 methods + TRS as published, GAL, DVERGE, LOTOS, TRS + LOTOS, and the figures'
    # vanilla: 12 columns, 3 seeds each; Tables 3 and 5 add TRS k=2, TRS+AT, c=0.5, c=1, also
    # 3 seeds each
    assert len(trains) == 16 * 3
    assert all(c.dataset == "mnist5k" for c in trains)
    assert {c.config().seed for c in trains} == {0, 1, 2}
    late = [c for c in trains if c.method == "trs_at" or c.config().num_models == 2
            or c.config().c != G.make_config("mnist5k", "trs").c]
    assert len(late) == 4 * 3 and {c.config().seed for c in late} == {0, 1, 2}
    # every evaluation comes after its training, and attacks with its training's seed
    seen = set()
    for c in cells:
        if c.kind == "train":
            seen.add(c.name)
        else:
            assert c.train.name in seen
            assert dict(c.settings)["seed"] == c.train.config().seed
    # the priority: every Table 1 cell (all seeds, both evaluations) before any other
    t1 = {c.name for s in G.seeds_for("1", "cpu") for d in G.table_cells("1", "cpu", s).values()
          for c in d.values() if not (c.kind == "eval" and c.suite == "audit")}
    assert set(names[:len(t1)]) == t1
    first_seed1 = next(i for i, c in enumerate(cells) if c.kind == "train" and c.config().seed == 1)
    assert {c.train.method if c.kind == "eval" else c.method for c in cells[:first_seed1]} >= \
        {"trs", "adp", "cossim", "ckae", "adaboost", "gradientboost", "gal", "dverge"}
    assert all(c.suite == "audit" for c in cells[-10:])  # the audits' sanity checks last
    # Table 1 at 1,000 points, both evaluations; Table 1 and 3 share TRS's cells
    t = G.table_cells("1", "cpu", seed=2)
    wb = dict(t["eval"][("trs", "whitebox")].settings)
    assert wb["n_test"] == 1000 and wb["cw_steps"] == 1000 and wb["cw_n_test"] == 200
    assert [r.key for r in t["eval"][("gal", "worst_case")].rows] == ["worst_case:linf/eps=0.15"]
    # without the cut, the worst case runs at every L-infinity budget of the rows
    full = dataclasses.replace(G.rung("cpu"), worst_case_eps=None)
    assert [r.value for r in G.worst_case_rows(G.whitebox_rows("mnist"), rung_=full)] == [0.1, 0.15, 0.2]
    assert ("trs", "audit") not in t["eval"]
    assert G.cells_for(["2", "4", "fig4"], "cpu") == []
    assert G.table_cells("1", "cpu")["train"]["trs"] is not None
    assert G.table_cells("1", "cpu")["eval"][("trs", "whitebox")].name == \
        G.table_cells("3", "cpu")["eval"][("trs", "whitebox")].name
    with pytest.raises(ValueError, match="valid targets"):
        G.normalise_target("table9")
    assert G.normalise_target("Figure 2") == "fig2" and G.normalise_target(1) == "1"
    with pytest.raises(ValueError, match="valid targets"):
        G.normalise_target("r20")  # ResNet-20 is a rung, not a table
    with pytest.raises(ValueError, match="valid rungs"):
        G.rung("r20")


def test_published_trs_and_resnet20_columns():
    tp = G.train_cell("trs_published", "mnist5k", "cpu").config()
    assert tp.method == "trs" and tp.variant == "published"
    assert tp.faithful is True and tp.optimiser == "authors"
    r20 = G.cells_for(["1"], "cpu-r20-2ep")
    trains = [c for c in r20 if c.kind == "train"]
    assert [c.config().arch for c in trains] == ["resnet20"] * 4
    assert [c.config().epochs for c in trains] == [2] * 4
    assert {c.method for c in trains} == {"vanilla", "trs", "adp"}
    assert all(dict(c.settings)["n_test"] == 100 for c in r20 if c.kind == "eval")
    assert all(dict(c.settings).get("cw_n_test") in (None, 50) for c in r20 if c.kind == "eval")
    assert not any(c.suite == "audit" for c in r20 if c.kind == "eval")
    assert "resnet20" in G.rung("cpu-r20-2ep").describe("mnist")
    assert G.cells_for(["3", "fig2"], "cpu-r20-2ep") == []  # the pilot runs Table 1 only
    with pytest.raises(ValueError, match="seed"):
        G.train_cell("trs", "mnist5k", "cpu", seed=-1)


def test_a_rung_is_data(monkeypatch):
    """Adding a rung is adding an entry: a fake rung gets cells for its columns and seeds,
    with its training overrides, and no other code learns its name."""
    fake = G.Rung("fake", {"mnist": "mnist5k"}, {"epochs": 7}, n_test=64, seeds=(5, 6),
                  cw_n_test=16, worst_case_eps=(0.1,), targets=("1",), columns=("vanilla", "trs"),
                  column_seeds={"vanilla": (5,)}, column_train={"trs": {"batch_size": 32}})
    monkeypatch.setitem(G.RUNGS, "fake", fake)
    cells = G.cells_for(["1", "fig2"], "fake")
    trains = [c for c in cells if c.kind == "train"]
    assert sorted((c.method, dict(c.overrides)["seed"]) for c in trains) == \
        [("trs", 5), ("trs", 6), ("vanilla", 5)]
    assert {c.config().epochs for c in trains} == {7}
    assert {c.config().batch_size for c in trains if c.method == "trs"} == {32}
    evals = [c for c in cells if c.kind == "eval"]
    assert {c.suite for c in evals} == {"whitebox", "worst_case"}
    assert all(dict(c.settings)["n_test"] == 64 for c in evals)
    assert {r.key for c in evals if c.suite == "worst_case" for r in c.rows} == {"worst_case:linf/eps=0.1"}
    assert tables.cells_frame("1", "fake", records={})["column"].unique().tolist() == ["vanilla", "trs"]
    # every cell of the committed rungs is unchanged by the fake one
    assert G.cells_for(["1"], "cpu")[0].name == G.cells_for(["1"], "cpu")[0].name


def test_every_rung_describes_itself_and_builds_its_cells():
    for name, r in G.RUNGS.items():
        assert r.why, name
        for target in G.TARGETS:
            if r.runs(target):
                for seed in r.seeds:
                    G.table_cells(target, name, seed)  # validates every training config
        assert r.describe("mnist").startswith(r.dataset("mnist"))


def test_train_cell_names_match_the_trainers_run_folder():
    from trs_lib.train import default_run_dir
    tc = G.train_cell("trs_c0.5", "mnist5k", "cpu")
    assert tc.config().c == 0.5
    assert default_run_dir(tc.config(), root="/r").name == tc.name


# ---------------------------------------------------------------- the reader builds a table
def _fake_eval_record(cell, acc=0.5):
    rows = [{"key": r.key, "attack": r.attack, "accuracy": acc} for r in cell.rows]
    return {"kind": "eval", "config": {}, "metrics": {"rows": rows, "n_test": 500,
                                                          "clean_accuracy": 0.97},
            "provenance": provenance.provenance(1.0)}


def test_tables_read_records_and_say_not_run(tmp_path):
    cells = G.table_cells("1", "cpu")
    tc = cells["train"]["trs"]
    records.write_record(records.record_path(tc, tmp_path), "train", tc.config().to_dict(),
                         {"final": {"test_acc_ensemble": 0.98}}, 1.0)
    ec = cells["eval"][("trs", "whitebox")]
    rec = _fake_eval_record(ec, acc=0.9)
    atomic_write_json(records.record_path(ec, tmp_path), rec)
    recs = records.load_records(tmp_path, warn=pytest.fail)
    tab = P.table(1)
    frame = tables.cells_frame("1", "cpu", recs)
    trs = frame[(frame.column == "trs") & (frame.evaluation == "paper")]
    assert len(trs) == len(tab.rows) and (trs.ours == 90.0).all() and (trs.n_seeds == 1).all()
    assert trs[trs.row == "pgd10/eps=0.15"].iloc[0]["paper"] == 74.0
    assert frame[frame.column != "trs"].ours.isna().all()
    scales = tables.column_scales(1, "cpu", recs)
    label = dict(zip(tab.columns, tab.column_labels))
    row = scales.loc[label["trs"]]
    assert row["cells run"] == f"{len(tab.rows)} of {len(tab.rows)}" and row["clean accuracy"] == "97.0"
    assert "mnist5k" in row.iloc[0] and "500 test points" in row.iloc[0]
    others = scales.drop(index=label["trs"])
    assert (others["cells run"] == f"0 of {len(tab.rows)}").all() and (others.iloc[:, 0] == tables.NOT_RUN).all()
    # Table 2 (CIFAR-10) has no cells at rung cpu: every column says not run
    assert tables.column_scales(2, "cpu", recs)["cells run"].str.startswith("0 of").all()


# ---------------------------------------------------------------- the driver
class FakeRunner:
    """Stands in for papermill: writes what the notebooks would, counts the calls."""

    def __init__(self, fail_on=None, interrupt_on=None):
        self.calls, self.fail_on, self.interrupt_on = [], fail_on, interrupt_on

    def __call__(self, notebook, output, parameters, cwd):
        self.calls.append((notebook.name, parameters))
        if self.interrupt_on and self.interrupt_on in str(parameters):
            raise KeyboardInterrupt
        if self.fail_on and self.fail_on in str(parameters):
            raise RuntimeError("boom")
        output.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4,
                                      "nbformat_minor": 5}))
        if notebook.name == "train_trs.ipynb":
            from pathlib import Path
            from trs_lib.recipes import config_hash, make_config
            cfg = make_config(parameters["dataset"], parameters["method"],
                              **{k: parameters[k] for k in G.TRAIN_NOTEBOOK_PARAMS if k in parameters})
            out = Path(parameters["out_dir"])
            out.mkdir(parents=True, exist_ok=True)
            (out / "weights.safetensors").write_bytes(b"w")
            records.write_record(out / "record.json", "train", cfg.to_dict(),
                                 {"final": {}, "config_hash": config_hash(cfg)}, 1.0)
        else:
            from pathlib import Path
            rows = [{"key": r["key"], "accuracy": 0.5} for r in parameters["spec"]["rows"]]
            records.write_record(Path(parameters["out_json"]), "eval", {},
                                 {"rows": rows, "n_test": 5}, 1.0)


@pytest.fixture
def tiny_grid(tmp_path, monkeypatch):
    monkeypatch.setenv("TRS_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("TRS_RUNS_DIR", str(tmp_path / "runs"))
    cells = G.table_cells("fig2", "cpu")
    return [cells["train"]["vanilla"], cells["eval"][("vanilla", "transfer")],
            cells["train"]["trs"], cells["eval"][("trs", "transfer")]]


def test_driver_runs_skips_and_regenerates_only_a_deleted_record(tiny_grid, tmp_path):
    logs, runner = [], FakeRunner()
    s = R.reproduce(cells=tiny_grid, runner=runner, log=logs.append, progress=False)
    assert len(s["ran"]) == 4 and not s["failed"] and len(runner.calls) == 4
    for c in tiny_grid:
        assert records.record_path(c).is_file() and records.notebook_path(c).is_file()
    rec = records.read_record(records.record_path(tiny_grid[1]))
    assert rec["grid"]["train"] == tiny_grid[0].name and rec["config"]["eval"]["suite"] == "transfer"

    logs.clear()
    s = R.reproduce(cells=tiny_grid, runner=runner, log=logs.append, progress=False)
    assert s["ran"] == [] and len(runner.calls) == 4 and R.UP_TO_DATE in logs

    records.record_path(tiny_grid[3]).unlink()
    s = R.reproduce(cells=tiny_grid, runner=runner, log=logs.append, progress=False)
    assert s["ran"] == [tiny_grid[3].name] and len(runner.calls) == 5


def test_driver_resumes_after_interrupt_and_goes_on_after_a_failure(tiny_grid):
    runner = FakeRunner(interrupt_on="'method': 'trs'")
    with pytest.raises(KeyboardInterrupt):
        R.reproduce(cells=tiny_grid, runner=runner, log=lambda m: None, progress=False)
    done = [c for c, ok in R.plan(cells=tiny_grid) if ok]
    assert done == tiny_grid[:2]  # the vanilla column is kept, nothing half-written
    assert not records.record_path(tiny_grid[2]).exists()

    runner = FakeRunner(fail_on="'method': 'trs'")
    s = R.reproduce(cells=tiny_grid, runner=runner, log=lambda m: None, progress=False)
    assert list(s["failed"]) == [tiny_grid[2].name] and s["skipped"] == [tiny_grid[3].name]

    runner = FakeRunner()
    s = R.reproduce(cells=tiny_grid, runner=runner, log=lambda m: None, progress=False)
    assert s["ran"] == [c.name for c in tiny_grid[2:]]


def test_driver_retrains_missing_weights_without_touching_the_training_record(tiny_grid):
    runner = FakeRunner()
    R.reproduce(cells=tiny_grid[:2], runner=runner, log=lambda m: None, progress=False)
    before = records.record_path(tiny_grid[0]).read_text()
    (R.run_dir(tiny_grid[0]) / "weights.safetensors").unlink()
    records.record_path(tiny_grid[1]).unlink()
    R.reproduce(cells=tiny_grid[:2], runner=runner, log=lambda m: None, progress=False)
    assert [n for n, _ in runner.calls] == ["train_trs.ipynb", "evaluate.ipynb",
                                            "train_trs.ipynb", "evaluate.ipynb"]
    assert records.record_path(tiny_grid[0]).read_text() == before


def test_two_shards_run_every_cell_once_with_its_training(tiny_grid):
    """Shards 0/2 and 1/2 split the grid by training (each training with its evaluations),
    run disjoint cells that together are all of them, and the split does not move once cells are
    recorded; a bad shard is refused naming the value."""
    items = R.plan(cells=tiny_grid)
    a, b = R.shard_of(items, (0, 2)), R.shard_of(items, (1, 2))
    assert a and b and not a & b and a | b == {c.name for c in tiny_grid}
    for part in (a, b):
        for c in tiny_grid:
            if c.kind == "eval" and c.name in part:
                assert c.train.name in part
    r0, r1 = FakeRunner(), FakeRunner()
    s0 = R.reproduce(cells=tiny_grid, runner=r0, log=lambda m: None, progress=False, shard=(0, 2))
    assert set(s0["ran"]) == a and R.shard_of(R.plan(cells=tiny_grid), (1, 2)) == b
    s1 = R.reproduce(cells=tiny_grid, runner=r1, log=lambda m: None, progress=False, shard=(1, 2))
    assert set(s1["ran"]) == b and len(r0.calls) + len(r1.calls) == len(tiny_grid)
    assert R.reproduce(cells=tiny_grid, runner=r1, log=lambda m: None, progress=False)["ran"] == []
    for bad in ("2/2", "1", "a/b", "0/0"):
        with pytest.raises(ValueError, match=f"--shard {bad!r}|shard"):
            R.parse_shard(bad)


def test_cli_dry_run_lists_cells(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TRS_RESULTS_DIR", str(tmp_path))
    assert R.main(["--tables", "fig2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    # vanilla and TRS, 3 seeds each: training, transfer matrices, smoothness
    assert "would run train" in out and "18 to run" in out
    with pytest.raises(SystemExit):
        R.main(["--tables", "9"])


# ---------------------------------------------------------------- the committed records
def test_committed_records_are_readable_and_belong_to_the_grid():
    """Every record under results/ parses, names a cell of a rung's grid, sits beside its
    executed notebook, and every evaluation's training has a record too. (Records keep the
    ``grid.scale`` name they were written under: the ResNet-20 pilot's say ``cpu``, from before
    it was the rung ``cpu-r20-2ep``; the cell name, a hash of what the cell computes, decides.)"""
    from trs_lib.paths import results_dir
    messages = []
    recs = records.load_records(results_dir(), warn=messages.append)
    assert not messages, messages
    cells = {f"{c.kind}/{c.name}" for r in G.RUNGS if r != "gpu" for c in G.cells_for(G.TARGETS, r)}
    for key, rec in recs.items():
        kind, name = key.split("/", 1)
        assert "grid" in rec, f"{key}: not written by trs_lib.companion.reproduce"
        if key not in cells:
            # records of the grid before the regrid are all marked allow_dirty; any other
            # record must belong to a rung's grid
            assert provenance.is_dirty(rec), f"{key}: not a cell of any rung (stale record?)"
            continue
        assert (results_dir() / kind / f"{name}.ipynb").is_file(), f"{key}: executed notebook missing"
        if kind == "eval":
            assert f"train/{rec['grid']['train']}" in recs, f"{key}: its training has no record"


# ---------------------------------------------------------------- seeds and intervals (issue 16)
def _seeded_eval_record(cell, p, n=200, with_correct=True, seed=0):
    """A record of ``cell`` whose every row has accuracy ~p on n points (and its 'correct')."""
    import numpy as np
    rng = np.random.default_rng(seed)
    rows = []
    for r in cell.rows:
        c = "".join("1" if v else "0" for v in rng.random(n) < p)
        entry = {"key": r.key, "attack": r.attack, "accuracy": c.count("1") / n}
        if with_correct:
            entry["correct"] = c
        rows.append(entry)
    return {"kind": "eval", "config": {}, "metrics": {"rows": rows, "n_test": n},
            "provenance": {**provenance.provenance(1.0), "git_commit": "abc"}}


def test_cells_frame_means_over_seeds_with_intervals_and_flags_old_records():
    recs = {}
    for seed in G.seeds_for("1", "cpu"):
        cells = G.table_cells("1", "cpu", seed)
        for part in ("whitebox", "worst_case"):
            ec = cells["eval"][("trs", part)]
            recs[f"eval/{ec.name}"] = _seeded_eval_record(ec, 0.8 if part == "whitebox" else 0.6,
                                                          seed=seed)
        ec = cells["eval"][("adp", "whitebox")]   # an old-format record: no per-point results
        recs[f"eval/{ec.name}"] = _seeded_eval_record(ec, 0.5, with_correct=False, seed=seed)
        recs[f"train/{ec.train.name}"] = {"provenance": {"git_commit": "abc-dirty",
                                                         "allow_dirty": True}}
    f = tables.cells_frame("1", "cpu", recs)
    assert set(f.evaluation) == {"paper", "worst_case"}
    assert {"trs_published", "gal", "dverge"} <= set(f.column)  # the new columns, paper None
    assert f[f.column == "gal"].paper.isna().all()
    one = f[(f.column == "trs") & (f.row == "pgd10/eps=0.15") & (f.evaluation == "paper")].iloc[0]
    assert one.n_seeds == 3 and one.n_points == 200 and one.lo < one.ours < one.hi
    assert 74 < one.ours < 86 and one.hi - one.lo < 15 and one.paper == 74.0 and not one.dirty
    assert one.interval == "seed-and-point bootstrap (at least Wilson's width)"
    wc = f[(f.column == "trs") & (f.row == "pgd10/eps=0.15") & (f.evaluation == "worst_case")].iloc[0]
    assert 54 < wc.ours < 66
    cw = f[(f.column == "trs") & (f.row == "cw/c=10") & (f.evaluation == "worst_case")].iloc[0]
    assert cw.ours is None or cw.ours != cw.ours  # CW has no budget, so no worst case
    old = f[(f.column == "adp") & (f.row == "pgd10/eps=0.15") & (f.evaluation == "paper")].iloc[0]
    assert "no per-point results" in old.interval and old.lo < old.ours < old.hi and old.dirty
    missing = f[(f.column == "ckae") & (f.evaluation == "paper")]
    assert missing.ours.isna().all() and (missing.n_seeds == 0).all()
