"""Atomic writes and safe loading: truncated or corrupt checkpoint and results files are detected
with an error naming the file; a corrupt newer checkpoint never replaces the last good one; a
write that fails for lack of space leaves the previous checkpoint intact and no temporary file;
loading into the wrong ensemble names both sides; nothing is ever unpickled."""
from __future__ import annotations

import errno
import json
import os
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch

import trs_lib.atomic as A
import trs_lib.train as T
from trs_lib import checkpoint as ckpt
from trs_lib.atomic import CorruptFileError
from trs_lib.ensemble import Ensemble, build_ensemble
from trs_lib.models import SmallCNN
from trs_lib.records import read_record, write_record

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = dict(dataset="mnist5k", method="vanilla", num_models=2, train_subset=128, batch_size=64,
                epochs=2, seed=0, device="cpu")


def _fast(mp):
    load = T._load_split
    mp.setattr(T, "COS_EVAL_POINTS", 32)
    mp.setattr(T, "_load_split", lambda cfg, split, device: tuple(
        t[:100] if split == "test" else t for t in load(cfg, split, device)))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 2-epoch run: ckpt-e0001.*, ckpt-e0002.*, weights.*, record.json."""
    with pytest.MonkeyPatch.context() as mp:
        _fast(mp)
        out = tmp_path_factory.mktemp("finished") / "run"
        T.train(out_dir=out, progress=False, log=lambda s: None, **SETTINGS)
    return out


@pytest.fixture
def fast(monkeypatch):
    _fast(monkeypatch)
    return monkeypatch


@pytest.fixture
def run(finished, tmp_path):
    """A private copy of the finished run."""
    dst = tmp_path / "run"
    shutil.copytree(finished, dst)
    return dst


# ---------------------------------------------------------------- corruptions
def _truncate(p: Path):
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _empty(p: Path):
    p.write_bytes(b"")


def _flip(p: Path):
    """Change one byte in the middle; for JSON, a digit of a number, so the file still parses."""
    data = bytearray(p.read_bytes())
    if p.suffix == ".json":
        i = re.compile(rb"\d\.\d").search(bytes(data), len(data) // 3).start() + 2
        data[i] = ord("7") if data[i] != ord("7") else ord("3")
    else:
        data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))


def _garbage(p: Path):
    p.write_bytes(p.read_bytes() + b"\x00garbage")


def _not_an_object(p: Path):
    p.write_text("[1, 2, 3]\n")


def _checksum_key_damaged(p: Path):
    """A byte flipped in the checksum's own key name must not switch the check off."""
    p.write_text(p.read_text().replace(A.CHECKSUM_KEY, A.CHECKSUM_KEY.replace("256", "756")))


CORRUPTIONS = {"truncated": _truncate, "empty": _empty, "flipped": _flip, "garbage": _garbage}


def _tmp_files(folder: Path):
    return [p.name for p in folder.rglob("*.tmp")]


@pytest.mark.parametrize("suffix,how", [
    *[(s, h) for s in ("safetensors", "json") for h in (*CORRUPTIONS, "deleted")],
    ("json", "not-an-object"), ("json", "checksum-key")])
def test_corrupt_newest_checkpoint_is_named_and_skipped(run, suffix, how):
    bad = run / f"ckpt-e0002.{suffix}"
    {"not-an-object": _not_an_object, "checksum-key": _checksum_key_damaged, "deleted": Path.unlink,
     **CORRUPTIONS}[how](bad)
    warnings = []
    meta, tensors = ckpt.latest_checkpoint(run, warn=warnings.append)
    assert meta["epoch"] == 1, "the last good checkpoint must be the one used"
    if how == "deleted" and suffix == "json":
        assert warnings == []  # no commit mark: not a checkpoint at all
        return
    assert len(warnings) == 1 and "epoch 2" in warnings[0], warnings
    assert bad.name in warnings[0], f"the message must name the file: {warnings[0]}"
    if how != "deleted":
        assert bad.exists(), "a corrupt checkpoint is reported, never deleted"


@pytest.mark.parametrize("name,how", [
    *[(n, h) for n in ("record.json", "weights.json", "weights.safetensors") for h in (*CORRUPTIONS, "deleted")],
    ("weights.json", "checksum-key")])  # records may come without a checksum (other tools)
