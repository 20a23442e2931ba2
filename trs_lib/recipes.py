"""Training recipes: one config dataclass, per-data-set defaults that mirror the paper.

``make_config(dataset, method, **overrides)`` gives the config a run uses: the data set's recipe,
then the method's, then explicit overrides (``None`` means "use the recipe"). Every value is
checked by :meth:`TrainConfig.validate` with an error naming the value and what is allowed.

Sources: paper App. F (ResNet-20, Adam lr 1e-3, 40 epochs MNIST / 180 CIFAR-10) and Sec. 4.1
(lambda_1 = lambda_2 = 0.1, c = 2.0 for MNIST; 0.01 and 5.0 for CIFAR-10). The published TRS
variant takes the authors' own names and values (``coeff``, ``lamda``, ``scale``, ``init_eps``,
``adv_eps``, ``plus_adv``; sources beside ``DATASET_RECIPES``). ``mnist5k`` is the CPU scale of this
companion: a small CNN for a few epochs, a few minutes on 2 cores.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field

from .data import DATASETS
from .models import ARCHS, BATCHNORM_ARCHS
from .optimiser import OPTIMISERS
from .trs import VARIANTS

__all__ = ["TrainConfig", "DATASET_RECIPES", "METHOD_RECIPES", "METHODS", "PAIRWISE_METHODS",
           "make_config", "config_hash"]

# Every training method; those that need at least two members are in PAIRWISE_METHODS.
METHODS = ("vanilla", "trs", "cossim", "ckae", "adp", "gal", "dverge", "trs_at", "adaboost",
           "gradientboost", "lotos", "trs_lotos")
PAIRWISE_METHODS = ("trs", "cossim", "ckae", "adp", "gal", "dverge", "trs_at", "lotos", "trs_lotos")
CHANNELS_LAST = ("auto", "on", "off")   # memory format of the members and the batches
AMP = ("off", "bf16")                   # autocast dtype of the training step


@dataclass
class TrainConfig:
    """Everything that defines a training run; its hash names the run."""

    dataset: str = "mnist5k"
    method: str = "trs"
    arch: str = "small_cnn"
    num_models: int = 3
    epochs: int = 8
    batch_size: int = 128
    lr: float = 1e-3                 # Adam, App. F
    seed: int = 0
    train_subset: int = 0            # 0: the whole training split; n: a fixed random n of it
    # TRS (Sec. 3): variant "seed" uses lam and c. Variant "published" is the authors' released
    # loss with their argument names (train/Empirical/train_trs.py): loss = CE + scale * (coeff *
    # cos_loss + lamda * smooth_loss), smoothness at PGD inputs (plus_adv) of smooth_steps steps,
    # radius ramped init_eps -> adv_eps; faithful=True runs their computation exactly
    # (trs_lib.methods.trs.trs_loss), False the fast departures.
    variant: str = "seed"
    faithful: bool = False
    lam: float = 0.1
    c: float = 2.0
    coeff: float = 2.0
    lamda: float = 2.0
    scale: float = 5.0
    init_eps: float = 0.1
    adv_eps: float = 0.2
    plus_adv: bool = True
    smooth_steps: int = 6
    # baselines (sources in METHOD_RECIPES below and in each trs_lib.methods module)
    ckae_weight: float = 1.0         # CKAE: weight of the mean pairwise linear CKA
    adp_alpha: float = 2.0           # ADP: ensemble-entropy weight (paper's ADP_{2,0.5})
    adp_beta: float = 0.5            # ADP: log-det weight
    gal_weight: float = 0.5          # GAL: coherence weight lambda
    dverge_eps: float = 0.07         # DVERGE: distillation radius (L-inf)
    dverge_steps: int = 10           # DVERGE: distillation steps
    dverge_step_size: float = 0.007  # DVERGE: distillation step size
    at_eps: float = 0.1              # TRS + AT: PGD radius (L-inf)
    at_steps: int = 10               # TRS + AT: PGD steps
    at_step_size: float = 0.01       # TRS + AT: PGD step size
    boost_shrinkage: float = 0.5     # GradientBoost: shrinkage nu of members 1..N-1
    # LOTOS (trs_lib.methods.lotos): weight (their conv_factor) and margin mal (their
    # bottom_clip). "if_set": runs from before these fields existed keep their names.
    lotos_weight: float = field(default=0.05, metadata={"identity": "if_set"})
    lotos_mal: float = field(default=0.8, metadata={"identity": "if_set"})
    # "paper": Adam, constant lr (App. F); "authors": their scripts' Adam (weight decay 1e-4,
    # eps 1e-7) and step schedule (trs_lib.optimiser). Part of the identity when not "paper"
    # (a run without it keeps the name it had before the field existed).
    optimiser: str = field(default="paper", metadata={"identity": "if_set"})
    # The authors' nn.DataParallel over this many GPUs: BatchNorm normalises each chunk of a
    # training batch with its own statistics (trs_lib.models.BatchNorm2d). Without BatchNorm it
    # changes nothing, so it enters the identity only for BATCHNORM_ARCHS and when not 1.
    data_parallel: int = field(default=1, metadata={"identity": "if_batchnorm"})
    # bookkeeping, not part of the run's identity
    data_root: str | None = field(default=None, metadata={"identity": False})
    download: bool = field(default=False, metadata={"identity": False})
    device: str = field(default="auto", metadata={"identity": False})
    # speed (benchmarks/README.md): same computation, rounding aside, so not part of the identity
    channels_last: str = field(default="auto", metadata={"identity": False})  # auto: on (CPU, CUDA)
    compile: bool = field(default=False, metadata={"identity": False})  # eager for double backprop
    # bfloat16 autocast changes the numbers: part of the identity when on ("if_set": a run
    # without it keeps the name it had before the field existed)
    amp: str = field(default="off", metadata={"identity": "if_set"})

    def identity(self) -> dict:
        """The fields that define the result (the run's name is their hash)."""
        out = {}
        for f in dataclasses.fields(self):
            mode, value = f.metadata.get("identity", True), getattr(self, f.name)
            if mode is True or (mode == "if_set" and value != f.default) or (
                    mode == "if_batchnorm" and value != f.default and self.arch in BATCHNORM_ARCHS):
                out[f.name] = value
        return out

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> "TrainConfig":
        """Raise ``ValueError`` naming the first bad value and what is allowed."""
        _choice("dataset", self.dataset, DATASETS)
        _choice("method", self.method, METHODS)
        _choice("arch", self.arch, ARCHS)
        _choice("variant", self.variant, VARIANTS)
        for name in ("faithful", "plus_adv"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.faithful and self.variant != "published":
            raise ValueError(f"faithful=True is a mode of variant 'published' (the authors' inner "
                             f"PGD); variant {self.variant!r} has none: use faithful=False")
        _int("num_models", self.num_models, 1, 64)
        if self.method in PAIRWISE_METHODS and self.num_models < 2:
            raise ValueError(f"method {self.method!r} compares members pairwise and needs "
                             f"num_models >= 2, got {self.num_models}")
        _int("epochs", self.epochs, 1, 10_000)
        _int("batch_size", self.batch_size, 2, 1 << 16)
        _int("seed", self.seed, 0, 2**31 - 1)
        _int("train_subset", self.train_subset, 0, 10**8)
        if self.train_subset == 1:
            raise ValueError("train_subset must be 0 (the whole split) or at least 2 (a batch needs "
                             "2 examples), got 1")
        _int("smooth_steps", self.smooth_steps, 0, 1000)
        _int("dverge_steps", self.dverge_steps, 0, 1000)
        _int("at_steps", self.at_steps, 0, 1000)
        _int("data_parallel", self.data_parallel, 1, 64)
        _float("lotos_mal", self.lotos_mal, 0, 1e6)
        _float("lr", self.lr, 0, 10, open_low=True)
        for name in ("lam", "c", "coeff", "lamda", "scale", "ckae_weight", "adp_alpha", "adp_beta",
                     "gal_weight", "lotos_weight"):
            _float(name, getattr(self, name), 0, 1e6)
        for name in ("init_eps", "adv_eps", "dverge_eps", "dverge_step_size", "at_eps",
                     "at_step_size"):
            _float(name, getattr(self, name), 0, 1)
        _float("boost_shrinkage", self.boost_shrinkage, 0, 1, open_low=True)
        if not isinstance(self.download, bool):
            raise ValueError(f"download must be True or False, got {self.download!r}")
        _data_root(self.data_root)
        _device(self.device)
        _choice("channels_last", self.channels_last, CHANNELS_LAST)
        _choice("amp", self.amp, AMP)
        _choice("optimiser", self.optimiser, OPTIMISERS)
        if not isinstance(self.compile, bool):
            raise ValueError(f"compile must be True or False, got {self.compile!r}")
        return self


def _choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; valid names: {sorted(allowed)}")


def _int(name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r} "
                         f"({type(value).__name__})")


def _float(name, value, low, high, open_low=False):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (low < value if open_low else low <= value) and value <= high
    if not ok:
        bracket = "(" if open_low else "["
        raise ValueError(f"{name} must be a finite number in {bracket}{low}, {high}], got {value!r} "
                         f"({type(value).__name__})")


def _data_root(value):
    """``None`` or a path that is a folder or does not exist yet (``download=True`` creates it)."""
    import os
    from pathlib import Path
    if value is None:
        return
    if not isinstance(value, (str, os.PathLike)) or str(value) == "":
        raise ValueError(f"data_root must be a folder path (str) or None, got {value!r}")
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"data_root {str(path)!r} exists but is not a directory; point it "
                                 f"at the folder that holds the data sets")


