"""Variable initializers: seeded functions of (shape, dtype, rng) -> array.

Each initializer takes an optional ``seed``; without one, ``gc.Variable`` draws from the graph's
seed combined with the variable's index, so a graph built twice starts from the same values.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def _fans(shape: Sequence[int]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight: [in, out] for dense, [out, in/groups, *kernel] for conv."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = int(np.prod(shape[2:]))
    return shape[1] * receptive, shape[0] * receptive


class Initializer:
    """Base: ``init(shape, dtype, rng)``; ``seed`` (if given) overrides the graph's rng."""

    def __init__(self, seed: int | None = None):
        self.seed = seed

    def __call__(self, shape, dtype=np.float32, rng: np.random.Generator | None = None) -> np.ndarray:
        if self.seed is not None or rng is None:
            rng = np.random.default_rng(self.seed if self.seed is not None else 0)
        shape = tuple(int(d) for d in shape)
        return np.asarray(self.sample(shape, rng), dtype=np.dtype(dtype))

    def sample(self, shape: tuple, rng: np.random.Generator) -> np.ndarray:
        """The values (float64; ``__call__`` converts them to the variable's type) drawn from ``rng``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class zeros(Initializer):
    """All zeros."""
    def sample(self, shape, rng):
        return np.zeros(shape)


class ones(Initializer):
    """All ones."""
    def sample(self, shape, rng):
        return np.ones(shape)


class constant(Initializer):
    """Every element ``value``."""
    def __init__(self, value: float, seed: int | None = None):
        super().__init__(seed)
        self.value = value

    def sample(self, shape, rng):
        return np.full(shape, self.value)


class normal(Initializer):
    """Normal draws of ``mean`` and ``stddev``."""
    def __init__(self, mean: float = 0.0, stddev: float = 1.0, seed: int | None = None):
        super().__init__(seed)
        self.mean, self.stddev = mean, stddev

    def sample(self, shape, rng):
        return rng.normal(self.mean, self.stddev, shape)


class uniform(Initializer):
    """Uniform draws in [low, high)."""
    def __init__(self, low: float = -0.05, high: float = 0.05, seed: int | None = None):
        super().__init__(seed)
        self.low, self.high = low, high

    def sample(self, shape, rng):
        return rng.uniform(self.low, self.high, shape)


class glorot_uniform(Initializer):
    """U(-a, a) with a = sqrt(6 / (fan_in + fan_out)) (Glorot and Bengio, 2010)."""

    def sample(self, shape, rng):
        fi, fo = _fans(shape)
        a = math.sqrt(6.0 / (fi + fo))
        return rng.uniform(-a, a, shape)


class glorot_normal(Initializer):
    """N(0, 2 / (fan_in + fan_out))."""

    def sample(self, shape, rng):
        fi, fo = _fans(shape)
        return rng.normal(0.0, math.sqrt(2.0 / (fi + fo)), shape)


class he_uniform(Initializer):
    """U(-a, a) with a = sqrt(6 / fan_in) (He et al., 2015), for ReLU layers."""

    def sample(self, shape, rng):
        fi, _ = _fans(shape)
        a = math.sqrt(6.0 / fi)
        return rng.uniform(-a, a, shape)


class he_normal(Initializer):
    """N(0, 2 / fan_in)."""

    def sample(self, shape, rng):
        fi, _ = _fans(shape)
        return rng.normal(0.0, math.sqrt(2.0 / fi), shape)


__all__ = ["Initializer", "constant", "glorot_normal", "glorot_uniform", "he_normal", "he_uniform", "normal", "ones",
           "uniform", "zeros"]
