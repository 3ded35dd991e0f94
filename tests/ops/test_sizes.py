"""Symbolic shapes: ``x.shape``, ``x.size`` and ops taking sizes known at run time, against NumPy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import arrays, dtypes, hyp, shapes

import symexpr as se


def run(inputs, outputs, values, backend):
    return se.function(inputs, outputs, backend=backend)(*values)


# -- x.shape and x.size ---------------------------------------------------------------
def test_shape_is_a_tuple_of_int64_scalars():
    x = se.tensor("x", "float32", (None, 4, None))
    b, four, n = x.shape
    assert isinstance(four, se.Constant) and int(four.data) == 4
    assert b.type == se.TensorType("int64", ()) and n.type == se.TensorType("int64", ())
    assert x.type.shape == (None, 4, None)
    assert se.pprint(b) == "x.shape[0]"
    static = se.tensor("s", "float32", (2, 3))
    assert all(isinstance(d, se.Constant) for d in static.shape) and int(static.size.data) == 6


def test_shape_and_size_values(backend):
    x = se.tensor("x", "float32", (None, 4, None))
    a = np.zeros((3, 4, 5), "float32")
    got = run([x], [*x.shape, x.size, x.shape[0] * x.shape[2] - 1], [a], backend)
    assert [int(v) for v in got] == [3, 4, 5, 60, 14]
    assert all(v.dtype == np.int64 and v.shape == () for v in got)


def test_shape_used_as_data(backend):
    """A mean written by hand divides by the symbolic size."""
    x = se.tensor("x", "float64", (None, None))
    a = np.arange(12.0).reshape(3, 4)
    (got,) = run([x], [x.sum(axis=1) / x.shape[1]], [a], backend)
    np.testing.assert_allclose(got, a.mean(axis=1))


# -- reshape with symbolic sizes --------------------------------------------------------
def test_split_heads(backend):
    x = se.tensor("x", "float32", (None, None, 384))
    b, n, _ = x.shape
    heads = x.reshape((b, n, 12, 32)).swapaxes(1, 2)
    assert heads.type.shape == (None, 12, None, 32)
    merged = heads.swapaxes(1, 2).reshape((b, n, 384))  # -1 would be ambiguous for n == 0, as in NumPy
    assert merged.type.shape == (None, None, 384)
    f = se.function([x], [heads, merged], backend=backend)
    for shape in [(2, 5, 384), (1, 1, 384), (3, 17, 384), (4, 0, 384)]:
        a = np.random.default_rng(0).random(shape, dtype=np.float32)
        got_heads, got_merged = f(a)
        np.testing.assert_array_equal(got_heads, a.reshape(shape[0], shape[1], 12, 32).swapaxes(1, 2))
        np.testing.assert_array_equal(got_merged, a)


@hyp()
@given(data=st.data())
def test_reshape_to_symbolic_sizes_matches_numpy(backend, data):
    shape = data.draw(shapes(min_dims=1, max_dims=3, min_side=1, max_side=4), label="shape")
    arr = data.draw(arrays(data.draw(dtypes(), label="dtype"), shape), label="x")
    x = se.tensor("x", arr.dtype, (None,) * arr.ndim)
    # merge a run of axes, keep the others symbolic, maybe infer one with -1
    lo = data.draw(st.integers(0, arr.ndim - 1), label="lo")
    hi = data.draw(st.integers(lo + 1, arr.ndim), label="hi")
    dims = list(x.shape[:lo]) + [math.prod(shape[lo:hi])] + list(x.shape[hi:])
    expected_shape = shape[:lo] + (math.prod(shape[lo:hi]),) + shape[hi:]
    if data.draw(st.booleans(), label="infer"):
        dims[data.draw(st.integers(0, len(dims) - 1), label="which")] = -1
    (got,) = run([x], [se.reshape(x, tuple(dims))], [arr], backend)
    np.testing.assert_array_equal(got, arr.reshape(expected_shape))


def test_reshape_static_inference_and_build_time_errors():
    x = se.tensor("x", "float32", (None, 6))
    assert se.reshape(x, (x.shape[0], 2, 3)).type.shape == (None, 2, 3)
    assert se.reshape(x, (x.shape[1], -1)).type.shape == (6, None)  # x.shape[1] is the constant 6
    with pytest.raises(ValueError, match="only specify one unknown"):
        se.reshape(x, (-1, x.shape[0], -1))
    with pytest.raises(TypeError, match="integer 0-d variable"):
        se.reshape(x, (se.scalar("f", "float32"), 6))
    with pytest.raises(TypeError, match="integer 0-d variable"):
        se.reshape(x, (se.vector("v", "int64"), 6))
    with pytest.raises(ValueError, match="cannot reshape"):
        se.reshape(se.tensor("s", "float32", (2, 3)), (4, -1))


def test_reshape_wrong_size_at_call_time_names_the_node(backend):
    x = se.tensor("x", "float32", (None, None))
    f = se.function([x], se.reshape(x, (x.shape[0], 5)), backend=backend)
    with pytest.raises(ValueError, match="reshape"):
        f(np.zeros((2, 3), "float32"))


def test_symbolic_int_inputs_cast_to_int64(backend):
    x = se.tensor("x", "float32", (None, None))
    n32 = se.cast(x.shape[0], "int32")
    (got,) = run([x], [se.reshape(x, (n32, -1)) + 0], [np.ones((2, 6), "float32")], backend)
    assert got.shape == (2, 6)


# -- broadcast_to, full, zeros, ones ----------------------------------------------------
def test_broadcast_to_and_fills(backend):
    x = se.tensor("x", "float32", (None, None))
    b, n = x.shape
    v = se.vector("v", "float32")
    outs = [
        se.broadcast_to(v, (b, n)),
        se.zeros((b, 3), "int32"),
        se.ones((n,)),
        se.full((b, n), 2.5, "float32"),
        se.zeros_like(x),
        se.ones_like(x, "int8"),
        se.full_like(v, 7),
    ]
    assert outs[0].type.shape == (None, None) and outs[1].type.shape == (None, 3)
    a, vv = np.zeros((2, 4), "float32"), np.arange(4, dtype="float32")
    got = run([x, v], outs, [a, vv], backend)
    want = [
        np.broadcast_to(vv, (2, 4)), np.zeros((2, 3), "int32"), np.ones(4), np.full((2, 4), 2.5, "float32"),
        np.zeros_like(a), np.ones_like(a, "int8"), np.full_like(vv, 7),
    ]
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g, w)


def test_broadcast_to_symbolic_infers_known_sizes():
    v = se.tensor("v", "float32", (1, 5))
    n = se.scalar("n", "int64")
    assert se.broadcast_to(v, (n, n)).type.shape == (None, 5)
    with pytest.raises(ValueError, match="cannot be broadcast"):
        se.broadcast_to(v, (n, 4))


def test_broadcast_to_bad_size_at_call_time(backend):
    x = se.tensor("x", "float32", (None, None))
    v = se.vector("v", "float32")
    f = se.function([x, v], se.broadcast_to(v, x.shape) * 1, backend=backend)
    with pytest.raises(ValueError):
        f(np.zeros((2, 4), "float32"), np.zeros(3, "float32"))


# -- arange -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args", [(5,), (2, 9), (2, 9, 3), (9, 2, -2), (3, 3), (5, 1), (0.5, 3.0, 0.75), (1, 2.5, 0.5)], ids=str
)
def test_arange_static_matches_numpy(backend, args):
    (got,) = run([], [se.arange(*args)], [], backend)
    want = np.arange(*args)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_arange_symbolic(backend):
    x = se.tensor("x", "float32", (None, None))
    n = x.shape[1]
    outs = [se.arange(n), se.arange(1, n), se.arange(n, 0, -2), se.arange(n, dtype="float32") * 2]
    assert outs[0].type == se.TensorType("int64", (None,))
    for shape in [(1, 7), (2, 0), (3, 1)]:
        got = run([x], outs, [np.zeros(shape, "float32")], backend)
        k = shape[1]
        want = [np.arange(k), np.arange(1, k), np.arange(k, 0, -2), np.arange(k, dtype="float32") * 2]
        for g, w in zip(got, want):
            assert g.dtype == w.dtype
            np.testing.assert_array_equal(g, w)


def test_arange_errors():
    with pytest.raises(ValueError, match="step cannot be zero"):
        se.arange(0, 5, 0)
    with pytest.raises(TypeError, match="scalar"):
        se.arange(se.vector("v", "int64"))


def test_causal_mask_from_aranges(backend):
    x = se.tensor("x", "float32", (None, None))
    n = x.shape[1]
    i = se.arange(n)
    mask = se.where(se.expand_dims(i, 1) >= se.expand_dims(i, 0), 0.0, -np.inf)
    (got,) = run([x], [mask], [np.zeros((1, 4), "float32")], backend)
    np.testing.assert_array_equal(got, np.where(np.tril(np.ones((4, 4), bool)), 0.0, -np.inf))


# -- slicing with symbolic bounds, split, swapaxes ----------------------------------------
def test_symbolic_slices_and_indices(backend):
    x = se.tensor("x", "float32", (None, None))
    n = x.shape[1]
    outs = [x[:, : n - 1], x[:, 1:n], x[:, n // 2 :: 2], x[:, -n:], x[:, n - 1], x[x.shape[0] - 1], x[:, ::-1][:, :n]]
    assert outs[0].type.shape == (None, None) and outs[4].type.shape == (None,)
    for shape in [(3, 5), (1, 1), (2, 8)]:
        a = np.arange(math.prod(shape), dtype="float32").reshape(shape)
        k = shape[1]
        want = [a[:, : k - 1], a[:, 1:k], a[:, k // 2 :: 2], a[:, -k:], a[:, k - 1], a[shape[0] - 1], a[:, ::-1][:, :k]]
        got = run([x], outs, [a], backend)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
    assert se.pprint(outs[0]) == "x[:, :(x.shape[1] - 1)]"


def test_symbolic_slice_errors():
    x = se.tensor("x", "float32", (None, None))
    with pytest.raises(TypeError, match="step must be an int"):
        x[:: x.shape[0]]
    with pytest.raises(TypeError, match="slice bounds"):
        x[: se.scalar("f", "float32")]


def test_position_ids_by_slicing_a_table(backend):
    table = se.constant(np.arange(40, dtype="float32").reshape(10, 4))
    ids = se.tensor("ids", "int64", (None, None))
    out = ids.astype("float32")[:, :, None] + table[: ids.shape[1]]
    a = np.ones((2, 3), "int64")
    (got,) = run([ids], [out], [a], backend)
    np.testing.assert_array_equal(got, a[:, :, None] + np.arange(40, dtype="float32").reshape(10, 4)[:3])


@pytest.mark.parametrize("known", [True, False])
def test_split_sections(backend, known):
    x = se.tensor("x", "float32", (None, 6) if known else (None, None))
    parts = se.split(x, 3, axis=1)
    a = np.arange(12, dtype="float32").reshape(2, 6)
    got = run([x], parts, [a], backend)
    for g, w in zip(got, np.split(a, 3, axis=1)):
        np.testing.assert_array_equal(g, w)
    if known:
        assert [p.type.shape for p in parts] == [(None, 2)] * 3
        with pytest.raises(ValueError, match="does not divide"):
            se.split(x, 4, axis=1)
    else:
        f = se.function([x], parts, backend=backend)
        with pytest.raises(ValueError, match="does not divide into 3 equal sections"):
            f(np.zeros((2, 7), "float32"))


def test_split_indices(backend):
    x = se.tensor("x", "float32", (None,))
    n = x.shape[0]
    parts = se.split(x, [2, n - 1])
    a = np.arange(7, dtype="float32")
    got = run([x], parts, [a], backend)
    for g, w in zip(got, np.split(a, [2, 6])):
        np.testing.assert_array_equal(g, w)


def test_swapaxes(backend):
    x = se.tensor("x", "float32", (None, 3, None))
    assert se.swapaxes(x, 0, -1).type.shape == (None, 3, None)
    a = np.arange(24, dtype="float32").reshape(2, 3, 4)
    got = run([x], [se.swapaxes(x, 0, 2), x.swapaxes(1, 2), se.swapaxes(x, 1, 1)], [a], backend)
    for g, w in zip(got, [np.swapaxes(a, 0, 2), a.swapaxes(1, 2), a]):
        np.testing.assert_array_equal(g, w)


# -- sizes computed from data --------------------------------------------------------------
def test_size_from_an_input_value():
    """The NumPy backend takes any size; the llvm backend plans from shapes and says so."""
    x = se.tensor("x", "float32", (None,))
    n = se.scalar("n", "int64")
    out = x[:n] * 2
    (got,) = se.function([x, n], [out], backend="numpy")(np.arange(5, dtype="float32"), np.int64(3))
    np.testing.assert_array_equal(got, [0, 2, 4])
    f = se.function([x, n], [out], backend="llvm")
    with pytest.raises(ValueError, match="depends on the values of the input n"):
        f(np.arange(5, dtype="float32"), np.int64(3))


def test_arange_length_comes_from_the_bounds_not_the_dtype(backend):
    """As in NumPy: a narrow dtype wraps the values, it does not change the length."""
    x = se.tensor("x", "float32", (None,))
    n = x.shape[0]
    outs = [se.arange(n * 3, dtype="int8"), se.arange(n - 5, n * 3, 2, dtype="int8"), se.arange(300, dtype="int8"),
            se.arange(0, 1, 0.1, dtype="float16")]
    assert outs[2].type.shape == (300,)
    got = run([x], outs, [np.zeros(100, "float32")], backend)
    with np.errstate(all="ignore"):
        want = [np.arange(300, dtype="int8"), np.arange(95, 300, 2, dtype="int8"), np.arange(300, dtype="int8"),
                np.arange(0, 1, 0.1, dtype="float16")]
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_a_computed_negative_size_is_an_error_not_an_inferred_dimension(backend):
    x = se.tensor("x", "float32", (None, None))
    a = np.ones((2, 4), np.float32)
    with pytest.raises(ValueError, match=r"reshape: dimension 0 of the shape was computed as -1 at run time"):
        se.function([x], x.reshape((x.shape[0] - 3, -1)), backend=backend)(a)
    with pytest.raises(ValueError, match=r"broadcast_to: dimension 0 of the shape was computed as -3"):
        se.function([x], se.zeros((x.shape[0] - 5,)), backend=backend)(a)
    np.testing.assert_array_equal(se.function([x], x.reshape((x.shape[0] - 1, -1)), backend=backend)(a), a.reshape(1, 8))
