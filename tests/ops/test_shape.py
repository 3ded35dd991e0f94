"""Shape ops (reshape, transpose/.T, expand_dims, squeeze, broadcast_to, concatenate, stack) against NumPy 2."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from support import ALL_DTYPES, arrays, assert_fresh, assert_matches_numpy, dtypes, hyp, shapes, symbolic_like

import symexpr as se


def partially_known(arr: np.ndarray, known: list, name: str = "x") -> se.Variable:
    return se.tensor(name, dtype=arr.dtype, shape=tuple(d if k else None for d, k in zip(arr.shape, known)))


# -- reshape ----------------------------------------------------------------------


@st.composite
def reshape_targets(draw, shape):
    """A target shape for ``numpy.reshape`` of an array of ``shape``, maybe with one -1."""
    size = math.prod(shape)
    ndim = draw(st.integers(0 if size == 1 else 1, 4))
    if size == 0:
        dims = draw(st.lists(st.integers(0, 4), min_size=ndim, max_size=ndim))
        if 0 not in dims:
            dims[draw(st.integers(0, ndim - 1))] = 0
    else:
        dims, rest = [], size
        for _ in range(ndim - 1):
            d = draw(st.sampled_from([k for k in range(1, rest + 1) if rest % k == 0]))
            dims.append(d)
            rest //= d
        if ndim:
            dims.append(rest)
    if dims and draw(st.booleans()):
        i = draw(st.integers(0, len(dims) - 1))
        if math.prod(d for j, d in enumerate(dims) if j != i) != 0:
            dims[i] = -1
    return tuple(dims)


@hyp()
@given(data=st.data())
def test_reshape_matches_numpy(backend, data):
    shape = data.draw(shapes(min_dims=0, max_dims=4, min_side=0, max_side=4), label="shape")
    arr = data.draw(arrays(data.draw(dtypes(), label="dtype"), shape), label="x")
    target = data.draw(reshape_targets(shape), label="target")
    known = data.draw(st.booleans(), label="known")
    form = data.draw(st.sampled_from(["function", "method_tuple", "method_args"]), label="form")

    x = symbolic_like(arr, "x", known)
    if form == "function":
        out = se.reshape(x, list(target))
    elif form == "method_tuple":
        out = x.reshape(target)
    else:
        out = x.reshape(*target)
    expected = arr.reshape(target)
    if None not in x.type.shape:
        assert out.type.shape == expected.shape  # -1 is resolved statically
    else:
        assert out.type.shape == tuple(None if d == -1 else d for d in target)
    got = assert_matches_numpy(out, [(x, arr)], expected, backend)
    assert_fresh(got, arr)


def test_reshape_static_inference():
    x = se.tensor("x", shape=(2, 3, 4))
    assert x.reshape(-1).type.shape == (24,)
    assert x.reshape(6, -1).type.shape == (6, 4)
    assert x.reshape((-1, 2, 3)).type.shape == (4, 2, 3)
    assert se.reshape(x, (4, 3, 2)).type.shape == (4, 3, 2)
    y = se.tensor("y", shape=(None, 4))
    assert y.reshape(-1).type.shape == (None,)
    assert y.reshape(2, -1, 2).type.shape == (2, None, 2)
    assert y.reshape(8, 3).type.shape == (8, 3)
    s = se.tensor("s", shape=(1, 1))
    assert s.reshape(()).type.shape == ()


@pytest.mark.parametrize(
    "shape, target",
    [((2, 3), (4, 2)), ((2, 3), (7,)), ((2, 3), (4, -1)), ((2, 3, 4), (5, -1)), ((0, 3), (0, -1)), ((6,), ())],
)
def test_bad_reshape_of_a_known_shape_is_a_build_error(shape, target):
    x = se.tensor("x", shape=shape)
    with pytest.raises(ValueError) as info:
        x.reshape(target)
    message = str(info.value)
    assert str(shape) in message and str(target) in message, message


def test_bad_reshape_targets():
    x = se.tensor("x", shape=(None, 4))
    with pytest.raises(ValueError):
        x.reshape(-1, -1)
    with pytest.raises(ValueError):
        x.reshape(-2, 2)
    with pytest.raises(TypeError):
        x.reshape(2.0, 2)
    with pytest.raises(TypeError):
        x.reshape(se.scalar("n", "float32"), 2)
    with pytest.raises(TypeError):
        x.reshape(se.vector("n", "int64"), 2)


def test_bad_reshape_at_runtime_raises_at_call(backend):
    x = se.matrix("x", dtype="float32")
    f = se.function([x], x.reshape(4, -1), backend=backend)
    assert f(np.zeros((2, 4), np.float32)).shape == (4, 2)
    with pytest.raises(ValueError):
        f(np.zeros((2, 3), np.float32))
    g = se.function([x], x.reshape(5, 2), backend=backend)
    with pytest.raises(ValueError):
        g(np.zeros((3, 3), np.float32))


# -- transpose --------------------------------------------------------------------


@hyp()
@given(data=st.data())
def test_transpose_matches_numpy(backend, data):
    shape = data.draw(shapes(min_dims=0, max_dims=4, min_side=0, max_side=3), label="shape")
    arr = data.draw(arrays(data.draw(dtypes(), label="dtype"), shape), label="x")
    ndim = len(shape)
    if data.draw(st.booleans(), label="axes_none"):
        axes = None
    else:
        perm = data.draw(st.permutations(range(ndim)), label="perm")
        flips = data.draw(st.lists(st.booleans(), min_size=ndim, max_size=ndim), label="negate")
        axes = tuple(a - ndim if f else a for a, f in zip(perm, flips))
    form = data.draw(st.sampled_from(["function", "method_args", "method_tuple", "T"]), label="form")
    known = data.draw(st.booleans(), label="known")

    x = symbolic_like(arr, "x", known)
    if axes is None and form == "T":
        out = x.T
    elif axes is None:
        out = se.transpose(x) if form == "function" else x.transpose()
    elif form == "function":
        out = se.transpose(x, axes)
    elif form == "method_args":
        out = x.transpose(*axes) if axes else x.transpose()
    else:
        out = x.transpose(axes)
    expected = np.transpose(arr, axes)
    if known:
        assert out.type.shape == expected.shape
    got = assert_matches_numpy(out, [(x, arr)], expected, backend)
    assert_fresh(got, arr)


def test_transpose_methods():
    x = se.tensor("x", shape=(2, None, 4))
    assert x.transpose(1, 0, 2).type.shape == (None, 2, 4)
    assert x.transpose((2, 0, 1)).type.shape == (4, 2, None)
    assert x.transpose(-1, -3, -2).type.shape == (4, 2, None)
    assert x.T.type.shape == (4, None, 2)
    assert x.transpose().type.shape == (4, None, 2)
    assert se.tensor("m", shape=(3, 5)).T.type.shape == (5, 3)
    arr = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    f = se.function([x], [x.transpose(1, 0, 2), x.T, se.transpose(x, (0, -1, 1))])
    for got, want in zip(f(arr), [arr.transpose(1, 0, 2), arr.T, np.transpose(arr, (0, -1, 1))]):
        np.testing.assert_array_equal(got, want)
        assert got.shape == want.shape


@pytest.mark.parametrize("axes", [(0, 0, 1), (0, 1), (0, 1, 2, 3), (0, 1, 3), (-4, 0, 1)])
def test_bad_transpose_axes(axes):
    x = se.tensor("x", shape=(2, 3, 4))
    with pytest.raises(ValueError):
        se.transpose(x, axes)


# -- expand_dims ------------------------------------------------------------------


@hyp()
@given(data=st.data())
def test_expand_dims_matches_numpy(backend, data):
    shape = data.draw(shapes(min_dims=0, max_dims=3, min_side=0, max_side=3), label="shape")
    arr = data.draw(arrays(data.draw(dtypes(), label="dtype"), shape), label="x")
    ndim = len(shape)
    if data.draw(st.booleans(), label="int_axis"):
        axis = data.draw(st.integers(-(ndim + 1), ndim), label="axis")
    else:
        k = data.draw(st.integers(1, 3), label="k")
        axis = data.draw(hnp.valid_tuple_axes(ndim + k, min_size=k, max_size=k), label="axis")
    known = data.draw(st.booleans(), label="known")

    x = symbolic_like(arr, "x", known)
    out = se.expand_dims(x, axis)
    expected = np.expand_dims(arr, axis)
    if known:
        assert out.type.shape == expected.shape
    got = assert_matches_numpy(out, [(x, arr)], expected, backend)
    assert_fresh(got, arr)


def test_expand_dims_static_shapes():
    x = se.tensor("x", shape=(None, 3))
    assert se.expand_dims(x, 0).type.shape == (1, None, 3)
    assert se.expand_dims(x, -1).type.shape == (None, 3, 1)
    assert se.expand_dims(x, (0, 2)).type.shape == (1, None, 1, 3)
    assert se.expand_dims(x, (-1, 0)).type.shape == (1, None, 3, 1)


@pytest.mark.parametrize("axis", [3, -4, (0, 4), (1, 1), (0, -4)])
def test_bad_expand_dims_axis(axis):
    x = se.tensor("x", shape=(2, 3))
    with pytest.raises(ValueError):
        se.expand_dims(x, axis)


# -- squeeze ----------------------------------------------------------------------


@hyp()
@given(data=st.data())
def test_squeeze_with_axis_matches_numpy(backend, data):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=3), label="shape")
    ones = [i for i, d in enumerate(shape) if d == 1]
    if not ones:
        shape = shape[:-1] + (1,)
        ones = [len(shape) - 1]
    arr = data.draw(arrays(data.draw(dtypes(), label="dtype"), shape), label="x")
    ndim = len(shape)
    chosen = data.draw(st.lists(st.sampled_from(ones), min_size=1, unique=True), label="chosen")
    chosen = [a - ndim if data.draw(st.booleans()) else a for a in chosen]
    axis = chosen[0] if len(chosen) == 1 and data.draw(st.booleans(), label="as_int") else tuple(chosen)
    known = data.draw(st.lists(st.booleans(), min_size=ndim, max_size=ndim), label="known")
    as_method = data.draw(st.booleans(), label="as_method")

    x = partially_known(arr, known)
    out = x.squeeze(axis) if as_method else se.squeeze(x, axis)
    expected = np.squeeze(arr, axis)
    got = assert_matches_numpy(out, [(x, arr)], expected, backend)
    assert_fresh(got, arr)


@hyp()
@given(data=st.data())
def test_squeeze_without_axis_removes_static_unit_dims_only(backend, data):
    shape = data.draw(shapes(min_dims=0, max_dims=4, min_side=0, max_side=2), label="shape")
    arr = data.draw(arrays(data.draw(dtypes(), label="dtype"), shape), label="x")
    known = data.draw(st.lists(st.booleans(), min_size=len(shape), max_size=len(shape)), label="known")
    x = partially_known(arr, known)
    out = x.squeeze() if data.draw(st.booleans(), label="as_method") else se.squeeze(x)
    expected = np.squeeze(arr, axis=tuple(i for i, (d, k) in enumerate(zip(shape, known)) if k and d == 1))
    got = assert_matches_numpy(out, [(x, arr)], expected, backend)
    assert_fresh(got, arr)
    if all(known):
        np.testing.assert_array_equal(got, np.squeeze(arr))
        assert got.shape == np.squeeze(arr).shape


def test_squeeze_static_shapes():
    x = se.tensor("x", shape=(1, None, 3, 1))
    assert se.squeeze(x).type.shape == (None, 3)
    assert se.squeeze(x, 0).type.shape == (None, 3, 1)
    assert se.squeeze(x, (0, -1)).type.shape == (None, 3)
    assert se.squeeze(x, 1).type.shape == (1, 3, 1)  # unknown dim: checked at call
    f = se.function([x], se.squeeze(x))
    assert f(np.zeros((1, 1, 3, 1), np.float32)).shape == (1, 3)  # the runtime 1 is kept


@pytest.mark.parametrize("axis", [2, (0, 2), -2])
def test_squeeze_of_a_static_non_unit_dim_is_a_build_error(axis):
    x = se.tensor("x", shape=(1, None, 3, 1))
    with pytest.raises(ValueError):
        se.squeeze(x, axis)
    with pytest.raises(ValueError):
        x.squeeze(axis)


@pytest.mark.parametrize("axis", [4, -5, (0, 0)])
def test_squeeze_bad_axis(axis):
    x = se.tensor("x", shape=(1, None, 3, 1))
    with pytest.raises(ValueError):
        se.squeeze(x, axis)


def test_squeeze_of_a_runtime_non_unit_dim_raises_at_call(backend):
    x = se.tensor("x", shape=(None, 3))
    f = se.function([x], se.squeeze(x, 0), backend=backend)
    assert f(np.zeros((1, 3), np.float32)).shape == (3,)
    with pytest.raises(ValueError):
        f(np.zeros((2, 3), np.float32))


# -- broadcast_to -----------------------------------------------------------------


@hyp()
@given(data=st.data())
def test_broadcast_to_matches_numpy(backend, data):
    target = data.draw(shapes(min_dims=0, max_dims=4, min_side=0, max_side=3), label="target")
    ndim = data.draw(st.integers(0, len(target)), label="ndim")
    tail = target[len(target) - ndim :]
    shape = tuple(data.draw(st.sampled_from([1, d])) for d in tail)
    arr = data.draw(arrays(data.draw(dtypes(), label="dtype"), shape), label="x")
    known = data.draw(st.lists(st.booleans(), min_size=ndim, max_size=ndim), label="known")
    x = partially_known(arr, known)
    out = se.broadcast_to(x, target)
    assert out.type.shape == target
    got = assert_matches_numpy(out, [(x, arr)], np.broadcast_to(arr, target), backend)
    assert_fresh(got, arr)


@pytest.mark.parametrize(
    "shape, target", [((3,), (4,)), ((2, 3), (3, 2)), ((2, 3), (3,)), ((3,), ()), ((2, 1), (3, 4)), ((0,), (2,))]
)
def test_incompatible_broadcast_to_is_a_build_error(shape, target):
    x = se.tensor("x", shape=shape)
    with pytest.raises(ValueError):
        se.broadcast_to(x, target)


def test_broadcast_to_bad_target():
    x = se.tensor("x", shape=(None,))
    with pytest.raises(ValueError):
        se.broadcast_to(x, (2, -1))
    with pytest.raises(TypeError):
        se.broadcast_to(x, (2.0, 3))


def test_incompatible_broadcast_at_runtime_raises_at_call(backend):
    x = se.tensor("x", shape=(None,))
    f = se.function([x], se.broadcast_to(x, (2, 3)), backend=backend)
    np.testing.assert_array_equal(f(np.ones(1, np.float32)), np.ones((2, 3), np.float32))
    with pytest.raises(ValueError):
        f(np.ones(2, np.float32))


# -- concatenate ------------------------------------------------------------------


@hyp()
@given(data=st.data())
def test_concatenate_matches_numpy(backend, data):
    ndim = data.draw(st.integers(1, 3), label="ndim")
    axis = data.draw(st.integers(-ndim, ndim - 1), label="axis")
    base = data.draw(shapes(min_dims=ndim, max_dims=ndim, min_side=0, max_side=3), label="base")
    n = data.draw(st.integers(1, 3), label="n")
    arrs = []
    for i in range(n):
        shape = list(base)
        shape[axis] = data.draw(st.integers(0, 3), label=f"len{i}")
        arrs.append(data.draw(arrays(data.draw(dtypes(), label=f"dtype{i}"), tuple(shape)), label=f"x{i}"))
    known = data.draw(st.booleans(), label="known")
    xs = [symbolic_like(a, f"x{i}", known) for i, a in enumerate(arrs)]
    out = se.concatenate(xs, axis=axis)
    expected = np.concatenate(arrs, axis=axis)
    if known:
        assert out.type.shape == expected.shape
    got = assert_matches_numpy(out, list(zip(xs, arrs)), expected, backend)
    assert_fresh(got, *arrs)


def test_concatenate_dtype_promotion_is_numpys():
    for a, b in itertools.product(ALL_DTYPES, repeat=2):
        out = se.concatenate([se.tensor("a", dtype=a, shape=(2,)), se.tensor("b", dtype=b, shape=(None,))])
        want = np.concatenate([np.zeros(2, a), np.zeros(1, b)]).dtype.name
        assert out.dtype == want, (a, b)
        assert out.type.shape == (None,)


@pytest.mark.parametrize(
    "a, b", [("int8", "float32"), ("int8", "uint8"), ("int64", "uint64"), ("bool", "float16"), ("uint16", "float16")]
)
def test_concatenate_mixed_dtypes_values(a, b, backend):
    xa = np.array([[1, 2], [3, 4]]).astype(a)
    xb = np.array([[5, 6]]).astype(b)
    va, vb = se.tensor("a", dtype=a, shape=(2, 2)), se.tensor("b", dtype=b, shape=(None, 2))
    out = se.concatenate([va, vb], axis=0)
    assert out.type.shape == (None, 2)
    assert_matches_numpy(out, [(va, xa), (vb, xb)], np.concatenate([xa, xb], axis=0), backend)
    out = se.concatenate((vb, va), axis=-2)
    assert_matches_numpy(out, [(va, xa), (vb, xb)], np.concatenate([xb, xa], axis=-2), backend)


def test_concatenate_static_shapes():
    a = se.tensor("a", shape=(2, 3))
    b = se.tensor("b", shape=(4, 3))
    c = se.tensor("c", shape=(None, None))
    assert se.concatenate([a, b]).type.shape == (6, 3)
    assert se.concatenate([a, b], axis=-2).type.shape == (6, 3)
    assert se.concatenate([a, c]).type.shape == (None, 3)
    assert se.concatenate([a, c], axis=1).type.shape == (2, None)


def test_concatenate_errors():
    a = se.tensor("a", shape=(2, 3))
    with pytest.raises(ValueError):
        se.concatenate([a, se.tensor("b", shape=(2, 4))], axis=0)  # dim 1 differs
    with pytest.raises(ValueError):
        se.concatenate([a, se.tensor("b", shape=(2,))])  # rank differs
    with pytest.raises(ValueError):
        se.concatenate([a, a], axis=2)
    with pytest.raises(ValueError):
        se.concatenate([a, a], axis=-3)
    with pytest.raises(ValueError):
        se.concatenate([se.scalar("s"), se.scalar("t")])
    with pytest.raises(ValueError):
        se.concatenate([])
    with pytest.raises(TypeError):
        se.concatenate(a)


def test_concatenate_mismatch_at_runtime_raises_at_call(backend):
    a, b = se.matrix("a"), se.matrix("b")
    f = se.function([a, b], se.concatenate([a, b], axis=0), backend=backend)
    assert f(np.zeros((1, 3), np.float32), np.zeros((2, 3), np.float32)).shape == (3, 3)
    with pytest.raises(ValueError):
        f(np.zeros((1, 3), np.float32), np.zeros((2, 4), np.float32))


# -- stack ------------------------------------------------------------------------


@hyp()
@given(data=st.data())
def test_stack_matches_numpy(backend, data):
    shape = data.draw(shapes(min_dims=0, max_dims=3, min_side=0, max_side=3), label="shape")
    ndim = len(shape)
    axis = data.draw(st.integers(-(ndim + 1), ndim), label="axis")
    n = data.draw(st.integers(1, 3), label="n")
    arrs = [data.draw(arrays(data.draw(dtypes(), label=f"dtype{i}"), shape), label=f"x{i}") for i in range(n)]
    known = data.draw(st.booleans(), label="known")
    xs = [symbolic_like(a, f"x{i}", known) for i, a in enumerate(arrs)]
    out = se.stack(xs, axis=axis)
    expected = np.stack(arrs, axis=axis)
    if known:
        assert out.type.shape == expected.shape
    got = assert_matches_numpy(out, list(zip(xs, arrs)), expected, backend)
    assert_fresh(got, *arrs)


def test_stack_static_shapes_and_errors():
    a = se.tensor("a", shape=(2, 3))
    b = se.tensor("b", shape=(None, 3))
    assert se.stack([a, b]).type.shape == (2, 2, 3)
    assert se.stack([a, b], axis=-1).type.shape == (2, 3, 2)
    assert se.stack([a, a, a], axis=1).type.shape == (2, 3, 3)
    assert se.stack([se.scalar("s"), se.scalar("t")]).type.shape == (2,)
    with pytest.raises(ValueError):
        se.stack([a, se.tensor("c", shape=(2, 4))])
    with pytest.raises(ValueError):
        se.stack([a, se.tensor("c", shape=(2,))])
    with pytest.raises(ValueError):
        se.stack([a, a], axis=3)
    with pytest.raises(ValueError):
        se.stack([a, a], axis=-4)
    with pytest.raises(ValueError):
        se.stack([])
    with pytest.raises(TypeError):
        se.stack(a)


def test_stack_mismatch_at_runtime_raises_at_call(backend):
    a, b = se.vector("a"), se.vector("b")
    f = se.function([a, b], se.stack([a, b], axis=-1), backend=backend)
    assert f(np.zeros(3, np.float32), np.zeros(3, np.float32)).shape == (3, 2)
    with pytest.raises(ValueError):
        f(np.zeros(3, np.float32), np.zeros(2, np.float32))


# -- ownership --------------------------------------------------------------------


def test_outputs_never_alias_inputs(backend):
    x = se.tensor("x", dtype="float64", shape=(None, None, 1))
    arr = np.arange(12.0).reshape(2, 6, 1)
    outs = [
        x,
        x.T,
        x.transpose(1, 0, 2),
        se.transpose(x, (0, 1, 2)),
        x.reshape(-1),
        x.reshape(2, 6, 1),
        se.expand_dims(x, 0),
        se.squeeze(x),
        x.squeeze(-1),
        se.broadcast_to(x, (3, 2, 6, 4)),
        se.concatenate([x]),
        se.stack([x]),
    ]
    results = se.function([x], outs, backend=backend)(arr)
    for out, got in zip(outs, results):
        assert_fresh(got, arr)
        got[...] = 0  # the caller may write to it
    np.testing.assert_array_equal(arr, np.arange(12.0).reshape(2, 6, 1))
    for a, b in itertools.combinations(results, 2):
        assert not np.shares_memory(a, b)
