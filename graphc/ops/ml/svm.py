"""Support-vector machines of the ``ai.onnx.ml`` domain: SVMClassifier and SVMRegressor.

skl2onnx emits them for SVC/NuSVC/LinearSVC and SVR/NuSVR/OneClassSVM. Kernels, the libsvm pairwise
voting, Platt probabilities with Wu-Lin-Weng coupling, and the binary score columns follow onnxruntime,
which these models target (ONNX leaves the binary cases open). Scores are float32, as there.
"""
from __future__ import annotations

import numpy as np

from ...errors import ExecutionError, OpAttributeError, node_label
from ...ir import DType, Node
from ..common import tt
from .classic import POST_TRANSFORMS, as_2d
from ..registry import REQUIRED, Attr, InferContext, Kind, OpDef, register

FAMILY = "ml"
DOMAIN = "ai.onnx.ml"
_KERNELS = ("LINEAR", "POLY", "RBF", "SIGMOID")


def _f32(node: Node, name: str) -> np.ndarray:
    return np.asarray(node.attrs.get(name) or [], dtype=np.float32)


def _kernel(node: Node, x: np.ndarray, vectors: np.ndarray, kind: str) -> np.ndarray:
    """K[n, v] = kernel(x[n], vectors[v]); kernel_params are (gamma, coef0, degree)."""
    params = list(node.attrs.get("kernel_params") or [])
    gamma, coef0, degree = (params + [0.0, 0.0, 0.0])[:3] if params else (0.0, 0.0, 0.0)
    if kind == "RBF":
        sq = (x * x).sum(1)[:, None] + (vectors * vectors).sum(1)[None, :] - 2.0 * (x @ vectors.T)
        return np.exp(-np.float32(gamma) * np.maximum(sq, 0)).astype(np.float32)
    dot = x @ vectors.T
    if kind == "LINEAR":
        return dot
    z = np.float32(gamma) * dot + np.float32(coef0)
    return np.power(z, np.float32(degree)) if kind == "POLY" else np.tanh(z)


def _kernel_type(node: Node) -> str:
    k = node.attrs["kernel_type"]
    if k not in _KERNELS:
        raise OpAttributeError(f"{node_label(node)}: kernel_type must be one of {', '.join(_KERNELS)}, got '{k}'")
    return k


def _features(node: Node, x: np.ndarray) -> np.ndarray:
    x = as_2d(np.asarray(x))
    if x.dtype.kind not in "fiu":
        raise ExecutionError(f"{node_label(node)}: input X must be numeric, got {x.dtype}")
    return x.astype(np.float32, copy=False)


def _reshape(node: Node, name: str, values: np.ndarray, rows: int) -> np.ndarray:
    if rows <= 0 or values.size % rows:
        raise ExecutionError(f"{node_label(node)}: {values.size} values of '{name}' do not make {rows} rows")
    return values.reshape(rows, -1)


# ---- SVMRegressor -----------------------------------------------------------------------------
def _svm_regressor_eval(node: Node, x):
    x = _features(node, x)
    coef, rho = _f32(node, "coefficients"), _f32(node, "rho")
    n_sv = node.attrs["n_supports"]
    if not rho.size:
        raise OpAttributeError(f"{node_label(node)}: attribute 'rho' must have one value, got none")
    if n_sv > 0:
        sv = _reshape(node, "support_vectors", _f32(node, "support_vectors"), n_sv)
        if sv.shape[1] != x.shape[1] or coef.size < n_sv:
            raise ExecutionError(f"{node_label(node)}: {n_sv} support vectors of {sv.shape[1]} features and "
                                 f"{coef.size} coefficients do not fit input X of {x.shape[1]} features")
        y = _kernel(node, x, sv, _kernel_type(node)) @ coef[:n_sv] + rho[0]
    else:  # liblinear: one coefficient per feature, linear kernel
        if coef.size != x.shape[1]:
            raise ExecutionError(f"{node_label(node)}: {coef.size} coefficients for input X of {x.shape[1]} features")
        y = x @ coef + rho[0]
    if node.attrs["one_class"]:
        y = np.where(y > 0, 1.0, -1.0)
    return y.astype(np.float32).reshape(-1, 1)


