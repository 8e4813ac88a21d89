"""CUDA C for elementwise and broadcast ops: one C expression per op, with NumPy's broadcasting and dtypes.

Each op reads its inputs at the coordinates broadcast to its own shape and emits one line
``const T vN = <expr>;  // Op 'node'``. Arithmetic runs in the compute type (float for the half
types); results follow the NumPy reference's semantics where C differs: max/min/relu propagate NaN,
integer Mod takes the divisor's sign, Round rounds half to even.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from graphc.ir import DType, Node
from graphc.ops import has_fact

from .kernel import (HELPERS, OP_EMITTERS, CodegenUnsupported, Coords, Emitter, cctype, compute_dtype, convert,
                      dtype_of, literal, round_to, shape_of)

# ---- helpers the expressions call -------------------------------------------------------------
HELPERS.update({
    "max": "template <typename T> __device__ __forceinline__ T gc_max(T a, T b) { return (a != a || a > b) ? a : b; }",
    "min": "template <typename T> __device__ __forceinline__ T gc_min(T a, T b) { return (a != a || a < b) ? a : b; }",
    "clip": "template <typename T> __device__ __forceinline__ T gc_clip(T x, T lo, T hi) "
            "{ return x < lo ? lo : (x > hi ? hi : x); }",
    "sigmoid": "__device__ __forceinline__ float gc_sigmoid(float x) "
               "{ const float e = expf(-fabsf(x)); return x >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e); }\n"
               "__device__ __forceinline__ double gc_sigmoid(double x) "
               "{ const double e = exp(-fabs(x)); return x >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e); }",
    "softplus": "__device__ __forceinline__ float gc_softplus(float x) "
                "{ return fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x))); }\n"
                "__device__ __forceinline__ double gc_softplus(double x) "
                "{ return fmax(x, 0.0) + log1p(exp(-fabs(x))); }",
    "mod": "template <typename T> __device__ __forceinline__ T gc_mod(T a, T b) "
           "{ T r = a % b; return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r; }\n"
           "__device__ __forceinline__ float gc_mod(float a, float b) "
           "{ float r = fmodf(a, b); return (r != 0.0f && ((r < 0.0f) != (b < 0.0f))) ? r + b : r; }\n"
           "__device__ __forceinline__ double gc_mod(double a, double b) "
           "{ double r = fmod(a, b); return (r != 0.0 && ((r < 0.0) != (b < 0.0))) ? r + b : r; }",
    "ipow": "template <typename T> __device__ __forceinline__ T gc_ipow(T base, T e) "
            "{ T r = 1; while (e > 0) { if (e & 1) r *= base; base *= base; e >>= 1; } return r; }",
    "sign": "template <typename T> __device__ __forceinline__ T gc_sign(T x) "
            "{ return x > T(0) ? T(1) : (x < T(0) ? T(-1) : x); }",
})


def _fn(name: str, dt: DType) -> str:
    """The C math function ``name`` for compute type ``dt`` (``expf`` for float, ``exp`` for double)."""
    return name + "f" if compute_dtype(dt) == DType.float32 else name


def _float_compute(dt: DType) -> DType:
    """Float-math ops on integers compute in double (as the NumPy reference does) and cast back."""
    return compute_dtype(dt) if dt.is_float else DType.float64


# ---- op table ---------------------------------------------------------------------------------
#: op type -> fn(node, args, arg dtypes, compute dtype, helpers) -> C expression in the compute dtype.
ExprFn = Callable[[Node, list, list, DType, set], str]
_EXPRS: dict[str, ExprFn] = {}


def _unary_math(name: str, cname: str) -> None:
    _EXPRS[name] = lambda n, a, t, c, h: f"{_fn(cname, c)}({a[0]})"


for _op, _c in [("Exp", "exp"), ("Log", "log"), ("Sqrt", "sqrt"), ("Sin", "sin"), ("Cos", "cos"), ("Tan", "tan"),
                ("Asin", "asin"), ("Acos", "acos"), ("Atan", "atan"), ("Sinh", "sinh"), ("Cosh", "cosh"),
                ("Asinh", "asinh"), ("Acosh", "acosh"), ("Atanh", "atanh"), ("Erf", "erf"), ("Tanh", "tanh"),
                ("Ceil", "ceil"), ("Floor", "floor"), ("Round", "rint")]:
    _unary_math(_op, _c)


def _k(x, c: DType) -> str:
    return literal(x, c)


def _use(h: set, *names: str) -> None:
    h.update(names)


_EXPRS.update({
    "Identity": lambda n, a, t, c, h: a[0],
    "Neg": lambda n, a, t, c, h: f"-{a[0]}" if c.is_float else f"(({cctype(c)})(-{a[0]}))",
    "Abs": lambda n, a, t, c, h: (f"{_fn('fabs', c)}({a[0]})" if c.is_float else
                                  a[0] if c.name.startswith("uint") else f"(({cctype(c)})({a[0]} < 0 ? -{a[0]} : {a[0]}))"),
    "Reciprocal": lambda n, a, t, c, h: f"{_k(1, c)} / {a[0]}",
    "Relu": lambda n, a, t, c, h: f"({a[0]} < {_k(0, c)} ? {_k(0, c)} : {a[0]})",
    "Sign": lambda n, a, t, c, h: (_use(h, "sign"), f"gc_sign({a[0]})")[1],
    "Not": lambda n, a, t, c, h: f"!{a[0]}",
    "BitwiseNot": lambda n, a, t, c, h: f"(({cctype(c)})~{a[0]})",
    "Sigmoid": lambda n, a, t, c, h: (_use(h, "sigmoid"), f"gc_sigmoid({a[0]})")[1],
    "Softplus": lambda n, a, t, c, h: (_use(h, "softplus"), f"gc_softplus({a[0]})")[1],
    "Softsign": lambda n, a, t, c, h: f"{a[0]} / ({_k(1, c)} + {_fn('fabs', c)}({a[0]}))",
    "Mish": lambda n, a, t, c, h: (_use(h, "softplus"), f"{a[0]} * {_fn('tanh', c)}(gc_softplus({a[0]}))")[1],
    "Swish": lambda n, a, t, c, h: (_use(h, "sigmoid"), f"{a[0]} * gc_sigmoid({_k(n.attrs['alpha'], c)} * {a[0]})")[1],
    "SwiGLU": lambda n, a, t, c, h: (_use(h, "sigmoid"),
                                     f"{a[0]} * gc_sigmoid({_k(n.attrs['alpha'], c)} * {a[0]}) * {a[1]}")[1],
    "LeakyRelu": lambda n, a, t, c, h: f"({a[0]} >= {_k(0, c)} ? {a[0]} : {_k(n.attrs['alpha'], c)} * {a[0]})",
    "Elu": lambda n, a, t, c, h: f"({a[0]} > {_k(0, c)} ? {a[0]} : {_k(n.attrs['alpha'], c)} * {_fn('expm1', c)}({a[0]}))",
    "Selu": lambda n, a, t, c, h: (f"{_k(n.attrs['gamma'], c)} * ({a[0]} > {_k(0, c)} ? {a[0]} : "
                                   f"{_k(n.attrs['alpha'], c)} * {_fn('expm1', c)}({a[0]}))"),
    "Celu": lambda n, a, t, c, h: (_use(h, "max", "min"),
                                   f"gc_max({a[0]}, {_k(0, c)}) + gc_min({_k(0, c)}, {_k(n.attrs['alpha'], c)} * "
                                   f"{_fn('expm1', c)}({a[0]} / {_k(n.attrs['alpha'], c)}))")[1],
    "HardSigmoid": lambda n, a, t, c, h: (_use(h, "clip"),
                                          f"gc_clip({_k(n.attrs['alpha'], c)} * {a[0]} + {_k(n.attrs['beta'], c)}, "
                                          f"{_k(0, c)}, {_k(1, c)})")[1],
    "HardSwish": lambda n, a, t, c, h: (_use(h, "clip"),
                                        f"{a[0]} * gc_clip({a[0]} / {_k(6, c)} + {_k(0.5, c)}, {_k(0, c)}, {_k(1, c)})")[1],
    "ThresholdedRelu": lambda n, a, t, c, h: f"({a[0]} > {_k(n.attrs['alpha'], c)} ? {a[0]} : {_k(0, c)})",
    "Shrink": lambda n, a, t, c, h: (f"({a[0]} < -{_k(n.attrs['lambd'], c)} ? {a[0]} + {_k(n.attrs['bias'], c)} : "
                                     f"({a[0]} > {_k(n.attrs['lambd'], c)} ? {a[0]} - {_k(n.attrs['bias'], c)} : "
                                     f"{_k(0, c)}))"),
    "Gelu": lambda n, a, t, c, h: (
        f"{_k(0.5, c)} * {a[0]} * ({_k(1, c)} + {_fn('tanh', c)}({_k(0.7978845608028654, c)} * "
        f"({a[0]} + {_k(0.044715, c)} * {a[0]} * {a[0]} * {a[0]})))" if n.attrs["approximate"] == "tanh" else
        f"{_k(0.5, c)} * {a[0]} * ({_k(1, c)} + {_fn('erf', c)}({a[0]} / {_k(1.4142135623730951, c)}))"),
    "IsNaN": lambda n, a, t, c, h: f"({a[0]} != {a[0]})",
    "IsInf": lambda n, a, t, c, h: _isinf(n, a[0], t[0]),
    # binary
    "Add": lambda n, a, t, c, h: _arith(c, f"{a[0]} + {a[1]}"),
    "Sub": lambda n, a, t, c, h: _arith(c, f"{a[0]} - {a[1]}"),
    "Mul": lambda n, a, t, c, h: _arith(c, f"{a[0]} * {a[1]}"),
    "Div": lambda n, a, t, c, h: _arith(c, f"{a[0]} / {a[1]}"),
    "Mod": lambda n, a, t, c, h: (f"{_fn('fmod', c)}({a[0]}, {a[1]})" if n.attrs["fmod"] and c.is_float else
                                  _arith(c, f"{a[0]} % {a[1]}") if n.attrs["fmod"] else
                                  (_use(h, "mod"), f"gc_mod({a[0]}, {a[1]})")[1]),
    "Pow": lambda n, a, t, c, h: _pow(a, t, c, h),
    "Max": lambda n, a, t, c, h: (_use(h, "max"), _fold("gc_max", a))[1],
    "Min": lambda n, a, t, c, h: (_use(h, "min"), _fold("gc_min", a))[1],
    "Sum": lambda n, a, t, c, h: _arith(c, " + ".join(a)),
    "Mean": lambda n, a, t, c, h: f"({' + '.join(a)}) / {_k(len(a), c)}",
    "PRelu": lambda n, a, t, c, h: f"({a[0]} < {_k(0, c)} ? {a[1]} * {a[0]} : {a[0]})",
    "Equal": lambda n, a, t, c, h: f"({a[0]} == {a[1]})",
    "Greater": lambda n, a, t, c, h: f"({a[0]} > {a[1]})",
    "Less": lambda n, a, t, c, h: f"({a[0]} < {a[1]})",
    "GreaterOrEqual": lambda n, a, t, c, h: f"({a[0]} >= {a[1]})",
    "LessOrEqual": lambda n, a, t, c, h: f"({a[0]} <= {a[1]})",
    "And": lambda n, a, t, c, h: f"({a[0]} && {a[1]})",
    "Or": lambda n, a, t, c, h: f"({a[0]} || {a[1]})",
    "Xor": lambda n, a, t, c, h: f"({a[0]} != {a[1]})",
    "BitwiseAnd": lambda n, a, t, c, h: _arith(c, f"{a[0]} & {a[1]}"),
    "BitwiseOr": lambda n, a, t, c, h: _arith(c, f"{a[0]} | {a[1]}"),
    "BitwiseXor": lambda n, a, t, c, h: _arith(c, f"{a[0]} ^ {a[1]}"),
    "BitShift": lambda n, a, t, c, h: _bitshift(n, a, c),
    "Where": lambda n, a, t, c, h: f"({a[0]} ? {a[1]} : {a[2]})",
    "Clip": lambda n, a, t, c, h: _clip(n, a, c),
})
#: inputs whose dtype the op keeps rather than converting to the output's (comparisons, Where's condition)
_OWN_TYPE_INPUTS = {"Equal": (0, 1), "Greater": (0, 1), "Less": (0, 1), "GreaterOrEqual": (0, 1),
                    "LessOrEqual": (0, 1), "IsNaN": (0,), "IsInf": (0,), "Where": (0,), "Pow": (0, 1)}


def _arith(c: DType, expr: str) -> str:
    """Integer arithmetic narrower than int promotes in C: cast back to the op's type (NumPy wraps)."""
    if c in (DType.int8, DType.int16, DType.uint8, DType.uint16):
        return f"(({cctype(c)})({expr}))"
    return expr


