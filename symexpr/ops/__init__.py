"""The op library: every function that builds graph nodes."""

from symexpr.ops.convert import as_tensor, constant
from symexpr.ops.elemwise import (
    Elemwise,
    abs,
    add,
    bitwise_and,
    bitwise_or,
    bitwise_xor,
    cast,
    ceil,
    clip,
    cos,
    equal,
    erf,
    exp,
    expm1,
    floor,
    floor_div,
    gelu,
    greater,
    greater_equal,
    invert,
    isfinite,
    isinf,
    isnan,
    less,
    less_equal,
    log,
    log1p,
    maximum,
    minimum,
    mod,
    mul,
    neg,
    not_equal,
    power,
    relu,
    round,
    rsqrt,
    sigmoid,
    sign,
    silu,
    sin,
    sqrt,
    sub,
    tanh,
    true_div,
    where,
)
from symexpr.ops.indexing import Subtensor, Take, getitem, take
from symexpr.ops.matmul import MatMul, matmul
from symexpr.ops.nnet import LayerNorm, LogSoftmax, LogSumExp, RMSNorm, Softmax, layer_norm, log_softmax, logsumexp, rms_norm, softmax
from symexpr.ops.reduction import ArgReduce, Reduce, Var, argmax, argmin, max, mean, min, prod, sum, var
from symexpr.ops.shape import (
    BroadcastTo,
    Concatenate,
    ExpandDims,
    Reshape,
    Squeeze,
    Transpose,
    broadcast_to,
    concatenate,
    expand_dims,
    reshape,
    squeeze,
    stack,
    transpose,
)

# NumPy-style aliases.
divide = true_div
subtract = sub
multiply = mul
negative = neg
absolute = abs
pow = power
