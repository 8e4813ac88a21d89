"""Scalar expressions differentiated by graphc, compared with derivatives worked out by hand.

    python -m graphc.models.micrograd_check

Each case is f(a, b) with its hand-derived df/da and df/db; graphc builds f in the DSL, takes
gc.gradients, runs the session and compares. Prints one line per case and exits 1 on a mismatch.
"""
from __future__ import annotations

import math
import sys

import numpy as np

import graphc as gc

A, B = 1.5, -0.7

#: name -> (f built from DSL tensors, df/da by hand, df/db by hand), all at (A, B)
CASES = {
    "a*b + a": (lambda a, b: a * b + a, lambda a, b: b + 1, lambda a, b: a),
    "a^3 / b": (lambda a, b: a ** 3 / b, lambda a, b: 3 * a ** 2 / b, lambda a, b: -a ** 3 / b ** 2),
    "relu(a) * relu(a+b) + relu(b)": (lambda a, b: gc.nn.relu(a) * gc.nn.relu(a + b) + gc.nn.relu(b),
                                      lambda a, b: (a > 0) * max(a + b, 0.0) + max(a, 0.0) * (a + b > 0),
                                      lambda a, b: max(a, 0.0) * (a + b > 0) + (b > 0)),
    "tanh(a*b)": (lambda a, b: gc.tanh(a * b), lambda a, b: b * (1 - math.tanh(a * b) ** 2),
                  lambda a, b: a * (1 - math.tanh(a * b) ** 2)),
    "exp(a) * log(a - b)": (lambda a, b: gc.exp(a) * gc.log(a - b),
                            lambda a, b: math.exp(a) * math.log(a - b) + math.exp(a) / (a - b),
                            lambda a, b: -math.exp(a) / (a - b)),
    "sigmoid(a + 2b)": (lambda a, b: gc.sigmoid(a + 2 * b),
                        lambda a, b: (s := 1 / (1 + math.exp(-(a + 2 * b)))) * (1 - s),
                        lambda a, b: 2 * (s := 1 / (1 + math.exp(-(a + 2 * b)))) * (1 - s)),
    # micrograd's README expression, rebuilt: fan-out of a and b into many uses
    "fan-out": (lambda a, b: (a * a + b) * (a - b * b) + a * b * a,
                lambda a, b: 2 * a * (a - b * b) + (a * a + b) + 2 * a * b,
                lambda a, b: (a - b * b) - 2 * b * (a * a + b) + a * a),
}


def check(verbose: bool = True) -> list[tuple[str, float]]:
    """Returns (case, max abs error) for every case."""
    g = gc.Graph()
    fetches = {}
    with g.as_default():
        a = gc.Variable(np.float32(A), name="a")
        b = gc.Variable(np.float32(B), name="b")
        for name, (f, _, _) in CASES.items():
            fetches[name] = gc.gradients(f(a, b), [a, b])
    got = gc.Session(g).run(fetches)
    out = []
    for name, (_, da, db) in CASES.items():
        want = np.array([da(A, B), db(A, B)], np.float64)
        have = np.array([float(x) for x in got[name]])
        err = float(np.abs(want - have).max() / max(1.0, np.abs(want).max()))
        out.append((name, err))
        if verbose:
            print(f"{name:30s} graphc d/da={have[0]: .6f} d/db={have[1]: .6f}   by hand {want[0]: .6f} "
                  f"{want[1]: .6f}   {'ok' if err < 1e-5 else 'MISMATCH'}")
    return out


def main(argv=None) -> None:
    bad = [n for n, e in check() if e >= 1e-5]
    if bad:
        print(f"{len(bad)} mismatch(es): {', '.join(bad)}")
        sys.exit(1)
    print(f"all {len(CASES)} gradients match the hand-derived values")


if __name__ == "__main__":
    main()