def _rows(ctx: InferContext):
    s = ctx.shape(0)
    if s is None:
        return ctx.fresh()
    return 1 if len(s) <= 1 else s[0]


def _svm_regressor_infer(ctx: InferContext) -> list:
    _check_common(ctx)
    return [tt(DType.float32, (_rows(ctx), 1))]


def _check_common(ctx: InferContext) -> None:
    if ctx.attr("kernel_type") not in _KERNELS:
        ctx.fail(f"kernel_type must be one of {', '.join(_KERNELS)}, got '{ctx.attr('kernel_type')}'")
    if ctx.attr("post_transform") not in POST_TRANSFORMS:
        ctx.fail(f"post_transform must be one of {', '.join(POST_TRANSFORMS)}, got '{ctx.attr('post_transform')}'")
    if ctx.dtype(0) is not None and not (ctx.dtype(0).is_float or ctx.dtype(0).is_int):
        ctx.fail(f"input X must be numeric, got {ctx.dtype(0).name}")


_COMMON = {"coefficients": Attr("floats", REQUIRED), "kernel_params": Attr("floats"),
           "kernel_type": Attr("string", "LINEAR"), "post_transform": Attr("string", "NONE"),
           "rho": Attr("floats", REQUIRED), "support_vectors": Attr("floats")}

register(OpDef("SVMRegressor", eval=_svm_regressor_eval, infer=_svm_regressor_infer, domain=DOMAIN, family=FAMILY,
               kind=Kind.OPAQUE, inputs=(1, 1), outputs=(1, 1),
               attrs={**_COMMON, "n_supports": Attr("int", 0), "one_class": Attr("int", 0)},
               doc="Support-vector regression (or one-class SVM): one score per row."))


# ---- SVMClassifier ----------------------------------------------------------------------------
def _labels(node: Node) -> np.ndarray:
    ints, strs = node.attrs.get("classlabels_ints"), node.attrs.get("classlabels_strings")
    if not ints and not strs:
        raise OpAttributeError(f"{node_label(node)}: one of classlabels_ints and classlabels_strings must be set")
    return np.array(strs, dtype=object) if strs else np.array(ints, dtype=np.int64)


def _score_width(node: Node, n_classes: int) -> int:
    """Score columns: one per class (linear, or with probabilities), else one per class pair (two if binary)."""
    svc = sum(node.attrs.get("vectors_per_class") or []) > 0
    if svc and not node.attrs.get("prob_a"):
        return n_classes * (n_classes - 1) // 2 if n_classes > 2 else 2
    return n_classes


def _pairwise(node: Node, x: np.ndarray, n_classes: int):
    """libsvm one-vs-one decision values [N, pairs] and the votes each class gets [N, classes]."""
    per_class = [int(v) for v in node.attrs["vectors_per_class"]]
    if len(per_class) != n_classes:
        raise OpAttributeError(f"{node_label(node)}: vectors_per_class has {len(per_class)} entries for "
                               f"{n_classes} class labels")
    n_sv = sum(per_class)
    sv = _reshape(node, "support_vectors", _f32(node, "support_vectors"), n_sv)
    coef, rho = _f32(node, "coefficients"), _f32(node, "rho")
    n_pairs = n_classes * (n_classes - 1) // 2
    if sv.shape[1] != x.shape[1] or coef.size < (n_classes - 1) * n_sv or rho.size < n_pairs:
        raise ExecutionError(f"{node_label(node)}: {n_sv} support vectors of {sv.shape[1]} features, "
                             f"{coef.size} coefficients and {rho.size} rho values do not fit {n_classes} classes "
                             f"and input X of {x.shape[1]} features")
    coef = coef[:(n_classes - 1) * n_sv].reshape(n_classes - 1, n_sv)
    k = _kernel(node, x, sv, _kernel_type(node)).astype(np.float64)
    start = np.concatenate([[0], np.cumsum(per_class)])
    scores = np.empty((x.shape[0], n_pairs), dtype=np.float64)
    votes = np.zeros((x.shape[0], n_classes), dtype=np.int64)
    e = 0
    for i in range(n_classes):
        si = slice(start[i], start[i + 1])
        for j in range(i + 1, n_classes):
            sj = slice(start[j], start[j + 1])
            s = k[:, si] @ coef[j - 1, si] + k[:, sj] @ coef[i, sj] + rho[e]
            scores[:, e] = s
            votes[:, i] += s > 0
            votes[:, j] += s <= 0
            e += 1
    return scores.astype(np.float32), votes


