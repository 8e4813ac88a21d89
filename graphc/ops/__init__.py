"""The operator library: the OpDef table and every operator family registered into it.

Importing this package registers all operators. ``lookup(domain, op_type)`` finds one.
"""
from ..ir import graph as _graph_module
from . import registry
from .registry import (REGISTRY, REQUIRED, Attr, InferContext, Kind, OpDef, get_opdef, has_fact, lookup, ops_with,
                       register, set_facts)

# Each family registers its ops on import.
from . import (controlflow, conv, elementwise, linalg, ml, ml_extra, nn, norm, quantize, reduce,  # noqa: F401,E402
               sequence, shape, training)
from . import ml_maps  # noqa: F401,E402  (ZipMap, CastMap, DictVectorizer, CategoryMapper)
from . import variables  # noqa: F401,E402  (graphc.Assign, the variable update)
from . import fused  # noqa: F401,E402  (graphc.FusedGroup, made by fusion)
from . import collective  # noqa: F401,E402  (graphc.AllReduce, data-parallel training)
from . import image  # noqa: F401,E402  (ImageDecoder; decoding needs Pillow, the `images` extra)
from .typecheck import check_node_types  # noqa: E402

_graph_module.node_type_checker = check_node_types

__all__ = ["REGISTRY", "REQUIRED", "Attr", "InferContext", "Kind", "OpDef", "get_opdef", "has_fact", "lookup",
           "ops_with", "register", "set_facts", "check_node_types"]
