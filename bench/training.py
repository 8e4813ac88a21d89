"""Training-step speed: graphc's backends against the same models in PyTorch CPU eager, in one run.

    python -m graphc.bench.training [--threads 1] [--steps 50] [--models mlp,mingpt] [--backends numpy,cpu]

Both sides use the same thread count (threadpoolctl for NumPy's BLAS, torch.set_num_threads), the same
batch and architecture, and time full steps (forward, backward, optimizer update) after warm-up; the
figure is the median step time and the ratio graphc / PyTorch (issue #15's target: <= 1.0x for both, at
one thread). ``--backends`` names graphc's backends to time (``numpy``, the compiled ``cpu`` one).
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import numpy as np


def _median_step(fn, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ---- MLP on the digits (batch 128) ---------------------------------------------------------------
def graphc_mlp(batch: int = 128, backend: str = "numpy"):
    import graphc as gc
    from graphc.models.mlp_digits import build

    g, t = build()
    sess = gc.Session(g, backend=backend)
    rng = np.random.default_rng(0)
    xb = rng.random((batch, 64), dtype=np.float32)
    yb = rng.integers(0, 10, batch)
    feeds = {t["x"]: xb, t["y"]: yb}
    fetch = [t["step"], t["loss"]]
    return lambda: sess.run(fetch, feeds)


def torch_mlp(batch: int = 128, device: str = "cpu"):
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    xb = torch.from_numpy(rng.random((batch, 64), dtype=np.float32)).to(device)
    yb = torch.from_numpy(rng.integers(0, 10, batch)).to(device)

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        return loss.item()

    return step


# ---- minGPT (2 layers, 4 heads, width 64, block 32, batch 16) --------------------------------------
GPT = dict(vocab=74, block=32, n_layer=2, n_head=4, n_embd=64, batch=16)


def graphc_gpt(backend: str = "numpy", c: dict | None = None):
    import graphc as gc
    from graphc.models.mingpt import build

    c = c or GPT
    g, t = build(c["vocab"], c["block"], c["n_layer"], c["n_head"], c["n_embd"])
    sess = gc.Session(g, backend=backend)
    rng = np.random.default_rng(0)
    xb = rng.integers(0, c["vocab"], (c["batch"], c["block"]))
    yb = rng.integers(0, c["vocab"], (c["batch"], c["block"]))
    feeds = {t["idx"]: xb, t["targets"]: yb}
    fetch = [t["step"], t["loss"]]
    return lambda: sess.run(fetch, feeds)


def torch_gpt(device: str = "cpu", c: dict | None = None):
    import math

    import torch
    from torch import nn

    c = c or GPT
    torch.manual_seed(0)

    class Block(nn.Module):
        def __init__(self, e, h):
            super().__init__()
            self.h = h
            self.ln1, self.ln2 = nn.LayerNorm(e), nn.LayerNorm(e)
            self.qkv, self.proj = nn.Linear(e, 3 * e), nn.Linear(e, e)
            self.fc, self.out = nn.Linear(e, 4 * e), nn.Linear(4 * e, e)

        def attn(self, x):
            b, t, e = x.shape
            q, k, v = self.qkv(x).split(e, dim=-1)
            q, k, v = (z.view(b, t, self.h, e // self.h).transpose(1, 2) for z in (q, k, v))
            s = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(e // self.h))
            mask = torch.tril(torch.ones(t, t, dtype=torch.bool, device=x.device))
            s = s.masked_fill(~mask, float("-inf"))
            y = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(b, t, e)
            return self.proj(y)

        def forward(self, x):
            x = x + self.attn(self.ln1(x))
            return x + self.out(torch.nn.functional.gelu(self.fc(self.ln2(x))))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            e = c["n_embd"]
            self.tok = nn.Embedding(c["vocab"], e)
            self.pos = nn.Parameter(torch.randn(c["block"], e) * 0.02)
            self.blocks = nn.ModuleList([Block(e, c["n_head"]) for _ in range(c["n_layer"])])
            self.ln_f = nn.LayerNorm(e)
            self.head = nn.Linear(e, c["vocab"], bias=False)

        def forward(self, idx):
            x = self.tok(idx) + self.pos[: idx.shape[1]]
            for b in self.blocks:
                x = b(x)
            return self.head(self.ln_f(x))

    model = Net().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    rng = np.random.default_rng(0)
    xb = torch.from_numpy(rng.integers(0, c["vocab"], (c["batch"], c["block"]))).to(device)
    yb = torch.from_numpy(rng.integers(0, c["vocab"], (c["batch"], c["block"]))).to(device)

    def step():
        opt.zero_grad()
        logits = model(xb)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, c["vocab"]), yb.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    return step


WORKLOADS = {"mlp": ("mlp_digits step (batch 128, Adam)", graphc_mlp, torch_mlp, 1.0),
             "mingpt": ("mingpt step (2 layers, width 64, block 32, batch 16, AdamW + clipping)", graphc_gpt,
                        torch_gpt, 1.0)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--models", default="mlp,mingpt")
    ap.add_argument("--backends", default="numpy,cpu", help="graphc backends to time (default: numpy,cpu)")
    a = ap.parse_args(argv)
    import torch

    try:
        from threadpoolctl import threadpool_limits
        limits = threadpool_limits(a.threads)
    except ImportError:
        limits = contextlib.nullcontext()
    torch.set_num_threads(a.threads)
    print(f"threads: {a.threads} (NumPy BLAS and torch); torch {torch.__version__}, numpy {np.__version__}; "
          f"median of {a.steps} steps after {a.warmup} warm-up steps")
    backends = [b for b in a.backends.split(",") if b]
    unknown = [b for b in backends if b not in ("numpy", "cpu")]
    if unknown:
        ap.error(f"--backends: unknown backend(s) {unknown}; expected numpy and/or cpu")
    print(f"{'workload':75s} {'backend':>8s} {'graphc':>10s} {'torch':>10s} {'ratio':>7s} {'target':>7s}")
    with limits:
        for key in a.models.split(","):
            label, ours, theirs, target = WORKLOADS[key]
            t_theirs = _median_step(theirs(), a.steps, a.warmup)
            for backend in backends:
                kwargs = {"backend": backend}
                t_ours = _median_step(ours(**kwargs), a.steps, a.warmup)
                ratio = t_ours / t_theirs
                print(f"{label:75s} {backend:>8s} {t_ours * 1e3:8.2f}ms {t_theirs * 1e3:8.2f}ms {ratio:6.2f}x "
                      f"{target:6.1f}x", flush=True)


if __name__ == "__main__":
    main()
