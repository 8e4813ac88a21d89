"""The fast NumPy kernels: the table (registry.py) and the kernel families that register in it.

Importing this package imports every family, so ``kernel_for`` finds all of them:

- elementwise.py: ``ELEMENTWISE`` (op type -> ``build(node, dtype) -> apply(out, *inputs)``), one node or a
  chain in a fused group;
- layout.py: views, Concat, Transpose, Split; norm.py: Softmax, LayerNormalization, BatchNormalization;
  attention.py: Attention;
- linear.py: Gemm, MatMul and Conv (``HEAD_RUNNERS``, also the heads of fused groups); conv.py: the Conv
  forms and pooling;
- fused.py: ``graphc.FusedGroup`` nodes.

Each writes into a preallocated output with ``out=``. The imports run one way: registry and common at the
bottom, the families above them, program.py and the executor above this package.
"""
from __future__ import annotations

from . import attention, conv, elementwise, fused, layout, linear, norm  # noqa: F401  (they register)
from .registry import kernel_for

__all__ = ["attention", "conv", "elementwise", "fused", "kernel_for", "layout", "linear", "norm"]