def _couple(pairs: np.ndarray, n_classes: int, prob_a: np.ndarray, prob_b: np.ndarray) -> np.ndarray:
    """Class probabilities [N, classes] from pairwise decision values, row by row in float32 as onnxruntime:
    Platt's sigmoid per pair, then the iterative coupling of Wu, Lin and Weng (libsvm's method 2)."""
    n = pairs.shape[0]
    z = pairs * prob_a[:pairs.shape[1]] + prob_b[:pairs.shape[1]]
    e = np.exp(-np.abs(z))
    sig = np.where(z < 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.float32)  # 1 - logistic(z), stably
    r = np.zeros((n, n_classes, n_classes), dtype=np.float32)
    e = 0
    for i in range(n_classes):
        for j in range(i + 1, n_classes):
            v = np.clip(sig[:, e], np.float32(1e-7), np.float32(1 - 1e-7))
            r[:, i, j], r[:, j, i] = v, 1 - v
            e += 1
    q = np.zeros_like(r)
    for t in range(n_classes):
        q[:, t, t] = (r[:, :, t] ** 2).sum(axis=1) - r[:, t, t] ** 2
        for j in range(n_classes):
            if j != t:
                q[:, t, j] = -r[:, j, t] * r[:, t, j]
    p = np.full((n, n_classes), 1.0 / n_classes, dtype=np.float32)
    eps = np.float32(0.005 / n_classes)
    active = np.ones(n, dtype=bool)
    for _ in range(100):
        qp = np.einsum("nij,nj->ni", q, p)
        pqp = (p * qp).sum(axis=1)
        active &= np.abs(qp - pqp[:, None]).max(axis=1) >= eps
        if not active.any():
            break
        a = active
        for t in range(n_classes):
            diff = (-qp[a, t] + pqp[a]) / q[a, t, t]
            p[a, t] += diff
            pqp[a] = (pqp[a] + diff * (diff * q[a, t, t] + 2 * qp[a, t])) / (1 + diff) / (1 + diff)
            qp[a] = (qp[a] + diff[:, None] * q[a, t, :]) / (1 + diff)[:, None]
            p[a] /= (1 + diff)[:, None]
    return p


