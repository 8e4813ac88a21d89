"""The operator table: one ``OpDef`` per (domain, op type), holding all that graphc knows of the op.

Importer, DSL, passes and runtimes all ask this one table. Registering an op is one ``register`` call.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..errors import OpAttributeError, ShapeError, node_label
from ..ir import DType, Graph, Node, TensorType
from ..ir.types import MapType, OptionalType, SequenceType


class Kind(enum.IntEnum):
    """TVM-style fusion pattern kinds, from most to least fusable."""

    ELEMENTWISE = 0
    BROADCAST = 1
    INJECTIVE = 2
    REDUCTION = 3
    OUT_FUSABLE = 4
    OPAQUE = 8


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: Default for an attribute that must be given.
REQUIRED: Any = _Required()

ATTR_TYPES = ("int", "float", "string", "ints", "floats", "strings", "tensor", "tensors", "graph", "graphs",
              "sparse_tensor", "type_proto", "type_protos")


@dataclass(frozen=True)
class Attr:
    """An attribute's schema: its type (one of ATTR_TYPES) and default (None: optional, no default).

    ``internal`` marks an attribute graphc sets itself (an upgrade's marker for an older opset's
    semantics): a model may not carry it.
    """

    type: str
    default: Any = None
    internal: bool = False

    def __post_init__(self):
        assert self.type in ATTR_TYPES, self.type


@dataclass
class OpDef:
    """Everything graphc knows about one operator.

    - ``attrs``: schema of attributes with defaults; nodes carry their attributes completed with defaults.
    - ``infer(ctx) -> list of output types``: symbolic-aware; raises ShapeError via ``ctx.fail``.
    - ``eval(node, *inputs) -> array or tuple of arrays``: the NumPy reference semantics.
    - ``upgrades``: {opset: fn(node, graph)} rewriting a node of an older opset (< key) into the form
      of the newest opset, which is what ``infer`` and ``eval`` expect.
    - ``grad(ctx, node, dys) -> one gradient Value (or None) per input``: builds the backward nodes with
      ``ctx`` (a ``graphc.autodiff.GradContext``); ``dys`` holds one gradient per output (None: no gradient
      reaches that output). None for an input means no gradient flows to it (indices, shapes, integers).
      An op whose ``grad`` is None is not differentiable; ``no_grad`` then says why, for error messages.

    Facts the passes and runtimes decide by (set with ``set_facts`` beside the family's registrations;
    no pass or runtime keeps its own list of op names):

    - ``random``: the op draws random numbers (implies ``nondeterministic``).
    - ``nondeterministic``: the output is not a function of the inputs alone (random draws, Dropout in
      training mode, a collective whose result depends on other processes): never computed ahead of
      time, merged with a twin, or spot-checked.
    - ``effectful``: the op acts beyond its outputs (a variable update): never removed, merged or folded.
    - ``view``: output 0 is input 0's buffer read under another shape (no copy; Identity included).
    - ``reshape``: output 0 is input 0's elements in the same order under a new shape (Reshape-like;
      chains of them collapse into one Reshape).
    - ``layout``: output 0 holds input 0's elements rearranged, nothing computed (views and Transpose).
    - ``commutative``: a two-input node gives the same result with its inputs swapped.
    - ``value_sized``: the output size depends on the values (not only the shapes) of the inputs.
    - ``bool_output``: the output is bool whatever the inputs' element type (comparisons, logic, IsNaN).
    - ``float_math``: the arithmetic is floating-point math: integer inputs compute in double and
      convert back, as NumPy does.
    - ``weight_inputs``: input indices that hold weights (worth folding constant subgraphs into).
    """

    name: str
    eval: Callable[..., Any]
    infer: Callable[["InferContext"], list] | None = None
    attrs: dict[str, Attr] = field(default_factory=dict)
    domain: str = ""
    kind: Kind = Kind.OPAQUE
    inputs: tuple[int, int] = (0, 2**31)
    outputs: tuple[int, int] = (1, 1)
    upgrades: dict[int, Callable[[Node, Graph], None]] = field(default_factory=dict)
    grad: Callable | None = None
    no_grad: str = ""
    family: str = ""
    doc: str = ""
    random: bool = False
    nondeterministic: bool = False
    effectful: bool = False
    view: bool = False
    reshape: bool = False
    layout: bool = False
    commutative: bool = False
    value_sized: bool = False
    bool_output: bool = False
    float_math: bool = False
    weight_inputs: frozenset = frozenset()

    # ---- attributes -----------------------------------------------------------------------
    def complete_attrs(self, node: Node) -> None:
        """Check a node's attributes against the schema and fill in defaults (OpAttributeError if wrong)."""
        for k in node.attrs:
            if k not in self.attrs:
                raise OpAttributeError(
                    f"{node_label(node)}: unknown attribute '{k}'; {self.name} accepts "
                    f"{', '.join(sorted(self.attrs)) or 'no attributes'}")
        for k, spec in self.attrs.items():
            if k not in node.attrs:
                if spec.default is REQUIRED:
                    raise OpAttributeError(f"{node_label(node)}: required attribute '{k}' ({spec.type}) is missing")
                if spec.default is not None:
                    node.attrs[k] = list(spec.default) if isinstance(spec.default, (list, tuple)) else spec.default

    def check_arity(self, node: Node) -> None:
        lo, hi = self.inputs
        n = len(node.inputs)
        while n and node.inputs[n - 1] is None:
            n -= 1
        if not lo <= n <= hi:
            want = f"{lo}" if lo == hi else f"{lo} to {hi}" if hi < 2**31 else f"at least {lo}"
            raise ShapeError(f"{node_label(node)}: takes {want} inputs, got {n}")
        lo, hi = self.outputs
        if not 1 <= len(node.outputs) <= hi:
            raise ShapeError(f"{node_label(node)}: produces at most {hi} outputs, {len(node.outputs)} were declared")

    def upgrade(self, node: Node, graph: Graph, opset: int) -> None:
        """Rewrite a node imported at ``opset`` into the newest form of the op."""
        for since in sorted(self.upgrades):
            if opset < since:
                self.upgrades[since](node, graph)


