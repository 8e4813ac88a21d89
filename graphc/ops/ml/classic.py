"""Classic machine-learning operators of the ``ai.onnx.ml`` domain (what sklearn converters emit).

LabelEncoder, the tree ensembles (TreeEnsemble and the older TreeEnsembleRegressor/Classifier),
linear models, and the small preprocessing ops (Binarizer, Scaler, Normalizer, Imputer,
OneHotEncoder, ArrayFeatureExtractor, FeatureVectorizer). Where ONNX leaves a detail open
(binary classifiers, zero divisors), the behaviour follows onnxruntime, which these models target.
"""
from __future__ import annotations

import math

import numpy as np

from ...errors import ExecutionError, OpAttributeError, node_label
from ...ir import DType, Graph, Node, TensorType
from ...ir.dims import dim_from_factors, product_of
from ..common import tt
from ..registry import REQUIRED, Attr, InferContext, Kind, OpDef, register

FAMILY = "ml"
DOMAIN = "ai.onnx.ml"
_NUMERIC = (DType.float32, DType.float64, DType.int64, DType.int32)


def as_2d(x: np.ndarray) -> np.ndarray:
    """The ML ops see a 1-D input as one row."""
    return x.reshape(1, -1) if x.ndim == 1 else x


def _rows_infer(out_dtype, width=None):
    """Output [N, width] (width: a function of ctx, or None for the input's last dim)."""

    def infer(ctx: InferContext) -> list:
        s = ctx.shape(0)
        n = None if s is None else (1 if len(s) == 1 else s[0] if len(s) >= 1 else 1)
        w = width(ctx) if width is not None else (None if s is None or not s else s[-1])
        dt = out_dtype(ctx) if callable(out_dtype) else out_dtype
        if s is None:
            return [tt(dt, None if w is None else (ctx.fresh(), w))]
        return [tt(dt, (n, w if w is not None else ctx.fresh()))]

    return infer


# ---- post transforms (shared by the classifiers and regressors) ---------------------------------
def _probit(p: np.ndarray) -> np.ndarray:
    """sqrt(2) * erfinv(2p - 1), with Winitzki's erfinv approximation as onnxruntime computes it."""
    x = 2.0 * np.asarray(p, dtype=np.float64) - 1.0
    ln = np.log((1.0 - x) * (1.0 + x))
    a = 2.0 / (np.pi * 0.147) + 0.5 * ln
    return np.sqrt(2.0) * np.sign(x) * np.sqrt(-a + np.sqrt(a * a - ln / 0.147))


