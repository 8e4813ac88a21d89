"""Each training model: a few steps lower the loss; mlp_digits reaches its accuracy target; Mamba matches NumPy."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="the digits models need scikit-learn (the 'train' extra)")


def falling(losses, k: int) -> bool:
    return float(np.mean(losses[-k:])) < float(np.mean(losses[:k]))


@pytest.mark.slow
def test_mlp_digits_reaches_96_percent():
    from graphc.models import mlp_digits

    r = mlp_digits.train(steps=600, verbose=False)
    assert r["test_accuracy"] >= 0.96, r["test_accuracy"]
    assert falling(r["losses"], 20)


def test_lenet_digits_smoke():
    from graphc.models import lenet_digits

    r = lenet_digits.train(steps=30, verbose=False)
    assert falling(r["losses"], 5), r["losses"]
    assert r["test_accuracy"] > 0.5


def test_mingpt_smoke_and_generate():
    from graphc.models import mingpt

    r = mingpt.train(steps=25, batch_size=8, block_size=16, n_embd=32, verbose=False)
    assert falling(r["losses"], 5), r["losses"]
    out = mingpt.generate(r["session"], r["tensors"], r["vocab"], r["text"][:16], 10, 16)
    assert len(out) == 10 and set(out) <= set(r["vocab"].chars)


def test_mamba_matches_numpy_reference():
    from graphc.models import mamba

    assert mamba.check_against_reference(verbose=False) <= 1e-5


def test_mamba_copying_smoke():
    from graphc.models import mamba

    r = mamba.train(steps=15, batch_size=16, verbose=False)
    assert falling(r["losses"], 4), r["losses"]


def test_micrograd_check_gradients_match_hand_derived_values():
    from graphc.models import micrograd_check

    errs = micrograd_check.check(verbose=False)
    assert len(errs) == len(micrograd_check.CASES)
    assert all(e < 1e-5 for _, e in errs), errs
