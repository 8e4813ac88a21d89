"""All of onnx's own backend suite beyond the node cases: onnx.backend.test.BackendTest drives graphc's
backend (frontends/onnx/backend.py) over the model tests the onnx wheel ships: simple (23), the
pytorch-converted (82) and pytorch-operator (35) models, and the real/light CNNs (9).

The 1,884 node cases of the same suite run in tests/test_onnx_node.py through graphc.tools.conformance
(which also compares random ops by distribution). Every model test that does not pass is listed here as a
strict xfail with its reason, so one that starts passing must be taken off the list.
"""
from __future__ import annotations

import unittest
import warnings

import numpy as np
import onnx.backend.test
import pytest

import graphc.frontends.onnx.backend as graphc_backend

KINDS = ("OnnxBackendSimpleModelTest", "OnnxBackendPyTorchConvertedModelTest",
         "OnnxBackendPyTorchOperatorModelTest", "OnnxBackendRealModelTest")

#: test name -> why it fails (strict xfail).
EXPECTED_FAILURES: dict[str, str] = {
}


def _cases() -> list[tuple[str, type]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bt = onnx.backend.test.BackendTest(graphc_backend, __name__)
    out = []
    for kind in KINDS:
        case = bt.test_cases[kind]
        out += [(name, case) for name in sorted(dir(case)) if name.startswith("test_") and name.endswith("_cpu")]
    return out


CASES = _cases()


def test_the_suite_has_every_model_kind():
    counts = {k: sum(1 for _, c in CASES if c.__name__ == k) for k in KINDS}
    assert counts == {"OnnxBackendSimpleModelTest": 23, "OnnxBackendPyTorchConvertedModelTest": 82,
                      "OnnxBackendPyTorchOperatorModelTest": 35, "OnnxBackendRealModelTest": 9}, counts


@pytest.mark.parametrize("name,case", [
    pytest.param(n, c, id=n, marks=[pytest.mark.xfail(reason=EXPECTED_FAILURES[n], strict=True)]
                 if n in EXPECTED_FAILURES else []) for n, c in CASES])
def test_backend_suite_model(name, case):
    result = unittest.TestResult()
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        case(name).run(result)
    problems = result.failures + result.errors
    assert not result.skipped, result.skipped
    assert not problems, problems[0][1][-3000:]
