"""Random-model differential tests of the whole pipeline: compile at every level, plan memory, fuse, run fast.

tests/test_optimize_differential.py checks ``simplify`` through the interpreter only, so it never runs
the in-place memory plan, fusion or the fast kernels (and missed ``Sum(y, y, y)`` giving 4y). Here a
seeded generator builds ONNX models with repeated operands (``Add(x, x)``, ``Sum(y, y, y)``), variadic
Sum/Max/Min/Mean of 1-5 broadcasting operands, fan-out (one value read by many nodes, and several times
by one), elementwise chains that fuse, reductions, MatMul/Gemm with bias and activation epilogues,
Reshape/Transpose, Concat/Split, and outputs that later nodes read too. Each runs through
``gc.compile(level=L)`` + ``gc.prepare`` for L in 0, 1, 2 (twice: the second run reuses the arena) and
is compared with the unoptimized interpreter and with onnxruntime.

Training graphs: random DSL losses with repeated operands (``w*w*w``, ``x+x``) minimized by SGD or
Adam, stepped in Sessions at every level and compared with each other and with NumPy updates computed
from central finite differences of the same loss in float64.

``GRAPHC_DIFF_GRAPHS`` (default 2500 ONNX models; training graphs are a fifth of that) runs more; a
failure names its seed, and ``GRAPHC_DIFF_SEED0`` shifts the seeds of a campaign.
"""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import graphc as gc
from graphc.ops.interpret import run_graph

N_GRAPHS = int(os.environ.get("GRAPHC_DIFF_GRAPHS", "2500"))
SEED0 = int(os.environ.get("GRAPHC_DIFF_SEED0", "0"))
CHUNKS = 8
LEVELS = (0, 1, 2)
OPSET = 18
ADAM_EPS = 1e-3


def _broadcasts_to(s, shape) -> bool:
    """True when ``s`` broadcasts against ``shape`` to ``shape``."""
    return len(s) <= len(shape) and all(a in (1, b) for a, b in zip(s[::-1], shape[::-1]))


