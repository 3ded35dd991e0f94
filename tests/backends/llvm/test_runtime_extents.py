"""One compiled module serves every input size: plans are templated, sizes are run-time parameters."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import hyp

import symexpr as se
from symexpr.runtime import dispatch
from symexpr.kernel.ir import GemmKernel


def _compiled(f):
    return f._compiled


def _encoder_block():
    x = se.tensor("x", "float32", (None, None, 64))
    w = se.constant(np.random.default_rng(0).standard_normal((64, 64)).astype("float32") / 8, name="w")
    b, n, _ = x.shape
    h = se.layer_norm(x @ w + x)
    heads = h.reshape((b, n, 4, 16)).swapaxes(1, 2)
    scores = se.softmax(heads @ heads.swapaxes(-1, -2) * 0.25, axis=-1)
    ctx = (scores @ heads).swapaxes(1, 2).reshape((b, n, 64))
    return x, [ctx, h.mean(axis=1), se.sum(se.exp(x), axis=-1)]


def test_one_compile_serves_every_batch_and_length():
    x, outs = _encoder_block()
    f = se.function([x], outs)
    ref = se.function([x], outs, backend="numpy")
    assert _compiled(f).compilations == 1  # at function() time
    rng = np.random.default_rng(1)
    for shape in [(2, 5, 64), (3, 17, 64), (8, 2, 64), (2, 300, 64), (5, 9, 64)]:
        a = rng.standard_normal(shape).astype("float32")
        for got, want in zip(f(a), ref(a)):
            np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
    assert _compiled(f).compilations == 1


def test_batch_of_one_needs_no_new_code():
    """A dimension that is 1 but does not broadcast keeps the plan's structure (batch 1 of an encoder)."""
    x, outs = _encoder_block()
    f = se.function([x], outs)
    ref = se.function([x], outs, backend="numpy")
    rng = np.random.default_rng(2)
    for shape in [(1, 7, 64), (1, 12, 64), (3, 9, 64)]:
        a = rng.standard_normal(shape).astype("float32")
        for got, want in zip(f(a), ref(a)):
            np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
    assert _compiled(f).compilations == 1
    # A sequence of one token makes the attention matmuls (n, 1) @ (1, n): GEMMs of another shape class.
    for shape in [(4, 1, 64), (6, 1, 64), (1, 1, 64)]:
        a = rng.standard_normal(shape).astype("float32")
        for got, want in zip(f(a), ref(a)):
            np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
    assert _compiled(f).compilations <= 3


def test_a_view_compiles_once_for_its_layout_class():
    x = se.matrix("x", "float64")
    f = se.function([x], [se.exp(x) + 1, x.sum(axis=0)])
    compiled_before = _compiled(f).compilations
    # odd n: for even n, a[:, ::2] is evenly strided across rows too (its dims merge: another structure)
    for n in (3, 7, 21):
        a = np.arange(float(n * 5)).reshape(5, n)
        for view in (a.T, a[:, ::2]):
            got = f(view)
            np.testing.assert_allclose(got[0], np.exp(view) + 1)
            np.testing.assert_allclose(got[1], view.sum(axis=0))
    assert _compiled(f).compilations <= compiled_before + 2


def test_mean_over_a_run_time_axis_needs_no_new_code():
    x = se.matrix("x", "float32")
    f = se.function([x], [x.mean(axis=1), se.var(x, axis=1)])
    for n in (2, 9, 200, 1001):
        a = np.random.default_rng(n).standard_normal((3, n)).astype("float32")
        m, v = f(a)
        np.testing.assert_allclose(m, a.mean(axis=1), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(v, a.var(axis=1), rtol=1e-4, atol=1e-6)
    assert _compiled(f).compilations == 1


@pytest.mark.parametrize("n", [1, 127, 128, 129, 255, 256, 257, 511, 512, 513, 1000, 4097, 100_003])
def test_float_sums_at_every_block_boundary(n):
    """Sums split their rows in blocks whose count and tail are run-time values."""
    x = se.matrix("x", "float32")
    f = se.function([x], x.sum(axis=1))
    a = np.random.default_rng(n).random((2, n), dtype=np.float32)
    got = f(a)
    exact = a.astype(np.float64).sum(axis=1)
    assert np.all(np.abs(got - exact) <= 2 * np.spacing(np.float32(exact)) + 1e-7)


@hyp(max_examples=30)
@given(st.lists(st.tuples(st.integers(2, 9), st.integers(2, 40)), min_size=1, max_size=6))
def test_random_sizes_match_numpy_with_one_module(shapes):
    x = se.matrix("x", "float32")
    y = se.vector("y", "float32")
    outs = [se.softmax(x * y, axis=-1), (x - y).max(axis=0), x[:, 1:] @ x[:, 1:].T]
    f = se.function([x, y], outs)
    for m, n in shapes:
        a = np.random.default_rng(m * 100 + n).standard_normal((m, n)).astype("float32")
        v = np.random.default_rng(n).standard_normal(n).astype("float32")
        e = np.exp(a * v - (a * v).max(axis=-1, keepdims=True))
        want = [e / e.sum(axis=-1, keepdims=True), (a - v).max(axis=0), a[:, 1:] @ a[:, 1:].T]
        for got, w in zip(f(a, v), want):
            np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-5)
    assert _compiled(f).compilations == 1


