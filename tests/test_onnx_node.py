"""The official ONNX node test cases (onnx.backend.test.case.node), run through graphc's Backend.

Every case that does not pass is listed in onnx_node_expected_failures.txt with a one-line reason;
those run as strict xfails, so a case that starts passing must be taken off the list.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from graphc.tools.conformance import node_cases, run_case

HERE = os.path.dirname(os.path.abspath(__file__))
XFAIL_FILE = os.path.join(HERE, "onnx_node_expected_failures.txt")


def load_expected_failures() -> dict[str, str]:
    out = {}
    with open(XFAIL_FILE, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, _, reason = line.partition("#")
            name = name.strip()
            reason = reason.strip()
            assert reason, f"{XFAIL_FILE}: '{name}' has no reason"
            assert name not in out, f"{XFAIL_FILE}: '{name}' listed twice"
            out[name] = reason
    return out


CASES = node_cases()
EXPECTED = load_expected_failures()


def _param(case):
    marks = []
    if case.name in EXPECTED:
        marks.append(pytest.mark.xfail(reason=EXPECTED[case.name], strict=True))
    return pytest.param(case, id=case.name, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_node(case):
    with np.errstate(all="ignore"):
        run_case(case)


def test_expected_failures_name_real_cases():
    names = {c.name for c in CASES}
    stale = sorted(set(EXPECTED) - names)
    assert not stale, f"expected-failures entries that are not ONNX node cases: {stale}"


def test_pass_rate_floor():
    """At least 97% of the node cases must pass (the rest are listed with reasons)."""
    passing = len(CASES) - len(EXPECTED)
    assert passing >= 0.97 * len(CASES), f"{passing} of {len(CASES)} expected to pass"
