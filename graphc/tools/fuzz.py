"""Mutation fuzzer: hostile variants of valid models must import, check and run, or raise GraphcError.

``python -m graphc.tools.fuzz --cases 10000 --seed 0`` derives each case ``(seed, index)`` from a seed model
(the ONNX node test cases with their inputs, models/data/tiny_cnn.onnx, a few models built here) by one
to three mutations: attribute values and types, shapes and element types, initializers (dims claiming
huge sizes, truncated data, external data pointing anywhere), graph edges, op types and opsets, the
fed values, and raw bytes of the serialized model. Each case then goes through three stages: import
(``graphc.import_onnx``), ``graphc check`` (the CLI, in-process) and a run on the NumPy backend. A stage
may succeed or raise GraphcError; any other exception, a case that outlives its time limit (a hang)
and a worker interpreter that dies (a crash) are failures, saved with what reproduces them to
``--out`` (``python -m graphc.tools.fuzz --replay SEED:INDEX`` runs one case again, in-process).

Cases run in a pool of worker processes (``--jobs``), so a crash takes down one worker, not the run;
each worker caps its address space and graphc's memory budget (graphc/limits.py), and each case has
a time limit (a signal inside the worker, a kill from the parent if the case is stuck in C code).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

#: graphc's memory budget inside fuzz workers (small, so that refusing huge tensors is exercised).
WORKER_MEMORY_LIMIT = "256MB"
#: Address-space cap of a worker: an allocation graphc did not guard fails with MemoryError instead of
#: exhausting the machine, and is reported as a failure.
WORKER_ADDRESS_SPACE = 6 << 30

STAGES = ("import", "check", "run")


# ---- the seed corpus ------------------------------------------------------------------------------
@dataclass
class Seed:
    """A valid model (serialized) and the values to feed it (positional, in graph-input order)."""

    name: str
    model: bytes
    feeds: list = field(default_factory=list)


def _built_seeds() -> list[Seed]:
    """Small models built here for what the node cases lack: initializers, symbolic dims, subgraphs."""
    from onnx import TensorProto, helper, numpy_helper

    def model(nodes, inputs, outputs, inits=(), opset=17):
        g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 8
        return m.SerializeToString()

    f32 = TensorProto.FLOAT
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "b")
    mlp = model([helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
                 helper.make_node("Add", ["h", "b"], ["a"], name="add"),
                 helper.make_node("Relu", ["a"], ["y"], name="relu")],
                [helper.make_tensor_value_info("x", f32, ["N", 4])],
                [helper.make_tensor_value_info("y", f32, ["N", 3])], [w, b])
    shape = numpy_helper.from_array(np.array([2, 3], np.int64), "shape")
    reps = numpy_helper.from_array(np.array([1, 2], np.int64), "reps")
    sizes = model([helper.make_node("ConstantOfShape", ["shape"], ["c"], name="cos",
                                    value=numpy_helper.from_array(np.array([1.5], np.float32))),
                   helper.make_node("Expand", ["x", "shape"], ["e"], name="expand"),
                   helper.make_node("Add", ["c", "e"], ["s"], name="add"),
                   helper.make_node("Tile", ["s", "reps"], ["y"], name="tile")],
                  [helper.make_tensor_value_info("x", f32, [1, 3])],
                  [helper.make_tensor_value_info("y", f32, [2, 6])], [shape, reps])
    then_g = helper.make_graph([helper.make_node("Neg", ["x"], ["t"], name="neg")], "then", [],
                               [helper.make_tensor_value_info("t", f32, [2])])
    else_g = helper.make_graph([helper.make_node("Abs", ["x"], ["e"], name="abs")], "else", [],
                               [helper.make_tensor_value_info("e", f32, [2])])
    cond = model([helper.make_node("If", ["c"], ["y"], name="if", then_branch=then_g, else_branch=else_g)],
                 [helper.make_tensor_value_info("c", TensorProto.BOOL, []),
                  helper.make_tensor_value_info("x", f32, [2])],
                 [helper.make_tensor_value_info("y", f32, [2])])
    x = rng.standard_normal
    return [Seed("built_mlp", mlp, [x((2, 4)).astype(np.float32)]),
            Seed("built_sizes", sizes, [x((1, 3)).astype(np.float32)]),
            Seed("built_if", cond, [np.array(True), x(2).astype(np.float32)])]


def load_corpus() -> list[Seed]:
    """The seed models, in a fixed order (a case is reproducible from its seed and index alone)."""
    from .conformance import _normalize, node_cases

    seeds = []
    for case in sorted(node_cases(), key=lambda c: c.name):
        if case.model is None or not case.data_sets:
            continue
        inputs = [_normalize(x) for x in case.data_sets[0][0]]
        seeds.append(Seed(case.name, case.model.SerializeToString(), inputs))
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    cnn = os.path.join(here, "models", "data", "tiny_cnn.onnx")
    if os.path.exists(cnn):
        with open(cnn, "rb") as f:
            image = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
            seeds.append(Seed("tiny_cnn", f.read(), [image]))
    seeds.extend(_built_seeds())
    return seeds


# ---- mutations ----------------------------------------------------------------------------------
_INTS = [0, 1, -1, 2, 3, -2, 7, 64, 2**31 - 1, -(2**31), 2**40, 2**62, -(2**63), 2**63 - 1]
_FLOATS = [0.0, -0.0, 1.0, -1.0, 0.5, 1e-30, 1e30, -1e30, float("nan"), float("inf"), float("-inf")]
_DIMS = [0, 1, 2, 3, 5, 17, 2**20, 2**31, 2**40, 2**62]


def _graphs(g, out=None) -> list:
    """A GraphProto and all of its subgraphs (at any depth)."""
    from onnx import AttributeProto

    out = [] if out is None else out
    out.append(g)
    for n in g.node:
        for a in n.attribute:
            if a.type == AttributeProto.GRAPH:
                _graphs(a.g, out)
            elif a.type == AttributeProto.GRAPHS:
                for sub in a.graphs:
                    _graphs(sub, out)
    return out


def _nodes(model) -> list:
    nodes = [n for g in _graphs(model.graph) for n in g.node]
    nodes += [n for f in model.functions for n in f.node]
    return nodes


def _names(model) -> list[str]:
    names = set()
    for g in _graphs(model.graph):
        names.update(i.name for i in g.input)
        names.update(t.name for t in g.initializer)
        for n in g.node:
            names.update(o for o in n.output if o)
    return sorted(names)


def _pick(rng: random.Random, seq):
    return seq[rng.randrange(len(seq))] if len(seq) else None


def mutate_attr_value(rng, model, case) -> str:
    from onnx import AttributeProto

    cands = [(n, a) for n in _nodes(model) for a in n.attribute]
    if not cands:
        return ""
    n, a = _pick(rng, cands)
    t = a.type
    if t == AttributeProto.INT:
        a.i = _pick(rng, _INTS)
    elif t == AttributeProto.FLOAT:
        a.f = _pick(rng, _FLOATS)
    elif t == AttributeProto.INTS:
        vals = list(a.ints)
        op = rng.randrange(3)
        if op == 0 and vals:
            vals[rng.randrange(len(vals))] = _pick(rng, _INTS)
        elif op == 1:
            vals.append(_pick(rng, _INTS))
        elif vals:
            vals.pop(rng.randrange(len(vals)))
        del a.ints[:]
        a.ints.extend(vals)
    elif t == AttributeProto.FLOATS:
        vals = list(a.floats)
        if vals and rng.random() < 0.5:
            vals[rng.randrange(len(vals))] = _pick(rng, _FLOATS)
        else:
            vals = vals[:-1] if vals and rng.random() < 0.5 else vals + [_pick(rng, _FLOATS)]
        del a.floats[:]
        a.floats.extend(vals)
    elif t == AttributeProto.STRING:
        a.s = _pick(rng, [b"", b"\xff\xfe", b"nonsense", b"NOTSET", b"constant", b"reflect", a.s * 3])
    elif t == AttributeProto.STRINGS:
        a.strings.append(_pick(rng, [b"", b"\xff", b"x" * 50]))
    elif t == AttributeProto.TENSOR:
        _mutate_tensor(rng, a.t)
    elif t == AttributeProto.GRAPH:
        _mutate_subgraph(rng, a.g)
    else:
        return ""
    return f"attribute value: {n.op_type}.{a.name}"


def _mutate_subgraph(rng, g) -> None:
    op = rng.randrange(3)
    if op == 0 and g.output:
        g.output.pop()
    elif op == 1 and g.node:
        g.node.pop(rng.randrange(len(g.node)))
    elif g.input:
        g.input.pop()


def mutate_attr_type(rng, model, case) -> str:
    from onnx import AttributeProto, helper

    nodes = _nodes(model)
    if not nodes:
        return ""
    n = _pick(rng, nodes)
    op = rng.randrange(5)
    if op == 0 and n.attribute:  # change the type tag, keeping the payload fields
        a = _pick(rng, n.attribute)
        a.type = _pick(rng, [AttributeProto.INT, AttributeProto.FLOAT, AttributeProto.STRING, AttributeProto.INTS,
                             AttributeProto.FLOATS, AttributeProto.TENSOR, AttributeProto.GRAPH,
                             AttributeProto.UNDEFINED, AttributeProto.SPARSE_TENSOR, AttributeProto.TYPE_PROTO])
        return f"attribute type: {n.op_type}.{a.name} -> {a.type}"
    if op == 1 and n.attribute:  # drop one (required ones included)
        a = n.attribute.pop(rng.randrange(len(n.attribute)))
        return f"attribute dropped: {n.op_type}.{a.name}"
    if op == 2 and n.attribute:  # same name, another kind of value
        a = _pick(rng, n.attribute)
        value = _pick(rng, [1.5, 3, [1, 2], "text", [0.5], b"\x00"])
        new = helper.make_attribute(a.name, value)
        a.CopyFrom(new)
        return f"attribute replaced: {n.op_type}.{a.name} = {value!r}"
    if op == 3 and n.attribute:  # duplicate
        n.attribute.append(n.attribute[0])
        return f"attribute duplicated: {n.op_type}.{n.attribute[0].name}"
    n.attribute.append(helper.make_attribute(_pick(rng, ["axis", "perm", "mode", "bogus", "to", "value"]),
                                             _pick(rng, [0, -7, [3, 0], "x", 1.0])))
    return f"attribute added to {n.op_type}"


def _mutate_dims(rng, dims: list) -> list:
    op = rng.randrange(4)
    if op == 0 and dims:
        dims[rng.randrange(len(dims))] = _pick(rng, _DIMS)
    elif op == 1:
        dims.insert(rng.randrange(len(dims) + 1), _pick(rng, _DIMS))
    elif op == 2 and dims:
        dims.pop(rng.randrange(len(dims)))
    else:
        dims = [rng.choice([1, 2, 2**33]) for _ in range(rng.randrange(1, 4))]
    return dims


def _mutate_tensor(rng, t) -> str:
    from onnx import TensorProto

    op = rng.randrange(5)
    if op == 0:
        dims = _mutate_dims(rng, list(t.dims))
        del t.dims[:]
        t.dims.extend(dims)
        return f"dims -> {dims}"
    if op == 1:
        t.data_type = _pick(rng, [0, 1, 2, 6, 7, 8, 9, 10, 11, 16, 17, 21, 23, 99])
        return f"data_type -> {t.data_type}"
    if op == 2 and t.raw_data:
        t.raw_data = t.raw_data[: rng.randrange(len(t.raw_data))]
        return "raw_data truncated"
    if op == 3:
        t.raw_data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        return "raw_data replaced"
    t.data_location = TensorProto.EXTERNAL
    return "data_location -> EXTERNAL without entries"


def mutate_initializer(rng, model, case) -> str:
    inits = [t for g in _graphs(model.graph) for t in g.initializer]
    if not inits:
        return mutate_attr_value(rng, model, case)
    t = _pick(rng, inits)
    return f"initializer '{t.name}': {_mutate_tensor(rng, t)}"


def mutate_shape(rng, model, case) -> str:
    infos = [vi for g in _graphs(model.graph) for vi in list(g.input) + list(g.output) + list(g.value_info)]
    if not infos:
        return ""
    vi = _pick(rng, infos)
    tp = vi.type
    if not tp.HasField("tensor_type"):
        tp.ClearField("sequence_type")
        tp.tensor_type.elem_type = 1
        return f"type of '{vi.name}' -> tensor"
    tt = tp.tensor_type
    op = rng.randrange(4)
    if op == 0:
        tt.elem_type = _pick(rng, [0, 1, 2, 3, 6, 7, 9, 10, 11, 16, 17, 23, 99, 123456])
        return f"elem_type of '{vi.name}' -> {tt.elem_type}"
    if op == 1:
        tt.ClearField("shape")
        return f"shape of '{vi.name}' cleared"
    dims = tt.shape.dim
    if op == 2 and len(dims):
        d = dims[rng.randrange(len(dims))]
        if rng.random() < 0.5:
            d.dim_value = _pick(rng, _DIMS + [-1, -5])
        else:
            d.dim_param = _pick(rng, ["N", "M", "", "?", "unk__0", "x y"])
        return f"a dim of '{vi.name}' changed"
    tt.shape.SetInParent()
    new = dims.add()
    new.dim_value = _pick(rng, _DIMS)
    return f"a dim added to '{vi.name}'"


def mutate_edge(rng, model, case) -> str:
    graphs = [g for g in _graphs(model.graph) if g.node]
    if not graphs:
        return ""
    g = _pick(rng, graphs)
    names = _names(model) + ["", "ghost"]
    n = _pick(rng, g.node)
    op = rng.randrange(8)
    if op == 0 and n.input:
        i = rng.randrange(len(n.input))
        n.input[i] = _pick(rng, names)
        return f"edge: {n.op_type} input {i} -> '{n.input[i]}'"
    if op == 1 and len(n.input) > 1:
        n.input[0], n.input[-1] = n.input[-1], n.input[0]
        return f"edge: {n.op_type} inputs swapped"
    if op == 2:
        n.input.append(_pick(rng, names))
        return f"edge: {n.op_type} extra input"
    if op == 3 and n.input:
        n.input.pop()
        return f"edge: {n.op_type} input dropped"
    if op == 4 and n.output:
        n.output[0] = _pick(rng, names)
        return f"edge: {n.op_type} output renamed to '{n.output[0]}'"
    if op == 5:
        g.node.pop(rng.randrange(len(g.node)))
        return "edge: a node deleted"
    if op == 6:
        g.node.append(n)
        return f"edge: {n.op_type} node duplicated"
    nodes = list(g.node)
    rng.shuffle(nodes)
    del g.node[:]
    g.node.extend(nodes)
    return "edge: nodes reordered"


def mutate_op(rng, model, case) -> str:
    from graphc.ops import REGISTRY

    op = rng.randrange(4)
    nodes = _nodes(model)
    if op == 0 and nodes:
        n = _pick(rng, nodes)
        old = n.op_type
        n.op_type = _pick(rng, sorted(name for dom, name in REGISTRY if dom == ""))
        return f"op: {old} -> {n.op_type}"
    if op == 1 and nodes:
        n = _pick(rng, nodes)
        n.domain = _pick(rng, ["com.example", "ai.onnx.ml", "graphc", "ai.onnx"])
        return f"op: {n.op_type} domain -> {n.domain}"
    if op == 2 and model.opset_import:
        o = _pick(rng, model.opset_import)
        o.version = _pick(rng, [0, 1, 6, 7, 9, 11, 13, 99, -1])
        return f"opset {o.domain or 'ai.onnx'} -> {o.version}"
    model.ir_version = _pick(rng, [0, 1, 3, 99])
    return f"ir_version -> {model.ir_version}"


def mutate_feeds(rng, model, case) -> str:
    feeds = case.feeds
    arrays = [i for i, x in enumerate(feeds) if isinstance(x, np.ndarray)]
    op = rng.randrange(6)
    if op == 0 and feeds:
        feeds.pop(rng.randrange(len(feeds)))
        return "feeds: one dropped"
    if op == 1:
        feeds.append(np.zeros(3, np.float32))
        return "feeds: one too many"
    if not arrays:
        return ""
    i = _pick(rng, arrays)
    x = feeds[i]
    if op == 2:
        feeds[i] = x.astype(_pick(rng, [np.float64, np.int64, np.int32, np.bool_, np.float16, np.uint8]))
        return f"feeds: input {i} dtype -> {feeds[i].dtype}"
    if op == 3:
        dims = _mutate_dims(rng, list(x.shape))[:4]
        if rng.random() < 0.5 and int(np.prod(dims, dtype=object)) <= 1 << 20:
            feeds[i] = np.zeros(dims, dtype=x.dtype)
        else:
            feeds[i] = x.reshape(-1) if rng.random() < 0.5 else x[None]
        return f"feeds: input {i} shape -> {list(feeds[i].shape)}"
    if op == 4 and x.dtype.kind in "iu" and x.size:
        y = x.copy()
        info = np.iinfo(x.dtype)
        y.reshape(-1)[rng.randrange(x.size)] = _pick(rng, [info.max, info.min, 0, -1 if info.min < 0 else 1,
                                                           min(info.max, 2**40)])
        feeds[i] = y
        return f"feeds: input {i} an integer -> extreme"
    if x.dtype.kind == "f" and x.size:
        y = x.copy()
        y.reshape(-1)[rng.randrange(x.size)] = _pick(rng, [np.nan, np.inf, -np.inf, 1e30])
        feeds[i] = y
        return f"feeds: input {i} a float -> non-finite"
    feeds[i] = None
    return f"feeds: input {i} -> None"


def mutate_external(rng, model, case) -> str:
    """Move an initializer's data to an external file, with a hostile location or range."""
    from onnx import TensorProto

    inits = [t for t in model.graph.initializer if t.raw_data]
    if not inits:
        return mutate_initializer(rng, model, case)
    t = _pick(rng, inits)
    raw = t.raw_data
    case.files["w.bin"] = raw
    kind = rng.randrange(7)
    location, offset, length = "w.bin", 0, len(raw)
    if kind == 0:
        location = _pick(rng, ["../w.bin", "sub/../../w.bin", "..\\w.bin"])
        case.outside = raw
    elif kind == 1:
        location = "/etc/hostname" if os.path.exists("/etc/hostname") else "/w.bin"
    elif kind == 2:
        location = "link.bin"
        case.symlink = "link.bin"
        case.outside = raw
    elif kind == 3:
        offset = _pick(rng, [len(raw), len(raw) + 1, -1, 2**62])
    elif kind == 4:
        length = _pick(rng, [len(raw) + 1, -1, 2**62, 0])
    elif kind == 5:
        location = _pick(rng, ["", "missing.bin", ".", "w.bin\x00x"])
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", str(offset)), ("length", str(length))):
        e = t.external_data.add()
        e.key, e.value = k, v
    if kind == 6:
        e = t.external_data.add()
        e.key, e.value = "offset", "not a number"
    return f"external data of '{t.name}': location={location!r} offset={offset} length={length}"


