"""Bad input to every public entry point gives one clear error and leaves no partial files.

A table of cases: each calls an entry point with one bad value and names the exception it must
raise and the words its message must hold (the bad value, and for names the valid ones). Every
call runs with the working directory, ``runs/`` and ``results/`` pointed at an empty temporary
folder, which must still be empty afterwards.
"""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import trs_lib.train as T
from trs_lib import attacks, checkpoint, data, ensemble, methods, models, recipes, trs
from trs_lib.data import DataNotFoundError

ROOT = Path(__file__).resolve().parents[1]
NAN, INF = float("nan"), float("inf")
PAIRWISE = recipes.PAIRWISE_METHODS


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3))


X = torch.rand(2, 1, 2, 2)
Y = torch.tensor([0, 2])


def train(**kw):
    settings = dict(dataset="mnist5k", method="trs", progress=False, log=lambda s: None)
    settings.update(kw)
    return T.train(**settings)


def attack(name, x=X, y=Y, **kw):
    return attacks.get(name)(_model(), x, y, **kw)


# (id, call, exception, substrings of the message); "{tmp}" in a call's arguments is the folder
CASES = [
    # ---- names: the error lists the valid ones
    ("dataset-unknown", lambda t: train(dataset="mnist6k"), ValueError, ["'mnist6k'", "mnist5k", "cifar10"]),
    ("method-unknown", lambda t: train(method="trss"), ValueError, ["'trss'", "vanilla", "trs_at"]),
    ("arch-unknown", lambda t: train(arch="resnet18"), ValueError, ["'resnet18'", "small_cnn", "resnet20"]),
    ("variant-unknown", lambda t: train(variant="paper"), ValueError, ["'paper'", "seed", "published"]),
    ("config-field-unknown", lambda t: train(epoch=3), ValueError, ["['epoch']", "epochs"]),
    ("device-unknown", lambda t: train(device="gpu"), ValueError, ["'gpu'", "cuda"]),
    ("methods.get", lambda t: methods.get("boost"), ValueError, ["'boost'", "adaboost"]),
    ("models.build-arch", lambda t: models.build("vgg16", "mnist5k"), ValueError, ["'vgg16'", "small_cnn"]),
    ("models.build-dataset", lambda t: models.build("small_cnn", "imagenet"), ValueError, ["'imagenet'", "mnist5k"]),
    ("data.load-dataset", lambda t: data.load("svhn"), ValueError, ["'svhn'", "fashion_mnist"]),
    ("data.load-split", lambda t: data.load("mnist5k", "validation"), ValueError, ["'validation'", "train", "test"]),
    ("ensemble-combine", lambda t: ensemble.Ensemble([_model()], combine="max"), ValueError, ["'max'", "mean_softmax"]),
    ("trs-variant", lambda t: trs.trs_regularizer(torch.zeros(2, 1, 3), "paper"), ValueError, ["'paper'", "seed"]),
    ("resolve_device", lambda t: T.resolve_device("tpu:0"), ValueError, ["'tpu:0'", "auto", "cpu"]),
    ("attacks.get", lambda t: attacks.get("deepfool"), ValueError, ["'deepfool'", "fgsm", "pgd", "cw"]),
    # ---- methods that need pairs
    *[(f"num_models=1-{m}", (lambda m: lambda t: train(method=m, num_models=1))(m), ValueError,
       [repr(m), "num_models >= 2", "got 1"]) for m in PAIRWISE],
    ("trs-pairs-of-1", lambda t: trs.pair_indices(1), ValueError, ["at least 2 members", "got 1"]),
    # ---- numbers out of range or of the wrong type
    ("num_models=0", lambda t: train(method="vanilla", num_models=0), ValueError, ["num_models", "got 0"]),
    ("num_models=1000", lambda t: train(num_models=1000), ValueError, ["num_models", "1000"]),
    ("num_models=2.5", lambda t: train(num_models=2.5), ValueError, ["num_models", "2.5", "float"]),
    ("build_ensemble-0", lambda t: ensemble.build_ensemble(num_models=0), ValueError, ["num_models", "0"]),
    ("epochs=0", lambda t: train(epochs=0), ValueError, ["epochs", "got 0"]),
    ("epochs=-3", lambda t: train(epochs=-3), ValueError, ["epochs", "-3"]),
    ("epochs=1e9", lambda t: train(epochs=10**9), ValueError, ["epochs", "1000000000"]),
    ("epochs='8'", lambda t: train(epochs="8"), ValueError, ["epochs", "'8'", "str"]),
    ("epochs=True", lambda t: train(epochs=True), ValueError, ["epochs", "True", "bool"]),
    ("batch_size=0", lambda t: train(batch_size=0), ValueError, ["batch_size", "got 0"]),
    ("batch_size=1", lambda t: train(batch_size=1), ValueError, ["batch_size", "got 1"]),
    ("batch_size=1e7", lambda t: train(batch_size=10**7), ValueError, ["batch_size", "10000000"]),
    ("lr=0", lambda t: train(lr=0.0), ValueError, ["lr", "0.0"]),
    ("lr=-1e-3", lambda t: train(lr=-1e-3), ValueError, ["lr", "-0.001"]),
    ("lr=nan", lambda t: train(lr=NAN), ValueError, ["lr", "nan"]),
    ("lam=-0.1", lambda t: train(lam=-0.1), ValueError, ["lam", "-0.1"]),
    ("lam=inf", lambda t: train(lam=INF), ValueError, ["lam", "inf"]),
    ("lam=1e9", lambda t: train(lam=1e9), ValueError, ["lam", "1000000000.0"]),
    ("c=-2", lambda t: train(c=-2.0), ValueError, ["c must", "-2.0"]),
    ("c=nan", lambda t: train(c=NAN), ValueError, ["c must", "nan"]),
    ("c='2'", lambda t: train(c="2"), ValueError, ["c must", "'2'"]),
    ("coeff=-1", lambda t: train(variant="published", coeff=-1.0), ValueError, ["coeff", "-1.0"]),
    ("lamda=1e9", lambda t: train(variant="published", lamda=1e9), ValueError, ["lamda", "1000000000.0"]),
    ("at_eps=-0.1", lambda t: train(method="trs_at", at_eps=-0.1), ValueError, ["at_eps", "-0.1"]),
    ("at_eps=2", lambda t: train(method="trs_at", at_eps=2.0), ValueError, ["at_eps", "2.0", "[0, 1]"]),
    ("adv_eps=1.5", lambda t: train(adv_eps=1.5), ValueError, ["adv_eps", "1.5"]),
    ("dverge_eps=nan", lambda t: train(method="dverge", dverge_eps=NAN), ValueError, ["dverge_eps", "nan"]),
    ("seed=-1", lambda t: train(seed=-1), ValueError, ["seed", "-1"]),
    ("train_subset=1", lambda t: train(train_subset=1), ValueError, ["train_subset", "got 1"]),
    ("train_subset=-5", lambda t: train(train_subset=-5), ValueError, ["train_subset", "-5"]),
    ("download='yes'", lambda t: train(download="yes"), ValueError, ["download", "'yes'"]),
    # ---- paths
    ("data_root-is-a-file", lambda t: train(data_root=str(t / "file.txt")), NotADirectoryError, ["file.txt", "not a directory"]),
    ("data_root-not-a-path", lambda t: train(data_root=123), ValueError, ["data_root", "123"]),
    ("data.load-root-file", lambda t: data.load("mnist5k", root=t / "file.txt"), NotADirectoryError, ["file.txt"]),
    ("data.load-missing", lambda t: data.load("mnist", root=t / "nodata"), DataNotFoundError, ["'mnist'", "nodata", "download=True"]),
    ("out_dir-is-a-file", lambda t: train(out_dir=t / "file.txt"), NotADirectoryError, ["file.txt", "not a directory"]),
    ("out_dir-under-a-file", lambda t: train(out_dir=t / "file.txt" / "run"), NotADirectoryError, ["file.txt", "is a file"]),
    ("out_dir-not-a-path", lambda t: train(out_dir=3), ValueError, ["out_dir", "3"]),
    ("resume='no'", lambda t: train(resume="no"), ValueError, ["resume", "'no'"]),
    ("log-not-callable", lambda t: train(log="print"), ValueError, ["log", "'print'"]),
    ("load_weights-missing", lambda t: checkpoint.load_weights(t / "nothing"), FileNotFoundError, ["nothing.json"]),
    ("load_weights-expect-key", lambda t: _weights_then(t, lambda p: checkpoint.load_weights(p, expect={"archs": "x"})),
     ValueError, ["archs", "num_models"]),
    # ---- attack inputs: dtype, shape, range, parameters
    ("fgsm-x-above-1", lambda t: attack("fgsm", x=X * 3, eps=0.1), ValueError, ["fgsm", "[0, 1]"]),
    ("fgsm-x-below-0", lambda t: attack("fgsm", x=X - 2, eps=0.1), ValueError, ["fgsm", "[0, 1]"]),
    ("fgsm-x-uint8", lambda t: attack("fgsm", x=(X * 255).to(torch.uint8), eps=0.1), ValueError, ["floating-point", "uint8"]),
    ("fgsm-x-nan", lambda t: attack("fgsm", x=X.masked_fill(X > 0.5, NAN), eps=0.1), ValueError, ["NaN"]),
    ("fgsm-x-1d", lambda t: attack("fgsm", x=torch.rand(4), y=Y[:1], eps=0.1), ValueError, ["shape", "(4,)"]),
    ("fgsm-x-not-tensor", lambda t: attack("fgsm", x=X.numpy(), eps=0.1), ValueError, ["torch.Tensor", "ndarray"]),
    ("fgsm-y-float", lambda t: attack("fgsm", y=Y.float(), eps=0.1), ValueError, ["y must", "float32"]),
    ("fgsm-y-length", lambda t: attack("fgsm", y=Y[:1], eps=0.1), ValueError, ["len(y)=1", "2"]),
    ("fgsm-y-negative", lambda t: attack("fgsm", y=-Y - 1, eps=0.1), ValueError, ["non-negative"]),
    ("fgsm-eps-negative", lambda t: attack("fgsm", eps=-0.1), ValueError, ["eps=-0.1", "[0.0, 1.0]"]),
    ("fgsm-eps-2", lambda t: attack("fgsm", eps=2.0), ValueError, ["eps=2.0"]),
    ("fgsm-eps-nan", lambda t: attack("fgsm", eps=NAN), ValueError, ["eps=nan"]),
    ("pgd-steps-0", lambda t: attack("pgd", eps=0.1, steps=-1), ValueError, ["steps=-1"]),
    ("pgd-step_size-negative", lambda t: attack("pgd", eps=0.1, step_size=-0.01), ValueError, ["step_size=-0.01"]),
    ("pgd-targeted-str", lambda t: attack("pgd", eps=0.1, targeted="yes"), ValueError, ["targeted", "'yes'"]),
    ("cw-c-negative", lambda t: attack("cw", c=-1.0, steps=1), ValueError, ["c=-1.0"]),
    ("cw-steps-float", lambda t: attack("cw", steps=2.5), ValueError, ["steps", "2.5"]),
    # ---- notebook parameters (papermill only warns about unknown ones)
    ("notebook-unknown-parameter", lambda t: T.check_notebook_parameters({"epoch": 3, "dataset": "mnist5k"}),
     ValueError, ["['epoch']", "epochs"]),
]


