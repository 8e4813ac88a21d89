"""Kernels for the random ops (RandomUniform, RandomNormal, their ``Like`` forms, Bernoulli): a counter-based
generator, Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011).

Each element's draw is a pure function of (key, run, element index): thread ``j`` runs the ten Philox
rounds on the counter (j, run) under the key and gets four 32-bit words, the draws of elements 4j..4j+3
(uniforms: the top 24 bits, in (0, 1); normals: Box-Muller on pairs of them). So no state is shared
between threads and the result does not depend on the launch shape.

A fresh draw each run without host traffic: each node owns a generator state in device memory, two
64-bit words [key, run], uploaded once when the plan is prepared (a constant array of the arena) and
advanced on the device by a one-thread kernel launched before the draw. The key is the node's ``seed``
attribute (its float bits) when it has one, so run ``k`` of any executable of the plan draws the same
values; otherwise a fresh OS-entropy key per lowering. Draws do not equal NumPy's generator stream (the
NumPy backend reseeds each run, so a seeded node repeats there): tests compare statistics. Uniforms have
24 random bits (float resolution) for every output type.
"""
from __future__ import annotations

import math

import numpy as np

from graphc.ir import DType, Node

from ..kernel import (
    CodegenUnsupported,
    KernelGroup,
    Param,
    cctype,
    dtype_of,
    literal,
    load_expr,
    numel,
    shape_of,
    store_expr,
)
from ..lowering import LowerContext, Step, register_lowering
from ..steps import kernel_from

#: Philox-4x32-10: multipliers and Weyl key increments (the published constants), then the generator.
PHILOX = """\
__device__ __forceinline__ unsigned int gc_mulhi32(unsigned int a, unsigned int b)
{ return (unsigned int)(((unsigned long long)a * b) >> 32); }
// Philox-4x32-10: counter c[4] under key (k0, k1) -> four pseudo-random words, in place.
__device__ __forceinline__ void gc_philox(unsigned int c[4], unsigned int k0, unsigned int k1)
{
    for (int r = 0; r < 10; ++r) {
        const unsigned int h0 = gc_mulhi32(0xD2511F53u, c[0]), l0 = 0xD2511F53u * c[0];
        const unsigned int h1 = gc_mulhi32(0xCD9E8D57u, c[2]), l1 = 0xCD9E8D57u * c[2];
        const unsigned int n0 = h1 ^ c[1] ^ k0, n2 = h0 ^ c[3] ^ k1;
        c[0] = n0; c[1] = l1; c[2] = n2; c[3] = l0;
        k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
    }
}
// A word as a uniform float in (0, 1): its top 24 bits, centred in their interval (never 0, never 1).
__device__ __forceinline__ float gc_uniform01(unsigned int w) { return ((w >> 8) + 0.5f) * 5.9604644775390625e-8f; }"""


def generator_state(node: Node) -> np.ndarray:
    """[key, run counter] of a node: the key from its ``seed`` attribute (float bits), else OS entropy."""
    seed = node.attrs.get("seed")
    if seed is not None:
        key = int(np.float64(seed).view(np.uint64))
    else:
        key = int(np.random.SeedSequence().generate_state(1, np.uint64)[0])
    return np.array([key, 0], dtype=np.uint64)


def _draw_lines(node: Node) -> tuple[list[str], str]:
    """(lines computing ``v[4]`` in float from the words ``c[4]``, a description)."""
    a = node.attrs
    op = node.op_type
    if op.startswith("RandomUniform"):
        lo, hi = float(a.get("low", 0.0)), float(a.get("high", 1.0))
        return [f"v[l] = {literal(lo, DType.float32)} + {literal(hi - lo, DType.float32)} * gc_uniform01(c[l]);"], \
            f"uniform [{lo}, {hi})"
    if op.startswith("RandomNormal"):
        mean, scale = float(a.get("mean", 0.0)), float(a.get("scale", 1.0))
        return ["const float r = sqrtf(-2.0f * logf(gc_uniform01(c[l])));",  # Box-Muller on words (l, l+1)
                f"const float t = {literal(2 * math.pi, DType.float32)} * gc_uniform01(c[l + 1]);",
                f"v[l] = {literal(mean, DType.float32)} + {literal(scale, DType.float32)} * r * cosf(t);",
                f"v[l + 1] = {literal(mean, DType.float32)} + {literal(scale, DType.float32)} * r * sinf(t);"], \
            f"normal mean={mean} scale={scale}"
    p = load_expr("p[e + l < N ? e + l : N - 1]", dtype_of(node.inputs[0]))
    return [f"v[l] = gc_uniform01(c[l]) < (float)({p}) ? 1.0f : 0.0f;"], "Bernoulli(p)"


def _random(node: Node, ctx: LowerContext) -> list[Step]:
    out = node.outputs[0]
    dt = dtype_of(out)
    if not (dt.is_float or node.op_type == "Bernoulli"):
        raise CodegenUnsupported(node, f"output type {dt}: random draws are generated for float types "
                                       f"(Bernoulli: any numeric type)")
    shape = shape_of(out)
    n = numel(shape)
    state = generator_state(node)
    bump_group = KernelGroup(f"{node.name}_advance", [node], [], [])
    bump = kernel_from(ctx, bump_group, [Param("output", 0, "st", DType.uint64)], ["st[1] += 1ULL;"], 1,
                       f"{node.op_type}: advance the generator's run counter")
    lines, what = _draw_lines(node)
    step = 2 if node.op_type.startswith("RandomNormal") else 1
    body = ["unsigned int c[4] = {(unsigned int)i, (unsigned int)((unsigned long long)i >> 32),",
            "                     (unsigned int)st[1], (unsigned int)(st[1] >> 32)};",
            "gc_philox(c, (unsigned int)st[0], (unsigned int)(st[0] >> 32));",
            "float v[4];",
            f"for (int l = 0; l < 4; l += {step}) {{", *[f"    {x}" for x in lines], "}",
            "for (int l = 0; l < 4; ++l) {",
            f"    if (e + l < N) out0[e + l] = {store_expr(f'({cctype(dt)})(v[l])', dt)};",
            "}"]
    params = [Param("input", 0, "st", DType.uint64)]
    args = [state]
    inputs = []
    if node.op_type == "Bernoulli":
        p = node.inputs[0]
        params.append(Param("input", 1, "p", dtype_of(p)))
        args.append(p)
        inputs.append(p)
    params.append(Param("output", 0, "out0", dt))
    body[:0] = [f"const long long N = {n};", "const long long e = (long long)i * 4;  // the first element drawn"]
    group = KernelGroup(f"{node.name}_draw", [node], inputs, [out])
    draw = kernel_from(ctx, group, params, body, (n + 3) // 4,
                       f"{node.op_type}: {what} into {dt}{list(shape)}, Philox-4x32-10, 4 per thread", PHILOX)
    return [Step(bump, [state], node), Step(draw, args + [out], node)]

register_lowering("RandomUniform", _random)

register_lowering("RandomUniformLike", _random)

register_lowering("RandomNormal", _random)

register_lowering("RandomNormalLike", _random)

register_lowering("Bernoulli", _random)


__all__ = ['PHILOX', 'generator_state']
