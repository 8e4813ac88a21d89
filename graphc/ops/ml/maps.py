"""The ``ai.onnx.ml`` operators on maps (ZipMap, CastMap, DictVectorizer) and CategoryMapper.

A map is a Python dict at run time and a sequence of maps a list of dicts, as onnxruntime gives and
takes them: sklearn converters end classifiers with ZipMap by default, whose output is one
``{class label: probability}`` dict per row. Where ONNX leaves a detail open (output shapes, what
fills a missing entry, keys out of range, repeated keys) the behaviour follows onnxruntime, which
these models target.
"""
from __future__ import annotations

import re

import numpy as np

from ...errors import ExecutionError, OpAttributeError, node_label
from ...ir import DType, Node, TensorType
from ...ir.types import MapType, SequenceType
from ..common import tt
from ..registry import Attr, InferContext, Kind, OpDef, register

FAMILY = "ml"
DOMAIN = "ai.onnx.ml"


def _fail(node: Node, msg: str):
    raise ExecutionError(f"{node_label(node)}: {msg}")


def _one_of(node: Node, names: tuple[str, ...]) -> tuple[str, list]:
    """The one attribute of ``names`` that is set (as (name, list)); OpAttributeError unless exactly one is."""
    given = [(k, list(node.attrs[k])) for k in names if node.attrs.get(k) is not None]
    if len(given) != 1:
        raise OpAttributeError(f"{node_label(node)}: exactly one of {', '.join(names)} must be set, got "
                               f"{', '.join(k for k, _ in given) or 'none'}")
    return given[0]


def _map_input(ctx: InferContext) -> MapType | None:
    """Input 0's map type (None when unknown); fails when the input is known not to be a map."""
    t = ctx.type(0)
    if t is None:
        return None
    if not isinstance(t, MapType):
        ctx.fail(f"input 0 must be a map, got {t}")
    return t


def _map_value_dtype(t: MapType | None) -> DType | None:
    return t.value.dtype if t is not None and isinstance(t.value, TensorType) else None


def _check_map(node: Node, x) -> dict:
    if not isinstance(x, dict):
        _fail(node, f"input 0 must be a map (a dict), got {type(x).__name__}")
    return x


# ---- ZipMap -------------------------------------------------------------------------------------
_ZIPMAP_LABELS = ("classlabels_int64s", "classlabels_strings")


def _zipmap_columns(node: Node) -> tuple[list, list[int], int]:
    """(keys in ascending order, the column each key reads, the number of labels).

    A label given twice keeps its last column, and keys come sorted, as in onnxruntime's std::map.
    """
    _, labels = _one_of(node, _ZIPMAP_LABELS)
    column = {label: j for j, label in enumerate(labels)}
    keys = sorted(column)
    return keys, [column[k] for k in keys], len(labels)


def _zipmap_eval(node: Node, x):
    keys, cols, n_labels = _zipmap_columns(node)
    if x.ndim not in (1, 2):
        _fail(node, f"input X must have rank 1 or 2 (rows of class scores), got shape {list(x.shape)}")
    rows = x.reshape(1, -1) if x.ndim == 1 else x
    if rows.shape[1] != n_labels:
        _fail(node, f"input X has {rows.shape[1]} columns but the node has {n_labels} class labels")
    return [dict(zip(keys, row)) for row in rows[:, cols].tolist()]


def _zipmap_infer(ctx: InferContext) -> list:
    try:
        name, labels = _one_of(ctx.node, _ZIPMAP_LABELS)
    except OpAttributeError as e:
        ctx.fail(str(e).split(": ", 1)[-1])
    dt, s = ctx.dtype(0), ctx.shape(0)
    if dt is not None and dt != DType.float32:
        ctx.fail(f"input X must be float32, got {dt.name}")
    if s is not None:
        if len(s) not in (1, 2):
            ctx.fail(f"input X must have rank 1 or 2 (rows of class scores), got {ctx.type(0)}")
        if isinstance(s[-1], int) and s[-1] != len(labels):
            ctx.fail(f"input X has {s[-1]} columns but the node has {len(labels)} class labels")
    key = DType.int64 if name == "classlabels_int64s" else DType.string
    return [SequenceType(MapType(key, tt(DType.float32, ())))]


register(OpDef("ZipMap", eval=_zipmap_eval, infer=_zipmap_infer, domain=DOMAIN, family=FAMILY, kind=Kind.OPAQUE,
               inputs=(1, 1), attrs={"classlabels_int64s": Attr("ints"), "classlabels_strings": Attr("strings")},
               doc="Turns each row of class scores into a map from class label to score."))


