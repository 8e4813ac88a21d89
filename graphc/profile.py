"""Per-step profiles of a prepared graph: time, share of the total, FLOPs and bytes, and a Chrome trace.

``profile(exe, feeds)`` runs an executable that offers the ``step_timer`` hook (the NumPy executor)
a few times and keeps each step's median time; ``node_cost(node)`` estimates a node's floating-point
operations and the bytes it reads and writes from its inferred shapes (a fused group costs the sum of
its body's FLOPs, and only the bytes crossing its boundary). ``Profile.table()`` is what
``graphc profile`` prints; ``Profile.chrome_trace()`` is the JSON that Perfetto and chrome://tracing open.
"""
from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .errors import GraphcError
from .ir import Graph, Node, TensorType, Value
from .ops import lookup
from .ops.registry import Kind


# ---- cost model ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cost:
    """Estimated work of one node: ``flops`` (None when shapes are not known) and bytes moved
    (its inputs read once, its outputs written once)."""

    flops: int | None
    bytes: int | None


def _numel(v: Value | None) -> int | None:
    t = v.type if v is not None else None
    return t.numel if isinstance(t, TensorType) else None


def _nbytes(v: Value | None) -> int | None:
    n = _numel(v)
    t = v.type if v is not None else None
    if n is None or t.dtype is None:
        return None
    try:
        return n * t.dtype.itemsize
    except (TypeError, ValueError):  # strings and other non-fixed-size elements
        return None


def _shape(v: Value | None) -> tuple | None:
    t = v.type if v is not None else None
    return t.shape if isinstance(t, TensorType) and t.is_static else None


def _prod(xs) -> int:
    n = 1
    for x in xs:
        n *= int(x)
    return n


def _conv_flops(node: Node) -> int | None:
    w, y = _shape(node.inputs[1]), _shape(node.outputs[0])
    if w is None or y is None:
        return None
    # Each output element: a dot product over C_in/group * kernel taps (a multiply and an add each).
    macs = _prod(y) * _prod(w[1:])
    bias = _prod(y) if len(node.inputs) > 2 and node.inputs[2] is not None else 0
    return 2 * macs + bias


def _conv_transpose_flops(node: Node) -> int | None:
    x, w = _shape(node.inputs[0]), _shape(node.inputs[1])
    if x is None or w is None:
        return None
    # Every input element scatters into C_out/group * kernel taps outputs.
    return 2 * _prod(x) * _prod(w[1:])


def _matmul_flops(node: Node) -> int | None:
    a, y = _shape(node.inputs[0]), _shape(node.outputs[0])
    if a is None or y is None:
        return None
    return 2 * _prod(y) * int(a[-1])


def _gemm_flops(node: Node) -> int | None:
    a, y = _shape(node.inputs[0]), _shape(node.outputs[0])
    if a is None or y is None:
        return None
    k = a[0] if node.attrs.get("transA", 0) else a[1]
    extra = _prod(y) if len(node.inputs) > 2 and node.inputs[2] is not None else 0
    return 2 * _prod(y) * int(k) + extra


def _attention_flops(node: Node) -> int | None:
    q, k, y = _shape(node.inputs[0]), _shape(node.inputs[1]), _shape(node.outputs[0])
    if q is None or k is None or y is None:
        return None
    kv_len = k[-2]  # [B, H, S, D] and [B, S, H*D] both keep the sequence second to last
    scores = _prod(q) * kv_len  # Q K^T: one dot product per (query, key) pair, summed over head size
    heads = q[1] if len(q) == 4 else node.attrs.get("q_num_heads") or 1
    probs = _prod(q[:-1]) * int(heads) * kv_len if len(q) == 3 else _prod(q[:-1]) * kv_len
    # 2 FLOPs per multiply-add in Q K^T and in P V, and softmax's 5 per score.
    return 2 * scores + 2 * _prod(y) * kv_len + 5 * probs


def _pool_flops(node: Node) -> int | None:
    n = _numel(node.outputs[0])
    return None if n is None else n * _prod(node.attrs.get("kernel_shape") or [1])


