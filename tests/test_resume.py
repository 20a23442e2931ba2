"""A training run killed with SIGKILL at random points resumes to the same final weights.

A real ``python -c "...train(...)"`` subprocess (TRS, two small CNNs, a 128-example subset of
``mnist5k``, 3 epochs) is killed twice. First at a point drawn at random from every kind of
place a run can die: halfway through writing a file (a partial temporary file), after a
temporary file is complete but before its rename, after the rename of the tensors but before
their JSON commit mark, while old checkpoints are deleted, or in the middle of an epoch. Then,
after a restart, at a random moment by an outside ``SIGKILL``. After every kill the same
command is run again. The test checks that each restart resumes from the newest checkpoint that
is complete (verified here, independently of the library), that no temporary file survives, and
that the final weights and metrics are bitwise those of an uninterrupted run with the same seed
and one thread.

The draw is random on every run; set ``TRS_KILL_SEED`` to replay a failure (the seed is in
every assertion message).
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import trs_lib.train as T

SETTINGS = dict(dataset="mnist5k", method="trs", num_models=2, train_subset=128, epochs=3,
                batch_size=64, seed=0, device="cpu")
# Speed only, the same in every run compared: the per-epoch metrics use the first TEST_POINTS
# test examples (all 1,000 by default) and COS_POINTS of them for the gradient cosine (500).
TEST_POINTS = 200
COS_POINTS = 64

# The one command. The kill plan comes from the environment, so every restart runs the same
# command line; TRS_TEST_KILL is read by the harness only, never by trs_lib.
SCRIPT = r"""
import os, signal, sys
import torch
torch.set_num_threads(1)
import trs_lib.atomic as A
import trs_lib.train as T
from trs_lib import methods

T.COS_EVAL_POINTS = %(cos)d
_load = T._load_split
T._load_split = lambda cfg, split, device: tuple(
    t[: %(test)d] if split == "test" else t for t in _load(cfg, split, device))
plan = os.environ.get("TRS_TEST_KILL", "")
kind, _, n = plan.partition(":")
n = int(n or 0)
calls = {"n": 0}

def die():
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)

def tick():
    calls["n"] += 1
    return calls["n"] == n

