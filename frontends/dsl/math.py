"""The DSL's math, reduction and shape functions (``gc.exp``, ``gc.reduce_sum``, ``gc.reshape``, ...).

Each function builds ONNX-vocabulary nodes through ``apply_op``; NumPy-style conveniences (negative
axes, ``x[:, 1:5]``, ``x[..., None]``, Python numbers as operands) are translated here.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from graphc.errors import GraphBuildError
from graphc.ir import DType

from .tensor import Tensor, _binary, _graph_of, apply_op, as_tensor, caller_source, const_value

_INT64_MAX = np.iinfo(np.int64).max


def _dtype(dtype) -> DType:
    if isinstance(dtype, DType):
        return dtype
    if isinstance(dtype, str):
        return DType[dtype]
    return DType.from_np(dtype)


def _axes(x: Tensor, axis) -> list[int] | None:
    if axis is None:
        return None
    return [int(a) for a in (axis if isinstance(axis, (list, tuple)) else [axis])]


def _ints(g, values: Sequence[int], name: str = "const") -> Tensor:
    return Tensor(g, const_value(g, np.asarray(list(values), dtype=np.int64), name=name))


# ---- elementwise --------------------------------------------------------------------------
def _unary(op: str):
    def fn(x, name: str | None = None) -> Tensor:
        return apply_op(op, [as_tensor(x)], name=name)

    fn.__name__ = op.lower()
    fn.__doc__ = f"Elementwise {op} (the ONNX operator of that name)."
    return fn


exp = _unary("Exp")
log = _unary("Log")
sqrt = _unary("Sqrt")
abs = _unary("Abs")  # noqa: A001
negative = _unary("Neg")
sin = _unary("Sin")
cos = _unary("Cos")
tanh = _unary("Tanh")
sigmoid = _unary("Sigmoid")
relu = _unary("Relu")
erf = _unary("Erf")
floor = _unary("Floor")
ceil = _unary("Ceil")
sign = _unary("Sign")
round = _unary("Round")  # noqa: A001
_STEP_POLICY = ("\n\nGradient policy (the same for round, floor, ceil and sign, as PyTorch): the derivative is zero, "
                "its value wherever it exists; write a straight-through estimator with gc.stop_gradient "
                "(``x + gc.stop_gradient(gc.round(x) - x)``) or gc.custom_gradient.")
round.__doc__ = "Elementwise rounding to the nearest integer, halves to even (ONNX Round)." + _STEP_POLICY
floor.__doc__ = "Elementwise rounding down (ONNX Floor)." + _STEP_POLICY
ceil.__doc__ = "Elementwise rounding up (ONNX Ceil)." + _STEP_POLICY
sign.__doc__ = "Elementwise sign: -1, 0 or 1 (ONNX Sign)." + _STEP_POLICY
reciprocal = _unary("Reciprocal")
logical_not = _unary("Not")


def square(x) -> Tensor:
    """x * x, elementwise."""
    x = as_tensor(x)
    return x * x


def rsqrt(x) -> Tensor:
    """1 / sqrt(x), elementwise."""
    return reciprocal(sqrt(x))


def add(a, b) -> Tensor:
    """a + b, elementwise with broadcasting."""
    return _binary("Add", a, b)
def subtract(a, b) -> Tensor:
    """a - b, elementwise with broadcasting."""
    return _binary("Sub", a, b)
def multiply(a, b) -> Tensor:
    """a * b, elementwise with broadcasting."""
    return _binary("Mul", a, b)
def divide(a, b) -> Tensor:
    """a / b, elementwise with broadcasting."""
    return _binary("Div", a, b)
def pow(a, b) -> Tensor:  # noqa: A001
    """a ** b, elementwise with broadcasting."""
    return _binary("Pow", a, b)
def matmul(a, b) -> Tensor:
    """Matrix product a @ b (batched over leading axes, NumPy rules)."""
    return _binary("MatMul", a, b)
def maximum(a, b) -> Tensor:
    """The larger of a and b, elementwise."""
    return _binary("Max", a, b)
def minimum(a, b) -> Tensor:
    """The smaller of a and b, elementwise."""
    return _binary("Min", a, b)
def equal(a, b) -> Tensor:
    """a == b, elementwise (a boolean tensor)."""
    return _binary("Equal", a, b)
def less(a, b) -> Tensor:
    """a < b, elementwise (a boolean tensor)."""
    return _binary("Less", a, b)
def greater(a, b) -> Tensor:
    """a > b, elementwise (a boolean tensor)."""
    return _binary("Greater", a, b)
def logical_and(a, b) -> Tensor:
    """a and b, elementwise on boolean tensors."""
    return _binary("And", a, b)
def logical_or(a, b) -> Tensor:
    """a or b, elementwise on boolean tensors."""
    return _binary("Or", a, b)


def not_equal(a, b) -> Tensor:
    """a != b, elementwise (a boolean tensor)."""
    return logical_not(equal(a, b))


def where(cond, a, b) -> Tensor:
    """Elementwise ``a if cond else b`` with broadcasting."""
    g = _graph_of([cond, a, b])
    like = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else None
    dt = like.dtype if like is not None else None
    a = a if isinstance(a, Tensor) else Tensor(g, const_value(g, a, dt))
    b = b if isinstance(b, Tensor) else Tensor(g, const_value(g, b, dt))
    return apply_op("Where", [as_tensor(cond, g), a, b])


def clip(x, lo=None, hi=None) -> Tensor:
    """x limited to [lo, hi] (either bound may be None or a tensor)."""
    x = as_tensor(x)
    g = x.graph
    lo_t = None if lo is None else (lo if isinstance(lo, Tensor) else Tensor(g, const_value(g, lo, x.dtype)))
    hi_t = None if hi is None else (hi if isinstance(hi, Tensor) else Tensor(g, const_value(g, hi, x.dtype)))
    return apply_op("Clip", [x, lo_t, hi_t])


def cast(x, dtype) -> Tensor:
    """x converted to ``dtype`` (a gc dtype, its name, or a NumPy dtype); x itself when it has that type."""
    x = as_tensor(x)
    dt = _dtype(dtype)
    if x.dtype == dt:
        return x
    return apply_op("Cast", [x], {"to": dt.value})


# ---- reductions ---------------------------------------------------------------------------
def _reduce(op: str):
    def fn(x, axis=None, keepdims: bool = False, name: str | None = None) -> Tensor:
        x = as_tensor(x)
        axes = _axes(x, axis)
        ins = [x] if axes is None else [x, _ints(x.graph, axes, "axes")]
        return apply_op(op, ins, {"keepdims": int(keepdims)}, name=name)

    fn.__name__ = op
    fn.__doc__ = f"{op} over ``axis`` (an int, a list, or None for all axes)."
    return fn


reduce_sum = _reduce("ReduceSum")
reduce_mean = _reduce("ReduceMean")
reduce_max = _reduce("ReduceMax")
reduce_min = _reduce("ReduceMin")
reduce_prod = _reduce("ReduceProd")
reduce_logsumexp = _reduce("ReduceLogSumExp")


def argmax(x, axis: int = -1, keepdims: bool = False) -> Tensor:
    """The index (int64) of the largest element along ``axis``."""
    return apply_op("ArgMax", [as_tensor(x)], {"axis": axis, "keepdims": int(keepdims)})


def argmin(x, axis: int = -1, keepdims: bool = False) -> Tensor:
    """The index (int64) of the smallest element along ``axis``."""
    return apply_op("ArgMin", [as_tensor(x)], {"axis": axis, "keepdims": int(keepdims)})


def cumsum(x, axis: int = 0, exclusive: bool = False, reverse: bool = False) -> Tensor:
    """Running sum along ``axis`` (``exclusive``: without the element itself; ``reverse``: from the end)."""
    x = as_tensor(x)
    return apply_op("CumSum", [x, Tensor(x.graph, const_value(x.graph, np.int64(axis)))],
                    {"exclusive": int(exclusive), "reverse": int(reverse)})


# ---- shapes -------------------------------------------------------------------------------
def shape(x) -> Tensor:
    """The shape of x as an int64 tensor (for shapes known only at run time)."""
    return apply_op("Shape", [as_tensor(x)])


def reshape(x, new_shape) -> Tensor:
    """Reshape; ``new_shape`` holds ints (-1 once: inferred; 0: keep that dim) or is an int64 Tensor."""
    x = as_tensor(x)
    if isinstance(new_shape, Tensor):
        return apply_op("Reshape", [x, new_shape])
    dims = []
    for d in new_shape:
        if d is None:
            dims.append(-1)
        elif isinstance(d, (int, np.integer)):
            dims.append(int(d))
        else:
            raise GraphBuildError(f"reshape: dims must be ints (or -1), got {d!r} in {list(new_shape)}")
    return apply_op("Reshape", [x, _ints(x.graph, dims, "shape")])


def transpose(x, perm=None) -> Tensor:
    """Permute the axes (``perm``; default: reverse them)."""
    x = as_tensor(x)
    attrs = {} if perm is None else {"perm": [int(p) for p in perm]}
    return apply_op("Transpose", [x], attrs)


def swapaxes(x, a: int, b: int) -> Tensor:
    """Exchange axes a and b."""
    x = as_tensor(x)
    perm = list(range(x.ndim))
    perm[a], perm[b] = perm[b], perm[a]
    return transpose(x, perm)


def expand_dims(x, axis) -> Tensor:
    """Insert size-1 axes at ``axis`` (an int or a list)."""
    x = as_tensor(x)
    return apply_op("Unsqueeze", [x, _ints(x.graph, _axes(x, axis), "axes")])


def squeeze(x, axis=None) -> Tensor:
    """Remove size-1 axes (``axis``, or all of them)."""
    x = as_tensor(x)
    axes = _axes(x, axis)
    return apply_op("Squeeze", [x] if axes is None else [x, _ints(x.graph, axes, "axes")])


def broadcast_to(x, new_shape) -> Tensor:
    """x broadcast to ``new_shape`` (ints or an int64 tensor)."""
    x = as_tensor(x)
    target = new_shape if isinstance(new_shape, Tensor) else _ints(x.graph, new_shape, "shape")
    return apply_op("Expand", [x, target])


def flatten(x, axis: int = 1) -> Tensor:
    """2-D: dims before ``axis`` make the rows, the rest the columns."""
    return apply_op("Flatten", [as_tensor(x)], {"axis": axis})


def concat(xs: Sequence, axis: int = 0) -> Tensor:
    """Join tensors along an existing axis."""
    g = _graph_of(list(xs))
    return apply_op("Concat", [as_tensor(x, g) for x in xs], {"axis": axis})


def stack(xs: Sequence, axis: int = 0) -> Tensor:
    """Join tensors of one shape along a new axis."""
    return concat([expand_dims(x, axis) for x in xs], axis)


def split(x, sizes: int | Sequence[int], axis: int = 0) -> list[Tensor]:
    """Split into ``sizes`` equal parts (an int) or parts of the given sizes (a list)."""
    x = as_tensor(x)
    if isinstance(sizes, int):
        outs = apply_op("Split", [x], {"axis": axis, "num_outputs": sizes}, num_outputs=sizes)
    else:
        outs = apply_op("Split", [x, _ints(x.graph, sizes, "split")], {"axis": axis}, num_outputs=len(sizes))
    return outs if isinstance(outs, list) else [outs]


def gather(x, indices, axis: int = 0) -> Tensor:
    """The slices of x at integer ``indices`` along ``axis`` (``tf.gather``)."""
    x = as_tensor(x)
    return apply_op("Gather", [x, as_tensor(indices, x.graph)], {"axis": axis})


def one_hot(indices, depth: int, dtype=DType.float32, axis: int = -1) -> Tensor:
    """1 at each index along a new axis of size ``depth``, 0 elsewhere (out-of-range indices give all zeros)."""
    indices = as_tensor(indices)
    g = indices.graph
    dt = _dtype(dtype)
    return apply_op("OneHot", [indices, Tensor(g, const_value(g, np.int64(depth))),
                               Tensor(g, const_value(g, np.array([0, 1], dtype=dt.np)))], {"axis": axis})


def tile(x, reps: Sequence[int]) -> Tensor:
    """x repeated ``reps[i]`` times along axis i."""
    x = as_tensor(x)
    return apply_op("Tile", [x, _ints(x.graph, reps, "repeats")])


def pad(x, pads: Sequence[tuple[int, int]], value: float = 0.0) -> Tensor:
    """Pad with (before, after) per axis, NumPy-style."""
    x = as_tensor(x)
    flat = [p[0] for p in pads] + [p[1] for p in pads]
    return apply_op("Pad", [x, _ints(x.graph, flat, "pads"), Tensor(x.graph, const_value(x.graph, value, x.dtype))])


def tril(x, k: int = 0) -> Tensor:
    """The lower triangle (on and below diagonal k) of the last two axes; zeros above."""
    x = as_tensor(x)
    return apply_op("Trilu", [x, Tensor(x.graph, const_value(x.graph, np.int64(k)))], {"upper": 0})


def triu(x, k: int = 0) -> Tensor:
    """The upper triangle (on and above diagonal k) of the last two axes; zeros below."""
    x = as_tensor(x)
    return apply_op("Trilu", [x, Tensor(x.graph, const_value(x.graph, np.int64(k)))], {"upper": 1})


def zeros_like(x) -> Tensor:
    """Zeros of x's shape and type."""
    x = as_tensor(x)
    return x * 0