def test_corrupt_final_files_are_named(run, fast, name, how):
    bad = run / name
    if how == "deleted":
        bad.unlink()
    elif how == "checksum-key":
        _checksum_key_damaged(bad)
    else:
        CORRUPTIONS[how](bad)
    if name == "record.json" and how == "deleted":
        return  # without its record the run is unfinished and resumes: see below
    if name == "record.json":
        with pytest.raises(CorruptFileError, match=re.escape(str(bad))):
            read_record(bad)
    else:
        with pytest.raises((CorruptFileError, FileNotFoundError)) as info:
            ckpt.load_weights(run / "weights")
        assert str(bad) in str(info.value) or bad.name in str(info.value), str(info.value)
    # the trainer's no-op path on a finished run says what is wrong and how to fix it
    with pytest.raises((CorruptFileError, FileNotFoundError)) as info:
        T.train(out_dir=run, progress=False, log=lambda s: None, **SETTINGS)
    msg = str(info.value)
    assert name in msg and "delete record.json and weights.*" in msg, msg


def test_the_suggested_fix_rebuilds_the_same_result(run, finished, fast):
    """Deleting a damaged record and weights rebuilds them from the last checkpoint, unchanged."""
    _flip(run / "weights.safetensors")
    for name in ("record.json", "weights.json", "weights.safetensors"):
        (run / name).unlink()
    T.train(out_dir=run, progress=False, log=lambda s: None, **SETTINGS)
    assert (run / "weights.safetensors").read_bytes() == (finished / "weights.safetensors").read_bytes()
    assert read_record(run / "record.json")["metrics"] == read_record(finished / "record.json")["metrics"]


@pytest.mark.parametrize("how", ["flipped", "truncated"])
def test_corrupt_newer_checkpoint_never_replaces_the_good_one(run, finished, fast, how):
    """An unfinished run whose newest checkpoint is damaged resumes from the one before and ends
    with the same weights as the undamaged run; the damaged one is overwritten by a good one."""
    for name in ("record.json", "weights.json", "weights.safetensors"):
        (run / name).unlink()
    CORRUPTIONS[how](run / "ckpt-e0002.safetensors")
    messages = []
    T.train(out_dir=run, progress=False, log=messages.append, **SETTINGS)
    assert any("skipping checkpoint of epoch 2" in m and "ckpt-e0002.safetensors" in m for m in messages), messages
    assert f"resuming {run} after epoch 1" in messages
    assert (run / "weights.safetensors").read_bytes() == (finished / "weights.safetensors").read_bytes()
    assert ckpt.latest_checkpoint(run)[0]["epoch"] == 2
    assert ckpt.list_checkpoints(run) == [1, 2]


def test_keep_two_never_counts_a_newer_unverified_checkpoint(tmp_path):
    """Writing epoch 2 keeps epoch 1 even when a stale epoch 3 (and 4) lie around."""
    ens = build_ensemble("small_cnn", "mnist5k", 2, 0)
    opt = torch.optim.Adam(ens.parameters())
    meta = {"config": {}, "history": []}
    for e in (3, 4, 1):  # a newer epoch is never deleted by an older one's save
        ckpt.save_checkpoint(tmp_path, e, ens, opt, None, meta)
    assert ckpt.list_checkpoints(tmp_path) == [1, 3, 4]
    (tmp_path / "ckpt-e0003.safetensors").write_bytes(b"damaged")
    ckpt.save_checkpoint(tmp_path, 2, ens, opt, None, meta)
    assert ckpt.list_checkpoints(tmp_path) == [1, 2, 3, 4]
    ckpt.save_checkpoint(tmp_path, 3, ens, opt, None, meta)  # overwrites the damaged one
    assert ckpt.list_checkpoints(tmp_path) == [2, 3, 4]


# ---------------------------------------------------------------- results files
_CONFIG = {"method": "trs", "dataset": "mnist5k", "seed": 0, "epochs": 1}


def test_results_record_corruptions_are_named(tmp_path):
    path = tmp_path / "results" / "train" / "cell.json"
    write_record(path, "train", _CONFIG, {"acc": 0.987654321}, 1.0, "cpu")
    assert read_record(path)["metrics"] == {"acc": 0.987654321}
    text = path.read_text()
    cases = {
        "a changed number": text.replace("0.987654321", "0.997654321"),
        "truncated": text[: len(text) // 2],
        "empty": "",
        "a list": "[]",
        "a missing section": json.dumps({"kind": "train", "config": {}}),
        "binary": "\udcff",
    }
    for what, content in cases.items():
        path.write_bytes(content.encode("utf-8", "surrogateescape"))
        with pytest.raises(CorruptFileError) as info:
            read_record(path)
        assert str(path) in str(info.value), (what, str(info.value))
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope.json"))):
        read_record(tmp_path / "nope.json")


def test_nan_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="refusing to write NaN"):
        write_record(tmp_path / "r.json", "train", _CONFIG, {"acc": float("nan")}, 1.0)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- out of disk
