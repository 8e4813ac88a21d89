"""Text operators: StringNormalizer, StringConcat, StringSplit, RegexFullMatch and TfIdfVectorizer."""
from __future__ import annotations

import operator
import re

import numpy as np

from ..ir import DType
from .common import broadcast_shapes, tt
from .registry import REQUIRED, Attr, InferContext, Kind, OpDef, register, set_facts, set_grads

FAMILY = "text"


def _string_normalizer_eval(node, x):
    a = node.attrs
    action = a["case_change_action"]
    if action not in ("NONE", "LOWER", "UPPER"):
        raise ValueError(f"case_change_action must be NONE, LOWER or UPPER, got '{action}'")
    if x.ndim == 2 and x.shape[0] != 1 or x.ndim not in (1, 2):
        raise ValueError(f"input must have shape [C] or [1, C], got {list(x.shape)}")
    words = [str(w) for w in x.reshape(-1)]
    stops = a.get("stopwords") or []
    if stops:
        if a["is_case_sensitive"]:
            stop = set(stops)
            words = [w for w in words if w not in stop]
        else:
            stop = {s.lower() for s in stops}
            words = [w for w in words if w.lower() not in stop]
    if action == "LOWER":
        words = [w.lower() for w in words]
    elif action == "UPPER":
        words = [w.upper() for w in words]
    if not words:
        words = [""]
    out = np.empty(len(words), dtype=object)
    out[:] = words
    return out.reshape(1, -1) if x.ndim == 2 else out


def _string_normalizer_infer(ctx: InferContext) -> list:
    s = ctx.shape(0)
    if s is not None and (len(s) not in (1, 2) or len(s) == 2 and isinstance(s[0], int) and s[0] != 1):
        ctx.fail(f"input must have shape [C] or [1, C], got {list(s)}")
    if s is None:
        return [tt(DType.string, None)]
    n = s[-1] if not ctx.attr("stopwords") and (not isinstance(s[-1], int) or s[-1] > 0) else ctx.fresh()
    return [tt(DType.string, (n,) if len(s) == 1 else (1, n))]


register(OpDef("StringNormalizer", eval=_string_normalizer_eval, infer=_string_normalizer_infer, inputs=(1, 1),
               attrs={"case_change_action": Attr("string", "NONE"), "is_case_sensitive": Attr("int", 0),
                      "locale": Attr("string"), "stopwords": Attr("strings")}, family=FAMILY))


def _string_infer_broadcast(ctx: InferContext) -> list:
    for i in (0, 1):
        if ctx.dtype(i) not in (None, DType.string):
            ctx.fail(f"input {i} must be a string tensor, got {ctx.dtype(i)}")
    return [tt(DType.string, broadcast_shapes(ctx, [ctx.shape(0), ctx.shape(1)]))]


_concat_strings = np.frompyfunc(operator.add, 2, 1)
register(OpDef("StringConcat", eval=lambda node, x, y: np.asarray(_concat_strings(x, y), dtype=object),
               infer=_string_infer_broadcast, kind=Kind.BROADCAST, inputs=(2, 2), family=FAMILY))


def _string_split_eval(node, x):
    delim = node.attrs.get("delimiter") or None  # absent or "": split on runs of whitespace
    maxsplit = node.attrs.get("maxsplit")
    maxsplit = -1 if maxsplit is None else maxsplit
    parts = [str(s).split(delim, maxsplit) for s in x.reshape(-1)]
    counts = np.array([len(p) for p in parts], dtype=np.int64).reshape(x.shape)
    width = max((len(p) for p in parts), default=0)
    y = np.full((len(parts), width), "", dtype=object)
    for i, p in enumerate(parts):
        y[i, : len(p)] = p
    return y.reshape(x.shape + (width,)), counts


def _string_split_infer(ctx: InferContext) -> list:
    if ctx.dtype(0) not in (None, DType.string):
        ctx.fail(f"input must be a string tensor, got {ctx.dtype(0)}")
    s = ctx.shape(0)
    m = ctx.attr("maxsplit")
    if m is not None and m < 0:
        ctx.fail(f"attribute 'maxsplit' must be >= 0, got {m}")
    if s is None:
        return [tt(DType.string, None), tt(DType.int64, None)]
    return [tt(DType.string, tuple(s) + (ctx.fresh(),)), tt(DType.int64, s)]


register(OpDef("StringSplit", eval=_string_split_eval, infer=_string_split_infer, inputs=(1, 1), outputs=(1, 2),
               attrs={"delimiter": Attr("string"), "maxsplit": Attr("int")}, family=FAMILY))


def _regex_eval(node, x):
    pattern = node.attrs.get("pattern")
    if pattern is None:
        raise ValueError("attribute 'pattern' is required")
    rx = re.compile(pattern)
    match = np.frompyfunc(lambda s: rx.fullmatch(str(s)) is not None, 1, 1)
    return np.asarray(match(x), dtype=bool).reshape(x.shape)