#: Element type codes that are no ONNX type (the model must be refused, naming the value).
NON_TYPES = (96, 99, 4096, 123456)


def mutate_elem_type(rng, model, case) -> str:
    """An element type code that is no ONNX type, on a declared value, an initializer or a tensor attribute."""
    import onnx

    places = []
    for g in _graphs(model.graph):
        places += [("value", vi) for vi in list(g.input) + list(g.output) + list(g.value_info)
                   if vi.type.HasField("tensor_type")]
        places += [("initializer", t) for t in g.initializer]
        places += [("attribute", a.t) for n in g.node for a in n.attribute if a.type == onnx.AttributeProto.TENSOR]
    if not places:
        return ""
    kind, what = _pick(rng, places)
    code = _pick(rng, list(NON_TYPES))
    if kind == "value":
        what.type.tensor_type.elem_type = code
        return f"elem_type of '{what.name}' -> {code} (no such type)"
    what.data_type = code
    return f"data_type of {kind} tensor '{what.name}' -> {code} (no such type)"


#: name -> (weight, mutation). Bytes mutations happen after the others, on the serialized model.
MUTATIONS: dict[str, tuple[int, Callable]] = {
    "attr_value": (4, mutate_attr_value),
    "attr_type": (2, mutate_attr_type),
    "shape": (3, mutate_shape),
    "elem_type": (1, mutate_elem_type),
    "initializer": (2, mutate_initializer),
    "edge": (3, mutate_edge),
    "op": (2, mutate_op),
    "feeds": (3, mutate_feeds),
    "external": (1, mutate_external),
}
BYTES_WEIGHT = 2