class _DiskFull:
    """Replaces ``os.fdopen`` in trs_lib.atomic: the ``n``-th write stores half its data, then
    fails with ENOSPC, as a full disk does."""

    def __init__(self, n: int):
        self.n, self.calls, self.real = n, 0, os.fdopen

    def __call__(self, *args, **kwargs):
        f = self.real(*args, **kwargs)
        self.calls += 1
        if self.calls != self.n:
            return f
        real_write = f.write

        def write(data):
            real_write(data[: len(data) // 2])
            f.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        f.write = write
        return f


@pytest.mark.parametrize("n,target", [(3, "ckpt-e0002.safetensors"), (4, "ckpt-e0002.json"),
                                      (5, "weights.safetensors")])
def test_disk_full_keeps_the_previous_checkpoint(tmp_path, finished, fast, n, target):
    out = tmp_path / "run"
    fast.setattr(A.os, "fdopen", _DiskFull(n))
    with pytest.raises(OSError) as info:
        T.train(out_dir=out, progress=False, log=lambda s: None, **SETTINGS)
    assert info.value.errno == errno.ENOSPC
    assert target in str(info.value) and "untouched" in str(info.value), str(info.value)
    assert _tmp_files(out) == []
    good = 1 if n < 5 else 2
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"ckpt-e{e:04d}.{x}" for e in range(1, good + 1) for x in ("json", "safetensors"))
    assert ckpt.latest_checkpoint(out)[0]["epoch"] == good
    fast.undo()
    _fast(fast)
    T.train(out_dir=out, progress=False, log=lambda s: None, **SETTINGS)  # space is back: resume
    assert (out / "weights.safetensors").read_bytes() == (finished / "weights.safetensors").read_bytes()


def test_a_real_failed_write_keeps_the_previous_version(tmp_path):
    """A kernel-level write failure (file size limit, EFBIG) in the middle of the data."""
    resource = pytest.importorskip("resource")
    import signal
    path = tmp_path / "ckpt.safetensors"
    A.atomic_write_bytes(path, b"old" * 10)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, hard))
    try:
        with pytest.raises(OSError) as info:
            A.atomic_write_bytes(path, b"x" * (1 << 20))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
    assert info.value.errno == errno.EFBIG and str(path) in str(info.value)
    assert path.read_bytes() == b"old" * 10
    assert _tmp_files(tmp_path) == []


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path):
    dead = tmp_path / ".ckpt-e0001.safetensors.pid999999999.abc123.tmp"
    mine = tmp_path / f".record.json.pid{os.getpid()}.xyz.tmp"
    other = tmp_path / "notes.tmp"
    for p in (dead, mine, other):
        p.write_bytes(b"partial")
    assert A.remove_stale_temp(tmp_path) == [dead]
    assert not dead.exists() and mine.exists() and other.exists()


# ---------------------------------------------------------------- safe loading
def test_loading_into_the_wrong_ensemble_names_both_sides(run):
    weights = run / "weights"  # 2 small CNNs for mnist5k (1 channel, 10 classes)
    cases = {
        "num_models": (build_ensemble("small_cnn", "mnist5k", 3, 0), "num_models=2", "num_models=3"),
        "arch": (build_ensemble("resnet20", "mnist5k", 2, 0), "arch='small_cnn'", "arch='resnet20'"),
        "channels": (build_ensemble("small_cnn", "cifar10", 2, 0), "in_channels=1", "in_channels=3"),
        "classes": (Ensemble([SmallCNN(1, 5), SmallCNN(1, 5)]), "num_classes=10", "num_classes=5"),
    }
    for what, (ens, theirs, ours) in cases.items():
        before = {k: v.clone() for k, v in ens.state_dict().items()}
        with pytest.raises(ckpt.CheckpointMismatchError) as info:
            ckpt.load_weights_into(ens, weights)
        msg = str(info.value)
        assert theirs in msg and ours in msg and "weights.safetensors" in msg, (what, msg)
        assert all(torch.equal(before[k], v) for k, v in ens.state_dict().items()), "weights were copied"
    with pytest.raises(ckpt.CheckpointMismatchError, match=r"dataset='mnist5k'.*dataset='cifar10'"):
        ckpt.load_weights(weights, expect={"dataset": "cifar10"})
    with pytest.raises(ckpt.CheckpointMismatchError, match=r"num_models=2.*num_models=4"):
        ckpt.load_weights(weights, expect={"num_models": 4, "arch": "small_cnn"})
    ens, _ = ckpt.load_weights(weights, expect={"dataset": "mnist5k", "num_models": 2, "num_classes": 10})
    assert ens.num_members == 2
    right = build_ensemble("small_cnn", "mnist5k", 2, 5)
    ckpt.load_weights_into(right, weights)
    assert all(torch.equal(a, b) for a, b in zip(right.state_dict().values(), ens.state_dict().values()))


