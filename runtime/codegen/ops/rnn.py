"""Lowerings of the recurrent layers RNN, GRU and LSTM: library GEMM calls (``libcall.Gemm``) and generated gate kernels.

X (seq, batch, input) (layout 0; (batch, seq, input) with layout 1), W (dirs, gates*H, input), R (dirs, gates*H, H):

- the input projections of every time step at once: ONE GEMM per layer, xw[d] = X (seq*batch x input) @ W[d]^T,
  batched over the directions (the rows keep X's order, so both layouts read X as it is);
- then per time step: hr[d] = h[d] @ R[d]^T (batched over the directions, the state ``h`` of shape (dirs, batch,
  H) in scratch; at step 0 the GEMM reads initial_h as given, or is left out when there is none) and ONE gate
  kernel over dirs*batch*H threads, which adds the biases, clips, applies the activations and writes the new
  state, the step's row of Y and, at the last step, Y_h / Y_c. The step number is a scalar parameter, so one
  kernel serves every step. Direction d runs time t = s forwards or t = seq-1-s backwards.
- GRU without ``linear_before_reset`` needs (r * h) @ Rh^T: its step is GEMM (z and r columns), a kernel making
  r * h, a GEMM of that with Rh, and the kernel making h.

sequence_lens (constant or computed at run time) masks as the NumPy reference does: past a sequence's length
its state stays and its Y rows are 0. Every activation of the ONNX list, with activation_alpha/beta; clip;
peepholes and input_forget for LSTM; float16, bfloat16, float32 and float64.
"""
from __future__ import annotations

import numpy as np

from graphc.ir import DType, Node, Value
from graphc.ops.nn import activation_specs

from ..kernel import (
    CodegenUnsupported,
    Param,
    cctype,
    compute_dtype,
    dtype_of,
    index_type,
    literal,
    load_expr,
    shape_of,
    store_expr,
)
from ..libcall import Gemm
from ..lowering import LowerContext, Step, register_lowering
from ..steps import decode, float_type, loop_step

#: gates per cell and activations per direction
CELLS = {"RNN": (1, 1), "GRU": (3, 2), "LSTM": (4, 3)}


def _activation(name: str, a, b, dt: DType, x: str) -> str:
    """The C expression of activation ``name`` (with its alpha ``a`` and beta ``b``) of variable ``x``."""
    f = "f" if compute_dtype(dt) == DType.float32 else ""
    k = lambda v: literal(v, dt)  # noqa: E731
    zero, one = k(0.0), k(1.0)
    forms = {
        "relu": lambda: f"({x} > {zero} ? {x} : {zero})",
        "tanh": lambda: f"tanh{f}({x})",
        "sigmoid": lambda: f"({one} / ({one} + exp{f}(-{x})))",
        "affine": lambda: f"({k(a)} * {x} + {k(b)})",
        "leakyrelu": lambda: f"({x} >= {zero} ? {x} : {k(a)} * {x})",
        "thresholdedrelu": lambda: f"({x} > {k(a)} ? {x} : {zero})",
        "scaledtanh": lambda: f"({k(a)} * tanh{f}({k(b)} * {x}))",
        "hardsigmoid": lambda: f"fmin{f}(fmax{f}({k(a)} * {x} + {k(b)}, {zero}), {one})",
        "elu": lambda: f"({x} >= {zero} ? {x} : {k(a)} * (exp{f}({x}) - {one}))",
        "softsign": lambda: f"({x} / ({one} + fabs{f}({x})))",
        "softplus": lambda: f"log1p{f}(exp{f}({x}))",
    }
    return forms[name]()