def _softmax(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _softmax_zero(s: np.ndarray) -> np.ndarray:
    """Softmax over the non-zero scores of each row; zeros stay zero."""
    nz = s != 0
    m = np.where(nz, s, -np.inf).max(axis=1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    e = np.where(nz, np.exp(s - m), 0)
    tot = e.sum(axis=1, keepdims=True)
    return np.where(tot > 0, e / np.where(tot > 0, tot, 1), 0)


#: The classifiers' and regressors' post transforms of their scores, by name (svm.py's too).
POST_TRANSFORMS = {"NONE": lambda s: s, "LOGISTIC": lambda s: 1.0 / (1.0 + np.exp(-s)), "SOFTMAX": _softmax,
         "SOFTMAX_ZERO": _softmax_zero, "PROBIT": _probit}
_POST_BY_ID = ["NONE", "SOFTMAX", "LOGISTIC", "SOFTMAX_ZERO", "PROBIT"]


def _post_transform(node: Node, scores: np.ndarray, name) -> np.ndarray:
    if isinstance(name, int):
        if not 0 <= name < len(_POST_BY_ID):
            raise OpAttributeError(f"{node_label(node)}: post_transform must be 0..4, got {name}")
        name = _POST_BY_ID[name]
    fn = POST_TRANSFORMS.get(name)
    if fn is None:
        raise OpAttributeError(f"{node_label(node)}: post_transform must be one of {', '.join(POST_TRANSFORMS)}, "
                               f"got '{name}'")
    return fn(scores)


# ---- LabelEncoder -----------------------------------------------------------------------------
def _label_encoder_table(node: Node):
    """(keys, values, default, out numpy dtype) from whichever keys_*/values_*/default_* are set."""
    a = node.attrs
    keys = [a[k] for k in ("keys_tensor", "keys_strings", "keys_int64s", "keys_floats") if a.get(k) is not None]
    vals = [(k, a[k]) for k in ("values_tensor", "values_strings", "values_int64s", "values_floats")
            if a.get(k) is not None]
    if len(keys) != 1 or len(vals) != 1:
        raise OpAttributeError(f"{node_label(node)}: exactly one keys_* and one values_* attribute must be set, got "
                               f"{len(keys)} and {len(vals)}")
    vname, values = vals[0]
    if vname == "values_tensor":
        out_dtype = values.dtype
        values = values.reshape(-1)
    else:
        out_dtype = {"values_strings": np.dtype(object), "values_int64s": np.dtype(np.int64),
                     "values_floats": np.dtype(np.float32)}[vname]
        values = np.array(values, dtype=out_dtype)
    keys = np.asarray(keys[0]).reshape(-1)
    if len(keys) != len(values):
        raise OpAttributeError(f"{node_label(node)}: {len(keys)} keys but {len(values)} values")
    if a.get("default_tensor") is not None:
        default = np.asarray(a["default_tensor"]).reshape(-1)[0]
    elif out_dtype == object:
        default = a["default_string"]
    elif out_dtype.kind in "iu":
        default = a["default_int64"]
    else:
        default = a["default_float"]
    return keys, values, default, out_dtype


def _label_encoder_eval(node: Node, x):
    keys, values, default, out_dtype = _label_encoder_table(node)
    uniq, inv = np.unique(x.reshape(-1), return_inverse=True)
    if x.dtype == object or keys.dtype == object:
        table = {(k.decode() if isinstance(k, bytes) else k): v for k, v in zip(keys.tolist(), values.tolist())}
        mapped = [table.get(u.decode() if isinstance(u, bytes) else u, default) for u in uniq.tolist()]
        out_u = np.array(mapped, dtype=out_dtype) if mapped else np.zeros(0, dtype=out_dtype)
    else:
        keys = keys.astype(x.dtype, copy=False)
        # the last of repeated keys wins: keep last occurrences, then look up by sorted search
        rk, rv = keys[::-1], values[::-1]
        _, first = np.unique(rk, return_index=True)
        sk, sv = rk[first], rv[first]
        pos = np.clip(np.searchsorted(sk, uniq), 0, max(len(sk) - 1, 0))
        if len(sk):
            hit = sk[pos] == uniq
            if x.dtype.kind == "f":
                nan_keys = np.isnan(sk)
                if nan_keys.any():
                    hit |= np.isnan(uniq)
                    pos = np.where(np.isnan(uniq), np.flatnonzero(nan_keys)[0], pos)
            out_u = np.where(hit, sv[pos], np.array(default, dtype=out_dtype))
        else:
            out_u = np.full(len(uniq), default, dtype=out_dtype)
        out_u = out_u.astype(out_dtype, copy=False)
    return out_u[inv].reshape(x.shape)


def _label_encoder_infer(ctx: InferContext) -> list:
    try:
        _, _, _, out_dtype = _label_encoder_table(ctx.node)
    except OpAttributeError as e:
        ctx.fail(str(e).split(": ", 1)[-1])
    dt = DType.string if out_dtype == object else DType.from_np(out_dtype)
    return [tt(dt, ctx.shape(0))]


def _label_encoder_upgrade_1(node: Node, graph: Graph) -> None:
    """Opset 1 mapped strings to their index in ``classes_strings`` (or back, for integer input)."""
    classes = node.attrs.pop("classes_strings", None)
    if classes is None:
        return
    t = node.inputs[0].type if node.inputs and node.inputs[0] is not None else None
    if isinstance(t, TensorType) and t.dtype is not None and t.dtype != DType.string:
        node.attrs["keys_int64s"] = list(range(len(classes)))
        node.attrs["values_strings"] = classes
    else:
        node.attrs["keys_strings"] = classes
        node.attrs["values_int64s"] = list(range(len(classes)))


register(OpDef("LabelEncoder", eval=_label_encoder_eval, infer=_label_encoder_infer, domain=DOMAIN, family=FAMILY,
               kind=Kind.ELEMENTWISE, inputs=(1, 1), outputs=(1, 1), upgrades={2: _label_encoder_upgrade_1},
               attrs={"default_float": Attr("float", -0.0), "default_int64": Attr("int", -1),
                      "default_string": Attr("string", "_Unused"), "default_tensor": Attr("tensor"),
                      "keys_floats": Attr("floats"), "keys_int64s": Attr("ints"), "keys_strings": Attr("strings"),
                      "keys_tensor": Attr("tensor"), "values_floats": Attr("floats"),
                      "values_int64s": Attr("ints"), "values_strings": Attr("strings"),
                      "values_tensor": Attr("tensor")},
               doc="Maps each element through a key/value table, with a default for missing keys."))


# ---- tree ensembles ---------------------------------------------------------------------------
_LEAF = 7
#: The branch comparisons in the order of their mode ids (``_Forest.mode``), and a leaf's mode id.
BRANCH_MODES = ("BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ", "BRANCH_MEMBER")
LEAF_MODE = _LEAF
_MODE_IDS = {"BRANCH_LEQ": 0, "BRANCH_LT": 1, "BRANCH_GTE": 2, "BRANCH_GT": 3, "BRANCH_EQ": 4,
             "BRANCH_NEQ": 5, "BRANCH_MEMBER": 6, "LEAF": _LEAF}


class _Forest:
    """Trees flattened into arrays, walked for all rows and trees at once (one step per depth level).

    Nodes: ``feature``, ``threshold``, ``mode`` (0..6, or _LEAF), ``true``/``false`` child indices,
    ``missing_true``; ``members[i]`` is the set of a BRANCH_MEMBER node; ``roots`` one per tree.
    Leaf votes: a dense (node, target) weight table and a mask of which (node, target) has a vote.
    """

    def __init__(self, feature, threshold, mode, true, false, missing_true, roots, members,
                 vote_node, vote_target, vote_weight, n_targets):
        self.feature = np.asarray(feature, dtype=np.int64)
        self.threshold = np.asarray(threshold, dtype=np.float64)
        self.mode = np.asarray(mode, dtype=np.int64)
        self.true = np.asarray(true, dtype=np.int64)
        self.false = np.asarray(false, dtype=np.int64)
        self.missing_true = np.asarray(missing_true, dtype=bool)
        self.roots = np.asarray(roots, dtype=np.int64)
        self.members = members
        n = len(self.mode)
        self.n_targets = n_targets
        vote_node = np.asarray(vote_node, dtype=np.int64)
        vote_target = np.asarray(vote_target, dtype=np.int64)
        vote_weight = np.asarray(vote_weight, dtype=np.float64)
        self.vote_node, self.vote_target, self.vote_weight = vote_node, vote_target, vote_weight
        self.weights = np.zeros((n, n_targets))
        np.add.at(self.weights, (vote_node, vote_target), vote_weight)
        self.has = np.zeros((n, n_targets), dtype=bool)
        self.has[vote_node, vote_target] = True

    def leaves(self, x: np.ndarray) -> np.ndarray:
        """Index of the leaf each row reaches in each tree: [N, n_trees]."""
        x = np.asarray(x, dtype=np.float64)
        n = x.shape[0]
        idx = np.broadcast_to(self.roots, (n, len(self.roots))).copy()
        for _ in range(len(self.mode) + 1):
            mode = self.mode[idx]
            active = mode != _LEAF
            if not active.any():
                return idx
            r, t = np.nonzero(active)
            nodes = idx[r, t]
            v = x[r, self.feature[nodes]]
            thr = self.threshold[nodes]
            m = mode[r, t]
            cond = np.select([m == 0, m == 1, m == 2, m == 3, m == 4, m == 5],
                             [v <= thr, v < thr, v >= thr, v > thr, v == thr, v != thr], False)
            for k in np.flatnonzero(m == 6):
                cond[k] = v[k] in self.members[nodes[k]]
            cond = np.where(np.isnan(v), self.missing_true[nodes], cond)
            idx[r, t] = np.where(cond, self.true[nodes], self.false[nodes])
        raise ExecutionError("tree ensemble: a tree has a cycle (a walk visited more nodes than the tree has)")

    def scores(self, x: np.ndarray, aggregate: str) -> tuple[np.ndarray, np.ndarray]:
        """Aggregated leaf votes per row and target, and whether any vote reached that (row, target)."""
        leaves = self.leaves(x)
        n = leaves.shape[0]
        has = np.zeros((n, self.n_targets), dtype=bool)
        if aggregate in ("SUM", "AVERAGE"):
            out = np.zeros((n, self.n_targets))
            for t in range(leaves.shape[1]):
                out += self.weights[leaves[:, t]]
                has |= self.has[leaves[:, t]]
            if aggregate == "AVERAGE" and leaves.shape[1]:
                out /= leaves.shape[1]
            return out, has
        # MIN / MAX go vote by vote (a leaf may hold several votes for one target)
        pick = np.minimum if aggregate == "MIN" else np.maximum
        out = np.full((n, self.n_targets), np.inf if aggregate == "MIN" else -np.inf)
        leaf_set = leaves.reshape(-1)
        order = np.argsort(self.vote_node, kind="stable")
        vn, vt, vw = self.vote_node[order], self.vote_target[order], self.vote_weight[order]
        starts = np.searchsorted(vn, leaf_set, "left")
        ends = np.searchsorted(vn, leaf_set, "right")
        row_of = np.repeat(np.arange(n), leaves.shape[1])
        counts = ends - starts
        sel = np.repeat(starts, counts) + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
        r = np.repeat(row_of, counts)
        pick.at(out, (r, vt[sel]), vw[sel])
        has[r, vt[sel]] = True
        return np.where(has, out, 0.0), has


def _forest_from_v5(node: Node) -> _Forest:
    a = node.attrs
    modes = np.asarray(a["nodes_modes"]).reshape(-1).astype(np.int64)
    n = len(modes)
    n_leaves = len(a["leaf_targetids"])
    for name in ("nodes_featureids", "nodes_truenodeids", "nodes_falsenodeids", "nodes_trueleafs",
                 "nodes_falseleafs"):
        if len(a[name]) != n:
            raise OpAttributeError(f"{node_label(node)}: {name} has {len(a[name])} entries, nodes_modes has {n}")
    splits = np.asarray(a["nodes_splits"]).reshape(-1).astype(np.float64)
    true = np.asarray(a["nodes_truenodeids"]) + n * np.asarray(a["nodes_trueleafs"], dtype=np.int64)
    false = np.asarray(a["nodes_falsenodeids"]) + n * np.asarray(a["nodes_falseleafs"], dtype=np.int64)
    members: dict[int, set] = {}
    if (modes == 6).any():
        mv = np.asarray(a.get("membership_values")).reshape(-1).astype(np.float64)
        groups, cur = [], []
        for v in mv:
            if np.isnan(v):
                groups.append(cur)
                cur = []
            else:
                cur.append(float(v))
        if cur:
            groups.append(cur)
        for k, i in enumerate(np.flatnonzero(modes == 6)):
            members[int(i)] = set(groups[k]) if k < len(groups) else set()
    missing = a.get("nodes_missing_value_tracks_true") or [0] * n
    pad = n_leaves
    feature = list(a["nodes_featureids"]) + [0] * pad
    threshold = list(splits) + [0.0] * pad
    mode = list(modes) + [_LEAF] * pad
    leaf_ids = np.arange(n, n + n_leaves)
    weights = np.asarray(a["leaf_weights"]).reshape(-1).astype(np.float64)
    n_targets = a.get("n_targets") or (max(a["leaf_targetids"]) + 1 if n_leaves else 1)
    return _Forest(feature, threshold, mode, list(true) + [0] * pad, list(false) + [0] * pad,
                   list(missing) + [0] * pad, a["tree_roots"], members, leaf_ids, a["leaf_targetids"], weights,
                   n_targets)


def _tree_ensemble_eval(node: Node, x):
    forest = _forest_from_v5(node)
    agg = ["AVERAGE", "SUM", "MIN", "MAX"][node.attrs["aggregate_function"]]
    scores, _ = forest.scores(as_2d(x), agg)
    out = _post_transform(node, scores, node.attrs["post_transform"])
    return out.astype(x.dtype)


def _tree_ensemble_infer(ctx: InferContext) -> list:
    a = ctx.node.attrs
    n_targets = a.get("n_targets")
    if n_targets is None:
        n_targets = max(a["leaf_targetids"]) + 1 if a["leaf_targetids"] else None
    if not 0 <= a["aggregate_function"] <= 3:
        ctx.fail(f"aggregate_function must be 0..3, got {a['aggregate_function']}")
    if not 0 <= a["post_transform"] <= 4:
        ctx.fail(f"post_transform must be 0..4, got {a['post_transform']}")
    return _rows_infer(lambda c: c.dtype(0), lambda c: n_targets)(ctx)


register(OpDef("TreeEnsemble", eval=_tree_ensemble_eval, infer=_tree_ensemble_infer, domain=DOMAIN, family=FAMILY,
               kind=Kind.OPAQUE, inputs=(1, 1), outputs=(1, 1),
               attrs={"aggregate_function": Attr("int", 1), "leaf_targetids": Attr("ints", REQUIRED),
                      "leaf_weights": Attr("tensor", REQUIRED), "membership_values": Attr("tensor"),
                      "n_targets": Attr("int"), "nodes_falseleafs": Attr("ints", REQUIRED),
                      "nodes_falsenodeids": Attr("ints", REQUIRED), "nodes_featureids": Attr("ints", REQUIRED),
                      "nodes_hitrates": Attr("tensor"), "nodes_missing_value_tracks_true": Attr("ints"),
                      "nodes_modes": Attr("tensor", REQUIRED), "nodes_splits": Attr("tensor", REQUIRED),
                      "nodes_trueleafs": Attr("ints", REQUIRED), "nodes_truenodeids": Attr("ints", REQUIRED),
                      "post_transform": Attr("int", 0), "tree_roots": Attr("ints", REQUIRED)},
               doc="A forest of decision trees; leaf weights are aggregated per target."))


def _forest_from_legacy(node: Node, prefix: str, n_targets: int) -> _Forest:
    """TreeEnsembleRegressor/Classifier: nodes keyed by (tree id, node id), votes ``{prefix}_*``."""
    a = node.attrs
    tree_ids = list(a.get("nodes_treeids") or [])
    node_ids = list(a.get("nodes_nodeids") or [])
    n = len(tree_ids)
    pos = {(t, i): k for k, (t, i) in enumerate(zip(tree_ids, node_ids))}
    values = a.get("nodes_values_as_tensor")
    values = np.asarray(values, dtype=np.float64).reshape(-1) if values is not None else \
        np.asarray(a.get("nodes_values") or [0.0] * n, dtype=np.float64)
    modes = [_MODE_IDS.get(m) for m in (a.get("nodes_modes") or [])]
    if len(modes) != n or any(m is None for m in modes):
        raise OpAttributeError(f"{node_label(node)}: nodes_modes must give one of {', '.join(_MODE_IDS)} "
                               f"for each of the {n} nodes")
    true = [pos.get((t, c), 0) for t, c in zip(tree_ids, a.get("nodes_truenodeids") or [0] * n)]
    false = [pos.get((t, c), 0) for t, c in zip(tree_ids, a.get("nodes_falsenodeids") or [0] * n)]
    missing = a.get("nodes_missing_value_tracks_true") or [0] * n
    roots, seen = [], set()
    for k, t in enumerate(tree_ids):  # a tree's root: its first listed node
        if t not in seen:
            seen.add(t)
            roots.append(k)
    if (a.get("nodes_featureids") is None) or len(a["nodes_featureids"]) != n:
        raise OpAttributeError(f"{node_label(node)}: nodes_featureids must have one entry per node ({n})")
    vt, vn = a.get(f"{prefix}_treeids") or [], a.get(f"{prefix}_nodeids") or []
    weights = a.get(f"{prefix}_weights_as_tensor")
    weights = np.asarray(weights, dtype=np.float64).reshape(-1) if weights is not None else \
        np.asarray(a.get(f"{prefix}_weights") or [], dtype=np.float64)
    vote_node = [pos[(t, i)] for t, i in zip(vt, vn)]
    return _Forest(a["nodes_featureids"], values, modes, true, false, missing, roots, {},
                   vote_node, a.get(f"{prefix}_ids") or [], weights, n_targets)


def _base_values(node: Node) -> np.ndarray | None:
    b = node.attrs.get("base_values_as_tensor")
    if b is None:
        b = node.attrs.get("base_values")
    return None if b is None or len(b) == 0 else np.asarray(b, dtype=np.float64).reshape(-1)


def _tree_regressor_eval(node: Node, x):
    a = node.attrs
    n_targets = a.get("n_targets") or (max(a.get("target_ids") or [0]) + 1)
    forest = _forest_from_legacy(node, "target", n_targets)
    scores, _ = forest.scores(as_2d(x), a["aggregate_function"])
    base = _base_values(node)
    if base is not None:
        scores = scores + (base if len(base) == n_targets else base[0])
    return _post_transform(node, scores, a["post_transform"]).astype(np.float32)


def _legacy_tree_attrs(**extra) -> dict:
    attrs = {"base_values": Attr("floats"), "base_values_as_tensor": Attr("tensor"),
             "nodes_falsenodeids": Attr("ints"), "nodes_featureids": Attr("ints"), "nodes_hitrates": Attr("floats"),
             "nodes_hitrates_as_tensor": Attr("tensor"), "nodes_missing_value_tracks_true": Attr("ints"),
             "nodes_modes": Attr("strings"), "nodes_nodeids": Attr("ints"), "nodes_treeids": Attr("ints"),
             "nodes_truenodeids": Attr("ints"), "nodes_values": Attr("floats"),
             "nodes_values_as_tensor": Attr("tensor"), "post_transform": Attr("string", "NONE")}
    attrs.update(extra)
    return attrs


def _check_post(ctx: InferContext) -> None:
    p = ctx.attr("post_transform")
    if p not in POST_TRANSFORMS:
        ctx.fail(f"post_transform must be one of {', '.join(POST_TRANSFORMS)}, got '{p}'")


def _tree_regressor_infer(ctx: InferContext) -> list:
    _check_post(ctx)
    if ctx.attr("aggregate_function") not in ("SUM", "AVERAGE", "MIN", "MAX"):
        ctx.fail(f"aggregate_function must be SUM, AVERAGE, MIN or MAX, got '{ctx.attr('aggregate_function')}'")
    n = ctx.attr("n_targets") or (max(ctx.attr("target_ids") or [0]) + 1)
    return _rows_infer(DType.float32, lambda c: n)(ctx)


register(OpDef("TreeEnsembleRegressor", eval=_tree_regressor_eval, infer=_tree_regressor_infer, domain=DOMAIN,
               family=FAMILY, kind=Kind.OPAQUE, inputs=(1, 1), outputs=(1, 1),
               attrs=_legacy_tree_attrs(aggregate_function=Attr("string", "SUM"), n_targets=Attr("int"),
                                        target_ids=Attr("ints"), target_nodeids=Attr("ints"),
                                        target_treeids=Attr("ints"), target_weights=Attr("floats"),
                                        target_weights_as_tensor=Attr("tensor")),
               doc="Tree-ensemble regression (deprecated form of TreeEnsemble)."))


def _class_labels(node: Node):
    ints, strs = node.attrs.get("classlabels_int64s"), node.attrs.get("classlabels_strings")
    if (ints is None) == (strs is None):
        raise OpAttributeError(f"{node_label(node)}: exactly one of classlabels_int64s and classlabels_strings "
                               f"must be set")
    return np.array(ints, dtype=np.int64) if ints is not None else np.array(strs, dtype=object)


def _one_score_columns(post: str, v: np.ndarray, all_positive: bool) -> np.ndarray:
    """Two score columns from the single score of a binary model, as onnxruntime writes them:
    [1 - p, p] for all-positive vote weights (p = logistic(v) or v), else [-v, v] (logistic of each
    for LOGISTIC). Other transforms are not applied to a single score."""
    if all_positive:
        p = 1.0 / (1.0 + np.exp(-v)) if post == "LOGISTIC" else v
        return np.stack([1.0 - p, p], axis=1)
    if post == "LOGISTIC":
        return np.stack([1.0 / (1.0 + np.exp(v)), 1.0 / (1.0 + np.exp(-v))], axis=1)
    return np.stack([-v, v], axis=1)


def _tree_classifier_binary(node: Node, forest: _Forest, scores, has, base, post: str):
    """Two classes: onnxruntime's rules for base values, the label threshold and the score columns."""
    s0, s1, h0, h1 = scores[:, 0], scores[:, 1], has[:, 0], has[:, 1]
    binary = len(set(node.attrs.get("class_ids") or [])) == 1
    all_positive = bool((forest.vote_weight >= 0).all())
    if base is not None and len(base) == 2:
        both = h1.copy()
        s1 = np.where(both, base[1] + s0, 0.0)  # a class without votes scores 0 (its base is dropped)
        s0 = np.where(both, -s1, s0 + base[0])
        single = np.zeros_like(h1)
    else:
        if base is not None and len(base) == 1:
            s0 = s0 + base[0]
        single = ~h1
    pos = np.where(h1 & ~single, s1, np.where(h0 | single, s0, 0.0))
    positive = pos > (0.5 if binary and all_positive else 0.0)
    two = np.stack([s0, np.where(h1 | ~single, s1, 0.0)], axis=1)
    full = POST_TRANSFORMS[post](two) if post != "NONE" else two
    if binary and (single.any()):
        one = _one_score_columns(post, s0, all_positive)
        full = np.where(single[:, None], one, full)
    return positive, full


def _tree_classifier_eval(node: Node, x):
    labels = _class_labels(node)
    n_classes = len(labels)
    forest = _forest_from_legacy(node, "class", n_classes)
    scores, has = forest.scores(as_2d(x), "SUM")
    base = _base_values(node)
    post = node.attrs["post_transform"]
    if n_classes == 2:
        positive, out = _tree_classifier_binary(node, forest, scores, has, base, post)
        return labels[positive.astype(np.int64)], out.astype(np.float32)
    if base is not None:
        scores = scores + base
        has = has | True
    winner = np.argmax(np.where(has, scores, -np.inf), axis=1)
    out = _post_transform(node, scores, post)
    return labels[winner], out.astype(np.float32)


def _classifier_infer(ctx: InferContext) -> list:
    _check_post(ctx)
    try:
        labels = _class_labels(ctx.node)
    except OpAttributeError as e:
        ctx.fail(str(e).split(": ", 1)[-1])
    dt = DType.int64 if labels.dtype != object else DType.string
    s = ctx.shape(0)
    n = None if s is None else (1 if len(s) <= 1 else s[0])
    n = n if n is not None else ctx.fresh()
    return [tt(dt, (n,)), tt(DType.float32, (n, len(labels)))]


register(OpDef("TreeEnsembleClassifier", eval=_tree_classifier_eval, infer=_classifier_infer, domain=DOMAIN,
               family=FAMILY, kind=Kind.OPAQUE, inputs=(1, 1), outputs=(1, 2),
               attrs=_legacy_tree_attrs(class_ids=Attr("ints"), class_nodeids=Attr("ints"),
                                        class_treeids=Attr("ints"), class_weights=Attr("floats"),
                                        class_weights_as_tensor=Attr("tensor"), classlabels_int64s=Attr("ints"),
                                        classlabels_strings=Attr("strings")),
               doc="Tree-ensemble classification: top class and per-class scores."))


def tree_ensemble_spec(node: Node) -> dict:
    """What a compiled kernel needs to compute a tree-ensemble node as the evaluations above do: ``forest``
    (the flattened trees), ``aggregate`` (SUM/AVERAGE/MIN/MAX), ``base`` (base values or None), ``post`` (the
    post transform's name), ``labels`` (a classifier's class labels, None for a regressor) and
    ``binary``/``all_positive`` (a two-class classifier's rules, see ``_tree_classifier_binary``). In
    ``forest.mode``, branch modes are 0..6 in the order of ``BRANCH_MODES`` and a leaf is ``LEAF_MODE``."""
    a = node.attrs
    if node.op_type == "TreeEnsemble":
        post = a["post_transform"]
        if not 0 <= post < len(_POST_BY_ID):
            raise OpAttributeError(f"{node_label(node)}: post_transform must be 0..4, got {post}")
        return {"forest": _forest_from_v5(node), "base": None, "post": _POST_BY_ID[post], "labels": None,
                "aggregate": ["AVERAGE", "SUM", "MIN", "MAX"][a["aggregate_function"]]}
    if node.op_type == "TreeEnsembleRegressor":
        n_targets = a.get("n_targets") or (max(a.get("target_ids") or [0]) + 1)
        return {"forest": _forest_from_legacy(node, "target", n_targets), "aggregate": a["aggregate_function"],
                "base": _base_values(node), "post": a["post_transform"], "labels": None}
    labels = _class_labels(node)
    forest = _forest_from_legacy(node, "class", len(labels))
    return {"forest": forest, "aggregate": "SUM", "base": _base_values(node), "post": a["post_transform"],
            "labels": labels, "binary": len(set(a.get("class_ids") or [])) == 1,
            "all_positive": bool((forest.vote_weight >= 0).all())}


# ---- linear models ----------------------------------------------------------------------------
def _linear_scores(node: Node, x: np.ndarray, n_out: int) -> np.ndarray:
    x = as_2d(x)
    coef = np.asarray(node.attrs["coefficients"], dtype=np.float32)
    if coef.size != n_out * x.shape[1]:
        raise ExecutionError(f"{node_label(node)}: {coef.size} coefficients do not make {n_out} rows for "
                             f"{x.shape[1]} features")
    xf = x.astype(np.float32, copy=False) if x.dtype != np.float64 else x
    scores = xf @ coef.reshape(n_out, x.shape[1]).T.astype(xf.dtype)
    inter = node.attrs.get("intercepts")
    if inter:
        scores = scores + np.asarray(inter, dtype=xf.dtype)
    return scores


def _linear_classifier_eval(node: Node, x):
    labels = np.array(node.attrs["classlabels_ints"], dtype=np.int64) \
        if node.attrs.get("classlabels_ints") is not None else np.array(node.attrs["classlabels_strings"], dtype=object)
    n_rows = len(node.attrs["coefficients"]) // as_2d(x).shape[1]
    scores = _linear_scores(node, x, n_rows)
    post = node.attrs["post_transform"]
    if n_rows == 1 and len(labels) == 2:  # one score row for a binary problem: [1 - p, p]
        s = scores[:, 0]
        out = _one_score_columns(post, s, True)
        return labels[(s > 0).astype(np.int64)], out.astype(np.float32)
    out = _post_transform(node, scores, post)
    winner = np.argmax(scores, axis=1)
    if n_rows == 1:
        winner = (scores[:, 0] > 0).astype(np.int64) if len(labels) > 1 else np.zeros(len(scores), np.int64)
    return labels[winner], out.astype(np.float32)


def _linear_classifier_infer(ctx: InferContext) -> list:
    _check_post(ctx)
    ints, strs = ctx.attr("classlabels_ints"), ctx.attr("classlabels_strings")
    if (ints is None) == (strs is None):
        ctx.fail("exactly one of classlabels_ints and classlabels_strings must be set")
    n_labels = len(ints if ints is not None else strs)
    s = ctx.shape(0)
    n = (1 if len(s) <= 1 else s[0]) if s is not None else ctx.fresh()
    f = s[-1] if s else None
    n_rows = len(ctx.attr("coefficients")) // f if isinstance(f, int) and f else None
    width = 2 if n_rows == 1 and n_labels == 2 else n_rows
    return [tt(DType.int64 if ints is not None else DType.string, (n,)),
            tt(DType.float32, (n, width if width is not None else ctx.fresh()))]


register(OpDef("LinearClassifier", eval=_linear_classifier_eval, infer=_linear_classifier_infer, domain=DOMAIN,
               family=FAMILY, kind=Kind.OPAQUE, inputs=(1, 1), outputs=(1, 2),
               attrs={"classlabels_ints": Attr("ints"), "classlabels_strings": Attr("strings"),
                      "coefficients": Attr("floats", REQUIRED), "intercepts": Attr("floats"),
                      "multi_class": Attr("int", 0), "post_transform": Attr("string", "NONE")},
               doc="Linear classifier: top class and per-class scores."))


def _linear_regressor_eval(node: Node, x):
    scores = _linear_scores(node, x, node.attrs["targets"])
    return _post_transform(node, scores, node.attrs["post_transform"]).astype(np.float32)


def _linear_regressor_infer(ctx: InferContext) -> list:
    _check_post(ctx)
    return _rows_infer(DType.float32, lambda c: c.attr("targets"))(ctx)


register(OpDef("LinearRegressor", eval=_linear_regressor_eval, infer=_linear_regressor_infer, domain=DOMAIN,
               family=FAMILY, kind=Kind.OPAQUE, inputs=(1, 1), outputs=(1, 1),
               attrs={"coefficients": Attr("floats"), "intercepts": Attr("floats"),
                      "post_transform": Attr("string", "NONE"), "targets": Attr("int", 1)},
               doc="Linear regression with one or more targets."))


# ---- preprocessing ----------------------------------------------------------------------------
def _array_feature_extractor_eval(node: Node, x, indices):
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    last = x.shape[-1] if x.ndim else 0
    if idx.size and (idx.min() < 0 or idx.max() >= last):
        raise ExecutionError(f"{node_label(node)}: indices must lie in [0, {last}), got {idx.tolist()}")
    out = np.take(x, idx, axis=-1)
    return out.reshape(1, -1) if x.ndim == 1 else out


def _array_feature_extractor_infer(ctx: InferContext) -> list:
    s, si = ctx.shape(0), ctx.shape(1)
    if ctx.dtype(1) is not None and ctx.dtype(1) != DType.int64:
        ctx.fail(f"indices must be int64, got {ctx.dtype(1).name}")
    # as many outputs as indices: an int, a symbol, or a product such as 3*N (indices [N, 1] give N)
    k = dim_from_factors(*product_of(si)) if si is not None else ctx.fresh()
    if s is None:
        return [tt(ctx.dtype(0), None)]
    return [tt(ctx.dtype(0), (1, k) if len(s) <= 1 else tuple(s[:-1]) + (k,))]


register(OpDef("ArrayFeatureExtractor", eval=_array_feature_extractor_eval, infer=_array_feature_extractor_infer,
               domain=DOMAIN, family=FAMILY, kind=Kind.INJECTIVE, inputs=(2, 2), outputs=(1, 1),
               doc="Selects elements of the last axis by index."))


def _binarizer_eval(node: Node, x):
    return (x > node.attrs["threshold"]).astype(x.dtype)


def _numeric_same(ctx: InferContext) -> list:
    dt = ctx.dtype(0)
    if dt is not None and dt not in _NUMERIC:
        ctx.fail(f"input must be float, double, int64 or int32, got {dt.name}")
    return [tt(dt, ctx.shape(0))]


register(OpDef("Binarizer", eval=_binarizer_eval, infer=_numeric_same, domain=DOMAIN, family=FAMILY,
               kind=Kind.ELEMENTWISE, inputs=(1, 1), outputs=(1, 1), attrs={"threshold": Attr("float", 0.0)},
               doc="1 where the input exceeds the threshold, else 0."))


def _per_feature(node: Node, name: str, n_features: int, dtype) -> np.ndarray:
    v = np.asarray(node.attrs.get(name) or [], dtype=dtype)
    if v.size not in (1, n_features):
        raise ExecutionError(f"{node_label(node)}: attribute '{name}' has {v.size} values; expected 1 or one per "
                             f"feature ({n_features})")
    return v


def _scaler_eval(node: Node, x):
    f = x.shape[-1] if x.ndim else 1
    offset = _per_feature(node, "offset", f, np.float32) if node.attrs.get("offset") else np.float32(0)
    scale = _per_feature(node, "scale", f, np.float32) if node.attrs.get("scale") else np.float32(1)
    return ((x.astype(np.float32) - offset) * scale).astype(np.float32)


register(OpDef("Scaler", eval=_scaler_eval, infer=lambda ctx: [tt(DType.float32, ctx.shape(0))], domain=DOMAIN,
               family=FAMILY, kind=Kind.ELEMENTWISE, inputs=(1, 1), outputs=(1, 1),
               attrs={"offset": Attr("floats"), "scale": Attr("floats")},
               doc="(X - offset) * scale, per feature."))


def _normalizer_eval(node: Node, x):
    xf = as_2d(x).astype(np.float32)
    norm = node.attrs["norm"]
    if norm == "MAX":
        div = xf.max(axis=1, keepdims=True)
    elif norm == "L1":
        div = np.abs(xf).sum(axis=1, keepdims=True)
    elif norm == "L2":
        div = np.sqrt((xf * xf).sum(axis=1, keepdims=True))
    else:
        raise OpAttributeError(f"{node_label(node)}: norm must be MAX, L1 or L2, got '{norm}'")
    out = np.where(div != 0, xf / np.where(div != 0, div, 1), xf)
    return out.reshape(x.shape).astype(np.float32) if x.ndim == 1 else out.astype(np.float32)


def _normalizer_infer(ctx: InferContext) -> list:
    if ctx.attr("norm") not in ("MAX", "L1", "L2"):
        ctx.fail(f"norm must be MAX, L1 or L2, got '{ctx.attr('norm')}'")
    return [tt(DType.float32, ctx.shape(0))]


register(OpDef("Normalizer", eval=_normalizer_eval, infer=_normalizer_infer, domain=DOMAIN, family=FAMILY,
               kind=Kind.OPAQUE, inputs=(1, 1), outputs=(1, 1), attrs={"norm": Attr("string", "MAX")},
               doc="Divides each row by its max, L1 or L2 norm."))


def _one_hot_encoder_eval(node: Node, x):
    a = node.attrs
    if a.get("cats_strings") is not None:
        cats = np.array(a["cats_strings"], dtype=object)
        flat = np.array([s.decode() if isinstance(s, bytes) else s for s in x.reshape(-1).tolist()], dtype=object)
    elif a.get("cats_int64s") is not None:
        cats = np.array(a["cats_int64s"], dtype=np.int64)
        flat = x.reshape(-1).astype(np.int64)
    else:
        raise OpAttributeError(f"{node_label(node)}: one of cats_int64s and cats_strings must be set")
    hit = flat[:, None] == cats[None, :]
    if not a["zeros"] and not hit.any(axis=1).all():
        bad = flat[~hit.any(axis=1)][0]
        raise ExecutionError(f"{node_label(node)}: value {bad!r} is not a category and zeros=0 forbids that")
    return hit.astype(np.float32).reshape(x.shape + (len(cats),))


def _one_hot_encoder_infer(ctx: InferContext) -> list:
    cats = ctx.attr("cats_strings") if ctx.attr("cats_strings") is not None else ctx.attr("cats_int64s")
    if cats is None:
        ctx.fail("one of cats_int64s and cats_strings must be set")
    s = ctx.shape(0)
    return [tt(DType.float32, None if s is None else tuple(s) + (len(cats),))]


register(OpDef("OneHotEncoder", eval=_one_hot_encoder_eval, infer=_one_hot_encoder_infer, domain=DOMAIN,
               family=FAMILY, kind=Kind.OPAQUE, inputs=(1, 1), outputs=(1, 1),
               attrs={"cats_int64s": Attr("ints"), "cats_strings": Attr("strings"), "zeros": Attr("int", 1)},
               doc="One-hot encodes each element over a list of categories (new last axis)."))


def _imputer_eval(node: Node, x):
    a = node.attrs
    f = x.shape[-1] if x.ndim else 1
    if x.dtype.kind == "f":
        imputed = _per_feature(node, "imputed_value_floats", f, x.dtype)
        r = a["replaced_value_float"]
        mask = np.isnan(x) if math.isnan(r) else x == r
    else:
        imputed = _per_feature(node, "imputed_value_int64s", f, x.dtype)
        mask = x == a["replaced_value_int64"]
    return np.where(mask, np.broadcast_to(imputed, x.shape), x).astype(x.dtype)


register(OpDef("Imputer", eval=_imputer_eval, infer=_numeric_same, domain=DOMAIN, family=FAMILY,
               kind=Kind.ELEMENTWISE, inputs=(1, 1), outputs=(1, 1),
               attrs={"imputed_value_floats": Attr("floats"), "imputed_value_int64s": Attr("ints"),
                      "replaced_value_float": Attr("float", 0.0), "replaced_value_int64": Attr("int", 0)},
               doc="Replaces a sentinel value (or NaN) with per-feature imputed values."))


def _feature_vectorizer_eval(node: Node, *xs):
    dims = node.attrs.get("inputdimensions") or [(as_2d(x).shape[1]) for x in xs]
    if len(dims) != len(xs):
        raise ExecutionError(f"{node_label(node)}: inputdimensions has {len(dims)} entries for {len(xs)} inputs")
    rows = {as_2d(x).shape[0] for x in xs}
    if len(rows) > 1:
        raise ExecutionError(f"{node_label(node)}: inputs have different numbers of rows {sorted(rows)}")
    n = rows.pop() if rows else 1
    out = np.zeros((n, int(sum(dims))), dtype=np.float32)
    at = 0
    for x, d in zip(xs, dims):
        x2 = as_2d(x)
        k = min(d, x2.shape[1])
        out[:, at:at + k] = x2[:, :k]
        at += d
    return out


def _feature_vectorizer_infer(ctx: InferContext) -> list:
    dims = ctx.attr("inputdimensions")
    s = ctx.shape(0)
    n = None if s is None else (1 if len(s) <= 1 else s[0])
    return [tt(DType.float32, (n if n is not None else ctx.fresh(), sum(dims) if dims else ctx.fresh()))]


register(OpDef("FeatureVectorizer", eval=_feature_vectorizer_eval, infer=_feature_vectorizer_infer, domain=DOMAIN,
               family=FAMILY, kind=Kind.OPAQUE, inputs=(1, 2**31), outputs=(1, 1),
               attrs={"inputdimensions": Attr("ints")},
               doc="Concatenates inputs along the feature axis into one float tensor."))