def mutate_bytes(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    buf = bytearray(data)
    op = rng.randrange(4)
    if op == 0 and buf:
        for _ in range(rng.randrange(1, 8)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        return bytes(buf), "bytes: flipped"
    if op == 1:
        cut = rng.randrange(len(buf) + 1)
        return bytes(buf[:cut]), f"bytes: truncated to {cut}"
    if op == 2:
        at = rng.randrange(len(buf) + 1)
        return bytes(buf[:at] + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16))) + buf[at:]), \
            "bytes: inserted"
    if buf:
        at = rng.randrange(len(buf))
        return bytes(buf[:at] + buf[at + rng.randrange(1, 16):]), "bytes: deleted"
    return bytes(buf), "bytes: none"


# ---- one case -------------------------------------------------------------------------------------
@dataclass
class Case:
    seed: int
    index: int
    source: str
    model: bytes
    feeds: list
    mutations: list[str]
    files: dict[str, bytes] = field(default_factory=dict)
    outside: bytes | None = None  # data placed beside (outside) the model's folder
    symlink: str | None = None  # a link in the model's folder to that outside file


def make_case(corpus: list[Seed], seed: int, index: int) -> Case:
    """The case (seed, index): a corpus model and one to three mutations, all drawn from one RNG."""
    import onnx

    rng = random.Random(f"graphc-fuzz:{seed}:{index}")
    base = corpus[rng.randrange(len(corpus))]
    model = onnx.ModelProto()
    model.ParseFromString(base.model)
    case = Case(seed, index, base.name, b"", list(base.feeds), [])
    names = list(MUTATIONS) + ["bytes"]
    weights = [w for w, _ in MUTATIONS.values()] + [BYTES_WEIGHT]
    chosen = rng.choices(names, weights, k=rng.randrange(1, 4))
    for name in chosen:
        if name != "bytes":
            try:
                with np.errstate(all="ignore"):
                    desc = MUTATIONS[name][1](rng, model, case)
            except (ValueError, TypeError, OverflowError) as e:  # protobuf refused the value: keep going
                desc = f"{name}: not applied ({type(e).__name__})"
            if desc:
                case.mutations.append(desc)
    case.model = model.SerializeToString()
    if "bytes" in chosen:
        case.model, desc = mutate_bytes(rng, case.model)
        case.mutations.append(desc)
    return case


