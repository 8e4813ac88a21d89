"""Control-flow operators: If, Loop, Scan and SequenceMap, whose bodies are graphc Graphs in attributes.

Bodies run on the reference interpreter (``interpret.run_graph``). The values a body reads from the
enclosing graphs reach ``eval`` as the keyword ``outer`` (see ``interpret.node_captures``).
Shape inference types a body's inputs from the node's inputs and infers the body through
``ctx.infer_graph``; a body that cannot be inferred keeps the types it has and never fails the
enclosing graph (running it will say what is wrong).
"""
from __future__ import annotations


import numpy as np

from ..errors import ExecutionError, GraphcError, node_label
from ..ir import DType, Graph, Node, TensorType
from ..ir.types import MapType, OptionalType, SequenceType
from .registry import REQUIRED, Attr, InferContext, Kind, OpDef, register, set_grads
from .interpret import run_graph
from .common import tt

FAMILY = "controlflow"


# ---- types ------------------------------------------------------------------------------------
def join_types(ctx: InferContext, a, b):
    """The most precise type describing values of type ``a`` or ``b`` (None when nothing is shared)."""
    if a is None or b is None:
        return None
    if isinstance(a, TensorType) and isinstance(b, TensorType):
        dtype = a.dtype if a.dtype == b.dtype else None
        if a.shape is None or b.shape is None or len(a.shape) != len(b.shape):
            return TensorType(dtype, None)
        return TensorType(dtype, tuple(x if x == y else ctx.fresh() for x, y in zip(a.shape, b.shape)))
    if type(a) is not type(b):
        return None
    if isinstance(a, SequenceType):
        return SequenceType(join_types(ctx, a.elem, b.elem))
    if isinstance(a, OptionalType):
        return OptionalType(join_types(ctx, a.elem, b.elem))
    if isinstance(a, MapType) and a.key == b.key:
        return MapType(a.key, join_types(ctx, a.value, b.value))
    return None


def _refine(given, declared):
    """Type for a body input: what the node gives, completed by what the body declares."""
    if given is None:
        return declared
    if declared is None or not (isinstance(given, TensorType) and isinstance(declared, TensorType)):
        return given
    dtype = given.dtype or declared.dtype
    if given.shape is None:
        return TensorType(dtype, declared.shape)
    if declared.shape is None or len(declared.shape) != len(given.shape):
        return TensorType(dtype, given.shape)
    return TensorType(dtype, tuple(g if isinstance(g, int) or not isinstance(d, int) else d
                                   for g, d in zip(given.shape, declared.shape)))


def _infer_body(ctx: InferContext, body: Graph, input_types: list, trial: bool = False) -> list:
    """Type ``body``'s inputs, infer its nodes, and return its output types.

    ``trial`` infers a copy (to learn how loop state changes without leaving guesses in the body).
    Without an inference pass (``ctx.infer_graph`` is None) the body is only read, never changed.
    """
    if ctx.infer_graph is None:
        return [v.type for v in body.outputs]
    target = body.copy() if trial else body
    if hasattr(ctx.graph, "_symbols"):
        target._symbols = ctx.graph._symbols  # symbols made in the body must not collide with ours
    for v, t in zip(target.inputs, input_types):
        v.type = _refine(t, v.type)
    try:
        ctx.infer_graph(target)
    except GraphcError:
        pass  # the body keeps the types it could get; running it reports the real problem
    return [v.type for v in target.outputs]


def _infer_carried(ctx: InferContext, body: Graph, input_types: list, carried: dict[int, int]) -> list:
    """Infer a body with loop-carried state: input i comes back as output ``carried[i]``.

    A state whose type one iteration changes (a growing tensor, say) is widened to what covers both
    before the body is typed for good. Returns the body's output types.
    """
    if ctx.infer_graph is None or not carried:
        return _infer_body(ctx, body, input_types)
    trial = _infer_body(ctx, body, input_types, trial=True)
    types = list(input_types)
    for i, o in carried.items():
        out = trial[o] if o < len(trial) else None
        if out is not None and types[i] is not None and types[i] != out:
            types[i] = join_types(ctx, types[i], out)
    return _infer_body(ctx, body, types)


