"""Neural-network operators: attention, rotary embedding, SwiGLU, recurrent cells (RNN/GRU/LSTM), stateful
causal convolution and non-maximum suppression. (Random generators: random.py; windows, DFT, STFT and mel
filterbanks: signal.py; string operators and TfIdfVectorizer: text.py.)"""
from __future__ import annotations

import numpy as np

from ..errors import node_label
from ..ir import DType
from .common import check_rank, drop_attrs, tt
from .registry import Attr, InferContext, Kind, OpDef, register, set_facts, set_grads

FAMILY = "nn"


# ---- small helpers ------------------------------------------------------------------------------
def _dim_div(ctx: InferContext, d, n: int | None, what: str):
    """``d / n`` for a dim that must split evenly into ``n`` parts (a fresh symbol when unknown)."""
    if isinstance(d, int) and isinstance(n, int):
        if n <= 0 or d % n:
            ctx.fail(f"{what} {d} is not divisible by {n}")
        return d // n
    return ctx.fresh()


def _dim_mul(ctx: InferContext, d, n):
    if isinstance(d, int) and isinstance(n, int):
        return d * n
    if n == 1:
        return d
    return ctx.fresh()


def _dim_add(ctx: InferContext, a, b):
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    if b == 0:
        return a
    if a == 0:
        return b
    return ctx.fresh()


def _same_dim(ctx: InferContext, a, b, what: str):
    """Two dims that must agree: fail when both are known and differ; return the better-known one."""
    if isinstance(a, int) and isinstance(b, int) and a != b:
        ctx.fail(f"{what}: {a} vs {b}")
    return a if isinstance(a, int) or not isinstance(b, int) else b


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softmax_last(x):
    """Softmax over the last axis; a row that is all ``-inf`` gives zeros (not NaN)."""
    m = np.max(x, axis=-1, keepdims=True)
    m = np.where(np.isneginf(m), np.zeros((), x.dtype), m)
    e = np.exp(x - m)
    s = np.sum(e, axis=-1, keepdims=True)
    s = np.where(s == 0, np.ones((), x.dtype), s)
    return e / s


