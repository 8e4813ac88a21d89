"""Loss functions: softmax cross-entropy with integer labels or with soft (one-hot, probability) labels,
mean squared error, binary cross-entropy.

Each returns a scalar (the mean over the batch), built from ordinary ops so autodiff needs no
special rule for them. Integer labels are checked at run time: ``gc.Session`` refuses a class id
outside [0, classes) with a FeedError naming the labels (TensorFlow 1 raises there too).
"""
from __future__ import annotations

from graphc.errors import GraphBuildError

from .math import clip, log, one_hot, reduce_mean, reduce_sum
from .tensor import Tensor, apply_op, as_tensor


def _classes(what: str, logits: Tensor) -> int:
    k = logits.shape[-1] if logits.shape is not None else None
    if not isinstance(k, int):
        raise GraphBuildError(f"{what}: the class dim of logits '{logits.name}' must be known, got shape "
                              f"{None if logits.shape is None else list(logits.shape)}")
    return k


def _fits(a, b) -> bool:
    """Whether two dims can be equal (an unknown or symbolic dim fits anything)."""
    return not (isinstance(a, int) and isinstance(b, int) and a != b)


def softmax_cross_entropy(logits, labels) -> Tensor:
    """mean over the batch of -log softmax(logits)[label]; logits [..., K], labels [...] integer class ids
    in [0, K) (``tf.nn.sparse_softmax_cross_entropy_with_logits``, PyTorch's ``cross_entropy``).

    A class id out of range is refused at run time; one-hot or soft labels (the shape of the logits) are
    refused while building: they go to ``softmax_cross_entropy_with_soft_labels``.
    """
    what = "softmax_cross_entropy"
    logits = as_tensor(logits)
    labels = as_tensor(labels, logits.graph)
    k = _classes(what, logits)
    ls, ys = logits.shape, labels.shape
    if labels.dtype is None or not labels.dtype.is_int:
        hint = (" (one-hot or soft labels: use gc.nn.softmax_cross_entropy_with_soft_labels)"
                if ys is not None and len(ys) == len(ls) else "")
        raise GraphBuildError(f"{what}: labels '{labels.name}' must be integer class ids of shape {list(ls[:-1])} "
                              f"for logits '{logits.name}' of shape {list(ls)}, got {labels.type}{hint}")
    if ys is not None and (len(ys) != len(ls) - 1 or not all(_fits(a, b) for a, b in zip(ys, ls))):
        hint = (" (one-hot labels: pass their argmax, or use gc.nn.softmax_cross_entropy_with_soft_labels)"
                if len(ys) == len(ls) else "")
        raise GraphBuildError(f"{what}: labels '{labels.name}' of shape {list(ys)} do not fit logits "
                              f"'{logits.name}' of shape {list(ls)}: labels need shape {list(ls[:-1])}{hint}")
    check_range = getattr(logits.graph, "check_range", None)
    if check_range is not None:
        check_range(labels, 0, k, f"{what}: labels '{labels.name}' must be class ids in [0, {k}) for logits "
                                  f"'{logits.name}' of shape {list(ls)}")
    logp = apply_op("LogSoftmax", [logits], {"axis": -1})
    picked = reduce_sum(logp * one_hot(labels, k, logits.dtype), -1)
    return -reduce_mean(picked)


def softmax_cross_entropy_with_soft_labels(logits, labels) -> Tensor:
    """mean over the batch of -sum(labels * log softmax(logits)) along the last axis; labels are one-hot or
    probability rows of the logits' shape (``tf.nn.softmax_cross_entropy_with_logits_v2``)."""
    what = "softmax_cross_entropy_with_soft_labels"
    logits = as_tensor(logits)
    labels = as_tensor(labels, logits.graph, logits.dtype)
    _classes(what, logits)
    ls, ys = logits.shape, labels.shape
    if labels.dtype != logits.dtype or ys is None or len(ys) != len(ls) or not all(_fits(a, b)
                                                                                  for a, b in zip(ys, ls)):
        raise GraphBuildError(f"{what}: labels '{labels.name}' ({labels.type}) must have the type and shape of "
                              f"logits '{logits.name}' ({logits.type}); integer class ids go to "
                              f"softmax_cross_entropy")
    logp = apply_op("LogSoftmax", [logits], {"axis": -1})
    return -reduce_mean(reduce_sum(labels * logp, -1))


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


__all__ = ["binary_cross_entropy", "mse", "softmax_cross_entropy", "softmax_cross_entropy_with_soft_labels"]