def _check_body_arity(ctx: InferContext, body: Graph, n_in: int, n_out_min: int, what: str) -> None:
    if len(body.inputs) != n_in:
        ctx.fail(f"attribute '{what}' takes {len(body.inputs)} inputs, but the node gives it {n_in}")
    if len(body.outputs) < n_out_min:
        ctx.fail(f"attribute '{what}' returns {len(body.outputs)} outputs, expected at least {n_out_min}")


def _stacked_type(ctx: InferContext, elem, axis: int = 0, size=None):
    """Type of per-iteration values ``elem`` stacked along a new axis."""
    if not isinstance(elem, TensorType):
        return tt(elem.dtype if isinstance(elem, TensorType) else None, None)
    if elem.shape is None:
        return tt(elem.dtype, None)
    shape = list(elem.shape)
    ax = axis + len(shape) + 1 if axis < 0 else axis
    if not 0 <= ax <= len(shape):
        ctx.fail(f"scan output axis {axis} is out of range for a body output of rank {len(shape)}")
    shape.insert(ax, size if size is not None else ctx.fresh())
    return tt(elem.dtype, shape)


# ---- running bodies ---------------------------------------------------------------------------
def _bind_symbols(pairs) -> dict[str, int]:
    """Sizes of symbolic dims, learnt from (Value, array) pairs whose types name them."""
    sizes: dict[str, int] = {}
    for v, x in pairs:
        t = v.type
        if isinstance(t, TensorType) and t.shape is not None and isinstance(x, np.ndarray) and x.ndim == len(t.shape):
            for d, n in zip(t.shape, x.shape):
                if isinstance(d, str):
                    sizes.setdefault(d, n)
    return sizes


def _empty_stack(body_out, axis: int, sizes: dict[str, int]) -> np.ndarray:
    """The scan output of zero iterations: a 0-sized axis inserted in the body output's type's shape
    (its symbolic dims sized from ``sizes`` where known, else 0)."""
    t = body_out.type
    dtype = t.dtype.np if isinstance(t, TensorType) and t.dtype is not None else np.float32
    dims = [d if isinstance(d, int) else sizes.get(d, 0) for d in t.shape] \
        if isinstance(t, TensorType) and t.shape is not None else []
    dims.insert(axis + len(dims) + 1 if axis < 0 else axis, 0)
    return np.zeros(dims, dtype=dtype)


def _stack(node: Node, items: list, body_out, axis: int = 0, sizes: dict | None = None) -> np.ndarray:
    if not items:
        return _empty_stack(body_out, axis, sizes or {})
    first = items[0]
    if any(x.shape != first.shape for x in items):
        shapes = sorted({tuple(x.shape) for x in items})
        raise ExecutionError(f"{node_label(node)}: scan output '{body_out.name}' changes shape between "
                             f"iterations ({', '.join(map(str, shapes))}); it must keep one shape")
    return np.stack(items, axis=axis)


# ---- If ---------------------------------------------------------------------------------------
def _if_eval(node: Node, cond, outer: dict | None = None):
    if cond is None or np.size(cond) != 1:
        raise ExecutionError(f"{node_label(node)}: condition must hold one element, got "
                             f"{'nothing' if cond is None else f'shape {list(np.shape(cond))}'}")
    branch = node.attrs["then_branch"] if bool(np.asarray(cond).reshape(())) else node.attrs["else_branch"]
    return tuple(run_graph(branch, {}, outer))


