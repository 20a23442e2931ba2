"""Reproduce the paper's tables: run every cell of their grid that has no record yet.

    python -m trs_lib.reproduce --tables 1 3 5 6 fig2 fig3 --rung cpu
    python -m trs_lib.reproduce --tables 1 --rung cpu --dry-run     # what would run

Each cell of the grid (``trs_lib.companion.grid``) is one papermill run of a notebook:
``notebooks/train_trs.ipynb`` for a training, ``notebooks/evaluate.ipynb`` for an evaluation.
The executed notebook is kept beside the cell's record, ``results/<kind>/<cell name>.ipynb``
next to ``results/<kind>/<cell name>.json``. A cell whose record exists is skipped, so rerunning
the driver on a finished grid does nothing and says so, and deleting one record regenerates
only that cell. Trainings checkpoint every epoch under ``runs/``: after an interruption the
same command resumes the training where it stopped. A cell that fails leaves no record (its
partial notebook goes to ``runs/failed/``) and the driver goes on with the cells that do not
depend on it, then exits non-zero.

On a cluster, ``--executor slurm`` submits the missing cells as Slurm jobs through submitit
instead (``trs_lib.companion.executors``: a job array of trainings, the evaluations after their training
with ``afterok``; jobs already pending or running are not submitted twice):

    python -m trs_lib.reproduce --tables 1 --rung gpu --executor slurm --partition gpu \
        --gpus-per-job 1 --time 12:00:00 --mem 32G --slurm-extra account=myproj
"""
from __future__ import annotations

import argparse
import functools
import shutil
import sys
import time
from pathlib import Path

from . import executors as X
from .. import evaluate as E
from . import grid as G
from ..atomic import CorruptFileError, atomic_write_json
from ..paths import display_path, project_root, results_dir, runs_dir
from ..provenance import DirtyTreeError, check_clean_tree, mark_allow_dirty, relativize_notebook
from ..records import notebook_path, parse_record, read_record, record_path

__all__ = ["TRAIN_NOTEBOOK", "EVAL_NOTEBOOK", "plan", "reproduce", "papermill_runner",
           "train_parameters", "eval_parameters", "main", "UP_TO_DATE", "shard_of", "parse_shard"]

TRAIN_NOTEBOOK = "notebooks/train_trs.ipynb"
EVAL_NOTEBOOK = "notebooks/evaluate.ipynb"
UP_TO_DATE = "everything is up to date"


# ---------------------------------------------------------------------- notebook parameters
def run_dir(train_cell) -> Path:
    """Where a training's checkpoints and weights live (the name ``trs_lib.train`` uses)."""
    return runs_dir() / train_cell.name


def train_parameters(cell, device="auto") -> dict:
    """papermill parameters of ``notebooks/train_trs.ipynb`` for a training cell."""
    return {**cell.parameters(), "device": device, "out_dir": display_path(run_dir(cell)),
            "compare_vanilla": False}


def eval_parameters(cell, out_json: Path, device="auto") -> dict:
    """papermill parameters of ``notebooks/evaluate.ipynb`` for an evaluation cell."""
    spec = {**{k: v for k, v in cell.spec().items() if k != "train"}, "dataset": cell.train.dataset}
    return {"run_dir": display_path(run_dir(cell.train)), "suite": cell.suite,
            "spec": E.EvalSpec.from_dict(spec).to_dict(),  # validated here, before a kernel starts
            "device": device, "out_json": display_path(out_json)}


# ---------------------------------------------------------------------- running a notebook
def papermill_runner(notebook: Path, output: Path, parameters: dict, cwd: Path,
                     stream: bool = False) -> None:
    """Execute ``notebook`` with ``parameters`` into ``output`` (the default runner);
    ``stream`` copies the notebook's output (progress bars included) to stderr."""
    import papermill as pm
    pm.execute_notebook(str(notebook), str(output), parameters=parameters, cwd=str(cwd),
                        kernel_name="python3", progress_bar=False, log_output=stream,
                        stderr_file=sys.stderr if stream else None)


def _is_done(cell, root) -> bool:
    path = record_path(cell, root)
    if not path.is_file():
        return False
    try:
        read_record(path)
    except CorruptFileError:
        return False  # a corrupt record is redone (the atomic writes make this rare)
    return True


def plan(targets=None, rung="cpu", root=None, cells=None, kinds=("train", "eval")) -> list[tuple]:
    """``[(cell, done)]`` for every cell the targets need (or the given ``cells``), keeping the
    cells of the given ``kinds`` (``train``, ``eval``)."""
    cells = G.cells_for(targets or (), rung) if cells is None else list(cells)
    return [(c, _is_done(c, root)) for c in cells if c.kind in kinds]


