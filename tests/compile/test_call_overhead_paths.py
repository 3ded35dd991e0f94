"""The per-call fast paths of ``Function.__call__`` and the llvm driver, and what must still take the slow path.

The fast path takes exact ``numpy.ndarray`` arguments of the declared dtype whose
shape fits without calling ``TensorType.check_value``; every other argument goes
through it, so conversions and errors (naming the argument) are unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest

import symexpr as se
from symexpr.compile.function import DEFAULT_BACKEND, function
from symexpr.graph.type import TensorType


@pytest.fixture
def check_calls(monkeypatch):
    """Counts calls of TensorType.check_value (which still does its job)."""
    calls = []
    real = TensorType.check_value

    def counting(self, value, what="value"):
        calls.append(what)
        return real(self, value, what)

    monkeypatch.setattr(TensorType, "check_value", counting)
    return calls


SHAPES = {
    "static": ((2, 3), (2, 3)),
    "dynamic": ((None, None), (4, 5)),
    "mixed": ((None, 3), (7, 3)),
    "scalar": ((), ()),
}


@pytest.mark.parametrize("kind", list(SHAPES))
def test_exact_arrays_skip_check_value(backend, check_calls, kind):
    declared, actual = SHAPES[kind]
    x = se.tensor("x", "float32", declared)
    y = se.tensor("y", "int64", declared)
    f = se.function([x, y], x * 2 + y, backend=backend)
    a = np.full(actual, 1.5, dtype=np.float32)
    b = np.full(actual, 2, dtype=np.int64)
    for _ in range(3):
        np.testing.assert_array_equal(f(a, b), a * 2 + b)
    np.testing.assert_array_equal(f(y=b, x=a), a * 2 + b)  # keywords bind first, then the same checks
    assert check_calls == []


@pytest.mark.parametrize(
    "make",
    [
        lambda a: a.astype(a.dtype.newbyteorder(">")),  # same dtype name, other byte order: converted
        lambda a: np.asarray(a, dtype=np.dtype(np.float32, metadata={"unit": "m"})),  # an equal dtype, another object
        lambda a: np.matrix(a),  # a subclass: made a plain array
        lambda a: a.T.copy().T,  # Fortran order: a plain array, takes the fast path
    ],
    ids=["big-endian", "dtype-with-metadata", "np.matrix", "fortran"],
)
@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_other_arrays_are_checked_and_converted(backend, make):
    x = se.matrix("x", shape=(None, 3))
    f = se.function([x], x * 2, backend=backend)
    base = np.arange(6, dtype=np.float32).reshape(2, 3)
    got = f(make(base))
    assert type(got) is np.ndarray and got.dtype == np.float32
    np.testing.assert_array_equal(got, base * 2)


@pytest.mark.parametrize(
    ("value", "error", "parts"),
    [
        (np.ones((2, 3), np.float64), TypeError, ["'x'", "float32", "float64"]),
        (np.ones((2, 4), np.float32), ValueError, ["'x'", "dimension 1", "3", "4"]),
        (np.ones((3,), np.float32), ValueError, ["'x'", "2 dimensions", "1"]),
        (np.ones((1, 2, 3), np.float32), ValueError, ["'x'", "2 dimensions", "3"]),
        ([[1.0, 2.0, 3.0]], TypeError, ["'x'", "list"]),
        (np.float32(1), ValueError, ["'x'", "2 dimensions", "0"]),
    ],
    ids=["dtype", "static-dim", "rank-low", "rank-high", "list", "scalar"],
)
def test_errors_still_name_the_argument(backend, value, error, parts):
    x = se.matrix("x", shape=(None, 3))
    v = se.vector("v")
    f = se.function([v, x], x * 2, backend=backend)
    f(np.ones(2, np.float32), np.ones((2, 3), np.float32))  # a good call first (a specialisation exists)
    with pytest.raises(error) as info:
        f(np.ones(2, np.float32), value)
    msg = str(info.value)
    for part in parts:
        assert part in msg, msg
    assert "position 1" in msg, msg


def test_static_shape_mismatch_on_a_fully_static_input(backend):
    x = se.tensor("x", "float32", (2, 3))
    f = se.function([x], x + 1, backend=backend)
    with pytest.raises(ValueError, match=r"argument 'x'.*dimension 0 must be 2"):
        f(np.ones((3, 3), np.float32))


def test_check_value_fast_path_for_unknown_dims():
    t = TensorType("float32", (None, 3))
    a = np.ones((5, 3), np.float32)
    assert t.check_value(a) is a
    with pytest.raises(ValueError, match="dimension 1 must be 3"):
        t.check_value(np.ones((5, 4), np.float32), "argument 'x' (position 0)")
    with pytest.raises(ValueError, match="expected 2 dimensions"):
        t.check_value(np.ones((5,), np.float32))
    with pytest.raises(TypeError, match="expected dtype float32, got float64"):
        t.check_value(np.ones((5, 3)))


def test_llvm_call_allocates_no_synchronisation_array(monkeypatch):
    """A steady-state call reuses the barrier counters (zeroed under the pool lock when a segment runs in parallel)."""
    x = se.vector("x")
    f = se.function([x], se.exp(x) + se.sum(x), backend="llvm")
    a = np.linspace(0, 1, 10, dtype=np.float32)
    expected = f(a)

    def no_zeros(*args, **kwargs):
        raise AssertionError("np.zeros called on the call path")

    monkeypatch.setattr(np, "zeros", no_zeros)
    for _ in range(3):
        np.testing.assert_allclose(f(a), expected, rtol=1e-6)


def test_llvm_dispatch_tells_strides_apart():
    x = se.matrix("x")
    f = se.function([x], x * 2 + 1, backend="llvm")
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    for view in (base, base[:, ::2], base[:, 1::2], np.asfortranarray(base[:, :3]), base[:, :3]):
        np.testing.assert_array_equal(f(view), view * 2 + 1)
        np.testing.assert_array_equal(f(view), view * 2 + 1)


def test_results_of_repeated_calls_are_distinct_arrays(backend):
    x = se.vector("x")
    f = se.function([x], [x + 1, x * 2], backend=backend)
    a = np.arange(4, dtype=np.float32)
    first = f(a)
    second = f(a + 1)
    for r1, r2 in zip(first, second):
        assert not np.shares_memory(r1, r2)
    np.testing.assert_array_equal(first[0], a + 1)
    np.testing.assert_array_equal(second[1], (a + 1) * 2)


def test_function_docstring_names_the_default_backend():
    assert DEFAULT_BACKEND == "llvm"
    doc = " ".join(function.__doc__.split())
    assert 'default ``"llvm"``' in doc, doc
    assert 'default ``"numpy"``' not in doc


@pytest.mark.parametrize("make", [lambda x: x * 2, lambda x: x], ids=["computed", "input"])
def test_one_variable_returned_twice_gives_two_arrays(backend, make):
    """One output buffer returned twice does not take the llvm driver's one-output fast path."""
    x = se.vector("x")
    y = make(x)
    f = se.function([x], [y, y], backend=backend)
    a = np.arange(3, dtype=np.float32)
    first, second = f(a)
    assert first is not second and not np.shares_memory(first, second)
    np.testing.assert_array_equal(first, second)
