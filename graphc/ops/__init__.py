"""The operator library: the OpDef table and every operator family registered into it.

Importing this package registers all operators. ``lookup(domain, op_type)`` finds one.

The op is the unit: everything graphc knows about an op is on its OpDef (registry.py) or beside its
registration in the family's module. Facts the passes and runtimes decide by (random, nondeterministic,
effectful, view, reshape, layout, commutative, value-sized, bool output, float math, weight inputs) are
OpDef fields, set with ``set_facts`` at the end of the family's module and read with ``has_fact`` /
``ops_with``; no pass, runtime or front end keeps a list of op names (tests/test_op_facts.py). Per-node
type inference (``infer.infer_node``) lives here beside ``InferContext``, and the geometry helpers the
runtimes share with ``eval`` (pool windows, ConvTranspose pads, Slice and Pad arguments, erf) are public
functions of the family modules.

Gradient rules have one place: each family module ends with one ``set_grads(rules, not_differentiable)``
table, after its registrations, mapping its op names to rule functions defined just above it (see
graphc.autodiff.GradContext) and naming the ops that have no gradient and why. An op's ``OpDef(...)``
never sets ``grad``/``no_grad`` itself (custom ops, graphc/custom.py, get theirs from the user).
"""
from ..ir import graph as _graph_module
from . import registry
from .registry import (REGISTRY, REQUIRED, Attr, InferContext, Kind, OpDef, get_opdef, has_fact, lookup, ops_with,
                       register, set_facts)

# Each family registers its ops on import.
from . import (controlflow, conv, elementwise, linalg, ml, nn, random, signal, text, norm,  # noqa: F401,E402
               quantize, reduce, sequence, shape, index, resize, training)
from . import variables  # noqa: F401,E402  (graphc.Assign, the variable update)
from . import fused  # noqa: F401,E402  (graphc.FusedGroup, made by fusion)
from . import collective  # noqa: F401,E402  (graphc.AllReduce, data-parallel training)
from . import image  # noqa: F401,E402  (ImageDecoder; decoding needs Pillow, the `images` extra)
from .typecheck import check_node_types  # noqa: E402

_graph_module.node_type_checker = check_node_types

__all__ = ["REGISTRY", "REQUIRED", "Attr", "InferContext", "Kind", "OpDef", "get_opdef", "has_fact", "lookup",
           "ops_with", "register", "set_facts", "check_node_types"]
