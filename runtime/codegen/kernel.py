"""CUDA C code generation, the shared part: kernel groups, element types, coordinates and the value emitter.

A kernel is generated for a *group*: the ops of one ``graphc.FusedGroup`` body, or one lone node. Every
value of a group is computed at *coordinates* (a C expression per dim, or one linear index) by one
mechanism, ``Emitter.value(v, coords)``: an elementwise op emits one line computing its result from its
inputs' values at the broadcast coordinates (codegen_ops.py), an injective op one line mapping its output
coordinates to its input's (codegen_injective.py), and a group input is a load. The loop around it is
the kernel's kind: a grid-stride loop over the output elements (codegen_elementwise.py), or a loop over
rows with a reduction over each row (codegen_reduce.py).

Shapes are static here (a plan with symbolic dims is bound before its kernels are generated), so sizes
and strides are constants in the source. The source is deterministic: the same group and launch give
the same text, which is what the on-disk cache keys on.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from graphc.errors import GraphcError, node_label
from graphc.ir import DType, Graph, Node, TensorType, Value


class CodegenUnsupported(GraphcError):
    """A node (or a group's shape of fusion) for which no kernel can be generated yet; ``why`` says what."""

    def __init__(self, node: Node | None, why: str):
        self.node = node
        self.why = why
        super().__init__(f"{node_label(node)}: {why}" if node is not None else why)


# ---- element types ----------------------------------------------------------------------------
#: Storage type of each element type a kernel can read or write.
C_TYPES = {
    DType.float32: "float", DType.float64: "double", DType.float16: "__half", DType.bfloat16: "__nv_bfloat16",
    DType.int8: "signed char", DType.int16: "short", DType.int32: "int", DType.int64: "long long",
    DType.uint8: "unsigned char", DType.uint16: "unsigned short", DType.uint32: "unsigned int",
    DType.uint64: "unsigned long long", DType.bool: "bool",
}
#: Half types are computed in float: loaded through a conversion, stored through one.
_HALF = {DType.float16: ("__half2float", "__float2half", "cuda_fp16.h"),
         DType.bfloat16: ("__bfloat162float", "__float2bfloat16", "cuda_bf16.h")}


def supported_dtype(dt: DType | None) -> bool:
    return dt in C_TYPES


def ctype(dt: DType) -> str:
    """The C type that stores ``dt``."""
    return C_TYPES[dt]


def compute_dtype(dt: DType) -> DType:
    """The type arithmetic on ``dt`` runs in: float for the half types, the type itself otherwise."""
    return DType.float32 if dt in _HALF else dt


def cctype(dt: DType) -> str:
    """The C type arithmetic on ``dt`` runs in."""
    return C_TYPES[compute_dtype(dt)]


def literal(x, dt: DType) -> str:
    """A C literal of value ``x`` in the compute type of ``dt``."""
    dt = compute_dtype(dt)
    if dt == DType.bool:
        return "true" if bool(x) else "false"
    if dt.is_float:
        x = float(np.float32(x)) if dt == DType.float32 else float(x)
        suffix = "f" if dt == DType.float32 else ""
        if math.isnan(x):
            return "GC_NAN" if suffix else "((double)GC_NAN)"
        if math.isinf(x):
            s = "GC_INF" if suffix else "((double)GC_INF)"
            return s if x > 0 else f"(-{s})"
        text = repr(x)
        if "e" not in text and "." not in text:
            text += ".0"
        return f"{text}{suffix}" if x >= 0 else f"({text}{suffix})"
    x = int(x)
    if dt == DType.int64:
        return f"{x}LL" if x != -2**63 else "(-9223372036854775807LL - 1)"
    if dt == DType.uint64:
        return f"{x}ULL"
    if dt == DType.uint32:
        return f"{x}u"
    if dt == DType.int32 and x == -2**31:
        return "(-2147483647 - 1)"
    return str(x) if x >= 0 else f"({x})"


def convert(expr: str, src: DType, dst: DType) -> str:
    """``expr`` (in the compute type of ``src``) as the compute type of ``dst``."""
    a, b = compute_dtype(src), compute_dtype(dst)
    if a == b:
        return expr
    if b == DType.bool:
        return f"({expr} != 0)"
    return f"(({C_TYPES[b]})({expr}))"


def load_expr(ptr_index: str, dt: DType) -> str:
    return f"{_HALF[dt][0]}({ptr_index})" if dt in _HALF else ptr_index


def round_to(expr: str, dt: DType) -> str:
    """``expr`` (a float) rounded to a half type and back: what storing and reloading it would give. Each op
    with a half output rounds its result, as the NumPy reference does, even inside a fused kernel."""
    return f"{_HALF[dt][0]}({_HALF[dt][1]}({expr}))" if dt in _HALF else expr


def store_expr(value: str, dt: DType) -> str:
    return f"{_HALF[dt][1]}({value})" if dt in _HALF else value


def shape_of(v: Value) -> tuple[int, ...]:
    t = v.type
    if not isinstance(t, TensorType) or not t.is_static:
        raise CodegenUnsupported(v.producer, f"value '{v.name}' has no static shape ({t}); bind the plan's "
                                             f"symbolic dims before generating kernels")
    return tuple(int(d) for d in t.shape)


def dtype_of(v: Value) -> DType:
    t = v.type
    if not isinstance(t, TensorType) or not supported_dtype(t.dtype):
        raise CodegenUnsupported(v.producer, f"value '{v.name}' has element type "
                                             f"{t.dtype if isinstance(t, TensorType) else t}, which no kernel reads yet")
    return t.dtype


def numel(shape) -> int:
    return int(np.prod(shape, dtype=np.int64)) if shape else 1


def contiguous_strides(shape) -> list[int]:
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= d
    return out[::-1]


# ---- groups and kernels -----------------------------------------------------------------------
@dataclass
class KernelGroup:
    """What one kernel computes: ``nodes`` (in order) reading ``inputs`` and writing ``outputs``.

    ``constants`` are values with data the kernel reads: one element becomes a literal in the source,
    larger ones a parameter (the runtime uploads them once).
    """

    name: str
    nodes: list[Node]
    inputs: list[Value]
    outputs: list[Value]
    constants: list[Value] = field(default_factory=list)
    kind: str = ""  # the FusedGroup's kind, or the lone node's kind
    #: ids of inputs/outputs that may share bytes with another parameter (an op the memory plan runs in
    #: place, an epilogue written over its head's result): their pointers are not declared __restrict__
    aliased: frozenset = frozenset()

    @staticmethod
    def of_fused(node: Node) -> "KernelGroup":
        body: Graph = node.attrs["body"]
        return KernelGroup(node.name, list(body.nodes), list(body.inputs), list(body.outputs),
                           list(body.constants.values()), node.attrs.get("kind", ""))

    @staticmethod
    def of_node(node: Node) -> "KernelGroup":
        ins = [v for v in node.inputs if v is not None]
        consts = [v for v in ins if v.data is not None and v.data.size == 1]
        ins = [v for v in ins if not (v.data is not None and v.data.size == 1)]
        unique = list({id(v): v for v in ins}.values())
        return KernelGroup(node.name, [node], unique, [v for v in node.outputs if v is not None], consts)


@dataclass(frozen=True)
class Param:
    """A kernel parameter: a pointer to group input ``index`` ("input"), output ("output"), or to a
    constant's data ("constant", ``index`` into ``KernelGroup.constants``); or a number passed by value
    ("scalar": ``value``, a NumPy scalar of ``dtype``, one of SCALAR_CHARS' types; user kernels take shapes
    and attributes so)."""

    role: str
    index: int
    name: str
    dtype: DType
    value: object = None
    #: declared ``__restrict__`` (no other parameter reaches its bytes); False for aliased values
    restrict: bool = True


#: PyCUDA prepared-call format character of each element type a scalar parameter may have.
SCALAR_CHARS = {DType.int64: "q", DType.int32: "i", DType.float32: "f", DType.float64: "d"}


@dataclass
class Kernel:
    """Generated CUDA C for a group: ``source`` defines ``extern "C" __global__ void <name>(params)``."""

    name: str
    source: str
    params: list[Param]
    grid: int
    block: int
    group: KernelGroup
    n_elements: int  # the loop's extent (output elements or rows), 0 = nothing to launch

    @property
    def signature(self) -> str:
        """PyCUDA's prepared-call format: "P" per pointer parameter, SCALAR_CHARS' letter per scalar."""
        return "".join(SCALAR_CHARS[p.dtype] if p.role == "scalar" else "P" for p in self.params)


def c_identifier(name: str, prefix: str = "k_") -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if not s or s[0].isdigit():
        s = prefix + s
    return s


# ---- coordinates ------------------------------------------------------------------------------
class Coords:
    """Where in a tensor of ``shape`` a value is wanted: a C expression per dim, or a linear index.

    Per-dim names are made from the linear index lazily (only the dims a broadcast operand or an
    injective op needs), and the linear index from the names only when a load needs it.
    ``guarded``: the coordinates may lie outside the tensor (inside a Pad border, another Concat input,
    a Gather index not yet checked); loads then clamp their index so that nothing reads out of bounds.
    """

    def __init__(self, shape, dims: list[str] | None = None, linear: str | None = None, guarded: bool = False):
        self.shape = tuple(shape)
        self._dims = list(dims) if dims is not None else None
        self._linear = linear
        self.guarded = guarded
        assert dims is not None or linear is not None

    @property
    def key(self) -> tuple:
        return (self.shape, tuple(self._dims) if self._dims is not None else None, self._linear)

    def dim(self, em: "Emitter", d: int) -> str:
        if self.shape[d] == 1:
            return "0"
        if self._dims is not None:
            return self._dims[d]
        return em.coordinate(self._linear, self.shape, d)

    def dims(self, em: "Emitter") -> list[str]:
        return [self.dim(em, d) for d in range(len(self.shape))]

    def linear(self, em: "Emitter") -> str:
        if self._linear is not None:
            return self._linear
        return _linear_from_dims(self.dims(em), self.shape)

    def broadcast_to(self, shape) -> "Coords":
        """Coordinates in an operand of ``shape`` that broadcasts (NumPy rules) to this shape."""
        shape = tuple(shape)
        if shape == self.shape:
            return self
        if numel(shape) == 1:
            return Coords(shape, linear="0", guarded=False)
        off = len(self.shape) - len(shape)
        return _BroadcastCoords(self, shape, off)


class _BroadcastCoords(Coords):
    """Coordinates of an operand broadcast up to ``parent``: size-1 dims read index 0."""

    def __init__(self, parent: Coords, shape, off: int):
        self.shape = tuple(shape)
        self.parent = parent
        self.off = off
        self._dims = None
        self._linear = None
        self.guarded = parent.guarded

    @property
    def key(self) -> tuple:
        return ("bcast", self.shape, self.parent.key)

    def dim(self, em, d):
        return "0" if self.shape[d] == 1 else self.parent.dim(em, d + self.off)

    def linear(self, em):
        return _linear_from_dims(self.dims(em), self.shape)


def _term(c: str, stride: int, wide: bool = False) -> str:
    if c == "0" or stride == 0:
        return ""
    return c if stride == 1 else f"{c} * {stride}{'LL' if wide else ''}"


def _linear_from_dims(dims: list[str], shape) -> str:
    # a tensor of 2^31 elements or more: strides are long long literals, so that a coordinate that is itself a
    # literal (a Slice start, say) is not multiplied in int and overflows
    wide = numel(shape) >= 2**31
    terms = [_term(c, s, wide) for c, s in zip(dims, contiguous_strides(shape)) if c != "0"]
    terms = [t for t in terms if t]
    return " + ".join(terms) if terms else "0"


# ---- the emitter ------------------------------------------------------------------------------
#: op type -> fn(em, node, coords) -> C expression (a variable name) of node's output at coords.
#: Filled by codegen_ops (elementwise/broadcast) and codegen_injective (index mapping).
OP_EMITTERS: dict[str, Callable[["Emitter", Node, Coords], str]] = {}


class Emitter:
    """Emits the statements that compute values of a group at coordinates, one line per op.

    ``loads`` maps each group input / constant Value (by id) to (C pointer name, dtype); ``literals``
    maps one-element constants to literals. Results are memoized per (value, coordinates), so a value
    read twice at the same place is computed once.
    """

    def __init__(self, loads: dict[int, tuple[str, DType]], literals: dict[int, str], index_type: str,
                 indent: str = "        ", names: "NameSource | None" = None, overrides=None):
        self.loads = loads
        self.literals = literals
        self.index_type = index_type
        self.indent = indent
        self.lines: list[str] = []
        self.memo: dict[tuple, str] = {}
        self.names = names or NameSource()
        self.helpers: set[str] = set()
        #: (id(value), coords key) -> expression, for values already loaded another way (vector lanes).
        self.overrides = overrides or {}

    def line(self, text: str, comment: str = "") -> None:
        self.lines.append(f"{self.indent}{text}" + (f"  // {comment}" if comment else ""))

    def coordinate(self, linear: str, shape, d: int) -> str:
        key = ("coord", linear, tuple(shape), d)
        if key not in self.memo:
            stride = numel(shape[d + 1:])
            lin = linear if linear.isidentifier() else f"({linear})"
            expr = lin if stride == 1 else f"{lin} / {stride}"
            if d > 0:
                expr = f"({expr}) % {shape[d]}" if stride > 1 else f"{expr} % {shape[d]}"
            name = self.names.fresh("c")
            self.line(f"const {self.index_type} {name} = {expr};")
            self.memo[key] = name
        return self.memo[key]

    def temp(self, prefix: str, ctype_: str, expr: str, comment: str = "") -> str:
        name = self.names.fresh(prefix)
        self.line(f"const {ctype_} {name} = {expr};", comment)
        return name

    def value(self, v: Value, coords: Coords) -> str:
        """A C expression for ``v`` (in its compute type) at ``coords``."""
        if id(v) in self.literals:
            return self.literals[id(v)]
        key = (id(v), coords.key)
        if key in self.overrides:
            return self.overrides[key]
        if key in self.memo:
            return self.memo[key]
        if id(v) in self.loads:
            ptr, dt = self.loads[id(v)]
            index = coords.linear(self)
            n = numel(coords.shape)
            if coords.guarded and n > 1:
                index = f"gc_clamp_index({index}, {n})"
                self.helpers.add("clamp_index")
            out = self.temp("x", cctype(dt), load_expr(f"{ptr}[{index}]", dt), f"%{v.name}")
        else:
            node = v.producer
            emit = OP_EMITTERS.get(node.op_type) if node is not None and not node.domain else None
            if emit is None:
                raise CodegenUnsupported(node, f"{node.op_type if node is not None else 'value'} has no CUDA "
                                               f"code generator yet")
            out = emit(self, node, coords)
        self.memo[key] = out
        return out


class NameSource:
    """Fresh C names (``v0``, ``v1``, ``c0``...) shared by the emitters of one kernel."""

    def __init__(self):
        self.counts: dict[str, int] = {}

    def fresh(self, prefix: str) -> str:
        n = self.counts.get(prefix, 0)
        self.counts[prefix] = n + 1
        return f"{prefix}{n}"


# ---- helpers every kernel may use (emitted only when used) ------------------------------------
HELPERS: dict[str, str] = {
    "clamp_index": "__device__ __forceinline__ long long gc_clamp_index(long long i, long long n) "
                   "{ return i < 0 ? 0 : (i >= n ? n - 1 : i); }",
}


def prelude(helpers: set[str], dtypes: set[DType]) -> str:
    """Includes, the infinity/NaN constants and the helper functions a kernel uses."""
    lines = []
    for dt, (_, _, header) in sorted(_HALF.items(), key=lambda kv: kv[0].value):
        if dt in dtypes:
            lines.append(f"#include <{header}>")
    lines.append("#define GC_INF __int_as_float(0x7f800000)")
    lines.append("#define GC_NAN __int_as_float(0x7fffffff)")
    for name in sorted(helpers):
        lines.append(HELPERS[name])
    return "\n".join(lines)


def index_type(n: int) -> str:
    """``int`` indexes up to 2^30 elements (the grid-stride step cannot overflow it), else ``long long``."""
    return "int" if n < 2**30 else "long long"


__all__ = ["C_TYPES", "CodegenUnsupported", "Coords", "Emitter", "Kernel", "KernelGroup", "OP_EMITTERS", "Param",
           "cctype", "compute_dtype", "convert", "ctype", "index_type", "literal", "prelude", "shape_of", "dtype_of"]
