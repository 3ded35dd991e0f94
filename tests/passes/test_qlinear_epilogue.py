"""Epilogue fusion of int8 linears: the elementwise node reading a QLinear's result joins its kernel."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import symexpr as se
from symexpr.ops import quant as Q
from symexpr.ops.elemwise import Elemwise
from symexpr.ops.fused import Fused


K, N = 40, 24


def _linear(rng, bits=7):
    """``(xq, sx, y)``: a per-token scaled int8 linear on int8 rows (None, None, K) -> (None, None, N)."""
    q = Q.qmax(bits)
    wq = rng.integers(-q, q + 1, (K, N)).astype(np.int8)
    sw = rng.uniform(0.01, 0.1, N).astype(np.float32)
    xq = se.tensor("xq", "int8", (None, None, K))
    sx = se.tensor("sx", "float32", (None, None, 1))
    return xq, sx, Q.qlinear(xq, wq, sx, sw, weight_bits=bits)


def _args(rng, rows=(3, 5)):
    return [rng.integers(-127, 128, rows + (K,)).astype(np.int8), rng.uniform(0.01, 0.1, rows + (1,)).astype(np.float32)]


def _qlinears(f):
    return [node.op for node in f.fgraph.toposort() if isinstance(node.op, Q.QLinear)]


def _elementwise(f):
    return [node for node in f.fgraph.toposort() if isinstance(node.op, (Elemwise, Fused))]


def test_bias_gelu_and_residual_join_the_linear(backend):
    rng = np.random.default_rng(0)
    xq, sx, y = _linear(rng)
    b = rng.standard_normal(N).astype(np.float32)
    residual = se.tensor("r", "float32", (None, None, N))
    outs = [se.gelu(y + b), se.tanh(y + b) * 0.5 + residual]
    args = _args(rng) + [rng.standard_normal((3, 5, N)).astype(np.float32)]
    for out in outs:
        inputs = [xq, sx, residual] if out is outs[1] else [xq, sx]
        f = se.function(inputs, out, backend=backend)
        plain = se.function(inputs, out, backend=backend, passes=["fast_run", "-fuse_qlinear_epilogues"])
        (op,) = _qlinears(f)
        assert op.epilogue and not _elementwise(f)
        np.testing.assert_array_equal(f(*args[: len(inputs)]), plain(*args[: len(inputs)]))
    assert "QLinear{w7, scaled, then gelu(i0 + i1" in se.debugprint(se.function([xq, sx], outs[0], backend="numpy").fgraph.outputs[0])


def test_the_kernel_runs_the_program_and_prints_it():
    rng = np.random.default_rng(1)
    xq, sx, y = _linear(rng)
    residual = se.tensor("r", "float32", (None, None, N))
    f = se.function([xq, sx, residual], se.maximum(y * 2.0 + residual, 0.0), backend="llvm")
    f(*_args(rng), rng.standard_normal((3, 5, N)).astype(np.float32))
    text = f._compiled.plan.text()
    assert "qgemm" in text and "(over (m, n))" in text and "kernel" not in text.replace("qgemm", "")


def test_a_result_used_twice_or_returned_is_not_fused(backend):
    rng = np.random.default_rng(2)
    xq, sx, y = _linear(rng)
    f = se.function([xq, sx], [y, se.exp(y)], backend=backend)
    assert not _qlinears(f)[0].epilogue
    g = se.function([xq, sx], se.exp(y) + se.sin(y) * y, backend=backend)  # one consumer after fusion
    assert _qlinears(g)[0].epilogue
    args = _args(rng)
    args[1] *= np.float32(0.01)  # keep exp finite
    a, b = f(*args)
    np.testing.assert_allclose(g(*args), np.exp(a) + np.sin(a) * a, rtol=1e-6)


def test_operands_that_enlarge_the_product_or_do_not_fold_take_the_loop_kernel(backend):
    """Rows broadcast against more rows at run time, and a transposed residual: exact either way."""
    rng = np.random.default_rng(3)
    xq, sx, y = _linear(rng)
    r = se.tensor("r", "float32", (None, None, N))
    rt = se.tensor("rt", "float32", (None, N, None))
    out = y * 0.5 + r + se.swapaxes(rt, -1, -2)
    f = se.function([xq, sx, r, rt], out, backend=backend)
    plain = se.function([xq, sx, r, rt], out, backend=backend, passes=["fast_run", "-fuse_qlinear_epilogues"])
    assert _qlinears(f)[0].epilogue
    for rows, r_rows in [((3, 5), (3, 5)), ((3, 1), (3, 4)), ((1, 1), (2, 6))]:
        args = _args(rng, rows)
        args += [rng.standard_normal(r_rows + (N,)).astype(np.float32),
                 rng.standard_normal(r_rows[:1] + (N,) + r_rows[1:]).astype(np.float32)]
        got = f(*args)
        assert got.shape == r_rows + (N,)
        np.testing.assert_array_equal(got, plain(*args))


@settings(max_examples=25, deadline=None)
@given(ops=st.lists(st.sampled_from(["add_b", "mul_r", "gelu", "relu", "square", "div_r", "nan_guard"]), min_size=1, max_size=5),
       rows=st.sampled_from([(1, 1), (2, 3), (4, 17)]), bits=st.sampled_from([7, 8]), seed=st.integers(0, 2**31))
def test_random_epilogues_equal_the_unfused_graph(ops, rows, bits, seed):
    rng = np.random.default_rng(seed)
    xq, sx, y = _linear(rng, bits)
    b = rng.standard_normal(N).astype(np.float32)
    r = se.tensor("r", "float32", (None, None, N))
    v = y
    for name in ops:
        v = {"add_b": lambda t: t + b, "mul_r": lambda t: t * r, "gelu": se.gelu, "relu": lambda t: se.maximum(t, 0.0),
             "square": lambda t: t * t, "div_r": lambda t: t / r, "nan_guard": lambda t: se.where(se.isnan(t), 0.0, t)}[name](v)
    args = _args(rng, rows) + [rng.standard_normal(rows + (N,)).astype(np.float32)]
    inputs = [xq, sx, r]
    want = se.function(inputs, v, backend="numpy", passes=["fast_run", "-fuse_qlinear_epilogues"])(*args)
    for backend in ("numpy", "llvm"):
        f = se.function(inputs, v, backend=backend)
        assert _qlinears(f)[0].epilogue
        got = f(*args)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)


def test_epilogue_build_errors():
    xq = se.tensor("xq", "int8", (None, 8))
    wq = np.zeros((8, 3), np.int8)
    with pytest.raises(ValueError, match="epilogue program needs the scaled"):
        Q.QLinear(8, scaled=False, epilogue=((se.ops.scalar.exp, (("in", 0),)),))
    cast = ((se.ops.scalar.Cast("float64"), (("in", 0),)),)
    with pytest.raises(TypeError, match="must give float32, got float64"):
        Q.QLinear(8, True, epilogue=cast)(xq, wq, np.float32(1), np.ones(3, np.float32))


def test_an_epilogue_op_the_backend_lacks_sends_the_node_to_the_host():
    """Integer power has no llvm code: the fused QLinear runs on the host rather than failing to compile."""
    rng = np.random.default_rng(5)
    xq, sx, y = _linear(rng)
    a, e = se.tensor("a", "int16", (None, None, N)), se.tensor("e", "int16", (None, None, N))
    out = y + a ** e
    args = _args(rng) + [rng.integers(-5, 5, (3, 5, N)).astype(np.int16), rng.integers(0, 4, (3, 5, N)).astype(np.int16)]
    f = se.function([xq, sx, a, e], out, backend="llvm")
    assert _qlinears(f)[0].epilogue
    want = se.function([xq, sx, a, e], out, backend="numpy", passes=["fast_run", "-fuse_qlinear_epilogues"])(*args)
    np.testing.assert_array_equal(f(*args), want)


def test_a_run_time_scalar_exponent_takes_numpys_fast_forms():
    """``x ** s`` with a one-element ``s`` of 0.5 is sqrt in NumPy: (-inf) ** 0.5 is NaN, not powf's inf."""
    rng = np.random.default_rng(6)
    xq, sx, y = _linear(rng)
    r, s = se.tensor("r", "float32", (None, None, N)), se.tensor("s", "float32", ())
    out = (y + r) ** s
    ra = np.zeros((3, 5, N), np.float32)
    ra[0, 0, 0] = -np.inf
    for rows, r_rows in [((3, 5), (3, 5)), ((3, 1), (3, 5))]:  # in the kernel, then in the loop-kernel fallback
        args = _args(rng, rows) + [ra[:, : r_rows[1]], np.float32(0.5)]
        got = se.function([xq, sx, r, s], out, backend="llvm")(*args)
        want = se.function([xq, sx, r, s], out, backend="numpy")(*args)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        assert np.isnan(got[0, 0, 0])


def test_reversed_size_one_axes_are_copied_before_the_kernel():
    """A per-token QLinear given x[::-1] or sx[::-1] on an axis of size 1 (negative strides that do not fold)."""
    rng = np.random.default_rng(7)
    xq, sx, y = _linear(rng)
    f = se.function([xq, sx], y, backend="llvm")
    x, s = _args(rng, (1, 7))
    want = se.function([xq, sx], y, backend="numpy")(x, s)
    np.testing.assert_array_equal(f(x[::-1], s), want)
    np.testing.assert_array_equal(f(x, s[::-1]), want)
