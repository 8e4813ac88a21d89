"""A character-level GPT (causal self-attention, layer norm, GELU MLP) trained on the Book of Genesis (KJV).

    python -m graphc.models.mingpt [--backend numpy] [--steps 600] [--layers 2] [--sample 200]

The text ships in models/data/genesis_kjv.txt (public domain; provenance in its header), so nothing is
downloaded. The training loop is session-style: one graph holds the training step and the logits
used by ``generate()``, which samples text from the trained model.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import graphc as gc

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "genesis_kjv.txt")


def load_text(path: str = DATA) -> str:
    """The text without its '#' header."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    start = next(i for i, ln in enumerate(lines) if not ln.startswith("#"))
    return "\n".join(lines[start:]).lstrip("\n")


class Vocab:
    def __init__(self, text: str):
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def encode(self, s: str) -> np.ndarray:
        return np.array([self.index[c] for c in s], dtype=np.int64)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


class GPT:
    """Token and position embeddings, ``n_layer`` pre-norm transformer blocks, a final norm and a linear head."""

    def __init__(self, vocab_size: int, block_size: int, n_layer: int = 2, n_head: int = 4, n_embd: int = 64):
        self.block_size = block_size
        self.tok = gc.layers.Embedding(vocab_size, n_embd, name="tok_emb")
        self.pos = gc.Variable(gc.initializers.normal(0.0, 0.02), shape=[block_size, n_embd], name="pos_emb")
        self.blocks = []
        for i in range(n_layer):
            self.blocks.append(dict(
                ln1=gc.layers.LayerNorm(name=f"h{i}/ln1"),
                attn=gc.layers.CausalSelfAttention(n_head, name=f"h{i}/attn"),
                ln2=gc.layers.LayerNorm(name=f"h{i}/ln2"),
                fc=gc.layers.Dense(4 * n_embd, activation=gc.nn.gelu, name=f"h{i}/fc"),
                proj=gc.layers.Dense(n_embd, name=f"h{i}/proj")))
        self.ln_f = gc.layers.LayerNorm(name="ln_f")
        self.head = gc.layers.Dense(vocab_size, use_bias=False, name="head")

    def __call__(self, idx):
        """idx [B, T] int64 (T <= block_size) -> logits [B, T, vocab]."""
        t = gc.shape(idx)[1:2]
        pos = gc.apply_op("Slice", [self.pos, np.array([0], np.int64), t, np.array([0], np.int64)])
        x = self.tok(idx) + pos
        for b in self.blocks:
            x = x + b["attn"](b["ln1"](x))
            x = x + b["proj"](b["fc"](b["ln2"](x)))
        return self.head(self.ln_f(x))


def build(vocab_size: int, block_size: int = 32, n_layer: int = 2, n_head: int = 4, n_embd: int = 64,
          lr: float = 3e-3, steps: int = 600, seed: int = 0):
    g = gc.Graph(seed=seed)
    with g.as_default():
        idx = gc.placeholder(gc.int64, ["B", "T"], name="idx")
        targets = gc.placeholder(gc.int64, ["B", "T"], name="targets")
        model = GPT(vocab_size, block_size, n_layer, n_head, n_embd)
        logits = model(idx)
        loss = gc.nn.softmax_cross_entropy(logits, targets)
        schedule = gc.optim.Warmup(gc.optim.Cosine(lr, total_steps=max(steps, 1), min_lr=lr / 10), warmup_steps=20)
        step = gc.optim.AdamW(schedule, weight_decay=0.01, clip_norm=1.0).minimize(loss)
        last_logits = logits[:, -1]
    return g, dict(idx=idx, targets=targets, logits=logits, last_logits=last_logits, loss=loss, step=step)


def get_batch(data: np.ndarray, block: int, batch: int, rng: np.random.Generator):
    starts = rng.integers(0, len(data) - block - 1, batch)
    x = np.stack([data[s:s + block] for s in starts])
    y = np.stack([data[s + 1:s + block + 1] for s in starts])
    return x, y


def generate(sess: gc.Session, t: dict, vocab: Vocab, prompt: str, n: int, block: int, temperature: float = 0.8,
             seed: int = 0) -> str:
    """Sample ``n`` characters after ``prompt``; the context is the last ``block`` characters."""
    rng = np.random.default_rng(seed)
    ids = list(vocab.encode(prompt))
    for _ in range(n):
        ctx = np.array([ids[-block:]], dtype=np.int64)
        logits = sess.run(t["last_logits"], {t["idx"]: ctx})[0].astype(np.float64) / temperature
        p = np.exp(logits - logits.max())
        ids.append(int(rng.choice(len(p), p=p / p.sum())))
    return vocab.decode(ids[len(prompt):])


def train(steps: int = 600, backend: str | None = None, batch_size: int = 16, block_size: int = 32, n_layer: int = 2,
          n_embd: int = 64, seed: int = 0, log_every: int = 50, verbose: bool = True) -> dict:
    text = load_text()
    vocab = Vocab(text)
    data = vocab.encode(text)
    split = int(len(data) * 0.9)
    train_data, val_data = data[:split], data[split:]
    g, t = build(len(vocab.chars), block_size, n_layer, 4, n_embd, steps=steps, seed=seed)
    sess = gc.Session(g, backend=backend)
    rng = np.random.default_rng(seed)
    losses = []
    start = time.perf_counter()
    bar = gc.progress(steps, desc="mingpt", disable=not verbose)
    for i in bar:
        xb, yb = get_batch(train_data, block_size, batch_size, rng)
        _, loss = sess.run([t["step"], t["loss"]], {t["idx"]: xb, t["targets"]: yb})
        losses.append(float(loss))
        if verbose and (i % log_every == 0 or i == steps - 1):
            avg = float(np.mean(losses[-log_every:]))
            bar.set_postfix(loss=f"{avg:.3f}")
            bar.write(f"step {i:5d}  loss {loss:.3f}  (mean of last {min(log_every, i + 1)}: {avg:.3f})")
    seconds = time.perf_counter() - start
    vrng = np.random.default_rng(seed + 1)
    val = [float(sess.run(t["loss"], dict(zip((t["idx"], t["targets"]), get_batch(val_data, block_size, 64, vrng)))))
           for _ in range(4)]
    return {"losses": losses, "val_loss": float(np.mean(val)), "seconds": seconds, "session": sess, "tensors": t,
            "vocab": vocab, "block_size": block_size, "text": text}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default=None, help="numpy, cpu or cuda (default: cpu where a C++ compiler is found)")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--embd", type=int, default=64)
    ap.add_argument("--sample", type=int, default=200, help="characters to generate after training")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    r = train(a.steps, a.backend, a.batch, a.block, a.layers, a.embd, a.seed)
    first = float(np.mean(r["losses"][:10]))
    last = float(np.mean(r["losses"][-50:]))
    print(f"trained {a.steps} steps in {r['seconds']:.1f} s: training loss {first:.3f} (first 10 steps) -> "
          f"{last:.3f} (last 50); validation loss {r['val_loss']:.3f}")
    prompt = r["text"][:r["block_size"]]
    sample = generate(r["session"], r["tensors"], r["vocab"], prompt, a.sample, r["block_size"], seed=a.seed)
    print(f"--- sample (prompt: {prompt!r}) ---\n{prompt}{sample}")


if __name__ == "__main__":
    main()