def _run_notebook(runner, notebook, cell, parameters, root, log) -> Path:
    """Run one notebook to a temporary output; on success move it beside the record."""
    final = notebook_path(cell, root)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.stem}.running.ipynb")
    try:
        runner(project_root() / notebook, tmp, parameters, project_root())
    except BaseException:
        if tmp.exists():
            failed = runs_dir() / "failed" / final.name
            failed.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(tmp), failed)
            log(f"  the partial notebook is in {failed}")
        raise
    return tmp


def _finish_train(cell, tmp_nb, parameters, root, rung_name) -> Path:
    src = run_dir(cell) / "record.json"
    if not src.is_file():
        raise RuntimeError(f"{TRAIN_NOTEBOOK} finished but wrote no {src}; "
                           "was out_dir passed through to train()?")
    rec = read_record(src)
    got = rec["metrics"].get("config_hash")
    if got is not None and got != cell.key:
        raise RuntimeError(f"training {cell.name}: the notebook trained config {got}, the grid "
                           f"asked for {cell.key}; check the parameters {parameters}")
    rec["grid"] = {"cell": cell.name, "kind": "train", "scale": rung_name,
                   "notebook": notebook_path(cell, root).name, "parameters": parameters}
    return _commit(cell, tmp_nb, rec, root)


def _finish_eval(cell, tmp_nb, tmp_json, parameters, root, rung_name) -> Path:
    if not tmp_json.is_file():
        raise RuntimeError(f"{EVAL_NOTEBOOK} finished but wrote no {tmp_json}")
    rec = read_record(tmp_json)
    rec["config"]["eval"] = cell.spec()
    rec["grid"] = {"cell": cell.name, "kind": "eval", "scale": rung_name,
                   "train": cell.train.name, "notebook": notebook_path(cell, root).name,
                   "parameters": parameters}
    out = _commit(cell, tmp_nb, rec, root)
    tmp_json.unlink(missing_ok=True)
    return out


def _commit(cell, tmp_nb, rec, root) -> Path:
    """Notebook first, record last: a record on disk always has its notebook beside it."""
    relativize_notebook(tmp_nb)  # no absolute paths in committed notebooks
    mark_allow_dirty(rec)        # a -dirty commit got here only through --allow-dirty
    rec = parse_record(rec, record_path(cell, root)).to_json()  # validated before the notebook moves
    tmp_nb.replace(notebook_path(cell, root))
    return atomic_write_json(record_path(cell, root), rec)


def _weights_present(train_cell) -> bool:
    return (run_dir(train_cell) / "weights.safetensors").is_file()


def run_cell(cell, runner=None, root=None, device="auto", rung_name="", log=print) -> Path:
    """Run one grid cell with papermill and write its record; returns the record's path."""
    runner = runner or papermill_runner
    if cell.kind == "train":
        params = train_parameters(cell, device)
        tmp = _run_notebook(runner, TRAIN_NOTEBOOK, cell, params, root, log)
        return _finish_train(cell, tmp, params, root, rung_name)
    if not _weights_present(cell.train):
        # The training's record exists (it is committed) but its weights are not here
        # (runs/ is not committed): train again into runs/, without touching its record.
        log(f"  weights of {cell.train.name} are missing from {runs_dir()}; training them again")
        params = train_parameters(cell.train, device)
        retrain_nb = run_dir(cell.train) / "retrain.ipynb"
        retrain_nb.parent.mkdir(parents=True, exist_ok=True)
        runner(project_root() / TRAIN_NOTEBOOK, retrain_nb, params, project_root())
    tmp_json = runs_dir() / "eval-tmp" / f"{cell.name}.json"
    tmp_json.parent.mkdir(parents=True, exist_ok=True)
    tmp_json.unlink(missing_ok=True)
    params = eval_parameters(cell, tmp_json, device)
    tmp = _run_notebook(runner, EVAL_NOTEBOOK, cell, params, root, log)
    return _finish_eval(cell, tmp, tmp_json, params, root, rung_name)


def _describe(err: BaseException) -> str:
    """One line for a failed cell; for a notebook error, the error raised inside the notebook."""
    if hasattr(err, "ename"):  # papermill.PapermillExecutionError
        return (f"{err.ename}: {str(err.evalue)[:300]} (in notebook cell {err.exec_count}; the "
                f"partial notebook is under runs/failed/)")
    return f"{type(err).__name__}: {str(err)[:500]}"