class _Cell:
    """What the kernels of one recurrent node share: sizes, element type, the C index expressions of its
    buffers and the activation / clip code."""

    def __init__(self, node: Node):
        op = node.op_type
        self.node, self.op = node, op
        ins = list(node.inputs) + [None] * (8 - len(node.inputs))
        self.x, self.w, self.r, self.b, self.lens, self.h0, self.c0, self.p = ins[:8]
        if op != "LSTM":
            self.c0 = self.p = None
        self.dt = dt = float_type(node, self.x)
        for name, v in (("W", self.w), ("R", self.r), ("B", self.b), ("initial_h", self.h0), ("initial_c", self.c0),
                        ("P", self.p)):
            if v is not None and dtype_of(v) != dt:
                raise CodegenUnsupported(node, f"input {name} of {dtype_of(v)}, X of {dt} (one element type expected)")
        if self.lens is not None and not dtype_of(self.lens).is_int:
            raise CodegenUnsupported(node, f"sequence_lens of {dtype_of(self.lens)} (expected an integer type)")
        a = node.attrs
        direction = a["direction"]
        if direction not in ("forward", "reverse", "bidirectional"):
            raise CodegenUnsupported(node, f"attribute 'direction' is {direction!r}")
        self.layout = int(a.get("layout", 0))
        if self.layout not in (0, 1):
            raise CodegenUnsupported(node, f"attribute 'layout' is {self.layout} (expected 0 or 1)")
        xs = shape_of(self.x)
        self.T, self.B = (xs[1], xs[0]) if self.layout else (xs[0], xs[1])
        self.I = xs[2]
        self.G, per_dir = CELLS[op]
        self.D = 2 if direction == "bidirectional" else 1
        self.H = shape_of(self.r)[2]
        if shape_of(self.w) != (self.D, self.G * self.H, self.I) or shape_of(self.r)[:2] != (self.D, self.G * self.H):
            raise CodegenUnsupported(node, f"W {list(shape_of(self.w))} and R {list(shape_of(self.r))} do not fit "
                                           f"{self.D} direction(s), {self.G} gate(s) of hidden size {self.H}")
        self.time = {"forward": "s", "reverse": f"{self.T - 1} - s", "bidirectional": f"(d ? {self.T - 1} - s : s)"}[
            direction]
        try:
            self.acts = activation_specs(node, per_dir, self.D)
        except ValueError as e:
            raise CodegenUnsupported(node, str(e)) from None
        self.clip = a.get("clip")
        self.c = cctype(dt)
        outs = list(node.outputs) + [None] * 3
        self.y, self.yh = outs[0], outs[1]
        self.yc = outs[2] if op == "LSTM" else None
        self.n = self.D * self.B * self.H
        self.it = index_type(max(self.D * self.T * self.B * self.G * self.H, self.D * self.T * self.B * self.I, 2))

    # ---- C expressions (inside the kernel: d, b, j decoded from i, s the step, t its time) --------------
    def state(self, k: str = "j") -> str:
        """Offset of (d, b, k) in the (dirs, batch, H) state buffers and in Y_h / initial_h (their layout)."""
        if self.layout:
            return f"(b * {self.D} + d) * {self.H} + {k}"
        return f"(d * {self.B} + b) * {self.H} + {k}"

    def xw(self, g: int) -> str:
        row = f"b * {self.T} + t" if self.layout else f"t * {self.B} + b"
        return f"xw[(d * {self.T * self.B} + {row}) * {self.G * self.H} + {g * self.H} + j]"

    def hr(self, g: int) -> str:
        return f"hr[(d * {self.B} + b) * {self.G * self.H} + {g * self.H} + j]"

    def y_at(self) -> str:
        if self.layout:
            return f"((b * {self.T} + t) * {self.D} + d) * {self.H} + j"
        return f"((t * {self.D} + d) * {self.B} + b) * {self.H} + j"

    def act(self, k: int, x: str) -> str:
        """Activation ``k`` of each direction applied to ``x`` (a choice on ``d`` where they differ)."""
        x = x if x.isidentifier() else f"({x})"
        exprs = [_activation(*self.acts[d][k], self.dt, x) for d in range(self.D)]
        return exprs[0] if len(set(exprs)) == 1 else f"(d ? {exprs[1]} : {exprs[0]})"

    def clipped(self, x: str) -> str:
        if self.clip is None:
            return x
        f = "f" if compute_dtype(self.dt) == DType.float32 else ""
        return f"fmin{f}(fmax{f}({x}, {literal(-self.clip, self.dt)}), {literal(self.clip, self.dt)})"

    def gate(self, g: int, recurrent: bool = True) -> str:
        """Pre-activation of gate ``g`` without clip: input projection + recurrent product + both biases."""
        c, dt = self.c, self.dt
        terms = [f"({c}){load_expr(self.xw(g), dt)}"]
        if recurrent:
            terms.append(f"({self.hr_known} ? {load_expr(self.hr(g), dt)} : {literal(0, dt)})")
        if self.b is not None:
            base = f"d * {2 * self.G * self.H} + {g * self.H} + j"
            terms.append(load_expr(f"bias[{base}]", dt))
            if recurrent:
                terms.append(load_expr(f"bias[{base} + {self.G * self.H}]", dt))
        return " + ".join(terms)

    @property
    def hr_known(self) -> str:
        """C condition: the recurrent product of this step was computed (not at step 0 without initial_h)."""
        return "true" if self.h0 is not None else "s > 0"

    def prologue(self) -> list[str]:
        """Lines decoding the thread's (d, b, j), the time t, liveness and the previous state ``h``/``c``."""
        c, dt = self.c, self.dt
        lines = decode("i", [("d", self.D), ("b", self.B), ("j", self.H)], self.it)
        lines = [ln.strip() for ln in lines]
        lines.append(f"const long long t = {self.time};")
        live = "true" if self.lens is None else "t < (long long)lens[b]"
        lines.append(f"const bool live = {live};")
        for name, init in (("h", self.h0), ("c", self.c0)):
            if name == "c" and self.op != "LSTM":
                continue
            first = load_expr(f"{name}0[{self.state()}]", dt) if init is not None else literal(0, dt)
            kept = load_expr(f"{name}_state[(d * {self.B} + b) * {self.H} + j]", dt)
            lines.append(f"const {c} {name}_prev = s == 0 ? ({c}){first} : ({c}){kept};")
        return lines

    def inputs(self, *names: str) -> list[tuple[str, Value, DType]]:
        table = {"bias": self.b, "lens": self.lens, "h0": self.h0, "c0": self.c0, "p": self.p}
        out = []
        for nm in names:
            v = table.get(nm)
            if nm in table and v is None:
                continue
            out.append((nm, v, dtype_of(v)))
        return out

    def finish(self, name: str, value: str) -> list[str]:
        """Lines storing the new state ``name`` (h or c): kept past the sequence's end; h also into Y."""
        dt = self.dt
        lines = [f"const {self.c} {name}_new = live ? {value} : {name}_prev;",
                 f"{name}_state[(d * {self.B} + b) * {self.H} + j] = {store_expr(f'{name}_new', dt)};"]
        if name == "h" and self.y is not None:
            lines.append(f"y[{self.y_at()}] = {store_expr(f'live ? h_new : {literal(0, dt)}', dt)};")
        last = self.yh if name == "h" else self.yc
        if last is not None:
            lines.append(f"if (s == {self.T - 1}) y{name}[{self.state()}] = {store_expr(f'{name}_new', dt)};")
        return lines