def _bitshift(n: Node, a: list[str], c: DType) -> str:
    """Shifts by the type's width or more (or by a negative amount) give 0, or -1 for a negative value
    shifted right, as the reference defines them (C leaves them undefined)."""
    bits = c.itemsize * 8
    signed = c.name.startswith("int")
    out = f"({a[1]} >= {bits} || {a[1]} < 0)" if signed else f"{a[1]} >= {bits}"
    if n.attrs["direction"] == "LEFT":
        return f"({out} ? ({cctype(c)})0 : {_arith(c, f'{a[0]} << {a[1]}')})"
    fill = f"({a[0]} < 0 ? ({cctype(c)})-1 : ({cctype(c)})0)" if signed else f"({cctype(c)})0"
    return f"({out} ? {fill} : {_arith(c, f'{a[0]} >> {a[1]}')})"


def _fold(fn: str, args: list[str]) -> str:
    out = args[0]
    for a in args[1:]:
        out = f"{fn}({out}, {a})"
    return out


def _isinf(n: Node, x: str, dt: DType) -> str:
    inf = literal(float("inf"), dt)
    neg, pos = n.attrs["detect_negative"], n.attrs["detect_positive"]
    parts = ([f"{x} == {inf}"] if pos else []) + ([f"{x} == -{inf}"] if neg else [])
    return f"({' || '.join(parts)})" if parts else "false"


