"""Image operators: ImageDecoder (encoded JPEG/PNG/BMP/TIFF/WebP/PNM/JPEG 2000 bytes -> an HWC uint8 tensor).

Decoding uses Pillow (the optional ``images`` extra), the library onnx's reference evaluator decodes
with, so pixels agree exactly, lossy formats included. Pillow reads the header first: the decoded size
is checked against graphc's memory budget (graphc/limits.py) before any pixel is decoded.
"""
from __future__ import annotations

import io

import numpy as np

from ..errors import ExecutionError, GraphcError, node_label
from ..ir import DType
from ..limits import check_size, memory_limit
from .common import tt
from .registry import Attr, InferContext, Kind, OpDef, register, set_facts

FAMILY = "image"

#: pixel_format -> channels of the output.
_CHANNELS = {"RGB": 3, "BGR": 3, "Grayscale": 1}


def _pillow():
    try:
        import PIL.Image
    except ImportError:
        return None
    return PIL.Image


def _decode_eval(node, encoded):
    image_mod = _pillow()
    if image_mod is None:
        raise GraphcError(f"{node_label(node)}: decoding images needs Pillow, which is not installed "
                          f"(pip install 'graphc[images]')")
    fmt = node.attrs["pixel_format"]
    if encoded.dtype != np.uint8 or encoded.ndim != 1:
        raise ExecutionError(f"{node_label(node)}: encoded_stream must be a 1-D uint8 tensor, "
                             f"got {encoded.dtype}{list(encoded.shape)}")
    try:
        img = image_mod.open(io.BytesIO(encoded.tobytes()))  # reads the header only
        width, height = img.size
        check_size(f"{node_label(node)}: the decoded image", DType.uint8, [height, width, _CHANNELS[fmt]],
                   memory_limit())
        if fmt == "Grayscale":
            return np.asarray(img.convert("L"))[:, :, None].copy()
        rgb = np.asarray(img if img.mode == "RGB" else img.convert("RGB"))
        return np.ascontiguousarray(rgb[:, :, ::-1]) if fmt == "BGR" else rgb.copy()
    except GraphcError:
        raise
    except Exception as e:  # Pillow's UnidentifiedImageError, truncated-file OSError, DecompressionBombError...
        raise ExecutionError(f"{node_label(node)}: cannot decode the {encoded.size}-byte encoded_stream as an "
                             f"image: {type(e).__name__}: {e}") from None


def _decode_infer(ctx: InferContext) -> list:
    fmt = ctx.attr("pixel_format")
    if fmt not in _CHANNELS:
        ctx.fail(f"attribute 'pixel_format' must be one of {', '.join(_CHANNELS)}, got '{fmt}'")
    if ctx.dtype(0) is not None and ctx.dtype(0) != DType.uint8:
        ctx.fail(f"input 'encoded_stream' must be uint8, got {ctx.dtype(0)}")
    if ctx.rank(0) is not None and ctx.rank(0) != 1:
        ctx.fail(f"input 'encoded_stream' must be 1-D, got rank {ctx.rank(0)}")
    return [tt(DType.uint8, [ctx.fresh(), ctx.fresh(), _CHANNELS[fmt]])]


register(OpDef("ImageDecoder", eval=_decode_eval, infer=_decode_infer, inputs=(1, 1), family=FAMILY,
               kind=Kind.OPAQUE, attrs={"pixel_format": Attr("string", "RGB")},
               doc="Decode an encoded image (JPEG, PNG, BMP, TIFF, WebP, PNM, JPEG 2000) to [H, W, C] uint8."))
set_facts(value_sized=("ImageDecoder",))