REGISTRY: dict[tuple[str, str], OpDef] = {}

#: Domains that are spellings of the default ONNX domain.
_DOMAIN_ALIASES = {"ai.onnx": ""}


def canonical_domain(domain: str) -> str:
    return _DOMAIN_ALIASES.get(domain, domain)


def register(opdef: OpDef) -> OpDef:
    """Add one operator to the table (a second registration of the same op is a bug)."""
    key = (canonical_domain(opdef.domain), opdef.name)
    if key in REGISTRY:
        raise ValueError(f"operator {key} registered twice")
    if not opdef.family:
        opdef.family = "misc"
    REGISTRY[key] = opdef
    return opdef


def set_grads(rules: dict[str, Callable], not_differentiable: dict[str, str] | None = None,
              domain: str = "") -> None:
    """Attach gradient rules (op name -> rule) and declare ops non-differentiable (op name -> why)."""
    for name, rule in rules.items():
        REGISTRY[(canonical_domain(domain), name)].grad = rule
    for name, why in (not_differentiable or {}).items():
        REGISTRY[(canonical_domain(domain), name)].no_grad = why


#: The facts ``set_facts`` may set (OpDef fields); flags are bool, the rest take a value per op.
FACTS = ("random", "nondeterministic", "effectful", "view", "reshape", "layout", "commutative", "value_sized",
         "bool_output", "float_math", "weight_inputs")


def set_facts(domain: str = "", **facts) -> None:
    """Record facts about registered ops: ``flag=(op names)`` sets a flag on each named op,
    ``weight_inputs={op name: indices}`` a value per op. ``random`` implies ``nondeterministic``."""
    for fact, names in facts.items():
        if fact not in FACTS:
            raise ValueError(f"unknown op fact '{fact}'; the facts are {', '.join(FACTS)}")
        values = names if isinstance(names, dict) else dict.fromkeys(names, True)
        for name, value in values.items():
            op = REGISTRY.get((canonical_domain(domain), name))
            if op is None:
                raise ValueError(f"set_facts: no operator '{name}' in domain '{domain}' (register it first)")
            setattr(op, fact, frozenset(value) if fact == "weight_inputs" else value)
            if fact == "random" and value:
                op.nondeterministic = True


def lookup(domain: str, op_type: str) -> OpDef | None:
    return REGISTRY.get((canonical_domain(domain), op_type))


def has_fact(node: Node, fact: str) -> bool:
    """Whether the OpDef of ``node`` (by its domain and op type) carries the flag ``fact`` (False when the
    op is unknown). The passes and runtimes ask this instead of keeping lists of op names."""
    if fact not in FACTS:
        raise ValueError(f"unknown op fact '{fact}'; the facts are {', '.join(FACTS)}")
    op = REGISTRY.get((canonical_domain(node.domain), node.op_type))
    return op is not None and bool(getattr(op, fact))


def ops_with(fact: str, domain: str = "") -> tuple[str, ...]:
    """The op types of ``domain`` whose OpDef carries the flag ``fact``, in registration order."""
    return tuple(op.name for (d, _), op in REGISTRY.items() if d == canonical_domain(domain) and getattr(op, fact))


def get_opdef(node: Node) -> OpDef:
    op = lookup(node.domain, node.op_type)
    if op is None:
        from ..errors import UnsupportedOpError

        raise UnsupportedOpError({(node.domain, node.op_type, node.opset or 0): [node.name]})
    return op


# ---- inference context ---------------------------------------------------------------------
#: Most unknown dims one node's inference may create (well above any real rank, NumPy's limit being 64).
MAX_RANK_GUESS = 4096


