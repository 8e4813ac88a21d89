"""Optimizers as graph updates (``gc.optim``): SGD, Momentum/Nesterov, Adam, AdamW, RMSProp.

``opt.minimize(loss)`` appends the gradient nodes (graphc.autodiff), the update math (ordinary ops)
and one ``Assign`` per variable and per optimizer slot, and returns the Operation to run each step.
Learning rates may be numbers, scalar float tensors (a placeholder fed each step) or schedules (step
decay, cosine, warm-up) evaluated in the graph from the optimizer's step counter. Every constant of an
update (learning rate, betas, epsilon, momentum) is in the variable's own element type, so a float64
model trains in float64 end to end; ``clip_norm`` clips the gradients by their global norm first.
"""
from __future__ import annotations

import math
from typing import Sequence

from graphc.errors import GraphBuildError

from . import initializers as init
from .gradients import gradients
from .graph import Graph, Operation, group
from .math import cast, cos, floor, maximum, minimum, reduce_sum, sqrt
from .tensor import Tensor, as_tensor
from .variables import Variable, assign


# ---- learning-rate schedules ----------------------------------------------------------------
class Schedule:
    """A learning rate as a function of the step (0 for the first update).

    ``schedule(step)`` gives the number (for plots and tests); ``schedule.tensor(step)`` builds it in
    the graph from a step tensor, in that tensor's element type (the variables').
    """

    def __call__(self, step: int) -> float:
        raise NotImplementedError

    def tensor(self, step: Tensor) -> Tensor:
        """The learning rate built in the graph from ``step`` (a scalar tensor), in step's element type."""
        raise NotImplementedError


class StepDecay(Schedule):
    """lr * gamma ** floor(step / step_size)."""

    def __init__(self, lr: float, step_size: int, gamma: float = 0.1):
        self.lr, self.step_size, self.gamma = lr, step_size, gamma

    def __call__(self, step: int) -> float:
        return self.lr * self.gamma ** (step // self.step_size)

    def tensor(self, step: Tensor) -> Tensor:
        return as_tensor(self.gamma, step.graph, step.dtype) ** floor(step * (1.0 / self.step_size)) * self.lr


class Cosine(Schedule):
    """Cosine decay from lr to min_lr over total_steps, then min_lr."""

    def __init__(self, lr: float, total_steps: int, min_lr: float = 0.0):
        self.lr, self.total_steps, self.min_lr = lr, total_steps, min_lr

    def __call__(self, step: int) -> float:
        s = min(step, self.total_steps)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * s / self.total_steps))

    def tensor(self, step: Tensor) -> Tensor:
        s = minimum(step, float(self.total_steps))
        return (cos(s * (math.pi / self.total_steps)) + 1.0) * (0.5 * (self.lr - self.min_lr)) + self.min_lr


class Warmup(Schedule):
    """Linear warm-up: ``after(step) * min(1, (step + 1) / warmup_steps)``; ``after`` is a number or schedule."""

    def __init__(self, after: float | Schedule, warmup_steps: int):
        self.after, self.warmup_steps = after, warmup_steps

    def _after(self, step):
        return self.after(step) if isinstance(self.after, Schedule) else self.after

    def __call__(self, step: int) -> float:
        return self._after(step) * min(1.0, (step + 1) / self.warmup_steps)

    def tensor(self, step: Tensor) -> Tensor:
        base = self.after.tensor(step) if isinstance(self.after, Schedule) else self.after
        return minimum((step + 1.0) * (1.0 / self.warmup_steps), 1.0) * base


def clip_by_global_norm(grads: Sequence[Tensor], clip_norm: float) -> tuple[list[Tensor], Tensor]:
    """Scale all gradients by clip_norm / max(global_norm, clip_norm); returns (clipped, global_norm)."""
    total = None
    for gr in grads:
        s = reduce_sum(gr * gr)
        total = s if total is None else total + s
    norm = sqrt(total)
    scale = clip_norm / maximum(norm, clip_norm)
    return [gr * scale for gr in grads], norm


def _depends_on(graph: Graph, y: Tensor) -> set[int]:
    """ids of the values y is computed from."""
    seen = {id(y.value)}
    for n in reversed(graph.nodes):
        if any(v is not None and id(v) in seen for v in n.outputs):
            seen.update(id(v) for v in n.inputs if v is not None)
    return seen


