"""Training operators of the ``ai.onnx.preview.training`` domain: the optimizer updates Momentum, Adagrad, Adam,
and Gradient.

Each takes a learning rate R, an update count T, then groups of equally many tensors (values to
optimize, their gradients, then the optimizer's state), and returns the new values followed by the
new state, group by group.
"""
from __future__ import annotations

import numpy as np

from ..errors import ExecutionError, node_label
from ..ir import DType
from .common import tt
from .registry import REQUIRED, Attr, InferContext, Kind, OpDef, register, set_grads

FAMILY = "training"
DOMAIN = "ai.onnx.preview.training"


def _groups(node, tensors, n_groups: int) -> list[tuple]:
    """Split the variadic inputs into ``n_groups`` equal groups; returns one tuple per optimized tensor."""
    if len(tensors) % n_groups:
        raise ExecutionError(f"{node_label(node)}: takes R, T and {n_groups} groups of equally many tensors, "
                             f"got {len(tensors)} tensors after R and T")
    k = len(tensors) // n_groups
    return [tuple(tensors[g * k + i] for g in range(n_groups)) for i in range(k)]


def _scalar(x) -> float:
    return float(np.asarray(x).reshape(()))


def _momentum_eval(node, r, t, *tensors):
    a = node.attrs
    lr, step = _scalar(r), int(np.asarray(t).reshape(()))
    beta = a["beta"] if step > 0 else 1.0
    xs, vs = [], []
    for x, g, v in _groups(node, tensors, 3):
        g_reg = a["norm_coefficient"] * x + g
        v_new = a["alpha"] * v + beta * g_reg
        step_dir = g_reg + a["alpha"] * v_new if a["mode"] == "nesterov" else v_new
        xs.append((x - lr * step_dir).astype(x.dtype, copy=False))
        vs.append(v_new.astype(v.dtype, copy=False))
    return tuple(xs + vs)


def _adagrad_eval(node, r, t, *tensors):
    a = node.attrs
    lr = _scalar(r) / (1.0 + _scalar(t) * a["decay_factor"])
    xs, hs = [], []
    for x, g, h in _groups(node, tensors, 3):
        g_reg = a["norm_coefficient"] * x + g
        h_new = h + g_reg * g_reg
        xs.append((x - lr * g_reg / (np.sqrt(h_new) + a["epsilon"])).astype(x.dtype, copy=False))
        hs.append(h_new.astype(h.dtype, copy=False))
    return tuple(xs + hs)


def _adam_eval(node, r, t, *tensors):
    a = node.attrs
    lr, step = _scalar(r), int(np.asarray(t).reshape(()))
    alpha, beta = a["alpha"], a["beta"]
    if step > 0:
        lr = lr * np.sqrt(1.0 - beta ** step) / (1.0 - alpha ** step)
    xs, vs, hs = [], [], []
    for x, g, v, h in _groups(node, tensors, 4):
        g_reg = a["norm_coefficient"] * x + g
        v_new = alpha * v + (1.0 - alpha) * g_reg
        h_new = beta * h + (1.0 - beta) * g_reg * g_reg
        x_new = x - lr * v_new / (np.sqrt(h_new) + a["epsilon"])
        xs.append(((1.0 - a["norm_coefficient_post"]) * x_new).astype(x.dtype, copy=False))
        vs.append(v_new.astype(v.dtype, copy=False))
        hs.append(h_new.astype(h.dtype, copy=False))
    return tuple(xs + vs + hs)


