"""The one training loop, for every method (``train(dataset=..., method=..., **overrides)``).

Per epoch: a progress bar, metrics (loss terms, member and ensemble test accuracy, mean pairwise
|cos| of member input gradients), a checkpoint (``trs_lib.checkpoint``). Rerunning the same
command resumes from the last complete checkpoint; rerunning a finished run is a no-op. The
result is the trained ensemble and a run record (config, metrics, git commit, hardware, wall
time) in ``<out_dir>/record.json``.

Optimiser: Adam at a constant learning rate (paper App. F), or the authors' Adam with weight
decay and their step schedule (``optimiser="authors"``, :mod:`trs_lib.optimiser`); the rate is
a function of the epoch, set at each epoch's start, so there is no scheduler to checkpoint.
A checkpoint holds the model, Adam's
moments and step counts, the epoch, the metrics so far, every random generator's state (the
trainer's generator for batch order and augmentation, torch's global CPU and CUDA generators)
and any method state (boosting weights). A resumed run therefore ends with the same weights and
metrics as an uninterrupted one: bitwise on the CPU with the same seed, the same
``torch.get_num_threads()`` and the same library versions; on a GPU, up to the non-determinism
of its kernels. See ``book/resuming.md``.

Faults end in a clear error and never in a wrong result: bad settings are refused before anything
is written (:meth:`trs_lib.recipes.TrainConfig.validate`); a NaN or infinite loss term stops the
run naming the epoch, batch and term (:class:`NumericalError`) and keeps the last good
checkpoint; a failed write (a full disk) leaves the previous checkpoint intact.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from . import checkpoint as ckpt
from . import data, methods, optimiser
from .atomic import CorruptFileError, remove_stale_temp
from .ensemble import Ensemble, build_ensemble
from .models import set_data_parallel
from .attacks import presets
from .evaluate import gradient_cosine, member_accuracies
from .suites import spread_indices
from .worst_case import robust_accuracy
from .recipes import TrainConfig, config_hash, make_config
from .paths import display_path, runs_dir
from .records import read_record, write_record

__all__ = ["train", "TrainResult", "NumericalError", "resolve_device", "default_run_dir",
           "COS_EVAL_POINTS", "TRAIN_PARAMETERS", "check_notebook_parameters"]

COS_EVAL_POINTS = 500  # test points used for the per-epoch gradient cosine
PGD_EVAL_POINTS = 200  # evenly spaced test points of the per-epoch PGD-10 accuracy
SUBSET_SEED = 0  # train_subset draws a fixed random subset (the same for every run seed)
_TERM_NAMES = {"ce": "cross-entropy", "similarity": "gradient similarity",
               "smoothness": "gradient smoothness"}


class NumericalError(FloatingPointError):
    """A loss term became NaN or infinite; the message names epoch, batch and term."""


@dataclass
class TrainResult:
    ensemble: Ensemble
    config: TrainConfig
    record: dict
    out_dir: Path

    @property
    def history(self) -> list[dict]:
        return self.record["metrics"]["history"]


def resolve_device(device="auto") -> torch.device:
    """``"auto"``: CUDA when present, else the CPU; anything else is passed to ``torch.device``."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available here; use 'auto' or 'cpu'")
    return dev


def default_run_dir(cfg: TrainConfig, root=None) -> Path:
    """``<runs dir>/<method>-<dataset>-<config hash>`` (see ``trs_lib.paths.runs_dir``)."""
    return Path(root or runs_dir()) / f"{cfg.method}-{cfg.dataset}-{config_hash(cfg)}"


def _set_trainable(ensemble: Ensemble, stage: int | None) -> None:
    for k, member in enumerate(ensemble.members):
        member.requires_grad_(stage is None or k == stage)


