"""Every training method of the paper, as data: ``get(name)`` returns its :class:`Method`."""
from __future__ import annotations

from ..recipes import METHODS as _NAMES
from .adp import ADP
from .adversarial import TRS_AT
from .base import Method, StepContext, eval_mode
from .boosting import ADABOOST, GRADIENTBOOST
from .ckae import CKAE
from .dverge import DVERGE
from .gal import GAL
from .lotos import LOTOS, TRS_LOTOS
from .trs import COSSIM, TRS
from .vanilla import VANILLA

__all__ = ["Method", "StepContext", "eval_mode", "REGISTRY", "get"]

REGISTRY: dict[str, Method] = {m.name: m for m in (VANILLA, TRS, COSSIM, CKAE, ADP, GAL, DVERGE,
                                                   TRS_AT, ADABOOST, GRADIENTBOOST, LOTOS,
                                                   TRS_LOTOS)}


def get(name: str) -> Method:
    """The method called ``name``; the error lists the valid names."""
    if name not in REGISTRY:
        if name in _NAMES:
            raise NotImplementedError(f"method {name!r} is not implemented yet; available: {sorted(REGISTRY)}")
        raise ValueError(f"unknown method {name!r}; valid names: {sorted(_NAMES)}")
    return REGISTRY[name]
