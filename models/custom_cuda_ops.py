"""User-written CUDA ops, end to end: a fused GELU and a direct 2-D convolution registered with gc.custom_op.

    python -m graphc.models.custom_cuda_ops

Each op is given in CUDA C (the kernel a GPU runs), in NumPy (what backend="numpy" runs), with its shape
rule and its gradient: GELU's is a second custom op (a fused derivative kernel), the convolution's is
built from graphc's own Conv. The script checks both against the built-in ops (Gelu with
approximate="tanh", Conv) on the NumPy backend, then runs them on backend="cuda" (the CPU emulator with
GRAPHC_CUDA_EMULATE=1, a real GPU otherwise; skipped with its reason when there is neither), compares the
gradients, and trains a one-layer convolution a few SGD steps with each. It prints max abs differences.
"""
from __future__ import annotations

import math
import sys

import numpy as np

import graphc as gc
from graphc.ir import TensorType

# ---- the fused GELU (tanh approximation) ---------------------------------------------------------
_C = math.sqrt(2.0 / math.pi)
_A = 0.044715

GELU_SOURCE = r"""
extern "C" __global__ void fused_gelu(const float* x, float* y, long long n) {
    const long long step = (long long)blockDim.x * gridDim.x;  // a grid-stride loop over the n elements
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += step) {
        const float v = x[i];
        const float t = tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v));
        y[i] = 0.5f * v * (1.0f + t);
    }
}
"""

GELU_GRAD_SOURCE = r"""
extern "C" __global__ void fused_gelu_grad(const float* x, const float* dy, float* dx, long long n) {
    const long long step = (long long)blockDim.x * gridDim.x;  // a grid-stride loop over the n elements
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += step) {
        const float v = x[i];
        const float t = tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v));
        const float dt = 0.7978845608028654f * (1.0f + 3.0f * 0.044715f * v * v) * (1.0f - t * t);
        dx[i] = dy[i] * (0.5f * (1.0f + t) + 0.5f * v * dt);
    }
}
"""


def gelu_numpy(x):
    """GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return (0.5 * x * (1.0 + np.tanh(_C * (x + _A * x ** 3)))).astype(x.dtype)


def gelu_grad_numpy(x, dy):
    """d gelu(x)/dx * dy for the tanh approximation."""
    t = np.tanh(_C * (x + _A * x ** 3))
    dt = _C * (1.0 + 3.0 * _A * x * x) * (1.0 - t * t)
    return (dy * (0.5 * (1.0 + t) + 0.5 * x * dt)).astype(x.dtype)


fused_gelu_grad = gc.custom_op("FusedGeluGrad", numpy_impl=gelu_grad_numpy, infer_shape="same",
                               cuda_source=GELU_GRAD_SOURCE, kernel="fused_gelu_grad", shape_params=False)
fused_gelu = gc.custom_op(
    "FusedGelu", numpy_impl=gelu_numpy, infer_shape="same", cuda_source=GELU_SOURCE, kernel="fused_gelu",
    shape_params=False,  # an elementwise kernel needs only n: it then serves tensors of any rank
    grad=lambda ctx, inputs, outputs, dys: [fused_gelu_grad.build(ctx, inputs[0], dys[0])])

# ---- a direct 2-D convolution (NCHW, square stride and padding) ----------------------------------
CONV_SOURCE = r"""
// y[b, k, p, q] = sum over c, r, s of x[b, c, p*stride - pad + r, q*stride - pad + s] * w[k, c, r, s]
extern "C" __global__ void direct_conv2d(const float* x, const float* w, float* y, long long n,
                                         long long N, long long C, long long H, long long W,
                                         long long K, long long C_w, long long R, long long S,
                                         long long N_y, long long K_y, long long OH, long long OW,
                                         long long stride, long long pad) {
    const long long step = (long long)blockDim.x * gridDim.x;  // a grid-stride loop over the n elements
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += step) {
        const long long q = i % OW, p = (i / OW) % OH, k = (i / (OW * OH)) % K, b = i / (OW * OH * K);
        float acc = 0.0f;
        for (long long c = 0; c < C; ++c)
            for (long long r = 0; r < R; ++r) {
                const long long h = p * stride - pad + r;
                if (h < 0 || h >= H) continue;
                for (long long s = 0; s < S; ++s) {
                    const long long v = q * stride - pad + s;
                    if (v < 0 || v >= W) continue;
                    acc += x[((b * C + c) * H + h) * W + v] * w[((k * C + c) * R + r) * S + s];
                }
            }
        y[i] = acc;
    }
}
"""


def conv_numpy(x, w, stride=1, pad=0):
    """Direct NCHW convolution (cross-correlation) with a square stride and zero padding."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    _, _, R, S = w.shape
    oh, ow = (xp.shape[2] - R) // stride + 1, (xp.shape[3] - S) // stride + 1
    win = np.lib.stride_tricks.sliding_window_view(xp, (R, S), axis=(2, 3))[:, :, ::stride, ::stride][:, :, :oh, :ow]
    return np.einsum("ncpqrs,kcrs->nkpq", win, w).astype(x.dtype)


