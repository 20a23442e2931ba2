"""The driver on a real Slurm: a tiny grid through ``--executor slurm`` (issue 14).

Needs the single-node cluster of ``.ci/slurm_up.sh`` (CI starts it; it writes
``$TRS_SLURM_DIR/slurm.env``, default /tmp/trs-slurm). Without it the tests skip and say why.
Two cells: one ``mnist5k`` training (2 members, 3 epochs) and one evaluation after it
(``afterok``). The training is preempted after its first epoch checkpoint (SIGTERM, which also
stops the notebook's kernel, then the requeue signal 3 s later); submitit requeues it
and it resumes from that checkpoint. About a minute on two cores.
"""
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from trs_lib.companion import executors as X
from trs_lib.companion import grid as G
from trs_lib import paper_numbers as P
from trs_lib.companion import reproduce as R
from trs_lib import records
from trs_lib.companion import tables

SLURM_DIR = Path(os.environ.get("TRS_SLURM_DIR", "/tmp/trs-slurm"))


def _slurm_conf() -> str:
    """The cluster's config, or skip with the reason."""
    why = SLURM_DIR / "unavailable"
    if why.is_file():
        pytest.skip(f"Slurm could not start on this machine: {why.read_text().strip()}")
    conf = os.environ.get("SLURM_CONF")
    env = SLURM_DIR / "slurm.env"
    if env.is_file():
        conf = env.read_text().strip().removeprefix("export SLURM_CONF=")
    if not conf or shutil.which("sbatch") is None:
        pytest.skip("no Slurm cluster here: run .ci/slurm_up.sh first (CI's .ci/run does)")
    res = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                         env={**os.environ, "SLURM_CONF": conf}, timeout=30)
    if res.returncode != 0 or not {"idle", "mixed", "allocated"} & set(res.stdout.split()):
        pytest.skip(f"Slurm is not answering ({conf}): {res.stderr.strip() or res.stdout.strip()}")
    return conf


@pytest.fixture
def slurm(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", _slurm_conf())
    monkeypatch.setenv("TRS_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("TRS_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return X.SlurmSettings(partition="debug", cpus_per_job=1, time="10:00")


def _times(job_ids) -> dict:
    out = subprocess.run(["squeue", "-h", "-t", "all", "-j", ",".join(job_ids), "-o", "%i|%S|%e"],
                         capture_output=True, text=True, timeout=30).stdout
    return {i: (s, e) for i, s, e in (ln.split("|") for ln in out.split())}


def _tail(stdout_log, n=30) -> str:
    """The last lines of a job's stderr (beside its stdout log), for a failure message."""
    err = Path(str(stdout_log).removesuffix(".out") + ".err")
    return "\n".join(err.read_text(errors="replace").splitlines()[-n:]) if err.is_file() else ""


def test_tiny_grid_on_slurm_with_dependency_resume_and_idempotence(slurm, tmp_path):
    import submitit
    tc = G.TrainCell("mnist5k", "vanilla", (("epochs", 3), ("num_models", 2)))
    ec = G.EvalCell(tc, "whitebox", (P.Row("fgsm", "eps", 0.1),),
                    (("cw_steps", 5), ("n_test", 20), ("restarts", 1), ("seed", 0)))
    logs = []
    s = R.reproduce(cells=[tc, ec], executor="slurm", settings=slurm, log=logs.append,
                    progress=False)
    train_id, eval_id = s["submitted"][tc.name], s["submitted"][ec.name]
    assert any(f"after job {train_id}" in m for m in logs), logs

    # rerun at once: the jobs are pending or running, nothing is submitted twice
    s2 = R.reproduce(cells=[tc, ec], executor="slurm", settings=slurm, log=logs.append,
                     progress=False)
    assert s2["submitted"] == {} and s2["running"] == {tc.name: train_id, ec.name: eval_id}

    # preempt the training after its first epoch: submitit requeues it, it resumes
    ckpt = Path(R.run_dir(tc)) / "ckpt-e0001.json"
    t0 = time.time()
    while not ckpt.exists() and time.time() - t0 < 120:
        time.sleep(0.3)
    assert ckpt.exists(), f"no checkpoint after 120 s; log: {s['logs'][tc.name]}"
    assert not records.record_path(tc).exists(), "the training finished before the preemption"
    # As submitit's SlurmJob._interrupt: SIGTERM, then the requeue signal (USR2), here 3 s apart.
    # Slurm sends SIGTERM to every process of the step, the notebook's kernel included; the job
    # must still be requeued, not end as failed, when its kernel's death is seen first.
    subprocess.run(["scancel", train_id, "--signal", "SIGTERM"], check=True, timeout=30)
    time.sleep(3)
    usr = subprocess.run(["scancel", train_id, "--signal",
                          submitit.slurm.slurm.SlurmJobEnvironment.USR_SIG],
                         capture_output=True, text=True, timeout=30)
    assert usr.returncode == 0, (f"the job ended within 3 s of SIGTERM, before its requeue signal "
                                 f"({usr.stderr.strip()}):\n{_tail(s['logs'][tc.name])}")
    t0 = time.time()
    while time.time() - t0 < 30:  # Slurm delays a requeued job's start; the test does not wait
        state = X._slurm_states([train_id]).get(train_id)
        if state == "PENDING":
            subprocess.run(["scontrol", "update", f"JobId={train_id}", "StartTime=now"],
                           capture_output=True, timeout=30)
            break
        time.sleep(0.5)

    s3 = R.reproduce(cells=[tc, ec], executor="slurm", settings=slurm, log=logs.append,
                     progress=False, wait=True, poll_s=1)
    assert s3["submitted"] == {} and sorted(s3["ran"]) == sorted([tc.name, ec.name]), (
        "\n".join(logs) + "\n--- the training job's stderr:\n" + _tail(s["logs"][tc.name]))
    for c in (tc, ec):
        assert records.read_record(records.record_path(c))["grid"]["cell"] == c.name
        assert records.notebook_path(c).is_file()
    assert "resuming" in records.notebook_path(tc).read_text(), "the training did not resume"
    # dependency order: the evaluation started after the training ended
    times = _times([train_id, eval_id])
    if train_id in times and eval_id in times:
        assert times[eval_id][0] >= times[train_id][1], times
    assert (records.record_path(ec).stat().st_mtime > records.record_path(tc).stat().st_mtime)

    logs.clear()
    R.reproduce(cells=[tc, ec], executor="slurm", settings=slurm, log=logs.append, progress=False)
    assert R.UP_TO_DATE in logs


def test_bad_partition_and_time_limit_on_a_real_cluster(slurm, capsys):
    with pytest.raises(X.ExecutorError, match=r"unknown partition 'nope'.*'debug'"):
        X.check_cluster(X.SlurmSettings(partition="nope"))
    with pytest.raises(SystemExit):
        R.main(["--tables", "fig2", "--executor", "slurm", "--partition", "nope"])
    assert "unknown partition 'nope'" in capsys.readouterr().err
    assert not (Path(os.environ["TRS_RUNS_DIR"]) / "slurm").exists()  # nothing submitted
    with pytest.raises(SystemExit):
        R.main(["--tables", "fig2", "--executor", "slurm", "--gpus-per-job", "1"])
    assert "refuses these job settings" in capsys.readouterr().err
