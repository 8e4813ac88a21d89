"""A PyTorch module that runs an ONNX graph: the GPU benchmarks' PyTorch peer for models graphc imports.

``TorchOnnx(model)`` holds the initializers as buffers and, in ``forward``, calls one ``torch`` function per
ONNX node in the graph's order, so PyTorch eager and ``torch.compile`` (which traces the loop into one
graph) run exactly the network graphc runs, with the same weights. It covers the ops of the nine light CNNs,
the MLP and the small test CNNs (``OPS``); any other op raises ``NotImplementedError`` naming the node when
the module is built. The semantics are those of opset 9 to 21 for these ops (Softmax before opset 13
flattens from ``axis`` on). Written for the benchmarks rather than taken from onnx2torch: that package
pulls torchvision and has seen no release since 2024, and these ~20 ops are short to state.
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import numpy as np


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _pads(a: dict, nd: int) -> list[int]:
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
        raise NotImplementedError(f"auto_pad={a['auto_pad']!r}")
    return list(a.get("pads", [0] * (2 * nd)))


def _pad_args(pads: list[int], nd: int):
    """(symmetric padding for torch, or None plus an F.pad tuple for asymmetric pads)."""
    begin, end = pads[:nd], pads[nd:]
    if begin == end:
        return begin, None
    pad = []
    for b, e in zip(reversed(begin), reversed(end)):  # F.pad lists the last dim first
        pad += [b, e]
    return [0] * nd, pad


def _conv(x, w, b=None, *, a, F):
    nd = w.dim() - 2
    sym, extra = _pad_args(_pads(a, nd), nd)
    if extra is not None:
        x = F.pad(x, extra)
    conv = (F.conv1d, F.conv2d, F.conv3d)[nd - 1]
    return conv(x, w, b, stride=a.get("strides", 1), padding=sym, dilation=a.get("dilations", 1),
                groups=a.get("group", 1))


def _maxpool(x, *, a, F):
    nd = x.dim() - 2
    sym, extra = _pad_args(_pads(a, nd), nd)
    if extra is not None:
        x = F.pad(x, extra, value=float("-inf"))
    pool = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[nd - 1]
    return pool(x, a["kernel_shape"], stride=a.get("strides", 1), padding=sym, dilation=a.get("dilations", 1),
                ceil_mode=bool(a.get("ceil_mode", 0)))


def _avgpool(x, *, a, F):
    nd = x.dim() - 2
    sym, extra = _pad_args(_pads(a, nd), nd)
    include = bool(a.get("count_include_pad", 0))
    pool = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[nd - 1]
    kw = dict(stride=a.get("strides", 1), ceil_mode=bool(a.get("ceil_mode", 0)), count_include_pad=True)
    if extra is None:
        return pool(x, a["kernel_shape"], padding=sym, **dict(kw, count_include_pad=include))
    total = pool(F.pad(x, extra), a["kernel_shape"], **kw)  # asymmetric pads: zero-pad first
    if include:
        return total
    ones = x.new_ones((1, 1) + tuple(x.shape[2:]))  # divide by the count of real elements in each window instead
    return total / pool(F.pad(ones, extra), a["kernel_shape"], **kw)


def _gemm(A, B, C=None, *, a, torch):
    A = A.t() if a.get("transA", 0) else A
    B = B.t() if a.get("transB", 0) else B
    y = torch.matmul(A, B)
    if a.get("alpha", 1.0) != 1.0:
        y = y * a["alpha"]
    if C is not None:
        y = y + (C * a["beta"] if a.get("beta", 1.0) != 1.0 else C)
    return y


def _reshape(x, shape, *, a):
    dims = list(shape)  # a constant (a tuple of ints): the benchmarks' models fix their shapes
    dims = [x.shape[i] if d == 0 and not a.get("allowzero", 0) else d for i, d in enumerate(dims)]
    return x.reshape(dims)


def _softmax(x, *, a, torch, opset, log=False):
    fn = torch.log_softmax if log else torch.softmax
    axis = a.get("axis", -1 if opset >= 13 else 1)
    if opset >= 13:
        return fn(x, axis)
    axis %= x.dim()
    flat = x.reshape(math.prod(x.shape[:axis]), -1)
    return fn(flat, -1).reshape(x.shape)


def _unsqueeze(x, axes=None, *, a):
    axes = a["axes"] if axes is None else axes
    for ax in sorted(int(i) % (x.dim() + len(axes)) for i in axes):
        x = x.unsqueeze(ax)
    return x


def _build(op: str, a: dict, opset: int) -> Callable:
    import torch
    import torch.nn.functional as F

    simple = {
        "Relu": torch.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Identity": lambda x: x,
        "Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div, "MatMul": torch.matmul,
        "Dropout": lambda x, *rest: x,
        "Sum": lambda *xs: functools.reduce(torch.add, xs),
        "GlobalAveragePool": lambda x: x.mean(dim=tuple(range(2, x.dim())), keepdim=True),
        "GlobalMaxPool": lambda x: x.amax(dim=tuple(range(2, x.dim())), keepdim=True),
    }
    if op in simple:
        return simple[op]
    if op == "Conv":
        return lambda x, w, b=None: _conv(x, w, b, a=a, F=F)
    if op == "MaxPool":
        return lambda x: _maxpool(x, a=a, F=F)
    if op == "AveragePool":
        return lambda x: _avgpool(x, a=a, F=F)
    if op == "BatchNormalization":
        eps = a.get("epsilon", 1e-5)
        return lambda x, s, b, m, v: F.batch_norm(x, m, v, s, b, training=False, eps=eps)
    if op == "LRN":
        return lambda x: F.local_response_norm(x, a["size"], alpha=a.get("alpha", 1e-4), beta=a.get("beta", 0.75),
                                               k=a.get("bias", 1.0))
    if op == "Gemm":
        return lambda A, B, C=None: _gemm(A, B, C, a=a, torch=torch)
    if op == "Reshape":
        return lambda x, shape: _reshape(x, shape, a=a)
    if op == "Flatten":
        axis = a.get("axis", 1)
        return lambda x: x.reshape(math.prod(x.shape[:axis % max(x.dim(), 1)]) if axis else 1, -1)
    if op == "Transpose":
        return lambda x: x.permute(*a["perm"]) if "perm" in a else x.permute(*reversed(range(x.dim())))
    if op == "Concat":
        return lambda *xs: torch.cat(xs, a["axis"])
    if op in ("Softmax", "LogSoftmax"):
        return lambda x: _softmax(x, a=a, torch=torch, opset=opset, log=op == "LogSoftmax")
    if op == "Unsqueeze":
        return lambda x, axes=None: _unsqueeze(x, axes, a=a)
    if op == "Clip":
        return lambda x, lo=None, hi=None: torch.clamp(x, a.get("min", lo), a.get("max", hi))
    raise NotImplementedError(op)


#: ONNX ops this module runs.
OPS = ("Add", "AveragePool", "BatchNormalization", "Clip", "Concat", "Conv", "Div", "Dropout", "Flatten", "Gemm",
       "GlobalAveragePool", "GlobalMaxPool", "Identity", "LRN", "LogSoftmax", "MatMul", "MaxPool", "Mul", "Relu",
       "Reshape", "Sigmoid", "Softmax", "Sub", "Sum", "Tanh", "Transpose", "Unsqueeze")
#: Inputs read as host values (tuples of ints) when the module is built (shapes, axes), not as tensors.
_HOST_INPUTS = {("Reshape", 1), ("Unsqueeze", 1)}


def _module_class():
    import torch

    class TorchOnnx(torch.nn.Module):
        """``TorchOnnx(model)(*inputs) -> tuple of outputs``, the graph's inputs that are not initializers in order."""

        def __init__(self, model):
            super().__init__()
            from onnx import numpy_helper

            g = model.graph
            opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 21)
            consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
            for node in g.node:  # Constant nodes become initializers too
                if node.op_type == "Constant":
                    consts[node.output[0]] = numpy_helper.to_array(_attrs(node)["value"])
            self.input_names = [v.name for v in g.input if v.name not in consts]
            self.output_names = [v.name for v in g.output]
            self._slots = {}
            for name, arr in consts.items():
                slot = f"c{len(self._slots)}"
                self._slots[name] = slot
                self.register_buffer(slot, torch.from_numpy(np.array(arr)), persistent=False)
            self.steps = []
            for node in g.node:
                if node.op_type == "Constant":
                    continue
                if node.domain not in ("", "ai.onnx") or node.op_type not in OPS:
                    raise NotImplementedError(f"node '{node.name}': ONNX op {node.domain or 'ai.onnx'}."
                                              f"{node.op_type} has no PyTorch translation in bench/torch_onnx.py")
                fn = _build(node.op_type, _attrs(node), opset)
                args = []
                for k, name in enumerate(node.input):
                    if (node.op_type, k) in _HOST_INPUTS:
                        args.append(("host", tuple(int(d) for d in np.asarray(consts[name]).reshape(-1))))
                    elif name == "":
                        args.append(("none", None))
                    else:
                        args.append(("value", name))
                while args and args[-1][0] == "none":
                    args.pop()
                self.steps.append((fn, tuple(args), tuple(node.output)))

        def forward(self, *inputs):
            env = dict(zip(self.input_names, inputs))
            for name, slot in self._slots.items():
                env[name] = getattr(self, slot)
            for fn, args, outs in self.steps:
                vals = [env[x] if kind == "value" else x for kind, x in args]
                y = fn(*vals)
                if isinstance(y, tuple):
                    for o, t in zip(outs, y):
                        env[o] = t
                else:
                    env[outs[0]] = y
            return tuple(env[o] for o in self.output_names)

    return TorchOnnx


def torch_module(model):
    """The ``torch.nn.Module`` that runs ONNX ``model`` (a ModelProto); needs torch."""
    return _module_class()(model)


__all__ = ["OPS", "torch_module"]