def _step_kernel(ctx: LowerContext, cell: _Cell, what: str, ins: list[tuple[str, Value, DType]],
                 outs: list[tuple[str, Value, DType]], body: list[str], comment: str) -> Step:
    """The step kernel (a grid-stride loop over dirs*batch*H threads, ``s`` the step by value) as the step of
    time step 0; ``_at`` makes the others."""
    return loop_step(ctx, cell.node, what, ins, outs, cell.n, ["        " + ln for ln in body], comment, cell.it,
                     scalars=[Param("scalar", 0, "s", DType.int64, np.int64(0))])


def _at(step: Step, s: int) -> Step:
    """``step`` (of a step kernel) for time step ``s``."""
    return Step(step.kernel, [np.int64(s) if isinstance(a, np.generic) else a for a in step.args], step.node)


def _recurrent_gemm(cell: _Cell, ctx: LowerContext, s: int, h: Value, hr: Value, *, cols: int, col0: int = 0,
                    a: Value | None = None) -> Step:
    """hr[d][:, col0:col0+cols] = A[d] @ R[d][col0:col0+cols]^T, batched over the directions; A is ``a`` (a
    (dirs, batch, H) buffer) or the state ``h`` (initial_h as given at step 0)."""
    B, H, D, GH = cell.B, cell.H, cell.D, cell.G * cell.H
    if a is None and s == 0:
        a = cell.h0
        lda, stride_a = (D * H, H) if cell.layout else (H, B * H)
    else:
        a = h if a is None else a
        lda, stride_a = H, B * H
    call = Gemm(B, cols, H, cell.dt, trans_b=True, lda=lda, ldb=H, ldc=GH, batch=D, stride_a=stride_a,
                stride_b=GH * H, stride_c=B * GH, offset_b=col0 * H, offset_c=col0)
    return ctx.call_step(call, [a, cell.r, hr], cell.node)


