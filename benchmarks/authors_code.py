"""The TRS authors' own training step, loaded unmodified from a fetched copy of their repository
(AI-secure/Transferability-Reduced-Smooth-Ensemble, ``train/Empirical/trainer.py``), for
``benchmarks/train_step.py`` to time beside ours in the same process.

Their code is imported as released; the shims cover only what a CPU process lacks: their
``PGD`` moves its random start to the GPU with ``Tensor.cuda`` (here a no-op while their step runs), and
``utils/Empirical/utils_ensemble.py`` imports ``advertorch`` at the top for attacks the trainer
never calls (stub modules stand in when it is not installed). Their ``TRS_Trainer`` runs one
epoch over a loader: here a one-batch loader, so one call is one step (their per-step
``print`` goes to a discarded stream, their TensorBoard writer is a stub).
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import types
from pathlib import Path

import torch
import torch.nn as nn

TRAINER = "train/Empirical/trainer.py"
# Where a fetched copy may be: $TRS_AUTHORS_CODE, then a mirror beside the project's folder.
_CANDIDATES = ("AI-secure+Transferability-Reduced-Smooth-Ensemble/repo",
               "AI-secure+Transferability-Reduced-Smooth-Ensemble")


def find(path=None) -> Path | None:
    """A checkout (folder with ``train/Empirical/trainer.py``) or a git directory of the authors'
    repository: ``path``, else ``$TRS_AUTHORS_CODE``, else ``../.mirror/<owner>+<name>`` of the
    project; None when there is none."""
    roots = [Path(path)] if path else []
    if os.environ.get("TRS_AUTHORS_CODE"):
        roots.append(Path(os.environ["TRS_AUTHORS_CODE"]))
    if not path:
        base = Path(__file__).resolve().parents[2] / ".mirror"
        roots += [base / c for c in _CANDIDATES]
    for r in roots:
        if (r / TRAINER).is_file() or (r / "HEAD").is_file() or (r / ".git").exists():
            return r
    return None


def _checkout(root: Path) -> Path:
    """A folder holding the repository's files: ``root`` itself, or its HEAD extracted from a
    git directory into a temporary folder."""
    if (root / TRAINER).is_file():
        return root
    out = Path(tempfile.mkdtemp(prefix="trs-authors-"))
    blob = subprocess.run(["git", f"--git-dir={root}", "archive", "HEAD"], capture_output=True,
                          check=True, timeout=120).stdout
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(out, filter="data")
    return out


def _stub_advertorch():
    if importlib.util.find_spec("advertorch") is not None:
        return
    names = ("GradientSignAttack", "LinfBasicIterativeAttack", "LinfPGDAttack",
             "LinfMomentumIterativeAttack", "CarliniWagnerL2Attack", "JacobianSaliencyMapAttack")
    pkg, attacks, utils = (types.ModuleType(n) for n in
                           ("advertorch", "advertorch.attacks", "advertorch.attacks.utils"))
    pkg.__path__, attacks.__path__ = [], []
    for n in names:
        setattr(attacks, n, type(n, (), {}))
    utils.attack_whole_dataset = lambda *a, **k: None
    pkg.attacks, attacks.utils = attacks, utils
    sys.modules.update({"advertorch": pkg, "advertorch.attacks": attacks,
                        "advertorch.attacks.utils": utils})


def load(root: Path) -> types.ModuleType:
    """Their ``train/Empirical/trainer.py`` as a module (their packages ``utils`` and ``models``
    registered under their own names, from their folder)."""
    src = _checkout(Path(root))
    _stub_advertorch()
    for pkg in ("utils", "utils.Empirical", "utils.Empirical.third_party", "models"):
        if pkg not in sys.modules or not str(getattr(sys.modules[pkg], "__path__", [""])[0]).startswith(str(src)):
            mod = types.ModuleType(pkg)
            mod.__path__ = [str(src.joinpath(*pkg.split(".")))]
            sys.modules[pkg] = mod
    spec = importlib.util.spec_from_file_location("trs_authors_trainer", src / TRAINER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _Writer:
    def add_scalar(self, *args, **kwargs):
        pass


@contextlib.contextmanager
def _cpu_shims():
    """Their ``PGD``'s ``Tensor.cuda`` call as a no-op while their step runs (this machine may have no GPU)."""
    name = "cuda"
    saved = getattr(torch.Tensor, name)
    setattr(torch.Tensor, name, lambda self, *a, **k: self)
    try:
        yield
    finally:
        setattr(torch.Tensor, name, saved)


def make_step(trainer, nets, optimizer, x, y, cfg, epoch=0, epochs=None):
    """One call of their ``TRS_Trainer`` on the batch ``(x, y)``: one step, as released."""
    args = types.SimpleNamespace(num_models=len(nets), adv_eps=cfg.adv_eps, init_eps=cfg.init_eps,
                                 epochs=epochs or cfg.epochs, plus_adv=cfg.plus_adv,
                                 scale=cfg.scale, coeff=cfg.coeff, lamda=cfg.lamda,
                                 print_freq=10 ** 9)
    loader, criterion, writer = [(x, y)], nn.CrossEntropyLoss(), _Writer()

    def step():
        with _cpu_shims(), contextlib.redirect_stdout(io.StringIO()):
            trainer.TRS_Trainer(args, loader, nets, criterion, optimizer, epoch, x.device, writer)
    return step