def conv_shape(x: TensorType, w: TensorType, stride=1, pad=0) -> TensorType:
    """(N, K, OH, OW) from x (N, C, H, W) and w (K, C, R, S); H and W must be known."""
    if x.shape is None or w.shape is None:
        return TensorType(x.dtype, None)
    if len(x.shape) != 4 or len(w.shape) != 4:
        raise ValueError(f"x and w must be rank 4 (NCHW, KCRS), got {list(x.shape)} and {list(w.shape)}")
    n, c, h, wd = x.shape
    k, cw, r, s = w.shape
    if isinstance(c, int) and isinstance(cw, int) and c != cw:
        raise ValueError(f"x has {c} channels, w expects {cw}")
    if not all(isinstance(d, int) for d in (h, wd, r, s)):
        raise ValueError(f"needs static spatial dims, got x {list(x.shape)}, w {list(w.shape)}")
    if stride < 1 or pad < 0:
        raise ValueError(f"stride must be >= 1 and pad >= 0, got stride={stride}, pad={pad}")
    return TensorType(x.dtype, (n, k, (h + 2 * pad - r) // stride + 1, (wd + 2 * pad - s) // stride + 1))


def conv_grad(ctx, inputs, outputs, dys, stride, pad):
    """The gradient of the same convolution written with graphc's Conv: ``by_decomposition`` differentiates it."""
    x, w = inputs
    return ctx.by_decomposition(ctx.node, dys, lambda c, node: [
        c.op("Conv", x, w, strides=[stride, stride], pads=[pad] * 4)])


direct_conv2d = gc.custom_op("DirectConv2d", numpy_impl=conv_numpy, infer_shape=conv_shape, cuda_source=CONV_SOURCE,
                             kernel="direct_conv2d", attrs={"stride": 1, "pad": 0}, grad=conv_grad)


def builtin_conv(x, w, stride=1, pad=0):
    """The same convolution with graphc's Conv op."""
    return gc.apply_op("Conv", [x, w], {"strides": [stride, stride], "pads": [pad] * 4})


# ---- checks ------------------------------------------------------------------------------------
def _max_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def _ours_against_builtin(g, backend: str, ours, ref, feeds) -> float:
    """max |``ours`` run on ``backend`` - ``ref`` (the built-in ops) run on the NumPy backend|."""
    (got,) = gc.Session(g, backend=backend).run([ours], feeds)
    (want,) = gc.Session(g).run([ref], feeds)
    return _max_diff(got, want)


def gelu_case(backend: str = "numpy", shape=(4, 33), seed: int = 0) -> float:
    """max |FusedGelu on ``backend`` - built-in Gelu(approximate="tanh") on the NumPy backend|."""
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * 3
    g = gc.Graph()
    with g.as_default():
        xp = gc.placeholder(gc.float32, list(shape), name="x")
        ours, ref = fused_gelu(xp), gc.nn.gelu(xp, approximate="tanh")
    return _ours_against_builtin(g, backend, ours, ref, {xp: x})


def conv_case(backend: str = "numpy", stride: int = 2, pad: int = 1, seed: int = 0) -> float:
    """max |DirectConv2d on ``backend`` - built-in Conv on the NumPy backend|."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    g = gc.Graph()
    with g.as_default():
        xp = gc.placeholder(gc.float32, list(x.shape), name="x")
        wc = gc.constant(w, name="w")
        ours, ref = direct_conv2d(xp, wc, stride=stride, pad=pad), builtin_conv(xp, wc, stride, pad)
    return _ours_against_builtin(g, backend, ours, ref, {xp: x})


def gradient_case(seed: int = 0) -> dict[str, float]:
    """max |gradient through the custom ops - through the built-in ones| (NumPy backend), for GELU's input
    and the convolution's input and weights."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 3, 7, 7)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    g = gc.Graph()
    with g.as_default():
        xp = gc.placeholder(gc.float32, list(x.shape), name="x")
        wv = gc.Variable(w, name="w")
        ours = gc.reduce_sum(fused_gelu(direct_conv2d(xp, wv, stride=2, pad=1)) ** 2)
        ref = gc.reduce_sum(gc.nn.gelu(builtin_conv(xp, wv, 2, 1), approximate="tanh") ** 2)
        d_ours, d_ref = gc.gradients(ours, [xp, wv]), gc.gradients(ref, [xp, wv])
    a, b = gc.Session(g).run([d_ours, d_ref], {xp: x})
    return {"d/dx": _max_diff(a[0], b[0]), "d/dw": _max_diff(a[1], b[1])}


def train_case(steps: int = 10, seed: int = 0, custom: bool = True) -> list[float]:
    """Loss of each of ``steps`` SGD steps fitting a 3x3 convolution to a target one (NumPy backend)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((8, 1, 8, 8)).astype(np.float32)
    target = conv_numpy(x, rng.standard_normal((2, 1, 3, 3)).astype(np.float32), 1, 1)
    g = gc.Graph(seed=seed)
    with g.as_default():
        xp = gc.placeholder(gc.float32, list(x.shape), name="x")
        tp = gc.placeholder(gc.float32, list(target.shape), name="t")
        w = gc.Variable(np.zeros((2, 1, 3, 3), np.float32), name="w")
        y = direct_conv2d(xp, w, stride=1, pad=1) if custom else builtin_conv(xp, w, 1, 1)
        d = y - tp
        loss = gc.reduce_mean(d * d)
        step = gc.optim.SGD(0.05).minimize(loss)
    sess = gc.Session(g)
    return [float(sess.run([loss, step], {xp: x, tp: target})[0]) for _ in range(steps)]


def cuda_status() -> str | None:
    """None when backend="cuda" can run here (a GPU, or GRAPHC_CUDA_EMULATE=1), else why not."""
    from graphc.runtime.cuda.executor import default_device

    try:
        default_device()
    except gc.GraphcError as e:
        return str(e)
    return None


def main() -> int:
    bad = []

    def report(what: str, diff: float, tol: float) -> None:
        print(f"{what:58s} max abs diff {diff:.3g}  {'ok' if diff <= tol else 'MISMATCH'}")
        if not diff <= tol:
            bad.append(what)

    report("FusedGelu (numpy_impl) vs Gelu tanh", gelu_case(), 1e-6)
    report("DirectConv2d (numpy_impl) vs Conv, stride 2 pad 1", conv_case(), 1e-5)
    for k, v in gradient_case().items():
        report(f"gradient {k}: custom ops vs built-in ops", v, 1e-4)
    ours, ref = train_case(custom=True), train_case(custom=False)
    print(f"training 10 SGD steps (custom conv): loss {ours[0]:.4f} -> {ours[-1]:.4f}")
    report("loss curve: custom conv vs built-in Conv", _max_diff(ours, ref), 1e-5)
    why = cuda_status()
    if why is None:
        report("FusedGelu on backend='cuda' vs Gelu tanh on numpy", gelu_case("cuda"), 1e-5)
        report("DirectConv2d on backend='cuda' vs Conv on numpy", conv_case("cuda"), 1e-4)
    else:
        print(f"backend='cuda' skipped: {why}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
