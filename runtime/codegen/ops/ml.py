"""Lowerings of the ml family (graphc/ops/ml): the tree ensembles as one compiled kernel.

TreeEnsemble, TreeEnsembleRegressor and TreeEnsembleClassifier (``ai.onnx.ml``) become one loop over the input's
rows. Each row walks every tree from its root to a leaf (the forest flattened by graphc/ops/ml/classic.py:
per node its feature, its two children and a flag word holding the comparison and the missing-value branch,
and its threshold as a double), adds the leaf's votes to its scores, then aggregates, adds the base values,
applies the post transform and, for a classifier, picks the label, all as the NumPy evaluation does it (in
float64, rounded once when stored). The forest travels as constant arrays, not as source text, so the kernel's
source (what the kernel cache keys on) depends on the model's shape only: the number of trees and targets,
the comparisons used, the aggregate and the post transform.

What it does not compile (the op then runs through the reference interpreter on the CPU, or is reported on
CUDA): BRANCH_MEMBER nodes, string class labels, a forest whose walk could leave the tree (a cycle, a child or
feature out of range: the interpreter's error names it), and more than ``MAX_TARGETS`` targets.
"""
from __future__ import annotations

import numpy as np

from graphc.ir import DType, Node, TensorType, Value
from graphc.ops.ml.classic import BRANCH_MODES, LEAF_MODE, tree_ensemble_spec

from ..kernel import (
    CodegenUnsupported,
    KernelGroup,
    Param,
    ctype,
    dtype_of,
    index_type,
    literal,
    shape_of,
)
from ..lowering import LowerContext, Step, register_lowering
from ..steps import kernel_from

#: Scores are kept per row in a local array of this many doubles at most.
MAX_TARGETS = 1024
#: C comparison of ``v`` with ``th`` for each branch mode (BRANCH_MEMBER has none).
_COMPARE = {"BRANCH_LEQ": "v <= th", "BRANCH_LT": "v < th", "BRANCH_GTE": "v >= th", "BRANCH_GT": "v > th",
            "BRANCH_EQ": "v == th", "BRANCH_NEQ": "v != th"}
_INPUT_TYPES = (DType.float32, DType.float64, DType.int64, DType.int32)


def _check_walks(forest, n_features: int, node: Node) -> None:
    """Every walk ends at a leaf, reading features in range: children in range and no cycle (each tree's nodes
    visited once from its root; shared subtrees are fine)."""
    n = len(forest.mode)
    branch = forest.mode != LEAF_MODE
    for name, idx in (("child", forest.true[branch]), ("child", forest.false[branch]), ("root", forest.roots)):
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise CodegenUnsupported(node, f"a tree's {name} index is out of range (0..{n - 1})")
    if branch.any() and (forest.feature[branch].min() < 0 or forest.feature[branch].max() >= n_features):
        raise CodegenUnsupported(node, f"a node reads a feature outside the input's {n_features}")
    state = np.zeros(n, dtype=np.int8)  # 0 unseen, 1 on the current path, 2 done
    for root in forest.roots.tolist():
        stack = [(root, False)]
        while stack:
            k, leaving = stack.pop()
            if leaving:
                state[k] = 2
                continue
            if state[k] == 2:
                continue
            if state[k] == 1:
                raise CodegenUnsupported(node, "a tree has a cycle")
            state[k] = 1
            stack.append((k, True))
            if branch[k]:
                stack += [(int(forest.false[k]), False), (int(forest.true[k]), False)]


