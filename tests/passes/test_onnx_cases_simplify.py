"""simplify() over the ONNX node test cases with more than one node: outputs and their names must not change.

These graphs (expanded functions such as LayerNormalization, Softmax or attention spelled out, shape
arithmetic, constants) are graphs exporters really write; each runs before and after simplify on the
case's own inputs.
"""
from __future__ import annotations

import warnings

import numpy as np

from graphc.frontends.onnx import import_model
from graphc.tools.conformance import _normalize, _random_nodes, assert_similar, node_cases
from graphc.errors import GraphcError
from graphc.passes import simplify
from graphc.runtime import get_backend


def _multi_node_cases():
    out = []
    for case in node_cases():
        if len(case.model.graph.node) > 1:
            out.append(case)
    return out


def test_simplify_keeps_every_multi_node_case_result():
    checked = changed = 0
    failures = []
    for case in _multi_node_cases():
        try:
            g = import_model(case.model)
            if _random_nodes(g):
                continue
            inputs = [_normalize(x) for x in case.data_sets[0][0]]
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                want = get_backend("numpy").prepare(g.copy()).run(inputs)
        except GraphcError:
            continue  # a case graphc does not run yet (listed in onnx_node_expected_failures.txt)
        names = [v.name for v in g.outputs]
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                changed += simplify(g, verify=False).changed
                g.verify()
                got = get_backend("numpy").prepare(g).run(inputs)
            assert [v.name for v in g.outputs] == names, f"output names {names} became {[v.name for v in g.outputs]}"
            for i, (a, b) in enumerate(zip(want, got)):
                assert_similar(a, b, 1e-5, 1e-6, f"output {i}")
        except (AssertionError, GraphcError) as e:
            failures.append(f"{case.name}: {' '.join(str(e).split())[:300]}")
        checked += 1
    assert not failures, "\n".join(failures)
    print(f"{checked} cases checked, simplify changed {changed}")
    assert checked > 300 and changed > 100, (checked, changed)
