"""Pictures of the compiler at work: a graph at any stage as DOT/SVG, and a memory plan as an SVG chart.

``graph_dot(graph, fusion)`` writes Graphviz DOT text: one box per op, edges labelled with the shape of
the value they carry, each ``graphc.FusedGroup`` drawn as a cluster around the ops of its body (filled
with the colour of its pattern kind), and every edge that fusion left between two groups annotated with
the reason ``--explain-fusion`` gives. ``render_svg`` lays DOT out with Graphviz's ``dot`` program
through the ``graphviz`` Python package (the ``viz`` extra); where either is missing it raises
``DrawError`` saying how to get them, and the DOT text (always written first by the CLI) can be rendered
elsewhere (``dot -Tsvg graph.dot -o graph.svg``, or any online DOT viewer).

``memory_svg(plan)`` draws a memory plan without Graphviz: one row per buffer (a planned value) with a bar
over the schedule steps it lives, its size and arena offset, in-place chains in one colour, and the
step where the live bytes peak marked.
"""
from __future__ import annotations

import html
import shutil
import textwrap

from .errors import GraphcError
from .ir import Graph, Node, TensorType, Value

#: Fill colours of fused groups by pattern kind (the ``kind`` attribute fusion gives a group).
KIND_COLOURS = {"elementwise": "#d9f0d3", "broadcast": "#c7e9c0", "injective": "#fff2ae", "reduction": "#fdd0a2",
                "out_fusable": "#c6dbef", "opaque": "#e0e0e0"}

_INSTALL = ("install Graphviz's dot program (Debian/Ubuntu: apt install graphviz; macOS: brew install graphviz; "
            "conda: conda install graphviz) and the Python package (pip install 'graphc[viz]')")


class DrawError(GraphcError):
    """A picture could not be made (Graphviz missing, or an empty plan)."""


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _shape(v: Value) -> str:
    t = v.type
    if isinstance(t, TensorType):
        dims = "?" if t.shape is None else ",".join(str(d) for d in t.shape)
        return f"{t.dtype.name if t.dtype is not None else '?'}[{dims}]"
    return type(t).__name__ if t is not None else "?"


