"""The AllReduce op, DistributedOptimizer's graph and the shard helper, in one process with fake communicators."""
from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.errors import DistributedError, GraphBuildError, ShapeError
from graphc.ops.collective import buckets, get_communicator, set_communicator


class FakeRanks:
    """Stands for ``size`` ranks whose other members hold ``others(buffer)``: records every call."""

    def __init__(self, size: int, others=None):
        self.rank, self.size = 0, size
        self.others = others or (lambda buf: [buf.copy() for _ in range(size - 1)])
        self.buffers: list[np.ndarray] = []

    def allreduce_sum(self, buffer, kind="allreduce"):
        assert buffer.flags.c_contiguous
        self.buffers.append(buffer.copy())
        total = buffer + sum(self.others(buffer))
        buffer[...] = total


@pytest.fixture
def fake():
    comms = []

    def install(size, others=None):
        comms.append(FakeRanks(size, others))
        set_communicator(comms[-1])
        return comms[-1]

    previous = get_communicator()
    yield install
    set_communicator(previous)


def test_buckets_group_by_dtype_and_respect_the_cap():
    a32 = [np.zeros(10, np.float32), np.zeros(5, np.float32), np.zeros(100, np.float32)]
    a64 = np.zeros(3, np.float64)
    assert buckets([a32[0], a64, a32[1], a32[2]]) == [[0, 2, 3], [1]]
    assert buckets([a32[0], a32[1], a32[2]], bucket_bytes=60) == [[0, 1], [2]]  # 40+20 fit; 400 alone
    assert buckets([a32[2], a32[0]], bucket_bytes=60) == [[0], [1]]


def _graph_with_allreduce(reduction="mean", bucket_bytes=0):
    g = gc.Graph()
    with g.as_default():
        a = gc.placeholder(gc.float32, [2, 3], name="a")
        b = gc.placeholder(gc.float32, [4], name="b")
        c = gc.placeholder(gc.float64, [], name="c")
        outs = gc.distributed.allreduce([a, b, c], reduction, bucket_bytes)
    return g, (a, b, c), outs


def test_allreduce_packs_each_dtype_into_one_buffer_and_averages(fake):
    comm = fake(4, others=lambda buf: [buf * k for k in (2, 3, 4)])  # ranks hold 1x, 2x, 3x, 4x the values
    g, (a, b, c), outs = _graph_with_allreduce()
    sess = gc.Session(g)
    xa = np.arange(6, dtype=np.float32).reshape(2, 3)
    xb = np.array([1, -2, 3, -4], np.float32)
    ra, rb, rc = sess.run(outs, {a: xa, b: xb, c: np.float64(0.5)})
    np.testing.assert_allclose(ra, xa * 2.5)  # mean of 1x..4x
    np.testing.assert_allclose(rb, xb * 2.5)
    assert rc.dtype == np.float64 and rc.shape == () and float(rc) == 1.25
    assert len(comm.buffers) == 2  # one float32 buffer (a and b) and one float64 buffer, whatever the count
    assert sorted((buf.dtype.name, buf.size) for buf in comm.buffers) == [("float32", 10), ("float64", 1)]


def test_allreduce_sum_and_bucket_cap(fake):
    comm = fake(2)
    g, (a, b, c), outs = _graph_with_allreduce("sum", bucket_bytes=24)  # a (24 bytes) and b (16) apart
    ra, rb, rc = gc.Session(g).run(outs, {a: np.ones((2, 3), np.float32), b: np.ones(4, np.float32),
                                          c: np.float64(1)})
    assert ra.tolist() == [[2] * 3] * 2 and rb.tolist() == [2] * 4 and float(rc) == 2
    assert [buf.size for buf in comm.buffers] == [6, 4, 1]


def test_allreduce_without_init_names_the_node_and_the_fix():
    previous = set_communicator(None)
    try:
        g, (a, b, c), outs = _graph_with_allreduce()
        with pytest.raises(DistributedError, match=r"AllReduce node .*gc.distributed.init\(\)"):
            gc.Session(g).run(outs[0], {a: np.ones((2, 3), np.float32), b: np.ones(4, np.float32),
                                        c: np.float64(1)})
    finally:
        set_communicator(previous)


