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


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in compiled code and in the BLAS it calls (default: the CPUs this process may use,
    within its cgroup quota, or ``$SYMEXPR_NUM_THREADS``)."""
    from symexpr.backends.llvm import runtime

    runtime.set_num_threads(n)


def get_num_threads() -> int:
    """How many threads compiled code and its BLAS use."""
    from symexpr.backends.llvm import runtime

    return runtime.get_num_threads()