def _pow(a: list[str], t: list[DType], c: DType, h: set) -> str:
    base, exp = t
    if not base.is_float and not exp.is_float:
        _use(h, "ipow")
        return f"gc_ipow({a[0]}, {convert(a[1], exp, base)})"
    wide = DType.float64 if (base == DType.float64 or exp == DType.float64 or not base.is_float
                             or not exp.is_float) else DType.float32
    expr = f"{_fn('pow', wide)}({convert(a[0], base, wide)}, {convert(a[1], exp, wide)})"
    return convert(expr, wide, c)


def _clip(n: Node, a: list[str], c: DType) -> str:
    out = a[0]
    present = [v is not None for v in n.inputs[1:3]] + [False, False]
    k = 1
    if present[0]:
        out = f"({out} < {a[k]} ? {a[k]} : {out})"
        k += 1
    if present[1]:
        out = f"({out} > {a[k]} ? {a[k]} : {out})"
    return out


def emit_elementwise(em: Emitter, node: Node, coords: Coords) -> str:
    """One line computing ``node``'s output at ``coords`` from its inputs at the broadcast coordinates."""
    out_v = node.outputs[0]
    out_dt = dtype_of(out_v)
    ins = [v for v in node.inputs if v is not None]
    in_dts = [dtype_of(v) for v in ins]
    # the compute type: a comparison's inputs', Not's bool, otherwise the output's; float math (OpDef.float_math)
    # on integers computes in double
    bool_out = has_fact(node, "bool_output")
    c = (in_dts[-1] if node.op_type != "Not" else DType.bool) if bool_out else out_dt
    if has_fact(node, "float_math"):
        c = _float_compute(in_dts[0])
    keep = _OWN_TYPE_INPUTS.get(node.op_type, ())
    args, arg_dts = [], []
    for i, (v, dt) in enumerate(zip(ins, in_dts)):
        x = em.value(v, coords.broadcast_to(shape_of(v)))
        if i in keep:
            args.append(x)
            arg_dts.append(dt)
        else:
            args.append(convert(x, dt, c))
            arg_dts.append(c)
    expr = _EXPRS[node.op_type](node, args, arg_dts, compute_dtype(c), em.helpers)
    result_dt = DType.bool if bool_out else c
    expr = round_to(convert(expr, result_dt, out_dt), out_dt)
    return em.temp("v", cctype(out_dt), expr, f"{node.op_type} '{node.name}'")