def _regex_infer(ctx: InferContext) -> list:
    if ctx.dtype(0) not in (None, DType.string):
        ctx.fail(f"input must be a string tensor, got {ctx.dtype(0)}")
    pattern = ctx.attr("pattern")
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as e:
            ctx.fail(f"attribute 'pattern' {pattern!r} is not a valid regular expression: {e}")
    return [tt(DType.bool, ctx.shape(0))]


register(OpDef("RegexFullMatch", eval=_regex_eval, infer=_regex_infer, kind=Kind.ELEMENTWISE, inputs=(1, 1),
               attrs={"pattern": Attr("string")}, family=FAMILY))


# ---- TfIdfVectorizer ------------------------------------------------------------------------------------
def _tfidf_pool(a) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """n -> (the pool's n-grams of that length as an (k, n) array, their output indexes)."""
    pool = a.get("pool_int64s") or a.get("pool_strings") or []
    counts = list(a["ngram_counts"]) + [len(pool)]
    out, gid = {}, 0
    for n in range(1, len(counts)):
        items = pool[counts[n - 1]:counts[n]]
        k = len(items) // n
        grams = np.asarray(items[: k * n], dtype=object if a.get("pool_strings") else np.int64).reshape(k, n)
        out[n] = (grams, np.asarray(a["ngram_indexes"][gid:gid + k], dtype=np.int64))
        gid += k
    return out


def _tfidf_eval(node, x):
    a = node.attrs
    if x.ndim > 2:
        raise ValueError(f"input must have shape [C] or [N, C], got {list(x.shape)}")
    rows = x.reshape(1, -1) if x.ndim < 2 else x
    size = max(a["ngram_indexes"]) + 1 if a["ngram_indexes"] else 0
    counts = np.zeros((rows.shape[0], size), dtype=np.int64)
    lo, hi = a["min_gram_length"], a["max_gram_length"]
    for n, (grams, index) in _tfidf_pool(a).items():
        if not lo <= n <= hi or len(grams) == 0:
            continue
        # unigrams are counted once; longer n-grams once per skip distance
        # (skips so wide that no window fits in a row are left out: max_skip_count may be huge)
        widest = (rows.shape[1] - 1) // (n - 1) - 1 if n > 1 else 0
        for skip in range(min(a["max_skip_count"], widest) + 1 if n > 1 else 1):
            span = (n - 1) * (skip + 1) + 1
            starts = rows.shape[1] - span + 1
            if starts <= 0:
                continue
            pos = np.arange(starts)[:, None] + (skip + 1) * np.arange(n)[None, :]
            windows = rows[:, pos]  # (rows, starts, n)
            hit = (windows[:, :, None, :] == grams[None, None, :, :]).all(-1)  # (rows, starts, k)
            np.add.at(counts, (slice(None), index), hit.sum(1))
    mode = a["mode"]
    w = np.asarray(a.get("weights") or np.ones(size), dtype=np.float32)
    if mode == "TF":
        y = counts.astype(np.float32)
    elif mode == "IDF":
        y = np.where(counts > 0, w, 0).astype(np.float32)
    elif mode == "TFIDF":
        y = (counts * w).astype(np.float32)
    else:
        raise ValueError(f"mode must be TF, IDF or TFIDF, got '{mode}'")
    return y if x.ndim == 2 else y.reshape(-1)


def _tfidf_infer(ctx: InferContext) -> list:
    if ctx.attr("mode") not in ("TF", "IDF", "TFIDF"):
        ctx.fail(f"attribute 'mode' must be TF, IDF or TFIDF, got '{ctx.attr('mode')}'")
    if ctx.attr("min_gram_length") > ctx.attr("max_gram_length"):
        ctx.fail(f"min_gram_length {ctx.attr('min_gram_length')} exceeds max_gram_length "
                 f"{ctx.attr('max_gram_length')}")
    size = max(ctx.attr("ngram_indexes")) + 1 if ctx.attr("ngram_indexes") else 0
    s = ctx.shape(0)
    if s is not None and len(s) > 2:
        ctx.fail(f"input must have shape [C] or [N, C], got {list(s)}")
    shape = None if s is None else ((s[0], size) if len(s) == 2 else (size,))
    return [tt(DType.float32, shape)]


register(OpDef("TfIdfVectorizer", eval=_tfidf_eval, infer=_tfidf_infer, inputs=(1, 1), family=FAMILY,
               attrs={"max_gram_length": Attr("int", REQUIRED), "max_skip_count": Attr("int", REQUIRED),
                      "min_gram_length": Attr("int", REQUIRED), "mode": Attr("string", REQUIRED),
                      "ngram_counts": Attr("ints", REQUIRED), "ngram_indexes": Attr("ints", REQUIRED),
                      "pool_int64s": Attr("ints"), "pool_strings": Attr("strings"), "weights": Attr("floats")}))


_STRINGS = "it works on strings"
set_grads({}, {**{name: _STRINGS for name in ("StringNormalizer", "StringConcat", "StringSplit", "RegexFullMatch")},
               "TfIdfVectorizer": "its input is integer tokens or strings"})
set_facts(value_sized=("TfIdfVectorizer", "StringSplit"))