def _per_input_element(factor: int) -> Callable[[Node], int | None]:
    def flops(node: Node) -> int | None:
        n = _numel(node.inputs[0]) if node.inputs else None
        return None if n is None else factor * n

    return flops


def _lrn_flops(node: Node) -> int | None:
    n = _numel(node.inputs[0])
    # A sum of squares over `size` channels, then a scale, a power and a divide per element.
    return None if n is None else (int(node.attrs.get("size", 1)) + 3) * n


def _fused_flops(node: Node) -> int | None:
    body = node.attrs.get("body")
    if not isinstance(body, Graph):
        return None
    total = 0
    for inner in body.nodes:
        f = node_cost(inner).flops
        if f is None:
            return None
        total += f
    return total


#: FLOP rules by op type, for ops whose work is not one operation per output element.
#: Ops missing here count by their fusion kind: elementwise/broadcast ops one FLOP per output element,
#: reductions one per input element, data movement (shape, index, copy ops) none.
FLOP_RULES: dict[str, Callable[[Node], int | None]] = {
    "Conv": _conv_flops,
    "ConvTranspose": _conv_transpose_flops,
    "MatMul": _matmul_flops,
    "Gemm": _gemm_flops,
    "Attention": _attention_flops,
    "MaxPool": _pool_flops,
    "AveragePool": _pool_flops,
    "LpPool": _pool_flops,
    # Per input element: max, subtract, exp, sum, divide.
    "Softmax": _per_input_element(5),
    "LogSoftmax": _per_input_element(5),
    # Inference form: (x - mean) * scale / sqrt(var + eps) + bias, statistics precomputable.
    "BatchNormalization": _per_input_element(2),
    # Mean, variance, normalize, scale and shift.
    "LayerNormalization": _per_input_element(8),
    "InstanceNormalization": _per_input_element(8),
    "GroupNormalization": _per_input_element(8),
    "LRN": _lrn_flops,
    "FusedGroup": _fused_flops,
}


def node_cost(node: Node) -> Cost:
    """FLOPs and bytes of one node from its inferred types (see FLOP_RULES for the counting)."""
    ins = [_nbytes(v) for v in node.inputs if v is not None]
    outs = [_nbytes(v) for v in node.outputs if v is not None]
    moved = None if any(b is None for b in ins + outs) else sum(ins) + sum(outs)
    rule = FLOP_RULES.get(node.op_type)
    if rule is not None:
        return Cost(rule(node), moved)
    op = lookup(node.domain, node.op_type)
    kind = op.kind if op is not None else Kind.OPAQUE
    if kind in (Kind.ELEMENTWISE, Kind.BROADCAST):
        flops = sum((_numel(v) or 0) for v in node.outputs if v is not None) if node.outputs else 0
        if any(v is not None and _numel(v) is None for v in node.outputs):
            flops = None
    elif kind is Kind.REDUCTION:
        flops = _numel(node.inputs[0]) if node.inputs and node.inputs[0] is not None else None
    else:
        flops = 0
    return Cost(flops, moved)


def step_label(node: Node) -> str:
    """How a profile names a step's op: the op type, or ``FusedGroup[Conv+Add+Relu]`` for a group."""
    body = node.attrs.get("body") if node.op_type == "FusedGroup" else None
    if isinstance(body, Graph):
        return f"FusedGroup[{'+'.join(n.op_type for n in body.nodes)}]"
    return node.op_type


# ---- measurement -------------------------------------------------------------------------------
@dataclass
class StepProfile:
    """One step of the schedule: its node and its time in each profiled run."""

    index: int
    node: Node
    label: str
    cost: Cost
    times: list[float] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)  # offset from the run's start, per run

    @property
    def seconds(self) -> float:
        return statistics.median(self.times) if self.times else 0.0


