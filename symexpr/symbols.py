"""Declaring symbolic inputs: ``scalar``, ``vector``, ``matrix``, ``tensor``."""

from __future__ import annotations

from symexpr.graph.basic import Variable
from symexpr.graph.type import TensorType, normalize_shape


def tensor(name: str | None = None, dtype="float32", shape=None, ndim: int | None = None) -> Variable:
    """A symbolic input tensor.

    Parameters
    ----------
    name : str, optional
        Name shown by printers and in call-time error messages.
    dtype : str or numpy.dtype
        Element type (default float32).
    shape : tuple of (int or None), optional
        Static shape; ``None`` marks a dimension known only at call time.
    ndim : int, optional
        Rank, when ``shape`` is not given (all dimensions unknown).

    Examples
    --------
    >>> import symexpr as se
    >>> x = se.tensor("x", dtype="float32", shape=(None, 128))
    >>> x.type.shape
    (None, 128)
    """
    if name is not None and not isinstance(name, str):
        raise TypeError(f"tensor: name must be a str or None, got {name!r}")
    if shape is None:
        if ndim is None:
            raise TypeError("tensor: give shape (a tuple of ints or None) or ndim")
        if not isinstance(ndim, int) or isinstance(ndim, bool) or ndim < 0:
            raise TypeError(f"tensor: ndim must be a non-negative int, got {ndim!r}")
        shape = (None,) * ndim
    shape = normalize_shape(shape, what="tensor: shape")
    if ndim is not None and ndim != len(shape):
        raise ValueError(f"tensor: ndim={ndim} does not match shape {shape}")
    return Variable(TensorType(dtype, shape), name=name)


def scalar(name: str | None = None, dtype="float32") -> Variable:
    """A symbolic 0-d input."""
    return tensor(name, dtype, ())


def vector(name: str | None = None, dtype="float32", shape=(None,)) -> Variable:
    """A symbolic 1-d input (length unknown unless ``shape`` says)."""
    return tensor(name, dtype, shape, ndim=1)


def matrix(name: str | None = None, dtype="float32", shape=(None, None)) -> Variable:
    """A symbolic 2-d input (sizes unknown unless ``shape`` says)."""
    return tensor(name, dtype, shape, ndim=2)
