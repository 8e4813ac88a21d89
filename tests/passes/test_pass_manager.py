"""The pass manager: records per application, fixed points, and verification that names the broken pass."""
from __future__ import annotations

import numpy as np
import pytest

from graphc.errors import GraphcError, InvalidGraphError
from graphc.ir import Graph
from graphc.passes import PassManager, simplify
from graphc.passes.manager import SpotCheck, outputs_differ, register_pass, verify_from_env
from passes_util import f32, finish


def _add_graph():
    g = Graph()
    x = g.add_input("x", f32("N", 3))
    y = g.add_node("Add", [x, x], name="add").outputs[0]
    z = g.add_node("Relu", [y], name="relu").outputs[0]
    return finish(g, z)


def test_records_one_entry_per_application_and_runs_to_a_fixed_point():
    calls = []

    def shrink(g):  # removes the Relu once, then finds nothing to do
        calls.append(len(g.nodes))
        if g.nodes[-1].op_type == "Relu":
            g.outputs = [g.nodes[-1].inputs[0]]
            g.nodes.pop()
            return True
        return False

    g = _add_graph()
    report = PassManager([shrink], fixed_point=True, verify=False).run(g)
    assert [r.changed for r in report.records] == [True, False]
    assert (report.records[0].nodes_before, report.records[0].nodes_after) == (2, 1)
    assert report.nodes_before == 2 and report.nodes_after == 1 and report.changed
    assert all(r.seconds >= 0 for r in report.records)
    assert "shrink" in report.summary()


def test_verify_names_the_pass_that_broke_ssa():
    @register_pass("test_breaks_ssa")
    def breaks(g):
        g.nodes.reverse()  # relu now reads a value defined after it
        return True

    with pytest.raises(InvalidGraphError, match="pass 'test_breaks_ssa' broke the graph.*topological"):
        PassManager(["test_breaks_ssa"], verify=True).run(_add_graph())


def test_spot_check_names_the_pass_that_changed_results():
    def wrong(g):
        g.nodes[0].op_type = "Sub"  # x + x becomes x - x: still a valid graph, but wrong
        return True

    with pytest.raises(InvalidGraphError, match="pass 'wrong' changed the graph's results"):
        PassManager([wrong], verify=True).run(_add_graph())


def test_a_pass_that_changes_nothing_is_not_spot_checked_but_still_verified():
    def noop(g):
        return False

    report = PassManager([noop], verify=True).run(_add_graph())
    assert not report.changed


def test_graphc_verify_environment_variable(monkeypatch):
    monkeypatch.setenv("GRAPHC_VERIFY", "1")
    assert verify_from_env() and PassManager([]).verify
    monkeypatch.setenv("GRAPHC_VERIFY", "0")
    assert not verify_from_env() and not PassManager([]).verify


def test_unknown_pass_name_is_refused_with_the_list():
    with pytest.raises(GraphcError, match="unknown pass 'nope'.*fold_constants"):
        PassManager(["nope"])


def test_spot_check_skips_graphs_with_random_ops():
    g = Graph()
    x = g.add_input("x", f32(2))
    r = g.add_node("RandomUniformLike", [x], name="r").outputs[0]
    finish(g, r)
    assert "random ops" in SpotCheck(g).skipped


def test_outputs_differ_reports_shape_and_value():
    a = np.ones((2, 2), np.float32)
    assert outputs_differ([a], [a.copy()]) is None
    assert "float32[2, 2] vs float32[4]" in outputs_differ([a], [np.ones(4, np.float32)])
    b = a.copy()
    b[1, 0] = 2
    assert "(1, 0)" in outputs_differ([b], [a])


def test_simplify_level_zero_does_nothing_and_bad_level_is_refused():
    g = _add_graph()
    assert simplify(g, level=0).records == [] and len(g.nodes) == 2
    with pytest.raises(GraphcError, match="level must be 0, 1 or 2"):
        simplify(g, level=3)