def _svm_classifier_eval(node: Node, x):
    x = _features(node, x)
    labels = _labels(node)
    n_classes = len(labels)
    post = node.attrs["post_transform"]
    coef = _f32(node, "coefficients")
    all_positive = bool((coef >= 0).all())
    prob_a, prob_b = _f32(node, "prob_a"), _f32(node, "prob_b")
    if prob_a.size != prob_b.size:
        raise OpAttributeError(f"{node_label(node)}: prob_a has {prob_a.size} values but prob_b {prob_b.size}")
    if sum(node.attrs.get("vectors_per_class") or []) > 0:
        pairs, votes = _pairwise(node, x, n_classes)
        winner = np.argmax(votes, axis=1)
        best = np.zeros(len(x), dtype=np.float32)  # onnxruntime's label rule sees no weight when voting
        scores = _couple(pairs, n_classes, prob_a, prob_b) if prob_a.size else pairs
    else:  # liblinear: one coefficient row per class, all offset by rho[0]
        rho = _f32(node, "rho")
        if coef.size != n_classes * x.shape[1] or not rho.size:
            raise ExecutionError(f"{node_label(node)}: {coef.size} coefficients and {rho.size} rho values do not "
                                 f"make {n_classes} rows for input X of {x.shape[1]} features")
        scores = x @ coef.reshape(n_classes, -1).T + rho[0]
        winner = np.argmax(scores, axis=1)
        best = scores[np.arange(len(x)), winner]
    if n_classes == 2 and not prob_a.size:
        positive = (best >= 0.5) if all_positive else (best > 0)
        winner = np.where(positive, 1, winner)
    if scores.shape[1] == 1 and n_classes == 2:  # one pairwise score s: [-s, s], or [1 - p, p] for p = post(s)
        s = scores[:, 0].astype(np.float64)
        p = 1.0 / (1.0 + np.exp(-s)) if post == "LOGISTIC" else s  # softmax of one score is left as it is
        out = np.stack([-s, s], axis=1) if post == "NONE" else np.stack([1 - p, p], axis=1)
        if post == "PROBIT":
            raise ExecutionError(f"{node_label(node)}: post_transform PROBIT on a binary SVC without "
                                 f"probabilities is not supported")
    elif post == "SOFTMAX_ZERO":
        out = _softmax_zero_ort(scores)
    elif post == "PROBIT":
        out = _probit_f32(scores)
    else:
        out = POST_TRANSFORMS[post](scores.astype(np.float64))
    return labels[winner], np.asarray(out, dtype=np.float32)


def _probit_f32(p: np.ndarray) -> np.ndarray:
    """sqrt(2) * erfinv(2p - 1) with Winitzki's approximation, in float32 step by step as onnxruntime
    computes it: near p = 0.5 its cancellation costs ~1e-4, which this reproduces rather than avoids."""
    f = np.float32
    x = f(2) * p.astype(f) - f(1)
    sign = np.where(x < 0, f(-1), f(1))
    with np.errstate(divide="ignore", invalid="ignore"):
        ln = np.log((f(1) - x) * (f(1) + x))
        v = f(2) / (f(3.14159) * f(0.147)) + f(0.5) * ln
        w = f(1) / f(0.147) * ln
        return f(np.sqrt(2)) * sign * np.sqrt(-v + np.sqrt(v * v - w))


def _softmax_zero_ort(s: np.ndarray) -> np.ndarray:
    """onnxruntime's SOFTMAX_ZERO: an entry within 1e-7 of zero (a clipped probability, say) is not
    exponentiated but scaled by exp(-max), so it stays near zero."""
    s = s.astype(np.float64)
    m = s.max(axis=1, keepdims=True)
    nz = np.abs(s) > 1e-7
    e = np.where(nz, np.exp(s - m), s * np.exp(-m))
    return e / np.where(nz, e, 0).sum(axis=1, keepdims=True)


def _svm_classifier_infer(ctx: InferContext) -> list:
    _check_common(ctx)
    try:
        labels = _labels(ctx.node)
    except OpAttributeError as e:
        ctx.fail(str(e).split(": ", 1)[-1])
    n = _rows(ctx)
    dt = DType.string if labels.dtype == object else DType.int64
    return [tt(dt, (n,)), tt(DType.float32, (n, _score_width(ctx.node, len(labels))))]


register(OpDef("SVMClassifier", eval=_svm_classifier_eval, infer=_svm_classifier_infer, domain=DOMAIN,
               family=FAMILY, kind=Kind.OPAQUE, inputs=(1, 1), outputs=(1, 2),
               attrs={**_COMMON, "classlabels_ints": Attr("ints"), "classlabels_strings": Attr("strings"),
                      "prob_a": Attr("floats"), "prob_b": Attr("floats"), "vectors_per_class": Attr("ints")},
               doc="Support-vector classification: top class and scores (pairwise, or class probabilities)."))