def _if_infer(ctx: InferContext) -> list:
    then_b, else_b = ctx.attr("then_branch"), ctx.attr("else_branch")
    n = len(ctx.node.outputs)
    for name, b in (("then_branch", then_b), ("else_branch", else_b)):
        if b.inputs:
            ctx.fail(f"attribute '{name}' must take no inputs, it takes {len(b.inputs)}")
        if len(b.outputs) != n:
            ctx.fail(f"attribute '{name}' returns {len(b.outputs)} outputs, but the node has {n}")
    dt = ctx.dtype(0)
    if dt is not None and dt != DType.bool:
        ctx.fail(f"condition must be bool, got {dt.name}")
    t_types = _infer_body(ctx, then_b, [])
    e_types = _infer_body(ctx, else_b, [])
    cond = ctx.const(0)
    if cond is not None and cond.size == 1:
        return t_types if bool(cond.reshape(())) else e_types
    out = []
    for i, (a, b) in enumerate(zip(t_types, e_types)):
        if isinstance(a, TensorType) and isinstance(b, TensorType) and a.dtype and b.dtype and a.dtype != b.dtype:
            ctx.fail(f"output {i}: then_branch gives {a.dtype.name} but else_branch gives {b.dtype.name}")
        out.append(join_types(ctx, a, b))
    return out


register(OpDef("If", eval=_if_eval, infer=_if_infer, kind=Kind.OPAQUE, family=FAMILY,
               attrs={"then_branch": Attr("graph", REQUIRED), "else_branch": Attr("graph", REQUIRED)},
               inputs=(1, 1), outputs=(1, 2**31),
               doc="Runs then_branch or else_branch by a scalar boolean condition."))


# ---- Loop -------------------------------------------------------------------------------------
def _loop_eval(node: Node, trip_count, cond, *initial, outer: dict | None = None):
    body: Graph = node.attrs["body"]
    n_state = len(initial)
    n_scan = len(body.outputs) - 1 - n_state
    if len(body.inputs) != 2 + n_state or n_scan < 0:
        raise ExecutionError(f"{node_label(node)}: the body takes {len(body.inputs)} inputs and returns "
                             f"{len(body.outputs)} outputs; with {n_state} loop-carried values it must take "
                             f"{2 + n_state} and return at least {1 + n_state}")
    limit = None if trip_count is None else int(np.asarray(trip_count).reshape(()))
    # An absent condition starts the loop; the body's condition output is then honoured either way
    # (as onnxruntime does).
    keep_going = True if cond is None else bool(np.asarray(cond).reshape(()))
    state = list(initial)
    scans: list[list] = [[] for _ in range(n_scan)]
    it_in, cond_in, state_in = body.inputs[0], body.inputs[1], body.inputs[2:]
    i = 0
    while keep_going and (limit is None or i < limit):
        feeds = {it_in: np.array(i, dtype=np.int64), cond_in: np.array(keep_going)}
        feeds.update(zip(state_in, state))
        outs = run_graph(body, feeds, outer)
        keep_going = bool(np.asarray(outs[0]).reshape(()))
        state = outs[1:1 + n_state]
        for k in range(n_scan):
            scans[k].append(outs[1 + n_state + k])
        i += 1
    sizes = _bind_symbols(list(zip(state_in, initial)) + list((outer or {}).items())) if i == 0 else None
    stacked = [_stack(node, scans[k], body.outputs[1 + n_state + k], 0, sizes) for k in range(n_scan)]
    return tuple(state) + tuple(stacked)


def _loop_infer(ctx: InferContext) -> list:
    body: Graph = ctx.attr("body")
    n_state = max(ctx.n_inputs - 2, 0)
    _check_body_arity(ctx, body, 2 + n_state, 1 + n_state, "body")
    if ctx.has_input(0):
        m = ctx.type(0)
        if isinstance(m, TensorType) and m.dtype is not None and m.dtype != DType.int64:
            ctx.fail(f"trip count M must be int64, got {m.dtype.name}")
    if ctx.has_input(1):
        c = ctx.type(1)
        if isinstance(c, TensorType) and c.dtype is not None and c.dtype != DType.bool:
            ctx.fail(f"condition must be bool, got {c.dtype.name}")
    initial = [ctx.type(2 + i) for i in range(n_state)]
    fixed = [tt(DType.int64, ()), tt(DType.bool, ())]
    outs = _infer_carried(ctx, body, fixed + initial, {2 + i: 1 + i for i in range(n_state)})
    # Zero iterations return the initial values, unless the loop surely runs at least once.
    m, c = ctx.const(0), ctx.const(1)
    runs_once = (not ctx.has_input(0) or (m is not None and m.size == 1 and int(m.reshape(())) > 0)) and \
                (not ctx.has_input(1) or (c is not None and c.size == 1 and bool(c.reshape(()))))
    result = []
    for i in range(n_state):
        out = outs[1 + i] if 1 + i < len(outs) else None
        result.append(out if runs_once else join_types(ctx, initial[i], out))
    for k in range(len(body.outputs) - 1 - n_state):
        result.append(_stacked_type(ctx, outs[1 + n_state + k]))
    return result[:len(ctx.node.outputs)]


