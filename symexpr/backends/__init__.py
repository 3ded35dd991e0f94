"""Backend registry: where ``function(..., backend=name)`` finds its code generator.

A backend is an object with ``name`` and ``compile(fgraph) -> callable``; the
callable takes the input arrays (already checked against the declared types)
as a list and returns the output arrays as a list.  Register new ones with
:func:`register_backend`; "llvm" and "cuda" plug in here.
"""

from __future__ import annotations

from collections.abc import Callable

_BACKENDS: dict[str, Callable[[], object]] = {}
_INSTANCES: dict[str, object] = {}


def register_backend(name: str, factory: Callable[[], object]) -> None:
    """Register a backend under ``name``; ``factory()`` builds it on first use."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"register_backend: name must be a non-empty str, got {name!r}")
    _BACKENDS[name] = factory
    _INSTANCES.pop(name, None)


def get_backend(name: str):
    """The backend registered as ``name``.

    Raises
    ------
    ValueError
        If no backend has that name (the message lists the registered ones).
    """
    if name not in _BACKENDS:
        raise ValueError(f"backend: expected one of {', '.join(sorted(_BACKENDS))}, got {name!r}")
    if name not in _INSTANCES:
        _INSTANCES[name] = _BACKENDS[name]()
    return _INSTANCES[name]


def available_backends() -> list[str]:
    """Names of the registered backends."""
    return sorted(_BACKENDS)


def _numpy_backend():
    from symexpr.backends.numpy_backend import NumpyBackend

    return NumpyBackend()


register_backend("numpy", _numpy_backend)


def _llvm_backend():
    from symexpr.backends.llvm import LLVMBackend

    return LLVMBackend()


register_backend("llvm", _llvm_backend)


def _cuda_backend():
    from symexpr.backends.cuda import CUDABackend

    return CUDABackend()


register_backend("cuda", _cuda_backend)
