"""The NumPy-style API of symbolic tensors: operators, indexing, ``.T``, ``.sum()`` and friends.

:class:`TensorOperators` is a mixin of the op layer (like PyTensor's
``_tensor_py_operators``); importing this module adds its methods to
:class:`~symexpr.graph.basic.Variable` through
:func:`~symexpr.graph.basic.extend_variable`, so the graph layer never imports
the op library.  :mod:`symexpr.ops` imports this module, so every variable has
these methods as soon as any part of the op library is loaded.
"""

from __future__ import annotations

import numpy as np

from symexpr.graph.basic import extend_variable
from symexpr.ops import elemwise as ew
from symexpr.ops import indexing as ix
from symexpr.ops import matmul as mm
from symexpr.ops import reduction as red
from symexpr.ops import shape as sh
from symexpr.ops import sizes


class TensorOperators:
    """Operators and methods that build graph nodes, mixed into every :class:`~symexpr.Variable`."""

    __slots__ = ()
    __array_ufunc__ = None  # make NumPy defer to our reflected operators

    @property
    def T(self):
        return sh.transpose(self)

    @property
    def shape(self) -> tuple:
        """The shape as a tuple of int64 0-d variables (constants where ``type.shape`` knows the size)."""
        return sizes.shape_of(self)

    @property
    def size(self):
        """The number of elements, an int64 0-d variable (a constant when the shape is static)."""
        return sizes.size_of(self)

    # -- arithmetic -------------------------------------------------------------
    def __add__(self, other):
        return ew.add(self, other)

    def __radd__(self, other):
        return ew.add(other, self)

    def __sub__(self, other):
        return ew.sub(self, other)

    def __rsub__(self, other):
        return ew.sub(other, self)

    def __mul__(self, other):
        return ew.mul(self, other)

    def __rmul__(self, other):
        return ew.mul(other, self)

    def __truediv__(self, other):
        return ew.true_div(self, other)

    def __rtruediv__(self, other):
        return ew.true_div(other, self)

    def __floordiv__(self, other):
        return ew.floor_div(self, other)

    def __rfloordiv__(self, other):
        return ew.floor_div(other, self)

    def __mod__(self, other):
        return ew.mod(self, other)

    def __rmod__(self, other):
        return ew.mod(other, self)

    def __pow__(self, other):
        # ndarray.__pow__'s fast path (NumPy's fast_scalar_power), for a Python int or float exponent
        # only: ** 2 is np.square (bool gives int8; for integer arrays only the int 2); on float
        # arrays ** -1 is np.reciprocal and ** 0.5 is np.sqrt, which differ from C's pow at -inf and -0.0.
        if type(other) in (int, float):
            is_float = self.dtype.startswith("float")
            if other == 2 and (is_float or type(other) is int):  # an integer array ** 2.0 is np.power's
                base = ew.cast(self, "int8") if self.dtype == "bool" else self
                return ew.mul(base, base)
            if is_float and other == -1:
                return ew.true_div(1, self)
            if is_float and other == 0.5:
                return ew.sqrt(self)
        return ew.power(self, other)

    def __rpow__(self, other):
        return ew.power(other, self)

    def __matmul__(self, other):
        return mm.matmul(self, other)

    def __rmatmul__(self, other):
        return mm.matmul(other, self)

    def __neg__(self):
        return ew.neg(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return ew.abs(self)

    def __round__(self, ndigits=None):
        if ndigits not in (None, 0):
            raise TypeError("round(): only rounding to an integer value (ndigits=None) is supported")
        return ew.round(self)

    def __invert__(self):
        return ew.invert(self)

    def __and__(self, other):
        return ew.bitwise_and(self, other)

    def __rand__(self, other):
        return ew.bitwise_and(other, self)

    def __or__(self, other):
        return ew.bitwise_or(self, other)

    def __ror__(self, other):
        return ew.bitwise_or(other, self)

    def __xor__(self, other):
        return ew.bitwise_xor(self, other)

    def __rxor__(self, other):
        return ew.bitwise_xor(other, self)

    # -- comparisons (elementwise, like NumPy) ----------------------------------
    def __lt__(self, other):
        return ew.less(self, other)

    def __le__(self, other):
        return ew.less_equal(self, other)

    def __gt__(self, other):
        return ew.greater(self, other)

    def __ge__(self, other):
        return ew.greater_equal(self, other)

    def __eq__(self, other):
        return ew.equal(self, other)

    def __ne__(self, other):
        return ew.not_equal(self, other)

    # -- methods ----------------------------------------------------------------
    def __getitem__(self, index):
        return ix.getitem(self, index)

    def sum(self, axis=None, keepdims=False):
        return red.sum(self, axis=axis, keepdims=keepdims)

    def prod(self, axis=None, keepdims=False):
        return red.prod(self, axis=axis, keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        return red.max(self, axis=axis, keepdims=keepdims)

    def min(self, axis=None, keepdims=False):
        return red.min(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return red.mean(self, axis=axis, keepdims=keepdims)

    def var(self, axis=None, keepdims=False, ddof=0):
        return red.var(self, axis=axis, keepdims=keepdims, ddof=ddof)

    def argmax(self, axis=None, keepdims=False):
        return red.argmax(self, axis=axis, keepdims=keepdims)

    def argmin(self, axis=None, keepdims=False):
        return red.argmin(self, axis=axis, keepdims=keepdims)

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = shape[0]
        return sh.reshape(self, shape)

    def transpose(self, *axes):
        if len(axes) == 1 and (axes[0] is None or not isinstance(axes[0], (int, np.integer))):
            axes = axes[0]
        return sh.transpose(self, axes or None)

    def swapaxes(self, axis1, axis2):
        return sh.swapaxes(self, axis1, axis2)

    def astype(self, dtype):
        return ew.cast(self, dtype)

    def squeeze(self, axis=None):
        return sh.squeeze(self, axis)


extend_variable(TensorOperators)
