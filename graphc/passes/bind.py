"""Binds symbolic dims to sizes (``--set N=4``) and fixes input shapes (``--input-shape x=1,3,224,224``)."""
from __future__ import annotations

from typing import Mapping, Sequence

from ..errors import GraphcError
from ..ir import Graph, TensorType


def bind_symbols(graph: Graph, sizes: Mapping[str, int]) -> None:
    """Replace symbol dims by sizes in the graph's input types (re-run inference afterwards)."""
    symbols = input_symbols(graph)
    unknown = [s for s in sizes if s not in symbols]
    if unknown:
        have = ", ".join(sorted(symbols)) or "none"
        raise GraphcError(f"cannot set {', '.join(unknown)}: the model's inputs have no such symbolic dim "
                          f"(symbols in the inputs: {have})")
    for v in graph.inputs:
        if isinstance(v.type, TensorType) and v.type.shape is not None:
            v.type = v.type.with_shape(sizes.get(d, d) if isinstance(d, str) else d for d in v.type.shape)


def set_input_shapes(graph: Graph, shapes: Mapping[str, Sequence[int]]) -> None:
    """Give named inputs a fixed shape; the rank and any fixed dims must agree with the model's."""
    by_name = {v.name: v for v in graph.inputs}
    for name, shape in shapes.items():
        if name not in by_name:
            raise GraphcError(f"--input-shape names '{name}', which is not an input of the model "
                              f"(inputs: {', '.join(by_name)})")
        v = by_name[name]
        t = v.type if isinstance(v.type, TensorType) else TensorType(None, None)
        if t.shape is not None:
            if len(t.shape) != len(shape):
                raise GraphcError(f"input '{name}' has rank {len(t.shape)} ({t}); the shape given has rank "
                                  f"{len(shape)}: {list(shape)}")
            for i, (d, n) in enumerate(zip(t.shape, shape)):
                if isinstance(d, int) and d != n:
                    raise GraphcError(f"input '{name}' has dim {i} fixed to {d} ({t}); the shape given says {n}")
        v.type = TensorType(t.dtype, tuple(int(n) for n in shape))


def input_symbols(graph: Graph) -> set[str]:
    out = set()
    for v in graph.inputs:
        if isinstance(v.type, TensorType) and v.type.shape is not None:
            out.update(d for d in v.type.shape if isinstance(d, str))
    return out