class CaseTimeout(BaseException):
    """Raised by the alarm in a case that ran past its time limit (a BaseException: no handler eats it)."""


def _on_alarm(signum, frame):
    raise CaseTimeout()


def write_case(case: Case, folder: str) -> str:
    """Lay out the case on disk (model, external files, feeds, a description); returns the model path."""
    mdir = os.path.join(folder, "model")
    os.makedirs(mdir, exist_ok=True)
    path = os.path.join(mdir, "model.onnx")
    with open(path, "wb") as f:
        f.write(case.model)
    for name, data in case.files.items():
        with open(os.path.join(mdir, name), "wb") as f:
            f.write(data)
    if case.outside is not None:
        with open(os.path.join(folder, "w.bin"), "wb") as f:
            f.write(case.outside)
    if case.symlink:
        link = os.path.join(mdir, case.symlink)
        if not os.path.lexists(link):
            os.symlink(os.path.join(folder, "w.bin"), link)
    saved = []
    for i, x in enumerate(case.feeds):
        if isinstance(x, np.ndarray) and x.dtype != object:
            np.save(os.path.join(folder, f"feed_{i}.npy"), x, allow_pickle=False)
            saved.append(i)
    with open(os.path.join(folder, "case.json"), "w") as f:
        json.dump({"seed": case.seed, "index": case.index, "source": case.source, "mutations": case.mutations,
                   "feeds_saved_as_npy": saved, "feed_count": len(case.feeds),
                   "replay": f"python -m graphc.tools.fuzz --replay {case.seed}:{case.index}"}, f, indent=1)
    return path


