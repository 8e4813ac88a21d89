"""The Python DSL: build graphc graphs with placeholders, variables, operators, layers and optimizers.

``import graphc as gc`` re-exports these names (``gc.Graph``, ``gc.placeholder``, ``gc.nn.conv2d``,
``gc.layers.Dense``, ``gc.optim.Adam``...). Graphs built here are ordinary ``graphc.ir.Graph`` objects (a subclass that
also records variables' initial values), run by ``gc.Session``.
"""
from __future__ import annotations

from . import initializers, layers, losses, nn, optim
from .custom import custom_op
from .gradients import custom_gradient, gradients, stop_gradient
from .graph import Graph, Operation, get_default_graph, group
from .math import *  # noqa: F401,F403
from .math import __all__ as _math_names
from .tensor import Tensor, apply_op, as_tensor
from .variables import Variable, assign, constant, placeholder, placeholder_with_default

__all__ = ["Graph", "Operation", "Tensor", "Variable", "apply_op", "as_tensor", "assign", "constant",
           "custom_gradient", "custom_op", "get_default_graph", "gradients", "group", "initializers", "layers",
           "losses", "nn", "optim", "placeholder", "placeholder_with_default", "stop_gradient",
           *_math_names]
