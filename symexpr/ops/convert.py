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
    dtype = None if dtype is None else canonical_dtype(dtype, "constant: dtype")
    try:
        array = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"constant: cannot make an array from {type(value).__name__}: {exc}") from None
    canonical_dtype(array.dtype, "constant: value dtype")
    return Constant(array, name=name)


def as_tensor(value, name: str | None = None) -> Variable:
    """Return ``value`` if it is a Variable, else a :func:`constant` holding it."""
    if isinstance(value, Variable):
        return value
    return constant(value, name=name)


def _python_kind(value) -> type:
    return bool if isinstance(value, bool) else int if isinstance(value, int) else float


def weak_constant(value, dtype: str, what: str, wrap: bool = False) -> Constant:
    """A weak Python scalar as a constant of ``dtype``.

    An integer out of range raises ``OverflowError`` as NumPy does, or wraps
    around when ``wrap`` (NumPy's ``where`` and a few others cast unsafely).
    """
    kind = _python_kind(value)  # IntEnum and other subclasses become plain ints
    value = kind(value)
    try:
        return _scalar_constant(dtype, kind, repr(value))
    except OverflowError as exc:
        if wrap:
            return Constant(np.asarray(value).astype(dtype))
        raise OverflowError(f"{what}: {exc}") from None


def weak_dtype(value, strong_dtype: str, ufunc=None, position: int = 1) -> str:
    """The dtype a weak Python scalar takes as operand ``position`` of ``ufunc``.

    NumPy resolves a ufunc's loop with the scalar's Python type, so, e.g.,
    ``uint8_array / 300`` converts 300 to float64.  Without a ufunc this is
    ``numpy.result_type(strong_dtype, value)``.
    """
    if ufunc is not None and ufunc.nin == 2:
        dtype = _ufunc_weak_dtype(ufunc, strong_dtype, _python_kind(value), position)
        if dtype is not None:
            return dtype
    return weak_scalar_dtype(strong_dtype, value)


@lru_cache(maxsize=1024)
def _ufunc_weak_dtype(ufunc, strong_dtype: str, kind: type, position: int) -> str | None:
    """The dtype ``ufunc`` resolves for a Python scalar of type ``kind`` next to ``strong_dtype``; None if no loop."""
    operands = [np.dtype(strong_dtype), np.dtype(strong_dtype)]
    operands[position] = kind
    try:
        return canonical_dtype(ufunc.resolve_dtypes((*operands, None))[position])
    except (TypeError, ValueError):
        return None  # no loop: make_node reports it


@lru_cache(maxsize=1024)
def _scalar_constant(dtype: str, kind: type, text: str) -> Constant:
    # Keyed by repr so that -0.0 and 0.0 (equal as floats) stay apart.
    value = kind(float(text) if kind is float else int(text) if kind is int else text == "True")
    return Constant(np.asarray(value, dtype=dtype))


def as_operands(values, what: str, ufunc=None, wrap: bool = False) -> list[Variable]:
    """Convert an op's operands, treating Python scalars as weak.

    A Python scalar takes the dtype NumPy would give it next to the promoted
    dtype of the strong operands, resolved
    through ``ufunc`` when the op is one.  When every operand is a Python scalar
    they all get NumPy's default dtypes.
    """
    values = list(values)
    if not any(map(is_python_scalar, values)):
        return [as_tensor(v) for v in values]
    strong = [as_tensor(v) for v in values if not is_python_scalar(v)]
    if not strong:
        return [as_tensor(v) if not is_python_scalar(v) else Constant(np.asarray(v, default_scalar_dtype(v))) for v in values]
    like = canonical_dtype(np.result_type(*[np.dtype(v.dtype) for v in strong]))
    return [
        weak_constant(v, weak_dtype(v, like, ufunc, i), what, wrap) if is_python_scalar(v) else as_tensor(v)
        for i, v in enumerate(values)
    ]