@pytest.mark.parametrize("change,theirs,ours", [
    (dict(num_models=3), "num_models=2", "num_models=3"),
    (dict(dataset="fashion_mnist"), "dataset='mnist5k'", "dataset='fashion_mnist'"),
    (dict(arch="resnet20"), "arch='small_cnn'", "arch='resnet20'"),
])
@pytest.mark.parametrize("state", ["finished", "unfinished"])
def test_resuming_a_run_folder_with_other_settings_names_both_sides(run, fast, change, theirs, ours, state):
    if state == "unfinished":
        (run / "record.json").unlink()
    settings = dict(SETTINGS, **change)
    if "dataset" in change:  # no fashion_mnist files here: hand it mnist5k's, the check comes first
        fast.setattr(T, "_load_split", lambda cfg, split, device: T.data.load("mnist5k", split))
    with pytest.raises(ckpt.CheckpointMismatchError) as info:
        T.train(out_dir=run, progress=False, log=lambda s: None, **settings)
    msg = str(info.value)
    assert theirs in msg and ours in msg, msg
    assert ("record.json" if state == "finished" else "ckpt-e0002.json") in msg, msg


def test_generator_device_mismatch_is_refused(run):
    meta, tensors = ckpt.latest_checkpoint(run)
    meta["generator_device"] = "cuda"
    ens = build_ensemble("small_cnn", "mnist5k", 2, 0)
    with pytest.raises(ckpt.CheckpointMismatchError, match="device type 'cuda'.*'cpu'"):
        ckpt.load_checkpoint(meta, tensors, ens, torch.optim.Adam(ens.parameters()),
                             torch.Generator(), "cpu")


class _Boom:
    def __reduce__(self):
        return (Path.touch, (Path(os.environ["TRS_TEST_MARKER"]),))


def test_nothing_is_unpickled(run, tmp_path, monkeypatch):
    """A pickle planted as a weights or checkpoint file is refused as corrupt, never executed."""
    marker = tmp_path / "executed"
    monkeypatch.setenv("TRS_TEST_MARKER", str(marker))
    payload = pickle.dumps(_Boom())
    for target in (run / "weights.safetensors", run / "ckpt-e0002.safetensors"):
        target.write_bytes(payload)
    with pytest.raises(CorruptFileError):
        ckpt.load_weights(run / "weights")
    assert ckpt.latest_checkpoint(run, warn=lambda s: None)[0]["epoch"] == 1
    # even with a matching SHA-256 the file is parsed as safetensors only
    meta = json.loads((run / "weights.json").read_text())
    meta.pop(A.CHECKSUM_KEY)
    meta["tensors_sha256"] = A.sha256_bytes(payload)
    A.atomic_write_json(run / "weights.json", meta, checksum=True)
    with pytest.raises(CorruptFileError, match="not a readable safetensors file"):
        ckpt.load_weights(run / "weights")
    assert not marker.exists()


def test_library_never_unpickles():
    """No torch.load / pickle.load / numpy allow_pickle in trs_lib; the only unpickler is the
    restricted one of the CIFAR-10 reader (the data set's own format, dicts and arrays only)."""
    offenders = []
    for path in (ROOT / "trs_lib").rglob("*.py"):
        text = path.read_text()
        for pattern in (r"torch\.load\(", r"pickle\.loads?\(", r"allow_pickle\s*=\s*True",
                        r"joblib\.load", r"\bdill\b", r"\bpickle\.Unpickler\b"):
            if re.search(pattern, text):
                offenders.append(f"{path.relative_to(ROOT).as_posix()}: {pattern}")
    assert offenders == ["trs_lib/data.py: \\bpickle\\.Unpickler\\b"], offenders
    data_py = (ROOT / "trs_lib" / "data.py").read_text()
    assert re.search(r"class _CifarUnpickler\(pickle\.Unpickler\)", data_py)
    assert "def find_class" in data_py and "_ALLOWED" in data_py
