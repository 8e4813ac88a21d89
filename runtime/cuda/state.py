"""A session's variables held in device memory between runs: one buffer per variable, host copies on demand.

``DeviceState`` is the mapping a ``Session`` on the CUDA backend keeps as ``sess.state``: name -> array.
Each variable gets one device buffer, allocated and uploaded the first time a plan reads it and never
moved afterwards, so that the launches a plan resolves once keep pointing at it. A run reads the
variables there (no host-to-device copy) and copies the values ``Assign`` computed into them on the
device; the host copy of a variable a run wrote is dropped and made again (device to host) only when
someone reads it: ``sess.variable``, ``sess.save``, ``sess.state[name]``. Writing ``sess.state[name]``
(``set_variable``, ``restore``) uploads the new value at once.
"""
from __future__ import annotations

import os
from collections.abc import MutableMapping
from typing import Any, Iterator

import numpy as np

from graphc.errors import GraphcError


EMULATE_ENV = "GRAPHC_CUDA_EMULATE"


_DEVICES: dict[str, object] = {}  # GRAPHC_CUDA_EMULATE's value -> the device made for it (one per process)


def default_device():
    """The PyCUDA device, or the CPU emulator when GRAPHC_CUDA_EMULATE=1 (testing, debugging; ``h100``: the
    emulator with an H100's launch geometry). One device per process and kind, shared by every executable and
    session that is given none (its kernels loaded once, one cuBLAS handle)."""
    kind = os.environ.get(EMULATE_ENV, "")
    kind = "" if kind in ("", "0") else kind
    if kind not in _DEVICES:
        if kind:
            from .emulator import EMULATOR_PROPS, H100_PROPS, EmulatedDevice

            _DEVICES[kind] = EmulatedDevice(props=H100_PROPS if kind.lower() == "h100" else EMULATOR_PROPS)
        else:
            from .device import PyCudaDevice

            _DEVICES[kind] = PyCudaDevice()
    return _DEVICES[kind]


class DeviceState(MutableMapping):
    """Variables by name: a device buffer each (once used by a plan) and a host copy while it is current."""

    def __init__(self, values: dict[str, np.ndarray], device_factory=None):
        self._host: dict[str, np.ndarray | None] = {k: np.asarray(v) for k, v in values.items()}
        self._meta = {k: (v.dtype, v.shape) for k, v in self._host.items()}
        self._ptr: dict[str, int] = {}
        self._device = None
        self._device_factory = device_factory

    @property
    def device(self):
        """The device the buffers (and every plan of the session) live on, opened on first use."""
        if self._device is None:
            if self._device_factory is None:
                self._device_factory = default_device
            self._device = self._device_factory()
        return self._device

    def pointer(self, name: str) -> int:
        """The device address of variable ``name`` (allocated and uploaded on first use; never moves)."""
        if name not in self._ptr:
            if name not in self._host:
                raise GraphcError(f"'{name}' is not a variable of this session")
            x = np.ascontiguousarray(self._host[name])
            ptr = self.device.alloc(x.nbytes)
            self.device.htod(ptr, x)
            self._ptr[name] = ptr
        return self._ptr[name]

    def meta(self, name: str) -> tuple[np.dtype, tuple]:
        """(dtype, shape) of variable ``name``, known without reading its value."""
        dtype, shape = self._meta[name]
        return np.dtype(dtype), tuple(shape)

    def nbytes(self, name: str) -> int:
        dtype, shape = self._meta[name]
        return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize

    def written(self, name: str) -> None:
        """A run wrote a new value into the device buffer: the host copy is stale."""
        self._host[name] = None

    def on_device(self, name: str) -> bool:
        return name in self._ptr

    # ---- the mapping ----------------------------------------------------------------------------
    def __getitem__(self, name: str) -> np.ndarray:
        x = self._host[name]  # KeyError for an unknown name, as a dict
        if x is None:
            dtype, shape = self._meta[name]
            x = np.empty(shape, dtype=dtype)
            self.device.dtoh(x, self._ptr[name])
            self._host[name] = x
        return x

    def __setitem__(self, name: str, value: Any) -> None:
        value = np.asarray(value)
        if name in self._ptr:
            dtype, shape = self._meta[name]
            if value.dtype != dtype or value.shape != shape:
                raise GraphcError(f"variable '{name}' lives on the device as {np.dtype(dtype).name}{list(shape)}; "
                                  f"a value of {value.dtype.name}{list(value.shape)} cannot replace it")
            self.device.htod(self._ptr[name], np.ascontiguousarray(value))
        else:
            self._meta[name] = (value.dtype, value.shape)
        self._host[name] = value

    def __delitem__(self, name: str) -> None:
        raise GraphcError(f"variable '{name}' cannot be removed from a session's state")

    def __contains__(self, name) -> bool:  # Mapping's would read the value (a download)
        return name in self._host

    def __iter__(self) -> Iterator[str]:
        return iter(self._host)

    def __len__(self) -> int:
        return len(self._host)

    def __repr__(self) -> str:
        on = sum(1 for k in self._host if k in self._ptr)
        return f"<DeviceState: {len(self)} variables, {on} on the device>"


__all__ = ["DeviceState", "EMULATE_ENV", "default_device"]