@dataclass
class Profile:
    """The result of ``profile``: per-step times, run totals, and the tables and trace made from them."""

    graph_name: str
    steps: list[StepProfile]
    run_times: list[float]
    title: str = ""

    @property
    def total(self) -> float:
        """Median wall time of a whole run."""
        return statistics.median(self.run_times)

    @property
    def step_total(self) -> float:
        return sum(s.seconds for s in self.steps)

    @property
    def overhead(self) -> float:
        """Run time not spent inside any step (feed checks, argument gathering, freeing: the executor's own
        cost), as the median over runs of each run's time less its steps' times."""
        per_run = [run - sum(s.times[r] for s in self.steps if r < len(s.times))
                   for r, run in enumerate(self.run_times)]
        return max(statistics.median(per_run), 0.0)

    def by_op(self) -> list[dict]:
        """Steps grouped by label, most expensive first."""
        groups: dict[str, dict] = {}
        for s in self.steps:
            g = groups.setdefault(s.label, {"op": s.label, "count": 0, "seconds": 0.0, "flops": 0, "bytes": 0})
            g["count"] += 1
            g["seconds"] += s.seconds
            g["flops"] = None if g["flops"] is None or s.cost.flops is None else g["flops"] + s.cost.flops
            g["bytes"] = None if g["bytes"] is None or s.cost.bytes is None else g["bytes"] + s.cost.bytes
        return sorted(groups.values(), key=lambda g: -g["seconds"])

    def table(self, top: int | None = 25) -> str:
        """The text ``graphc profile`` prints: the slowest steps, then the totals by op.

        Shares are of a typical run: the sum of the steps' medians plus the executor's median overhead
        (on a busy machine the median of whole runs also holds other processes' time slices)."""
        total = (self.step_total + self.overhead) or 1e-12
        flops = [s.cost.flops for s in self.steps]
        all_flops = None if any(f is None for f in flops) else sum(flops)
        head = (f"{self.title or self.graph_name}: {len(self.steps)} steps; median of {len(self.run_times)} runs "
                f"{_ms(self.total)} ms (min {_ms(min(self.run_times))}); steps' medians add up to "
                f"{_ms(self.step_total)} ms, executor overhead {_ms(self.overhead)} ms "
                f"= {1e6 * self.overhead / max(len(self.steps), 1):.1f} us/step")
        if all_flops is not None:
            head += f"; {all_flops / 1e9:.3f} GFLOP, {all_flops / 1e9 / total:.1f} GFLOP/s"
        lines = [head, ""]
        ranked = sorted(self.steps, key=lambda s: -s.seconds)
        shown = ranked if top is None else ranked[:top]
        width = max([len(s.node.name) for s in shown] + [4])
        width = min(width, 40)
        opw = min(max([len(s.label) for s in shown] + [2]), 40)
        lines.append(f"{'#':>4}  {'node':<{width}}  {'op':<{opw}}  {'ms':>9}  {'share':>6}  {'cum':>6}  "
                     f"{'MFLOP':>10}  {'GFLOP/s':>8}  {'MB':>8}")
        cum = 0.0
        for i, s in enumerate(shown):
            cum += s.seconds
            lines.append(f"{i + 1:>4}  {_clip(s.node.name, width):<{width}}  {_clip(s.label, opw):<{opw}}  "
                         f"{_ms(s.seconds):>9}  {100 * s.seconds / total:5.1f}%  {100 * cum / total:5.1f}%  "
                         f"{_mflop(s.cost.flops):>10}  {_rate(s.cost.flops, s.seconds):>8}  {_mb(s.cost.bytes):>8}")
        if top is not None and len(ranked) > top:
            rest = sum(s.seconds for s in ranked[top:])
            lines.append(f"      ... {len(ranked) - top} more steps: {_ms(rest)} ms ({100 * rest / total:.1f}%)")
        lines += ["", "by op:"]
        opw = min(max([len(g["op"]) for g in self.by_op()] + [2]), 60)
        lines.append(f"  {'op':<{opw}}  {'steps':>5}  {'ms':>9}  {'share':>6}  {'MFLOP':>10}  {'GFLOP/s':>8}  {'MB':>8}")
        for g in self.by_op():
            lines.append(f"  {_clip(g['op'], opw):<{opw}}  {g['count']:>5}  {_ms(g['seconds']):>9}  "
                         f"{100 * g['seconds'] / total:5.1f}%  {_mflop(g['flops']):>10}  "
                         f"{_rate(g['flops'], g['seconds']):>8}  {_mb(g['bytes']):>8}")
        return "\n".join(lines)

    def chrome_trace(self) -> dict:
        """Every profiled run as Chrome trace events ("X" slices in microseconds, one lane), one
        enclosing slice per run; Perfetto (ui.perfetto.dev) and chrome://tracing open it."""
        events: list[dict] = [{"name": "process_name", "ph": "M", "pid": 1, "tid": 1,
                               "args": {"name": f"graphc {self.graph_name}"}},
                              {"name": "thread_name", "ph": "M", "pid": 1, "tid": 1, "args": {"name": "executor"}}]
        t = 0.0
        for r, run_s in enumerate(self.run_times):
            events.append({"name": f"run {r}", "cat": "run", "ph": "X", "pid": 1, "tid": 1,
                           "ts": round(1e6 * t, 3), "dur": round(1e6 * run_s, 3)})
            for s in self.steps:
                if r >= len(s.times):
                    continue
                args: dict[str, Any] = {"op": s.label, "index": s.index,
                                        "inputs": [str(v.type) if v is not None else None for v in s.node.inputs],
                                        "outputs": [str(v.type) if v is not None else None for v in s.node.outputs]}
                if s.cost.flops is not None:
                    args["flops"] = s.cost.flops
                if s.cost.bytes is not None:
                    args["bytes"] = s.cost.bytes
                events.append({"name": s.node.name or s.label, "cat": s.label, "ph": "X", "pid": 1, "tid": 1,
                               "ts": round(1e6 * (t + s.starts[r]), 3), "dur": round(1e6 * s.times[r], 3),
                               "args": args})
            t += run_s + 1e-4  # a small gap keeps runs apart in the viewer
        return {"traceEvents": events, "displayTimeUnit": "ms",
                "otherData": {"graph": self.graph_name, "title": self.title}}

    def write_trace(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(self.chrome_trace(), f)


def profile(exe, feeds: Mapping[str, Any], repeats: int = 5, warmup: int = 1, title: str = "") -> Profile:
    """Run ``exe`` (an executable with a ``step_timer`` hook and a ``graph``) ``warmup + repeats`` times
    and time every step of the last ``repeats`` runs."""
    if not hasattr(exe, "step_timer"):
        raise GraphcError(f"cannot profile a {type(exe).__name__}: it has no step_timer hook "
                          f"(the NumPy backend has one)")
    if repeats < 1:
        raise GraphcError(f"profile: repeats must be >= 1, got {repeats}")
    graph: Graph = exe.graph
    for _ in range(warmup):
        exe.run(feeds)
    steps: dict[int, StepProfile] = {}
    order: list[int] = []
    run_start = 0.0

    def record(node: Node, start: float, end: float) -> None:
        s = steps.get(id(node))
        if s is None:
            s = steps[id(node)] = StepProfile(len(order), node, step_label(node), node_cost(node))
            order.append(id(node))
        s.times.append(end - start)
        s.starts.append(start - run_start)

    run_times = []
    exe.step_timer = record
    try:
        for _ in range(repeats):
            run_start = time.perf_counter()
            exe.run(feeds)
            run_times.append(time.perf_counter() - run_start)
    finally:
        exe.step_timer = None
    return Profile(graph.name, [steps[k] for k in order], run_times, title)


# ---- formatting ------------------------------------------------------------------------------------
def _ms(s: float) -> str:
    return f"{1e3 * s:.3f}"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _mflop(f: int | None) -> str:
    return "?" if f is None else "0" if f == 0 else f"{f / 1e6:.2f}"


def _mb(b: int | None) -> str:
    return "?" if b is None else f"{b / 1e6:.2f}"


def _rate(f: int | None, s: float) -> str:
    if f is None or f == 0 or s <= 0 or not math.isfinite(s):
        return ""
    return f"{f / s / 1e9:.1f}"
