"""Basic indexing ``x[...]`` and ``se.take`` against NumPy 2."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from support import arrays, assert_fresh, assert_matches_numpy, dtypes, hyp, shapes, symbolic_like

import symexpr as se


def partially_known(arr: np.ndarray, known: list, name: str = "x") -> se.Variable:
    return se.tensor(name, dtype=arr.dtype, shape=tuple(d if k else None for d, k in zip(arr.shape, known)))


# -- basic indexing ---------------------------------------------------------------


@hyp(120)
@given(data=st.data())
def test_basic_indexing_matches_numpy(backend, data):
    shape = data.draw(shapes(min_dims=0, max_dims=4, min_side=0, max_side=5), label="shape")
    arr = data.draw(arrays(data.draw(dtypes(), label="dtype"), shape), label="x")
    index = data.draw(hnp.basic_indices(shape, min_dims=0, allow_newaxis=True, allow_ellipsis=True), label="index")
    known = data.draw(st.lists(st.booleans(), min_size=len(shape), max_size=len(shape)), label="known")

    x = partially_known(arr, known)
    out = x[index]
    expected = np.asarray(arr[index])
    if all(known):
        assert out.type.shape == expected.shape
    got = assert_matches_numpy(out, [(x, arr)], expected, backend)
    assert_fresh(got, arr)


def _explicit_indices():
    return [
        0,
        -1,
        -4,
        (1, 2),
        (-1, -1, -1),
        slice(None, None, 2),
        slice(None, None, -1),
        slice(None, None, -2),
        slice(5, 1, -2),
        slice(-1, -5, -1),
        slice(10, None, -3),
        slice(1, 100),
        slice(-100, 2),
        slice(3, 1),
        (slice(None), slice(None, None, 3)),
        (Ellipsis, 0),
        (Ellipsis, slice(None, None, -1)),
        (0, Ellipsis),
        (0, Ellipsis, -1),
        Ellipsis,
        None,
        (None, None),
        (Ellipsis, None),
        (1, None, slice(None, None, -1), Ellipsis, None),
        (slice(1, None), None, Ellipsis, slice(None, None, -1)),
        (None, -2, slice(None), None, 3),
        (),
    ]


@pytest.mark.parametrize("index", _explicit_indices(), ids=repr)
@pytest.mark.parametrize("known", [True, False])
def test_explicit_indices(index, known, backend):
    arr = np.arange(4 * 3 * 5, dtype=np.int32).reshape(4, 3, 5)
    x = symbolic_like(arr, "x", known)
    out = x[index]
    expected = np.asarray(arr[index])
    if known:
        assert out.type.shape == expected.shape
    got = assert_matches_numpy(out, [(x, arr)], expected, backend)
    assert_fresh(got, arr)


def test_indexing_static_shapes():
    x = se.tensor("x", shape=(4, None, 6))
    assert x[0].type.shape == (None, 6)
    assert x[::2].type.shape == (2, None, 6)
    assert x[::-3].type.shape == (2, None, 6)
    assert x[1:, None, ..., 1:5:2].type.shape == (3, 1, None, 2)
    assert x[..., 0].type.shape == (4, None)
    assert x[None].type.shape == (1, 4, None, 6)
    assert x[:, 3].type.shape == (4, 6)  # unknown dim: the bound is checked at call
    assert x[1, 2, 3].type.shape == ()


def test_integer_index_of_numpy_type(backend):
    arr = np.arange(10.0)
    x = symbolic_like(arr, "x")
    assert_matches_numpy(x[np.int64(-3)], [(x, arr)], np.asarray(arr[-3]), backend)
    assert_matches_numpy(x[np.int8(1) : np.int32(8) : np.int16(3)], [(x, arr)], arr[1:8:3], backend)


@pytest.mark.parametrize("index", [3, -4, (0, 4), (slice(None), -5), (Ellipsis, 4), (1, 0, 0)], ids=repr)
def test_static_out_of_bounds_int_is_a_build_error(index):
    x = se.tensor("x", shape=(3, 4))
    with pytest.raises(IndexError):
        x[index]


@pytest.mark.parametrize("index", [3, -4, (slice(None), 7)], ids=repr)
def test_runtime_out_of_bounds_int_raises_at_call(index, backend):
    x = se.matrix("x")
    f = se.function([x], x[index], backend=backend)  # builds fine: the sizes are unknown
    with pytest.raises(IndexError):
        f(np.zeros((3, 4), np.float32))
    f(np.zeros((8, 8), np.float32))


def test_index_errors():
    x = se.tensor("x", shape=(3, 4))
    with pytest.raises(IndexError):
        x[0, 0, 0]  # too many indices
    with pytest.raises(IndexError):
        x[..., 0, ...]
    with pytest.raises(ValueError):
        x[::0]


def test_symbolic_indices_and_bounds_are_int_scalars_only():
    """An integer 0-d variable can index or bound a slice (tests/ops/test_sizes.py); anything else cannot."""
    x = se.tensor("x", shape=(3, 4))
    i = se.scalar("i", dtype="int64")
    assert x[i].type.shape == (4,) and x[0, i].type.shape == () and x[i:].type.shape == (None, 4)
    with pytest.raises(TypeError, match=r"se\.take"):
        x[se.vector("v", dtype="int64")]
    with pytest.raises(TypeError, match="slice bounds"):
        x[se.scalar("f", dtype="float32"):]
    with pytest.raises(TypeError, match="step must be an int"):
        x[:, ::i]


@pytest.mark.parametrize("index", [[0, 1], np.array([0, 1]), (slice(None), [1]), [True, False, True]], ids=repr)
def test_array_index_is_a_type_error_pointing_to_take(index):
    x = se.tensor("x", shape=(3, 4))
    with pytest.raises(TypeError, match=r"se\.take"):
        x[index]


@pytest.mark.parametrize(
    "index", [1.0, (0, 2.0), np.float64(1.0), slice(0.0, 2), slice(None, None, 1.5), "a"], ids=repr
)
def test_float_or_other_index_is_a_type_error(index):
    x = se.tensor("x", shape=(3, 4))
    with pytest.raises(TypeError):
        x[index]


def test_indexing_outputs_are_fresh(backend):
    arr = np.arange(24.0).reshape(4, 6)
    x = symbolic_like(arr, "x")
    outs = [x[::2], x[...], x[:], x[0], x[1, 2], x[None], x[::-1, 1:3]]
    results = se.function([x], outs, backend=backend)(arr)
    for got in results:
        assert_fresh(got, arr)
        got[...] = -1
    np.testing.assert_array_equal(arr, np.arange(24.0).reshape(4, 6))


# -- take -------------------------------------------------------------------------

INDEX_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint64"]


@hyp()
@given(data=st.data())
def test_take_matches_numpy(backend, data):
    x_shape = data.draw(shapes(min_dims=1, max_dims=3, min_side=1, max_side=4), label="x_shape")
    x_arr = data.draw(arrays(data.draw(dtypes(), label="dtype"), x_shape), label="x")
    ndim = len(x_shape)
    axis = data.draw(st.one_of(st.integers(-ndim, ndim - 1), st.none() if ndim == 1 else st.nothing()), label="axis")
    n = x_shape[0 if axis is None else axis]
    idx_dtype = data.draw(st.sampled_from(INDEX_DTYPES), label="idx_dtype")
    info = np.iinfo(idx_dtype)
    idx_shape = data.draw(shapes(min_dims=0, max_dims=3, min_side=0, max_side=3), label="idx_shape")
    idx = data.draw(
        hnp.arrays(
            np.dtype(idx_dtype), idx_shape, elements=st.integers(max(-n, int(info.min)), min(n - 1, int(info.max)))
        ),
        label="indices",
    )
    known_x = data.draw(st.booleans(), label="known_x")
    known_i = data.draw(st.booleans(), label="known_i")

    x = symbolic_like(x_arr, "x", known_x)
    i = symbolic_like(idx, "i", known_i)
    out = se.take(x, i) if axis is None else se.take(x, i, axis=axis)
    expected = np.take(x_arr, idx, axis=0 if axis is None else axis)
    if known_x and known_i:
        assert out.type.shape == expected.shape
    got = assert_matches_numpy(out, [(x, x_arr), (i, idx)], expected, backend)
    assert_fresh(got, x_arr)


def test_take_embedding_lookup(backend):
    table = np.arange(5 * 3, dtype=np.float32).reshape(5, 3)
    ids = np.array([[0, 4, -1], [2, 2, -5]], dtype=np.int32)
    w = se.tensor("w", dtype="float32", shape=(None, 3))
    i = se.tensor("i", dtype="int32", shape=(None, None))
    out = se.take(w, i)
    assert out.type.shape == (None, None, 3)
    assert_matches_numpy(out, [(w, table), (i, ids)], np.take(table, ids, axis=0), backend)
    out = se.take(w, i, axis=-1)
    assert out.type.shape == (None, None, None)
    ids2 = np.array([[0, 2], [-1, -3]], dtype=np.int32)
    assert_matches_numpy(out, [(w, table), (i, ids2)], np.take(table, ids2, axis=-1), backend)


def test_take_with_constant_indices(backend):
    arr = np.arange(12, dtype=np.int64).reshape(3, 4)
    x = symbolic_like(arr, "x", known=True)
    out = se.take(x, [2, 0, -1], axis=1)
    assert out.type.shape == (3, 3)
    assert_matches_numpy(out, [(x, arr)], np.take(arr, [2, 0, -1], axis=1), backend)
    out = se.take(x, np.int8(1))
    assert out.type.shape == (4,)
    assert_matches_numpy(out, [(x, arr)], np.take(arr, np.int8(1), axis=0), backend)


@pytest.mark.parametrize("bad", [3, -4, 100])
@pytest.mark.parametrize("idx_dtype", ["int8", "int32", "int64"])
def test_take_out_of_range_raises_index_error_at_call(bad, idx_dtype, backend):
    x = se.vector("x", dtype="float32")
    i = se.vector("i", dtype=idx_dtype)
    g = se.function([x, i], se.take(x, i), backend=backend)
    np.testing.assert_array_equal(g(np.arange(3, dtype=np.float32), np.array([2, -3], idx_dtype)), [2.0, 0.0])
    with pytest.raises(IndexError):
        g(np.arange(3, dtype=np.float32), np.array([0, bad], idx_dtype))


@pytest.mark.parametrize("idx_dtype", ["float16", "float32", "float64"])
def test_take_float_indices_is_a_build_error(idx_dtype):
    x = se.vector("x", dtype="float32")
    with pytest.raises(TypeError):
        se.take(x, se.vector("i", dtype=idx_dtype))
    with pytest.raises(TypeError):
        se.take(x, [0.0, 1.0])


def test_take_bad_axis_and_rank():
    x = se.tensor("x", shape=(3, 4))
    i = se.vector("i", dtype="int64")
    with pytest.raises(ValueError):
        se.take(x, i, axis=2)
    with pytest.raises(ValueError):
        se.take(x, i, axis=-3)
    with pytest.raises(ValueError):
        se.take(se.scalar("s"), i)