def test_allreduce_refuses_integer_tensors_and_bad_reductions():
    g = gc.Graph()
    with g.as_default():
        n = gc.placeholder(gc.int64, [3], name="counts")
        with pytest.raises(ShapeError, match="input 0 \\('counts'\\) must be a floating-point tensor"):
            gc.distributed.allreduce([n])
        with pytest.raises(GraphBuildError, match="reduction must be one of mean, sum"):
            gc.distributed.allreduce([n], reduction="max")


def test_distributed_optimizer_inserts_one_allreduce_for_all_gradients(fake):
    fake(1)
    g = gc.Graph(seed=0)
    with g.as_default():
        x = gc.placeholder(gc.float32, ["N", 4], name="x")
        y = gc.placeholder(gc.int64, ["N"], name="y")
        logits = gc.layers.dense(gc.layers.dense(x, 8, activation=gc.nn.relu, name="h"), 3, name="out")
        loss = gc.nn.softmax_cross_entropy(logits, y)
        opt = gc.distributed.DistributedOptimizer(gc.optim.Adam(0.01))
        step = opt.minimize(loss)
    nodes = [n for n in g.nodes if n.op_type == "AllReduce"]
    assert len(nodes) == 1 and len(nodes[0].inputs) == 4  # h/w, h/b, out/w, out/b
    assert opt.slots and opt.step is not None  # the wrapped optimizer's attributes show through
    # With one rank the averages are the gradients: the same step as the plain optimizer's.
    g2 = gc.Graph(seed=0)
    with g2.as_default():
        x2 = gc.placeholder(gc.float32, ["N", 4], name="x")
        y2 = gc.placeholder(gc.int64, ["N"], name="y")
        loss2 = gc.nn.softmax_cross_entropy(gc.layers.dense(gc.layers.dense(x2, 8, activation=gc.nn.relu, name="h"), 3,
                                                        name="out"), y2)
        step2 = gc.optim.Adam(0.01).minimize(loss2)
    rng = np.random.default_rng(0)
    xb, yb = rng.standard_normal((16, 4)).astype(np.float32), rng.integers(0, 3, 16)
    s1, s2 = gc.Session(g), gc.Session(g2)
    for _ in range(3):
        s1.run(step, {x: xb, y: yb})
        s2.run(step2, {x2: xb, y2: yb})
    for name in s2.state:
        np.testing.assert_allclose(s1.state[name], s2.state[name], rtol=1e-6, atol=1e-7)


def test_distributed_optimizer_wraps_only_optimizers():
    with pytest.raises(GraphBuildError, match="wraps a gc.optim optimizer"):
        gc.distributed.DistributedOptimizer(object())


def test_shard_gives_equal_contiguous_parts():
    x, y = np.arange(10), np.arange(10) * 10
    parts = [gc.distributed.shard(x, y, rank=r, size=3) for r in range(3)]
    assert [p[0].tolist() for p in parts] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]  # sample 9 is left out
    assert parts[1][1].tolist() == [30, 40, 50]
    assert gc.distributed.shard(x, rank=0, size=1).tolist() == list(range(10))  # one array in, one out
    with pytest.raises(DistributedError, match="same length"):
        gc.distributed.shard(x, y[:5], rank=0, size=2)
    with pytest.raises(DistributedError, match="rank must be in"):
        gc.distributed.shard(x, rank=2, size=2)
    with pytest.raises(DistributedError, match="cannot give each of 4 ranks"):
        gc.distributed.shard(x[:3], rank=0, size=4)


def test_single_process_defaults():
    previous = set_communicator(None)
    try:
        assert gc.distributed.rank() == 0 and gc.distributed.size() == 1 and gc.distributed.is_root()
        assert gc.distributed.average(3.5) == 3.5
    finally:
        set_communicator(previous)