def shard_of(items, shard) -> set:
    """The names of the cells of shard ``shard = (k, n)``: a training and all its evaluations
    belong to the shard of the training's position, modulo ``n``, among the trainings of
    ``items`` (the plan, recorded cells included, so the split does not move when cells finish).
    Shards are disjoint and together hold every cell; ``n`` drivers, one per shard, can run the
    same grid side by side without ever running a cell twice."""
    k, n = shard
    if not (isinstance(k, int) and isinstance(n, int) and n >= 1 and 0 <= k < n):
        raise ValueError(f"shard {k}/{n} is not valid: need 0 <= K < N, e.g. 0/2 and 1/2")
    trainings = []
    for c, _ in items:
        t = c if c.kind == "train" else c.train
        if t.name not in trainings:
            trainings.append(t.name)
    mine = {t for i, t in enumerate(trainings) if i % n == k}
    return {c.name for c, _ in items if (c if c.kind == "train" else c.train).name in mine}


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)``, with an error naming the value and what is allowed."""
    try:
        k, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r} is not of the form K/N (e.g. 0/2)") from None
    shard_of([], (k, n))  # validates
    return k, n


def reproduce(targets=None, rung="cpu", root=None, cells=None, runner=None, device="auto",
              dry_run=False, log=print, progress=True, kinds=("train", "eval"),
              executor="local", settings=None, wait=False, poll_s=10.0,
              allow_dirty=False, shard=None) -> dict:
    """Run every cell of the targets' grid that has no record; returns a summary dict.

    ``{"done": [...], "ran": [...], "failed": {name: error}, "skipped": [...], "wall_s": ...}``:
    cells already recorded, cells run now, cells that failed, and cells skipped because the
    training they evaluate failed. With ``executor`` ``slurm`` or ``submitit-local`` the cells
    are submitted as jobs (:func:`trs_lib.companion.executors.submit`, ``settings`` a
    :class:`~trs_lib.companion.executors.SlurmSettings`) and the summary also has ``submitted`` and
    ``running`` (cell -> job id) and ``logs`` (cell -> log path). ``shard``: ``(k, n)``, run
    only the cells of shard ``k`` of ``n`` (:func:`shard_of`; local executor).
    """
    if executor not in X.EXECUTORS:
        raise X.ExecutorError(f"unknown executor {executor!r}; valid executors: {list(X.EXECUTORS)}")
    sc = G.rung(rung)
    items = plan(targets, sc, root, cells, kinds)
    if shard is not None:  # trainings of other shards and their evaluations: another driver's
        mine = shard_of(plan(targets, sc, root, cells), shard)
        items = [(c, done) for c, done in items if c.name in mine]
    todo = [c for c, done in items if not done]
    summary = {"done": [c.name for c, done in items if done], "ran": [], "failed": {},
               "skipped": [], "wall_s": 0.0}
    log(f"{len(items)} cells for {' '.join(map(str, targets or ())) or 'the given cells'} at scale "
        f"{sc.name!r}" + (f" (shard {shard[0]}/{shard[1]})" if shard else "") +
        f": {len(items) - len(todo)} recorded, {len(todo)} to run")
    if not todo:
        log(UP_TO_DATE)
        return summary
    if dry_run:
        for c in todo:
            log(f"  would run {c.kind:5s} {c.name}")
        return summary
    # refuses a dirty tree (naming the changed files) unless allow_dirty
    check_clean_tree(project_root(), allow_dirty, results_root=root or results_dir())
    if executor != "local":
        summary.update(X.submit(todo, sc.name, executor, settings, root, device, runner,
                                wait=wait, poll_s=poll_s, log=log, run_cell=run_cell))
        return summary
    from tqdm.auto import tqdm
    t_all = time.perf_counter()
    bar = tqdm(total=len(todo), desc="reproduce", unit="cell", disable=not progress)
    failed_trainings = set()
    try:
        for i, cell in enumerate(todo, 1):
            bar.set_postfix_str(cell.name[:40])
            if cell.kind == "eval" and cell.train.name in failed_trainings:
                summary["skipped"].append(cell.name)
                log(f"[{i}/{len(todo)}] skip  {cell.name}: its training failed")
                bar.update(1)
                continue
            log(f"[{i}/{len(todo)}] {cell.kind:5s} {cell.name} ...")
            t0 = time.perf_counter()
            try:
                path = run_cell(cell, runner, root, device, sc.name, log)
            except KeyboardInterrupt:
                log("interrupted: rerun the same command to resume (finished cells are kept, "
                    "trainings resume from their last checkpoint)")
                raise
            except Exception as err:  # noqa: BLE001 - reported, the grid goes on
                summary["failed"][cell.name] = _describe(err)
                if cell.kind == "train":
                    failed_trainings.add(cell.name)
                log(f"  FAILED after {time.perf_counter() - t0:.0f} s: {_describe(err)}")
            else:
                summary["ran"].append(cell.name)
                log(f"  done in {time.perf_counter() - t0:.0f} s -> {path}")
            bar.update(1)
    finally:
        bar.close()
        summary["wall_s"] = round(time.perf_counter() - t_all, 1)
    log(f"ran {len(summary['ran'])} cells in {summary['wall_s']:.0f} s; "
        f"{len(summary['failed'])} failed, {len(summary['skipped'])} skipped")
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m trs_lib.reproduce", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tables", nargs="+", default=["1", "3", "5", "6", "fig2", "fig3"],
                    help=f"tables and figures to reproduce, from {list(G.TARGETS)}")
    ap.add_argument("--rung", default="cpu", choices=sorted(G.RUNGS))
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda (passed to the notebooks)")
    ap.add_argument("--dry-run", action="store_true", help="list the cells that would run")
    ap.add_argument("--kinds", nargs="+", default=["train", "eval"], choices=["train", "eval"],
                    help="run only these kinds of cells (e.g. the trainings first)")
    ap.add_argument("--allow-dirty", action="store_true",
                    help="write records from a working tree with uncommitted changes (they are "
                         "marked provenance.allow_dirty, and pages warn about them)")
    ap.add_argument("--stream", action="store_true",
                    help="show each notebook's own output (training progress) as it runs")
    ap.add_argument("--executor", default="local", choices=X.EXECUTORS,
                    help="local: run the cells here, one after another; slurm: submit them as "
                         "Slurm jobs (submitit); submitit-local: the same jobs as local processes")
    ap.add_argument("--shard", metavar="K/N",
                    help="run only shard K of N (a training with its evaluations per shard), so "
                         "that N drivers share one machine, e.g. two with OMP_NUM_THREADS=1 on "
                         "2 cores (local executor)")
    sl = ap.add_argument_group("Slurm (with --executor slurm; a --slurm-config file, then these)")
    sl.add_argument("--slurm-config", help="TOML file with partition, gpus_per_job, cpus_per_job, "
                                           "time, mem, extra (a table of sbatch options)")
    sl.add_argument("--partition", help="Slurm partition (default: the cluster's default)")
    sl.add_argument("--gpus-per-job", type=int, help="GPUs per job (default 0)")
    sl.add_argument("--cpus-per-job", type=int, help="CPUs per job (default 2)")
    sl.add_argument("--time", help="time limit per job, Slurm's format, e.g. 12:00:00 (default "
                                   "24:00:00); a training that reaches it is requeued and resumes")
    sl.add_argument("--mem", help="memory per job, e.g. 32G (default: the partition's)")
    sl.add_argument("--slurm-extra", nargs="+", default=[], metavar="KEY=VALUE",
                    help="further sbatch options, e.g. account=myproj qos=high")
    sl.add_argument("--wait", action="store_true",
                    help="wait for the submitted jobs and print their summary")
    args = ap.parse_args(argv)
    try:
        targets = [G.normalise_target(t) for t in args.tables]
    except ValueError as err:
        ap.error(str(err))
    shard = None
    if args.shard is not None:
        try:
            shard = parse_shard(args.shard)
        except ValueError as err:
            ap.error(str(err))
        if args.executor != "local":
            ap.error("--shard splits the local executor's work; Slurm runs cells in parallel itself")
    settings = None
    if args.executor != "local":
        try:
            conf = X.load_config(args.slurm_config) if args.slurm_config else {}
            cli = {"partition": args.partition, "gpus_per_job": args.gpus_per_job,
                   "cpus_per_job": args.cpus_per_job, "time": args.time, "mem": args.mem}
            conf.update({k: v for k, v in cli.items() if v is not None})
            if args.slurm_extra:
                conf["extra"] = {**conf.get("extra", {}), **X.parse_extra(args.slurm_extra)}
            settings = X.SlurmSettings(**conf)
            if args.executor == "slurm" and not args.dry_run:
                X.check_cluster(settings)
        except X.ExecutorError as err:
            ap.error(str(err))
    runner = functools.partial(papermill_runner, stream=True) if args.stream else None
    try:
        summary = reproduce(targets, args.rung, device=args.device, dry_run=args.dry_run,
                            runner=runner, kinds=tuple(args.kinds), executor=args.executor,
                            settings=settings, wait=args.wait, allow_dirty=args.allow_dirty,
                            shard=shard)
    except DirtyTreeError as err:
        print(f"refusing to run: {err}", file=sys.stderr)
        return 2
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
