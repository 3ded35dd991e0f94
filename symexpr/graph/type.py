"""Tensor types: an element dtype and a static shape with ``None`` for unknown dims."""

from __future__ import annotations

import numpy as np

from symexpr.dtypes import SUPPORTED_DTYPES, canonical_dtype

_NP_DTYPES = {name: np.dtype(name) for name in SUPPORTED_DTYPES}


def format_shape(shape) -> str:
    """``(None, 8)`` style text for a static shape (trailing comma for rank 1)."""
    inner = ", ".join("None" if d is None else str(d) for d in shape)
    if len(shape) == 1:
        inner += ","
    return f"({inner})"


def normalize_shape(shape, what: str = "shape") -> tuple:
    """Validate a static shape: a tuple of non-negative ints or ``None``."""
    if shape.__class__ is tuple:
        for d in shape:
            if d is not None and (d.__class__ is not int or d < 0):
                break
        else:
            return shape  # already normalised (the common case: a type built from other types)
    if shape is None:
        raise TypeError(f"{what}: expected a tuple of ints or None, got None")
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError(f"{what}: expected a tuple of ints or None, got {shape!r}") from None
    out = []
    for i, d in enumerate(dims):
        if d is None:
            out.append(None)
        elif isinstance(d, (int, np.integer)) and not isinstance(d, (bool, np.bool_)) and d >= 0:
            out.append(int(d))
        else:
            raise TypeError(f"{what}: dimension {i} must be a non-negative int or None, got {d!r}")
    return tuple(out)


class TensorType:
    """The type of a tensor variable: ``dtype`` and static ``shape``.

    Parameters
    ----------
    dtype : str or numpy.dtype
        One of :data:`symexpr.dtypes.SUPPORTED_DTYPES`.
    shape : tuple of (int or None)
        Static shape; ``None`` marks a dimension known only at call time.

    Types are immutable and compare by value.
    """

    __slots__ = ("dtype", "shape", "_hash", "_np_dtype")

    def __init__(self, dtype, shape=()):
        object.__setattr__(self, "dtype", canonical_dtype(dtype))
        object.__setattr__(self, "shape", normalize_shape(shape))
        object.__setattr__(self, "_hash", hash((TensorType, self.dtype, self.shape)))
        object.__setattr__(self, "_np_dtype", _NP_DTYPES[self.dtype])

    def __setattr__(self, name, value):
        raise AttributeError("TensorType is immutable")

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __eq__(self, other):
        return isinstance(other, TensorType) and self.dtype == other.dtype and self.shape == other.shape

    def __hash__(self):
        return self._hash

    def __repr__(self):
        return f"TensorType({self.dtype}, {format_shape(self.shape)})"

    def __str__(self):
        return f"{self.dtype}{format_shape(self.shape)}"

    def is_compatible(self, other: "TensorType") -> bool:
        """True when a value of ``other`` could also be a value of ``self``.

        Same dtype and rank, and no static dimension that both know and disagree on.
        """
        return (
            self.dtype == other.dtype
            and self.ndim == other.ndim
            and all(a is None or b is None or a == b for a, b in zip(self.shape, other.shape))
        )

    def check_value(self, value, what: str = "value", device_arrays: bool = False):
        """Check a runtime array against this type; return it as an ndarray.

        With ``device_arrays``, an array in GPU memory (an object with
        ``__cuda_array_interface__``, such as a CuPy array) is checked the same
        way and returned as it is.

        Raises
        ------
        TypeError
            If ``value`` is not a NumPy array or scalar (or an accepted device
            array), or has another dtype.
        ValueError
            If its rank or a static dimension differs.
        """
        if type(value) is np.ndarray and value.dtype is self._np_dtype:
            # The common case, checked in well under a microsecond: an exact ndarray of the
            # declared dtype whose shape fits (every static dimension, and the rank).
            got = value.shape
            if got == self.shape:
                return value
            if len(got) == len(self.shape) and all(want is None or want == n for want, n in zip(self.shape, got)):
                return value
        if isinstance(value, np.generic):
            value = np.asarray(value)
        elif isinstance(value, np.ma.MaskedArray):
            raise TypeError(f"{what}: masked arrays are not supported (the mask would be ignored); pass a plain numpy.ndarray")
        elif isinstance(value, np.ndarray):
            value = np.asarray(value)  # subclasses such as np.matrix become plain arrays
        elif hasattr(value, "__cuda_array_interface__"):
            if not device_arrays:
                raise TypeError(
                    f"{what}: expected a numpy.ndarray of dtype {self.dtype}, got a GPU array ({type(value).__name__}); "
                    "this function runs on the CPU: pass a NumPy array (e.g. cupy.asnumpy(x)) or compile with backend='cuda'"
                )
        else:
            raise TypeError(
                f"{what}: expected a numpy.ndarray of dtype {self.dtype} and shape "
                f"{format_shape(self.shape)}, got {type(value).__name__}"
            )
        if value.dtype.name != self.dtype:
            raise TypeError(f"{what}: expected dtype {self.dtype}, got {value.dtype.name}")
        if not value.dtype.isnative:
            value = value.astype(value.dtype.newbyteorder("="))
        if value.ndim != self.ndim:
            raise ValueError(
                f"{what}: expected {self.ndim} dimension{'s' if self.ndim != 1 else ''} "
                f"(shape {format_shape(self.shape)}), got {value.ndim} (shape {format_shape(value.shape)})"
            )
        for i, (want, got) in enumerate(zip(self.shape, value.shape)):
            if want is not None and want != got:
                raise ValueError(
                    f"{what}: dimension {i} must be {want} (declared shape {format_shape(self.shape)}), "
                    f"got shape {format_shape(value.shape)}"
                )
        return value
