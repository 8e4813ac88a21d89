"""Signal processing: the Hann, Hamming and Blackman windows, DFT, STFT and mel filterbanks."""
from __future__ import annotations

import numpy as np

from ..errors import OpAttributeError, node_label
from ..ir import DType
from .common import check_rank, known_scalar, normalize_axis, tt
from .registry import Attr, InferContext, OpDef, register, set_facts, set_grads

FAMILY = "signal"


def _window(coeffs):
    """A generalised cosine window sum_k c_k cos(2 pi k n / N)."""

    def ev(node, size):
        n = int(np.asarray(size).reshape(-1)[0])
        N = n if node.attrs["periodic"] else n - 1
        k = np.arange(n, dtype=np.float64)
        w = np.zeros(n)
        for i, c in enumerate(coeffs):
            w += c * np.cos(2 * np.pi * i * k / N) if i else c
        return w.astype(DType(node.attrs["output_datatype"]).np)

    return ev


def _window_infer(ctx: InferContext) -> list:
    r = ctx.rank(0)
    if r not in (None, 0) and ctx.shape(0) != (1,):
        ctx.fail(f"input 'size' must be a scalar, got shape {list(ctx.shape(0))}")
    n = known_scalar(ctx, 0)
    return [tt(DType(ctx.attr("output_datatype")), (int(n) if n is not None else ctx.fresh(),))]


_HAMMING_A = 25.0 / 46.0
for _name, _coeffs in (("HannWindow", (0.5, -0.5)), ("HammingWindow", (_HAMMING_A, -(1 - _HAMMING_A))),
                       ("BlackmanWindow", (0.42, -0.5, 0.08))):
    register(OpDef(_name, eval=_window(_coeffs), infer=_window_infer, inputs=(1, 1), family=FAMILY,
                   attrs={"output_datatype": Attr("int", 1), "periodic": Attr("int", 1)}))


def _as_complex(x: np.ndarray) -> np.ndarray:
    """(..., 1) real or (..., 2) real/imaginary -> complex array without the last axis."""
    if x.shape[-1] == 1:
        return x[..., 0]  # np.fft keeps float32 precision (as the reference results do)
    if x.shape[-1] == 2:
        return x[..., 0] + 1j * x[..., 1]
    raise ValueError(f"the last dim must be 1 (real) or 2 (complex), got {x.shape[-1]}")


def _from_complex(z: np.ndarray, dtype) -> np.ndarray:
    return np.stack([z.real, z.imag], axis=-1).astype(dtype)


