"""Shared helpers of the theory package: argument checks and sympy-aware arithmetic."""
from __future__ import annotations


import numpy as np
import torch

_TINY = 1e-30


def _is_symbolic(*values) -> bool:
    return any(type(v).__module__.split(".")[0] == "sympy" for v in values)


def _sqrt(v):
    """``sqrt`` for numbers, arrays (negative rounding noise clipped to 0) and sympy expressions."""
    if _is_symbolic(v):
        import sympy
        return sympy.sqrt(v)
    return np.sqrt(np.maximum(v, 0.0))


def _check_prob(name, value):
    if _is_symbolic(value):
        return
    v = np.asarray(value, dtype=float)
    if np.any(~np.isfinite(v)) or np.any(v < 0) or np.any(v > 1):
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")


def _check_positive(name, value):
    if _is_symbolic(value):
        return
    v = np.asarray(value, dtype=float)
    if np.any(~(v > 0)):
        raise ValueError(f"{name} must be > 0, got {value!r}")


def _check_similarity(name, value):
    if _is_symbolic(value):
        return
    v = np.asarray(value, dtype=float)
    if np.any(~np.isfinite(v)) or np.any(v < -1 - 1e-12) or np.any(v > 1 + 1e-12):
        raise ValueError(f"{name} must be a cosine similarity in [-1, 1], got {value!r}")


def _as_float(v):
    """A 0-d numpy result as a Python float; arrays and sympy expressions unchanged."""
    if isinstance(v, np.ndarray) and v.ndim == 0:
        return float(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)