def run_case(case: Case, folder: str, timeout: float = 10.0) -> dict:
    """Run the three stages; returns {"outcome": ok|refused|failure|hang, "stage", "error", "traceback"}."""
    import graphc as gc
    from graphc.cli import main as cli_main

    path = write_case(case, folder)
    result = {"seed": case.seed, "index": case.index, "source": case.source, "mutations": case.mutations,
              "outcome": "ok", "stage": None, "error": None}
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    stage = "import"
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            graph = None
            try:
                graph = gc.import_onnx(path)
            except gc.GraphcError as e:
                _refused(result, stage, e)
            stage = "check"
            sink = io.StringIO()
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                cli_main(["check", path])  # GraphcError becomes exit status 1 or 2; anything else escapes
            stage = "run"
            if graph is not None:
                try:
                    gc.prepare(graph).run(list(case.feeds))
                except gc.GraphcError as e:
                    _refused(result, stage, e)
    except CaseTimeout:
        result.update(outcome="hang", stage=stage, error=f"ran past the time limit of {timeout:g} s")
    except Exception as e:  # noqa: BLE001 -- what the fuzzer is looking for
        result.update(outcome="failure", stage=stage, error=f"{type(e).__name__}: {e}"[:500],
                      traceback=traceback.format_exc()[-4000:])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    return result