class _Drawing:
    """Op-level nodes and edges of a graph whose fused groups are opened up into their bodies."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.ops: dict[str, tuple[Node, str | None]] = {}  # DOT id -> (op node, enclosing group name)
        self.groups: list[tuple[Node, list[str]]] = []  # (FusedGroup node, DOT ids of its body's ops)
        self.inner_producer: dict[int, str] = {}  # id(value) -> DOT id of the op making it
        self.group_input: dict[int, Value] = {}  # id(body input) -> the outer value fed there
        self.ids: dict[int, str] = {}
        for node in graph.nodes:
            if node.domain == "graphc" and node.op_type == "FusedGroup" and isinstance(node.attrs.get("body"), Graph):
                body = node.attrs["body"]
                members = [self._add_op(n, node.name) for n in body.nodes]
                self.groups.append((node, members))
                for inner, outer in zip(body.inputs, node.inputs):
                    if outer is not None:
                        self.group_input[id(inner)] = outer
                for inner, outer in zip(body.outputs, node.outputs):
                    if outer is not None and id(inner) in self.inner_producer:
                        self.inner_producer[id(outer)] = self.inner_producer[id(inner)]
            else:
                self._add_op(node, None)

    def _add_op(self, node: Node, group: str | None) -> str:
        key = f"op{len(self.ops)}"
        self.ops[key] = (node, group)
        self.ids[id(node)] = key
        for v in node.outputs:
            if v is not None:
                self.inner_producer[id(v)] = key
        return key

    def source(self, v: Value) -> tuple[str | None, Value]:
        """(DOT id of the op or graph input that makes ``v``, the outer value), following group inputs out."""
        while id(v) in self.group_input:
            v = self.group_input[id(v)]
        if id(v) in self.inner_producer:
            return self.inner_producer[id(v)], v
        for k, x in enumerate(self.graph.inputs):
            if x is v:
                return f"in{k}", v
        return None, v  # a constant: not drawn


def graph_dot(graph: Graph, fusion=None, title: str | None = None) -> str:
    """DOT text of ``graph`` (any stage). ``fusion``: the plan's FusionReport, whose unfused edges are
    annotated with their reasons; without it, edges carry only their shapes."""
    d = _Drawing(graph)
    reasons: dict[tuple[str, str, str], str] = {}
    if fusion is not None:
        for e in fusion.unfused:
            reasons[(e.producer, e.consumer, e.value)] = f"{e.reason}: {e.detail}"
    lines = [f"digraph {_quote(title or graph.name or 'graph')} {{",
             "  rankdir=TB; newrank=true; fontname=Helvetica;",
             '  node [shape=box, style="rounded,filled", fillcolor=white, fontname=Helvetica, fontsize=11];',
             "  edge [fontname=Helvetica, fontsize=9, color=\"#555555\"];"]
    if title:
        lines.append(f"  labelloc=t; label={_quote(title)};")
    for k, v in enumerate(graph.inputs):
        lines.append(f"  in{k} [shape=ellipse, fillcolor=\"#f7f7f7\", label={_quote(v.name + chr(10) + _shape(v))}];")
    grouped = set()
    for gnode, members in d.groups:
        kind = str(gnode.attrs.get("kind", "opaque"))
        lines.append(f"  subgraph {_quote('cluster_' + gnode.name)} {{")
        lines.append(f"    style=\"rounded,filled\"; color=\"#777777\"; fillcolor={_quote(KIND_COLOURS.get(kind, '#eeeeee'))};")
        lines.append(f"    label={_quote(f'{gnode.name} [{kind}]')}; fontsize=10;")
        for key in members:
            node, _ = d.ops[key]
            lines.append(f"    {key} [label={_quote(node.op_type + chr(10) + node.name)}];")
            grouped.add(key)
        lines.append("  }")
    for key, (node, _) in d.ops.items():
        if key not in grouped:
            lines.append(f"  {key} [label={_quote(node.op_type + chr(10) + node.name)}];")
    for key, (node, group) in d.ops.items():
        seen = set()
        for v in node.inputs:
            if v is None:
                continue
            src, outer = d.source(v)
            if src is None or (src, id(outer)) in seen:
                continue
            seen.add((src, id(outer)))
            label = _shape(outer)
            attrs = []
            producer = d.ops[src][0].name if src in d.ops else None
            why = reasons.get((producer, node.name, outer.name)) if producer else None
            if why:
                label += "\n" + "\n".join(textwrap.wrap(why, 44))
                attrs.append('color="#b2182b", fontcolor="#b2182b", style=dashed')
            attrs.insert(0, f"label={_quote(label)}")
            lines.append(f"  {src} -> {key} [{', '.join(attrs)}];")
    for k, v in enumerate(graph.outputs):
        if v is None:
            continue
        src, outer = d.source(v)
        lines.append(f"  out{k} [shape=ellipse, fillcolor=\"#f7f7f7\", label={_quote(v.name)}];")
        if src is not None:
            lines.append(f"  {src} -> out{k} [label={_quote(_shape(outer))}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def dot_available() -> bool:
    """Whether SVG can be rendered here: the graphviz package imports and Graphviz's dot is on the PATH."""
    try:
        import graphviz  # noqa: F401
    except ImportError:
        return False
    return shutil.which("dot") is not None


def render_svg(dot_text: str) -> str:
    """Lay out DOT text with Graphviz's dot; returns the SVG text (DrawError, saying how to get it, if absent)."""
    try:
        import graphviz
    except ImportError:
        raise DrawError(f"SVG output needs the graphviz Python package: {_INSTALL}") from None
    if shutil.which("dot") is None:
        raise DrawError(f"SVG output needs Graphviz's dot program, which is not on the PATH: {_INSTALL}")
    return graphviz.Source(dot_text).pipe(format="svg", encoding="utf-8")


