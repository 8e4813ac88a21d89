"""Memory budget checks: refuse a tensor whose size exceeds the budget before anything allocates it.

The budget is, first found: an explicit ``memory_limit`` argument (bytes, or a string such as ``"2GB"``
or ``"25%"`` of physical memory), the environment variable ``GRAPHC_MEMORY_LIMIT`` (same syntax), else
``DEFAULT_FRACTION`` of physical memory. ``0`` or ``"none"`` turns the checks off.

The checks run where sizes become known: the importer checks each initializer's declared dims before
decoding it (a 20-byte tensor may claim 10^18 elements); shape inference checks each inferred output
before evaluating it ahead of time; the NumPy runtime checks, once the feeds bind the symbolic dims,
every tensor whose size they determine, and before each node whose output shape depends on input
values (ConstantOfShape, Expand, Tile, Range, Resize...), the shape its inference gives for those values
(``graphc.ops.interpret.check_before_eval``: that check runs an op's inference, so it sits in the op layer,
above this module).
"""
from __future__ import annotations

import os
import re
from typing import Mapping

from .errors import ResourceLimitError
from .ir import DType, TensorType

#: Share of physical memory one tensor may take when nothing else is configured.
DEFAULT_FRACTION = 0.5

#: The environment variable that sets the budget.
ENV_VAR = "GRAPHC_MEMORY_LIMIT"

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
          "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tb": 1 << 40,
          "tib": 1 << 40}


def physical_memory() -> int:
    """Bytes of physical memory of this machine (a conservative 4 GiB when the OS does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return 4 << 30


def parse_size(text: str | int | float, what: str = ENV_VAR) -> int:
    """Bytes from ``1073741824``, ``"512MB"``, ``"1.5GiB"``, ``"25%"`` (of physical memory); 0 for ``"none"``."""
    if isinstance(text, bool):
        raise ResourceLimitError(f"{what}: expected a size in bytes, got {text!r}")
    if isinstance(text, (int, float)):
        if text < 0:
            raise ResourceLimitError(f"{what}: a memory limit must be >= 0, got {text}")
        return int(text)
    s = str(text).strip().lower()
    if s in ("none", "off", "unlimited"):
        return 0
    m = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*(%|[a-z]*)", s)
    if not m or (m.group(2) not in _UNITS and m.group(2) != "%"):
        raise ResourceLimitError(f"{what}: cannot read '{text}' as a memory size; expected bytes or a number "
                                 f"with a unit (e.g. 2GB, 512MiB) or a percentage of physical memory (e.g. 25%)")
    n = float(m.group(1))
    if m.group(2) == "%":
        return int(physical_memory() * n / 100)
    return int(n * _UNITS[m.group(2)])


def memory_limit(override: str | int | float | None = None) -> int:
    """The budget in bytes for one tensor (0: no limit): ``override``, else the environment, else the default."""
    if override is not None:
        return parse_size(override, "memory_limit")
    env = os.environ.get(ENV_VAR)
    if env is not None and env.strip():
        return parse_size(env)
    return int(physical_memory() * DEFAULT_FRACTION)


def _fmt_bytes(n: int) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"


def _itemsize(dtype: DType | None) -> int:
    if dtype is None:
        return 1
    if dtype is DType.string:
        return 8  # one object pointer per element, at the least
    try:
        return max(1, DType(dtype).itemsize)
    except (KeyError, TypeError, ValueError):
        return 1


def nbytes(dtype: DType | None, dims) -> int | None:
    """Bytes of a tensor of these dims (ints; None when one is not an int). Negative dims count as 0."""
    n = _itemsize(dtype)
    for d in dims:
        if not isinstance(d, int):
            return None
        n *= max(d, 0)
    return n


def check_size(what: str, dtype: DType | None, dims, limit: int) -> None:
    """Raise ResourceLimitError naming ``what`` when a tensor of ``dims`` would exceed ``limit`` bytes."""
    if limit <= 0:
        return
    size = nbytes(dtype, dims)
    if size is not None and size > limit:
        dt = dtype.name if isinstance(dtype, DType) else "?"
        raise ResourceLimitError(
            f"{what} would take {_fmt_bytes(size)} ({dt}[{','.join(map(str, dims))}]), more than the memory "
            f"limit of {_fmt_bytes(limit)}; refused before allocating it (raise the limit with the environment "
            f"variable {ENV_VAR} or the memory_limit argument if the model really needs this)")


def check_type(what: str, t, limit: int, bindings: Mapping[str, int] | None = None) -> None:
    """``check_size`` for a TensorType, with its symbolic dims replaced from ``bindings`` where bound."""
    if limit <= 0 or not isinstance(t, TensorType) or t.shape is None:
        return
    dims = [bindings.get(d, d) if bindings and isinstance(d, str) else d for d in t.shape]
    check_size(what, t.dtype, dims, limit)


def check_graph(graph, limit: int, where: str = "") -> None:
    """Check every value with a static (or bound) type in ``graph`` and its subgraphs against ``limit``."""
    if limit <= 0:
        return
    from .errors import node_label

    head = f"{where}: " if where else ""
    for v in list(graph.inputs) + list(graph.constants.values()):
        check_type(f"{head}tensor '{v.name}' of graph '{graph.name}'", v.type, limit)
    for node in graph.nodes:
        for v in node.outputs:
            if v is not None:
                check_type(f"{head}{node_label(node)}: output '{v.name}'", v.type, limit)
        for sub in node.subgraphs():
            check_graph(sub, limit, where)


def input_bindings(graph, feeds: Mapping) -> dict[str, int]:
    """The sizes the fed arrays give the symbolic dims of ``graph``'s inputs (``feeds`` keyed by Value)."""
    out: dict[str, int] = {}
    for v in graph.inputs:
        x = feeds.get(v)
        if isinstance(v.type, TensorType) and v.type.shape is not None and hasattr(x, "shape"):
            for d, n in zip(v.type.shape, x.shape):
                if isinstance(d, str):
                    out.setdefault(d, int(n))
    return out


__all__ = ["DEFAULT_FRACTION", "ENV_VAR", "check_graph", "check_size", "check_type",
           "input_bindings", "memory_limit", "nbytes", "parse_size", "physical_memory"]