# ---- Attention ----------------------------------------------------------------------------------
def _split_heads(x: np.ndarray, heads: int) -> np.ndarray:
    """(batch, seq, heads*d) -> (batch, heads, seq, d)."""
    b, s, hd = x.shape
    if hd % heads:
        raise ValueError(f"hidden size {hd} is not divisible by {heads} heads")
    return x.reshape(b, s, heads, hd // heads).transpose(0, 2, 1, 3)


def _frontier_offset(past_len: int, nonpad, sq: int):
    """How many valid keys precede the query block: scalar, or (batch, 1, 1, 1) for an external cache."""
    if nonpad is not None and past_len == 0:
        return (np.asarray(nonpad, dtype=np.int64).reshape(-1) - sq).reshape(-1, 1, 1, 1)
    return past_len


def _attention_eval(node, Q, K, V, attn_mask=None, past_key=None, past_value=None, nonpad_kv_seqlen=None):
    a = node.attrs
    dt = Q.dtype
    three_d = Q.ndim == 3
    if three_d:
        hq, hkv = a.get("q_num_heads"), a.get("kv_num_heads")
        if not hq or not hkv:
            raise ValueError("3-D inputs need the q_num_heads and kv_num_heads attributes")
        Q, K, V = _split_heads(Q, hq), _split_heads(K, hkv), _split_heads(V, hkv)
    if (past_key is None) != (past_value is None):
        raise ValueError("past_key and past_value must be given together")
    present_k = K if past_key is None else np.concatenate([past_key, K], axis=2)
    present_v = V if past_value is None else np.concatenate([past_value, V], axis=2)
    b, hq, sq, dk = Q.shape
    hkv, sk = present_k.shape[1], present_k.shape[2]
    past_len = 0 if past_key is None else past_key.shape[2]

    scale = a.get("scale")
    if scale is None:
        scale = 1.0 / np.sqrt(dk)
    root = dt.type(np.sqrt(scale))  # scale Q and K by sqrt(scale) each, as the spec's diagram does

    # Additive bias (broadcastable to (b, hq, sq, sk)) and a boolean "may attend" frontier.
    bias = np.zeros((sq, sk), dtype=dt)
    if attn_mask is not None:
        m = attn_mask
        if m.shape[-1] < sk:  # a short mask is padded to the total length with "masked"
            pad = [(0, 0)] * (m.ndim - 1) + [(0, sk - m.shape[-1])]
            m = np.pad(m, pad, constant_values=False if m.dtype == np.bool_ else -np.inf)
        if m.dtype == np.bool_:
            m = np.where(m, dt.type(0), dt.type(-np.inf))
        bias = bias + m.astype(dt, copy=False)
    offset = _frontier_offset(past_len, nonpad_kv_seqlen, sq)
    i = np.arange(sq).reshape(sq, 1)
    j = np.arange(sk).reshape(1, sk)
    diff = (i + offset) - j  # query's absolute position minus key position
    allowed = np.ones(np.shape(diff), dtype=bool)
    if a["is_causal"]:
        allowed &= diff >= 0
    if a["left_window_size"] >= 0:
        allowed &= diff <= a["left_window_size"]
    if a["right_window_size"] >= 0:
        allowed &= -diff <= a["right_window_size"]
    if nonpad_kv_seqlen is not None:
        allowed = allowed & (j < np.asarray(nonpad_kv_seqlen).reshape(-1, 1, 1, 1))
    if not allowed.all():
        bias = np.where(allowed, bias, dt.type(-np.inf))

    if hq != hkv:
        if hq % hkv:
            raise ValueError(f"q_num_heads {hq} is not a multiple of kv_num_heads {hkv}")
        K_ = np.repeat(present_k, hq // hkv, axis=1)
        V_ = np.repeat(present_v, hq // hkv, axis=1)
    else:
        K_, V_ = present_k, present_v
    raw = np.matmul(Q * root, np.swapaxes(K_ * root, -1, -2)).astype(dt, copy=False)
    capped = raw
    softcap = a["softcap"]
    if softcap > 0:
        capped = (np.tanh(raw / dt.type(softcap)) * dt.type(softcap)).astype(dt, copy=False)
    scores = capped + bias
    mode = a["qk_matmul_output_mode"]
    prec = a.get("softmax_precision")
    s = scores.astype(DType(prec).np) if prec else scores
    probs = _softmax_last(s)
    dead = np.isneginf(np.max(bias, axis=-1, keepdims=True))  # rows with no key to attend: all-zero
    if dead.any():
        probs = np.where(dead, np.zeros((), probs.dtype), probs)
    probs = probs.astype(dt, copy=False)
    Y = np.matmul(probs, V_).astype(dt, copy=False)
    if three_d:
        Y = Y.transpose(0, 2, 1, 3).reshape(b, sq, -1)
    qk = {0: capped, 1: capped, 2: scores, 3: probs}.get(mode)
    if qk is None:
        raise ValueError(f"qk_matmul_output_mode must be 0, 1, 2 or 3, got {mode}")
    qk = np.broadcast_to(qk, (b, hq, sq, sk)).astype(dt)
    return Y, present_k, present_v, qk


def _attention_infer(ctx: InferContext) -> list:
    rq = check_rank(ctx, 0, (3, 4), "Q")
    rk = check_rank(ctx, 1, (3, 4), "K")
    rv = check_rank(ctx, 2, (3, 4), "V")
    ranks = {r for r in (rq, rk, rv) if r is not None}
    if len(ranks) > 1:
        ctx.fail(f"Q, K and V must have the same rank, got {rq}, {rk} and {rv}")
    rank = ranks.pop() if ranks else None
    dq, dv = ctx.dtype(0), ctx.dtype(2)
    if ctx.has_input(3) and ctx.dtype(3) is not None and ctx.dtype(3) != DType.bool and dq is not None:
        if ctx.dtype(3).is_float and ctx.dtype(3) != dq:
            ctx.fail(f"a float attn_mask must have Q's element type {dq}, got {ctx.dtype(3)}")
    if rank is None:
        return [tt(dq, None), tt(dq, None), tt(dv, None), tt(dq, None)]
    q, k, v = ctx.shape(0), ctx.shape(1), ctx.shape(2)
    if rank == 3:
        hq, hkv = ctx.attr("q_num_heads"), ctx.attr("kv_num_heads")
        if not hq or not hkv:
            ctx.fail("3-D Q, K and V need the q_num_heads and kv_num_heads attributes")
        batch = _same_dim(ctx, q[0], k[0], "batch size of Q and K")
        sq, skv = q[1], _same_dim(ctx, k[1], v[1], "sequence length of K and V")
        dk = _dim_div(ctx, q[2], hq, "Q hidden size")
        dk2 = _dim_div(ctx, k[2], hkv, "K hidden size")
        _same_dim(ctx, dk, dk2, "head size of Q and K")
        dvh = _dim_div(ctx, v[2], hkv, "V hidden size")
    else:
        batch = _same_dim(ctx, q[0], k[0], "batch size of Q and K")
        hq, hkv = q[1], _same_dim(ctx, k[1], v[1], "number of heads of K and V")
        sq, skv = q[2], _same_dim(ctx, k[2], v[2], "sequence length of K and V")
        dk = _same_dim(ctx, q[3], k[3], "head size of Q and K")
        dvh = v[3]
    if isinstance(hq, int) and isinstance(hkv, int) and (hkv <= 0 or hq % hkv):
        ctx.fail(f"the number of query heads {hq} must be a multiple of the number of key/value heads {hkv}")
    total = skv
    pk = ctx.shape(4)
    if pk is not None:
        if len(pk) != 4:
            ctx.fail(f"past_key must have rank 4, got shape {list(pk)}")
        total = _dim_add(ctx, pk[2], skv)
    if rank == 3:
        y = (batch, sq, _dim_mul(ctx, dvh, hq))
    else:
        y = (batch, hq, sq, dvh)
    return [tt(dq, y), tt(dq, (batch, hkv, total, dk)), tt(dv, (batch, hkv, total, dvh)),
            tt(dq, (batch, hq, sq, total))]


register(OpDef(
    "Attention", eval=_attention_eval, infer=_attention_infer, kind=Kind.OPAQUE, inputs=(3, 7), outputs=(1, 4),
    attrs={"is_causal": Attr("int", 0), "kv_num_heads": Attr("int"), "q_num_heads": Attr("int"),
           "qk_matmul_output_mode": Attr("int", 0), "scale": Attr("float"), "softcap": Attr("float", 0.0),
           "softmax_precision": Attr("int"), "left_window_size": Attr("int", -1),
           "right_window_size": Attr("int", -1)},
    family=FAMILY, doc="Scaled dot-product attention with GQA, masks, KV cache, softcap and windows."))


# ---- RotaryEmbedding ----------------------------------------------------------------------------
def _rotary_eval(node, X, cos, sin, position_ids=None):
    shape = X.shape
    if X.ndim == 4:  # (b, heads, seq, d) -> (b, seq, heads, d)
        x = X.transpose(0, 2, 1, 3)
    else:
        heads = node.attrs.get("num_heads")
        if not heads:
            raise ValueError("a 3-D input needs the num_heads attribute")
        x = X.reshape(shape[0], shape[1], heads, shape[2] // heads)
    rd = node.attrs["rotary_embedding_dim"] or x.shape[3]
    if position_ids is not None:
        cos, sin = cos[position_ids], sin[position_ids]
    if cos.shape[-1] != rd // 2 or sin.shape[-1] != rd // 2:
        raise ValueError(f"cos/sin caches must have last dim {rd // 2}, got {cos.shape[-1]} and {sin.shape[-1]}")
    cos, sin = cos[:, :, None, :], sin[:, :, None, :]
    rot = x[..., :rd]
    if node.attrs["interleaved"]:
        x1, x2 = rot[..., 0::2], rot[..., 1::2]
    else:
        x1, x2 = rot[..., : rd // 2], rot[..., rd // 2:]
    real = cos * x1 - sin * x2
    imag = sin * x1 + cos * x2
    if node.attrs["interleaved"]:
        rotated = np.stack([real, imag], axis=-1).reshape(rot.shape)
    else:
        rotated = np.concatenate([real, imag], axis=-1)
    out = np.concatenate([rotated.astype(X.dtype, copy=False), x[..., rd:]], axis=-1)
    if X.ndim == 4:
        return out.transpose(0, 2, 1, 3)
    return out.reshape(shape)


def _rotary_infer(ctx: InferContext) -> list:
    r = check_rank(ctx, 0, (3, 4), "X")
    if r == 3 and not ctx.attr("num_heads"):
        ctx.fail("a 3-D input X needs the num_heads attribute")
    if r == 3 and ctx.shape(0) is not None:
        _dim_div(ctx, ctx.shape(0)[2], ctx.attr("num_heads"), "hidden size")
    return [ctx.type(0)]


register(OpDef(
    "RotaryEmbedding", eval=_rotary_eval, infer=_rotary_infer, kind=Kind.OPAQUE, inputs=(3, 4),
    attrs={"interleaved": Attr("int", 0), "num_heads": Attr("int"), "rotary_embedding_dim": Attr("int", 0)},
    family=FAMILY))


# ---- SwiGLU -------------------------------------------------------------------------------------
def _swiglu_eval(node, A, B):
    alpha = A.dtype.type(node.attrs["alpha"])
    return (A * _sigmoid(alpha * A) * B).astype(A.dtype, copy=False)


def _swiglu_infer(ctx: InferContext) -> list:
    a, b = ctx.shape(0), ctx.shape(1)
    if a is not None and b is not None:
        if len(a) != len(b):
            ctx.fail(f"A and B must have the same shape, got {list(a)} and {list(b)}")
        a = tuple(_same_dim(ctx, x, y, f"dim {i} of A and B") for i, (x, y) in enumerate(zip(a, b)))
    return [tt(ctx.dtype(0), a if a is not None else b)]


register(OpDef("SwiGLU", eval=_swiglu_eval, infer=_swiglu_infer, kind=Kind.BROADCAST, inputs=(2, 2),
               attrs={"alpha": Attr("float", 1.0)}, family=FAMILY))


# ---- CausalConvWithState ------------------------------------------------------------------------
def _causal_conv_eval(node, x, w, bias=None, past=None):
    act = node.attrs["activation"]
    if act not in ("none", "silu", "swish"):
        raise ValueError(f"activation must be 'none', 'silu' or 'swish', got '{act}'")
    b, c, n = x.shape
    k = w.shape[2]
    if past is None:
        past = np.zeros((b, c, k - 1), dtype=x.dtype)
    padded = np.concatenate([past.astype(x.dtype, copy=False), x], axis=2)
    acc = np.zeros((b, c, n), dtype=np.float64 if x.dtype == np.float64 else np.float32)
    for t in range(k):  # one shifted multiply-add per kernel tap
        acc += padded[:, :, t:t + n] * w[None, :, 0, t:t + 1].astype(acc.dtype)
    if bias is not None:
        acc += bias.astype(acc.dtype)[None, :, None]
    out = acc.astype(x.dtype)
    if act != "none":
        f = out.astype(np.float32)
        out = (f * _sigmoid(f)).astype(x.dtype)
    present = padded[:, :, padded.shape[2] - (k - 1):]
    return out, present


def _causal_conv_infer(ctx: InferContext) -> list:
    check_rank(ctx, 0, (3,), "input")
    check_rank(ctx, 1, (3,), "weight")
    xs, ws = ctx.shape(0), ctx.shape(1)
    act = ctx.attr("activation")
    if act not in ("none", "silu", "swish"):
        ctx.fail(f"attribute 'activation' must be 'none', 'silu' or 'swish', got '{act}'")
    if xs is None:
        return [tt(ctx.dtype(0), None), tt(ctx.dtype(0), None)]
    k1 = ctx.fresh()
    if ws is not None:
        _same_dim(ctx, xs[1], ws[0], "channels of input and weight")
        if isinstance(ws[1], int) and ws[1] != 1:
            ctx.fail(f"weight must have shape (channels, 1, k), got {list(ws)}")
        if isinstance(ws[2], int):
            k1 = ws[2] - 1
    ps = ctx.shape(3)
    if ps is not None and len(ps) == 3:
        k1 = _same_dim(ctx, k1, ps[2], "past_state length and kernel size - 1")
    return [tt(ctx.dtype(0), xs), tt(ctx.dtype(0), (xs[0], xs[1], k1))]


register(OpDef("CausalConvWithState", eval=_causal_conv_eval, infer=_causal_conv_infer, kind=Kind.OPAQUE,
               inputs=(2, 4), outputs=(1, 2), attrs={"activation": Attr("string", "none")}, family=FAMILY))


# ---- LinearAttention ----------------------------------------------------------------------------
_LINEAR_RULES = ("linear", "gated", "delta", "gated_delta")


def _linear_attention_eval(node, q, k, v, past=None, decay=None, beta=None):
    a = node.attrs
    rule = a["update_rule"]
    if rule not in _LINEAR_RULES:
        raise ValueError(f"update_rule must be one of {', '.join(_LINEAR_RULES)}, got '{rule}'")
    hq, hkv = a.get("q_num_heads"), a.get("kv_num_heads")
    if not hq or not hkv or hq % hkv:
        raise ValueError(f"q_num_heads ({hq}) must be a positive multiple of kv_num_heads ({hkv})")
    gated, delta = rule in ("gated", "gated_delta"), rule in ("delta", "gated_delta")
    if gated != (decay is not None):
        raise ValueError(f"update_rule '{rule}' {'requires' if gated else 'forbids'} the decay input")
    if delta != (beta is not None):
        raise ValueError(f"update_rule '{rule}' {'requires' if delta else 'forbids'} the beta input")
    b, t, _ = q.shape
    f32 = np.float32
    q4 = _split_heads(q, hq).astype(f32)
    k4 = _split_heads(k, hkv).astype(f32)
    v4 = _split_heads(v, hkv).astype(f32)
    dk, dv = q4.shape[3], v4.shape[3]
    g4 = None
    if decay is not None:
        g4 = (decay.reshape(b, t, hkv, 1).transpose(0, 2, 1, 3) if decay.shape[-1] == hkv
              else _split_heads(decay, hkv)).astype(f32)
        g4 = np.exp(g4)
    if beta is not None:
        beta4 = beta.reshape(b, t, beta.shape[-1], 1).transpose(0, 2, 1, 3).astype(f32)
    state = np.zeros((b, hkv, dk, dv), f32) if past is None else past.astype(f32)
    scale = a["scale"] or 1.0 / np.sqrt(dk)
    group = hq // hkv
    qg = q4.reshape(b, hkv, group, t, dk)
    out = np.empty((b, hkv, group, t, dv), f32)
    for i in range(t):  # the recurrence is sequential in time
        kt, vt = k4[:, :, i], v4[:, :, i]
        if g4 is not None:
            state = state * g4[:, :, i][..., None]
        if delta:
            retrieved = np.einsum("bhdm,bhd->bhm", state, kt)
            vt = beta4[:, :, i] * (vt - retrieved)
        state = state + kt[..., :, None] * vt[..., None, :]
        out[:, :, :, i] = np.einsum("bhgd,bhdm->bhgm", qg[:, :, :, i], state)
    out *= f32(scale)
    y = out.reshape(b, hq, t, dv).transpose(0, 2, 1, 3).reshape(b, t, hq * dv).astype(q.dtype)
    return y, state.astype(past.dtype if past is not None else q.dtype)


def _linear_attention_infer(ctx: InferContext) -> list:
    for i, n in enumerate(("query", "key", "value")):
        check_rank(ctx, i, (3,), n)
    hq, hkv = ctx.attr("q_num_heads"), ctx.attr("kv_num_heads")
    if not hq or not hkv or hq % hkv:
        ctx.fail(f"q_num_heads ({hq}) must be a positive multiple of kv_num_heads ({hkv})")
    rule = ctx.attr("update_rule")
    if rule not in _LINEAR_RULES:
        ctx.fail(f"attribute 'update_rule' must be one of {', '.join(_LINEAR_RULES)}, got '{rule}'")
    q, v = ctx.shape(0), ctx.shape(2)
    sdt = ctx.dtype(3) if ctx.has_input(3) else ctx.dtype(0)
    if q is None or v is None:
        return [tt(ctx.dtype(0), None), tt(sdt, None)]
    dk = _dim_div(ctx, q[2], hq, "query hidden size")
    dv = _dim_div(ctx, v[2], hkv, "value hidden size")
    return [tt(ctx.dtype(0), (q[0], q[1], _dim_mul(ctx, dv, hq))), tt(sdt, (q[0], hkv, dk, dv))]


register(OpDef(
    "LinearAttention", eval=_linear_attention_eval, infer=_linear_attention_infer, kind=Kind.OPAQUE,
    inputs=(3, 6), outputs=(1, 2),
    attrs={"chunk_size": Attr("int", 64), "kv_num_heads": Attr("int"), "q_num_heads": Attr("int"),
           "scale": Attr("float", 0.0), "update_rule": Attr("string", "gated_delta")},
    family=FAMILY))


# ---- RNN / GRU / LSTM -----------------------------------------------------------------------------
def _affine(x, a, b):
    return a * x + b


def _scaled_tanh(x, a, b):
    return a * np.tanh(b * x)


def _hard_sigmoid(x, a, b):
    return np.clip(a * x + b, 0, 1)


def _leaky_relu(x, a, b):
    return np.where(x >= 0, x, a * x)


def _thresholded_relu(x, a, b):
    return np.where(x > a, x, 0)


def _elu(x, a, b):
    return np.where(x >= 0, x, a * (np.exp(np.minimum(x, 0)) - 1))


#: Recurrent-cell activations (lower-case name) -> (fn(x, alpha, beta), default alpha, default beta);
#: a None default means the function takes no such parameter.
_ACTIVATIONS = {
    "relu": (lambda x, a, b: np.maximum(x, 0), None, None),
    "tanh": (lambda x, a, b: np.tanh(x), None, None),
    "sigmoid": (lambda x, a, b: _sigmoid(x), None, None),
    "affine": (_affine, 1.0, 0.0),
    "leakyrelu": (_leaky_relu, 0.01, None),
    "thresholdedrelu": (_thresholded_relu, 1.0, None),
    "scaledtanh": (_scaled_tanh, 1.0, 1.0),
    "hardsigmoid": (_hard_sigmoid, 0.2, 0.5),
    "elu": (_elu, 1.0, None),
    "softsign": (lambda x, a, b: x / (1 + np.abs(x)), None, None),
    "softplus": (lambda x, a, b: np.log1p(np.exp(x)), None, None),
}

#: Per cell: number of gates, default activations (per direction).
_CELLS = {"RNN": (1, ["Tanh"]), "GRU": (3, ["Sigmoid", "Tanh"]), "LSTM": (4, ["Sigmoid", "Tanh", "Tanh"])}


def activation_specs(node, per_dir: int, num_dir: int) -> list[list[tuple[str, float | None, float | None]]]:
    """Per direction, the (lower-case name, alpha, beta) of each activation, alpha/beta taken in order from
    the attribute lists (None where the function takes no such parameter); the CUDA lowering reads it too."""
    names = node.attrs.get("activations") or []
    default = _CELLS[node.op_type][1]
    if len(names) < per_dir * num_dir:
        names = list(names[:per_dir]) if len(names) >= per_dir else list(default)
        names = (names * num_dir)[: per_dir * num_dir]
    alphas = list(node.attrs.get("activation_alpha") or [])
    betas = list(node.attrs.get("activation_beta") or [])
    specs = []
    for name in names[: per_dir * num_dir]:
        spec = _ACTIVATIONS.get(name.lower())
        if spec is None:
            raise ValueError(f"unknown activation '{name}'; expected one of {', '.join(sorted(_ACTIVATIONS))}")
        _, da, db = spec
        a = alphas.pop(0) if da is not None and alphas else da
        b = betas.pop(0) if db is not None and betas else db
        specs.append((name.lower(), a, b))
    return [specs[d * per_dir:(d + 1) * per_dir] for d in range(num_dir)]


def _activations(node, per_dir: int, num_dir: int):
    """The activation functions per direction (``activation_specs`` bound to NumPy functions)."""
    return [[lambda x, fn=_ACTIVATIONS[name][0], a=a, b=b: fn(x, a, b) for name, a, b in specs]
            for specs in activation_specs(node, per_dir, num_dir)]


def _recurrent_eval(node, X, W, R, B=None, seq_lens=None, h0=None, c0=None, P=None):
    op = node.op_type
    gates = _CELLS[op][0]
    a = node.attrs
    direction = a["direction"]
    num_dir = 2 if direction == "bidirectional" else 1
    if direction not in ("forward", "reverse", "bidirectional"):
        raise ValueError(f"direction must be forward, reverse or bidirectional, got '{direction}'")
    layout = a["layout"]
    if layout:
        X = X.swapaxes(0, 1)
        h0 = None if h0 is None else h0.swapaxes(0, 1)
        c0 = None if c0 is None else c0.swapaxes(0, 1)
    T, batch, _ = X.shape
    H = R.shape[-1]
    dt = X.dtype
    clip = a.get("clip")
    acts = _activations(node, {"RNN": 1, "GRU": 2, "LSTM": 3}[op], num_dir)
    lens = np.full(batch, T, np.int64) if seq_lens is None else np.asarray(seq_lens, np.int64)
    Y = np.zeros((T, num_dir, batch, H), dtype=dt)
    Yh = np.zeros((num_dir, batch, H), dtype=dt)
    Yc = np.zeros((num_dir, batch, H), dtype=dt)
    for d in range(num_dir):
        reverse = direction == "reverse" or d == 1
        w, r = W[d], R[d]
        bias = np.zeros(2 * gates * H, dtype=dt) if B is None else B[d]
        wb, rb = bias[: gates * H], bias[gates * H:]
        f = acts[d]
        h = np.zeros((batch, H), dtype=dt) if h0 is None else h0[d].astype(dt)
        c = np.zeros((batch, H), dtype=dt) if c0 is None else c0[d].astype(dt)
        xw = np.matmul(X, w.T) + wb  # input projections of every step at once: (T, batch, gates*H)
        p = None if P is None else P[d]

        def clipped(z):
            return z if clip is None else np.clip(z, -clip, clip)

        for t in (range(T - 1, -1, -1) if reverse else range(T)):
            live = (t < lens)[:, None]
            x = xw[t]
            if op == "RNN":
                h_new = f[0](clipped(x + h @ r.T + rb))
            elif op == "GRU":
                hr = h @ r.T
                z = f[0](clipped(x[:, :H] + hr[:, :H] + rb[:H]))
                rg = f[0](clipped(x[:, H:2 * H] + hr[:, H:2 * H] + rb[H:2 * H]))
                if a["linear_before_reset"]:
                    n = f[1](clipped(x[:, 2 * H:] + rg * (hr[:, 2 * H:] + rb[2 * H:])))
                else:
                    n = f[1](clipped(x[:, 2 * H:] + (rg * h) @ r[2 * H:].T + rb[2 * H:]))
                h_new = (1 - z) * n + z * h
            else:  # LSTM, gate order i, o, f, c
                zs = x + h @ r.T + rb
                zi, zo, zf, zc = zs[:, :H], zs[:, H:2 * H], zs[:, 2 * H:3 * H], zs[:, 3 * H:]
                if p is not None:
                    zi = zi + p[:H] * c
                    zf = zf + p[2 * H:] * c
                ig = f[0](clipped(zi))
                fg = 1 - ig if a["input_forget"] else f[0](clipped(zf))
                c_new = fg * c + ig * f[1](clipped(zc))
                if p is not None:
                    zo = zo + p[H:2 * H] * c_new
                og = f[0](clipped(zo))
                h_new = og * f[2](c_new)
                c = np.where(live, c_new, c).astype(dt, copy=False)
            h = np.where(live, h_new, h).astype(dt, copy=False)
            Y[t, d] = np.where(live, h, 0)
        Yh[d], Yc[d] = h, c
    if layout:
        Y, Yh, Yc = Y.transpose(2, 0, 1, 3), Yh.swapaxes(0, 1), Yc.swapaxes(0, 1)
    return (Y, Yh, Yc) if op == "LSTM" else (Y, Yh)


def _recurrent_infer(ctx: InferContext) -> list:
    op = ctx.node.op_type
    gates = _CELLS[op][0]
    check_rank(ctx, 0, (3,), "X")
    check_rank(ctx, 1, (3,), "W")
    check_rank(ctx, 2, (3,), "R")
    direction = ctx.attr("direction")
    if direction not in ("forward", "reverse", "bidirectional"):
        ctx.fail(f"attribute 'direction' must be forward, reverse or bidirectional, got '{direction}'")
    num_dir = 2 if direction == "bidirectional" else 1
    layout = ctx.attr("layout")
    if layout not in (0, 1):
        ctx.fail(f"attribute 'layout' must be 0 or 1, got {layout}")
    hidden = ctx.attr("hidden_size")
    ws, rs = ctx.shape(1), ctx.shape(2)
    for name, s in (("W", ws), ("R", rs)):
        if s is not None:
            _same_dim(ctx, s[0], num_dir, f"{name}'s first dim (num_directions)")
            if isinstance(s[1], int):
                if s[1] % gates:
                    ctx.fail(f"{name}'s second dim {s[1]} must be {gates} * hidden_size")
                hidden = _same_dim(ctx, hidden, s[1] // gates, f"hidden_size and {name}'s shape")
    if hidden is None:
        hidden = rs[2] if rs is not None else ctx.fresh()
    xs = ctx.shape(0)
    dt = ctx.dtype(0)
    n = 3 if op == "LSTM" else 2
    if xs is None:
        return [tt(dt, None)] * n
    seq, batch = (xs[1], xs[0]) if layout else (xs[0], xs[1])
    y = (batch, seq, num_dir, hidden) if layout else (seq, num_dir, batch, hidden)
    yh = (batch, num_dir, hidden) if layout else (num_dir, batch, hidden)
    return [tt(dt, y)] + [tt(dt, yh)] * (n - 1)


_RNN_ATTRS = {
    "activation_alpha": Attr("floats"), "activation_beta": Attr("floats"), "activations": Attr("strings"),
    "clip": Attr("float"), "direction": Attr("string", "forward"), "hidden_size": Attr("int"),
    "layout": Attr("int", 0),
}
register(OpDef("RNN", eval=_recurrent_eval, infer=_recurrent_infer, kind=Kind.OPAQUE, inputs=(3, 6),
               outputs=(0, 2), attrs=dict(_RNN_ATTRS), upgrades={7: drop_attrs("output_sequence")},
               family=FAMILY))
register(OpDef("GRU", eval=_recurrent_eval, infer=_recurrent_infer, kind=Kind.OPAQUE, inputs=(3, 6),
               outputs=(0, 2), attrs={**_RNN_ATTRS, "linear_before_reset": Attr("int", 0)},
               upgrades={7: drop_attrs("output_sequence")}, family=FAMILY))
register(OpDef("LSTM", eval=_recurrent_eval, infer=_recurrent_infer, kind=Kind.OPAQUE, inputs=(3, 8),
               outputs=(0, 3), attrs={**_RNN_ATTRS, "input_forget": Attr("int", 0)},
               upgrades={7: drop_attrs("output_sequence")}, family=FAMILY))


# ---- NonMaxSuppression -----------------------------------------------------------------------------
def _corners(boxes: np.ndarray, center_point_box: int):
    """(n, 4) boxes -> (y_min, x_min, y_max, x_max) columns."""
    if center_point_box:
        xc, yc, w, h = boxes.T
        return yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2
    y1, x1, y2, x2 = boxes.T
    return np.minimum(y1, y2), np.minimum(x1, x2), np.maximum(y1, y2), np.maximum(x1, x2)


def _iou_matrix(boxes: np.ndarray, center_point_box: int) -> np.ndarray:
    y0, x0, y1, x1 = (c.astype(np.float64) for c in _corners(boxes, center_point_box))
    ih = np.clip(np.minimum(y1[:, None], y1[None]) - np.maximum(y0[:, None], y0[None]), 0, None)
    iw = np.clip(np.minimum(x1[:, None], x1[None]) - np.maximum(x0[:, None], x0[None]), 0, None)
    inter = ih * iw
    area = (y1 - y0) * (x1 - x0)
    union = area[:, None] + area[None] - inter
    ok = (inter > 0) & (area[:, None] > 0) & (area[None] > 0) & (union > 0)
    return np.where(ok, inter / np.where(ok, union, 1), 0.0)


def _nms_eval(node, boxes, scores, max_out=None, iou_thr=None, score_thr=None):
    limit = 0 if max_out is None or max_out.size == 0 else int(max_out.reshape(-1)[0])
    iou_t = 0.0 if iou_thr is None or iou_thr.size == 0 else float(iou_thr.reshape(-1)[0])
    score_t = None if score_thr is None or score_thr.size == 0 else float(score_thr.reshape(-1)[0])
    cpb = node.attrs["center_point_box"]
    out = []
    if limit > 0:
        for b in range(boxes.shape[0]):
            iou = _iou_matrix(boxes[b], cpb)
            for c in range(scores.shape[1]):
                s = scores[b, c]
                order = np.argsort(-s, kind="stable")  # ties: lower box index first
                if score_t is not None:
                    order = order[s[order] > score_t]
                chosen: list[int] = []
                for i in order:
                    if len(chosen) >= limit:
                        break
                    if not chosen or not (iou[i, chosen] > iou_t).any():
                        chosen.append(int(i))
                out.extend((b, c, i) for i in chosen)
    return np.array(out, dtype=np.int64).reshape(-1, 3)


def _nms_infer(ctx: InferContext) -> list:
    check_rank(ctx, 0, (3,), "boxes")
    check_rank(ctx, 1, (3,), "scores")
    bs, ss = ctx.shape(0), ctx.shape(1)
    if bs is not None and isinstance(bs[2], int) and bs[2] != 4:
        ctx.fail(f"boxes must have shape (batches, boxes, 4), got {list(bs)}")
    if bs is not None and ss is not None:
        _same_dim(ctx, bs[0], ss[0], "number of batches of boxes and scores")
        _same_dim(ctx, bs[1], ss[2], "number of boxes of boxes and scores")
    return [tt(DType.int64, (ctx.fresh(), 3))]


register(OpDef("NonMaxSuppression", eval=_nms_eval, infer=_nms_infer, kind=Kind.OPAQUE, inputs=(2, 5),
               attrs={"center_point_box": Attr("int", 0)}, family=FAMILY))


# ---- gradients ------------------------------------------------------------------------------------
# A rule maps (ctx, node, dys) to one gradient per input (see graphc.autodiff.GradContext). Attention and
# SwiGLU are recomputed from differentiable primitives (MatMul, Softmax, Sigmoid...).
def _attention_parts(ctx, node):
    from ..errors import GradientError

    a = node.attrs
    q, k, v = node.inputs[:3]
    extra = list(node.inputs[3:]) + [None] * (7 - len(node.inputs))
    mask, past_k, past_v, nonpad = extra[0], extra[1], extra[2], extra[3]
    if nonpad is not None or a["left_window_size"] >= 0 or a["right_window_size"] >= 0:
        raise GradientError(f"{node_label(node)}: no gradient rule for Attention with nonpad_kv_seqlen or "
                            f"sliding windows yet")
    three_d = ctx.rank(q) == 3
    if three_d:
        def heads(x, n):
            return ctx.op("Transpose", ctx.op("Reshape", x, ctx.ints([0, 0, n, -1])), perm=[0, 2, 1, 3])

        q, k, v = heads(q, a["q_num_heads"]), heads(k, a["kv_num_heads"]), heads(v, a["kv_num_heads"])
    pk = k if past_k is None else ctx.op("Concat", past_k, k, axis=2)
    pv = v if past_v is None else ctx.op("Concat", past_v, v, axis=2)
    qs, ks = ctx.shape_of(q), ctx.shape_of(pk)
    hq, sq, dk, hkv, sk = qs[1], qs[2], qs[3], ks[1], ks[2]
    if not all(isinstance(d, int) for d in (hq, sq, dk, hkv, sk)):
        raise GradientError(f"{node_label(node)}: its gradient needs static head counts, lengths and head size")
    k_, v_ = pk, pv
    if hq != hkv:  # grouped-query attention: each key/value head serves hq / hkv query heads
        def repeat(x):
            d = ctx.shape_of(x)[3]
            e = ctx.op("Expand", ctx.op("Unsqueeze", x, ctx.ints([2])), ctx.ints([1, 1, hq // hkv, 1, 1]))
            return ctx.op("Reshape", e, ctx.ints([0, hq, sk, d]))

        k_, v_ = repeat(pk), repeat(pv)
    scale = a.get("scale") or 1.0 / np.sqrt(dk)
    raw = ctx.op("Mul", ctx.op("MatMul", q, ctx.op("Transpose", k_, perm=[0, 1, 3, 2])), ctx.scalar(scale, q))
    capped = raw
    if a["softcap"] > 0:
        cap = ctx.scalar(a["softcap"], q)
        capped = ctx.op("Mul", ctx.op("Tanh", ctx.op("Div", raw, cap)), cap)
    scores = capped
    if mask is not None:
        if ctx.shape_of(mask)[-1] != sk:
            raise GradientError(f"{node_label(node)}: no gradient rule for a mask shorter than the keys yet")
        if ctx.dtype(mask) is DType.bool:
            scores = ctx.op("Where", mask, scores, ctx.scalar(-np.inf, q))
        else:
            scores = ctx.op("Add", scores, mask)
    if a["is_causal"]:
        past = 0 if past_k is None else ctx.shape_of(past_k)[2]
        allowed = (np.arange(sq)[:, None] + past - np.arange(sk)[None, :]) >= 0
        scores = ctx.op("Add", scores, ctx.const(np.where(allowed, 0.0, -np.inf), like=q))
    probs = ctx.op("Softmax", scores, axis=-1)
    y = ctx.op("MatMul", probs, v_)
    if three_d:
        y = ctx.op("Reshape", ctx.op("Transpose", y, perm=[0, 2, 1, 3]), ctx.ints([0, 0, -1]))
    qk = {0: capped, 1: capped, 2: scores, 3: probs}[a["qk_matmul_output_mode"]]
    return [y, pk, pv, qk]


def _swiglu_parts(ctx, node):
    a, b = node.inputs
    gate = ctx.op("Sigmoid", ctx.op("Mul", a, ctx.scalar(node.attrs["alpha"], a)))
    return [ctx.op("Mul", ctx.op("Mul", a, gate), b)]


set_grads({
    "Attention": lambda ctx, node, dys: ctx.by_decomposition(node, dys, _attention_parts),
    "SwiGLU": lambda ctx, node, dys: ctx.by_decomposition(node, dys, _swiglu_parts),
}, {
    "NonMaxSuppression": "its output holds integer indices",
})
set_facts(float_math=("SwiGLU",), weight_inputs={"LSTM": {1, 2, 3}, "GRU": {1, 2, 3}, "RNN": {1, 2, 3}})
