"""``matmul`` / ``@`` against NumPy 2: shapes, broadcasting, dtypes, build- and call-time errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from support import ALL_DTYPES, assert_matches_numpy, dtypes, finite_arrays, hyp, symbolic_like

import symexpr as se


def matmul_tolerance(a: np.ndarray, b: np.ndarray, expected: np.ndarray) -> dict:
    """Exact for integer/bool results; for floats an error bound from ``|a| @ |b|``."""
    if expected.dtype.kind != "f":
        return {}
    eps = np.finfo(expected.dtype).eps
    k = a.shape[-1]
    bound = np.matmul(np.abs(a.astype(np.float64)), np.abs(b.astype(np.float64)))
    scale = float(np.max(bound)) if bound.size else 0.0
    return {"rtol": 2 * eps, "atol": (k + 2) * eps * scale + float(np.finfo(expected.dtype).smallest_subnormal)}


def check(out, a_var, a, b_var, b, backend):
    expected = np.matmul(a, b)
    return assert_matches_numpy(out, [(a_var, a), (b_var, b)], expected, backend, **matmul_tolerance(a, b, expected))


@hyp(100)
@given(data=st.data())
def test_matmul_matches_numpy(backend, data):
    shapes = data.draw(
        hnp.mutually_broadcastable_shapes(signature=np.matmul.signature, max_dims=2, min_side=0, max_side=4),
        label="shapes",
    )
    a_shape, b_shape = shapes.input_shapes
    a = data.draw(finite_arrays(data.draw(dtypes(), label="a_dtype"), a_shape, -10, 10), label="a")
    b = data.draw(finite_arrays(data.draw(dtypes(), label="b_dtype"), b_shape, -10, 10), label="b")
    known_a = data.draw(st.booleans(), label="known_a")
    known_b = data.draw(st.booleans(), label="known_b")
    av, bv = symbolic_like(a, "a", known_a), symbolic_like(b, "b", known_b)
    out = av @ bv if data.draw(st.booleans(), label="operator") else se.matmul(av, bv)
    expected = np.matmul(a, b)
    if known_a and known_b:
        assert out.type.shape == expected.shape
    check(out, av, a, bv, b, backend)


@pytest.mark.parametrize(
    "a_shape, b_shape",
    [
        ((4,), (4,)),  # 1-D @ 1-D -> 0-d
        ((3,), (3, 5)),  # 1-D @ 2-D
        ((3,), (2, 3, 5)),  # 1-D @ batched
        ((2, 3), (3,)),  # 2-D @ 1-D
        ((4, 2, 3), (3,)),  # batched @ 1-D
        ((2, 3), (3, 4)),
        ((5, 2, 3), (3, 4)),  # batch on one side
        ((2, 1, 2, 3), (4, 3, 2)),  # broadcasting batch dims
        ((1, 2, 3), (6, 3, 2)),
        ((0, 3), (3, 2)),
        ((2, 0), (0, 3)),  # empty inner dimension -> zeros
    ],
)
@pytest.mark.parametrize(
    "dtype_a, dtype_b",
    [
        ("float32", "float32"),
        ("int8", "int8"),
        ("int16", "float16"),
        ("uint8", "int64"),
        ("bool", "bool"),
        ("float64", "uint32"),
    ],
)
def test_matmul_cases(a_shape, b_shape, dtype_a, dtype_b, backend):
    rng = np.random.default_rng(0)
    a = rng.integers(-3, 4, size=a_shape).astype(dtype_a)
    b = rng.integers(-3, 4, size=b_shape).astype(dtype_b)
    for known_a, known_b in itertools.product([True, False], repeat=2):
        av, bv = symbolic_like(a, "a", known_a), symbolic_like(b, "b", known_b)
        check(av @ bv, av, a, bv, b, backend)


def test_matmul_result_dtypes_are_numpys():
    for da, db in itertools.product(ALL_DTYPES, repeat=2):
        out = se.matmul(se.tensor("a", dtype=da, shape=(2, 3)), se.tensor("b", dtype=db, shape=(3, None)))
        want = np.matmul(np.ones((2, 3), da), np.ones((3, 1), db)).dtype.name
        assert out.dtype == want, (da, db)


def test_integer_matmul_is_exact_and_wraps_like_numpy(backend):
    a = np.array([[100, 100], [-128, 127]], dtype=np.int8)
    b = np.array([[2, 1], [1, 1]], dtype=np.int8)
    av, bv = symbolic_like(a, "a"), symbolic_like(b, "b")
    got = check(av @ bv, av, a, bv, b, backend)
    assert got.dtype == np.int8
    big = np.array([[2**40, 3], [1, 2**50]], dtype=np.int64)
    cv = symbolic_like(big, "c")
    dv = symbolic_like(big, "d")
    check(cv @ dv, cv, big, dv, big, backend)


def test_float_matmul_values(backend):
    rng = np.random.default_rng(1)
    for dtype in ["float16", "float32", "float64"]:
        a = rng.standard_normal((3, 4, 5)).astype(dtype)
        b = rng.standard_normal((5, 2)).astype(dtype)
        av, bv = symbolic_like(a, "a"), symbolic_like(b, "b", known=True)
        check(av @ bv, av, a, bv, b, backend)


def test_matmul_static_shapes():
    T = se.tensor
    assert (T("a", shape=(4,)) @ T("b", shape=(4,))).type.shape == ()
    assert (T("a", shape=(4,)) @ T("b", shape=(None, 4, 5))).type.shape == (None, 5)
    assert (T("a", shape=(None, 3, 4)) @ T("b", shape=(4, 5))).type.shape == (None, 3, 5)
    assert (T("a", shape=(2, 1, 3, 4)) @ T("b", shape=(5, 4, 6))).type.shape == (2, 5, 3, 6)
    assert (T("a", shape=(2, None, 3, 4)) @ T("b", shape=(7, None, 6))).type.shape == (2, 7, 3, 6)
    assert (T("a", shape=(None, None)) @ T("b", shape=(None,))).type.shape == (None,)
    assert (T("a", shape=(3, None)) @ T("b", shape=(4, 5))).type.shape == (3, 5)


def test_inner_dimension_mismatch_message():
    a = se.tensor("a", shape=(3, 4))
    b = se.tensor("b", shape=(5, 4))
    with pytest.raises(ValueError) as info:
        a @ b
    assert "matmul: (3, 4) @ (5, 4): inner dimensions 4 and 5 differ" in str(info.value)
    with pytest.raises(ValueError):
        se.matmul(a, b)


@pytest.mark.parametrize(
    "a_shape, b_shape", [((3,), (4,)), ((3,), (4, 5)), ((2, 3), (4,)), ((2, 2, 3), (3, 2, 4)), ((3, 2, 3), (2, 3, 4))]
)
def test_incompatible_static_shapes_are_build_errors(a_shape, b_shape):
    with pytest.raises(ValueError):
        se.tensor("a", shape=a_shape) @ se.tensor("b", shape=b_shape)


def test_zero_dimensional_operands_are_value_errors():
    s = se.scalar("s")
    v = se.vector("v")
    with pytest.raises(ValueError):
        s @ v
    with pytest.raises(ValueError):
        v @ s
    with pytest.raises(ValueError):
        se.matmul(s, s)
    with pytest.raises(ValueError):
        v @ 2.0
    with pytest.raises(ValueError):
        3 @ v


def test_runtime_mismatch_raises_at_call(backend):
    a, b = se.matrix("a"), se.matrix("b")
    f = se.function([a, b], a @ b, backend=backend)
    assert f(np.ones((3, 4), np.float32), np.ones((4, 2), np.float32)).shape == (3, 2)
    with pytest.raises(ValueError):
        f(np.ones((3, 4), np.float32), np.ones((5, 4), np.float32))
    c = se.tensor("c", shape=(None, 2, 2))
    h = se.function([a, c], a @ c, backend=backend)
    with pytest.raises(ValueError):
        h(np.ones((2, 3), np.float32), np.ones((4, 2, 2), np.float32))


def test_matmul_with_constant_operands(backend):
    w = np.arange(12, dtype=np.float32).reshape(4, 3)
    x = se.matrix("x")
    arr = np.ones((2, 4), np.float32)
    out = x @ w
    assert out.type.shape == (None, 3)
    got = se.function([x], out, backend=backend)(arr)
    np.testing.assert_allclose(got, arr @ w, rtol=1e-6)
    out = w.T @ x.T  # NumPy defers to the symbolic operand
    assert isinstance(out, se.Variable) and out.type.shape == (3, None)
    np.testing.assert_allclose(se.function([x], out, backend=backend)(arr), w.T @ arr.T, rtol=1e-6)


def test_matmul_output_is_fresh(backend):
    a = se.matrix("a", dtype="float64")
    arr = np.eye(3)
    got = se.function([a], a @ a, backend=backend)(arr)
    assert not np.shares_memory(got, arr) and got.flags.writeable