# ---- CastMap ------------------------------------------------------------------------------------
#: cast_to -> (output dtype, what fills the keys a SPARSE map lacks: onnxruntime's pads, "0.f" included)
_CAST_TO = {"TO_FLOAT": (DType.float32, 0.0), "TO_INT64": (DType.int64, 0), "TO_STRING": (DType.string, "0.f")}
_MAP_FORMS = ("DENSE", "SPARSE")
# What C's strtof / strtoll read at the start of a string (std::stof / std::stoll, as onnxruntime parses).
_LEADING_FLOAT = re.compile(r"\s*([+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?|nan))", re.IGNORECASE)
_LEADING_INT = re.compile(r"\s*([+-]?\d+)")
_INT64_MIN, _INT64_MAX = -2**63, 2**63 - 1


def _castmap_attrs(node: Node) -> tuple[DType, object, str, int]:
    cast_to, form, max_map = node.attrs["cast_to"], node.attrs["map_form"], node.attrs["max_map"]
    if cast_to not in _CAST_TO:
        raise OpAttributeError(f"{node_label(node)}: cast_to must be one of {', '.join(_CAST_TO)}, got '{cast_to}'")
    if form not in _MAP_FORMS:
        raise OpAttributeError(f"{node_label(node)}: map_form must be DENSE or SPARSE, got '{form}'")
    if form == "SPARSE" and max_map <= 0:
        raise OpAttributeError(f"{node_label(node)}: max_map must be positive with map_form SPARSE, got {max_map}")
    return (*_CAST_TO[cast_to], form, max_map)


def _parse_string(node: Node, key, s: str, to: DType):
    """A string value as C's std::stof / std::stoll read it: the longest number at its start."""
    m = (_LEADING_INT if to is DType.int64 else _LEADING_FLOAT).match(s)
    if m is None:
        _fail(node, f"the value '{s}' of key {key} does not start with a number (cast_to {to.name})")
    if to is DType.int64:
        v = int(m.group(1))
        if not _INT64_MIN <= v <= _INT64_MAX:
            _fail(node, f"the value '{s}' of key {key} is out of the int64 range")
        return v
    return float(m.group(1))


def _castmap_eval(node: Node, x):
    out_dtype, pad, form, max_map = _castmap_attrs(node)
    x = _check_map(node, x)
    keys = sorted(x)
    if form == "SPARSE":
        if keys and keys[0] < 0:
            _fail(node, f"map_form SPARSE places values at their keys, but key {keys[0]} is negative")
        keys = [k for k in keys if k < max_map]  # onnxruntime drops keys past max_map - 1
    vals = [x[k] for k in keys]
    if out_dtype is DType.string:  # std::to_string of a float: printf's %f of the float32 value
        dense = np.array([v if isinstance(v, str) else "%f" % float(np.float32(v)) for v in vals], dtype=object)
    elif out_dtype is DType.int64:  # a float truncates toward zero
        dense = np.array([_parse_string(node, k, v, out_dtype) if isinstance(v, str) else int(np.float32(v))
                          for k, v in zip(keys, vals)], dtype=np.int64)
    else:
        dense = np.array([_parse_string(node, k, v, out_dtype) if isinstance(v, str) else v
                          for k, v in zip(keys, vals)], dtype=np.float32)
    if form == "DENSE":
        return dense.reshape(1, len(keys))
    out = np.full((1, max_map), pad, dtype=out_dtype.np)
    out[0, keys] = dense
    return out


def _castmap_infer(ctx: InferContext) -> list:
    try:
        out_dtype, _, form, max_map = _castmap_attrs(ctx.node)
    except OpAttributeError as e:
        ctx.fail(str(e).split(": ", 1)[-1])
    t = _map_input(ctx)
    if t is not None:
        vt = _map_value_dtype(t)
        if t.key != DType.int64 or (vt is not None and vt not in (DType.float32, DType.string)):
            ctx.fail(f"input 0 must be a map from int64 to float32 or string, got {t}")
    return [tt(out_dtype, (1, max_map if form == "SPARSE" else ctx.fresh()))]


register(OpDef("CastMap", eval=_castmap_eval, infer=_castmap_infer, domain=DOMAIN, family=FAMILY, kind=Kind.OPAQUE,
               inputs=(1, 1), attrs={"cast_to": Attr("string", "TO_FLOAT"), "map_form": Attr("string", "DENSE"),
                                     "max_map": Attr("int", 1)},
               doc="Writes a map from int64 keys into a [1, n] tensor in key order (DENSE) or at the keys (SPARSE)."))


# ---- DictVectorizer -----------------------------------------------------------------------------
_VOCABULARIES = ("int64_vocabulary", "string_vocabulary")
_VALUE_DTYPES = (DType.int64, DType.float32, DType.float64, DType.string)


