"""Surrogates for the transfer threat model: models the defended ensemble never saw.

TRS's argument is about transfer (Sec. 1 and 3 of the paper: adversarial examples of one model
fail on another), and its follow-up LOTOS reports robust accuracy against black-box transfer
from independently trained surrogates. The surrogates here are trained by the one trainer
(:func:`trs_lib.train.train`, method ``vanilla``), so their seeds, epochs and clean accuracy
are in their run records:

* ``small_cnn``: a vanilla ensemble of 3 small CNNs, training seed :data:`SURROGATE_SEEDS`
  ``["small_cnn"]`` = 100: disjoint from every grid column's seeds (0, 1, 2 on every rung of
  ``trs_lib.companion.rungs``; member ``k`` of seed ``s`` is initialised from ``1000 s + k``, so
  seed 100 also never shares a member initialisation with them);
* ``resnet20``: one vanilla ResNet-20 (another architecture, with skip connections: SGM), seed 101;
* ``small_cnn+resnet20``: both attacked as one ensemble (the ensemble-surrogate attack of the
  transfer literature, Liu et al. 2017): every member's softmax averaged with equal weight.

``epochs=None`` takes the data set's recipe (``mnist5k``: 8); the grid passes its rung's.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import checkpoint as ckpt
from .ensemble import Ensemble
from .recipes import make_config
from .records import read_record
from .train import default_run_dir, train

__all__ = ["SurrogateSpec", "SURROGATE_SEEDS", "SURROGATES", "COMBINED", "surrogate_spec",
           "surrogate_config", "train_surrogate", "load_surrogate", "combine_surrogates",
           "surrogate_ensembles", "surrogate_records"]

SURROGATE_SEEDS = {"small_cnn": 100, "resnet20": 101}


@dataclass(frozen=True)
class SurrogateSpec:
    """One surrogate: a vanilla ensemble of ``num_models`` ``arch`` members, training ``seed``."""

    name: str
    arch: str
    num_models: int
    seed: int
    dataset: str = "mnist5k"
    epochs: int | None = None           # None: the data set's recipe

    def overrides(self) -> dict:
        out = {"arch": self.arch, "num_models": self.num_models, "seed": self.seed}
        return out if self.epochs is None else {**out, "epochs": self.epochs}


#: the single surrogates, by name
SURROGATES = {
    "small_cnn": SurrogateSpec("small_cnn", "small_cnn", 3, SURROGATE_SEEDS["small_cnn"]),
    "resnet20": SurrogateSpec("resnet20", "resnet20", 1, SURROGATE_SEEDS["resnet20"]),
}
#: surrogates attacked as one ensemble: name -> the single surrogates it joins
COMBINED = {"small_cnn+resnet20": ("small_cnn", "resnet20")}


def surrogate_spec(name: str, dataset: str = "mnist5k", epochs: int | None = None) -> SurrogateSpec:
    """The spec of single surrogate ``name`` on ``dataset``; ValueError naming the valid names."""
    if name not in SURROGATES:
        raise ValueError(f"unknown surrogate {name!r}; valid surrogates: "
                         f"{sorted(SURROGATES) + sorted(COMBINED)}")
    s = SURROGATES[name]
    return SurrogateSpec(s.name, s.arch, s.num_models, s.seed, dataset, epochs)


def surrogate_config(spec: SurrogateSpec):
    """The validated training config of ``spec`` (method ``vanilla``)."""
    return make_config(spec.dataset, "vanilla", **spec.overrides())


def train_surrogate(spec: SurrogateSpec, out_dir=None, progress: bool = False, log=print):
    """Train (or load, if finished before: the trainer resumes and no-ops) the surrogate of
    ``spec`` with the one trainer; returns its :class:`trs_lib.train.TrainResult` (ensemble in
    eval mode, run record). Default folder: the run's default (``<runs>/vanilla-<ds>-<hash>``)."""
    res = train(spec.dataset, "vanilla", out_dir=out_dir, progress=progress, log=log,
                **spec.overrides())
    res.ensemble.eval()
    return res


def load_surrogate(spec: SurrogateSpec, out_dir=None, device="cpu") -> Ensemble:
    """The trained surrogate of ``spec`` from its run folder (FileNotFoundError naming the
    folder and :func:`train_surrogate` if it was never trained); eval mode, frozen."""
    folder = Path(out_dir) if out_dir is not None else default_run_dir(surrogate_config(spec))
    if not (folder / "record.json").is_file():
        raise FileNotFoundError(f"surrogate {spec.name!r} has no finished run in {folder}; train "
                                f"it first with trs_lib.surrogates.train_surrogate")
    ens, _ = ckpt.load_weights(folder / "weights", device,
                               expect={"arch": spec.arch, "num_models": spec.num_models})
    return ens.eval().requires_grad_(False)


def combine_surrogates(ensembles) -> Ensemble:
    """One ensemble of every member of ``ensembles`` (equal weights, mean of softmaxes)."""
    members = [m for e in ensembles for m in (e.members if isinstance(e, Ensemble) else [e])]
    return Ensemble(members).eval()


def surrogate_ensembles(names, dataset: str = "mnist5k", epochs: int | None = None,
                        device="cpu", train_missing: bool = False, log=print) -> dict:
    """``{name: ensemble}`` for surrogate names (single or :data:`COMBINED`), loaded from their
    runs (trained first when ``train_missing``). Unknown names: one ValueError before any work."""
    names = list(names)
    valid = sorted(SURROGATES) + sorted(COMBINED)
    bad = [n for n in names if n not in valid]
    if bad:
        raise ValueError(f"unknown surrogates {bad}; valid surrogates: {valid}")
    cache = {}

    def single(n):
        if n not in cache:
            spec = surrogate_spec(n, dataset, epochs)
            if train_missing:
                cache[n] = train_surrogate(spec, log=log).ensemble.to(device).requires_grad_(False)
            else:
                cache[n] = load_surrogate(spec, device=device)
        return cache[n]

    out = {}
    for n in names:
        out[n] = combine_surrogates([single(p) for p in COMBINED[n]]) if n in COMBINED else single(n)
    return out


def surrogate_records(names, dataset: str = "mnist5k", epochs: int | None = None) -> dict:
    """What an evaluation record says of its surrogates: per single surrogate behind ``names``,
    its run's name, architecture, members, seed, epochs and clean test accuracy (read from the
    run's record; None where it has not run)."""
    out = {}
    for n in dict.fromkeys(p for name in names for p in COMBINED.get(name, (name,))):
        cfg = surrogate_config(surrogate_spec(n, dataset, epochs))
        path = default_run_dir(cfg) / "record.json"
        final = read_record(path)["metrics"].get("final", {}) if path.is_file() else {}
        out[n] = {"run": path.parent.name, "arch": cfg.arch, "num_models": cfg.num_models,
                  "seed": cfg.seed, "epochs": cfg.epochs, "clean_accuracy": final.get("test_acc_ensemble")}
    return out
