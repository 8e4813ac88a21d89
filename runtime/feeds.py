"""Checks the values fed to a run against the graph's inputs, before anything runs.

All unknown and missing names are reported at once; a dtype or shape mismatch names the input,
the declared type and what came. Symbolic dims are bound by the first input that fixes them.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from graphc.errors import FeedError
from graphc.ir import DType, Graph, TensorType, Value
from graphc.ir.types import MapType, OptionalType, SequenceType


def _describe(x: Any) -> str:
    if isinstance(x, np.ndarray):
        try:
            return f"{DType.from_np(x.dtype).name}[{','.join(map(str, x.shape))}]"
        except TypeError:
            return f"array of dtype {x.dtype}"
    return type(x).__name__


def normalize_feeds(graph: Graph, feeds: Mapping[str, Any] | Sequence[Any]) -> dict[Value, Any]:
    """Map feeds (by name, or positional in input order) to the graph's input Values, checking each."""
    if not isinstance(feeds, Mapping):
        feeds = list(feeds)
        if len(feeds) > len(graph.inputs):
            raise FeedError(f"{len(feeds)} inputs were given but the graph takes {len(graph.inputs)} "
                            f"({', '.join(v.name for v in graph.inputs)})")
        feeds = {v.name: x for v, x in zip(graph.inputs, feeds)}
    by_name = {v.name: v for v in graph.inputs}
    unknown = [k for k in feeds if k not in by_name]
    missing = [v.name for v in graph.inputs if v.name not in feeds and not isinstance(v.type, OptionalType)]
    if unknown or missing:
        parts = []
        if unknown:
            parts.append("unknown input name(s): " + ", ".join(repr(k) for k in unknown))
        if missing:
            parts.append("missing input(s): " + ", ".join(
                f"'{n}' ({by_name[n].type if by_name[n].type is not None else 'any type'})" for n in missing))
        parts.append("the graph's inputs are: " + ", ".join(f"'{v.name}': {v.type}" for v in graph.inputs))
        raise FeedError("; ".join(parts))
    bound: dict[str, tuple[int, str]] = {}
    out: dict[Value, Any] = {}
    for v in graph.inputs:
        if v.name not in feeds:
            out[v] = None
            continue
        out[v] = check_value(v, feeds[v.name], bound)
    return out


def check_value(v: Value, x: Any, bound: dict[str, tuple[int, str]]) -> Any:
    t = v.type
    if isinstance(t, OptionalType):
        return None if x is None else check_value(Value(v.name, t.elem), x, bound)
    if isinstance(t, SequenceType):
        if not isinstance(x, (list, tuple)):
            raise FeedError(f"input '{v.name}': expected a sequence ({t}), got {_describe(x)}")
        # The tensors of a sequence may differ in size: a symbol binds within one element, not across them.
        return [check_value(Value(f"{v.name}[{i}]", t.elem), e, dict(bound)) for i, e in enumerate(x)]
    if isinstance(t, MapType):
        return check_map(v.name, t, x)
    if not isinstance(t, TensorType):
        return x
    if not isinstance(x, np.ndarray):
        if isinstance(x, (np.generic, int, float, bool, list, tuple)) and t.dtype is not None:
            try:
                x = np.asarray(x, dtype=t.dtype.np)
            except (TypeError, ValueError) as e:
                raise FeedError(f"input '{v.name}': expected {t}, got a {type(x).__name__} "
                                f"that does not convert: {e}") from None
        else:
            raise FeedError(f"input '{v.name}': expected an array of type {t}, got {_describe(x)}")
    if t.dtype is not None:
        want = t.dtype.np
        ok = (x.dtype == want) or (t.dtype is DType.string and x.dtype.kind in "OUS")
        if not ok:
            raise FeedError(f"input '{v.name}': expected element type {t.dtype.name} ({t}), "
                            f"got {_describe(x)}")
        if t.dtype is DType.string and x.dtype != object:
            x = x.astype(object)
    if t.shape is not None:
        if x.ndim != len(t.shape):
            raise FeedError(f"input '{v.name}': expected rank {len(t.shape)} ({t}), got rank {x.ndim} "
                            f"({_describe(x)})")
        for i, (d, n) in enumerate(zip(t.shape, x.shape)):
            if isinstance(d, int):
                if d != n:
                    raise FeedError(f"input '{v.name}': dim {i} must be {d} ({t}), got {n} ({_describe(x)})")
            elif isinstance(d, str) and not d.startswith("unk__"):
                if d in bound and bound[d][0] != n:
                    size, by = bound[d]
                    raise FeedError(f"input '{v.name}': dim {i} is the symbol {d}, which input '{by}' "
                                    f"set to {size}, but got {n} ({_describe(x)})")
                bound.setdefault(d, (n, v.name))
    return x


def _map_entry(what: str, want: DType, x: Any, declared: MapType, name: str):
    """One key or value of a map as the plain Python scalar the map ops expect (str, int, float or bool)."""
    if isinstance(x, np.ndarray) and x.ndim == 0:
        x = x[()]
    if want is DType.string:
        if isinstance(x, bytes):
            return x.decode("utf-8")
        if isinstance(x, (str, np.str_)):
            return str(x)
    elif want is DType.bool:
        if isinstance(x, (bool, np.bool_)):
            return bool(x)
    elif want.is_int:
        if isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_)):
            return int(x)
    elif isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_)):
        return float(x)
    raise FeedError(f"input '{name}': expected a dict ({declared}) whose {what}s are {want.name}, "
                    f"got the {what} {x!r} ({type(x).__name__})")


def check_map(name: str, t: MapType, x: Any) -> dict:
    """A fed map: a dict whose keys and values match ``t``, with numpy scalars made plain Python ones."""
    if not isinstance(x, Mapping):
        raise FeedError(f"input '{name}': expected a dict ({t}), got {_describe(x)}")
    value_dtype = t.value.dtype if isinstance(t.value, TensorType) else None
    if value_dtype is None and t.value is not None:
        raise FeedError(f"input '{name}': maps whose values are {t.value} cannot be fed (only scalar values)")
    out = {}
    for k, val in x.items():
        k = _map_entry("key", t.key, k, t, name)
        out[k] = val if value_dtype is None else _map_entry("value", value_dtype, val, t, name)
    return out
