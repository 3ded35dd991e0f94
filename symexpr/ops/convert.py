"""Turning user values into graph variables, with NEP 50 weak Python scalars."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from symexpr.dtypes import canonical_dtype, default_scalar_dtype, is_python_scalar, weak_scalar_dtype
from symexpr.graph.basic import Constant, Variable


def constant(value, name: str | None = None, dtype=None) -> Constant:
    """A constant tensor holding a read-only copy of ``value``.

    Parameters
    ----------
    value : array_like
        The data; its dtype must be one symexpr supports.
    name : str, optional
        Display name.
    dtype : str or numpy.dtype, optional
        Convert the data to this dtype first.
    """
    if isinstance(value, Variable):
        raise TypeError(f"constant: value must be array data, got the symbolic variable {value!r}")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"constant: name must be a str or None, got {name!r}")
    try:
        array = np.asarray(value, dtype=None if dtype is None else canonical_dtype(dtype, "constant: dtype"))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"constant: cannot make an array from {type(value).__name__}: {exc}") from None
    canonical_dtype(array.dtype, "constant: value dtype")
    return Constant(array, name=name)


def as_tensor(value, name: str | None = None) -> Variable:
    """Return ``value`` if it is a Variable, else a :func:`constant` holding it."""
    if isinstance(value, Variable):
        return value
    return constant(value, name=name)


def weak_constant(value, like_dtype: str, what: str) -> Constant:
    """A Python scalar as a constant of the dtype NEP 50 gives it next to ``like_dtype``."""
    # Normalise subclasses (IntEnum, numpy-unrelated int/float subclasses) to the base type.
    kind = bool if isinstance(value, bool) else int if isinstance(value, int) else float
    value = kind(value)
    try:
        return _scalar_constant(weak_scalar_dtype(like_dtype, value), kind, repr(value))
    except OverflowError as exc:
        raise OverflowError(f"{what}: {exc}") from None


@lru_cache(maxsize=1024)
def _scalar_constant(dtype: str, kind: type, text: str) -> Constant:
    # Keyed by repr so that -0.0 and 0.0 (equal as floats) stay apart.
    value = kind(float(text) if kind is float else int(text) if kind is int else text == "True")
    return Constant(np.asarray(value, dtype=dtype))


def as_operands(values, what: str, strong_from=None) -> list[Variable]:
    """Convert an op's operands, treating Python scalars as weak.

    A Python scalar takes the dtype NumPy would give it next to the promoted
    dtype of the strong operands (``strong_from`` of them, if given).  When every
    operand is a Python scalar they all get NumPy's default dtypes.
    """
    values = list(values)
    strong = [
        as_tensor(v) for i, v in enumerate(values) if not is_python_scalar(v) and (strong_from is None or i in strong_from)
    ]
    if not strong:
        return [as_tensor(v) if not is_python_scalar(v) else Constant(np.asarray(v, default_scalar_dtype(v))) for v in values]
    like = canonical_dtype(np.result_type(*[np.dtype(v.dtype) for v in strong]))
    return [weak_constant(v, like, what) if is_python_scalar(v) else as_tensor(v) for v in values]