# ---- optimizers -----------------------------------------------------------------------------
class Optimizer:
    """Base: ``minimize(loss, var_list=None) -> Operation``; subclasses give ``_update`` per variable."""

    name = "optimizer"

    def __init__(self, learning_rate: float | Schedule | Tensor, clip_norm: float | None = None):
        if not isinstance(learning_rate, (Schedule, Tensor)):
            try:
                learning_rate = float(learning_rate)
            except (TypeError, ValueError):
                raise GraphBuildError(f"{type(self).__name__}: learning_rate must be a number, a gc.optim.Schedule "
                                      f"or a scalar float tensor (a placeholder...), got "
                                      f"{type(learning_rate).__name__} {learning_rate!r}") from None
        elif isinstance(learning_rate, Tensor) and (learning_rate.ndim not in (None, 0) or learning_rate.dtype is None
                                                    or not learning_rate.dtype.is_float):
            raise GraphBuildError(f"{type(self).__name__}: a learning-rate tensor must be a float scalar, got "
                                  f"'{learning_rate.name}' of type {learning_rate.type}")
        self.learning_rate = learning_rate
        self.clip_norm = clip_norm
        self.step: Tensor | None = None
        self.slots: dict[tuple[str, str], Tensor] = {}

    def minimize(self, loss: Tensor, var_list: Sequence[Tensor] | None = None) -> Operation:
        """The update op of one training step: gradients of ``loss``, then every variable's update.

        ``var_list`` defaults to the trainable variables ``loss`` depends on. The graph's pending update
        ops (batch-norm running statistics) run in the same step.
        """
        return self.apply_gradients(self.compute_gradients(loss, var_list))

    def compute_gradients(self, loss: Tensor, var_list: Sequence[Tensor] | None = None) -> list[tuple[Tensor, Tensor]]:
        """The (gradient, variable) pairs ``minimize`` applies (a wrapper such as gc.distributed's
        DistributedOptimizer transforms them before ``apply_gradients``)."""
        g = loss.graph
        if var_list is None:
            deps = _depends_on(g, loss)
            var_list = [t for t in g.variable_tensors(trainable_only=True) if id(t.value) in deps]
            if not var_list:
                raise GraphBuildError(f"minimize: loss '{loss.name}' depends on no trainable variable")
        var_list = list(var_list)
        grads = gradients(loss, var_list)
        return list(zip(grads, var_list))

    def apply_gradients(self, grads_and_vars: Sequence[tuple[Tensor, Tensor]]) -> Operation:
        """The update op for (gradient, variable) pairs (from ``compute_gradients``, possibly transformed):
        each variable's update, the step counter's, and the graph's pending update ops."""
        if not grads_and_vars:
            raise GraphBuildError("apply_gradients: no (gradient, variable) pairs")
        g = grads_and_vars[0][1].graph
        with g.as_default():
            if self.step is None:
                self.step = Variable(0.0, name=f"{self.name}/step", trainable=False)
            step = self.step
            grads = [gr for gr, _ in grads_and_vars]
            if self.clip_norm is not None:
                grads, _ = clip_by_global_norm(grads, self.clip_norm)
            t_new = step + 1.0
            # Every constant in each variable's own element type: the learning rate is built (or cast) once
            # per type, and the step count (float32, exact to 2**24) is cast to it.
            by_dtype = {}
            ops = []
            for gr, (_, v) in zip(grads, grads_and_vars):
                if v.dtype not in by_dtype:
                    same = v.dtype == step.dtype
                    by_dtype[v.dtype] = (self._learning_rate(step if same else cast(step, v.dtype), v.dtype),
                                         t_new if same else cast(t_new, v.dtype))
                ops.append(self._update(v, gr, *by_dtype[v.dtype]))
            ops.append(assign(step, t_new))
            ops.extend(g.update_ops)
        return group(*ops, name=f"{self.name}_step")

    def _learning_rate(self, step: Tensor, dtype) -> Tensor:
        """The learning rate of this step in ``dtype`` (``step``: the step count in that type)."""
        lr = self.learning_rate
        if isinstance(lr, Schedule):
            return lr.tensor(step)
        if isinstance(lr, Tensor):
            return cast(lr, dtype)
        return as_tensor(float(lr), step.graph, dtype)

    def slot(self, var: Tensor, kind: str) -> Tensor:
        """A zero-initialized state variable of var's shape (momentum, moments)."""
        key = (var.name, kind)
        if key not in self.slots:
            self.slots[key] = Variable(init.zeros(), name=f"{var.name}/{self.name}/{kind}", shape=list(var.shape),
                                       dtype=var.dtype, trainable=False)
        return self.slots[key]

    def _update(self, var: Tensor, grad: Tensor, lr: Tensor, t: Tensor) -> Operation:
        raise NotImplementedError


class SGD(Optimizer):
    """w <- w - lr * (g + weight_decay * w)."""

    name = "sgd"

    def __init__(self, learning_rate=0.01, weight_decay: float = 0.0, clip_norm=None):
        super().__init__(learning_rate, clip_norm)
        self.weight_decay = weight_decay

    def _update(self, var, grad, lr, t):
        if self.weight_decay:
            grad = grad + var * self.weight_decay
        return assign(var, var - lr * grad)


