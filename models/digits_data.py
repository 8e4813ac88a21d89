"""scikit-learn's bundled 8x8 digits (1,797 images, no download), split into seeded train/test sets."""
from __future__ import annotations

import numpy as np


def load_digits_split(test_fraction: float = 0.2, seed: int = 0):
    """(x_train, y_train, x_test, y_test): float32 pixels scaled to [0, 1] as [N, 64], int64 labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SystemExit("the digits models need scikit-learn: pip install -e '.[train]'") from None
    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, rng: np.random.Generator):
    """Endless shuffled mini-batches of exactly ``batch_size`` (a fresh permutation each epoch)."""
    while True:
        order = rng.permutation(len(x))
        for i in range(0, len(order) - batch_size + 1, batch_size):
            idx = order[i:i + batch_size]
            yield x[idx], y[idx]