register(OpDef("Loop", eval=_loop_eval, infer=_loop_infer, kind=Kind.OPAQUE, family=FAMILY,
               attrs={"body": Attr("graph", REQUIRED)}, inputs=(2, 2**31), outputs=(1, 2**31),
               doc="Runs a body while a trip count and a condition allow, carrying state and stacking "
                   "per-iteration outputs."))


# ---- Scan -------------------------------------------------------------------------------------
def _scan_attr(node: Node, name: str, n: int) -> list[int]:
    vals = node.attrs.get(name)
    if vals is None:
        return [0] * n
    if len(vals) != n:
        raise ExecutionError(f"{node_label(node)}: attribute '{name}' has {len(vals)} entries, expected {n}")
    return list(vals)


def _scan_run(node: Node, body: Graph, states: list, scans: list, in_axes: list, in_dirs: list,
              out_axes: list, out_dirs: list, outer, length: int | None = None):
    """One scan over ``scans`` (already normalized axes); returns final states and stacked outputs."""
    n_state = len(states)
    n_out = len(body.outputs) - n_state
    if length is None:
        lengths = {x.shape[ax] for x, ax in zip(scans, in_axes)}
        if len(lengths) > 1:
            raise ExecutionError(f"{node_label(node)}: scan inputs have different lengths along their scan "
                                 f"axes: {sorted(lengths)}")
        length = lengths.pop() if lengths else 0
    collected: list[list] = [[] for _ in range(n_out)]
    state_in, scan_in = body.inputs[:n_state], body.inputs[n_state:]
    state = list(states)
    for t in range(length):
        feeds = dict(zip(state_in, state))
        for v, x, ax, d in zip(scan_in, scans, in_axes, in_dirs):
            feeds[v] = np.take(x, length - 1 - t if d else t, axis=ax)
        outs = run_graph(body, feeds, outer)
        state = outs[:n_state]
        for k in range(n_out):
            collected[k].append(outs[n_state + k])
    stacked = []
    sizes = _bind_symbols(list(zip(state_in, states)) + list((outer or {}).items())) if length == 0 else None
    for k in range(n_out):
        items = collected[k][::-1] if out_dirs[k] else collected[k]
        bo = body.outputs[n_state + k]
        ax = out_axes[k]
        if items:
            ax = ax + items[0].ndim + 1 if ax < 0 else ax
        stacked.append(_stack(node, items, bo, ax, sizes))
    return state, stacked


def _scan_eval(node: Node, *inputs, outer: dict | None = None):
    body: Graph = node.attrs["body"]
    m = node.attrs["num_scan_inputs"]
    if node.attrs.get("legacy_batched"):
        return _scan8_eval(node, body, m, inputs, outer)
    n_state = len(inputs) - m
    n_out = len(body.outputs) - n_state
    states, scans = list(inputs[:n_state]), list(inputs[n_state:])
    in_axes = [a + x.ndim if a < 0 else a for a, x in zip(_scan_attr(node, "scan_input_axes", m), scans)]
    in_dirs = _scan_attr(node, "scan_input_directions", m)
    out_axes = _scan_attr(node, "scan_output_axes", n_out)
    out_dirs = _scan_attr(node, "scan_output_directions", n_out)
    state, stacked = _scan_run(node, body, states, scans, in_axes, in_dirs, out_axes, out_dirs, outer)
    return tuple(state) + tuple(stacked)


