"""Checkpoints: tensors as safetensors plus a JSON sidecar; nothing is ever unpickled.

A checkpoint of epoch ``e`` is ``ckpt-e{e:04d}.safetensors`` (weights, optimiser moments, every
random generator's state, method state) and ``ckpt-e{e:04d}.json`` (config, epoch, history,
optimiser hyper-parameters, the device type of the trainer's generator, the SHA-256 of the tensor
file and a checksum of its own content, ``content_sha256``). The JSON is written last and
acts as the commit mark: a checkpoint counts only when its JSON parses and the hash matches, so
a run killed mid-write resumes from the last complete one, and a corrupt file never replaces it.
The hash is taken of the bytes in memory, so a write that the disk garbles is caught at load.

Two checkpoints are kept: the newest and the one before it. A checkpoint with a higher epoch than
the one just written (left by an earlier, interrupted run that could not be verified) is left
alone until it is overwritten. Loading into an ensemble of another architecture, member count,
data set or class count fails with :class:`CheckpointMismatchError` naming both sides.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load as st_load, save as st_save

from .atomic import CorruptFileError, atomic_write_bytes, atomic_write_json, read_json, sha256_bytes
from .data import DATASETS
from .ensemble import build_ensemble

__all__ = ["save_checkpoint", "load_checkpoint", "latest_checkpoint", "list_checkpoints",
           "save_weights", "load_weights", "load_weights_into", "check_compatible", "describe",
           "CheckpointMismatchError", "FORMAT"]

FORMAT = "trs_lib.checkpoint/1"
_KEEP = 2
_REQUIRED = ("config", "epoch", "history", "optimizer", "tensors_sha256")


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
    blob = st_save(tensors)
    atomic_write_bytes(st_path, blob)
    sidecar = dict(meta, format=FORMAT, epoch=epoch, optimizer=opt_meta,
                   generator_device=generator.device.type if generator is not None else None,
                   tensors_sha256=sha256_bytes(blob), tensors_file=st_path.name)
    try:
        atomic_write_json(js_path, sidecar, checksum=True)  # the commit mark: written last
    except BaseException:
        st_path.unlink(missing_ok=True)  # uncommitted tensors are of no use to anyone
        raise
    older = [e for e in list_checkpoints(folder) if e < epoch]
    for old_epoch in older[:len(older) - (_KEEP - 1)]:
        st_old, js_old = _paths(folder, old_epoch)
        js_old.unlink(missing_ok=True)  # un-commit first, then drop the tensors
        st_old.unlink(missing_ok=True)
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
    meta = read_json(js_path, require_checksum=True)
    if meta.get("format") != FORMAT:
        raise CorruptFileError(f"{js_path}: unknown checkpoint format {meta.get('format')!r}, expected {FORMAT!r}")
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise CorruptFileError(f"{js_path}: not a complete checkpoint sidecar, missing {missing}")
    if meta["epoch"] != epoch:
        raise CorruptFileError(f"{js_path}: says epoch {meta['epoch']!r} but its name says {epoch}")
    tensors = _read_tensors(st_path, meta["tensors_sha256"], js_path)
    meta["_source"] = str(js_path)  # not saved: lets errors name the file
    return meta, tensors


def _read_tensors(st_path: Path, sha256: str, js_path: Path) -> dict:
    """The tensors of ``st_path`` after checking them against the SHA-256 of its sidecar."""
    if not st_path.is_file():
        raise CorruptFileError(f"{st_path}: tensor file is missing (its sidecar {js_path.name} exists)")
    blob = st_path.read_bytes()
    if sha256_bytes(blob) != sha256:
        raise CorruptFileError(f"{st_path}: SHA-256 does not match {js_path.name}; the file is truncated or corrupt")
    try:
        return st_load(blob)
    except Exception as err:  # safetensors raises its own error types
        raise CorruptFileError(f"{st_path}: not a readable safetensors file ({err})") from None


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
                     keys=("arch", "num_models", "dataset", "method"), source=None) -> None:
    """Refuse a checkpoint whose architecture, member count, data set or method differs.

    The error lists every differing key with the checkpoint's value and this run's.
    """
    diff = [k for k in keys if meta_config.get(k) != config.get(k)]
    if diff:
        theirs = ", ".join(f"{k}={meta_config.get(k)!r}" for k in diff)
        ours = ", ".join(f"{k}={config.get(k)!r}" for k in diff)
        where = f"checkpoint {source}" if source else "the checkpoint"
        raise CheckpointMismatchError(
            f"{where} was made with {theirs} but this run has {ours}; use another out_dir "
            f"or the checkpoint's settings")


def load_checkpoint(meta: dict, tensors: dict, ensemble, optimizer, generator, device) -> dict:
    """Restore model, optimiser and generators in place; returns the method state tensors."""
    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    source = meta.get("_source", "checkpoint")
    saved_on = meta.get("generator_device")
    if generator is not None and saved_on not in (None, generator.device.type):
        raise CheckpointMismatchError(
            f"{source} was written on device type {saved_on!r} but this run uses "
            f"{generator.device.type!r}; resume on the same kind of device (device={saved_on!r})")
    _load_model_state(ensemble, model_state, source=source)
    _restore_optimizer(optimizer, tensors, meta["optimizer"], device)
    _restore_rng(tensors, generator)
    return {k[len("method."):]: v.to(device) for k, v in tensors.items() if k.startswith("method.")}


_ARCH_SIGNATURE = {"fc2.weight": "small_cnn", "layer1.0.conv1.weight": "resnet20"}
_CLASSIFIER = {"small_cnn": "fc2.weight", "resnet20": "fc.weight"}


def describe(state: dict) -> dict:
    """What an ensemble state dict (or an ensemble) holds: ``arch``, ``num_models``,
    ``num_classes`` and ``in_channels`` (``None`` where it cannot tell)."""
    if hasattr(state, "state_dict"):
        state = state.state_dict()
    members = sorted({int(k.split(".")[1]) for k in state
                      if k.startswith("members.") and k.split(".")[1].isdigit()})
    first = {k[len("members.0."):]: v for k, v in state.items() if k.startswith("members.0.")}
    arch = next((a for key, a in _ARCH_SIGNATURE.items() if key in first), None)
    head = first.get(_CLASSIFIER.get(arch, ""))
    conv = first.get("conv1.weight")
    return {"arch": arch, "num_models": len(members),
            "num_classes": int(head.shape[0]) if head is not None else None,
            "in_channels": int(conv.shape[1]) if conv is not None and conv.dim() == 4 else None}


def _describe_config(cfg: dict) -> dict:
    d = DATASETS.get(cfg.get("dataset"))
    return {"arch": cfg.get("arch"), "num_models": cfg.get("num_models"),
            "num_classes": d.num_classes if d else None, "in_channels": d.channels if d else None,
            "dataset": cfg.get("dataset")}


def _mismatch(source: str, theirs: dict, ours: dict, keys) -> CheckpointMismatchError | None:
    diff = [k for k in keys if theirs.get(k) != ours.get(k)]
    if not diff:
        return None
    return CheckpointMismatchError(
        f"{source} holds " + ", ".join(f"{k}={theirs.get(k)!r}" for k in diff)
        + " but the ensemble it is loaded into has " + ", ".join(f"{k}={ours.get(k)!r}" for k in diff))


def _load_model_state(ensemble, state: dict, source: str) -> None:
    own = ensemble.state_dict()
    err = _mismatch(source, describe(state), describe(own),
                    ("arch", "num_models", "num_classes", "in_channels"))
    if err is not None:
        raise err
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
    st_path, js_path = _weight_files(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in ensemble.state_dict().items()}
    blob = st_save(tensors)
    atomic_write_bytes(st_path, blob)
    atomic_write_json(js_path, dict(extra or {}, format=FORMAT, config=config, combine=ensemble.combine,
                                    tensors_sha256=sha256_bytes(blob)), checksum=True)
    return st_path


def _weight_files(path) -> tuple[Path, Path]:
    """``(<stem>.safetensors, <stem>.json)`` for a weights path given with either suffix or none;
    a stem may hold dots (``trs_c0.5-seed0``), so only those two suffixes are stripped."""
    path = Path(path)
    if path.suffix in (".safetensors", ".json"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".safetensors"), path.with_name(path.name + ".json")


def _read_weights(path) -> tuple[dict, dict, Path]:
    path = Path(path)
    st_path, js_path = _weight_files(path)
    if not js_path.is_file():
        raise FileNotFoundError(f"no weights sidecar {js_path} (weights are saved as "
                                f"{path.name}.safetensors + {path.name}.json)")
    meta = read_json(js_path, require_checksum=True)
    missing = [k for k in ("format", "config", "tensors_sha256") if k not in meta]
    if missing or meta["format"] != FORMAT or not isinstance(meta["config"], dict):
        raise CorruptFileError(f"{js_path}: not a weights sidecar of format {FORMAT!r}"
                               + (f" (missing {missing})" if missing else ""))
    tensors = _read_tensors(st_path, meta["tensors_sha256"], js_path)
    return meta, tensors, st_path


def load_weights(path, device="cpu", expect: dict | None = None):
    """Rebuild an ensemble from ``save_weights`` files (no pickle anywhere); returns ``(ensemble, meta)``.

    ``expect`` (e.g. ``{"arch": "resnet20", "dataset": "cifar10", "num_models": 3}``; keys among
    arch, dataset, num_models, num_classes, in_channels) is checked against the file's config
    first, with an error naming both sides.
    """
    meta, tensors, st_path = _read_weights(path)
    cfg = meta["config"]
    if expect:
        unknown = sorted(set(expect) - {"arch", "dataset", "num_models", "num_classes", "in_channels"})
        if unknown:
            raise ValueError(f"unknown keys {unknown} in expect; valid keys: "
                             f"['arch', 'dataset', 'in_channels', 'num_classes', 'num_models']")
        theirs = _describe_config(cfg)
        ours = dict(_describe_config(expect), **expect) if "dataset" in expect else dict(expect)
        err = _mismatch(str(st_path), theirs, ours, [k for k in theirs if k in expect])
        if err is not None:
            raise err
    ensemble = build_ensemble(cfg["arch"], cfg["dataset"], cfg["num_models"], combine=meta.get("combine", "mean_softmax"))
    _load_model_state(ensemble, tensors, source=str(st_path))
    return ensemble.to(device).eval(), meta


def load_weights_into(ensemble, path) -> dict:
    """Load ``save_weights`` files into an existing ``ensemble`` in place; returns the sidecar.

    An ensemble of another architecture, member count, class count or input channels is
    refused with an error naming both sides, before any weight is copied.
    """
    meta, tensors, st_path = _read_weights(path)
    err = _mismatch(str(st_path), _describe_config(meta["config"]), describe(ensemble),
                    ("arch", "num_models", "num_classes", "in_channels"))
    if err is not None:
        raise err
    _load_model_state(ensemble, tensors, source=str(st_path))
    return meta