def ones_like(x) -> Tensor:
    """Ones of x's shape and type."""
    x = as_tensor(x)
    return x * 0 + 1


# ---- indexing -----------------------------------------------------------------------------
def getitem(x: Tensor, index: Any) -> Tensor:
    """NumPy basic indexing: ints, slices with steps, None, Ellipsis; or one integer Tensor on one axis."""
    items = list(index) if isinstance(index, tuple) else [index]
    tensor_items = [i for i, it in enumerate(items) if isinstance(it, Tensor)]
    if tensor_items:
        if len(tensor_items) > 1 or any(not (isinstance(it, slice) and it == slice(None)) and not isinstance(it, Tensor)
                                        for it in items):
            raise GraphBuildError("indexing with a tensor: use one integer tensor and `:` elsewhere, "
                                  "e.g. x[:, idx] (use gc.gather for more)")
        return gather(x, items[tensor_items[0]], axis=tensor_items[0])
    n_ell = sum(it is Ellipsis for it in items)
    if n_ell > 1:
        raise GraphBuildError("an index can hold only one Ellipsis (...)")
    consumed = sum(1 for it in items if it is not None and it is not Ellipsis)
    rank = x.ndim
    if n_ell:
        if rank is None:
            raise GraphBuildError(f"x[...] needs the rank of tensor '{x.name}', which is not known")
        k = items.index(Ellipsis)
        items[k:k + 1] = [slice(None)] * (rank - consumed)
    if rank is not None and consumed > rank:
        raise GraphBuildError(f"too many indices for tensor '{x.name}' of rank {rank}: {consumed} given")
    starts, ends, axes, steps, squeeze_axes, unsqueeze_at = [], [], [], [], [], []
    in_axis = out_axis = 0
    for it in items:
        if it is None:
            unsqueeze_at.append(out_axis)
            out_axis += 1
        elif isinstance(it, (int, np.integer)):
            i = int(it)
            starts.append(i)
            ends.append(i + 1 if i != -1 else _INT64_MAX)
            axes.append(in_axis)
            steps.append(1)
            squeeze_axes.append(in_axis)
            if rank is not None and isinstance(x.shape[in_axis], int) and not -x.shape[in_axis] <= i < x.shape[in_axis]:
                raise GraphBuildError(f"index {i} is out of range for axis {in_axis} of tensor '{x.name}' "
                                      f"with shape {list(x.shape)}")
            in_axis += 1
        elif isinstance(it, slice):
            if it != slice(None):
                step = 1 if it.step is None else int(it.step)
                if step == 0:
                    raise GraphBuildError("slice step cannot be zero")
                lo = it.start if it.start is not None else (0 if step > 0 else _INT64_MAX)
                hi = it.stop if it.stop is not None else (_INT64_MAX if step > 0 else -_INT64_MAX)
                starts.append(int(lo))
                ends.append(int(hi))
                axes.append(in_axis)
                steps.append(step)
            in_axis += 1
            out_axis += 1
        else:
            raise GraphBuildError(f"unsupported index {it!r} ({type(it).__name__}): use ints, slices, None, "
                                  f"... or one integer tensor")
    g = x.graph
    y = x
    if axes:
        y = apply_op("Slice", [y, _ints(g, starts, "starts"), _ints(g, ends, "ends"), _ints(g, axes, "axes"),
                               _ints(g, steps, "steps")])
    if squeeze_axes:
        y = apply_op("Squeeze", [y, _ints(g, squeeze_axes, "axes")])
    if unsqueeze_at:
        y = apply_op("Unsqueeze", [y, _ints(g, unsqueeze_at, "axes")])
    return y


