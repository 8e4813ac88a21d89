"""Runs the official ONNX node test cases through graphc and reports pass/fail per case.

``python -m graphc.tools.conformance [-k SUBSTRING] [--failures] [--jobs N]`` prints a summary; the
pytest suite (tests/test_onnx_node.py) uses ``run_case`` with the expected-failures list.

Cases whose graph draws random numbers (ops flagged ``OpDef.random``: Bernoulli, RandomNormal, ...) cannot match the
stored values, which came from one draw of onnx's generator. They are compared by distribution
(``compare_by_distribution``): same dtype and shape as the stored output; graphc's values drawn
``DISTRIBUTION_RUNS`` times and onnx's reference evaluator's as many times (with seeds removed, so its
draws show the distribution); values only where the reference puts them (for discrete outputs); the
mean of each element across runs within 5 standard errors of the reference's; an op without a seed
giving new values each run, one with a seed the same values each run, whose mean over the elements
is within 5 standard errors of the reference's.
"""
from __future__ import annotations

import argparse
import collections
import sys
import warnings


def node_cases() -> list:
    """The node test cases shipped in the installed onnx wheel (kind 'node')."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import numpy as np

        with np.errstate(all="ignore"):
            from onnx.backend.test.case.node import collect_testcases

            return [c for c in collect_testcases() if c.kind == "node"]


def run_case(case) -> None:
    """Run one case; raises (AssertionError or GraphcError) when graphc does not match the reference."""
    from onnx.backend.test.runner import Runner

    from graphc.frontends.onnx.backend import GraphcBackend

    rep = GraphcBackend.prepare(case.model)
    if _random_nodes(rep.graph):
        for inputs, ref_outputs in case.data_sets:
            compare_by_distribution(case.model, rep, [_normalize(x) for x in inputs],
                                    [_normalize(x) for x in ref_outputs])
        return
    for inputs, ref_outputs in case.data_sets:
        inputs = [_normalize(x) for x in inputs]
        refs = [_normalize(x) for x in ref_outputs]
        outputs = list(rep.run(inputs))
        assert len(outputs) == len(refs), f"{len(outputs)} outputs, expected {len(refs)}"
        for i, (ref, out) in enumerate(zip(refs, outputs)):
            assert_similar(ref, out, case.rtol, case.atol, f"output {i}")
        check_inferred_types(rep.graph, outputs)


def is_random_op(op_type: str, domain: str = "") -> bool:
    """Whether the op draws random numbers (``OpDef.random``): cases using one are compared by distribution."""
    from graphc.ops import lookup

    op = lookup(domain, op_type)
    return op is not None and op.random


#: How many times graphc and the reference each run a random case.
DISTRIBUTION_RUNS = 200


def _random_nodes(graph) -> list:
    """The nodes of ``graph`` (and its subgraphs) that draw random numbers."""
    found = []
    for node in graph.nodes:
        if node.domain in ("", "ai.onnx") and is_random_op(node.op_type):
            found.append(node)
        for sub in node.subgraphs():
            found.extend(_random_nodes(sub))
    return found


def _without_seeds(model):
    """A copy of the model whose random nodes have no seed (so repeated runs show the distribution)."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for node in list(copy.graph.node) + [n for f in copy.functions for n in f.node]:
        if is_random_op(node.op_type):
            keep = [a for a in node.attribute if a.name != "seed"]
            del node.attribute[:]
            node.attribute.extend(keep)
    return copy


