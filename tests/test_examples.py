"""The four example programs of docs/examples (TensorFlow 1 classics written with the functional API) run with
short step counts and give the right numbers."""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "examples")


def _load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", os.path.join(EXAMPLES, f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_softmax_regression_trains_saves_and_restores():
    pytest.importorskip("sklearn")
    r = _load("softmax_regression").main(steps=150, verbose=False)
    assert r["accuracy"] > 0.9 and r["restored_accuracy"] == r["accuracy"]


def test_digits_cnn_with_filter_tensors_keep_prob_and_restore():
    pytest.importorskip("sklearn")
    r = _load("digits_cnn").main(steps=120, verbose=False)
    assert r["accuracy"] > 0.85 and r["restored_accuracy"] == r["accuracy"]


def test_char_gru_with_global_norm_clipping_learns():
    r = _load("char_gru").main(steps=40, verbose=False)
    assert r["first_loss"] == pytest.approx(np.log(r["vocab"]), abs=0.1)
    assert r["last_loss"] < r["first_loss"] - 0.8


def test_straight_through_estimator_and_hessian_vector_product():
    r = _load("ste_hvp").main(steps=100, verbose=False)
    assert r["hvp_error"] < 1e-12
    assert np.abs(r["quantized"] - r["target"]).max() <= 1.0  # trained through round(): near each target
    assert np.all(r["quantized"] == np.round(r["quantized"]))