# ---- memory chart -----------------------------------------------------------------------------
def _mib(n: float) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


def memory_svg(memory, title: str = "memory plan") -> str:
    """An SVG chart of a MemoryPlan: buffer lifetimes over the schedule, one row per buffer, peak marked."""
    if memory is None or not memory.lifetimes:
        raise DrawError("the plan has no memory plan to draw (symbolic shapes are planned per binding: give "
                        "the input shapes, e.g. --set N=1)")
    steps = len(memory.schedule)
    rows = sorted(memory.lifetimes, key=lambda n: (memory.lifetimes[n][0], memory.offsets[n]))
    live = [0] * (steps + 1)
    for name in rows:
        a, b = memory.lifetimes[name]
        for t in range(a, min(b, steps) + 1):
            live[t] += memory.sizes[name]
    peak_step = max(range(len(live)), key=live.__getitem__)

    def root(n: str) -> str:
        while n in memory.inplace:
            n = memory.inplace[n]
        return n

    at = f" ({memory.schedule[peak_step]})" if peak_step < steps else ""
    palette = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#e15759"]
    colour: dict[str, str] = {}
    left, label_w, row_h, top = 10, 300, 16, 60
    width = 1100
    plot_w = width - left - label_w - 20
    x_of = lambda t: left + label_w + plot_w * t / max(steps, 1)  # noqa: E731
    height = top + row_h * len(rows) + 40
    max_size = max(memory.sizes[n] for n in rows)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="Helvetica" '
           f'font-size="11">',
           f'<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{left}" y="18" font-size="14" font-weight="bold">{html.escape(title)}</text>',
           f'<text x="{left}" y="36">{len(rows)} buffers over {steps} steps; arena {_mib(memory.peak_bytes)} '
           f'(no reuse: {_mib(memory.naive_bytes)}); live bytes peak at step {peak_step}{at}: {_mib(live[peak_step])}; '
           f'{len(memory.inplace)} written in place (same colour as the buffer they overwrite)</text>']
    px = x_of(peak_step + 0.5)
    out.append(f'<line x1="{px:.1f}" y1="{top - 12}" x2="{px:.1f}" y2="{height - 30}" stroke="#d62728" '
               f'stroke-dasharray="4 3"/>')
    out.append(f'<text x="{px + 4:.1f}" y="{top - 2}" fill="#d62728">peak {_mib(live[peak_step])}</text>')
    for i, name in enumerate(rows):
        a, b = memory.lifetimes[name]
        c = colour.setdefault(root(name), palette[len(colour) % len(palette)])
        y = top + i * row_h
        size = memory.sizes[name]
        h = 3 + (row_h - 5) * size / max_size
        out.append(f'<text x="{left}" y="{y + row_h - 4}">{html.escape(name[:34])} ({_mib(size)} @ '
                   f'{memory.offsets[name]})</text>')
        x0, x1 = x_of(a), x_of(min(b, steps) + 1)
        out.append(f'<rect x="{x0:.1f}" y="{y + (row_h - h) / 2:.1f}" width="{max(x1 - x0, 1.5):.1f}" height="{h:.1f}" '
                   f'fill="{c}"><title>{html.escape(name)}: steps {a}-{b}, {size} bytes at offset '
                   f'{memory.offsets[name]}</title></rect>')
    axis_y = height - 24
    out.append(f'<line x1="{x_of(0):.1f}" y1="{axis_y}" x2="{x_of(steps):.1f}" y2="{axis_y}" stroke="black"/>')
    for t in range(0, steps + 1, max(1, steps // 10)):
        out.append(f'<text x="{x_of(t):.1f}" y="{axis_y + 14}" text-anchor="middle">{t}</text>')
    out.append(f'<text x="{x_of(steps):.1f}" y="{axis_y - 4}" text-anchor="end">schedule step</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


__all__ = ["DrawError", "KIND_COLOURS", "dot_available", "graph_dot", "memory_svg", "render_svg"]