def _scan8_eval(node: Node, body: Graph, m: int, inputs, outer):
    """Opset-8 Scan: axis 0 is a batch, axis 1 the sequence; ``sequence_lens`` may cut each short,
    and the scan outputs of a short sequence are padded with zeros."""
    seq_lens, rest = inputs[0], inputs[1:]
    n_state = len(rest) - m
    n_out = len(body.outputs) - n_state
    states, scans = rest[:n_state], rest[n_state:]
    batch = scans[0].shape[0] if scans else (states[0].shape[0] if states else 0)
    max_len = scans[0].shape[1] if scans else 0
    dirs = _scan_attr(node, "scan_input_directions", m)
    finals: list[list] = [[] for _ in range(n_state)]
    outs: list[list] = [[] for _ in range(n_out)]
    for b in range(batch):
        n = max_len if seq_lens is None else int(seq_lens[b])
        st, so = _scan_run(node, body, [s[b] for s in states], [x[b, :n] for x in scans], [0] * m, dirs,
                           [0] * n_out, [0] * n_out, outer, length=n)
        for k in range(n_state):
            finals[k].append(st[k])
        for k in range(n_out):
            y = so[k]
            if n < max_len:
                pad = np.zeros((max_len - n,) + y.shape[1:], dtype=y.dtype)
                y = np.concatenate([y, pad]) if n else np.zeros((max_len,) + y.shape[1:], dtype=y.dtype)
            outs[k].append(y)
    result = [np.stack(f) for f in finals] + [np.stack(o) for o in outs]
    return tuple(result)


def _scan_infer(ctx: InferContext) -> list:
    body: Graph = ctx.attr("body")
    m = ctx.attr("num_scan_inputs")
    legacy = bool(ctx.attr("legacy_batched", 0))
    first = 1 if legacy else 0
    n_in = ctx.n_inputs - first
    if m < 1 or m > n_in:
        ctx.fail(f"num_scan_inputs is {m}, but the node has {n_in} state and scan inputs")
    n_state = n_in - m
    _check_body_arity(ctx, body, n_in, n_state, "body")
    n_out = len(body.outputs) - n_state
    if len(ctx.node.outputs) > n_state + n_out:
        ctx.fail(f"node has {len(ctx.node.outputs)} outputs but its body returns {n_state + n_out}")
    for name, n in (("scan_input_axes", m), ("scan_input_directions", m), ("scan_output_axes", n_out),
                    ("scan_output_directions", n_out)):
        v = ctx.attr(name)
        if v is not None and len(v) != n:
            ctx.fail(f"attribute '{name}' has {len(v)} entries, expected {n}")
    in_axes = ctx.attr("scan_input_axes") or [0] * m
    out_axes = ctx.attr("scan_output_axes") or [0] * n_out
    lead = 2 if legacy else 0  # opset 8: [batch, sequence, ...]
    states = []
    for i in range(n_state):
        t = ctx.type(first + i)
        if legacy and isinstance(t, TensorType) and t.shape is not None:
            t = t.with_shape(t.shape[1:])
        states.append(t)
    elems, length, batch = [], None, None
    for j in range(m):
        t = ctx.type(first + n_state + j)
        if not isinstance(t, TensorType) or t.shape is None:
            elems.append(t if not isinstance(t, TensorType) else tt(t.dtype, None))
            continue
        shape = list(t.shape)
        if legacy:
            if len(shape) < 2:
                ctx.fail(f"scan input {j} must have a batch and a sequence axis, got rank {len(shape)}")
            batch = shape[0] if batch is None else batch
            length = shape[1] if length is None else length
            elems.append(tt(t.dtype, shape[2:]))
            continue
        ax = in_axes[j] + len(shape) if in_axes[j] < 0 else in_axes[j]
        if not 0 <= ax < len(shape):
            ctx.fail(f"scan_input_axes[{j}] = {in_axes[j]} is out of range for scan input {j} of rank {len(shape)}")
        d = shape.pop(ax)
        if isinstance(length, int) and isinstance(d, int) and length != d:
            ctx.fail(f"scan inputs have different lengths along their scan axes: {length} vs {d}")
        if length is None or isinstance(d, int):
            length = d
        elems.append(tt(t.dtype, shape))
    outs = _infer_carried(ctx, body, states + elems, {i: i for i in range(n_state)})
    result = []
    for i in range(n_state):
        t = outs[i] if i < len(outs) else None
        t = join_types(ctx, states[i], t) if states[i] is not None else t
        if legacy and isinstance(t, TensorType) and t.shape is not None:
            t = tt(t.dtype, (batch if batch is not None else ctx.fresh(),) + tuple(t.shape))
        result.append(t)
    for k in range(n_out):
        t = outs[n_state + k] if n_state + k < len(outs) else None
        if legacy:
            st = _stacked_type(ctx, t, 0, length)
            result.append(_stacked_type(ctx, st, 0, batch) if isinstance(st, TensorType) and st.shape is not None
                          else st)
        else:
            result.append(_stacked_type(ctx, t, out_axes[k], length))
    return result[:len(ctx.node.outputs)]