def pgd_budget(dataset: str) -> float:
    """The L-inf budget of the per-epoch PGD-10 accuracy: the middle PGD-10 budget of the
    paper's white-box rows for the data set (MNIST 0.15, CIFAR-10 0.02; Tables 1-2)."""
    eps = sorted({r["value"] for r in presets.preset(dataset, "whitebox")
                  if r["attack"] == "pgd" and r["steps"] == 10})
    return eps[len(eps) // 2]


def _epoch_metrics(ensemble, x_te, y_te, dataset: str) -> dict:
    """Clean accuracies on the test split, the members' gradient cosine on its first points,
    and PGD-10 accuracy at :func:`pgd_budget` on :data:`PGD_EVAL_POINTS` evenly spaced test
    points (the convergence curve of a rung; the attack draws from its own generator, so the
    training's randomness is untouched)."""
    ensemble.eval()
    acc = member_accuracies(ensemble, x_te, y_te)
    out = {"test_acc_members": acc["members"], "test_acc_ensemble": acc["ensemble"]}
    if ensemble.num_members >= 2:
        n = min(COS_EVAL_POINTS, len(x_te))
        out["test_mean_abs_cos"] = gradient_cosine(ensemble, x_te[:n], y_te[:n])["mean_abs_cos"]
    if not PGD_EVAL_POINTS:
        return out
    idx = spread_indices(len(x_te), min(PGD_EVAL_POINTS, len(x_te)))
    eps = pgd_budget(dataset)
    name, kw = presets.attack_kwargs({"attack": "pgd", "param": "eps", "value": eps, "steps": 10})
    res = robust_accuracy(ensemble, x_te[idx], y_te[idx], name, seed=0, progress=False, **kw)
    out.update(test_pgd10_acc=res["accuracy"], test_pgd10_eps=eps, test_pgd10_points=len(idx))
    return out


def _load_split(cfg: TrainConfig, split: str, device):
    x, y = data.load(cfg.dataset, split, root=cfg.data_root, download=cfg.download)
    if split == "train" and cfg.train_subset and cfg.train_subset < len(x):
        # a fixed random subset: the files may be sorted by class (mnist5k is)
        g = torch.Generator().manual_seed(SUBSET_SEED)
        idx = torch.randperm(len(x), generator=g)[: cfg.train_subset].sort().values
        x, y = x[idx], y[idx]
    return x.to(device), y.to(device)


def _check_out_dir(out_dir) -> Path:
    if not isinstance(out_dir, (str, Path)):
        raise ValueError(f"out_dir must be a path (str or pathlib.Path), got {out_dir!r}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"out_dir {str(out_dir)!r} exists but is not a directory")
    for parent in out_dir.parents:  # the first existing ancestor must be a folder
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(f"out_dir {str(out_dir)!r} lies under {str(parent)!r}, "
                                         f"which is a file, not a directory")
            break
    return out_dir


def train(dataset: str = "mnist5k", method: str = "trs", out_dir=None, resume: bool = True,
          progress: bool = True, log=print, **overrides) -> TrainResult:
    """Train an ensemble with ``method`` on ``dataset``; recipe defaults, explicit overrides win.

    ``out_dir`` (default ``<project>/runs/<method>-<dataset>-<config hash>``) holds checkpoints, the
    final weights (``weights.safetensors`` + ``weights.json``) and ``record.json``.
    """
    cfg = make_config(dataset, method, **overrides)
    for name, value in (("resume", resume), ("progress", progress)):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be True or False, got {value!r}")
    if not callable(log):
        raise ValueError(f"log must be a function taking one string (e.g. print), got {log!r}")
    method_obj = methods.get(cfg.method)
    device = resolve_device(cfg.device)
    out_dir = _check_out_dir(out_dir) if out_dir is not None else default_run_dir(cfg)
    record_path = out_dir / "record.json"

    if record_path.is_file():  # finished before: a no-op that returns the stored result
        try:
            record = read_record(record_path)
            ckpt.check_compatible(record["config"], cfg.to_dict(), keys=tuple(cfg.identity()),
                                  source=str(record_path))
            ensemble, _ = ckpt.load_weights(out_dir / "weights", device)
        except (CorruptFileError, FileNotFoundError) as err:
            raise type(err)(f"{err}. The run in {out_dir} is marked finished but cannot be loaded: "
                            f"delete record.json and weights.* there and rerun to rebuild them from "
                            f"the last checkpoint") from None
        log(f"run {display_path(out_dir)} is complete; loaded its weights (delete that folder to train again)")
        return TrainResult(ensemble, cfg, record, out_dir)

    x_tr, y_tr = _load_split(cfg, "train", device)
    x_te, y_te = _load_split(cfg, "test", device)
    use_augment = data.info(cfg.dataset).augment

    torch.manual_seed(cfg.seed)
    ensemble = build_ensemble(cfg.arch, cfg.dataset, cfg.num_models, cfg.seed,
                              combine=method_obj.combine, device=device)
    set_data_parallel(ensemble, cfg.data_parallel)   # the authors' nn.DataParallel (BatchNorm)
    if use_channels_last(cfg.channels_last, device):  # speed only (benchmarks/README.md)
        ensemble.to(memory_format=torch.channels_last)
        x_tr = x_tr.contiguous(memory_format=torch.channels_last)
    if cfg.compile:
        _compile_members(ensemble, cfg.method, log)
    optimizer = optimiser.build(ensemble.parameters(), cfg, device)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    history, state, start, elapsed = [], {}, 0, 0.0

    for stale in remove_stale_temp(out_dir):  # left by a process killed mid-write
        log(f"removed {stale.name}, a temporary file of an interrupted write")
    found = ckpt.latest_checkpoint(out_dir, warn=log) if resume else None
    if found is not None:
        meta, tensors = found
        ckpt.check_compatible(meta["config"], cfg.to_dict(), keys=tuple(cfg.identity()),
                              source=meta.get("_source"))
        state = ckpt.load_checkpoint(meta, tensors, ensemble, optimizer, generator, device)
        history, start, elapsed = meta["history"], meta["epoch"], meta.get("elapsed_s", 0.0)
        log(f"resuming {display_path(out_dir)} after epoch {start}")

    stages = cfg.num_models if method_obj.sequential else 1
    total = cfg.epochs * stages
    n_train, bs = len(x_tr), min(cfg.batch_size, len(x_tr))
    n_batches = max(n_train // bs, 1)  # full batches only: BatchNorm needs > 1 example
    t0 = time.perf_counter()
    bar = _progress(total, start, progress, f"{cfg.method} on {cfg.dataset}")
    try:
        for e in range(start, total):
            stage, epoch = divmod(e, cfg.epochs)
            seq_stage = stage if method_obj.sequential else None
            if method_obj.sequential and epoch == 0 and method_obj.begin_stage is not None:
                method_obj.begin_stage(ensemble, stage, x_tr, y_tr, cfg, state)
            _set_trainable(ensemble, seq_stage)
            optimiser.set_learning_rate(optimizer, optimiser.learning_rate(cfg.optimiser, cfg.lr, epoch))
            ensemble.train()
            perm = torch.randperm(n_train, generator=generator, device=device)
            sums, first_bad = {}, {}
            bad_total = torch.tensor(-1, device=device)
            for b in range(n_batches):
                idx = perm[b * bs:(b + 1) * bs]
                xb, yb = x_tr[idx], y_tr[idx]
                if use_augment:
                    xb = data.augment(xb, generator)
                ctx = methods.StepContext(epoch=epoch, epochs=cfg.epochs, generator=generator,
                                          index=idx, stage=stage, state=state)
                with torch.autocast(device.type, torch.bfloat16, enabled=cfg.amp == "bf16"):
                    loss, terms = method_obj.loss(ensemble, xb, yb, cfg, ctx)
                bad_total = torch.where((bad_total < 0) & ~torch.isfinite(loss.detach()), b, bad_total)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                for name, value in terms.items():  # accumulated on device: no sync per batch
                    v = value.detach()
                    sums[name] = sums.get(name, 0) + v
                    if name not in first_bad:
                        first_bad[name] = torch.tensor(-1, device=device)
                    first_bad[name] = torch.where((first_bad[name] < 0) & ~torch.isfinite(v),
                                                  b, first_bad[name])
            _raise_if_bad(first_bad, bad_total, e + 1, n_batches,
                          stage if method_obj.sequential else None, out_dir)
            if method_obj.sequential and epoch == cfg.epochs - 1 and method_obj.end_stage is not None:
                method_obj.end_stage(ensemble, stage, x_tr, y_tr, cfg, state)
            metrics = {"epoch": e + 1, "stage": stage,
                       **{f"train_{k}": (v / n_batches).item() for k, v in sums.items()},
                       **_epoch_metrics(ensemble, x_te, y_te, cfg.dataset)}
            history.append(metrics)
            now = elapsed + time.perf_counter() - t0
            ckpt.save_checkpoint(out_dir, e + 1, ensemble, optimizer, generator,
                                 {"config": cfg.to_dict(), "history": history, "elapsed_s": now},
                                 method_state=state)
            bar.update(1)
            bar.set_postfix(acc=f"{metrics['test_acc_ensemble']:.3f}",
                            cos=f"{metrics.get('test_mean_abs_cos', float('nan')):.3f}")
    finally:
        bar.close()
    _set_trainable(ensemble, None)
    ensemble.eval()
    wall = elapsed + time.perf_counter() - t0
    ckpt.save_weights(out_dir / "weights", ensemble, cfg.to_dict())
    final = {k: v for k, v in history[-1].items() if k.startswith("test_")} if history else {}
    write_record(record_path, "train", cfg.to_dict(),
                 {"final": final, "history": history, "config_hash": config_hash(cfg)}, wall, device)
    return TrainResult(ensemble, cfg, read_record(record_path), out_dir)


# Losses that differentiate input gradients (double backprop), which torch.compile's
# AOTAutograd refuses ("does not currently support double backward"): they run eager.
DOUBLE_BACKWARD_METHODS = ("trs", "cossim", "gal", "trs_at", "trs_lotos")


def use_channels_last(setting: str, device) -> bool:
    """``channels_last`` setting -> bool: ``auto`` is on for CUDA (cuDNN's fast layout) and the
    CPU (oneDNN: TRS steps measured 1.03-1.27x faster, benchmarks/README.md)."""
    if setting == "auto":
        return torch.device(device).type in ("cuda", "cpu")
    return setting == "on"


def _compile_members(ensemble, method: str, log) -> None:
    """``torch.compile`` each member in place (state-dict keys unchanged); the documented
    fallback: eager for the double-backprop methods, where AOTAutograd cannot run."""
    if method in DOUBLE_BACKWARD_METHODS:
        log(f"compile=True ignored for {method!r}: torch.compile does not support the double "
            f"backward its loss needs; running eager")
        return
    for member in ensemble.members:
        member.compile()


def _raise_if_bad(first_bad: dict, bad_total, epoch: int, n_batches: int, stage, out_dir) -> None:
    """Raise :class:`NumericalError` for the first batch of the epoch with a non-finite term.

    Once one batch goes bad the weights do too, and every later batch follows; the first bad
    batch and the terms bad in it are the cause. Epoch and batch are 1-based.
    """
    bad = {name: int(b) for name, b in first_bad.items() if int(b) >= 0}
    total = int(bad_total)
    if not bad and total < 0:
        return
    first = min([*bad.values(), *([total] if total >= 0 else [])])
    names = [n for n, b in bad.items() if b == first]
    what = (", ".join(f"{n!r} ({_TERM_NAMES[n]})" if n in _TERM_NAMES else repr(n) for n in names)
            if names else "the total loss (every named term was finite)")
    where = f"epoch {epoch}" + (f" (stage {stage + 1})" if stage is not None else "")
    kept = (f"the last good checkpoint, epoch {epoch - 1}, was kept in {out_dir}" if epoch > 1
            else "no checkpoint had been written yet")
    raise NumericalError(
        f"loss term {what} became NaN or infinite at {where}, batch {first + 1} of {n_batches}; "
        f"training stopped, nothing of this epoch was saved and {kept}. Lower the learning rate "
        f"or the term's weight.")


# train()'s own keyword arguments that a notebook may pass through, besides the config fields.
TRAIN_PARAMETERS = ("dataset", "method", "out_dir", "resume", "progress")
_IPYTHON_NAMES = {"In", "Out", "exit", "quit", "get_ipython"}


def check_notebook_parameters(namespace: dict, extra=()) -> None:
    """Refuse papermill parameters that are neither ``train`` arguments nor ``extra`` names.

    papermill only warns about a parameter the notebook does not declare (``-p epoch 3`` for
    ``epochs``) and runs on with the default. Call this in the cell right after the
    ``parameters`` cell with ``globals()``: every plain value (str, number, bool, None, list,
    dict) bound to a public name there is a parameter, declared or injected. Values are checked
    by ``train`` itself (:meth:`trs_lib.recipes.TrainConfig.validate`).
    """
    import dataclasses
    allowed = set(TRAIN_PARAMETERS) | {f.name for f in dataclasses.fields(TrainConfig)} | set(extra)
    plain = (str, int, float, bool, type(None), list, dict, tuple)
    unknown = sorted(k for k, v in namespace.items()
                     if not k.startswith("_") and k not in _IPYTHON_NAMES
                     and isinstance(v, plain) and k not in allowed)
    if unknown:
        raise ValueError(f"unknown notebook parameters {unknown}; valid parameters: {sorted(allowed)}")


def _progress(total, initial, enabled, desc):
    if enabled:  # tqdm.auto warns (naming its install path) where ipywidgets is missing
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    return tqdm(total=total, initial=initial, disable=not enabled, desc=desc, unit="epoch")
