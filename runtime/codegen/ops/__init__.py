"""The lowerings of ops that are more than one generated loop, one module per op family of graphc/ops.

Each module registers its lowerings in ``lowering.LOWERINGS`` when imported (``register_lowering``); the
dispatcher (``lowering.py``) imports none of them, the package ``graphc.runtime.codegen`` imports them all.
Elementwise, injective, reduction and row ops need no module here: the generators of the package's top
level write their kernels from the group's ops directly.

- ``linalg``: MatMul and Gemm as library GEMM calls, Einsum;
- ``conv``: Conv and ConvTranspose (im2col/col2im kernels around GEMMs, depthwise loops), Col2Im;
- ``pool``: MaxPool, AveragePool, LpPool (the conv family's windowed ops);
- ``norm``: BatchNormalization (inference), LRN, Dropout (inference);
- ``ml``: the tree ensembles (TreeEnsemble, TreeEnsembleRegressor, TreeEnsembleClassifier) as one kernel;
- ``nn``: Attention, RotaryEmbedding;  ``rnn``: RNN, GRU, LSTM (the nn family's recurrent layers);
- ``shape``: Split, ConstantOfShape, OneHot, Trilu, Range, Shape, Size, CenterCropPad, DepthToSpace,
  SpaceToDepth, ReverseSequence, EyeLike;
- ``index``: ScatterElements, Scatter, ScatterND, GatherND;
- ``reduce``: CumSum, CumProd, NegativeLogLikelihoodLoss, SoftmaxCrossEntropyLoss, TopK;
- ``random``: RandomUniform, RandomNormal, their Like forms, Bernoulli;
- ``resize``: Resize;  ``quantize``: QuantizeLinear, DequantizeLinear;
- ``training``: Momentum, Adagrad, Adam and graphc.Assign (a variable's update).
"""
from __future__ import annotations

from . import conv, index, linalg, ml, nn, norm, pool, quantize, random, reduce, resize, rnn, shape, training  # noqa: F401

__all__: list[str] = []
