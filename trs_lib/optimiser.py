"""The optimiser of a training run: the paper's (App. F) or the one the authors' scripts run.

* ``"paper"``: Adam at a constant learning rate ``lr`` (App. F: "the Adam optimizer with initial
  learning rate 0.001"; no schedule is named).
* ``"authors"``: what every training script of the authors' repository builds
  (``train/Empirical/train_{trs,vanilla,adp,gal}.py``): ``optim.Adam(param, lr=args.lr,
  weight_decay=args.weight_decay, eps=1e-7)`` with ``--wd`` 1e-4 by default, and
  ``StepLR(step_size=args.lr_step_size, gamma=args.gamma)`` (40 and 0.1) stepped as
  ``scheduler.step(epoch)`` *after* epoch ``epoch``. Passing the epoch makes StepLR use its closed
  form, so the rate of epoch ``k`` (0-based) is ``lr * gamma ** (max(k - 1, 0) // 40)``: the
  first decay comes at epoch 41, not 40 (errata). With MNIST's 40 epochs it never fires; with
  CIFAR-10's 180 the rate is divided by 10 at epochs 41, 81, 121 and 161.

The rate is a function of the epoch, set at the start of each epoch, so a resumed run trains
with the same rates as an uninterrupted one.
"""
from __future__ import annotations

import torch

__all__ = ["OPTIMISERS", "AUTHORS", "build", "learning_rate", "set_learning_rate"]

OPTIMISERS = ("paper", "authors")
#: the authors' settings (train_trs.py's argparse defaults and its Adam call)
AUTHORS = {"weight_decay": 1e-4, "eps": 1e-7, "step_size": 40, "gamma": 0.1}


def build(params, cfg, device) -> torch.optim.Adam:
    """Adam over ``params`` as ``cfg.optimiser`` says (fused on CUDA, the same update)."""
    _check(cfg.optimiser)
    kw = {"weight_decay": AUTHORS["weight_decay"], "eps": AUTHORS["eps"]} if cfg.optimiser == "authors" else {}
    return torch.optim.Adam(params, lr=cfg.lr, fused=torch.device(device).type == "cuda" or None, **kw)


def learning_rate(optimiser: str, lr: float, epoch: int) -> float:
    """The learning rate of 0-based ``epoch`` (module docstring)."""
    _check(optimiser)
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ValueError(f"epoch must be an integer >= 0, got {epoch!r}")
    if optimiser == "paper":
        return lr
    return lr * AUTHORS["gamma"] ** (max(epoch - 1, 0) // AUTHORS["step_size"])


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def _check(optimiser):
    if optimiser not in OPTIMISERS:
        raise ValueError(f"unknown optimiser {optimiser!r}; valid: {list(OPTIMISERS)}")