def saturating_cast(a: str, src: DType, dst: DType) -> str:
    """``a`` (a name or literal in the float compute type of ``src``) cast to the integer type ``dst`` with the
    rule every graphc backend follows where ONNX leaves the result undefined: NaN gives 0, values below the
    type's range its minimum (0 for unsigned types), values above it its maximum, the rest truncate toward zero.
    Written out rather than left to a C cast, which differs between the GPU (saturating) and x86 (the
    "integer indefinite" value), so that the GPU, the emulator and the NumPy backend agree."""
    info = np.iinfo(dst.np)
    c = compute_dtype(src)
    lo, hi = literal(float(info.min), c), literal(float(info.max) + 1.0, c)  # powers of two: exact in any float
    t = cctype(dst)
    return (f"({a} != {a} ? ({t})0 : ({a} < {lo} ? {literal(info.min, dst)} : "
            f"({a} >= {hi} ? {literal(info.max, dst)} : ({t})({a}))))")


def emit_cast(em: Emitter, node: Node, coords: Coords) -> str:
    x = node.inputs[0]
    src, dst = dtype_of(x), dtype_of(node.outputs[0])
    a = em.value(x, coords.broadcast_to(shape_of(x)))
    if compute_dtype(src).is_float and dst != DType.bool and not dst.is_float:
        expr = saturating_cast(a, src, dst)
    else:
        expr = convert(a, src, dst) if src == dst else round_to(convert(a, src, dst), dst)
    return em.temp("v", cctype(dst), expr, f"Cast '{node.name}' to {dst}")


def _checked(fn):
    def emit(em: Emitter, node: Node, coords: Coords) -> str:
        for v in list(node.inputs) + list(node.outputs):
            if v is not None:
                dtype_of(v)
        if node.op_type == "Gelu" and node.attrs.get("approximate") not in ("none", "tanh"):
            raise CodegenUnsupported(node, f"Gelu approximate={node.attrs.get('approximate')!r}")
        return fn(em, node, coords)

    return emit


for _name in _EXPRS:
    OP_EMITTERS[_name] = _checked(emit_elementwise)
OP_EMITTERS["Cast"] = _checked(emit_cast)

#: The elementwise and broadcast ops this module generates code for.
ELEMENTWISE_OPS = frozenset(_EXPRS) | {"Cast"}

__all__ = ["ELEMENTWISE_OPS", "emit_elementwise"]
