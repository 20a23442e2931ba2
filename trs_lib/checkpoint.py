"""Checkpoints: tensors as safetensors plus a JSON sidecar; nothing is ever unpickled.

A checkpoint of epoch ``e`` is ``ckpt-e{e:04d}.safetensors`` (weights, optimiser moments, every
random generator's state, method state) and ``ckpt-e{e:04d}.json`` (config, epoch, history,
optimiser hyper-parameters and the SHA-256 of the tensor file). The JSON is written last and
acts as the commit mark: a checkpoint counts only when its JSON parses and the hash matches, so
a run killed mid-write resumes from the last complete one, and a corrupt file never replaces it.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load as st_load, save as st_save

from .atomic import CorruptFileError, atomic_write_bytes, atomic_write_json, read_json, sha256_file

__all__ = ["save_checkpoint", "load_checkpoint", "latest_checkpoint", "list_checkpoints",
           "save_weights", "load_weights", "check_compatible", "CheckpointMismatchError", "FORMAT"]

FORMAT = "trs_lib.checkpoint/1"
_KEEP = 2


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the model it is loaded into."""


def _paths(folder: Path, epoch: int) -> tuple[Path, Path]:
    stem = folder / f"ckpt-e{epoch:04d}"
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def _optimizer_tensors(optimizer) -> tuple[dict, dict]:
    state = optimizer.state_dict()
    tensors, meta = {}, {"param_groups": state["param_groups"], "state_keys": {}}
    for idx, st in state["state"].items():
        meta["state_keys"][str(idx)] = {}
        for key, value in st.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"optim.{idx}.{key}"] = t.detach().cpu().contiguous()
            meta["state_keys"][str(idx)][key] = torch.is_tensor(value)
    return tensors, meta


def _restore_optimizer(optimizer, tensors: dict, meta: dict, device) -> None:
    state = {}
    for idx, keys in meta["state_keys"].items():
        state[int(idx)] = {}
        for key, was_tensor in keys.items():
            t = tensors[f"optim.{idx}.{key}"]
            # Adam keeps ``step`` on the CPU unless it is capturable/fused; load_state_dict casts.
            state[int(idx)][key] = t.to(device) if (was_tensor and key != "step") else (t if was_tensor else t.item())
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _rng_tensors(generator: torch.Generator | None) -> dict:
    out = {"rng.torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng.cuda{i}"] = s
    if generator is not None:
        out["rng.generator"] = generator.get_state()
    return out


