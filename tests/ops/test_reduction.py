"""Reductions (sum prod max min mean var argmax argmin) against NumPy 2, dtype for dtype."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from support import ALL_DTYPES, FLOAT_DTYPES, arrays, assert_matches_numpy, dtypes, hyp, shapes, symbolic_like

import symexpr as se

# NumPy itself warns for means/variances of empty slices; the reference backend does the same.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Mean of empty slice:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:Degrees of freedom <= 0:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),
]

REDUCE_KINDS = ["sum", "prod", "mean", "max", "min"]
ALL_KINDS = REDUCE_KINDS + ["var", "argmax", "argmin"]


def numpy_result(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` as an array, with NumPy's empty-slice / overflow warnings silenced."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(fn(*args, **kwargs))


def value_tol(dtype: str, backend: str) -> dict:
    """Exact for the NumPy reference backend; dtype-appropriate tolerance for others."""
    if backend == "numpy" or dtype not in FLOAT_DTYPES:
        return {}
    return {"rtol": {"float16": 1e-2, "float32": 1e-5, "float64": 1e-12}[dtype], "atol": 0.0}


def axes_strategy(ndim: int, allow_tuple: bool = True):
    options = [st.none()]
    if ndim > 0:
        options.append(st.integers(-ndim, ndim - 1))
    if allow_tuple:
        options.append(hnp.valid_tuple_axes(ndim))
    return st.one_of(options)


def build(kind, x, as_method, **kwargs):
    return getattr(x, kind)(**kwargs) if as_method else getattr(se, kind)(x, **kwargs)


def reduced_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    items = axis if isinstance(axis, tuple) else (axis,)
    return tuple(a % ndim for a in items)


# -- values -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", REDUCE_KINDS)
@hyp()
@given(data=st.data())
def test_reduce_matches_numpy(backend, kind, data):
    dtype = data.draw(dtypes(), label="dtype")
    no_identity = kind in ("max", "min")
    shape = data.draw(shapes(max_dims=3, min_side=0, max_side=4), label="shape")
    axis = data.draw(axes_strategy(len(shape)), label="axis")
    if no_identity and any(shape[a] == 0 for a in reduced_axes(axis, len(shape))):
        shape = tuple(max(d, 1) for d in shape)
    arr = data.draw(arrays(dtype, shape), label="x")
    keepdims = data.draw(st.booleans(), label="keepdims")
    known = data.draw(st.booleans(), label="known")
    as_method = data.draw(st.booleans(), label="as_method")

    x = symbolic_like(arr, "x", known)
    out = build(kind, x, as_method, axis=axis, keepdims=keepdims)
    expected = numpy_result(getattr(np, kind), arr, axis=axis, keepdims=keepdims)
    tol = {} if no_identity else value_tol(dtype, backend)
    assert_matches_numpy(out, [(x, arr)], expected, backend, **tol)
    if known:
        assert out.type.shape == expected.shape


@hyp()
@given(data=st.data())
def test_var_matches_numpy(backend, data):
    dtype = data.draw(dtypes(), label="dtype")
    shape = data.draw(shapes(max_dims=3, min_side=0, max_side=4), label="shape")
    arr = data.draw(arrays(dtype, shape), label="x")
    axis = data.draw(axes_strategy(len(shape)), label="axis")
    keepdims = data.draw(st.booleans(), label="keepdims")
    ddof = data.draw(st.integers(0, 3), label="ddof")
    known = data.draw(st.booleans(), label="known")
    as_method = data.draw(st.booleans(), label="as_method")

    x = symbolic_like(arr, "x", known)
    out = build("var", x, as_method, axis=axis, keepdims=keepdims, ddof=ddof)
    expected = numpy_result(np.var, arr, axis=axis, keepdims=keepdims, ddof=ddof)
    assert_matches_numpy(out, [(x, arr)], expected, backend, **value_tol(dtype, backend))


@pytest.mark.parametrize("kind", ["argmax", "argmin"])
@hyp()
@given(data=st.data())
def test_argreduce_matches_numpy(backend, kind, data):
    dtype = data.draw(dtypes(), label="dtype")
    shape = data.draw(shapes(min_dims=0, max_dims=3, min_side=1, max_side=4), label="shape")
    arr = data.draw(arrays(dtype, shape), label="x")
    axis = data.draw(axes_strategy(len(shape), allow_tuple=False), label="axis")
    keepdims = data.draw(st.booleans(), label="keepdims")
    known = data.draw(st.booleans(), label="known")
    as_method = data.draw(st.booleans(), label="as_method")

    x = symbolic_like(arr, "x", known)
    out = build(kind, x, as_method, axis=axis, keepdims=keepdims)
    expected = numpy_result(getattr(np, kind), arr, axis=axis, keepdims=keepdims)
    assert expected.dtype == np.int64
    assert_matches_numpy(out, [(x, arr)], expected, backend)


# -- dtypes -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_inferred_dtype_is_numpys(kind, dtype):
    arr = np.ones((2, 3), dtype=dtype)
    x = se.tensor("x", dtype=dtype, shape=(None, 3))
    axes = [None, 0, -1] + ([(0, 1), ()] if kind not in ("argmax", "argmin") else [])
    for axis in axes:
        for keepdims in (False, True):
            out = getattr(se, kind)(x, axis=axis, keepdims=keepdims)
            want = numpy_result(getattr(np, kind), arr, axis=axis, keepdims=keepdims).dtype.name
            assert out.dtype == want, (kind, dtype, axis, keepdims)


@pytest.mark.parametrize(
    "kind, dtype, want",
    [
        ("sum", "uint8", "uint64"),
        ("sum", "uint32", "uint64"),
        ("sum", "int8", "int64"),
        ("sum", "bool", "int64"),
        ("sum", "float16", "float16"),
        ("prod", "uint16", "uint64"),
        ("prod", "int16", "int64"),
        ("prod", "bool", "int64"),
        ("max", "bool", "bool"),
        ("min", "uint8", "uint8"),
        ("mean", "int8", "float64"),
        ("mean", "bool", "float64"),
        ("mean", "float16", "float16"),
        ("var", "uint8", "float64"),
        ("var", "float16", "float16"),
        ("var", "float32", "float32"),
        ("argmax", "float16", "int64"),
        ("argmin", "bool", "int64"),
    ],
)
def test_known_result_dtypes(kind, dtype, want):
    x = se.tensor("x", dtype=dtype, shape=(4,))
    assert getattr(se, kind)(x).dtype == want
    assert getattr(x, kind)(axis=0).dtype == want
    arr = np.arange(4).astype(dtype)
    got = se.function([x], getattr(x, kind)())(arr)
    assert got.dtype == want


def test_uint8_sum_does_not_wrap():
    x = se.vector("x", dtype="uint8")
    arr = np.full(10, 200, dtype=np.uint8)
    got = se.function([x], x.sum())(arr)
    assert got.dtype == np.uint64 and got == 2000


# -- special values ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("kind", ["max", "min"])
def test_max_min_propagate_nan(kind, dtype):
    x = se.matrix("x", dtype=dtype)
    arr = np.array([[1.0, np.nan, 3.0], [np.inf, 2.0, -np.inf], [np.nan, np.nan, np.nan]], dtype=dtype)
    got_all = se.function([x], getattr(se, kind)(x))(arr)
    assert np.isnan(got_all)
    got_rows = se.function([x], getattr(x, kind)(axis=1))(arr)
    expected = getattr(np, kind)(arr, axis=1)
    np.testing.assert_array_equal(got_rows, expected)
    assert np.isnan(got_rows[0]) and np.isnan(got_rows[2])
    assert got_rows[1] == (np.inf if kind == "max" else -np.inf)


@pytest.mark.parametrize("kind", ["argmax", "argmin"])
def test_argmax_argmin_pick_first_nan(kind):
    x = se.vector("x", dtype="float64")
    arr = np.array([1.0, 5.0, np.nan, -7.0, np.nan])
    got = se.function([x], getattr(se, kind)(x))(arr)
    assert got.dtype == np.int64 and got.shape == () and got == 2


@pytest.mark.parametrize("kind", ["argmax", "argmin"])
def test_argmax_argmin_first_of_ties_and_keepdims(kind):
    x = se.matrix("x", dtype="int32")
    arr = np.array([[3, 1, 3, 1], [0, 0, 0, 0]], dtype=np.int32)
    for axis, keepdims in [(None, False), (None, True), (1, False), (-1, True), (0, True)]:
        out = getattr(se, kind)(x, axis=axis, keepdims=keepdims)
        expected = getattr(np, kind)(arr, axis=axis, keepdims=keepdims)
        got = se.function([x], out)(arr)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, expected)
        assert got.shape == expected.shape


# -- static shapes ----------------------------------------------------------------


def test_static_shape_inference():
    x = se.tensor("x", dtype="float32", shape=(None, 3, 4))
    assert se.sum(x, axis=1).type.shape == (None, 4)
    assert se.sum(x, axis=1, keepdims=True).type.shape == (None, 1, 4)
    assert x.max(axis=(0, -1)).type.shape == (3,)
    assert x.mean().type.shape == ()
    assert x.mean(keepdims=True).type.shape == (1, 1, 1)
    assert x.var(axis=-2, ddof=1).type.shape == (None, 4)
    assert x.argmax().type.shape == ()
    assert x.argmax(keepdims=True).type.shape == (1, 1, 1)
    assert x.argmin(axis=0).type.shape == (3, 4)
    assert x.argmin(axis=-1, keepdims=True).type.shape == (None, 3, 1)
    assert x.prod(axis=()).type.shape == (None, 3, 4)


# -- errors -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("axis", [2, -3, 7])
def test_axis_out_of_range_is_a_build_error(kind, axis):
    x = se.tensor("x", dtype="float32", shape=(2, 3))
    with pytest.raises(ValueError) as info:
        getattr(se, kind)(x, axis=axis)
    message = str(info.value)
    assert f"axis {axis}" in message and "rank 2" in message, message
    with pytest.raises(ValueError):
        getattr(x, kind)(axis=axis)


@pytest.mark.parametrize("kind", REDUCE_KINDS + ["var"])
def test_tuple_axis_out_of_range_is_a_build_error(kind):
    x = se.tensor("x", dtype="float32", shape=(2, 3))
    with pytest.raises(ValueError) as info:
        getattr(se, kind)(x, axis=(0, 2))
    assert "axis 2" in str(info.value) and "rank 2" in str(info.value)


@pytest.mark.parametrize("kind", REDUCE_KINDS + ["var"])
@pytest.mark.parametrize("axis", [(0, 0), (1, -1), (0, 1, 0)])
def test_repeated_axis_is_a_build_error(kind, axis):
    x = se.tensor("x", dtype="float32", shape=(2, 3))
    with pytest.raises(ValueError):
        getattr(se, kind)(x, axis=axis)


@pytest.mark.parametrize("kind", ["argmax", "argmin"])
@pytest.mark.parametrize("axis", [(0,), (0, 1), [1]])
def test_argreduce_tuple_axis_is_a_type_error(kind, axis):
    x = se.tensor("x", dtype="float32", shape=(2, 3))
    with pytest.raises(TypeError):
        getattr(se, kind)(x, axis=axis)
    with pytest.raises(TypeError):
        getattr(x, kind)(axis=axis)


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("axis", [1.0, "0", True])
def test_non_int_axis_is_a_type_error(kind, axis):
    x = se.tensor("x", dtype="float32", shape=(2, 3))
    with pytest.raises(TypeError):
        getattr(se, kind)(x, axis=axis)


@pytest.mark.parametrize("kind", ["max", "min", "argmax", "argmin"])
@pytest.mark.parametrize("shape, axis", [((0,), None), ((0, 3), 0), ((0, 3), None), ((2, 0), -1), ((3, 0, 2), 1)])
def test_no_identity_over_static_empty_axis_is_a_build_error(kind, shape, axis):
    x = se.tensor("x", dtype="float32", shape=shape)
    with pytest.raises(ValueError):
        getattr(se, kind)(x, axis=axis)


@pytest.mark.parametrize("kind", ["max", "min"])
def test_max_min_over_a_static_empty_tuple_axis_is_a_build_error(kind):
    x = se.tensor("x", dtype="float32", shape=(2, 0, 3))
    with pytest.raises(ValueError):
        getattr(se, kind)(x, axis=(0, 1))


@pytest.mark.parametrize("kind", ["max", "min", "argmax", "argmin"])
def test_no_identity_over_a_non_empty_axis_of_an_empty_tensor_is_fine(kind, backend):
    arr = np.zeros((0, 3), dtype=np.float32)
    x = se.tensor("x", dtype="float32", shape=(0, 3))
    out = getattr(se, kind)(x, axis=1)
    assert_matches_numpy(out, [(x, arr)], getattr(np, kind)(arr, axis=1), backend)


@pytest.mark.parametrize("kind", ["sum", "prod", "mean", "var"])
def test_identity_reductions_over_empty_axes(kind, backend):
    for dtype in ["int8", "uint8", "float32", "bool"]:
        arr = np.zeros((0, 3), dtype=dtype)
        x = se.tensor("x", dtype=dtype, shape=(0, 3))
        out = getattr(se, kind)(x, axis=0)
        assert_matches_numpy(out, [(x, arr)], numpy_result(getattr(np, kind), arr, axis=0), backend)


@pytest.mark.parametrize("kind", ["max", "min", "argmax", "argmin"])
@pytest.mark.parametrize("axis", [0, None])
def test_no_identity_over_runtime_empty_axis_raises_at_call(kind, axis, backend):
    x = se.matrix("x", dtype="float32")
    f = se.function([x], getattr(se, kind)(x, axis=axis), backend=backend)  # builds fine
    with pytest.raises(ValueError):
        f(np.zeros((0, 3), dtype=np.float32))
    f(np.zeros((1, 3), dtype=np.float32))


@pytest.mark.parametrize("ddof", [-1, 1.5, "1"])
def test_bad_ddof(ddof):
    x = se.vector("x", dtype="float32")
    with pytest.raises(ValueError):
        se.var(x, ddof=ddof)


# -- ownership --------------------------------------------------------------------


@pytest.mark.parametrize("kind", REDUCE_KINDS + ["var"])
def test_output_is_fresh(kind, backend):
    x = se.matrix("x", dtype="float64")
    arr = np.arange(6.0).reshape(2, 3)
    for axis in [(), 0, None]:
        got = se.function([x], getattr(se, kind)(x, axis=axis), backend=backend)(arr)
        assert not np.shares_memory(got, arr)
        assert got.flags.writeable