def compare_by_distribution(model, rep, inputs: list, refs: list, runs: int = DISTRIBUTION_RUNS) -> None:
    """Assert that graphc's outputs of a random model follow the reference's distribution (see the
    module docstring); raises AssertionError naming the output and the statistic that disagrees."""
    import numpy as np
    from onnx.reference import ReferenceEvaluator

    seeded = all("seed" in n.attrs for n in _random_nodes(rep.graph))
    reference = ReferenceEvaluator(_without_seeds(model))
    names = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    feeds = dict(zip(names, inputs))
    ours = [list(rep.run(inputs)) for _ in range(runs)]
    theirs = [list(reference.run(None, feeds)) for _ in range(runs)]
    assert len(ours[0]) == len(refs), f"{len(ours[0])} outputs, expected {len(refs)}"
    for j, ref in enumerate(refs):
        where = f"output {j}"
        o = np.stack([np.asarray(r[j]) for r in ours]).astype(np.float64)
        r = np.stack([np.asarray(t[j]) for t in theirs]).astype(np.float64)
        first = np.asarray(ours[0][j])
        assert first.dtype == ref.dtype, f"{where}: dtype {first.dtype}, expected {ref.dtype}"
        assert first.shape == ref.shape, f"{where}: shape {list(first.shape)}, expected {list(ref.shape)}"
        support = np.unique(r)
        if support.size <= 32:  # discrete: no value the reference never gives
            stray = np.setdiff1d(np.unique(o), support)
            assert stray.size == 0, f"{where}: values {stray[:5].tolist()} that the reference never gives " \
                                    f"(it gives {support.tolist()})"
        varies = bool(np.any(o != o[0]))
        if seeded:
            assert not varies, f"{where}: a seeded random op gave different values on different runs"
            n = o[0].size
            se = np.sqrt(r.var(axis=0).mean() / max(n, 1))
            diff = abs(o[0].mean() - r.mean())
            assert diff <= 5 * se + 1e-9, f"{where}: mean over the elements {o[0].mean():.4g}, the reference's " \
                                          f"distribution has mean {r.mean():.4g} (standard error {se:.3g})"
            continue
        assert varies or not np.any(r != r[0]), f"{where}: the same values on every run of an unseeded random op"
        se = np.sqrt((o.var(axis=0) + r.var(axis=0)) / runs)
        diff = np.abs(o.mean(axis=0) - r.mean(axis=0))
        bad = diff > 5 * se + 1e-9
        if np.any(bad):
            k = int(np.flatnonzero(bad.reshape(-1))[0])
            raise AssertionError(f"{where}: element {k} has mean {o.mean(axis=0).reshape(-1)[k]:.4g} over {runs} "
                                 f"runs, the reference {r.mean(axis=0).reshape(-1)[k]:.4g} "
                                 f"(standard error {se.reshape(-1)[k]:.3g})")


def assert_similar(ref, out, rtol: float, atol: float, where: str) -> None:
    """onnx's comparison for tensors; sequences and optionals compared element by element here, since
    onnx's runner assumes every sequence element has a length (it fails on 0-d tensors)."""
    from onnx.backend.test.runner import Runner

    if isinstance(ref, (list, tuple)):
        assert isinstance(out, (list, tuple)), f"{where}: expected a sequence, got {type(out).__name__}"
        assert len(out) == len(ref), f"{where}: sequence of {len(out)} elements, expected {len(ref)}"
        for j, (r, o) in enumerate(zip(ref, out)):
            assert_similar(r, o, rtol, atol, f"{where}[{j}]")
        return
    if ref is None:
        assert out is None, f"{where}: expected an empty optional, got {type(out).__name__}"
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Runner.assert_similar_outputs([ref], [out], rtol=rtol, atol=atol)


def check_inferred_types(graph, outputs) -> None:
    """The types shape inference gave the outputs must agree with the arrays that came out."""
    import numpy as np

    from graphc.ir import DType, TensorType

    for v, x in zip(graph.outputs, outputs):
        t = v.type
        if not isinstance(t, TensorType) or not isinstance(x, np.ndarray):
            continue
        got_dtype = DType.string if x.dtype == object else DType.from_np(x.dtype)
        if t.dtype is not None and t.dtype != got_dtype:
            raise AssertionError(f"output '{v.name}': inferred element type {t.dtype}, ran as {got_dtype.name}")
        if t.shape is not None:
            if len(t.shape) != x.ndim or any(isinstance(d, int) and d != n for d, n in zip(t.shape, x.shape)):
                raise AssertionError(f"output '{v.name}': inferred {t}, ran with shape {list(x.shape)}")


def _normalize(x):
    import onnx
    from onnx import numpy_helper

    if isinstance(x, onnx.TensorProto):
        return numpy_helper.to_array(x)
    if isinstance(x, onnx.SequenceProto):
        return numpy_helper.to_list(x)
    if isinstance(x, onnx.OptionalProto):
        return numpy_helper.to_optional(x)
    if isinstance(x, onnx.MapProto):
        return numpy_helper.to_dict(x)
    return x


def _one(case):
    import numpy as np

    try:
        with np.errstate(all="ignore"):
            run_case(case)
        return case.name, None
    except Exception as e:  # report, don't stop
        msg = f"{type(e).__name__}: {e}".replace("\n", " ")
        return case.name, msg[:300]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-k", action="append", default=[], help="only cases whose name contains this")
    p.add_argument("--failures", action="store_true", help="print each failing case and why")
    p.add_argument("--by-error", action="store_true", help="group failures by error class")
    args = p.parse_args(argv)
    cases = node_cases()
    if args.k:
        cases = [c for c in cases if any(k in c.name for k in args.k)]
    results = [_one(c) for c in cases]
    failed = [(n, m) for n, m in results if m is not None]
    if args.failures:
        for n, m in failed:
            print(f"FAIL {n}: {m}")
    if args.by_error:
        groups = collections.Counter(m.split(":")[0] for _, m in failed)
        for k, v in groups.most_common():
            print(f"{v:5d} {k}")
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed (of {len(results)} ONNX node cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