def _device(value):
    """``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"`` (availability is checked when training)."""
    import re
    if not isinstance(value, str) or not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
        raise ValueError(f"unknown device {value!r}; valid: 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'")


# Per-data-set recipes (paper App. F and Sec. 4.1; mnist5k is this companion's CPU scale).
# Published TRS, the authors' values:
# * MNIST (and mnist5k, fashion_mnist): their utils/Empirical/script_train.py (trs_coeff 2.0,
#   trs_lamda 2.0, trs_scale 5.0, trs_initeps 0.1, trs_adveps 0.2, plus_adv True);
# * CIFAR-10: the maintainers' answer in their GitHub issue #1 (AI-secure/
#   Transferability-Reduced-Smooth-Ensemble): scale 5, coeff 8, lamda 0.5, init-eps 0.01,
#   adv-eps 0.03 (with --plus-adv).
_TRS_MNIST = dict(coeff=2.0, lamda=2.0, scale=5.0, init_eps=0.1, adv_eps=0.2, plus_adv=True)
_TRS_CIFAR10 = dict(coeff=8.0, lamda=0.5, scale=5.0, init_eps=0.01, adv_eps=0.03, plus_adv=True)
DATASET_RECIPES: dict[str, dict] = {
    "mnist5k": dict(arch="small_cnn", epochs=8, batch_size=128, lam=0.1, c=2.0, at_eps=0.1,
                    at_step_size=0.01, dverge_eps=0.07, dverge_step_size=0.007, **_TRS_MNIST),
    "mnist": dict(arch="resnet20", epochs=40, batch_size=128, lam=0.1, c=2.0, at_eps=0.1,
                  at_step_size=0.01, dverge_eps=0.07, dverge_step_size=0.007, **_TRS_MNIST),
    "fashion_mnist": dict(arch="resnet20", epochs=40, batch_size=128, lam=0.1, c=2.0, at_eps=0.1,
                          at_step_size=0.01, dverge_eps=0.07, dverge_step_size=0.007, **_TRS_MNIST),
    "cifar10": dict(arch="resnet20", epochs=180, batch_size=128, lam=0.01, c=5.0, at_eps=0.02,
                    at_step_size=0.002, dverge_eps=0.07, dverge_step_size=0.007, **_TRS_CIFAR10),
}