def _weights_then(tmp, fn):
    """Save a tiny ensemble's weights under ``tmp/w/`` (removed afterwards), then call ``fn``."""
    ens = ensemble.build_ensemble("small_cnn", "mnist5k", 2, 0)
    path = checkpoint.save_weights(tmp / "w" / "weights", ens, recipes.make_config("mnist5k", "vanilla", num_models=2).to_dict())
    try:
        return fn(path.with_suffix(""))
    finally:
        for p in (tmp / "w").iterdir():
            p.unlink()
        (tmp / "w").rmdir()


def test_at_least_forty_cases():
    assert len(CASES) >= 40
    assert len({c[0] for c in CASES}) == len(CASES), "case ids must be unique"


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """An empty working directory, runs/ and results/; one plain file to misuse as a folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRS_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("TRS_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.delenv("TRS_DATA_ROOT", raising=False)
    (tmp_path / "file.txt").write_text("not a folder\n")
    return tmp_path


def _snapshot(folder: Path):
    return sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*"))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_clear_error_and_no_files(sandbox, case):
    _, call, exc, words = case
    before = _snapshot(sandbox)
    with pytest.raises(exc) as info:
        call(sandbox)
    msg = str(info.value)
    missing = [w for w in words if w not in msg]
    assert not missing, f"message lacks {missing}: {msg}"
    assert type(info.value) is exc or exc is ValueError and isinstance(info.value, ValueError), \
        f"raised {type(info.value).__name__}, expected {exc.__name__}"
    # one error, not one raised while handling another (no "During handling ..." chain)
    assert info.value.__context__ is None or info.value.__suppress_context__, \
        f"the error was raised while handling {type(info.value.__context__).__name__}"
    assert len(msg) < 600, f"the message should be short: {msg}"
    assert _snapshot(sandbox) == before, "the failed call left files behind"


# ---------------------------------------------------------------- the notebook's parameters
def _papermill(tmp_path, *params):
    out = tmp_path / "out.ipynb"
    env = {"TRS_RUNS_DIR": str(tmp_path / "runs"), "TRS_RESULTS_DIR": str(tmp_path / "results"),
           "OMP_NUM_THREADS": "1"}
    import os
    proc = subprocess.run([sys.executable, "-m", "papermill", str(ROOT / "notebooks" / "train_trs.ipynb"),
                           str(out), "--cwd", str(tmp_path), "-k", "python3", "--no-progress-bar",
                           *params], capture_output=True, text=True, env=dict(os.environ, **env), timeout=300)
    return proc, out


def test_notebook_refuses_a_bad_parameter_value(tmp_path):
    """``-p epochs -1``: the notebook stops at the config cell with the library's message."""
    proc, out = _papermill(tmp_path, "-p", "epochs", "-1")
    assert proc.returncode != 0
    assert "epochs must be an integer in [1, 10000], got -1" in proc.stderr + proc.stdout
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