class InferContext:
    """What an OpDef's ``infer`` sees: the node, its input types, known constant inputs, attributes."""

    def __init__(self, node: Node, graph: Graph, known: dict[int, np.ndarray] | None = None,
                 infer_graph: Callable[[Graph], Any] | None = None, symbolic: dict | None = None):
        self.node = node
        self.graph = graph
        self._known = known or {}
        #: Integer values known only in part (e.g. ``Shape`` of a tensor with symbolic dims), by id(value):
        #: tuples whose entries are ints, dim symbols, or None (unknown). See ``sym``.
        self._symbolic = symbolic if symbolic is not None else {}
        #: What ``infer`` learned of its outputs' values (output index -> tuple), recorded by the pass.
        self.produced_sym: dict[int, tuple] = {}
        #: Infers a subgraph's types in place (given by the shape-inference pass; None elsewhere, and then
        #: control-flow ops read the body's types as they are recorded).
        self.infer_graph = infer_graph

    @property
    def n_inputs(self) -> int:
        return len(self.node.inputs)

    def has_input(self, i: int) -> bool:
        return i < len(self.node.inputs) and self.node.inputs[i] is not None

    def type(self, i: int) -> TensorType | None:
        """Type of input i (None when absent or unknown)."""
        if not self.has_input(i):
            return None
        return self.node.inputs[i].type

    def dtype(self, i: int) -> DType | None:
        t = self.type(i)
        return t.dtype if isinstance(t, TensorType) else None

    def shape(self, i: int):
        """Shape of input i as a tuple of dims, or None when the rank is unknown."""
        t = self.type(i)
        return t.shape if isinstance(t, TensorType) else None

    def rank(self, i: int) -> int | None:
        s = self.shape(i)
        return None if s is None else len(s)

    def const(self, i: int) -> np.ndarray | None:
        """The value of input i when known before running (a constant or folded value), else None."""
        if not self.has_input(i):
            return None
        v = self.node.inputs[i]
        if v.data is not None:
            return v.data
        return self._known.get(id(v))

    def sym(self, i: int) -> tuple | None:
        """The flattened value of a small integer input (rank 0 or 1) as far as it is known, else None.

        Entries are ints, dim symbols (the value equals that dim, as after ``Shape`` of a symbolic tensor),
        or None (unknown). Shape-computing ops read their targets through this and propagate it with
        ``set_sym``, so ``Reshape(x, Concat(Gather(Shape(x), 0), [-1]))`` keeps the symbol of x's dim 0.
        """
        c = self.const(i)
        if c is not None:
            if isinstance(c, np.ndarray) and c.dtype.kind in "iu" and c.ndim <= 1:
                return tuple(int(x) for x in c.reshape(-1))
            return None
        if not self.has_input(i):
            return None
        return self._symbolic.get(id(self.node.inputs[i]))

    def set_sym(self, k: int, dims) -> None:
        """Record what is known of output k's (integer, rank <= 1) value: entries as in ``sym``."""
        if dims is not None:
            self.produced_sym[k] = tuple(dims)

    def attr(self, name: str, default: Any = None) -> Any:
        return self.node.attrs.get(name, default)

    def fresh(self) -> str:
        """A new symbol for an unknown dim. More than MAX_RANK_GUESS of them for one node means an input
        claims an absurd rank (a 1-D shape input of length 2**31, say): refused rather than looped over."""
        self._fresh_count = getattr(self, "_fresh_count", 0) + 1
        if self._fresh_count > MAX_RANK_GUESS:
            self.fail(f"its outputs would have more than {MAX_RANK_GUESS} unknown dims; an input's length "
                      f"claims a rank no tensor can have (NumPy allows at most 64 dims)")
        return self.graph.fresh_symbol()

    def fail(self, msg: str) -> None:
        raise ShapeError(f"{node_label(self.node)}: {msg}")


def types_conflict(a, b) -> str | None:
    """Why two types cannot describe the same value, or None when they are compatible."""
    if a is None or b is None:
        return None
    if isinstance(a, TensorType) and isinstance(b, TensorType):
        if a.dtype is not None and b.dtype is not None and a.dtype != b.dtype:
            return f"element type {a.dtype} vs {b.dtype}"
        if a.shape is not None and b.shape is not None:
            if len(a.shape) != len(b.shape):
                return f"rank {len(a.shape)} vs {len(b.shape)}"
            for i, (x, y) in enumerate(zip(a.shape, b.shape)):
                if isinstance(x, int) and isinstance(y, int) and x != y:
                    return f"dim {i}: {x} vs {y}"
        return None
    if type(a) is not type(b):
        return f"{a} vs {b}"
    if isinstance(a, (SequenceType, OptionalType)):
        return types_conflict(a.elem, b.elem)
    if isinstance(a, MapType):
        return (f"element type of the map keys {a.key.name} vs {b.key.name}" if a.key != b.key
                else types_conflict(a.value, b.value))
    return None
