"""Random generators: RandomNormal, RandomUniform (and their *Like forms), Bernoulli, Multinomial.

Each draws from NumPy's default generator, seeded by the node's ``seed`` attribute when it has one.
"""
from __future__ import annotations

import numpy as np

from ..ir import DType
from .common import check_rank, dtype_attr, tt
from .registry import REQUIRED, Attr, InferContext, OpDef, register, set_facts, set_grads

FAMILY = "random"


def _rng(node) -> np.random.Generator:
    seed = node.attrs.get("seed")
    return np.random.default_rng(None if seed is None else int(seed))


def _random_eval(node, x=None):
    a = node.attrs
    shape = tuple(a["shape"]) if x is None else x.shape
    default = None if x is None else DType.from_np(x.dtype)
    dt = dtype_attr(a.get("dtype"), default).np
    rng = _rng(node)
    if "mean" in a:
        return (rng.standard_normal(shape) * a["scale"] + a["mean"]).astype(dt)
    return rng.uniform(a["low"], a["high"], shape).astype(dt)


def _random_infer(ctx: InferContext) -> list:
    if ctx.node.op_type.endswith("Like"):
        dt = dtype_attr(ctx.attr("dtype"), ctx.dtype(0))
        return [tt(dt, ctx.shape(0))]
    shape = ctx.attr("shape")
    if any(d < 0 for d in shape):
        ctx.fail(f"attribute 'shape' must not hold negative dims, got {shape}")
    return [tt(dtype_attr(ctx.attr("dtype"), DType.float32), shape)]


_NORMAL = {"mean": Attr("float", 0.0), "scale": Attr("float", 1.0), "seed": Attr("float")}
_UNIFORM = {"low": Attr("float", 0.0), "high": Attr("float", 1.0), "seed": Attr("float")}
register(OpDef("RandomNormal", eval=_random_eval, infer=_random_infer, inputs=(0, 0), family=FAMILY,
               attrs={**_NORMAL, "dtype": Attr("int", 1), "shape": Attr("ints", REQUIRED)}))
register(OpDef("RandomUniform", eval=_random_eval, infer=_random_infer, inputs=(0, 0), family=FAMILY,
               attrs={**_UNIFORM, "dtype": Attr("int", 1), "shape": Attr("ints", REQUIRED)}))
register(OpDef("RandomNormalLike", eval=_random_eval, infer=_random_infer, inputs=(1, 1), family=FAMILY,
               attrs={**_NORMAL, "dtype": Attr("int")}))
register(OpDef("RandomUniformLike", eval=_random_eval, infer=_random_infer, inputs=(1, 1), family=FAMILY,
               attrs={**_UNIFORM, "dtype": Attr("int")}))


def _bernoulli_eval(node, p):
    dt = dtype_attr(node.attrs.get("dtype"), DType.from_np(p.dtype)).np
    return (_rng(node).random(p.shape) < p).astype(dt)


register(OpDef("Bernoulli", eval=_bernoulli_eval, family=FAMILY, inputs=(1, 1),
               infer=lambda ctx: [tt(dtype_attr(ctx.attr("dtype"), ctx.dtype(0)), ctx.shape(0))],
               attrs={"dtype": Attr("int"), "seed": Attr("float")}))


def _multinomial_eval(node, logits):
    n = node.attrs["sample_size"]
    x = logits.astype(np.float64)
    p = np.exp(x - x.max(axis=-1, keepdims=True))
    cdf = np.cumsum(p, axis=-1)
    cdf /= cdf[:, -1:]
    u = _rng(node).random((x.shape[0], n))
    idx = np.minimum((u[:, :, None] >= cdf[:, None, :]).sum(-1), x.shape[1] - 1)
    return idx.astype(DType(node.attrs["dtype"]).np)


def _multinomial_infer(ctx: InferContext) -> list:
    check_rank(ctx, 0, (2,), "input")
    dt = DType(ctx.attr("dtype"))
    if dt not in (DType.int32, DType.int64):
        ctx.fail(f"attribute 'dtype' must be int32 or int64, got {dt}")
    s = ctx.shape(0)
    return [tt(dt, None if s is None else (s[0], ctx.attr("sample_size")))]


register(OpDef("Multinomial", eval=_multinomial_eval, infer=_multinomial_infer, inputs=(1, 1), family=FAMILY,
               attrs={"dtype": Attr("int", 6), "sample_size": Attr("int", 1), "seed": Attr("float")}))


_RANDOM = "its output is random"
set_grads({}, {name: _RANDOM for name in ("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                                          "Bernoulli", "Multinomial")})
set_facts(random=("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Bernoulli", "Multinomial"),
          value_sized=("Multinomial", "RandomNormalLike", "RandomUniformLike"))