def lower_recurrent(node: Node, ctx: LowerContext) -> list[Step]:
    cell = _Cell(node)
    T, B, H, D, G, I, dt = cell.T, cell.B, cell.H, cell.D, cell.G, cell.I, cell.dt
    if B == 0 or H == 0:
        return []
    if T == 0:
        raise CodegenUnsupported(node, "a sequence of length 0 (Y_h would be initial_h)")
    if node.op_type == "LSTM" and node.attrs.get("input_forget") not in (0, 1, None):
        raise CodegenUnsupported(node, f"attribute 'input_forget' is {node.attrs.get('input_forget')}")
    GH = G * H
    tag = node.name or node.op_type
    xw = ctx.scratch(ctx.unique_name(f"{tag}_xw"), dt, (D, T * B, GH))
    hr = ctx.scratch(ctx.unique_name(f"{tag}_hr"), dt, (D, B, GH))
    h = ctx.scratch(ctx.unique_name(f"{tag}_h"), dt, (D, B, H))
    steps = [ctx.call_step(Gemm(T * B, GH, I, dt, trans_b=True, batch=D, stride_a=0, stride_b=GH * I,
                                stride_c=T * B * GH), [cell.x, cell.w, xw], node)]
    outs = [("h_state", h, dt)] + [(nm, v, dt) for nm, v in (("y", cell.y), ("yh", cell.yh), ("yc", cell.yc))
                                   if v is not None]
    c = cell.c
    lbr = node.op_type == "GRU" and node.attrs.get("linear_before_reset", 0)
    if node.op_type == "RNN":
        body = cell.prologue() + cell.finish("h", cell.act(0, cell.clipped(f"({cell.gate(0)})")))
        kernels = [_step_kernel(ctx, cell, "rnn_step", [("xw", xw, dt), ("hr", hr, dt)] +
                                cell.inputs("bias", "lens", "h0"), outs, body, f"RNN step: {D} direction(s), "
                                f"batch {B}, hidden {H}; s is the step")]
        plan = [("gemm", GH, 0, None), ("kernel", 0)]
    elif node.op_type == "LSTM":
        outs.insert(1, ("c_state", ctx.scratch(ctx.unique_name(f"{tag}_c"), dt, (D, B, H)), dt))
        body = cell.prologue()
        for g, nm in enumerate("iofc"):
            body.append(f"{c} z{nm} = {cell.gate(g)};")
        if cell.p is not None:
            body += [f"zi += {load_expr(f'p[d * {3 * H} + j]', dt)} * c_prev;",
                     f"zf += {load_expr(f'p[d * {3 * H} + {2 * H} + j]', dt)} * c_prev;"]
        body.append(f"const {c} ig = {cell.act(0, cell.clipped('zi'))};")
        fg = f"{literal(1.0, dt)} - ig" if node.attrs.get("input_forget") else cell.act(0, cell.clipped("zf"))
        body.append(f"const {c} fg = {fg};")
        body.append(f"const {c} c_cand = fg * c_prev + ig * {cell.act(1, cell.clipped('zc'))};")
        if cell.p is not None:
            body.append(f"zo += {load_expr(f'p[d * {3 * H} + {H} + j]', dt)} * c_cand;")
        body.append(f"const {c} og = {cell.act(0, cell.clipped('zo'))};")
        body += cell.finish("c", "c_cand")
        body += [f"const {c} h_cand = og * {cell.act(2, 'c_cand')};"] + cell.finish("h", "h_cand")
        ins = [("xw", xw, dt), ("hr", hr, dt)] + cell.inputs("bias", "lens", "h0", "c0", "p")
        kernels = [_step_kernel(ctx, cell, "lstm_step", ins, outs, body, f"LSTM step (gates i, o, f, c): {D} "
                                f"direction(s), batch {B}, hidden {H}; s is the step")]
        plan = [("gemm", GH, 0, None), ("kernel", 0)]
    else:  # GRU, gates z, r, h
        zr = [f"const {c} zg = {cell.act(0, cell.clipped(cell.gate(0)))};",
              f"const {c} rg = {cell.act(0, cell.clipped(cell.gate(1)))};"]
        bias_n = load_expr(f"bias[d * {2 * GH} + {GH + 2 * H} + j]", dt) if cell.b is not None else literal(0, dt)
        hr_n = f"({cell.hr_known} ? {load_expr(cell.hr(2), dt)} : {literal(0, dt)})"
        if lbr:
            n = f"{cell.gate(2, recurrent=False)} + rg * ({hr_n} + {bias_n})"
            body = cell.prologue() + zr + [f"const {c} ng = {cell.act(1, cell.clipped(f'({n})'))};"]
            body += cell.finish("h", f"({literal(1.0, dt)} - zg) * ng + zg * h_prev")
            kernels = [_step_kernel(ctx, cell, "gru_step", [("xw", xw, dt), ("hr", hr, dt)] +
                                    cell.inputs("bias", "lens", "h0"), outs, body,
                                    f"GRU step (linear_before_reset): {D} direction(s), batch {B}, hidden {H}")]
            plan = [("gemm", GH, 0, None), ("kernel", 0)]
        else:
            rh = ctx.scratch(ctx.unique_name(f"{tag}_rh"), dt, (D, B, H))
            body = cell.prologue() + zr[1:] + [f"rh[(d * {B} + b) * {H} + j] = {store_expr('rg * h_prev', dt)};"]
            # the state pointer is read only here: the step's h is written by the second kernel
            first = _step_kernel(ctx, cell, "gru_reset", [("xw", xw, dt), ("hr", hr, dt), ("h_state", h, dt)] +
                                 cell.inputs("bias", "lens", "h0"), [("rh", rh, dt)], body,
                                 f"GRU reset gate r and r * h: {D} direction(s), batch {B}, hidden {H}")
            n = f"{cell.gate(2, recurrent=False)} + {hr_n} + {bias_n}"
            body = cell.prologue() + zr[:1] + [f"const {c} ng = {cell.act(1, cell.clipped(f'({n})'))};"]
            body += cell.finish("h", f"({literal(1.0, dt)} - zg) * ng + zg * h_prev")
            second = _step_kernel(ctx, cell, "gru_step", [("xw", xw, dt), ("hr", hr, dt)] +
                                  cell.inputs("bias", "lens", "h0"), outs, body,
                                  "GRU update: n = f(x Wh + (r * h) Rh + b), h = (1 - z) n + z h")
            kernels = [first, second]
            plan = [("gemm", 2 * H, 0, None), ("kernel", 0), ("gemm", H, 2 * H, rh), ("kernel", 1)]
    for s in range(T):
        for what in plan:
            if what[0] == "kernel":
                steps.append(_at(kernels[what[1]], s))
            elif s > 0 or cell.h0 is not None:  # at step 0 without initial_h the products are 0 (not read)
                _, cols, col0, a = what
                steps.append(_recurrent_gemm(cell, ctx, s, h, hr, cols=cols, col0=col0, a=a))
    return steps

for _op in CELLS:
    register_lowering(_op, lower_recurrent)


__all__ = ['CELLS', 'lower_recurrent']