class ModelBuilder:
    """Grows one random ONNX graph; every value is float32 with a static shape."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.inits: list = []
        self.pool: list[tuple[str, tuple]] = []  # (name, shape)
        self.inputs: list = []
        self.n = 0

    def name(self, stem="v"):
        self.n += 1
        return f"{stem}{self.n}"

    def choice(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def const(self, shape, lo=-1.0, hi=1.0):
        name = self.name("c")
        self.inits.append(numpy_helper.from_array(self.rng.uniform(lo, hi, shape).astype(np.float32), name))
        return name

    def ints(self, values):
        name = self.name("i")
        self.inits.append(numpy_helper.from_array(np.array(values, np.int64), name))
        return name

    def node(self, op, ins, shape, n_out=1, **attrs):
        outs = [self.name() for _ in range(n_out)]
        self.nodes.append(helper.make_node(op, ins, outs, **attrs))
        shapes = shape if n_out > 1 else [shape]
        for o, s in zip(outs, shapes):
            self.pool.append((o, tuple(s)))
        return outs[0] if n_out == 1 else outs

    def pick(self):
        return self.choice(self.pool)

    def partner(self, shape):
        """A shape that broadcasts against ``shape`` to ``shape``."""
        k = int(self.rng.integers(0, len(shape) + 1))
        return tuple(d if self.rng.random() < 0.5 else 1 for d in shape[len(shape) - k:])

    def partners(self, shape):
        """Pool values whose shape broadcasts with ``shape`` to ``shape``."""
        return [(v, s) for v, s in self.pool if _broadcasts_to(s, shape)]

    # ---- steps ----
    def step(self):
        kind = self.choice(["unary", "binary", "binary", "repeat", "variadic", "variadic", "fanout", "reduce",
                            "matmul", "gemm", "reshape", "transpose", "concat", "split", "squash"])
        getattr(self, "s_" + kind)()

    def s_unary(self, x=None):
        x, s = x or self.pick()
        return self.node(self.choice(["Relu", "Neg", "Tanh", "Sigmoid", "Abs", "Identity"]), [x], s)

    def s_squash(self):  # keeps magnitudes in range for what follows
        x, s = self.pick()
        self.node(self.choice(["Tanh", "Sigmoid"]), [x], s)

    def s_binary(self, x=None):
        x, s = x or self.pick()
        op = self.choice(["Add", "Sub", "Mul", "Div"])
        others = self.partners(s)
        if op != "Div" and others and self.rng.random() < 0.6:
            y, ys = self.choice(others)
        else:
            ys = self.partner(s)
            y = self.const(ys, 0.5, 2.0) if op == "Div" else self.const(ys)
        ins = [x, y] if op == "Div" or self.rng.random() < 0.5 else [y, x]
        return self.node(op, ins, s)

    def s_repeat(self):
        x, s = self.pick()
        op = self.choice(["Add", "Mul", "Sub", "Max", "Min", "Sum", "Mean"])
        k = 2 if op in ("Add", "Mul", "Sub") else int(self.rng.integers(2, 5))
        y = self.node(op, [x] * k, s)
        if self.rng.random() < 0.7:  # then another op, which may run in place over y
            self.s_unary((y, s)) if self.rng.random() < 0.5 else self.s_binary((y, s))

    def s_variadic(self):
        x, s = self.pick()
        op = self.choice(["Sum", "Max", "Min", "Mean"])
        others = self.partners(s) + [(x, s)]
        ins = [x]
        for _ in range(int(self.rng.integers(0, 5))):
            if self.rng.random() < 0.25:
                ins.append(self.const(self.partner(s)))
            else:
                ins.append(self.choice(others)[0])
        order = self.rng.permutation(len(ins))
        self.node(op, [ins[i] for i in order], s)

    def s_fanout(self):
        x = self.pick()
        for _ in range(int(self.rng.integers(2, 5))):
            self.s_unary(x) if self.rng.random() < 0.5 else self.s_binary(x)
        if self.rng.random() < 0.5:  # and one node reading it several times with others
            v, s = x
            self.node(self.choice(["Sum", "Max", "Min", "Mean"]), [v, self.pool[-1][0], v], s)

    def s_reduce(self):
        x, s = self.pick()
        axes = sorted(self.rng.choice(len(s), int(self.rng.integers(1, len(s) + 1)), replace=False).tolist())
        keep = int(self.rng.integers(0, 2))
        out = tuple(1 if i in axes else d for i, d in enumerate(s)) if keep else \
            tuple(d for i, d in enumerate(s) if i not in axes)
        if not out:
            keep, out = 1, tuple(1 for _ in s)
        op = self.choice(["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin"])
        self.node(op, [x, self.ints(axes)], out, keepdims=keep)

    def _epilogue(self, y, shape):
        act = self.choice([None, "Relu", "Tanh", "Sigmoid"])
        return y if act is None else self.node(act, [y], shape)

    def s_matmul(self):
        x, s = self.pick()
        n = int(self.rng.integers(1, 6))
        out = s[:-1] + (n,)
        y = self.node("MatMul", [x, self.const((s[-1], n), -0.7, 0.7)], out)
        if self.rng.random() < 0.7:
            y = self.node("Add", [y, self.const((n,))] if self.rng.random() < 0.5 else [self.const((n,)), y], out)
        self._epilogue(y, out)

    def s_gemm(self):
        x, s = self.pick()
        if len(s) != 2:
            x = self.node("Flatten", [x], (int(np.prod(s[:-1])), s[-1]), axis=len(s) - 1)
            s = self.pool[-1][1]
        n = int(self.rng.integers(1, 6))
        trans_b = int(self.rng.integers(0, 2))
        w = self.const((n, s[1]) if trans_b else (s[1], n), -0.7, 0.7)
        ins = [x, w]
        if self.rng.random() < 0.8:
            ins.append(self.const(self.choice([(n,), (1, n), (s[0], n), (1,)])))
        alpha, beta = self.choice([1.0, 0.5]), self.choice([1.0, 2.0])
        y = self.node("Gemm", ins, (s[0], n), transB=trans_b, alpha=alpha, beta=beta)
        self._epilogue(y, (s[0], n))

    def s_reshape(self):
        x, s = self.pick()
        shape = s[::-1] if self.rng.random() < 0.5 else (int(np.prod(s)),)
        self.node("Reshape", [x, self.ints(list(shape))], shape)

    def s_transpose(self):
        x, s = self.pick()
        perm = self.rng.permutation(len(s)).tolist()
        self.node("Transpose", [x], tuple(s[p] for p in perm), perm=perm)

    def s_concat(self):
        x, s = self.pick()
        axis = int(self.rng.integers(0, len(s)))
        same = [v for v, t in self.pool if t == s]
        ins = [x] + [self.choice(same) for _ in range(int(self.rng.integers(1, 3)))]
        out = tuple(d * len(ins) if i == axis else d for i, d in enumerate(s))
        self.node("Concat", ins, out, axis=axis)

    def s_split(self):
        x, s = self.pick()
        axes = [i for i, d in enumerate(s) if d > 1]
        if not axes:
            return self.s_unary((x, s))
        axis = self.choice(axes)
        first = int(self.rng.integers(1, s[axis]))
        shapes = [tuple(first if i == axis else d for i, d in enumerate(s)),
                  tuple(s[axis] - first if i == axis else d for i, d in enumerate(s))]
        self.node("Split", [x, self.ints([first, s[axis] - first])], shapes, n_out=2, axis=axis)

    def build(self):
        for i in range(int(self.rng.integers(1, 3))):
            shape = tuple(int(d) for d in self.rng.integers(1, 6, int(self.rng.integers(1, 4))))
            name = f"x{i}"
            self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
            self.pool.append((name, shape))
        for _ in range(int(self.rng.integers(2, 16))):
            self.step()
        computed = [v for v in self.pool if not v[0].startswith("x")]
        outs = [computed[-1]] + [self.choice(computed) for _ in range(int(self.rng.integers(0, 3)))]
        outs = list(dict.fromkeys(outs))  # read-later values among them: they feed nodes after them
        graph = helper.make_graph(self.nodes, "random", self.inputs,
                                  [helper.make_tensor_value_info(v, TensorProto.FLOAT, list(s)) for v, s in outs],
                                  self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def random_model(seed: int):
    model = ModelBuilder(seed).build()
    rng = np.random.default_rng(seed + 10**6)
    feeds = [rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
             for i in model.graph.input]
    return model, feeds


def _close(got, want, what):
    assert len(got) == len(want), what
    for k, (a, b) in enumerate(zip(got, want)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape and a.dtype == b.dtype, f"{what}: output {k} is {a.dtype}{a.shape}, want " \
                                                          f"{b.dtype}{b.shape}"
        scale = max(1.0, float(np.abs(b).max(initial=0)))
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5 * scale, err_msg=f"{what}: output {k}")


def check_model(seed: int, ort=None):
    model, feeds = random_model(seed)
    where = f"seed {seed} (tests/test_differential_random.py: random_model({seed}))"
    ref_graph = gc.import_onnx(model)
    want = run_graph(ref_graph, dict(zip(ref_graph.inputs, feeds)))
    for level in LEVELS:
        exe = gc.prepare(gc.compile(gc.import_onnx(model), level=level), backend="numpy")
        first = exe.run(feeds)
        _close(first, want, f"{where}, level {level} vs the interpreter")
        again = exe.run(feeds)  # the same arena a second time: nothing left over from the first run
        for a, b in zip(again, first):
            np.testing.assert_array_equal(a, b, err_msg=f"{where}, level {level}: second run differs")
    if ort is not None:
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        expected = sess.run(None, {i.name: x for i, x in zip(model.graph.input, feeds)})
        _close(want, expected, f"{where}: the interpreter vs onnxruntime")


def _chunk(n, k):
    return range(SEED0 + n * k // CHUNKS, SEED0 + n * (k + 1) // CHUNKS)


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_random_models_every_level(chunk):
    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
    for seed in _chunk(N_GRAPHS, chunk):
        check_model(seed, ort)


# ---- training graphs ----------------------------------------------------------------------------------
class LossBuilder:
    """A random scalar loss of variables and a placeholder, built twice at once: as a DSL graph and as a
    float64 NumPy function of the variables (for finite differences)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        n = int(self.rng.integers(1, 5))
        self.n = n
        self.w0 = [self.rng.uniform(-1, 1, n).astype(np.float32) for _ in range(int(self.rng.integers(1, 3)))]
        self.x0 = self.rng.uniform(-1, 1, n).astype(np.float32)
        self.graph_seed = int(self.rng.integers(2**31))  # every build makes the same graph

    def build(self, g):
        """(DSL loss, numpy loss(ws, x), variables, placeholder) in ``g``."""
        rng = np.random.default_rng(self.graph_seed)
        with g.as_default():
            x = gc.placeholder(gc.float32, [self.n], name="x")
            ws = [gc.Variable(w, name=f"w{i}") for i, w in enumerate(self.w0)]
            terms = [(x, lambda W, X: X)] + [(w, (lambda i: lambda W, X: W[i])(i)) for i, w in enumerate(ws)]
            for _ in range(int(rng.integers(2, 7))):
                a, fa = terms[int(rng.integers(len(terms)))]
                b, fb = terms[int(rng.integers(len(terms)))]
                kind = int(rng.integers(7))
                if kind == 0:
                    t = (a * a * a, lambda W, X, fa=fa: fa(W, X) ** 3)  # w*w*w
                elif kind == 1:
                    t = (a + a, lambda W, X, fa=fa: 2 * fa(W, X))  # x+x
                elif kind == 2:
                    t = (a * b, lambda W, X, fa=fa, fb=fb: fa(W, X) * fb(W, X))
                elif kind == 3:
                    t = (gc.tanh(a) + a, lambda W, X, fa=fa: np.tanh(fa(W, X)) + fa(W, X))
                elif kind == 4:
                    t = (a - b * a, lambda W, X, fa=fa, fb=fb: fa(W, X) - fb(W, X) * fa(W, X))
                elif kind == 5:
                    t = (gc.sigmoid(a * b), lambda W, X, fa=fa, fb=fb: 1 / (1 + np.exp(-fa(W, X) * fb(W, X))))
                else:
                    t = (a * a + b, lambda W, X, fa=fa, fb=fb: fa(W, X) ** 2 + fb(W, X))
                terms.append(t)
            picked = [terms[-1]] + [terms[int(rng.integers(1, len(terms)))] for _ in range(int(rng.integers(0, 2)))]
            loss = gc.reduce_sum(picked[0][0])
            fs = [picked[0][1]]
            for t, f in picked[1:]:
                loss = loss + gc.reduce_sum(t)
                fs.append(f)
            for i, w in enumerate(ws):  # every variable is trained, some through a repeated operand
                if rng.random() < 0.5:
                    loss = loss + gc.reduce_sum(w * w * w * 0.1)
                    fs.append(lambda W, X, i=i: W[i] ** 3 * 0.1)
                else:
                    loss = loss + gc.reduce_sum(w * (x + x))
                    fs.append(lambda W, X, i=i: W[i] * (2 * X))
        return loss, (lambda W, X: sum(float(np.sum(f(W, X))) for f in fs)), ws, x


