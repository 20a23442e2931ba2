"""The driver's executors (trs_lib.companion.executors): settings and their errors, the submission logic
against a fake Slurm, and the real job path through submitit's local executor."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from trs_lib.companion import executors as X
from trs_lib.companion import grid as G
from trs_lib import paper_numbers as P
from trs_lib.companion import reproduce as R
from trs_lib import records
from trs_lib.companion import tables


# ---------------------------------------------------------------- settings and bad input
@pytest.mark.parametrize("text,minutes", [("30", 30), ("90", 90), ("1:30", 2), ("4:00:00", 240),
                                          ("2-00", 2880), ("2-12:30", 3630), ("1-0:0:1", 1441)])
def test_time_limits_in_slurms_formats(text, minutes):
    assert X.parse_time(text) == minutes


@pytest.mark.parametrize("bad", ["0", "abc", "1:60:00", "2-25", "", "-5", "1:2:3:4", "12h"])
def test_invalid_time_limit_names_the_value_and_the_formats(bad):
    with pytest.raises(X.ExecutorError, match=r"invalid time limit .*HH:MM:SS"):
        X.parse_time(bad)


def test_memory_extra_options_and_settings():
    assert X.check_mem("16g") == "16G" and X.check_mem("4000MB") == "4000M"
    with pytest.raises(X.ExecutorError, match="invalid memory '16 GB'"):
        X.check_mem("16 GB")
    assert X.parse_extra(["account=proj", "--qos=high", "exclusive"]) == {
        "account": "proj", "qos": "high", "exclusive": True}
    with pytest.raises(X.ExecutorError, match="sets this option itself"):
        X.parse_extra(["dependency=afterok:1"])
    with pytest.raises(X.ExecutorError, match="invalid --slurm-extra"):
        X.parse_extra(["Bad Key=1"])
    s = X.SlurmSettings(partition="gpu", gpus_per_job=1, time="12:00:00", mem="32G",
                        extra={"account": "proj"})
    flags = s.sbatch_flags()
    assert {"--partition=gpu", "--gpus-per-node=1", "--time=720", "--mem=32G",
            "--account=proj", "--kill-on-invalid-dep=yes"} <= set(flags)
    with pytest.raises(X.ExecutorError, match="invalid gpus_per_job -1"):
        X.SlurmSettings(gpus_per_job=-1)
    with pytest.raises(X.ExecutorError, match="invalid time limit"):
        X.SlurmSettings(time="soon")


def test_config_file(tmp_path):
    f = tmp_path / "slurm.toml"
    f.write_text('[slurm]\npartition = "gpu"\ngpus_per_job = 1\ntime = "6:00:00"\n'
                 '[slurm.extra]\naccount = "proj"\n')
    conf = X.load_config(f)
    assert conf == {"partition": "gpu", "gpus_per_job": 1, "time": "6:00:00",
                    "extra": {"account": "proj"}}
    assert X.SlurmSettings(**conf).partition == "gpu"
    f.write_text('partion = "gpu"\n')
    with pytest.raises(X.ExecutorError, match=r"unknown keys \['partion'\]"):
        X.load_config(f)
    with pytest.raises(X.ExecutorError, match="does not exist"):
        X.load_config(tmp_path / "nope.toml")


def _fake_run(partitions="debug\ngpu\n", test_only_rc=0, test_only_err=""):
    calls = []

    def run(cmd, **kw):
        calls.append(cmd)
        if cmd[0] == "sinfo":
            return subprocess.CompletedProcess(cmd, 0, partitions, "")
        return subprocess.CompletedProcess(cmd, test_only_rc, "", test_only_err)
    return run, calls


def test_cluster_check_errors_before_submitting():
    settings = X.SlurmSettings(partition="gpu")
    with pytest.raises(X.ExecutorError, match="sbatch, squeue, sinfo are not on PATH"):
        X.check_cluster(settings, which=lambda c: None)
    run, calls = _fake_run()
    X.check_cluster(settings, which=lambda c: "/usr/bin/" + c, run=run)
    assert calls[1][:2] == ["sbatch", "--test-only"] and "--partition=gpu" in calls[1]
    run, _ = _fake_run(partitions="debug\n")
    with pytest.raises(X.ExecutorError, match=r"unknown partition 'gpu'.*\['debug'\]"):
        X.check_cluster(settings, which=lambda c: "/usr/bin/" + c, run=run)
    run, _ = _fake_run(test_only_rc=1, test_only_err="sbatch: error: Requested time limit is invalid")
    with pytest.raises(X.ExecutorError, match="refuses these job settings.*time limit is invalid"):
        X.check_cluster(settings, which=lambda c: "/usr/bin/" + c, run=run)


def test_cli_bad_input_is_one_clear_error(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TRS_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("TRS_RUNS_DIR", str(tmp_path / "runs"))
    with pytest.raises(SystemExit):
        R.main(["--tables", "fig2", "--executor", "kubernetes"])
    assert "invalid choice: 'kubernetes'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        R.main(["--tables", "fig2", "--executor", "slurm", "--time", "1:75:00"])
    assert "invalid time limit '1:75:00'" in capsys.readouterr().err
    monkeypatch.setenv("PATH", str(tmp_path))  # no Slurm commands here
    with pytest.raises(SystemExit):
        R.main(["--tables", "fig2", "--executor", "slurm"])
    assert "sbatch" in capsys.readouterr().err and not (tmp_path / "runs").exists()
    with pytest.raises(X.ExecutorError, match="valid executors"):
        R.reproduce(cells=[], executor="nope")


# ---------------------------------------------------------------- submission logic, fake Slurm
class FakeSlurm:
    """Stands in for submitit + squeue: numbers jobs, remembers dependencies and states."""

    dependencies = True

    def __init__(self, folder):
        self.folder, self.next_id, self.submissions, self.state = Path(folder), 100, [], {}

    def submit(self, job_name, calls, dependency=None):
        array = self.next_id
        self.next_id += 1
        jobs = []
        for i, call in enumerate(calls):
            jid = f"{array}_{i}"
            self.state[jid] = "PENDING"
            jobs.append(_FakeJob(jid, self.folder))
            self.submissions.append((jid, call[0].name, dependency))
        return jobs

    def states(self, job_ids):
        return {j: self.state[j] for j in job_ids if j in self.state}


class _FakeJob:
    def __init__(self, jid, folder):
        from submitit.core.utils import JobPaths
        self.job_id, self.paths = jid, JobPaths(folder, jid, 0)


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    monkeypatch.setenv("TRS_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("TRS_RUNS_DIR", str(tmp_path / "runs"))
    slurm = {}

    def backend(executor, folder, settings):
        slurm.setdefault("it", FakeSlurm(folder))
        return slurm["it"]
    monkeypatch.setattr(X, "_backend", backend)
    monkeypatch.setattr(X, "check_cluster", lambda settings: None)
    cells = G.table_cells("fig2", "cpu")
    grid = [cells["train"]["vanilla"], cells["eval"][("vanilla", "transfer")],
            cells["train"]["trs"], cells["eval"][("trs", "transfer")]]
    return slurm, grid


def test_slurm_submission_dependencies_and_no_double_submission(fake_slurm):
    slurm, grid = fake_slurm
    logs = []
    s = R.reproduce(cells=grid, executor="slurm", log=logs.append, progress=False)
    fake = slurm["it"]
    assert len(s["submitted"]) == 4 and not s["running"]
    sub = {name: (jid, dep) for jid, name, dep in fake.submissions}
    # trainings: one array, no dependency; each evaluation after its own training (afterok)
    assert sub[grid[0].name][0].split("_")[0] == sub[grid[2].name][0].split("_")[0]
    assert sub[grid[0].name][1] is None and sub[grid[2].name][1] is None
    assert sub[grid[1].name][1] == sub[grid[0].name][0]
    assert sub[grid[3].name][1] == sub[grid[2].name][0]
    assert any("log " in m and "_log.out" in m for m in logs)
    ledger = json.loads((Path(R.runs_dir()) / "slurm" / "ledger.json").read_text())["jobs"]
    assert set(ledger) == {c.name for c in grid}

    # rerun while the jobs are pending or running: nothing new is submitted
    fake.state[sub[grid[0].name][0]] = "RUNNING"
    logs.clear()
    s = R.reproduce(cells=grid, executor="slurm", log=logs.append, progress=False)
    assert s["submitted"] == {} and len(s["running"]) == 4 and len(fake.submissions) == 4
    assert any(m.startswith("nothing submitted") for m in logs)


def test_two_drivers_at_once_submit_each_cell_once(fake_slurm):
    """Two drivers started together (threads, each with its own lock descriptor): the second
    waits on the ledger's lock while the first is in a slow squeue, then finds the first's jobs
    live and submits nothing; without the lock both would submit all four cells."""
    import threading
    import time
    slurm, grid = fake_slurm
    fake = FakeSlurm(Path(R.runs_dir()) / "slurm" / "jobs" / "%j")
    slow_states = fake.states

    def states(job_ids):
        time.sleep(0.5)   # squeue takes a while
        return slow_states(job_ids)
    fake.states = states
    slurm["it"] = fake
    out, logs = [], []

    def driver():
        out.append(R.reproduce(cells=grid, executor="slurm", log=logs.append, progress=False))
    threads = [threading.Thread(target=driver) for _ in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.1)
    for t in threads:
        t.join(30)
    assert len(fake.submissions) == 4 and len({name for _, name, _ in fake.submissions}) == 4
    assert sorted(len(s["submitted"]) for s in out) == [0, 4]
    assert any("waiting for another driver" in m for m in logs)
    ledger = json.loads((Path(R.runs_dir()) / "slurm" / "ledger.json").read_text())["jobs"]
    assert set(ledger) == {c.name for c in grid}


def test_ledger_lock_names_its_holder_and_is_freed_when_the_holder_dies(tmp_path):
    ledger = tmp_path / "slurm" / "ledger.json"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from trs_lib.companion import executors as X\n"
        f"with X.ledger_lock({str(ledger)!r}, log=lambda m: None):\n"
        "    print('locked', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(X.ExecutorError, match=rf"locked by another driver \(pid {holder.pid} on "):
            with X.ledger_lock(ledger, timeout_s=0.3, poll_s=0.05, log=lambda m: None):
                pass
    finally:
        holder.kill()
        holder.wait()
    with X.ledger_lock(ledger, timeout_s=0.0, log=lambda m: None) as lock:  # the OS freed it
        assert lock == ledger.with_suffix(".lock") and f"pid {__import__('os').getpid()}" in lock.read_text()
    with pytest.raises(X.ExecutorError, match="timeout_s=-1 must be a number >= 0"):
        with X.ledger_lock(ledger, timeout_s=-1):
            pass


def test_slurm_failed_job_is_reported_and_resubmitted_after_its_training(fake_slurm):
    slurm, grid = fake_slurm
    R.reproduce(cells=grid[:2], executor="slurm", log=lambda m: None, progress=False)
    fake = slurm["it"]
    train_id = fake.submissions[0][0]
    # the training failed: its job ended, its result file holds the error; the eval never ran
    from submitit.core.utils import JobPaths, cloudpickle_dump
    paths = JobPaths(fake.folder, train_id, 0)
    paths.folder.mkdir(parents=True, exist_ok=True)
    cloudpickle_dump(("error", "Traceback ...\nRuntimeError: CUDA out of memory"), paths.result_pickle)
    fake.state[train_id] = "FAILED"
    fake.state[fake.submissions[1][0]] = "CANCELLED"
    summary = {"submitted": {}, "running": {}, "ran": [], "failed": {}, "skipped": [], "logs": {}}
    ledger = X.Ledger(Path(R.runs_dir()) / "slurm" / "ledger.json")
    logs = []
    X.finish(grid[:2], ledger, Path(records.record_path(grid[0])).parents[1], summary, logs.append)
    err = summary["failed"][grid[0].name]
    assert "CUDA out of memory" in err and str(paths.stdout) in err
    assert summary["skipped"] == [grid[1].name]
    assert any(grid[0].name in m and "FAILED" in m for m in logs)
    # the next run says what happened and submits both again, the eval after the new training
    logs.clear()
    s = R.reproduce(cells=grid[:2], executor="slurm", log=logs.append, progress=False)
    assert any("ended without a record" in m and "CUDA out of memory" in m and grid[0].name in m
               for m in logs)
    assert len(s["submitted"]) == 2
    (new_train, _, _), (_, _, dep) = fake.submissions[2], fake.submissions[3]
    assert dep == new_train != train_id


def test_recorded_cells_are_never_submitted(fake_slurm):
    slurm, grid = fake_slurm
    tc = grid[0]
    records.write_record(records.record_path(tc), "train", tc.config().to_dict(), {"final": {}}, 1.0)
    s = R.reproduce(cells=grid[:2], executor="slurm", log=lambda m: None, progress=False)
    assert list(s["submitted"]) == [grid[1].name] and s["done"] == [tc.name]
    assert slurm["it"].submissions[0][2] is None  # its training is done: no dependency
    records.write_record(records.record_path(grid[1]), "eval", {}, {"rows": []}, 1.0)
    logs = []
    R.reproduce(cells=grid[:2], executor="slurm", log=logs.append, progress=False)
    assert R.UP_TO_DATE in logs and len(slurm["it"].submissions) == 1


# ---------------------------------------------------------------- real jobs, submitit's local executor
def fake_runner(notebook, output, parameters, cwd):
    """Writes what the notebooks would (in the job's process); fails on a training of 'cossim'."""
    output.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    if notebook.name == "train_trs.ipynb":
        if parameters["method"] == "cossim":
            raise RuntimeError("boom in the cossim training")
        from trs_lib.recipes import config_hash, make_config
        cfg = make_config(parameters["dataset"], parameters["method"],
                          **{k: parameters[k] for k in G.TRAIN_NOTEBOOK_PARAMS if k in parameters})
        out = Path(parameters["out_dir"])
        out.mkdir(parents=True, exist_ok=True)
        (out / "weights.safetensors").write_bytes(b"w")
        records.write_record(out / "record.json", "train", cfg.to_dict(),
                             {"final": {}, "config_hash": config_hash(cfg)}, 1.0)
    else:
        rows = [{"key": r["key"], "accuracy": 0.5} for r in parameters["spec"]["rows"]]
        records.write_record(Path(parameters["out_json"]), "eval", {},
                             {"rows": rows, "n_test": 5}, 1.0)


def test_submitit_local_executor_runs_the_jobs(tmp_path, monkeypatch):
    import cloudpickle
    monkeypatch.setenv("TRS_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("TRS_RUNS_DIR", str(tmp_path / "runs"))
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the job imports no tests/
    try:
        row = P.Row("fgsm", "eps", 0.1)
        tc_ok = G.TrainCell("mnist5k", "vanilla", (("epochs", 1), ("num_models", 2)))
        tc_bad = G.TrainCell("mnist5k", "cossim", (("epochs", 1), ("num_models", 2)))
        ec_ok = G.EvalCell(tc_ok, "whitebox", (row,), (("n_test", 5),))
        ec_bad = G.EvalCell(tc_bad, "whitebox", (row,), (("n_test", 5),))
        cells = [tc_ok, ec_ok, tc_bad, ec_bad]
        logs = []
        s = R.reproduce(cells=cells, executor="submitit-local", runner=fake_runner,
                        log=logs.append, progress=False, poll_s=0.2)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert sorted(s["ran"]) == sorted([tc_ok.name, ec_ok.name]), logs
    assert records.record_path(ec_ok).is_file() and records.notebook_path(ec_ok).is_file()
    rec = records.read_record(records.record_path(ec_ok))
    assert rec["grid"]["train"] == tc_ok.name
    assert list(s["failed"]) == [tc_bad.name] and "boom in the cossim training" in s["failed"][tc_bad.name]
    assert "_log.out" in s["failed"][tc_bad.name] and s["skipped"] == [ec_bad.name]
    assert not records.record_path(tc_bad).exists()


def _preempted_cell(send):
    """A cell whose kernel dies of the SIGTERM this process gets (as under a Slurm preemption)."""
    def fn():
        for sig in send:
            os.kill(os.getpid(), sig)
        raise RuntimeError("Kernel died")
    return fn


def test_a_failure_after_sigterm_waits_for_the_requeue_signal():
    def requeue(signum, frame):  # stands for submitit's USR2 handler: requeue, then exit
        raise SystemExit("requeued")
    old = signal.signal(signal.SIGUSR2, requeue)
    try:
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGUSR2))
        timer.start()
        t0 = time.monotonic()
        with pytest.raises(SystemExit, match="requeued"):
            X.run_after_sigterm_waits(_preempted_cell([signal.SIGTERM]), grace_s=30,
                                      log=lambda m: None)
        assert time.monotonic() - t0 < 10
        timer.join()
    finally:
        signal.signal(signal.SIGUSR2, old)
    # the SIGTERM handler is the one from before (here the default) again
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_a_failure_without_sigterm_is_raised_at_once_with_one_after_the_grace():
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="Kernel died"):
        X.run_after_sigterm_waits(_preempted_cell([]), grace_s=30, log=lambda m: None)
    assert time.monotonic() - t0 < 5
    said = []
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="Kernel died"):
        X.run_after_sigterm_waits(_preempted_cell([signal.SIGTERM]), grace_s=0.5, log=said.append)
    assert 0.5 <= time.monotonic() - t0 < 5 and "SIGTERM" in said[0]
    assert X.run_after_sigterm_waits(lambda: 7, grace_s=30) == 7
