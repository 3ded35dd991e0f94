"""Property testing for symexpr graphs, rewrites and backends.

Needs the ``hypothesis`` package, a test extra: ``pip install symexpr[test]``.
``import symexpr`` never imports this module.

- :mod:`symexpr.testing.strategies`: :func:`graphs`, :func:`graphs_containing`,
  :func:`arrays_for`, :func:`cases_for` and :func:`elements_for` draw random
  well-typed graphs (:class:`GraphCase`) and input arrays.
- :mod:`symexpr.testing.asserts`: :func:`assert_rewrite_preserves` and
  :func:`assert_rewrite_fires` check a rewrite against the NumPy reference.

See ``docs/testing.md`` for a walk-through.
"""

try:
    import hypothesis  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "symexpr.testing needs the 'hypothesis' package, which is a test extra of symexpr; "
        "install it with: pip install symexpr[test]"
    ) from exc

from symexpr.testing.asserts import assert_rewrite_fires, assert_rewrite_preserves, default_tolerances
from symexpr.testing.strategies import (
    FAMILIES,
    GraphCase,
    arrays_for,
    cases_for,
    elements_for,
    graphs,
    graphs_containing,
)

__all__ = [
    "FAMILIES",
    "GraphCase",
    "arrays_for",
    "assert_rewrite_fires",
    "assert_rewrite_preserves",
    "cases_for",
    "default_tolerances",
    "elements_for",
    "graphs",
    "graphs_containing",
]
