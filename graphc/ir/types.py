"""Value types: tensors (an element type and a shape of ints or named symbols), sequences, optionals, maps."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from .dtypes import DType

#: A dimension: a fixed size, or a symbol such as ``"N"`` standing for a size known only at run time.
Dim = Union[int, str]


def is_symbol(d: Dim) -> bool:
    return isinstance(d, str)


def format_dim(d: Dim) -> str:
    return str(d)


@dataclass(frozen=True)
class TensorType:
    """A tensor's element type and shape. ``shape`` is None when even the rank is unknown."""

    dtype: DType | None
    shape: tuple[Dim, ...] | None = None

    def __post_init__(self):
        if self.shape is not None and not isinstance(self.shape, tuple):
            object.__setattr__(self, "shape", tuple(self.shape))

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    @property
    def is_static(self) -> bool:
        """True when every dim is a known integer."""
        return self.shape is not None and all(isinstance(d, int) for d in self.shape)

    @property
    def numel(self) -> int | None:
        if not self.is_static:
            return None
        n = 1
        for d in self.shape:
            n *= d
        return n

    def with_shape(self, shape) -> "TensorType":
        return TensorType(self.dtype, None if shape is None else tuple(shape))

    def with_dtype(self, dtype: DType) -> "TensorType":
        return TensorType(dtype, self.shape)

    def __str__(self) -> str:
        dt = self.dtype.name if self.dtype is not None else "?"
        if self.shape is None:
            return f"{dt}[...]"
        return f"{dt}[{','.join(format_dim(d) for d in self.shape)}]"


@dataclass(frozen=True)
class MapType:
    """An ONNX map from keys of element type ``key`` (an integer type or string) to values of type ``value``.

    At run time a map is a Python dict (what onnxruntime gives and takes): ``ZipMap`` makes a sequence of
    them, one per row of class probabilities.
    """

    key: DType
    value: object | None

    def __str__(self) -> str:
        return f"map({self.key.name}, {self.value if self.value is not None else '?'})"


@dataclass(frozen=True)
class SequenceType:
    """An ONNX sequence of tensors (or of maps), all of element type ``elem``."""

    elem: TensorType | MapType | None

    def __str__(self) -> str:
        return f"seq({self.elem if self.elem is not None else '?'})"


@dataclass(frozen=True)
class OptionalType:
    """An ONNX optional: a value of type ``elem`` or nothing."""

    elem: object | None

    def __str__(self) -> str:
        return f"optional({self.elem if self.elem is not None else '?'})"
