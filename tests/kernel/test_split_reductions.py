"""Large reductions with few outputs are split into parallel partial reductions plus a combine step.

A full reduction used to be one kernel with a parallel extent of 1 (one thread).  The
lowering now reduces ``P`` chunks of the reduced range into a temp (outer extent ``P``)
and combines the partials; ``P`` depends on sizes only, so results are the same for
every thread count.
"""

from __future__ import annotations

import numpy as np
import pytest

import symexpr as se
from symexpr.backends.llvm import get_num_threads, set_num_threads
from symexpr.kernel.ir import LoopKernel
from symexpr.kernel.lowerings import SPLIT_CHUNKS, SPLIT_MIN_REDUCED

N_BIG = SPLIT_MIN_REDUCED * 4 + 13  # not a multiple of the chunk count: a leftover tail


@pytest.fixture(autouse=True)
def _no_compile_cache(monkeypatch):
    """Plans under test change with the lowering: never load code compiled for an older plan."""
    monkeypatch.setenv("SYMEXPR_CACHE", "0")


@pytest.fixture
def threads():
    before = get_num_threads()
    yield set_num_threads
    set_num_threads(before)


def _loop_kernels(f):
    return [s for s in f._compiled.plan.steps if isinstance(s, LoopKernel)]


def _data(shape, dtype, kind, seed=0):
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.random(shape) < 0.999
    if np.dtype(dtype).kind == "f":
        if kind == "prod":  # stays finite over a million factors
            return (1 + (rng.random(shape) - 0.5) * 1e-3).astype(dtype)
        return rng.random(shape).astype(dtype) + 0.5
    if kind == "prod":
        factors = np.array([1, 1, 1, 3, -1 if np.dtype(dtype).kind == "i" else 1])
        return rng.choice(factors, shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


def _check(got, want, dtype, kind="sum"):
    want = np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.dtype, want.shape)
    if want.dtype.kind == "f":
        rtol = {"float16": 2e-3, "float32": 2e-5, "float64": 1e-12}[want.dtype.name]
        if kind == "prod":  # rounding errors of a product of n factors grow like n
            rtol = {"float16": 2e-2, "float32": 1e-3, "float64": 1e-11}[want.dtype.name]
        np.testing.assert_allclose(got, want, rtol=rtol)
    else:
        np.testing.assert_array_equal(got, want)  # integer sums and products wrap exactly like NumPy's


def test_a_full_reduction_runs_in_parallel_chunks():
    x = se.vector("x")
    f = se.function([x], se.sum(se.exp(x)), backend="llvm")
    a = np.linspace(-1, 1, N_BIG, dtype="float32")
    np.testing.assert_allclose(f(a), np.exp(a.astype("float64")).sum(), rtol=1e-5)
    kernels = _loop_kernels(f)
    assert kernels[0].outer[0] == SPLIT_CHUNKS, f._compiled.plan.text()
    assert len(kernels) == 2


def test_a_small_reduction_is_not_split():
    x = se.vector("x")
    f = se.function([x], se.sum(x), backend="llvm")
    f(np.ones(SPLIT_MIN_REDUCED - 1, "float32"))
    assert len(_loop_kernels(f)) == 1


def test_a_reduction_with_many_outputs_is_not_split():
    x = se.matrix("x")
    f = se.function([x], se.sum(x, axis=1), backend="llvm")
    a = np.ones((SPLIT_CHUNKS, SPLIT_MIN_REDUCED), "float32")
    np.testing.assert_array_equal(f(a), a.sum(axis=1))
    assert len(_loop_kernels(f)) == 1