def _infer_optimizer(n_groups: int):
    """Outputs: new values and new state, each of its input's type; R and T must be scalars."""

    def infer(ctx: InferContext) -> list:
        n = ctx.n_inputs - 2
        if n <= 0 or n % n_groups:
            ctx.fail(f"takes R, T and {n_groups} groups of equally many tensors, got {max(n, 0)} tensors "
                     f"after R and T")
        for i, what in ((0, "learning rate R"), (1, "update count T")):
            s = ctx.shape(i)
            if s is not None and len(s) != 0 and not (len(s) == 1 and s[0] == 1):
                ctx.fail(f"{what} must be a scalar, got shape [{','.join(map(str, s))}]")
        if ctx.dtype(1) is not None and ctx.dtype(1) != DType.int64:
            ctx.fail(f"update count T must be int64, got {ctx.dtype(1).name}")
        k = n // n_groups
        for i in range(k):
            x, g = ctx.type(2 + i), ctx.type(2 + k + i)
            if x is not None and g is not None and x.dtype and g.dtype and x.dtype != g.dtype:
                ctx.fail(f"tensor {i} is {x.dtype.name} but its gradient is {g.dtype.name}")
        # outputs: X_new for each, then the state groups (skipping the gradient group)
        kept = [2 + i for i in range(k)] + [2 + g * k + i for g in range(2, n_groups) for i in range(k)]
        return [tt(ctx.dtype(j), ctx.shape(j)) for j in kept][:len(ctx.node.outputs)]

    return infer


register(OpDef("Momentum", eval=_momentum_eval, infer=_infer_optimizer(3), domain=DOMAIN, family=FAMILY,
               kind=Kind.OPAQUE, inputs=(5, 2**31), outputs=(2, 2**31),
               attrs={"alpha": Attr("float", REQUIRED), "beta": Attr("float", REQUIRED),
                      "mode": Attr("string", REQUIRED), "norm_coefficient": Attr("float", REQUIRED)},
               doc="One step of SGD with standard or Nesterov momentum."))

register(OpDef("Adagrad", eval=_adagrad_eval, infer=_infer_optimizer(3), domain=DOMAIN, family=FAMILY,
               kind=Kind.OPAQUE, inputs=(5, 2**31), outputs=(2, 2**31),
               attrs={"decay_factor": Attr("float", 0.0), "epsilon": Attr("float", 1e-6),
                      "norm_coefficient": Attr("float", 0.0)},
               doc="One step of ADAGRAD."))

register(OpDef("Adam", eval=_adam_eval, infer=_infer_optimizer(4), domain=DOMAIN, family=FAMILY,
               kind=Kind.OPAQUE, inputs=(6, 2**31), outputs=(3, 2**31),
               attrs={"alpha": Attr("float", 0.9), "beta": Attr("float", 0.999), "epsilon": Attr("float", 1e-6),
                      "norm_coefficient": Attr("float", 0.0), "norm_coefficient_post": Attr("float", 0.0)},
               doc="One step of Adam."))


# ---- Gradient: dy/dx of values of the enclosing graph ---------------------------------------------------
def _gradient_eval(node, *inputs):
    raise ExecutionError(f"{node_label(node)}: a Gradient node is replaced by graphc's autodiff when the model is "
                         f"imported (graphc.frontends.onnx.gradient); it cannot run on its own")


def _infer_gradient(ctx: InferContext):
    """One output per name in ``xs``, each of the type of the input that name refers to."""
    node = ctx.node
    by_name = {v.name: v for v in node.inputs if v is not None}
    out = []
    for name in node.attrs.get("xs") or []:
        if name not in by_name:
            ctx.fail(f"xs names '{name}', which is not one of the node's inputs")
        out.append(by_name[name].type)
    if len(out) != len(node.outputs):
        ctx.fail(f"{len(node.outputs)} outputs for {len(out)} names in xs; expected one output per x")
    return out


register(OpDef("Gradient", eval=_gradient_eval, infer=_infer_gradient, domain=DOMAIN, family=FAMILY,
               kind=Kind.OPAQUE, inputs=(1, 2**31), outputs=(1, 2**31),
               attrs={"xs": Attr("strings", REQUIRED), "y": Attr("string", REQUIRED), "zs": Attr("strings", None)},
               doc="The gradient of y with respect to each of xs, values of the enclosing graph; the ONNX importer "
                   "replaces it by the nodes graphc's autodiff builds."))


# ---- gradients: none (graphc.autodiff names these ops when one cuts a gradient path) -----------------
set_grads({}, {name: "it is an optimizer's update step, not part of a differentiated function"
               for name in ("Momentum", "Adagrad", "Adam")}, domain=DOMAIN)
set_grads({}, {"Gradient": "the importer replaces it by the gradient nodes it stands for"}, domain=DOMAIN)
