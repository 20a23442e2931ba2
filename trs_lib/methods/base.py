"""What a training method is: a loss over (ensemble, x, y), or a sequential fit of members.

The one trainer (``trs_lib.train``) calls ``method.loss(ensemble, x, y, cfg, ctx)`` for every
batch; it returns the scalar to minimise and a dict of named terms (tensors, no ``.item()``).
A sequential method (boosting) is trained in ``num_models`` stages, one member per stage:
``begin_stage`` / ``end_stage`` keep its state (sample weights, member weights) as tensors, so
a checkpoint holds them.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import torch

__all__ = ["Method", "StepContext", "eval_mode"]


@dataclass
class StepContext:
    """What a loss may need beyond the batch: progress, randomness, method state."""

    epoch: int                          # 0-based epoch within the stage
    epochs: int
    generator: torch.Generator | None = None
    index: torch.Tensor | None = None   # indices of the batch in the training set
    stage: int = 0                      # member being fit (sequential methods)
    state: dict = field(default_factory=dict)

    @property
    def progress(self) -> float:
        """Fraction of training done at the start of this epoch, in [0, 1)."""
        return self.epoch / max(self.epochs, 1)


@dataclass(frozen=True)
class Method:
    """A training method of the paper; see ``trs_lib.methods.METHODS``."""

    name: str
    loss: Callable
    sequential: bool = False
    combine: str = "mean_softmax"
    begin_stage: Callable | None = None   # (ensemble, k, x_train, y_train, cfg, state) -> None
    end_stage: Callable | None = None     # (ensemble, k, x_train, y_train, cfg, state) -> None
    doc: str = ""


@contextmanager
def eval_mode(module: torch.nn.Module):
    """Put ``module`` in eval mode for an inner loop (BatchNorm statistics untouched), then restore."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, was_training in flags:
            m.train(was_training)
