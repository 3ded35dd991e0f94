"""symexpr: a compiler for array expressions, for fast quantized and sparse inference.

Declare symbolic tensors, build a graph with NumPy-like operations, and
compile it with :func:`function`::

    import numpy as np, symexpr as se
    x = se.matrix("x")
    f = se.function([x], se.softmax(x, axis=-1))
    f(np.ones((2, 3), "float32"))
"""

from symexpr import dtypes, passes
from symexpr._version import __version__
from symexpr.backends import available_backends, get_backend, register_backend
from symexpr.compile import Function, function
from symexpr.graph.basic import Apply, Constant, Op, Variable
from symexpr.graph.fgraph import FunctionGraph
from symexpr.graph.type import TensorType
from symexpr.ops import *  # noqa: F401,F403  (the op library is the public API)
from symexpr.printing import debugprint, pprint, to_dot, to_networkx
from symexpr.symbols import matrix, scalar, tensor, vector
