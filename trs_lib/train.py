"""The one training loop, for every method (``train(dataset=..., method=..., **overrides)``).

Per epoch: a progress bar, metrics (loss terms, member and ensemble test accuracy, mean pairwise
|cos| of member input gradients), a checkpoint (``trs_lib.checkpoint``). Rerunning the same
command resumes from the last complete checkpoint; rerunning a finished run is a no-op. The
result is the trained ensemble and a run record (config, metrics, git commit, hardware, wall
time) in ``<out_dir>/record.json``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from . import checkpoint as ckpt
from . import data, methods
from .ensemble import Ensemble, build_ensemble
from .evaluate import gradient_cosine, member_accuracies
from .recipes import TrainConfig, config_hash, make_config
from .paths import runs_dir
from .results import read_record, write_record

__all__ = ["train", "TrainResult", "NumericalError", "resolve_device", "default_run_dir",
           "COS_EVAL_POINTS"]

COS_EVAL_POINTS = 500  # test points used for the per-epoch gradient cosine


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


def _epoch_metrics(ensemble, x_te, y_te) -> dict:
    ensemble.eval()
    acc = member_accuracies(ensemble, x_te, y_te)
    out = {"test_acc_members": acc["members"], "test_acc_ensemble": acc["ensemble"]}
    if ensemble.num_members >= 2:
        n = min(COS_EVAL_POINTS, len(x_te))
        out["test_mean_abs_cos"] = gradient_cosine(ensemble, x_te[:n], y_te[:n])["mean_abs_cos"]
    return out


def _load_split(cfg: TrainConfig, split: str, device):
    x, y = data.load(cfg.dataset, split, root=cfg.data_root, download=cfg.download)
    if split == "train" and cfg.train_subset:
        x, y = x[: cfg.train_subset], y[: cfg.train_subset]
    return x.to(device), y.to(device)


def train(dataset: str = "mnist5k", method: str = "trs", out_dir=None, resume: bool = True,
          progress: bool = True, log=print, **overrides) -> TrainResult:
    """Train an ensemble with ``method`` on ``dataset``; recipe defaults, explicit overrides win.

    ``out_dir`` (default ``<project>/runs/<method>-<dataset>-<config hash>``) holds checkpoints, the
    final weights (``weights.safetensors`` + ``weights.json``) and ``record.json``.
    """
    cfg = make_config(dataset, method, **overrides)
    method_obj = methods.get(cfg.method)
    device = resolve_device(cfg.device)
    out_dir = Path(out_dir) if out_dir is not None else default_run_dir(cfg)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"out_dir {str(out_dir)!r} exists but is not a directory")
    record_path = out_dir / "record.json"

    if record_path.is_file():  # finished before: a no-op that returns the stored result
        record = read_record(record_path)
        ckpt.check_compatible(record["config"], cfg.to_dict(), keys=tuple(cfg.identity()))
        ensemble, _ = ckpt.load_weights(out_dir / "weights", device)
        log(f"run {out_dir} is complete; loaded its weights (delete record.json to retrain)")
        return TrainResult(ensemble, cfg, record, out_dir)

    x_tr, y_tr = _load_split(cfg, "train", device)
    x_te, y_te = _load_split(cfg, "test", device)
    use_augment = data.info(cfg.dataset).augment

    torch.manual_seed(cfg.seed)
    ensemble = build_ensemble(cfg.arch, cfg.dataset, cfg.num_models, cfg.seed,
                              combine=method_obj.combine, device=device)
    optimizer = torch.optim.Adam(ensemble.parameters(), lr=cfg.lr,
                                 fused=device.type == "cuda" or None)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    history, state, start, elapsed = [], {}, 0, 0.0

    found = ckpt.latest_checkpoint(out_dir, warn=log) if resume else None
    if found is not None:
        meta, tensors = found
        ckpt.check_compatible(meta["config"], cfg.to_dict(), keys=tuple(cfg.identity()))
        state = ckpt.load_checkpoint(meta, tensors, ensemble, optimizer, generator, device)
        history, start, elapsed = meta["history"], meta["epoch"], meta.get("elapsed_s", 0.0)
        log(f"resuming {out_dir} after epoch {start}")

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
            ensemble.train()
            perm = torch.randperm(n_train, generator=generator, device=device)
            sums, first_bad = {}, {}
            for b in range(n_batches):
                idx = perm[b * bs:(b + 1) * bs]
                xb, yb = x_tr[idx], y_tr[idx]
                if use_augment:
                    xb = data.augment(xb, generator)
                ctx = methods.StepContext(epoch=epoch, epochs=cfg.epochs, generator=generator,
                                          index=idx, stage=stage, state=state)
                loss, terms = method_obj.loss(ensemble, xb, yb, cfg, ctx)
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
            _raise_if_bad(first_bad, e + 1)
            if method_obj.sequential and epoch == cfg.epochs - 1 and method_obj.end_stage is not None:
                method_obj.end_stage(ensemble, stage, x_tr, y_tr, cfg, state)
            metrics = {"epoch": e + 1, "stage": stage,
                       **{f"train_{k}": (v / n_batches).item() for k, v in sums.items()},
                       **_epoch_metrics(ensemble, x_te, y_te)}
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


def _raise_if_bad(first_bad: dict, epoch: int) -> None:
    for name, b in first_bad.items():
        b = int(b)
        if b >= 0:
            raise NumericalError(
                f"loss term {name!r} became NaN or infinite at epoch {epoch}, batch {b}; training "
                f"stopped and the last good checkpoint (epoch {epoch - 1}) was kept. Lower the "
                f"learning rate or the term's weight.")


def _progress(total, initial, enabled, desc):
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, disable=not enabled, desc=desc, unit="epoch")