__all__ = [n for n in dir() if not n.startswith("_") and n not in {
    "Any", "Sequence", "np", "GraphBuildError", "DType", "Tensor", "apply_op", "as_tensor", "caller_source",
    "const_value", "annotations"}]


# ---- Tensor's indexing and method forms ---------------------------------------------------------------
# Attached here, where the functions live, so that tensor.py (below this module) imports nothing of it.
def _tensor_getitem(self, index) -> Tensor:
    """gc.getitem(self, index): ``x[1:, ::2, None, ...]``, integer tensors as indices."""
    return getitem(self, index)


def _tensor_reshape(self, *shape) -> Tensor:
    """gc.reshape(self, shape); ``x.reshape(2, -1)`` or ``x.reshape([2, -1])``."""
    return reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], (list, tuple)) else list(shape))


def _tensor_transpose(self, *perm) -> Tensor:
    """gc.transpose(self, perm); no perm reverses the axes."""
    return transpose(self, perm[0] if len(perm) == 1 and isinstance(perm[0], (list, tuple)) else (list(perm) or None))


def _tensor_T(self) -> Tensor:
    """The transpose (axes reversed)."""
    return _tensor_transpose(self)


def _tensor_astype(self, dtype) -> Tensor:
    """gc.cast(self, dtype)."""
    return cast(self, dtype)


def _tensor_sum(self, axis=None, keepdims=False) -> Tensor:
    """gc.reduce_sum(self, axis, keepdims)."""
    return reduce_sum(self, axis, keepdims)


def _tensor_mean(self, axis=None, keepdims=False) -> Tensor:
    """gc.reduce_mean(self, axis, keepdims)."""
    return reduce_mean(self, axis, keepdims)


def _tensor_max(self, axis=None, keepdims=False) -> Tensor:
    """gc.reduce_max(self, axis, keepdims)."""
    return reduce_max(self, axis, keepdims)


for _name, _fn in (("__getitem__", _tensor_getitem), ("reshape", _tensor_reshape), ("transpose", _tensor_transpose),
                   ("astype", _tensor_astype), ("sum", _tensor_sum), ("mean", _tensor_mean), ("max", _tensor_max)):
    _fn.__name__, _fn.__qualname__ = _name, f"Tensor.{_name}"
    setattr(Tensor, _name, _fn)
Tensor.T = property(_tensor_T)
