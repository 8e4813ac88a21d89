"""Loss functions: softmax cross-entropy with integer labels, mean squared error, binary cross-entropy.

Each returns a scalar (the mean over the batch), built from ordinary ops so autodiff needs no
special rule for them.
"""
from __future__ import annotations

from graphc.errors import GraphBuildError

from .math import clip, log, one_hot, reduce_mean, reduce_sum
from .tensor import Tensor, apply_op, as_tensor


def softmax_cross_entropy(logits, labels) -> Tensor:
    """mean over the batch of -log softmax(logits)[label]; logits [..., K], labels [...] integers."""
    logits = as_tensor(logits)
    labels = as_tensor(labels, logits.graph)
    k = logits.shape[-1] if logits.shape is not None else None
    if not isinstance(k, int):
        raise GraphBuildError(f"softmax_cross_entropy: the class dim of logits '{logits.name}' must be known, "
                         f"got shape {logits.shape}")
    logp = apply_op("LogSoftmax", [logits], {"axis": -1})
    picked = reduce_sum(logp * one_hot(labels, k, logits.dtype), -1)
    return -reduce_mean(picked)


def mse(predictions, targets) -> Tensor:
    """mean((predictions - targets)^2) over every element."""
    d = as_tensor(predictions) - targets
    return reduce_mean(d * d)


def binary_cross_entropy(predictions, targets, from_logits: bool = False, epsilon: float = 1e-7) -> Tensor:
    """mean of -(t log p + (1 - t) log(1 - p)); with ``from_logits`` p = sigmoid(predictions), computed stably."""
    z = as_tensor(predictions)
    t = as_tensor(targets, z.graph)
    if from_logits:
        # log(1 + exp(z)) - t z, with softplus keeping large |z| finite
        return reduce_mean(apply_op("Softplus", [z]) - t * z)
    p = clip(z, epsilon, 1.0 - epsilon)
    return -reduce_mean(t * log(p) + (1.0 - t) * log(1.0 - p))


__all__ = ["binary_cross_entropy", "mse", "softmax_cross_entropy"]
