"""What the kernel families share: the element types NumPy handles natively, scratch buffers, static types."""
from __future__ import annotations

import numpy as np

from graphc.ir import TensorType

FLOAT_TYPES = (np.dtype(np.float32), np.dtype(np.float64))

#: Types whose arithmetic NumPy does natively with the same results as the ops' ``eval``.
NATIVE_TYPES = FLOAT_TYPES + tuple(np.dtype(t) for t in (np.int32, np.int64))


class Scratch:
    """Temporary arrays reused across calls, one per (shape, dtype, tag)."""

    def __init__(self):
        self._arrays: dict = {}

    def get(self, shape, dtype, tag: int = 0) -> np.ndarray:
        key = (shape, dtype, tag)
        a = self._arrays.get(key)
        if a is None:
            a = self._arrays[key] = np.empty(shape, dtype)
        return a


def static_tensor(v) -> TensorType | None:
    """The value's type when it is a tensor of known shape and plain NumPy element type, else None."""
    t = v.type if v is not None else None
    if (isinstance(t, TensorType) and t.is_static and t.dtype is not None and t.dtype.np.kind in "biuf"
            and t.dtype.np.type.__module__ == "numpy"):
        return t
    return None


def only_first_output(ctx) -> bool:
    return ctx.outs[0] >= 0 and all(s < 0 for s in ctx.outs[1:])


__all__ = ["FLOAT_TYPES", "NATIVE_TYPES", "Scratch", "only_first_output", "static_tensor"]