def test_notebook_refuses_an_unknown_parameter(tmp_path):
    """``-p epoch 3`` (for ``epochs``): papermill only warns; the notebook must stop (it fails,
    never skips, if the training page stops checking its parameters)."""
    assert "check_notebook_parameters" in (ROOT / "notebooks" / "train_trs.py").read_text(), \
        "notebooks/train_trs.py no longer checks its parameters (trs_lib.train.check_notebook_parameters)"
    proc, out = _papermill(tmp_path, "-p", "epoch", "3")
    assert proc.returncode != 0
    assert "unknown notebook parameters ['epoch']" in proc.stderr + proc.stdout
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


def test_check_notebook_parameters_accepts_a_real_namespace():
    """What a kernel's globals() holds besides parameters (modules, functions, IPython's
    In/Out, private names) is not mistaken for an unknown parameter."""
    ns = {"__name__": "__main__", "In": ["", "x = 1"], "Out": {}, "_": None, "_i1": "x", "json": json,
          "math": math, "train": T.train, "exit": object(), "dataset": "mnist5k", "epochs": None,
          "compare_vanilla": True, "get_ipython": lambda: None}
    T.check_notebook_parameters(ns, extra=("compare_vanilla",))
    with pytest.raises(ValueError, match=re.escape("['compare_vanila']")):
        T.check_notebook_parameters(dict(ns, compare_vanila=False), extra=("compare_vanilla",))