@pytest.mark.parametrize("kind", ["sum", "prod", "max", "min", "mean"])
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "int32", "uint8", "int8"])
@pytest.mark.parametrize("n", [1000, N_BIG, SPLIT_CHUNKS * SPLIT_MIN_REDUCED // 32])
def test_full_reduction_matches_numpy(kind, dtype, n):
    x = se.vector("x", dtype=dtype)
    f = se.function([x], getattr(se, kind)(x), backend="llvm")
    a = _data(n, dtype, kind)
    _check(f(a), getattr(np, kind)(a), dtype, kind)


def test_int_sum_wraps_like_numpy():
    x = se.vector("x", dtype="int64")
    f = se.function([x], se.sum(x), backend="llvm")
    a = np.full(N_BIG, 2**62 + 12345, dtype="int64")
    with np.errstate(over="ignore"):
        want = a.sum()
    assert f(a) == want
    x8 = se.vector("x8", dtype="int8")
    g = se.function([x8], se.sum(x8), backend="llvm")
    b = np.full(N_BIG, 127, dtype="int8")
    assert g(b) == b.sum() and g(b).dtype == b.sum().dtype


def test_bool_reductions():
    x = se.vector("x", dtype="bool")
    a = _data(N_BIG, "bool", "sum")
    for kind in ("sum", "max", "min"):
        f = se.function([x], getattr(se, kind)(x), backend="llvm")
        _check(f(a), getattr(np, kind)(a), "bool")


@pytest.mark.parametrize(
    "shape, axis, keepdims, index",
    [
        ((3, N_BIG), 1, False, ()),
        ((3, N_BIG), 1, True, ()),
        ((N_BIG, 3), 0, False, ()),  # strided reduction, three outputs
        ((N_BIG, 3), 0, True, ()),
        ((N_BIG, 3), None, False, ()),
        ((4, 300, 401), (0, 2), False, ()),  # an axis tuple: the reduced dims do not collapse
        ((4, 300, 401), (0, 2), True, ()),
        ((300, 401, 4), (0, 1), False, ()),
        ((2 * N_BIG,), None, False, (slice(None, None, 2),)),  # every other element
        ((N_BIG, 3), None, False, (slice(None, None, -1), slice(0, 2))),  # reversed and sliced
        ((600, 450), None, True, (slice(None), slice(None, None, 3))),
    ],
)
@pytest.mark.parametrize("kind", ["sum", "max", "mean"])
def test_strided_inputs_axes_and_keepdims(shape, axis, keepdims, index, kind):
    x = se.tensor("x", dtype="float32", shape=(None,) * len(shape))
    f = se.function([x], getattr(se, kind)(x, axis=axis, keepdims=keepdims), backend="llvm")
    base = _data(shape, "float32", kind)
    a = base[index] if index else base
    _check(f(a), getattr(np, kind)(a, axis=axis, keepdims=keepdims), "float32")
    if np.prod(a.shape) >= SPLIT_MIN_REDUCED:
        assert any(k.outer[0] >= 32 for k in _loop_kernels(f)), f._compiled.plan.text()


@pytest.mark.parametrize("dtype", ["int64", "int16", "uint32"])
def test_int_sums_over_axis_tuples_are_exact(dtype):
    x = se.tensor("x", dtype=dtype, shape=(None, None, None))
    a = _data((5, 257, 301), dtype, "sum")[:, ::-1, 1:]
    for axis in [(1, 2), (0, 1), None]:
        f = se.function([x], se.sum(x, axis=axis), backend="llvm")
        _check(f(a), np.sum(a, axis=axis), dtype)


def test_fused_epilogue_and_body():
    x = se.vector("x")
    y = se.vector("y")
    out = se.log(se.sum(se.exp(se.mul(x, y))))  # body fused into the reduction, log as its epilogue
    f = se.function([x, y], out, backend="llvm")
    a = _data(N_BIG, "float32", "sum")
    b = _data(N_BIG, "float32", "sum", seed=1)
    want = np.log(np.exp(a.astype("float64") * b).sum())
    np.testing.assert_allclose(f(a, b), want, rtol=1e-5)


def test_float16_sum_accumulates_in_float32():
    x = se.vector("x", dtype="float16")
    f = se.function([x], se.sum(x), backend="llvm")
    a = np.full(N_BIG, 0.01, dtype="float16")
    got = f(a)
    assert got.dtype == np.float16
    np.testing.assert_allclose(float(got), float(a.astype("float32").sum()), rtol=2e-3)


def test_max_propagates_nan_from_any_chunk():
    x = se.vector("x")
    a = np.ones(N_BIG, "float32")
    for where in (0, N_BIG // 2, N_BIG - 1):  # a chunk, and the leftover tail
        a[:] = 1
        a[where] = np.nan
        for kind in ("max", "min", "sum"):
            f = se.function([x], getattr(se, kind)(x), backend="llvm")
            assert np.isnan(f(a)), (kind, where)


def test_results_do_not_depend_on_the_thread_count(threads):
    x = se.vector("x")
    m = se.matrix("m")
    f = se.function([x], se.sum(se.exp(x)), backend="llvm")
    g = se.function([m], se.mean(m, axis=0), backend="llvm")
    a = np.random.default_rng(3).standard_normal(N_BIG).astype("float32")
    b = a[: (N_BIG // 4) * 4].reshape(-1, 4)
    results = []
    for n in (1, 2, 3, 7):
        threads(n)
        results.append((f(a), g(b)))
    for r in results[1:]:
        np.testing.assert_array_equal(r[0], results[0][0])
        np.testing.assert_array_equal(r[1], results[0][1])


def test_initial_value_applies_once():
    x = se.vector("x")
    a = _data(N_BIG, "float32", "max") - 10
    for initial in (5.0, -100.0):
        out = se.Reduce("max", (0,), False, initial)(x)
        f = se.function([x], out, backend="llvm")
        assert f(a) == np.max(a, initial=initial)
    assert any(k.outer[0] == SPLIT_CHUNKS for k in _loop_kernels(f))


def test_leftover_slices_get_their_own_kernel_without_the_combining_op(monkeypatch):
    """A backend that cannot combine two partials in a program reduces the leftover slices into one more partial."""
    from symexpr.backends.llvm import scalar_ops

    supported = scalar_ops.supported
    monkeypatch.setattr(
        scalar_ops, "supported", lambda op, dtypes: op.name not in ("add", "maximum") and supported(op, dtypes)
    )
    x = se.vector("x")
    a = _data(N_BIG, "float32", "sum")
    for kind in ("sum", "max"):
        f = se.function([x], getattr(se, kind)(se.exp(x)), backend="llvm")
        _check(f(a), getattr(np, kind)(np.exp(a)), "float32")
        kernels = _loop_kernels(f)
        assert len(kernels) == 3 and kernels[0].outer[0] == SPLIT_CHUNKS, f._compiled.plan.text()
