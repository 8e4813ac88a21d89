"""Lowerings of the training ops: the optimizers of ``ai.onnx.preview.training`` and a variable's update.

- Momentum, Adagrad and Adam: one elementwise kernel per optimized tensor, reading the learning rate R and the
  update count T from memory (they change every step), the step's scalar factor computed in double by each
  thread, the update in the tensor's compute type;
- ``graphc.Assign`` (what a Session writes back into a variable): a copy of the new value into the variable's
  buffer, nothing where the memory plan already computed it there.
"""
from __future__ import annotations

from graphc.ir import DType, Node

from ..kernel import (
    CodegenUnsupported,
    cctype,
    compute_dtype,
    dtype_of,
    index_type,
    literal,
    load_expr,
    numel,
    shape_of,
    store_expr,
)
from ..lowering import LowerContext, Step, register_lowering
from ..steps import copy_step, float_type, loop_step

TRAINING = "ai.onnx.preview.training"

# ---- optimizers ---------------------------------------------------------------------------------


def _optimizer(groups: int, update):
    """A lowering for an optimizer taking R, T and ``groups`` groups of tensors: ``update(node, dt, lines)``
    appends the lines computing the new values from the loaded ``x``, ``g`` and state ``s1``, ``s2``... and
    ``lr`` (double), and returns the C expressions of the outputs (new x, new states)."""

    def lower(node: Node, ctx: LowerContext) -> list[Step]:
        r, t = node.inputs[:2]
        tensors = list(node.inputs[2:])
        if not tensors or len(tensors) % groups:
            raise CodegenUnsupported(node, f"takes R, T and {groups} groups of equally many tensors, got "
                                           f"{len(tensors)} tensors after R and T")
        k = len(tensors) // groups
        r_dt, t_dt = dtype_of(r), dtype_of(t)
        if t_dt != DType.int64 or not r_dt.is_float:
            raise CodegenUnsupported(node, f"R of {r_dt} and T of {t_dt} (expected a float and int64)")
        steps = []
        for j in range(k):
            ins = [tensors[g * k + j] for g in range(groups)]  # x, g, states
            outs = [node.outputs[g * k + j] if g * k + j < len(node.outputs) else None
                    for g in range(groups - 1)]  # new x, new states
            dt = float_type(node, ins[0])
            if any(dtype_of(v) != dt or shape_of(v) != shape_of(ins[0]) for v in ins + [o for o in outs if o]):
                raise CodegenUnsupported(node, f"tensor {j} and its gradient and state differ in type or shape")
            n = numel(shape_of(ins[0]))
            if n == 0 or all(o is None for o in outs):
                continue
            c = cctype(dt)
            names = ["x", "g"] + [f"s{s}" for s in range(1, groups - 1)]
            lines = ["const long long step = t[0];",
                     f"double lr = (double){load_expr('r[0]', r_dt)};"]
            lines += [f"const {c} {nm} = {load_expr(f'{nm}_in[i]', dt)};" for nm in names]
            lines.append(f"const {c} g_reg = {literal(node.attrs.get('norm_coefficient', 0.0), dt)} * x + g;")
            results = update(node, dt, lines)
            out_names = ["x_out"] + [f"s{s}_out" for s in range(1, groups - 1)]
            lines += [f"{nm}[i] = {store_expr(e, dt)};" for nm, e, o in zip(out_names, results, outs) if o is not None]
            in_params = [("r", r, r_dt), ("t", t, t_dt)] + [(f"{nm}_in", v, dt) for nm, v in zip(names, ins)]
            out_params = [(nm, o, dt) for nm, o in zip(out_names, outs) if o is not None]
            it = index_type(n)
            steps.append(loop_step(ctx, node, f"update{j}", in_params, out_params, n, ["        " + s for s in lines],
                                   f"{node.op_type} update of tensor {j}: {dt}{list(shape_of(ins[0]))}", it))
        return steps

    return lower


def _momentum(node: Node, dt: DType, lines: list[str]) -> list[str]:
    c, a = cctype(dt), node.attrs
    k = lambda x: literal(x, dt)  # noqa: E731
    lines += [f"const {c} beta = step > 0 ? {k(a['beta'])} : {k(1.0)};",
              f"const {c} v_new = {k(a['alpha'])} * s1 + beta * g_reg;"]
    direction = f"g_reg + {k(a['alpha'])} * v_new" if a["mode"] == "nesterov" else "v_new"
    if a["mode"] not in ("standard", "nesterov"):
        raise CodegenUnsupported(node, f"attribute 'mode' is {a['mode']!r}, expected 'standard' or 'nesterov'")
    return [f"x - ({c})lr * ({direction})", "v_new"]


def _adagrad(node: Node, dt: DType, lines: list[str]) -> list[str]:
    c, a = cctype(dt), node.attrs
    sqrt = "sqrtf" if compute_dtype(dt) == DType.float32 else "sqrt"
    lines += [f"lr = lr / (1.0 + (double)step * {literal(a.get('decay_factor', 0.0), DType.float64)});",
              f"const {c} h_new = s1 + g_reg * g_reg;"]
    return [f"x - ({c})lr * g_reg / ({sqrt}(h_new) + {literal(a.get('epsilon', 1e-6), dt)})", "h_new"]


def _adam(node: Node, dt: DType, lines: list[str]) -> list[str]:
    c, a = cctype(dt), node.attrs
    alpha, beta = float(a.get("alpha", 0.9)), float(a.get("beta", 0.999))
    d = lambda x: literal(x, DType.float64)  # noqa: E731
    k = lambda x: literal(x, dt)  # noqa: E731
    sqrt = "sqrtf" if compute_dtype(dt) == DType.float32 else "sqrt"
    lines += [f"if (step > 0) lr = lr * sqrt(1.0 - pow({d(beta)}, (double)step)) / (1.0 - pow({d(alpha)}, "
              f"(double)step));",
              f"const {c} v_new = {k(alpha)} * s1 + {k(1.0 - alpha)} * g_reg;",
              f"const {c} h_new = {k(beta)} * s2 + {k(1.0 - beta)} * g_reg * g_reg;",
              f"const {c} x_new = x - ({c})lr * v_new / ({sqrt}(h_new) + {k(a.get('epsilon', 1e-6))});"]
    post = float(a.get("norm_coefficient_post", 0.0))
    return [f"{k(1.0 - post)} * x_new" if post else "x_new", "v_new", "h_new"]

register_lowering(f"{TRAINING}.Momentum", _optimizer(3, _momentum))

register_lowering(f"{TRAINING}.Adagrad", _optimizer(3, _adagrad))

register_lowering(f"{TRAINING}.Adam", _optimizer(4, _adam))


def _assign(node: Node, ctx: LowerContext) -> list[Step]:
    """``graphc.Assign(variable, new)``: the output is the new value (the Session stores it afterwards)."""
    return [copy_step(ctx, node, node.inputs[1], node.outputs[0], "assign")]

register_lowering("graphc.Assign", _assign)


__all__ = ['TRAINING']
