"""The compiled CPU backend (the generated kernels rendered as C++) on every ONNX node test case:
its outputs equal onnx's expected outputs as the NumPy backend's do. Ops without a kernel run through the
reference interpreter inside the plan (``HostCall``); graphs an arena cannot hold (sequences) fall back to
the NumPy backend with a warning."""
from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest

import graphc as gc
from graphc.compiler import compile as compile_graph
from graphc.errors import GraphcWarning
from graphc.runtime.cpu import CpuBackend, HostDevice, available
from graphc.runtime.cuda.cache import KernelCache
from graphc.runtime.codegen.lowering import HostCall, lower
from graphc.tools.conformance import _normalize, assert_similar, is_random_op, node_cases

pytestmark = pytest.mark.skipif(not available(), reason="the CPU backend needs a C++ compiler")

CHUNKS = 6
#: cases whose float16 results differ from onnx's by 2 units in the last place: the CPU kernels compute a
#: half-precision softmax in float32 and round once, where the reference rounds every step
HALF_ULPS = {"test_attention_4d_causal_fp16_expanded"}


@functools.lru_cache(maxsize=1)
def _cases():
    out = []
    for c in node_cases():
        if any(is_random_op(n.op_type) for n in c.model.graph.node):
            continue  # random draws: statistics elsewhere
        out.append((c, compile_graph(gc.import_onnx(c.model))))
    return tuple(out)


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_onnx_node_cases_on_the_cpu_backend(chunk, tmp_path):
    from graphc.runtime.cpu import host_props

    cases = _cases()[chunk::CHUNKS]
    dev = HostDevice(KernelCache(tmp_path))
    kernels = []
    for _, plan in cases:  # every kernel of the chunk in one compiler run
        try:
            kernels += [s.kernel for s in lower(plan.graph, host_props(dev.threads)).steps if s.kernel is not None]
        except Exception:  # symbolic dims or values an arena cannot hold: prepare decides
            pass
    dev.precompile(kernels)
    failures = []
    for case, plan in cases:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", GraphcWarning)
                exe = CpuBackend.prepare(plan, device=dev, debug=True)
            for inputs, refs in case.data_sets:
                outs = exe.run([_normalize(x) for x in inputs])
                for i, (r, o) in enumerate(zip(refs, outs)):
                    rtol = 2e-3 if case.name in HALF_ULPS else case.rtol
                    assert_similar(_normalize(r), o, rtol, case.atol, f"output {i}")
        except Exception as e:  # collected, so that one run lists every failing case
            failures.append(f"{case.name}: {type(e).__name__}: {str(e)[:300]}")
    assert not failures, "\n".join(failures)


def test_most_node_cases_run_generated_kernels():
    """The interpreter stands in for few ops: most steps of the node cases are generated kernels."""
    from graphc.runtime.cpu import host_props

    kernels = host = 0
    for _, plan in _cases():
        try:
            steps = lower(plan.graph, host_props(2)).steps
        except Exception:
            continue
        kernels += sum(1 for s in steps if s.kernel is not None)
        host += sum(1 for s in steps if isinstance(s.call, HostCall))
    assert kernels > 3000 and host < kernels / 4, (kernels, host)