def test_the_geometry_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(dispatch, "MAX_GEOMETRIES", 4)
    x = se.vector("x", "float64")
    f = se.function([x], x * 2)
    for n in range(2, 20):
        np.testing.assert_array_equal(f(np.ones(n)), np.full(n, 2.0))
    assert len(_compiled(f)._variants) <= 4 and len(_compiled(f)._runs) <= 4
    assert _compiled(f).compilations == 1


def test_only_recent_geometries_keep_spare_outputs(monkeypatch):
    """A function called with many shapes keeps output arrays for reuse for the last few only."""
    monkeypatch.setattr(dispatch, "MAX_SPARE_GEOMETRIES", 3)
    x = se.vector("x", "float64")
    f = se.function([x], x * 2)
    for rounds in range(2):
        for n in range(2, 12):
            np.testing.assert_array_equal(f(np.ones(n)), np.full(n, 2.0))
    held = [v for v in _compiled(f)._variants.values() if any(v.executable._spares)]
    assert len(held) <= 3 and len(_compiled(f)._runs) <= 3
    np.testing.assert_array_equal(f(np.ones(2)), np.full(2, 2.0))  # an old shape comes back without planning
    assert _compiled(f).compilations == 1


def test_the_module_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(dispatch, "MAX_MODULES", 2)
    x = se.matrix("x", "float64")
    f = se.function([x], x * 2)
    a = np.arange(24.0).reshape(4, 6)
    for view in (a, a.T, a[:, ::2], a[::2], a[::-1]):  # layout classes: each compiles a module
        np.testing.assert_array_equal(f(view), view * 2)
    assert len(_compiled(f)._modules) <= 2


def test_batched_activation_times_weight_is_one_gemm():
    x = se.tensor("x", "float32", (None, None, 48))
    w = se.constant(np.random.default_rng(3).standard_normal((48, 40)).astype("float32"))
    f = se.function([x], x @ w)
    a = np.random.default_rng(4).standard_normal((6, 7, 48)).astype("float32")
    np.testing.assert_allclose(f(a), a @ w.data, rtol=1e-5, atol=1e-5)
    (gemm,) = [s for s in _compiled(f).plan.steps if isinstance(s, GemmKernel)]
    assert gemm.batch == () and gemm.m == 42
    view = a.transpose(1, 0, 2)  # rows no longer evenly strided across the batch: one GEMM per batch entry
    np.testing.assert_allclose(f(view), view @ w.data, rtol=1e-5, atol=1e-5)
    (gemm,) = [s for s in _compiled(f).plan.steps if isinstance(s, GemmKernel)]
    assert gemm.batch == (7,)


def test_geometries_share_one_arena():
    """Intermediates of every shape live in one arena per function, grown when a larger shape needs it."""
    x = se.matrix("x", "float64")
    h = se.exp(x) @ se.exp(x).T  # the exp result is a temp in the arena
    f = se.function([x], h + 1)
    for n in (4, 50, 8, 30):
        a = np.random.default_rng(n).random((n, 6))
        np.testing.assert_allclose(f(a), np.exp(a) @ np.exp(a).T + 1, rtol=1e-12)
    arenas = _compiled(f).arenas
    assert len(arenas) == 1 and arenas[0].nbytes >= 50 * 6 * 8