def _dict_vectorizer_eval(node: Node, x):
    _, vocab = _one_of(node, _VOCABULARIES)
    x = _check_map(node, x)
    out_type = node.outputs[0].type if node.outputs and node.outputs[0] is not None else None
    dt = out_type.dtype if isinstance(out_type, TensorType) else None
    if dt is None:
        dt = _map_value_dtype(node.inputs[0].type if isinstance(node.inputs[0].type, MapType) else None)
    if dt is None:  # no type recorded: what the values are
        vals = list(x.values())
        dt = (DType.string if vals and all(isinstance(v, str) for v in vals) else
              DType.int64 if vals and all(isinstance(v, int) for v in vals) else DType.float32)
    missing = "" if dt is DType.string else 0  # keys the map lacks read as the value type's zero
    return np.array([[x.get(k, missing) for k in vocab]], dtype=dt.np).reshape(1, len(vocab))


def _dict_vectorizer_infer(ctx: InferContext) -> list:
    try:
        name, vocab = _one_of(ctx.node, _VOCABULARIES)
    except OpAttributeError as e:
        ctx.fail(str(e).split(": ", 1)[-1])
    t = _map_input(ctx)
    vt = _map_value_dtype(t)
    if t is not None:
        want = DType.int64 if name == "int64_vocabulary" else DType.string
        if t.key != want:
            ctx.fail(f"the map's keys are {t.key.name} but the node has a {name} ({want.name} keys)")
        if vt is not None and vt not in _VALUE_DTYPES:
            ctx.fail(f"the map's values must be one of {', '.join(d.name for d in _VALUE_DTYPES)}, got {t}")
    return [tt(vt, (1, len(vocab)))]


register(OpDef("DictVectorizer", eval=_dict_vectorizer_eval, infer=_dict_vectorizer_infer, domain=DOMAIN,
               family=FAMILY, kind=Kind.OPAQUE, inputs=(1, 1),
               attrs={"int64_vocabulary": Attr("ints"), "string_vocabulary": Attr("strings")},
               doc="Writes a map into a [1, len(vocabulary)] tensor: entry i holds the value of vocabulary[i]."))


# ---- CategoryMapper ----------------------------------------------------------------------------
def _category_table(node: Node) -> tuple[list, list]:
    ints, strings = list(node.attrs.get("cats_int64s") or []), list(node.attrs.get("cats_strings") or [])
    if len(ints) != len(strings):
        raise OpAttributeError(f"{node_label(node)}: cats_int64s has {len(ints)} entries but cats_strings has "
                               f"{len(strings)}; they must pair up")
    return ints, strings


def _category_mapper_eval(node: Node, x):
    ints, strings = _category_table(node)
    if x.dtype == object or x.dtype.kind in "US":  # strings -> int64; a repeated category keeps its last pairing
        table, default, out_dtype = dict(zip(strings, ints)), node.attrs["default_int64"], np.int64
        uniq, inv = np.unique(x.astype(object).reshape(-1), return_inverse=True)
        uniq = [u.decode("utf-8") if isinstance(u, bytes) else u for u in uniq.tolist()]
    elif x.dtype == np.int64:
        table, default, out_dtype = dict(zip(ints, strings)), node.attrs["default_string"], object
        uniq, inv = np.unique(x.reshape(-1), return_inverse=True)
        uniq = uniq.tolist()
    else:
        _fail(node, f"input X must be string or int64, got {x.dtype}")
    mapped = np.empty(len(uniq), dtype=out_dtype)
    mapped[:] = [table.get(u, default) for u in uniq]
    return mapped[inv].reshape(x.shape)


def _category_mapper_infer(ctx: InferContext) -> list:
    try:
        _category_table(ctx.node)
    except OpAttributeError as e:
        ctx.fail(str(e).split(": ", 1)[-1])
    dt = ctx.dtype(0)
    if dt is not None and dt not in (DType.string, DType.int64):
        ctx.fail(f"input X must be string or int64, got {dt.name}")
    out = None if dt is None else DType.int64 if dt is DType.string else DType.string
    return [tt(out, ctx.shape(0))]


register(OpDef("CategoryMapper", eval=_category_mapper_eval, infer=_category_mapper_infer, domain=DOMAIN,
               family=FAMILY, kind=Kind.OPAQUE, inputs=(1, 1),
               attrs={"cats_int64s": Attr("ints"), "cats_strings": Attr("strings"),
                      "default_int64": Attr("int", -1), "default_string": Attr("string", "_Unused")},
               doc="Maps strings to int64 (or int64 to strings) through paired category lists, with a default."))
