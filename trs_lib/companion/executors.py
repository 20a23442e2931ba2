"""Where the grid's cells run: this process, or jobs of a Slurm cluster through submitit.

``python -m trs_lib.reproduce --executor local`` runs the cells one after another in the driver's
process. ``--executor slurm`` hands every missing cell to Slurm as a `submitit` job: the
trainings as one job array, the evaluations of each training as one array that starts after its
training succeeded (``--dependency=afterok``), so a table is one submission and the driver exits
once it has submitted (``--wait`` waits for the jobs and prints their summary). Every job runs
:func:`trs_lib.companion.reproduce.run_cell`, the same code as the local driver: it writes its own record
atomically, and its executed notebook beside it.

Idempotence on a cluster. Submitted jobs are kept in a ledger, ``runs/slurm/ledger.json`` (cell
name -> job id, log paths). Before submitting, the driver asks Slurm (``squeue``) for the state
of every job in the ledger: a cell with a record is done and never submitted; a cell whose job is
pending or running is left alone; a cell whose job ended without a record failed (its error and
log path go to the summary) and is submitted again. The read-ask-submit-save sequence holds a
lock on ``runs/slurm/ledger.lock`` (:func:`ledger_lock`), so two drivers started together submit
each cell once. A training preempted or stopped at its time
limit is requeued by submitit (``checkpoint``), and resumes from its last epoch checkpoint under
``runs/``, as a rerun of the local driver does.

``--executor submitit-local`` runs the same jobs as local subprocesses with submitit's
``LocalExecutor`` (no Slurm needed; the driver waits for each training before submitting its
evaluations): the tests use it on machines without Slurm.
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import getpass
import os
import socket
import signal
import subprocess
import threading
import time
from pathlib import Path

from ..atomic import CorruptFileError, atomic_write_json, read_json
from ..paths import project_root, results_dir, runs_dir
from ..records import notebook_path, record_path
from .slurm_settings import (ExecutorError, SlurmSettings, check_cluster, check_mem, load_config,
                             parse_extra, parse_time)

__all__ = ["EXECUTORS", "SlurmSettings", "parse_time", "check_mem", "parse_extra", "load_config",
           "check_cluster", "CellJob", "run_after_sigterm_waits", "Ledger", "ledger_lock", "submit",
           "LIVE_STATES", "ExecutorError"]

EXECUTORS = ("local", "slurm", "submitit-local")
# Slurm job states in which a job still holds its cell (it will run, runs, or is being requeued).
LIVE_STATES = frozenset({"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED",
                         "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "SUSPENDED", "STAGE_OUT",
                         "SIGNALING", "RESV_DEL_HOLD", "STOPPED"})
# ---------------------------------------------------------------------- the job
try:
    from submitit.helpers import Checkpointable as _Checkpointable
except ImportError:  # pragma: no cover - submitit is in requirements.txt
    _Checkpointable = object


class CellJob(_Checkpointable):
    """One grid cell as a submitit job: ``run_cell`` (the driver's cell runner,
    :func:`trs_lib.companion.reproduce.run_cell`, passed in by the driver) in the project.

    On preemption or at the time limit submitit calls ``checkpoint`` (inherited), which
    requeues the same call; a training then resumes from its last epoch checkpoint in
    ``runs/<cell>/``, an evaluation starts again. A notebook that fails after a SIGTERM is given
    time for that requeue (:func:`run_after_sigterm_waits`).
    """

    def __call__(self, cell, rung_name, device, project, results_root, runs_root, runner=None,
                 run_cell=None):
        if run_cell is None:
            raise ExecutorError("CellJob needs the driver's cell runner (run_cell)")
        os.chdir(project)
        os.environ["TRS_RESULTS_DIR"] = str(results_root)
        os.environ["TRS_RUNS_DIR"] = str(runs_root)

        def log(m):
            print(m, flush=True)
        path = run_after_sigterm_waits(
            lambda: run_cell(cell, runner, Path(results_root), device, rung_name, log=log),
            log=log)
        print(f"record: {path}", flush=True)
        return str(path)


# Seconds a job whose notebook failed after a SIGTERM waits for the requeue signal.
SIGTERM_GRACE_S = 60.0


def run_after_sigterm_waits(fn, grace_s: float = SIGTERM_GRACE_S, log=print):
    """``fn()``; if it raises after this process got SIGTERM, wait up to ``grace_s`` seconds
    before raising.

    Slurm signals every process of a job step, so a preemption's SIGTERM also stops the
    notebook's kernel. papermill then raises (dead kernel) while submitit's handler for the
    signal that follows (``USR2``: checkpoint and requeue) may not have run yet; the job would end
    as failed and not be requeued. After a SIGTERM the failure is the preemption's: the wait lets
    that handler requeue the job (it exits the process), or Slurm's kill end it. Without a SIGTERM,
    or where handlers cannot be set (not the main thread, or a SIGTERM handler installed outside
    Python), ``fn``'s error is raised at once.
    """
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or previous is None:
        return fn()  # no handler can be set, or the one there could not be put back
    got = []

    def on_term(signum, frame):
        got.append(signum)
        if callable(previous):  # submitit's handler logs and ignores it
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_term)
    try:
        return fn()
    except Exception:
        if got:
            log(f"the cell failed after a SIGTERM (preemption): waiting up to {grace_s:.0f} s "
                "for the requeue signal before reporting the failure")
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline:  # signal handlers run between the sleeps
                time.sleep(0.2)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---------------------------------------------------------------------- the ledger
class Ledger:
    """``runs/slurm/ledger.json``: the jobs the driver submitted, by cell name (atomic writes)."""

    def __init__(self, path):
        self.path = Path(path)
        self.jobs = {}
        if self.path.is_file():
            try:
                self.jobs = read_json(self.path).get("jobs", {})
            except (CorruptFileError, ValueError):
                self.jobs = {}  # unreadable: treated as empty (the runbook: scancel the grid's jobs first)

    def save(self):
        atomic_write_json(self.path, {"jobs": self.jobs})

    def get(self, name):
        return self.jobs.get(name)

    def add(self, name, entry):
        self.jobs[name] = entry


@contextlib.contextmanager
def ledger_lock(ledger_path, timeout_s: float = 600.0, poll_s: float = 1.0, log=print):
    """Hold an exclusive lock on ``<ledger>.lock`` (``flock``) for a driver's read-ask-submit-save.

    Without it two drivers started together (two tables in two shells, or a resubmission while a
    slow ``squeue`` answers) would both find a cell without a live job, both submit it, and the
    later save would drop the earlier driver's jobs from the ledger. The lock file names its
    holder. The operating system releases the lock when its process ends, so a killed driver
    leaves none behind. Raises :class:`ExecutorError` after ``timeout_s`` seconds of waiting.
    """
    if not (isinstance(timeout_s, (int, float)) and not isinstance(timeout_s, bool) and timeout_s >= 0):
        raise ExecutorError(f"lock timeout_s={timeout_s!r} must be a number >= 0")
    lock = Path(ledger_path).with_suffix(".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline, told = time.monotonic() + timeout_s, False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "unknown"
                if time.monotonic() >= deadline:
                    raise ExecutorError(
                        f"the Slurm ledger is locked by another driver ({holder}; lock file {lock}) "
                        f"after waiting {timeout_s:g} s; let it finish submitting and rerun") from None
                if not told:
                    log(f"waiting for another driver to finish submitting ({holder}) ...")
                    told = True
                time.sleep(poll_s)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {_now()}".encode(), 0)
        yield lock
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _slurm_states(job_ids, run=subprocess.run) -> dict:
    """``{job id: state}`` for the given ids that Slurm still knows (``squeue`` shows pending,
    running and recently ended jobs; array tasks one per line)."""
    if not job_ids:
        return {}
    res = run(["squeue", "-h", "-r", "-t", "all", "-u", getpass.getuser(), "-o", "%i|%T"],
              capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise ExecutorError(f"squeue failed: {res.stderr.strip()}")
    known = {}
    for line in res.stdout.splitlines():
        jid, _, state = line.strip().partition("|")
        known[jid] = state.strip().split()[0] if state.strip() else "UNKNOWN"
    return {j: known[j] for j in job_ids if j in known}


def job_error(entry) -> str:
    """The error of a job that ended without a record: the exception its cell raised (from
    submitit's result file), else the last lines of its log."""
    from submitit.core.utils import JobPaths, pickle_load
    paths = JobPaths(entry["folder"], entry["job_id"], 0)
    if paths.result_pickle.exists():
        try:
            outcome, payload = pickle_load(paths.result_pickle)
        except Exception as err:  # noqa: BLE001 - a truncated result file is reported as such
            return f"unreadable result file {paths.result_pickle}: {err}"
        if outcome == "error":
            lines = [ln for ln in str(payload).strip().splitlines() if ln.strip()]
            return lines[-1].strip()[:500] if lines else "error"
        return "the job finished but wrote no record"
    for log in (paths.stderr, paths.stdout):
        if log.exists():
            lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
            if lines:
                return f"no result; the log ends with: {lines[-1].strip()[:300]}"
    return "the job never started (cancelled, or its dependency failed)"


# ---------------------------------------------------------------------- submitting
def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class _SlurmBackend:
    dependencies = True

    def __init__(self, folder, settings: SlurmSettings):
        import submitit
        self.ex = submitit.SlurmExecutor(folder=folder)
        self.base = settings.sbatch_parameters()

    def submit(self, job_name, calls, dependency=None):
        params = dict(self.base, job_name=job_name)
        if dependency:
            params["dependency"] = f"afterok:{dependency}"
        self.ex.update_parameters(**params)
        fn = CellJob()
        return self.ex.map_array(fn, *zip(*calls))

    def states(self, job_ids):
        return _slurm_states(job_ids)


class _LocalBackend:
    """submitit's LocalExecutor: subprocesses of this machine, no dependencies (the driver waits)."""

    dependencies = False

    def __init__(self, folder, settings: SlurmSettings):
        import submitit
        self.ex = submitit.LocalExecutor(folder=folder)
        self.ex.update_parameters(timeout_min=parse_time(settings.time))
        self.jobs = {}

    def submit(self, job_name, calls, dependency=None):
        fn = CellJob()
        jobs = [self.ex.submit(fn, *call) for call in calls]
        for j in jobs:
            self.jobs[j.job_id] = j
        return jobs

    def states(self, job_ids):
        out = {}
        for jid in job_ids:
            job = self.jobs.get(jid)
            if job is not None and not job.done():
                out[jid] = "RUNNING"
        return out


def _backend(executor, folder, settings):
    if executor == "slurm":
        return _SlurmBackend(folder, settings)
    if executor == "submitit-local":
        return _LocalBackend(folder, settings)
    raise ExecutorError(f"unknown executor {executor!r}; valid executors: {list(EXECUTORS)}")


def submit(todo, rung_name, executor="slurm", settings=None, root=None, device="auto",
           runner=None, wait=False, poll_s=10.0, log=print, lock_timeout_s=600.0,
           run_cell=None) -> dict:
    """Submit the cells of ``todo`` (cells without a record) as jobs; returns the driver's summary.

    Reading the ledger, asking Slurm and submitting happen under :func:`ledger_lock` (a second
    driver started meanwhile waits up to ``lock_timeout_s``, then sees these jobs as live).

    ``{"submitted": {cell: job id}, "running": {cell: job id}, "ran": [...], "failed":
    {cell: "error; log: path"}, "skipped": [...], "logs": {cell: path}}``; ``ran`` and this
    submission's ``failed`` are filled when ``wait`` (always for ``submitit-local``).
    ``run_cell``: the driver's cell runner each job calls (required).
    """
    if run_cell is None:
        raise ExecutorError("submit needs the driver's cell runner (run_cell=...)")

    settings = settings or SlurmSettings()
    if executor not in EXECUTORS or executor == "local":
        raise ExecutorError(f"unknown executor {executor!r} for job submission; valid: "
                            f"{[e for e in EXECUTORS if e != 'local']}")
    if executor == "slurm":
        check_cluster(settings)
    results_root = Path(root or results_dir()).resolve()
    runs_root = runs_dir().resolve()
    folder = runs_root / "slurm" / "jobs" / "%j"
    summary = {"submitted": {}, "running": {}, "ran": [], "failed": {}, "skipped": [], "logs": {}}
    todo = list(todo)
    ledger_path = runs_root / "slurm" / "ledger.json"

    def submit_missing(ledger, backend) -> bool:
        """Steps 1-3 (fills ``summary``); False when every missing cell already has a live job."""
        # 1. what the ledger knows: jobs still live keep their cells; ended ones without a record failed
        tracked = {c.name: ledger.get(c.name) for c in todo if ledger.get(c.name)}
        states = backend.states([e["job_id"] for e in tracked.values()])
        for c in todo:
            entry = tracked.get(c.name)
            if entry is None:
                continue
            state = states.get(entry["job_id"])
            if state in LIVE_STATES:
                summary["running"][c.name] = entry["job_id"]
                log(f"  {state.lower():9s} {c.kind:5s} {c.name} (job {entry['job_id']}, log "
                    f"{entry['stdout']})")
            elif not record_path(c, results_root).is_file():
                err = job_error(entry)
                log(f"  earlier job {entry['job_id']} of {c.name} ended without a record "
                    f"({state or 'no longer queued'}): {err}; log: {entry['stdout']}; submitting again")
        to_submit = [c for c in todo if c.name not in summary["running"]]
        if not to_submit:
            return False

        def call(c):
            return (c, rung_name, device, str(project_root()), str(results_root), str(runs_root),
                    runner, run_cell)

        def record(cells, jobs, kind, dependency=None):
            for c, job in zip(cells, jobs):
                entry = {"job_id": str(job.job_id), "kind": kind, "folder": str(folder),
                         "stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr),
                         "notebook": str(notebook_path(c, results_root)), "submitted": _now(),
                         "executor": executor, "after": dependency}
                ledger.add(c.name, entry)
                summary["submitted"][c.name] = entry["job_id"]
                summary["logs"][c.name] = entry["stdout"]
                dep = f", after job {dependency}" if dependency else ""
                log(f"  submitted {kind:5s} {c.name} as job {job.job_id}{dep}\n"
                    f"            log {entry['stdout']}\n            notebook {entry['notebook']}")
            ledger.save()

        # 2. the trainings: one array
        trains = [c for c in to_submit if c.kind == "train"]
        jobs_of = {}
        if trains:
            jobs = backend.submit("trs-train", [call(c) for c in trains])
            record(trains, jobs, "train")
            jobs_of.update({c.name: j for c, j in zip(trains, jobs)})

        # 3. the evaluations: one array per training, after it (afterok)
        groups = {}
        for c in to_submit:
            if c.kind != "eval":
                continue
            dep = None
            if c.train.name in jobs_of:
                dep = str(jobs_of[c.train.name].job_id)
            elif c.train.name in summary["running"]:
                dep = summary["running"][c.train.name]
            groups.setdefault(dep, []).append(c)
        for dep, cells in groups.items():
            if dep is not None and not backend.dependencies:
                _wait_for(backend, [dep], poll_s)
                train = cells[0].train
                if not record_path(train, results_root).is_file():
                    summary["skipped"].extend(c.name for c in cells)
                    log(f"  not submitted: {len(cells)} evaluation(s) of {train.name}, its training "
                        "failed")
                    continue
                dep = None
            jobs = backend.submit("trs-eval", [call(c) for c in cells], dependency=dep)
            record(cells, jobs, "eval", dep)
        return True

    # steps 1-3 under the ledger's lock: a second driver waits, then sees these jobs as live
    with ledger_lock(ledger_path, timeout_s=lock_timeout_s, log=log):
        ledger = Ledger(ledger_path)
        backend = _backend(executor, folder, settings)
        anything = submit_missing(ledger, backend)
    if not anything:
        log(f"nothing submitted: all {len(summary['running'])} missing cells have jobs pending "
            "or running" + ("" if wait else "; rerun this command after they finish"))
        if wait:
            _wait_for(backend, list(summary["running"].values()), poll_s)
            finish(todo, ledger, results_root, summary, log)
        return summary
    log(f"submitted {len(summary['submitted'])} jobs; {len(summary['running'])} cells already "
        f"had jobs; ledger: {ledger.path}")
    if wait or not backend.dependencies:
        ids = list(summary["submitted"].values()) + list(summary["running"].values())
        log(f"waiting for {len(ids)} jobs ...")
        _wait_for(backend, ids, poll_s)
        finish(todo, ledger, results_root, summary, log)
    return summary


def _wait_for(backend, job_ids, poll_s):
    while any(s in LIVE_STATES for s in backend.states(list(job_ids)).values()):
        time.sleep(poll_s)


def finish(cells, ledger, results_root, summary, log=print) -> dict:
    """After the jobs ended: which cells now have records, which failed (error + log path), which
    were skipped because their training failed."""
    summary["running"] = {}
    failed_trains = set()
    for c in cells:
        if c.name in summary["skipped"]:
            continue
        entry = ledger.get(c.name)
        if record_path(c, results_root).is_file():
            summary["ran"].append(c.name)
        elif entry is None:
            continue
        elif c.kind == "eval" and c.train.name in failed_trains:
            summary["skipped"].append(c.name)
        else:
            summary["failed"][c.name] = f"{job_error(entry)}; log: {entry['stdout']}"
            if c.kind == "train":
                failed_trains.add(c.name)
    for name, err in summary["failed"].items():
        log(f"  FAILED {name}: {err}")
    for name in summary["skipped"]:
        log(f"  skipped {name}: its training failed")
    log(f"{len(summary['ran'])} cells have their records; {len(summary['failed'])} failed, "
        f"{len(summary['skipped'])} skipped")
    return summary