def _tables(forest, aggregate: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(nodes int32 [n, 4]: feature, true child, false child, flags; or for a leaf: first vote, vote count, 0,
    flags), vote targets int32, vote weights float64. SUM/AVERAGE votes are summed per (leaf, target) first, as
    the NumPy evaluation's weight table is; MIN/MAX keep every vote."""
    n = len(forest.mode)
    vn, vt, vw = forest.vote_node, forest.vote_target, forest.vote_weight
    if aggregate in ("SUM", "AVERAGE") and len(vn):
        keys, inverse = np.unique(vn * (forest.n_targets + 1) + vt, return_inverse=True)
        w = np.zeros(len(keys))
        np.add.at(w, inverse, vw)
        vn, vt, vw = keys // (forest.n_targets + 1), keys % (forest.n_targets + 1), w
    else:
        order = np.argsort(vn, kind="stable")
        vn, vt, vw = vn[order], vt[order], vw[order]
    starts = np.searchsorted(vn, np.arange(n), "left")
    counts = np.searchsorted(vn, np.arange(n), "right") - starts
    leaf = forest.mode == LEAF_MODE
    flags = forest.mode.astype(np.int64) | (forest.missing_true.astype(np.int64) << 3)
    nodes = np.stack([np.where(leaf, starts, forest.feature), np.where(leaf, counts, forest.true),
                      np.where(leaf, 0, forest.false), flags], axis=1)
    return nodes.astype(np.int32), vt.astype(np.int32), vw.astype(np.float64)


def _post_lines(post: str, T: int) -> list[str]:
    """C lines applying ``post`` to the row's scores ``s[0..T)`` in place (graphc/ops/ml's POST_TRANSFORMS)."""
    loop = f"for (int k = 0; k < {T}; ++k)"
    if post == "NONE":
        return []
    if post == "LOGISTIC":
        return [f"{loop} s[k] = 1.0 / (1.0 + exp(-s[k]));"]
    if post == "SOFTMAX":
        return ["{ double m = s[0], tot = 0.0;", f"  for (int k = 1; k < {T}; ++k) m = s[k] > m ? s[k] : m;",
                f"  {loop} {{ s[k] = exp(s[k] - m); tot += s[k]; }}", f"  {loop} s[k] /= tot; }}"]
    if post == "SOFTMAX_ZERO":
        return ["{ double m = -((double)GC_INF), tot = 0.0;",
                f"  {loop} if (s[k] != 0.0 && s[k] > m) m = s[k];",
                "  if (m == -((double)GC_INF)) m = 0.0;",
                f"  {loop} {{ s[k] = s[k] != 0.0 ? exp(s[k] - m) : 0.0; tot += s[k]; }}",
                f"  {loop} s[k] = tot > 0.0 ? s[k] / tot : 0.0; }}"]
    if post == "PROBIT":  # Winitzki's erfinv, as graphc/ops/ml's _probit
        return [f"{loop} {{ const double x = 2.0 * s[k] - 1.0, ln = log((1.0 - x) * (1.0 + x));",
                "  const double a = 2.0 / (3.14159265358979323846 * 0.147) + 0.5 * ln;",
                "  const double r = 1.4142135623730951 * sqrt(-a + sqrt(a * a - ln / 0.147));",
                "  s[k] = x > 0.0 ? r : x < 0.0 ? -r : 0.0 * r; }"]
    raise CodegenUnsupported(None, f"post_transform {post!r}")


def _binary_lines(spec: dict) -> list[str]:
    """A two-class classifier's scores and label from its votes ``s``/``h`` (``_tree_classifier_binary``):
    ``s`` becomes the two score columns, ``positive`` whether the label is the second class."""
    base, post = spec["base"], spec["post"]
    binary, all_positive = spec["binary"], spec["all_positive"]
    lines = ["double s0 = s[0], s1 = s[1];"]
    if base is not None and len(base) == 2:
        lines += [f"s1 = h[1] ? {literal(base[1], DType.float64)} + s0 : 0.0;",
                  f"s0 = h[1] ? -s1 : s0 + {literal(base[0], DType.float64)};", "const bool single = false;"]
    else:
        if base is not None and len(base) == 1:
            lines.append(f"s0 = s0 + {literal(base[0], DType.float64)};")
        lines.append("const bool single = !h[1];")
    lines += ["const double pos = (h[1] && !single) ? s1 : ((h[0] || single) ? s0 : 0.0);",
              f"positive = pos > {'0.5' if binary and all_positive else '0.0'};",
              "s[0] = s0; s[1] = (h[1] || !single) ? s1 : 0.0;"]
    lines += _post_lines(post, 2)
    if binary:
        lines.append("if (single) {")
        if all_positive:
            p = "1.0 / (1.0 + exp(-s0))" if post == "LOGISTIC" else "s0"
            lines += [f"  const double p = {p};", "  s[0] = 1.0 - p; s[1] = p;"]
        elif post == "LOGISTIC":
            lines += ["  s[0] = 1.0 / (1.0 + exp(s0)); s[1] = 1.0 / (1.0 + exp(-s0));"]
        else:
            lines += ["  s[0] = -s0; s[1] = s0;"]
        lines.append("}")
    return lines


def _tree_ensemble(node: Node, ctx: LowerContext) -> list[Step]:
    x = node.inputs[0]
    shape, xdt = shape_of(x), dtype_of(x)
    if xdt not in _INPUT_TYPES:
        raise CodegenUnsupported(node, f"{node.op_type} on {xdt}")
    if len(shape) not in (1, 2):
        raise CodegenUnsupported(node, f"input of rank {len(shape)} (1 or 2 expected)")
    rows, F = (1, shape[0]) if len(shape) == 1 else shape
    spec = tree_ensemble_spec(node)
    forest, labels, aggregate = spec["forest"], spec["labels"], spec["aggregate"]
    T = forest.n_targets
    if labels is not None and labels.dtype == object:
        raise CodegenUnsupported(node, "string class labels")
    if not 1 <= T <= MAX_TARGETS:
        raise CodegenUnsupported(node, f"{T} targets (1..{MAX_TARGETS} compile)")
    modes = {BRANCH_MODES[m] for m in np.unique(forest.mode).tolist() if m != LEAF_MODE}
    if "BRANCH_MEMBER" in modes:
        raise CodegenUnsupported(node, "BRANCH_MEMBER nodes")
    _check_walks(forest, F, node)
    nodes, vote_t, vote_w = _tables(forest, aggregate)
    base = spec["base"]
    if base is not None and labels is not None and len(labels) != 2 and len(base) not in (1, T):
        raise CodegenUnsupported(node, f"{len(base)} base values for {T} classes")

    outs = [v for v in node.outputs if v is not None]
    name = node.name or node.op_type
    consts = [Value(f"{name}_tree_nodes", TensorType(DType.int32, nodes.shape), data=nodes.reshape(-1)),
              Value(f"{name}_tree_thresholds", TensorType(DType.float64, (len(forest.threshold),)),
                    data=np.ascontiguousarray(forest.threshold, dtype=np.float64)),
              Value(f"{name}_tree_roots", TensorType(DType.int32, (len(forest.roots),)),
                    data=forest.roots.astype(np.int32)),
              Value(f"{name}_vote_targets", TensorType(DType.int32, (max(len(vote_t), 1),)),
                    data=vote_t if len(vote_t) else np.zeros(1, np.int32)),
              Value(f"{name}_vote_weights", TensorType(DType.float64, (max(len(vote_w), 1),)),
                    data=vote_w if len(vote_w) else np.zeros(1)),
              ]
    ins = [x] + consts
    params = [Param("input", 0, "x", xdt), Param("input", 1, "nodes", DType.int32),
              Param("input", 2, "thr", DType.float64), Param("input", 3, "roots", DType.int32),
              Param("input", 4, "vt", DType.int32), Param("input", 5, "vw", DType.float64)]
    if labels is not None:
        label_out = node.outputs[0]
        score_out = node.outputs[1] if len(node.outputs) > 1 else None
        consts.append(Value(f"{name}_labels", TensorType(DType.int64, (len(labels),)),
                            data=labels.astype(np.int64)))
        ins.append(consts[-1])
        params.append(Param("input", 6, "labels", DType.int64))
    else:
        label_out, score_out = None, node.outputs[0]
    out_params = []
    for v, pname in ((label_out, "label"), (score_out, "scores")):
        if v is not None:
            out_params.append(Param("output", outs.index(v), pname, dtype_of(v)))
    params += sorted(out_params, key=lambda p: p.index)
    sdt = dtype_of(score_out) if score_out is not None else DType.float32
    if score_out is not None and sdt not in (DType.float32, DType.float64):
        raise CodegenUnsupported(node, f"scores of type {sdt}")

    if len(modes) <= 1:
        compare = _COMPARE[next(iter(modes))] if modes else "false"
    else:
        compare = "m == 0 ? v <= th : m == 1 ? v < th : m == 2 ? v >= th : m == 3 ? v > th : m == 4 ? v == th : v != th"
    init = {"MIN": "(double)GC_INF", "MAX": "-((double)GC_INF)"}.get(aggregate, "0.0")
    acc = {"MIN": "(w < s[t] ? w : s[t])", "MAX": "(w > s[t] ? w : s[t])"}.get(aggregate, "s[t] + w")
    it = index_type(rows * F)
    body = [f"const {ctype(xdt)}* row = x + ({it})i * {F};",
            f"double s[{T}]; bool h[{T}];",
            f"for (int k = 0; k < {T}; ++k) {{ s[k] = {init}; h[k] = false; }}",
            f"for (int tree = 0; tree < {len(forest.roots)}; ++tree) {{",
            "    int nd = roots[tree];",
            "    int f = nodes[4 * nd + 3];",
            f"    while (f != {LEAF_MODE}) {{",
            "        const double v = (double)row[nodes[4 * nd]];",
            "        const double th = thr[nd];",
            "        const int m = f & 7;",
            f"        const bool c = v != v ? ((f >> 3) & 1) != 0 : ({compare});",
            "        nd = c ? nodes[4 * nd + 1] : nodes[4 * nd + 2];",
            "        f = nodes[4 * nd + 3];",
            "    }",
            "    const int first = nodes[4 * nd], last = first + nodes[4 * nd + 1];",
            "    for (int k = first; k < last; ++k) {",
            f"        const int t = vt[k]; const double w = vw[k]; s[t] = {acc}; h[t] = true;",
            "    }",
            "}"]
    if aggregate == "AVERAGE" and len(forest.roots):
        body.append(f"for (int k = 0; k < {T}; ++k) s[k] /= {len(forest.roots)}.0;")
    if aggregate in ("MIN", "MAX"):
        body.append(f"for (int k = 0; k < {T}; ++k) s[k] = h[k] ? s[k] : 0.0;")
    if labels is None:
        if base is not None:
            body += [f"s[{k}] += {literal(base[k if len(base) == T else 0], DType.float64)};" for k in range(T)]
        body += _post_lines(spec["post"], T)
    elif len(labels) == 2:
        body += ["bool positive;", *_binary_lines(spec)]
        if label_out is not None:
            body.append("label[i] = labels[positive ? 1 : 0];")
    else:
        if base is not None:
            body += [f"s[{k}] += {literal(base[k if len(base) == T else 0], DType.float64)};" for k in range(T)]
            body.append(f"for (int k = 0; k < {T}; ++k) h[k] = true;")
        body += ["int best = 0; double top = -((double)GC_INF);",
                 f"for (int k = 0; k < {T}; ++k) if (h[k] && s[k] > top) {{ top = s[k]; best = k; }}"]
        body += _post_lines(spec["post"], T)
        if label_out is not None:
            body.append("label[i] = labels[best];")
    if score_out is not None:
        body.append(f"for (int k = 0; k < {T}; ++k) scores[({it})i * {T} + k] = ({ctype(sdt)})s[k];")
    group = KernelGroup(name, [node], ins, outs)
    what = (f"{node.op_type}: {len(forest.roots)} trees, {len(forest.mode)} nodes, {T} targets, {aggregate}, "
            f"{spec['post']}, rows of {F} {xdt}")
    kernel = kernel_from(ctx, group, params, body, rows, what)
    return [ctx.kernel_step(group, node, kernel)]


for _op in ("TreeEnsemble", "TreeEnsembleRegressor", "TreeEnsembleClassifier"):
    register_lowering(f"ai.onnx.ml.{_op}", _tree_ensemble)

__all__ = ["MAX_TARGETS"]
