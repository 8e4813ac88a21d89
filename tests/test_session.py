"""The Session: fetch structures, pruning, plan cache, variable state, save/restore, and its error messages."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.errors import FeedError, GradientError, GraphcError


def small_graph():
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [None, 3], name="x")
        y = gc.placeholder(gc.float32, [None], name="y")
        w = gc.Variable(np.array([1.0, 2.0, 3.0], np.float32), name="w")
        pred = gc.reduce_sum(x * w, 1)
        err = pred - y
    return g, x, y, w, pred, err


def test_nested_fetches_and_operations():
    g, x, y, w, pred, err = small_graph()
    with g.as_default():
        upd = gc.assign(w, w * 2.0)
    sess = gc.Session(g)
    a = np.ones((2, 3), np.float32)
    out = sess.run({"p": pred, "both": (pred, [err, upd])}, {x: a, y: np.zeros(2, np.float32)})
    np.testing.assert_array_equal(out["p"], [6, 6])
    assert isinstance(out["both"], tuple) and isinstance(out["both"][1], list)
    np.testing.assert_array_equal(out["both"][1][0], [6, 6])
    assert out["both"][1][1] is None
    # the update ran after the reads: the state doubled, and the next run sees it
    np.testing.assert_array_equal(sess.variable(w), [2, 4, 6])
    np.testing.assert_array_equal(sess.run(pred, {x: a}), [12, 12])


def test_runs_only_what_the_fetches_need():
    g, x, y, w, pred, err = small_graph()
    sess = gc.Session(g)
    # pred does not need y: no feed for y is required
    np.testing.assert_array_equal(sess.run(pred, {x: np.ones((1, 3), np.float32)}), [6])
    plan = next(iter(sess._plans.values()))
    assert [v.name for v in plan.executable.graph.inputs] == ["x", "w"]
    assert all(n.op_type != "Sub" for n in plan.executable.graph.nodes)


def test_a_fed_intermediate_cuts_the_graph():
    g, x, y, w, pred, err = small_graph()
    sess = gc.Session(g)
    out = sess.run(err, {pred: np.array([5.0], np.float32), y: np.array([1.0], np.float32)})
    np.testing.assert_array_equal(out, [4.0])


def test_plan_is_cached_per_fetches_and_feed_signature():
    g, x, y, w, pred, err = small_graph()
    sess = gc.Session(g)
    for n in (2, 2, 2):
        sess.run(pred, {x: np.ones((n, 3), np.float32)})
    assert len(sess._plans) == 1
    sess.run(pred, {x: np.ones((5, 3), np.float32)})
    sess.run([pred, err], {x: np.ones((5, 3), np.float32), y: np.ones(5, np.float32)})
    assert len(sess._plans) == 3


def test_a_session_fed_ever_new_shapes_keeps_a_bounded_number_of_plans(monkeypatch):
    """On a backend that compiles a plan per fed shape (cpu, cuda) the plans were kept without bound."""
    import graphc.runtime.session as session

    monkeypatch.setattr(session, "MAX_PLANS", 4)
    g, x, y, w, pred, err = small_graph()
    sess = gc.Session(g, backend="cpu")
    for n in range(1, 9):
        out = sess.run(pred, {x: np.ones((n, 3), np.float32)})
        assert out.shape[0] == n
    assert len(sess._plans) == 4
    first = list(sess._plans.values())[0]
    sess.run(pred, {x: np.ones((5, 3), np.float32)})  # kept: run again without compiling, now most recent
    assert list(sess._plans.values())[-1] is first and len(sess._plans) == 4


def test_missing_feeds_are_all_listed_with_the_fetch_that_needs_each():
    g, x, y, w, pred, err = small_graph()
    sess = gc.Session(g)
    with pytest.raises(FeedError) as e:
        sess.run([pred, err], {})
    msg = str(e.value)
    assert msg.startswith("sess.run: 2 placeholder(s) must be fed but are not in feed_dict:")
    line_x = [ln for ln in msg.splitlines() if "'x'" in ln][0]
    line_y = [ln for ln in msg.splitlines() if "'y'" in ln][0]
    assert "placeholder 'x' (float32[x_d0,3], created at " in line_x and "test_session.py:" in line_x
    assert f"is needed by fetch '{pred.name}' (created at " in line_x and f"'{err.name}'" in line_x
    assert "placeholder 'y' (float32[y_d0]" in line_y
    assert f"is needed by fetch '{err.name}'" in line_y and f"'{pred.name}'" not in line_y


def test_wrong_shape_and_dtype_feeds_name_the_placeholder():
    g, x, y, w, pred, err = small_graph()
    sess = gc.Session(g)
    with pytest.raises(FeedError) as e:
        sess.run(pred, {x: np.ones((2, 4), np.float32)})
    msg = str(e.value)
    assert msg.startswith("sess.run: bad value for placeholder 'x': dim 1 must be 3 (float32[x_d0,3]), got 4")
    assert "(placeholder created at " in msg and "test_session.py:" in msg
    with pytest.raises(FeedError, match=r"placeholder 'x': expected element type float32 .*got float64\[2,3\]"):
        sess.run(pred, {x: np.ones((2, 3))})
    with pytest.raises(FeedError, match=r"placeholder 'x': expected rank 2 .*got rank 1"):
        sess.run(pred, {x: np.ones(3, np.float32)})


def test_symbol_dims_must_agree_across_feeds():
    g = gc.Graph()
    with g.as_default():
        a = gc.placeholder(gc.float32, ["N"], name="a")
        b = gc.placeholder(gc.float32, ["N"], name="b")
        s = a + b
    sess = gc.Session(g)
    with pytest.raises(FeedError, match="dim 0 is the symbol N, which input 'a' set to 2, but got 3"):
        sess.run(s, {a: np.ones(2, np.float32), b: np.ones(3, np.float32)})


def test_broken_gradient_path_names_the_variable_and_the_node():
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [4, 3], name="x")
        w = gc.Variable(np.ones((3, 2), np.float32), name="w")
        v = gc.Variable(np.ones(2, np.float32), name="v")
        loss = gc.reduce_mean(gc.cast(gc.argmax(x @ w, 1), gc.float32))
        with pytest.raises(GradientError) as e:
            gc.gradients(loss, [w])
        assert "the path from" in str(e.value) and "to variable 'w' goes through ArgMax node" in str(e.value)
        assert "test_session.py:" in str(e.value) and "which is not differentiable" in str(e.value)
        with pytest.raises(GradientError, match="no gradient path from .* to variable 'v': it does not depend on it"):
            gc.gradients(gc.reduce_sum(x @ w), [v])


def test_save_and_restore_round_trip_without_pickle(tmp_path):
    g, x, y, w, pred, err = small_graph()
    sess = gc.Session(g)
    sess.set_variable(w, [7, 8, 9])
    path = tmp_path / "ckpt.npz"
    sess.save(path)
    with np.load(path, allow_pickle=False) as d:
        assert d.files == ["w"]
    other = gc.Session(g)
    np.testing.assert_array_equal(other.variable("w"), [1, 2, 3])
    other.restore(path)
    np.testing.assert_array_equal(other.variable("w"), [7, 8, 9])
    np.savez(tmp_path / "bad.npz", w=np.zeros(4, np.float32))
    with pytest.raises(GraphcError, match=r"variable 'w' is float32\[3\] in the graph but float32\[4\] in the file"):
        other.restore(tmp_path / "bad.npz")
    np.savez(tmp_path / "other.npz", q=np.zeros(3, np.float32))
    with pytest.raises(GraphcError, match="missing variable\\(s\\): w; unknown variable\\(s\\): q"):
        other.restore(tmp_path / "other.npz")


def test_fetching_from_another_graph_is_refused():
    g, *_ = small_graph()
    g2, x2, *_ = small_graph()
    with pytest.raises(GraphcError, match="belongs to graph"):
        gc.Session(g).run(x2 * 2.0, {x2: np.ones((1, 3), np.float32)})


def test_progress_helper_iterates_with_or_without_tqdm():
    seen = []
    bar = gc.progress(3, disable=True)
    for i in bar:
        bar.set_postfix(loss=1.0)
        seen.append(i)
    assert seen == [0, 1, 2]


# ---- lifecycle: variables made after the session, `with`, restore(var_list=) ---------------------------
def test_variables_and_optimizer_slots_made_after_the_session_start_at_the_next_run(tmp_path):
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, ["N", 3], name="x")
        y = gc.placeholder(gc.int64, ["N"], name="y")
        logits = gc.layers.dense(x, 2, name="fc")
    with gc.Session(g) as sess:
        xb, yb = np.ones((4, 3), np.float32), np.array([0, 1, 1, 0])
        before = sess.run(logits, {x: xb})
        with g.as_default():  # a layer and an Adam optimizer (step counter, slots) built after the session
            logits2 = gc.layers.dense(logits, 2, name="head")
            loss = gc.nn.softmax_cross_entropy(logits2, y)
            step = gc.optim.Adam(0.1).minimize(loss)
        losses = [sess.run([step, loss], {x: xb, y: yb})[1] for _ in range(3)]
        assert losses[-1] < losses[0]
        assert sess.variable("adam/step") == 3.0
        np.testing.assert_array_equal(sess.variable("head/b").shape, (2,))
        assert not np.array_equal(sess.run(logits, {x: xb}), before)
        path = tmp_path / "all.npz"
        sess.save(path)
    with pytest.raises(gc.GraphcError, match="this session of graph 'main' is closed"):
        sess.run(logits, {x: xb})
    # restore part of a model: only the first layer, from a file that holds more
    g2 = gc.Graph()
    with g2.as_default():
        x2 = gc.placeholder(gc.float32, ["N", 3], name="x")
        out = gc.layers.dense(x2, 2, name="fc")
    s2 = gc.Session(g2)
    s2.restore(path, var_list=g2.variable_tensors())
    saved = np.load(path)
    np.testing.assert_array_equal(s2.run(out, {x2: xb}), xb @ saved["fc/w"] + saved["fc/b"])
    with pytest.raises(gc.GraphcError, match="the file does not match graph 'main': unknown variable"):
        s2.restore(path)
    with pytest.raises(gc.GraphcError, match="'nope' is not a variable of graph 'main'"):
        s2.restore(path, var_list=["nope"])
