"""The ONNX node test cases whose every op has a CUDA kernel, lowered for a device (shared by the emulator,
nvcc and GPU tests). A case the backend reports as missing (an element type it does not read yet, axes
given at run time) is left out: the missing-ops error is what such a model gets."""
from __future__ import annotations

import functools

import graphc as gc
from graphc.compiler import compile as compile_graph
from graphc.tools.conformance import is_random_op, node_cases
from graphc.runtime.codegen.lowering import MissingKernelError, lower


@functools.lru_cache(maxsize=2)
def lowered_node_cases(props):
    """[(case, plan, steps)] for every node case the CUDA backend has kernels for, judged on the compiled
    plan (Constant nodes are constants by then, CastLike a Cast, a Dropout gone...)."""
    out = []
    for c in node_cases():
        # random draws: statistics in test_cuda_dsl_coverage.py
        if any(is_random_op(n.op_type) for n in c.model.graph.node):
            continue
        plan = compile_graph(gc.import_onnx(c.model))
        try:
            steps = lower(plan.graph, props).steps
        except MissingKernelError:
            continue
        out.append((c, plan, steps))
    return tuple(out)
