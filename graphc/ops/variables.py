"""Variable updates: the ``graphc``-domain ``Assign`` op that optimizers and stateful layers emit.

A variable is a Value with no producer whose current value the Session owns and feeds at run time.
``Assign(variable, new_value)`` returns ``new_value``; the Session writes that result back into the
variable's state after the run, so every read within one run sees the value from before the run.
"""
from __future__ import annotations

import numpy as np

from .registry import InferContext, Kind, OpDef, register, types_conflict, set_facts

FAMILY = "variables"
DOMAIN = "graphc"


def _assign_infer(ctx: InferContext) -> list:
    var_t, new_t = ctx.type(0), ctx.type(1)
    why = types_conflict(var_t, new_t)
    if why:
        ctx.fail(f"the new value of variable '{ctx.node.inputs[0].name}' must have its type {var_t}, "
                 f"got {new_t} ({why})")
    return [new_t if new_t is not None else var_t]


def _assign_eval(node, variable, new_value):
    return np.asarray(new_value)


register(OpDef("Assign", eval=_assign_eval, infer=_assign_infer, domain=DOMAIN, kind=Kind.OPAQUE, inputs=(2, 2),
               outputs=(1, 1), family=FAMILY,
               doc="Assign(variable, value) -> value; the Session stores the result as the variable's new state."))
set_facts(DOMAIN, effectful=("Assign",))  # the Session applies the update after the run