def _scan_upgrade_8(node: Node, graph: Graph) -> None:
    """Opset 8 had a batch axis, an optional first input sequence_lens and ``directions``."""
    dirs = node.attrs.pop("directions", None)
    if dirs is not None:
        node.attrs["scan_input_directions"] = dirs
    node.attrs["legacy_batched"] = 1


register(OpDef("Scan", eval=_scan_eval, infer=_scan_infer, kind=Kind.OPAQUE, family=FAMILY,
               attrs={"body": Attr("graph", REQUIRED), "num_scan_inputs": Attr("int", REQUIRED),
                      "scan_input_axes": Attr("ints"), "scan_input_directions": Attr("ints"),
                      "scan_output_axes": Attr("ints"), "scan_output_directions": Attr("ints"),
                      # internal: set by the opset-8 upgrade (batch axis 0, input 0 is sequence_lens)
                      "legacy_batched": Attr("int", 0, internal=True)},
               inputs=(1, 2**31), outputs=(1, 2**31), upgrades={9: _scan_upgrade_8},
               doc="Iterates a body over slices of scan inputs, carrying state and stacking outputs."))


# ---- SequenceMap ------------------------------------------------------------------------------
def _sequence_map_eval(node: Node, seq, *extra, outer: dict | None = None):
    body: Graph = node.attrs["body"]
    if not isinstance(seq, list):
        raise ExecutionError(f"{node_label(node)}: input 0 must be a sequence, got {type(seq).__name__}")
    n = len(seq)
    for j, x in enumerate(extra):
        if isinstance(x, list) and len(x) != n:
            raise ExecutionError(f"{node_label(node)}: input {j + 1} is a sequence of {len(x)}, but input 0 "
                                 f"has {n} elements")
    results: list[list] = [[] for _ in body.outputs]
    for i in range(n):
        feeds = {body.inputs[0]: seq[i]}
        for v, x in zip(body.inputs[1:], extra):
            feeds[v] = x[i] if isinstance(x, list) else x
        for k, y in enumerate(run_graph(body, feeds, outer)):
            results[k].append(y)
    return tuple(results)


def _sequence_map_infer(ctx: InferContext) -> list:
    body: Graph = ctx.attr("body")
    _check_body_arity(ctx, body, ctx.n_inputs, len(ctx.node.outputs), "body")
    t0 = ctx.type(0)
    if t0 is not None and not isinstance(t0, SequenceType):
        ctx.fail(f"input 0 must be a sequence, got {t0}")
    types = [t0.elem if isinstance(t0, SequenceType) else None]
    for j in range(1, ctx.n_inputs):
        t = ctx.type(j)
        types.append(t.elem if isinstance(t, SequenceType) else t)
    outs = _infer_body(ctx, body, types)
    return [SequenceType(t) for t in outs[:len(ctx.node.outputs)]]


register(OpDef("SequenceMap", eval=_sequence_map_eval, infer=_sequence_map_infer, kind=Kind.OPAQUE,
               family=FAMILY, attrs={"body": Attr("graph", REQUIRED)}, inputs=(1, 2**31), outputs=(1, 2**31),
               doc="Applies a body to each element of the input sequence(s)."))


# ---- gradients: none yet (graphc.autodiff names these ops when one cuts a gradient path) ------------
set_grads({}, {name: "control flow: gradients through subgraph bodies are not supported yet"
               for name in ("If", "Loop", "Scan", "SequenceMap")})