class Momentum(Optimizer):
    """v <- mu v + g; w <- w - lr v (heavy ball), or w <- w - lr (g + mu v) with ``nesterov=True``."""

    name = "momentum"

    def __init__(self, learning_rate=0.01, momentum: float = 0.9, nesterov: bool = False, clip_norm=None):
        super().__init__(learning_rate, clip_norm)
        self.momentum, self.nesterov = momentum, nesterov

    def _update(self, var, grad, lr, t):
        v = self.slot(var, "v")
        v_new = v * self.momentum + grad
        step = grad + v_new * self.momentum if self.nesterov else v_new
        return group(assign(v, v_new), assign(var, var - lr * step))


def Nesterov(learning_rate=0.01, momentum: float = 0.9, clip_norm=None) -> Momentum:
    """Momentum with Nesterov's look-ahead: ``Momentum(..., nesterov=True)``."""
    return Momentum(learning_rate, momentum, nesterov=True, clip_norm=clip_norm)


class Adam(Optimizer):
    """m <- b1 m + (1-b1) g; v <- b2 v + (1-b2) g^2; w <- w - lr m^ / (sqrt(v^) + eps) with bias-corrected m^, v^."""

    name = "adam"

    def __init__(self, learning_rate=1e-3, beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8,
                 clip_norm=None):
        super().__init__(learning_rate, clip_norm)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self._corrections: dict[int, tuple[Tensor, Tensor]] = {}

    def _bias_corrected_lr(self, lr, t):
        # lr * sqrt(1 - b2^t) / (1 - b1^t), computed once per step and shared by every variable
        key = id(t.value)
        if key not in self._corrections:
            c1 = 1.0 - as_tensor(self.beta1, t.graph, dtype=t.dtype) ** t
            c2 = 1.0 - as_tensor(self.beta2, t.graph, dtype=t.dtype) ** t
            self._corrections[key] = (lr / c1, sqrt(c2))
        return self._corrections[key]

    def _direction(self, var, grad, t):
        m, v = self.slot(var, "m"), self.slot(var, "v")
        m_new = m * self.beta1 + grad * (1.0 - self.beta1)
        v_new = v * self.beta2 + grad * grad * (1.0 - self.beta2)
        return m, v, m_new, v_new

    def _update(self, var, grad, lr, t):
        m, v, m_new, v_new = self._direction(var, grad, t)
        lr_c1, sqrt_c2 = self._bias_corrected_lr(lr, t)
        # m^/(sqrt(v^)+eps) = (m/c1) / (sqrt(v)/sqrt(c2) + eps)
        upd = m_new * lr_c1 / (sqrt(v_new) / sqrt_c2 + self.epsilon)
        return group(assign(m, m_new), assign(v, v_new), assign(var, var - upd))


class AdamW(Adam):
    """Adam with decoupled weight decay: w <- w - lr (m^ / (sqrt(v^) + eps) + weight_decay w)."""

    name = "adamw"

    def __init__(self, learning_rate=1e-3, beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8,
                 weight_decay: float = 0.01, clip_norm=None):
        super().__init__(learning_rate, beta1, beta2, epsilon, clip_norm)
        self.weight_decay = weight_decay

    def _update(self, var, grad, lr, t):
        m, v, m_new, v_new = self._direction(var, grad, t)
        lr_c1, sqrt_c2 = self._bias_corrected_lr(lr, t)
        upd = m_new * lr_c1 / (sqrt(v_new) / sqrt_c2 + self.epsilon) + lr * self.weight_decay * var
        return group(assign(m, m_new), assign(v, v_new), assign(var, var - upd))


class RMSProp(Optimizer):
    """s <- rho s + (1-rho) g^2; w <- w - lr g / (sqrt(s) + eps)."""

    name = "rmsprop"

    def __init__(self, learning_rate=1e-3, rho: float = 0.9, epsilon: float = 1e-8, clip_norm=None):
        super().__init__(learning_rate, clip_norm)
        self.rho, self.epsilon = rho, epsilon

    def _update(self, var, grad, lr, t):
        s = self.slot(var, "s")
        s_new = s * self.rho + grad * grad * (1.0 - self.rho)
        return group(assign(s, s_new), assign(var, var - lr * grad / (sqrt(s_new) + self.epsilon)))


__all__ = ["SGD", "Adam", "AdamW", "Cosine", "Momentum", "Nesterov", "Optimizer", "RMSProp", "Schedule", "StepDecay",
           "Warmup", "clip_by_global_norm"]
