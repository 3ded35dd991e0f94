"""Element types and NumPy 2 (NEP 50) type promotion.

symexpr follows NumPy exactly: the result dtype of every op is the dtype
NumPy would produce for the same operand dtypes.  Python scalars (``bool``,
``int``, ``float``) are *weak*: ``float32_var * 2.5`` stays float32.  NumPy
scalars and arrays are *strong*.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

#: Every element type a tensor may have, in NumPy's spelling.
SUPPORTED_DTYPES: tuple[str, ...] = (
    "bool",
    "int8",
    "uint8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "float16",
    "float32",
    "float64",
)

_SUPPORTED = frozenset(SUPPORTED_DTYPES)
FLOAT_DTYPES = frozenset({"float16", "float32", "float64"})
SIGNED_INT_DTYPES = frozenset({"int8", "int16", "int32", "int64"})
UNSIGNED_INT_DTYPES = frozenset({"uint8", "uint16", "uint32", "uint64"})
INT_DTYPES = SIGNED_INT_DTYPES | UNSIGNED_INT_DTYPES


def canonical_dtype(dtype, what: str = "dtype") -> str:
    """Return the canonical name of a supported dtype.

    Parameters
    ----------
    dtype : str, numpy.dtype or type
        Anything :func:`numpy.dtype` accepts.
    what : str
        How to name the value in an error message.

    Raises
    ------
    TypeError
        If the dtype is not one symexpr supports.
    """
    if isinstance(dtype, str) and dtype in _SUPPORTED:
        return dtype
    if dtype is None:  # np.dtype(None) would silently mean float64
        raise TypeError(f"{what}: expected one of {', '.join(SUPPORTED_DTYPES)}, got None")
    try:
        return _canonical_cached(dtype)
    except TypeError:  # unhashable, or not supported: take the slow path for the message
        pass
    return _canonical(dtype, what)


@lru_cache(maxsize=256)
def _canonical_cached(dtype) -> str:
    return _canonical(dtype, "dtype")


def _canonical(dtype, what: str) -> str:
    try:
        name = np.dtype(dtype).name
    except TypeError as exc:
        raise TypeError(f"{what}: expected one of {', '.join(SUPPORTED_DTYPES)}, got {dtype!r}") from exc
    if name not in _SUPPORTED:
        raise TypeError(f"{what}: expected one of {', '.join(SUPPORTED_DTYPES)}, got {name!r}")
    return name


def is_float(dtype: str) -> bool:
    return dtype in FLOAT_DTYPES


def is_int(dtype: str) -> bool:
    return dtype in INT_DTYPES


def promote(*dtypes: str) -> str:
    """NumPy's promotion of strong dtypes, e.g. ``promote('int8', 'uint8') == 'int16'``."""
    return canonical_dtype(np.result_type(*[np.dtype(d) for d in dtypes]))


def float_result(dtype: str) -> str:
    """The dtype NumPy gives a float function (like ``exp``) applied to ``dtype``.

    ``int8`` and ``bool`` give ``float16``, ``int16`` gives ``float32``, wider
    integers give ``float64``; floats keep their type.
    """
    return canonical_dtype(np.exp.resolve_dtypes((np.dtype(dtype), None))[1])


def is_python_scalar(value) -> bool:
    """True for the weak Python scalars NEP 50 treats specially."""
    return isinstance(value, (bool, int, float)) and not isinstance(value, np.generic)


def weak_scalar_dtype(strong_dtype: str, value) -> str:
    """The dtype a weak Python scalar takes next to an operand of ``strong_dtype``."""
    return canonical_dtype(np.result_type(np.dtype(strong_dtype), value))


def default_scalar_dtype(value) -> str:
    """The dtype NumPy gives a Python scalar on its own (``np.asarray(value).dtype``)."""
    return canonical_dtype(np.asarray(value).dtype, what="scalar")