# Per-method overrides (applied after the data set's recipe).
# Values that depend on the data set (PGD and distillation radii) live in DATASET_RECIPES.
METHOD_RECIPES: dict[str, dict] = {
    "vanilla": {}, "trs": {}, "cossim": {},
    # CKAE (Sec. 4.2, App. D): the paper gives no weight; 1 puts the penalty, in [0, 1], on the
    # scale of one member's cross-entropy (companion's choice).
    "ckae": dict(ckae_weight=1.0),
    # ADP_{2,0.5} of Tables 1-4: alpha = 2, beta = 0.5 (Pang et al. 2019).
    "adp": dict(adp_alpha=2.0, adp_beta=0.5),
    # GAL (Kariyappa and Qureshi 2019): lambda = 0.5, the DVERGE authors' reimplementation.
    "gal": dict(gal_weight=0.5),
    # DVERGE (Yang et al. 2020): 10 distillation steps (with eps 0.07, step 0.007 per data set).
    "dverge": dict(dverge_steps=10),
    # TRS + AT (App. H): 10-step PGD (Madry et al. 2018); radius and step size per data set.
    "trs_at": dict(at_steps=10),
    # AdaBoost (SAMME, Hastie et al. 2009) has no hyper-parameter beyond the member count.
    "adaboost": {},
    # GradientBoost (Friedman 2001): shrinkage nu = 0.5 for members 1..N-1 (the paper gives
    # none; with 3 members a smaller nu leaves the later members little say; companion's choice).
    "gradientboost": dict(boost_shrinkage=0.5),
    # LOTOS (Ebrahimpour-Boroojeny et al. 2025; code Ali-E/LOTOS): alone, lambda = 0.05 (README's
    # first command, --conv_factor 0.05); with TRS, lambda = 0.01 (README's TRS command,
    # --conv_factor 0.01); mal = 0.8 (README text). How often the penalty is added (their
    # conv_freq) follows the method, as in their main.py (trs_lib.methods.lotos.FREQUENCY).
    "lotos": dict(lotos_weight=0.05, lotos_mal=0.8),
    "trs_lotos": dict(lotos_weight=0.01, lotos_mal=0.8),
}


def make_config(dataset: str = "mnist5k", method: str = "trs", **overrides) -> TrainConfig:
    """The validated config of a run: data-set recipe, method recipe, then explicit overrides."""
    _choice("dataset", dataset, DATASETS)
    _choice("method", method, METHODS)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown config fields {unknown}; valid fields: {sorted(known)}")
    values = dict(dataset=dataset, method=method)
    values.update(DATASET_RECIPES[dataset])
    values.update(METHOD_RECIPES[method])
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**values).validate()


def config_hash(cfg: TrainConfig | dict, length: int = 12) -> str:
    """Stable short hash of a config's identity fields (the run's name)."""
    ident = cfg.identity() if isinstance(cfg, TrainConfig) else cfg
    blob = json.dumps(ident, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]
