"""A GRU character model in graphc (TensorFlow 1's char-rnn): an embedding, a GRU cell unrolled over the
sequence by gc.layers.rnn, a softmax over the next character, and Adam on gradients clipped by their global
norm (compute_gradients, clip_by_global_norm, apply_gradients).

    python docs/examples/char_gru.py [--steps 200]
"""
from __future__ import annotations

import argparse

import numpy as np

import graphc as gc
from graphc.models.mingpt import load_text

SEQ, BATCH, HIDDEN = 16, 32, 64


def main(steps: int = 200, verbose: bool = True) -> dict:
    text = load_text()[:20000]
    chars = sorted(set(text))
    data = np.array([chars.index(c) for c in text], np.int64)
    vocab = len(chars)
    g = gc.Graph(seed=0)
    with g.as_default():
        ids = gc.placeholder(gc.int64, [None, SEQ], name="ids")
        targets = gc.placeholder(gc.int64, [None, SEQ], name="targets")
        emb = gc.layers.embedding(ids, vocab, 32, name="emb")                  # [B, T, 32]
        outputs, _ = gc.layers.rnn(gc.layers.GRUCell(HIDDEN, name="gru"), emb)  # [B, T, HIDDEN]
        logits = gc.layers.dense(outputs, vocab, name="out")                   # [B, T, vocab]
        loss = gc.nn.softmax_cross_entropy(logits, targets)
        opt = gc.optim.Adam(1e-2)
        grads_and_vars = opt.compute_gradients(loss)
        clipped, norm = gc.optim.clip_by_global_norm([gr for gr, _ in grads_and_vars], 5.0)
        train = opt.apply_gradients(list(zip(clipped, [v for _, v in grads_and_vars])))
    rng = np.random.default_rng(0)
    losses = []
    with gc.Session(g) as sess:
        for i in range(steps):
            start = rng.integers(0, len(data) - SEQ - 1, BATCH)
            xb = np.stack([data[s:s + SEQ] for s in start])
            yb = np.stack([data[s + 1:s + SEQ + 1] for s in start])
            _, l, n = sess.run([train, loss, norm], {ids: xb, targets: yb})
            losses.append(float(l))
            if verbose and i % 50 == 0:
                print(f"step {i}: loss {l:.3f}, gradient norm {n:.2f}")
    if verbose:
        print(f"loss {losses[0]:.3f} -> {losses[-1]:.3f} (uniform guess: {np.log(vocab):.3f})")
    return {"first_loss": losses[0], "last_loss": float(np.mean(losses[-10:])), "vocab": vocab}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    main(ap.parse_args().steps)