if kind == "partial_write":           # the n-th atomic write dies halfway through its data
    real_fdopen = A.os.fdopen
    class Half:
        def __init__(self, f): self.f = f
        def __enter__(self): return self
        def __exit__(self, *a): return self.f.__exit__(*a)
        def write(self, data):
            if tick():
                self.f.write(data[: len(data) // 2]); self.f.flush(); os.fsync(self.f.fileno()); die()
            return self.f.write(data)
        def __getattr__(self, k): return getattr(self.f, k)
    A.os.fdopen = lambda *a, **k: Half(real_fdopen(*a, **k))
elif kind in ("before_rename", "after_rename"):   # the n-th rename of a complete temporary file
    real_replace = os.replace
    def replace(src, dst):
        hit = tick()
        if hit and kind == "before_rename":
            die()
        real_replace(src, dst)
        if hit:
            die()
    A.os.replace = replace
elif kind == "delete":                # the n-th deletion of an old checkpoint file
    import pathlib
    real_unlink = pathlib.Path.unlink
    def unlink(self, *a, **k):
        real_unlink(self, *a, **k)
        if tick():
            die()
    pathlib.Path.unlink = unlink
elif kind == "batch":                 # mid-epoch: the n-th training batch
    m = methods.get("trs")
    def loss(*a, **k):
        if tick():
            die()
        return m.loss(*a, **k)
    methods.REGISTRY["trs"] = methods.Method("trs", loss)

print("started", flush=True)
T.train(out_dir=sys.argv[1], progress=False, log=lambda s: print(s, flush=True), **%(settings)r)
print("finished", flush=True)
""" % {"cos": COS_POINTS, "test": TEST_POINTS, "settings": SETTINGS}

# Where a run can be killed; n counts within the killed process. A 3-epoch run makes 9 atomic
# writes (2 per checkpoint, then weights.safetensors, weights.json, record.json), deletes the
# 2 files of the epoch-1 checkpoint after epoch 3, and runs 6 batches.
KILL_KINDS = {"partial_write": 9, "before_rename": 9, "after_rename": 9, "delete": 2, "batch": 6}


def _complete_checkpoints(folder: Path) -> list[int]:
    """Epochs whose checkpoint is complete, checked here without trs_lib: the JSON parses and
    holds the SHA-256 of the tensor file beside it."""
    good = []
    for js in folder.glob("ckpt-e*.json"):
        try:
            meta = json.loads(js.read_text())
            blob = js.with_suffix(".safetensors").read_bytes()
        except (OSError, ValueError):
            continue
        if hashlib.sha256(blob).hexdigest() == meta.get("tensors_sha256"):
            good.append(int(js.stem[len("ckpt-e"):]))
    return sorted(good)


def _run(out_dir: Path, plan: str = "", kill_after: float | None = None, timeout: float = 300):
    """Run the command once; ``kill_after`` seconds after it prints ``started``, SIGKILL it."""
    env = dict(os.environ, TRS_TEST_KILL=plan, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(out_dir)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = []
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("started") and kill_after is not None:
            time.sleep(kill_after)
            proc.send_signal(signal.SIGKILL)
            break
        if time.monotonic() > deadline:
            proc.kill()
            break
    lines += [ln.rstrip("\n") for ln in proc.stdout]
    proc.wait()
    return proc.returncode, lines


@pytest.fixture(scope="module")
def reference(tmp_path_factory, monkeypatch_module):
    """The uninterrupted run, in this process, on one thread."""
    _patch_speed(monkeypatch_module)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("reference") / "run"
        T.train(out_dir=out, progress=False, log=lambda s: None, **SETTINGS)
    finally:
        torch.set_num_threads(threads)
    return out


def _patch_speed(mp):
    """What the command's script does to T, for a run in this process."""
    load = T._load_split
    mp.setattr(T, "COS_EVAL_POINTS", COS_POINTS)
    mp.setattr(T, "_load_split", lambda cfg, split, device: tuple(
        t[:TEST_POINTS] if split == "test" else t for t in load(cfg, split, device)))


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def _assert_same_result(run: Path, ref: Path, why: str):
    a, b = load_file(run / "weights.safetensors"), load_file(ref / "weights.safetensors")
    assert a.keys() == b.keys(), why
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differing, f"{why}: weights differ from the uninterrupted run in {differing[:5]}"
    ja, jb = json.loads((run / "weights.json").read_text()), json.loads((ref / "weights.json").read_text())
    assert ja["tensors_sha256"] == jb["tensors_sha256"], why
    ra, rb = json.loads((run / "record.json").read_text()), json.loads((ref / "record.json").read_text())
    assert ra["metrics"] == rb["metrics"], f"{why}: metrics differ from the uninterrupted run"


def test_sigkill_at_random_points_resumes_bitwise(tmp_path, reference):
    seed = int(os.environ.get("TRS_KILL_SEED") or random.SystemRandom().randrange(2**32))
    rng = random.Random(seed)
    # a kill point of a random kind, then an outside SIGKILL at a random moment
    kind = rng.choice(sorted(KILL_KINDS))
    runs = [(f"{kind}:{rng.randint(1, KILL_KINDS[kind])}", None), ("", rng.uniform(0.0, 5.0))]
    out = tmp_path / "run"
    story = [f"TRS_KILL_SEED={seed}"]
    for plan, delay in runs:
        before = _complete_checkpoints(out) if out.exists() else []
        code, lines = _run(out, plan, delay)
        story.append(f"plan={plan or 'external'} delay={delay} exit={code} before={before}: "
                     + " | ".join(ln for ln in lines if not ln.startswith("started")))
        why = "\n".join(story)
        resumed = [ln for ln in lines if ln.startswith("resuming")]
        if before and not (out / "record.json").exists() and code == 0:
            assert resumed, f"did not resume\n{why}"
        for ln in resumed:  # a run killed before it got that far prints no such line
            assert ln == f"resuming {out} after epoch {before[-1]}", \
                f"did not resume from the newest complete checkpoint\n{why}"
        if code == 0:
            assert lines[-1] == "finished", why
        else:
            assert code == -signal.SIGKILL, f"the run failed instead of being killed\n{why}"
    code, lines = _run(out)  # the same command once more, without a kill
    story.append(f"final: exit={code}: " + " | ".join(lines))
    why = "\n".join(story)
    assert code == 0 and lines[-1] == "finished", why
    _assert_same_result(out, reference, why)
    leftovers = [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    assert not leftovers, f"temporary files left behind: {leftovers}\n{why}"
    assert len(_complete_checkpoints(out)) >= 1, why


def test_finished_run_is_a_noop(tmp_path, reference):
    """Rerunning a finished run loads it and writes nothing."""
    stamp = {p.name: p.stat().st_mtime_ns for p in reference.iterdir()}
    with pytest.MonkeyPatch.context() as mp:
        _patch_speed(mp)
        messages = []
        result = T.train(out_dir=reference, progress=False, log=messages.append, **SETTINGS)
    assert any("is complete" in m for m in messages)
    assert {p.name: p.stat().st_mtime_ns for p in reference.iterdir()} == stamp
    assert result.history[-1]["epoch"] == SETTINGS["epochs"]