def _dft_eval(node, x, dft_length=None, axis=None):
    ax = -2 if axis is None else int(np.asarray(axis).reshape(-1)[0])
    ax = ax + x.ndim if ax < 0 else ax
    if not 0 <= ax < x.ndim - 1:
        raise ValueError(f"axis {ax} must name a signal dim, not the last (real/imaginary) dim")
    inverse, onesided = node.attrs["inverse"], node.attrs["onesided"]
    n = None if dft_length is None else int(np.asarray(dft_length).reshape(-1)[0])
    z = _as_complex(x)
    if inverse:
        if onesided:  # one-sided spectrum -> full real signal
            n = n or 2 * (x.shape[ax] - 1)
            return np.fft.irfft(z, n=n, axis=ax)[..., None].astype(x.dtype)
        return _from_complex(np.fft.ifft(z, n=n or x.shape[ax], axis=ax), x.dtype)
    y = np.fft.fft(z, n=n or x.shape[ax], axis=ax)
    if onesided:
        y = np.take(y, np.arange(y.shape[ax] // 2 + 1), axis=ax)
    return _from_complex(y, x.dtype)


def _dft_infer(ctx: InferContext) -> list:
    s = ctx.shape(0)
    if s is None:
        return [tt(ctx.dtype(0), None)]
    if len(s) < 2:
        ctx.fail(f"input must have rank >= 2 (signal dims and a last dim of 1 or 2), got {list(s)}")
    if isinstance(s[-1], int) and s[-1] not in (1, 2):
        ctx.fail(f"the last dim of the input must be 1 (real) or 2 (complex), got {s[-1]}")
    ax = known_scalar(ctx, 2) if ctx.has_input(2) else -2
    if ax is None:
        return [tt(ctx.dtype(0), tuple(ctx.fresh() for _ in s))]
    ax = normalize_axis(ctx, int(ax), len(s))
    if ax == len(s) - 1:
        ctx.fail("axis must name a signal dim, not the last (real/imaginary) dim")
    n = None
    if ctx.has_input(1):
        n = known_scalar(ctx, 1)
        n = ctx.fresh() if n is None else int(n)
    inverse, onesided = ctx.attr("inverse"), ctx.attr("onesided")
    out = list(s)
    out[-1] = 2
    if inverse and onesided:
        out[-1] = 1
        out[ax] = n if n is not None else (2 * (s[ax] - 1) if isinstance(s[ax], int) else ctx.fresh())
    else:
        length = n if n is not None else s[ax]
        out[ax] = length if not onesided else (length // 2 + 1 if isinstance(length, int) else ctx.fresh())
    return [tt(ctx.dtype(0), out)]


def _dft_upgrade(node, graph) -> None:
    """DFT-17 took ``axis`` as an attribute (default 1); DFT-20 takes it as input 2 (default -2)."""
    axis = node.attrs.pop("axis", 1)
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise OpAttributeError(f"{node_label(node)}: attribute 'axis' must be of type int, got {axis!r:.60}")
    c = graph.add_constant(np.asarray(axis, dtype=np.int64), f"{node.name}_axis")
    while len(node.inputs) < 2:
        node.inputs.append(None)
    node.inputs[2:] = [c]


register(OpDef("DFT", eval=_dft_eval, infer=_dft_infer, inputs=(1, 3), family=FAMILY, upgrades={20: _dft_upgrade},
               attrs={"inverse": Attr("int", 0), "onesided": Attr("int", 0)}))


def _stft_eval(node, x, step, window=None, frame_length=None):
    step = int(np.asarray(step).reshape(-1)[0])
    if frame_length is not None:
        fl = int(np.asarray(frame_length).reshape(-1)[0])
    elif window is not None:
        fl = window.shape[0]
    else:
        raise ValueError("STFT needs a window or a frame_length")
    frames = 1 + (x.shape[1] - fl) // step
    idx = step * np.arange(frames)[:, None] + np.arange(fl)[None, :]
    z = _as_complex(x)[:, idx]  # (batch, frames, frame_length)
    if window is not None:
        z = z * window.astype(x.dtype)
    y = np.fft.fft(z, axis=-1)
    if node.attrs["onesided"]:
        y = y[..., : fl // 2 + 1]
    return _from_complex(y, x.dtype)


def _stft_infer(ctx: InferContext) -> list:
    check_rank(ctx, 0, (3,), "signal")
    s = ctx.shape(0)
    fl = known_scalar(ctx, 3) if ctx.has_input(3) else None
    if fl is None and ctx.shape(2) is not None:
        fl = ctx.shape(2)[0]
    step = known_scalar(ctx, 1)
    if s is None:
        return [tt(ctx.dtype(0), None)]
    frames = (1 + (s[1] - fl) // step if isinstance(fl, int) and isinstance(step, int) and isinstance(s[1], int)
              else ctx.fresh())
    bins = (fl // 2 + 1 if ctx.attr("onesided") else fl) if isinstance(fl, int) else ctx.fresh()
    return [tt(ctx.dtype(0), (s[0], frames, bins, 2))]


register(OpDef("STFT", eval=_stft_eval, infer=_stft_infer, inputs=(2, 4), family=FAMILY,
               attrs={"onesided": Attr("int", 1)}))


def _mel_eval(node, num_mel_bins, dft_length, sample_rate, lower, upper):
    bins_m, n, rate = (int(np.asarray(v).reshape(-1)[0]) for v in (num_mel_bins, dft_length, sample_rate))
    lo, hi = (float(np.asarray(v).reshape(-1)[0]) for v in (lower, upper))
    spec_bins = n // 2 + 1
    lo_mel, hi_mel = 2595 * np.log10(1 + lo / 700), 2595 * np.log10(1 + hi / 700)
    # bins_m + 2 edge points, spaced evenly on the mel scale, mapped to DFT bins
    mel = np.arange(bins_m + 2) * ((hi_mel - lo_mel) / (bins_m + 2)) + lo_mel
    hz = 700 * (10 ** (mel / 2595) - 1)
    edges = (((n + 1) * hz) // rate).astype(np.int64)
    left, center, right = edges[:-2], edges[1:-1], edges[2:]
    j = np.arange(spec_bins)[:, None]
    up = (j - left) / np.maximum(center - left, 1)
    down = (right - j) / np.maximum(right - center, 1)
    w = np.where((j >= left) & (j <= center), np.where(center == left, (j == center) * 1.0, up), 0.0)
    w = np.where((j >= center) & (j < right), down, w)
    return w.astype(DType(node.attrs["output_datatype"]).np)


def _mel_infer(ctx: InferContext) -> list:
    m, n = known_scalar(ctx, 0), known_scalar(ctx, 1)
    shape = (int(n) // 2 + 1 if n is not None else ctx.fresh(), int(m) if m is not None else ctx.fresh())
    return [tt(DType(ctx.attr("output_datatype")), shape)]


register(OpDef("MelWeightMatrix", eval=_mel_eval, infer=_mel_infer, inputs=(5, 5), family=FAMILY,
               attrs={"output_datatype": Attr("int", 1)}))


set_grads({}, {name: "its output depends only on an integer size" for name in ("HannWindow", "HammingWindow",
                                                                               "BlackmanWindow", "MelWeightMatrix")})
set_facts(value_sized=("DFT", "STFT", "MelWeightMatrix", "HannWindow", "HammingWindow", "BlackmanWindow"))