def _fd_grad(f, ws, x, eps=1e-6):
    grads = []
    for i, w in enumerate(ws):
        g = np.zeros_like(w)
        for j in range(w.size):
            up = [v.copy() for v in ws]
            dn = [v.copy() for v in ws]
            up[i][j] += eps
            dn[i][j] -= eps
            g[j] = (f(up, x) - f(dn, x)) / (2 * eps)
        grads.append(g)
    return grads


def check_training(seed: int, steps: int = 3):
    lb = LossBuilder(seed)
    use_adam = seed % 2 == 1
    lr = 0.01
    where = f"training seed {seed} ({'Adam' if use_adam else 'SGD'})"
    per_level = []
    loss_f = None
    for level in LEVELS:
        g = gc.Graph()
        loss, loss_f, ws, x = lb.build(g)
        with g.as_default():
            # epsilon 1e-3: with the default 1e-8 Adam steps a gradient of 1e-10 by a full lr, in float32 noise
            opt = gc.optim.Adam(lr, epsilon=ADAM_EPS) if use_adam else gc.optim.SGD(lr)
            step = opt.minimize(loss)
        sess = gc.Session(g, level=level)
        track = []
        for _ in range(steps):
            track.append(sess.run(loss, {x: lb.x0}))
            sess.run(step, {x: lb.x0})
            track.extend(sess.variable(w).copy() for w in ws)
        per_level.append(track)
    for level, track in zip(LEVELS[1:], per_level[1:]):
        for a, b in zip(track, per_level[0]):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=f"{where}: level {level} vs level 0")
    # NumPy in float64: finite-difference gradients, the optimizer's update rule
    W = [w.astype(np.float64) for w in lb.w0]
    X = lb.x0.astype(np.float64)
    m = [np.zeros_like(w) for w in W]
    v = [np.zeros_like(w) for w in W]
    track = per_level[0]
    k = 0
    for t in range(1, steps + 1):
        loss_value = track[k]
        k += 1
        np.testing.assert_allclose(loss_value, loss_f(W, X), rtol=1e-4, atol=1e-4, err_msg=f"{where}: loss, step {t}")
        grads = _fd_grad(loss_f, W, X)
        for i, gi in enumerate(grads):
            if use_adam:
                m[i] = 0.9 * m[i] + 0.1 * gi
                v[i] = 0.999 * v[i] + 0.001 * gi * gi
                mh, vh = m[i] / (1 - 0.9 ** t), v[i] / (1 - 0.999 ** t)
                W[i] = W[i] - lr * mh / (np.sqrt(vh) + ADAM_EPS)
            else:
                W[i] = W[i] - lr * gi
        for i in range(len(W)):
            np.testing.assert_allclose(track[k], W[i], rtol=1e-4, atol=1e-4,
                                       err_msg=f"{where}: variable w{i} after step {t} vs NumPy")
            k += 1


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_random_training_every_level(chunk):
    for seed in _chunk(max(N_GRAPHS // 5, CHUNKS), chunk):
        check_training(seed)