def _refused(result: dict, stage: str, e: Exception) -> None:
    if result["outcome"] == "ok":
        result.update(outcome="refused", stage=stage, error=f"{type(e).__name__}: {str(e)[:300]}")


# ---- the worker pool ------------------------------------------------------------------------------
def worker_main(seed: int, timeout: float) -> int:
    """A worker: reads case indices (one a line) on stdin, answers one JSON line each on the original stdout.

    Everything the cases print goes to stderr's file, so it cannot corrupt the answers.
    """
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (WORKER_ADDRESS_SPACE, WORKER_ADDRESS_SPACE))
    except (ImportError, ValueError, OSError):
        pass
    import faulthandler

    faulthandler.enable()
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    corpus = load_corpus()
    work = tempfile.mkdtemp(prefix="graphc-fuzz-")
    print(json.dumps({"ready": len(corpus), "workdir": work}), file=proto)
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            index = int(line)
            folder = os.path.join(work, "case")
            shutil.rmtree(folder, ignore_errors=True)
            os.makedirs(folder)
            case = make_case(corpus, seed, index)
            result = run_case(case, folder, timeout)
            print(json.dumps(result), file=proto)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


class _Worker:
    def __init__(self, cmd: list[str], env: dict, startup_timeout: float):
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env=env, text=True, bufsize=1)
        self.index: int | None = None
        self.started = 0.0
        hello = self._readline(startup_timeout)
        if hello is None:
            self.kill()
            raise RuntimeError(f"fuzz worker did not start: {' '.join(cmd)}")
        info = json.loads(hello)
        self.workdir = info.get("workdir")

    def _readline(self, timeout: float) -> str | None:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.proc.stdout.readline()
        return line or None

    def send(self, index: int) -> None:
        self.index = index
        self.started = time.monotonic()
        self.proc.stdin.write(f"{index}\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def _worker_env() -> dict:
    env = dict(os.environ)
    env.setdefault("GRAPHC_MEMORY_LIMIT", WORKER_MEMORY_LIMIT)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def run_pool(indices, seed: int, jobs: int = 2, timeout: float = 10.0, out_dir: str | None = None,
             worker_cmd: list[str] | None = None, progress: Callable[[int, dict], None] | None = None) -> dict:
    """Run cases in ``jobs`` worker processes; returns the summary (counts and the failures).

    A worker that dies is a ``crash`` of the case it was running, one silent for 3 x ``timeout`` + 5 s a
    ``hang``; both are replaced by a fresh worker. Failures, hangs and crashes are saved under ``out_dir``.
    """
    cmd = worker_cmd or [sys.executable, "-m", "graphc.tools.fuzz", "--worker", "--seed", str(seed),
                         "--timeout", str(timeout)]
    env = _worker_env()
    pending = list(indices)
    total = len(pending)
    counts = {"ok": 0, "refused": 0, "failure": 0, "hang": 0, "crash": 0}
    by_stage: dict[str, int] = {}
    bad: list[dict] = []
    workers: list[_Worker] = []
    hard = 3 * timeout + 5

    def record(result: dict, w: _Worker | None) -> None:
        counts[result["outcome"]] += 1
        if result["outcome"] == "refused":
            key = f"{result['stage']}: {result['error'].split(':')[0]}"
            by_stage[key] = by_stage.get(key, 0) + 1
        if result["outcome"] in ("failure", "hang", "crash"):
            bad.append(result)
            if out_dir and w is not None and w.workdir:
                dest = os.path.join(out_dir, f"{result['outcome']}-{seed}-{result['index']}")
                shutil.rmtree(dest, ignore_errors=True)
                src = os.path.join(w.workdir, "case")
                if os.path.isdir(src):
                    shutil.copytree(src, dest, symlinks=True)
                os.makedirs(dest, exist_ok=True)
                with open(os.path.join(dest, "result.json"), "w") as f:
                    json.dump(result, f, indent=1)
            if result["outcome"] != "failure" and w is not None and w.workdir:  # a dead worker leaves its folder
                shutil.rmtree(w.workdir, ignore_errors=True)
        if progress:
            progress(sum(counts.values()), result)

    try:
        for _ in range(max(1, min(jobs, total))):
            workers.append(_Worker(cmd, env, startup_timeout=120))
        for w in workers:
            if pending:
                w.send(pending.pop(0))
        while any(w.index is not None for w in workers):
            busy = [w for w in workers if w.index is not None]
            ready, _, _ = select.select([w.proc.stdout for w in busy], [], [], 1.0)
            now = time.monotonic()
            for w in busy:
                line = None
                if w.proc.stdout in ready:
                    line = w.proc.stdout.readline()
                    if not line:  # the interpreter died mid-case
                        w.proc.wait()
                        record({"seed": seed, "index": w.index, "outcome": "crash", "stage": None,
                                "error": f"worker exited with status {w.proc.returncode} while running the case"}, w)
                        workers[workers.index(w)] = w = _Worker(cmd, env, startup_timeout=120)
                    else:
                        record(json.loads(line), w)
                elif now - w.started > hard:
                    w.kill()
                    record({"seed": seed, "index": w.index, "outcome": "hang", "stage": None,
                            "error": f"no answer in {hard:g} s (stuck outside Python); worker killed"}, w)
                    workers[workers.index(w)] = w = _Worker(cmd, env, startup_timeout=120)
                else:
                    continue
                w.index = None
                if pending:
                    w.send(pending.pop(0))
    finally:
        for w in workers:
            try:
                w.proc.stdin.close()
            except OSError:
                pass
            try:
                w.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                w.kill()
    return {"cases": total, "counts": counts, "refused_by_stage_and_error": dict(sorted(by_stage.items())),
            "failures": bad}


# ---- command line ---------------------------------------------------------------------------------
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m graphc.tools.fuzz", description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=1000, help="number of cases (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="the run's seed; case i is (seed, i)")
    p.add_argument("--start", type=int, default=0, help="first case index (default 0)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    p.add_argument("--timeout", type=float, default=10.0, help="time limit of one case in seconds")
    p.add_argument("--out", default="fuzz-failures", help="folder for failing cases (default fuzz-failures)")
    p.add_argument("--replay", metavar="SEED:INDEX", help="run one case in this process and print the result")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker_main(args.seed, args.timeout)
    if args.replay:
        seed, _, index = args.replay.partition(":")
        case = make_case(load_corpus(), int(seed), int(index))
        folder = tempfile.mkdtemp(prefix="graphc-replay-")
        result = run_case(case, folder, args.timeout)
        print(json.dumps({k: v for k, v in result.items() if k != "traceback"}, indent=1))
        if "traceback" in result:
            print(result["traceback"])
        print(f"case laid out in {folder}")
        return 0 if result["outcome"] in ("ok", "refused") else 1
    t0 = time.monotonic()
    step = max(1, args.cases // 20)

    def progress(done: int, result: dict) -> None:
        if result["outcome"] in ("failure", "hang", "crash"):
            print(f"  {result['outcome'].upper()} case {args.seed}:{result['index']} at {result.get('stage')}: "
                  f"{result['error']}", flush=True)
        if done % step == 0:
            print(f"  {done}/{args.cases} cases, {time.monotonic() - t0:.0f} s", flush=True)

    os.makedirs(args.out, exist_ok=True)
    summary = run_pool(range(args.start, args.start + args.cases), args.seed, args.jobs, args.timeout, args.out,
                       progress=progress)
    summary["command"] = " ".join(["python -m graphc.tools.fuzz"] + (argv if argv is not None else sys.argv[1:]))
    summary["seconds"] = round(time.monotonic() - t0, 1)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    c = summary["counts"]
    print(f"{summary['cases']} cases in {summary['seconds']} s: {c['ok']} ran clean, {c['refused']} refused with "
          f"GraphcError, {c['failure']} other exceptions, {c['hang']} hangs, {c['crash']} crashes")
    for key, n in sorted(summary["refused_by_stage_and_error"].items(), key=lambda kv: -kv[1])[:15]:
        print(f"  {n:6d}  refused at {key}")
    print(f"summary: {os.path.join(args.out, 'summary.json')}")
    bad = c["failure"] + c["hang"] + c["crash"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