def _restore_rng(tensors: dict, generator: torch.Generator | None) -> None:
    torch.set_rng_state(tensors["rng.torch_cpu"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda")]
        if states:
            torch.cuda.set_rng_state_all(states)
    if generator is not None and "rng.generator" in tensors:
        generator.set_state(tensors["rng.generator"])


def save_checkpoint(folder, epoch: int, ensemble, optimizer, generator, meta: dict,
                    method_state: dict | None = None) -> Path:
    """Write the checkpoint of ``epoch`` atomically and drop all but the newest two."""
    folder = Path(folder)
    st_path, js_path = _paths(folder, epoch)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in ensemble.state_dict().items()}
    opt_tensors, opt_meta = _optimizer_tensors(optimizer)
    tensors.update(opt_tensors)
    tensors.update(_rng_tensors(generator))
    for k, v in (method_state or {}).items():
        tensors[f"method.{k}"] = v.detach().cpu().contiguous()
    atomic_write_bytes(st_path, st_save(tensors))
    sidecar = dict(meta, format=FORMAT, epoch=epoch, optimizer=opt_meta,
                   tensors_sha256=sha256_file(st_path), tensors_file=st_path.name)
    atomic_write_json(js_path, sidecar)
    for old_epoch in list_checkpoints(folder)[:-_KEEP]:
        for p in _paths(folder, old_epoch):
            p.unlink(missing_ok=True)
    return js_path


def list_checkpoints(folder) -> list[int]:
    """Epochs that have a checkpoint JSON in ``folder``, ascending (not yet verified)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    epochs = []
    for p in folder.glob("ckpt-e*.json"):
        try:
            epochs.append(int(p.stem[len("ckpt-e"):]))
        except ValueError:
            continue
    return sorted(epochs)


def _read_verified(folder: Path, epoch: int) -> tuple[dict, dict]:
    st_path, js_path = _paths(folder, epoch)
    meta = read_json(js_path)
    if meta.get("format") != FORMAT:
        raise CorruptFileError(f"{js_path}: unknown checkpoint format {meta.get('format')!r}, expected {FORMAT!r}")
    if not st_path.is_file():
        raise CorruptFileError(f"{st_path}: tensor file of the checkpoint is missing")
    if sha256_file(st_path) != meta.get("tensors_sha256"):
        raise CorruptFileError(f"{st_path}: SHA-256 does not match {js_path.name}; the file is truncated or corrupt")
    try:
        tensors = st_load(st_path.read_bytes())
    except Exception as err:  # safetensors raises its own error types
        raise CorruptFileError(f"{st_path}: not a readable safetensors file ({err})") from None
    return meta, tensors


def latest_checkpoint(folder, warn=print) -> tuple[dict, dict] | None:
    """The newest checkpoint in ``folder`` that verifies, as ``(meta, tensors)``, or ``None``.

    Corrupt newer checkpoints are reported through ``warn`` and skipped, never deleted.
    """
    folder = Path(folder)
    for epoch in reversed(list_checkpoints(folder)):
        try:
            return _read_verified(folder, epoch)
        except (CorruptFileError, OSError) as err:
            warn(f"skipping checkpoint of epoch {epoch}: {err}")
    return None


def check_compatible(meta_config: dict, config: dict,
                     keys=("arch", "num_models", "dataset", "method")) -> None:
    """Refuse a checkpoint whose architecture, member count, data set or method differs."""
    for key in keys:
        if meta_config.get(key) != config.get(key):
            raise CheckpointMismatchError(
                f"checkpoint was made with {key}={meta_config.get(key)!r} but this run has "
                f"{key}={config.get(key)!r}")


def load_checkpoint(meta: dict, tensors: dict, ensemble, optimizer, generator, device) -> dict:
    """Restore model, optimiser and generators in place; returns the method state tensors."""
    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    _load_model_state(ensemble, model_state, source="checkpoint")
    _restore_optimizer(optimizer, tensors, meta["optimizer"], device)
    _restore_rng(tensors, generator)
    return {k[len("method."):]: v.to(device) for k, v in tensors.items() if k.startswith("method.")}


def _load_model_state(ensemble, state: dict, source: str) -> None:
    own = ensemble.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointMismatchError(
            f"{source} does not fit this ensemble: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    for k, v in state.items():
        if own[k].shape != v.shape:
            raise CheckpointMismatchError(
                f"{source}: {k} has shape {tuple(v.shape)} but this ensemble expects {tuple(own[k].shape)}")
    ensemble.load_state_dict(state)


def save_weights(path, ensemble, config: dict, extra: dict | None = None) -> Path:
    """Final weights as ``<path>.safetensors`` plus ``<path>.json`` (config and combination)."""
    path = Path(path)
    st_path, js_path = path.with_suffix(".safetensors"), path.with_suffix(".json")
    tensors = {k: v.detach().cpu().contiguous() for k, v in ensemble.state_dict().items()}
    atomic_write_bytes(st_path, st_save(tensors))
    atomic_write_json(js_path, dict(extra or {}, format=FORMAT, config=config, combine=ensemble.combine,
                                    tensors_sha256=sha256_file(st_path)))
    return st_path


def load_weights(path, device="cpu"):
    """Rebuild an ensemble from ``save_weights`` files (no pickle anywhere)."""
    from .ensemble import build_ensemble
    path = Path(path)
    st_path, js_path = path.with_suffix(".safetensors"), path.with_suffix(".json")
    if not js_path.is_file():
        raise FileNotFoundError(f"no weights sidecar {js_path}")
    meta = read_json(js_path)
    if sha256_file(st_path) != meta.get("tensors_sha256"):
        raise CorruptFileError(f"{st_path}: SHA-256 does not match {js_path.name}; the file is truncated or corrupt")
    cfg = meta["config"]
    ensemble = build_ensemble(cfg["arch"], cfg["dataset"], cfg["num_models"], combine=meta.get("combine", "mean_softmax"))
    _load_model_state(ensemble, st_load(st_path.read_bytes()), source=str(st_path))
    return ensemble.to(device).eval(), meta
