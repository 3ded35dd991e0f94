"""The llvm backend against the NumPy reference, end to end.

The oracle is always the NumPy backend without passes
(``se.function(ins, outs, backend="numpy", passes="none")``).  Float results
compare with :func:`symexpr.testing.asserts.default_tolerances` (NaN and +-inf
in the same places); integer and bool results compare exactly.  Where NumPy's
answer is exact by definition (casts, rounding, max/min, floor division and
modulo) the comparison is bit for bit, including the sign of zero.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import warnings
import zlib
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from support import ALL_DTYPES, FLOAT_DTYPES, INT_DTYPES, num_threads

import symexpr as se
from symexpr.backends.llvm import get_num_threads, runtime, set_num_threads
from symexpr.graph.traversal import toposort
from symexpr.kernel.ir import GemmKernel, HostStep, LoopKernel
from symexpr.testing.asserts import default_tolerances
from symexpr.testing.strategies import FAMILIES, graphs

SIGNED = ["int8", "int16", "int32", "int64"]
UNSIGNED = ["uint8", "uint16", "uint32", "uint64"]


@pytest.fixture(autouse=True)
def _no_disk_cache(monkeypatch):
    """Every specialisation is compiled here: no test depends on (or fills) the disk cache."""
    monkeypatch.setenv("SYMEXPR_CACHE", "0")


# -- helpers ------------------------------------------------------------------------------


@contextmanager
def quiet():
    """NumPy's floating-point and empty-slice warnings off (the values are what is compared)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def reference(inputs, outputs, *values):
    """The oracle: the NumPy backend without passes."""
    f = se.function(list(inputs), outputs, backend="numpy", passes="none")
    with quiet():
        return f(*values)


def compiled(inputs, outputs, passes=None):
    return se.function(list(inputs), outputs, backend="llvm", passes=passes)


def least_precise_float(outputs):
    """The float dtype with the largest epsilon among the variables ``outputs`` depend on."""
    dtypes = {v.dtype for v in outputs}
    for node in toposort(list(outputs)):
        dtypes.update(v.dtype for v in (*node.inputs, *node.outputs))
    floats = [d for d in dtypes if np.dtype(d).kind == "f"]
    return max(floats, key=lambda d: np.finfo(d).eps) if floats else None


def assert_same(got, expected, compute_dtype=None, exact=False, what="result", zero_sign=True):
    """``got`` equals the reference ``expected``: dtype, shape, then values.

    Floats: within :func:`default_tolerances` (NaN and +-inf in the same places), or
    bit for bit when ``exact`` (sign of zero included unless ``zero_sign`` is False).
    Integers and bools: exactly.
    """
    assert isinstance(got, np.ndarray), f"{what}: got a {type(got).__name__}, not an ndarray"
    expected = np.asarray(expected)
    assert got.dtype == expected.dtype, f"{what}: dtype {got.dtype}, reference {expected.dtype}"
    assert got.shape == expected.shape, f"{what}: shape {got.shape}, reference {expected.shape}"
    if expected.dtype.kind != "f":
        np.testing.assert_array_equal(got, expected, err_msg=what)
        return
    g64, e64 = got.astype(np.float64), expected.astype(np.float64)
    if exact:
        np.testing.assert_array_equal(g64, e64, err_msg=what)  # NaN == NaN here, inf by sign
        if not zero_sign:
            return
        zeros = (e64 == 0) & (g64 == 0)
        bad = zeros & (np.signbit(e64) != np.signbit(g64))
        assert not bad.any(), f"{what}: zeros of another sign at {np.argwhere(bad)[:8].tolist()}"
        return
    rtol, atol = default_tolerances(expected.dtype, expected, compute_dtype)
    np.testing.assert_allclose(g64, e64, rtol=rtol, atol=atol, equal_nan=True, err_msg=what)


def check(inputs, outputs, values, passes=None, exact=False, f=None, zero_sign=True):
    """Compile with llvm (unless ``f`` is given), run on ``values``, compare with the oracle; return f."""
    f = f or compiled(inputs, outputs, passes)
    expected = reference(inputs, outputs, *values)
    with quiet():
        got = f(*values)
    outs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    got_list = got if isinstance(outputs, (list, tuple)) else [got]
    exp_list = expected if isinstance(outputs, (list, tuple)) else [expected]
    assert len(got_list) == len(exp_list)
    compute = least_precise_float(list(outs) + list(f.fgraph.outputs))
    for i, (g, e) in enumerate(zip(got_list, exp_list)):
        assert_same(g, e, compute, exact=exact, what=f"output {i}", zero_sign=zero_sign)
    return f


def rng_for(*key) -> np.random.Generator:
    """A generator seeded from ``key`` (the same in every process: no ``hash()``, which is salted)."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def small_values(dtype, shape, rng):
    """Values whose sums and products are exact in every dtype (halves in [-4, 4] for floats)."""
    kind = np.dtype(dtype).kind
    if kind == "b":
        return rng.random(shape) < 0.5
    if kind == "f":
        return (rng.integers(-8, 9, size=shape) / 2).astype(dtype)
    if kind == "u":
        return rng.integers(0, 9, size=shape).astype(dtype)
    return rng.integers(-8, 9, size=shape).astype(dtype)


def full_range(dtype, size, rng):
    info = np.iinfo(dtype)
    return rng.integers(int(info.min), int(info.max), size=size, endpoint=True, dtype=dtype)


def int_edges(dtype):
    info = np.iinfo(dtype)
    vals = {0, 1, 2, 3, 7, int(info.max), int(info.max) - 1, int(info.min), int(info.min) + 1}
    if info.min < 0:
        vals |= {-1, -2, -3, -7}
    return np.array(sorted(vals), dtype=dtype)


def all_pairs(a, b):
    x, y = np.meshgrid(a, b, indexing="ij")
    return x.ravel().copy(), y.ravel().copy()


def symbolic(name, array, static=False):
    return se.tensor(name, dtype=array.dtype.name, shape=array.shape if static else (None,) * array.ndim)


# -- 1. random graphs -----------------------------------------------------------------


def _compare_outputs(got, expected, compute, label):
    for i, (g, e) in enumerate(zip(got, expected)):
        assert_same(g, np.asarray(e), compute, what=f"output {i} ({label})")


def _check_graph_case(case):
    try:
        ref = case.function("numpy", "none")
        with quiet():
            expected = ref(*case.values)
    except (ValueError, TypeError, IndexError, OverflowError, ZeroDivisionError, FloatingPointError):
        assume(False)  # the strategy promises graphs that run; never seen
    for passes in (None, "none"):
        f = case.function("llvm", passes)
        with quiet():
            got = f(*case.values)
        assert len(got) == len(expected)
        compute = least_precise_float(list(case.outputs) + list(f.fgraph.outputs))
        try:
            _compare_outputs(got, expected, compute, f"passes={passes!r}")
        except AssertionError:
            # The "stabilize" pass deliberately changes results where the plain graph over- or
            # underflows (log(exp(x)) -> x, log(sum(exp(x))) -> logsumexp(x), ...).  Only then is
            # the NumPy backend under the same passes the oracle for the rewritten graph.
            if passes is not None or not any(r.pass_name == "stabilize" for r in f.rewrite_log):
                raise
            with quiet():
                rewritten = case.function("numpy", passes)(*case.values)
            _compare_outputs(got, rewritten, compute, "passes=None, against numpy with the same passes")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize(
    "zero",
    ["bool", "int8", "uint8", "float", "python_int"],
)
def test_default_passes_keep_the_sign_of_zero_in_x_plus_zero(dtype, zero):
    """``-0.0 + 0`` is ``+0.0`` in NumPy whatever the zero's dtype; only ``x + (-0.0)`` may drop the add."""
    c = {"bool": np.array(False), "int8": np.array(0, "int8"), "uint8": np.array(0, "uint8"), "float": 0.0,
         "python_int": 0}[zero]
    x = se.tensor("x", dtype, (None,))
    out = [x + c, se.rsqrt(x + c)]
    a = np.array([-0.0, 0.0, 1.0] * 7, dtype=dtype)
    check([x], out, [a], passes="none", exact=True)
    check([x], out, [a], passes=None, exact=True)


GRAPH_SETTINGS = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
}


@settings(max_examples=100, **GRAPH_SETTINGS)
@given(case=graphs(max_ops=6, dtypes=FLOAT_DTYPES))
def test_random_float_graphs(case):
    _check_graph_case(case)


# Every op but sin/cos: with whole-range inputs (int64 up to 9e18) their arguments pass 1e15, where they
# are documented as inaccurate (docs/math-accuracy.md: no Payne-Hanek reduction).
_ALL_BUT_TRIG = [f for f in FAMILIES if f != "unary"] + [op for op in FAMILIES["unary"] if op not in ("sin", "cos")]


@settings(max_examples=80, **GRAPH_SETTINGS)
@given(case=graphs(max_ops=5, dtypes=ALL_DTYPES, ops=_ALL_BUT_TRIG, elements="any"))
def test_random_graphs_every_dtype(case):
    _check_graph_case(case)


# Elementwise-only graphs on the whole float range (NaN, +-inf, subnormals, huge values).
# sin/cos are left out: beyond 1e15 they are documented as inaccurate (no Payne-Hanek reduction).
_ELEMENTWISE_OPS = [
    "binary", "scalar", "compare", "shape", "cast",
    "exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "tanh", "sigmoid", "abs", "neg", "relu", "sign",
    "floor", "ceil", "round",
]


@settings(max_examples=60, **GRAPH_SETTINGS)
@given(case=graphs(max_ops=4, dtypes=FLOAT_DTYPES, ops=_ELEMENTWISE_OPS, elements="any"))
def test_random_elementwise_graphs_special_values(case):
    _check_graph_case(case)


# -- 2. input layouts -------------------------------------------------------------------

# Each builds an array of ``shape`` (2-d) laid out some way, from ``make(shape)``.
LAYOUTS = {
    "contiguous": lambda make, s: make(s),
    "strided": lambda make, s: make((s[0], 2 * s[1]))[:, ::2],
    "offset_rows": lambda make, s: make((2 * s[0] + 1, s[1]))[1::2],
    "reversed": lambda make, s: make(s)[::-1],
    "reversed_both": lambda make, s: make(s)[::-1, ::-1],
    "transposed": lambda make, s: make((s[1], s[0])).T,
    "broadcast_row": lambda make, s: np.broadcast_to(make((s[1],)), s),
    "broadcast_col": lambda make, s: np.broadcast_to(make((s[0], 1)), s),
    "broadcast_scalar": lambda make, s: np.broadcast_to(make(()), s),
    "fortran": lambda make, s: np.asfortranarray(make(s)),
}


def _exp_mul_add(x, y):
    return se.exp(x) * y + 2


def _where_max_cast(x, y):
    return se.where(x > y, se.maximum(x, y), se.cast(se.minimum(x, y), "float32")) * 2


def _sum_axis0(x, y):
    return se.sum(x * y, axis=0)


def _sum_axis1_keepdims(x, y):
    return se.sum(se.where(x < y, x, y), axis=1, keepdims=True)


EXPRESSIONS = {
    "exp_mul_add": (_exp_mul_add, FLOAT_DTYPES),
    "where_max_cast": (_where_max_cast, ALL_DTYPES),
    "sum_axis0": (_sum_axis0, ALL_DTYPES),
    "sum_axis1_keepdims": (_sum_axis1_keepdims, ALL_DTYPES),
}
EXPR_DTYPE = [(name, d) for name, (_, ds) in EXPRESSIONS.items() for d in ds]


@pytest.mark.parametrize("expr,dtype", EXPR_DTYPE)
def test_layouts(expr, dtype):
    """One dynamic-shape Function, called with each layout in turn (each re-specialises)."""
    fn, _ = EXPRESSIONS[expr]
    x = se.tensor("x", dtype, (None, None))
    y = se.tensor("y", dtype, (None, None))
    out = fn(x, y)
    f = compiled([x, y], out)
    rng = rng_for(expr, dtype)

    def make(shape):
        return small_values(dtype, shape, rng)

    shape = (7, 17)
    names = list(LAYOUTS)
    for i, name in enumerate(names):
        a = LAYOUTS[name](make, shape)
        b = LAYOUTS[names[(i + 3) % len(names)]](make, shape)  # the other operand in another layout
        assert a.shape == b.shape == shape
        check([x, y], out, [a, b], f=f)  # over the loop every layout is on both sides once


@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (0, 0), (1, 1), (1, 7), (17, 1), (3, 16), (33, 17)], ids=str)
@pytest.mark.parametrize("expr,dtype", [(e, d) for e, d in EXPR_DTYPE if d in ("float32", "int32")])
def test_odd_and_empty_shapes(expr, dtype, shape):
    fn, _ = EXPRESSIONS[expr]
    x = se.tensor("x", dtype, (None, None))
    y = se.tensor("y", dtype, (None, None))
    out = fn(x, y)
    rng = rng_for(expr, dtype, shape)
    f = compiled([x, y], out)
    a = small_values(dtype, shape, rng)
    b = small_values(dtype, (shape[0], 2 * shape[1]), rng)[:, ::2]
    check([x, y], out, [a, b], f=f)
    check([x, y], out, [b[::-1], a.T.copy().T], f=f)


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_zero_dim_inputs(dtype):
    x = se.tensor("x", dtype, ())
    y = se.tensor("y", dtype, ())
    rng = rng_for("0d", dtype)
    a, b = small_values(dtype, (), rng), small_values(dtype, (), rng)
    outs = [_where_max_cast(x, y), se.sum(x * y), x * y]
    if dtype in FLOAT_DTYPES:
        outs.append(_exp_mul_add(x, y))
    check([x, y], outs, [a, b])
    # a 0-d input broadcast against a matrix
    m = se.tensor("m", dtype, (None, None))
    check([x, m], [se.maximum(x, m), se.sum(se.where(m > x, m, x), axis=0)], [a, small_values(dtype, (5, 19), rng)])


@pytest.mark.parametrize("n", [1, 7, 17, 1000003])
def test_sizes_not_multiple_of_vector_width(n):
    x = se.tensor("x", "float32", (None,))
    y = se.tensor("y", "float32", (None,))
    rng = rng_for("sizes", n)
    a, b = small_values("float32", (n,), rng), small_values("float32", (n,), rng)
    check([x, y], [_exp_mul_add(x, y), se.sum(x * y), se.max(x - y)], [a, b])
    # strided and reversed views of the same data
    check([x, y], [_exp_mul_add(x, y), se.sum(x * y)], [a[::-1], np.repeat(b, 2)[::2]])


@pytest.mark.parametrize("static", [False, True], ids=["dynamic", "static"])
def test_respecialise_contiguous_then_strided(static):
    shape = (9, 21)
    rng = rng_for("respecialise", static)
    x = se.tensor("x", "float64", shape if static else (None, None))
    y = se.tensor("y", "float64", shape if static else (None, None))
    out = [_exp_mul_add(x, y), se.sum(x * y, axis=1)]
    f = compiled([x, y], out)
    base_a = small_values("float64", (2 * shape[0], 2 * shape[1]), rng)
    base_b = small_values("float64", (shape[1], shape[0]), rng)
    contiguous = [np.ascontiguousarray(base_a[::2, ::2]), np.ascontiguousarray(base_b.T)]
    strided = [base_a[::2, ::2], base_b.T]
    reversed_ = [base_a[::-2, ::-2], base_b.T[::-1]]
    for values in (contiguous, strided, contiguous, reversed_, strided):
        check([x, y], out, values, f=f)


def test_duplicate_and_aliasing_arguments():
    """The same array passed for two arguments, and overlapping views of one buffer."""
    x = se.tensor("x", "float32", (None, None))
    y = se.tensor("y", "float32", (None, None))
    out = [x * y - x, se.sum(x + y, axis=0)]
    rng = rng_for("alias")
    a = small_values("float32", (8, 33), rng)
    check([x, y], out, [a, a])
    check([x, y], out, [a[:, 1:], a[:, :-1]])
    check([x, y], out, [a[:, ::-1], a])


def test_unaligned_odd_stride_and_byteswapped_inputs():
    x = se.tensor("x", "float64", (None,))
    y = se.tensor("y", "float64", (None,))
    out = [x * y + 1, se.sum(x * 2), se.maximum(x, y)]
    raw = np.zeros(8 * 200 + 8, np.uint8)
    unaligned = raw[1 : 1 + 8 * 200].view(np.float64)
    unaligned[:] = np.linspace(0.5, 1.5, 200)  # no cancellation: the sum is checked to a relative tolerance
    assert not unaligned.flags.aligned
    records = np.zeros(200, dtype=[("a", np.float64), ("b", np.int32)])
    records["a"] = np.linspace(0, 5, 200)
    field = records["a"]  # a 12-byte stride: not a multiple of the itemsize
    swapped = np.linspace(0, 1, 200).astype(">f8")
    f = compiled([x, y], out)
    for a, b in [(unaligned, unaligned), (field, unaligned), (swapped, field), (unaligned[::-3], field[::3])]:
        check([x, y], out, [a, b], f=f)


@pytest.mark.parametrize("other", [(1, 17), (7, 1), (1, 1), (17,), (1,), ()], ids=str)
def test_runtime_size_one_broadcasting(other):
    """Dims that are 1 only at run time broadcast (a dynamic-shape input may be 1 along any dim)."""
    rng = rng_for("bcast", other)
    x = se.tensor("x", "float32", (None, None))
    y = se.tensor("y", "float32", (None,) * len(other))
    out = [x * y + y, se.sum(x - y, axis=0), se.maximum(x, y)]
    a = small_values("float32", (7, 17), rng)
    b = small_values("float32", other, rng)
    f = check([x, y], out, [a, b])
    check([x, y], out, [a[::-1], b.copy()], f=f)


# -- 3. integer and bool semantics ------------------------------------------------------


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_int_floor_div_and_mod_edges(dtype):
    x = se.tensor("x", dtype, (None,))
    y = se.tensor("y", dtype, (None,))
    a, b = all_pairs(int_edges(dtype), int_edges(dtype))
    f = check([x, y], [se.floor_div(x, y), se.mod(x, y), x // y, x % y], [a, b])
    with quiet():
        q, r, _, _ = f(a, b)
        want_q, want_r = np.floor_divide(a, b), np.remainder(a, b)
    np.testing.assert_array_equal(q, want_q)
    np.testing.assert_array_equal(r, want_r)
    assert (q[b == 0] == 0).all() and (r[b == 0] == 0).all()


@pytest.mark.parametrize("dtype", SIGNED)
def test_int_min_floor_div_minus_one(dtype):
    info = np.iinfo(dtype)
    x = se.tensor("x", dtype, (None,))
    y = se.tensor("y", dtype, (None,))
    a = np.full(37, info.min, dtype=dtype)
    b = np.full(37, -1, dtype=dtype)
    f = check([x, y], [x // y, x % y], [a, b])
    q, r = f(a, b)
    assert (q == info.min).all()
    assert (r == 0).all()
    # as a scalar divisor, folded into the kernel as a constant
    g = check([x], [x // -1, x % -1, x // 0, x % 0], [a])
    q, r, q0, r0 = g(a)
    assert (q == info.min).all() and (r == 0).all() and (q0 == 0).all() and (r0 == 0).all()


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_int_floor_div_mod_random_signs(dtype):
    rng = rng_for("divmod", dtype)
    info = np.iinfo(dtype)
    lo = max(int(info.min), -1000)
    a = rng.integers(lo, min(int(info.max), 1000), size=513, endpoint=True).astype(dtype)
    b = rng.integers(lo // 50, 21, size=513, endpoint=True).astype(dtype)  # includes zeros
    x = se.tensor("x", dtype, (None,))
    y = se.tensor("y", dtype, (None,))
    check([x, y], [x // y, x % y, (x // y) * y + x % y], [a, b])
    # mixed dtypes promote like NumPy (int8 // uint8 -> int16, ...)
    other = "uint8" if dtype in SIGNED else "int8"
    z = se.tensor("z", other, (None,))
    c = rng.integers(0, 9, size=513).astype(other)
    check([x, z], [x // z, x % z, z // x, z % x], [a, c])


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_int_wraparound(dtype):
    rng = rng_for("wrap", dtype)
    edges = int_edges(dtype)
    a, b = all_pairs(edges, edges)
    a = np.concatenate([a, full_range(dtype, 300, rng)])
    b = np.concatenate([b, full_range(dtype, 300, rng)])
    x = se.tensor("x", dtype, (None,))
    y = se.tensor("y", dtype, (None,))
    outs = [x + y, x - y, x * y, -x, se.neg(y), se.abs(x), x * x * x + y, se.sign(x), se.maximum(x, y), se.minimum(x, y)]
    f = check([x, y], outs, [a, b])
    if dtype in SIGNED:
        info = np.iinfo(dtype)
        mins = np.full(19, info.min, dtype=dtype)
        got = f(mins, mins)
        assert (got[5] == info.min).all(), "abs(INT_MIN) wraps to INT_MIN in NumPy"
        assert (got[3] == info.min).all(), "-INT_MIN wraps to INT_MIN in NumPy"


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_int_bitwise(dtype):
    rng = rng_for("bitwise", dtype)
    a, b = full_range(dtype, 200, rng), full_range(dtype, 200, rng)
    x = se.tensor("x", dtype, (None,))
    y = se.tensor("y", dtype, (None,))
    check([x, y], [se.bitwise_and(x, y), se.bitwise_or(x, y), se.bitwise_xor(x, y), se.invert(x)], [a, b])


def test_bool_arithmetic():
    a, b = all_pairs(np.array([False, True]), np.array([False, True]))
    a, b = np.tile(a, 9), np.tile(b, 9)  # 36 elements: a vector loop and a tail
    x = se.tensor("x", "bool", (None,))
    y = se.tensor("y", "bool", (None,))
    outs = [
        x + y, x * y, se.maximum(x, y), se.minimum(x, y), se.bitwise_and(x, y), se.bitwise_or(x, y),
        se.bitwise_xor(x, y), se.invert(x), x < y, x == y, se.where(x, y, x), se.abs(x),
        se.sum(x), se.sum(x * y), se.prod(x), se.max(x), se.min(x), se.mean(x), x + 1, x * 2.5, se.cast(x, "int8") - y,
    ]
    f = check([x, y], outs, [a, b])
    got = f(a, b)
    np.testing.assert_array_equal(got[0], a | b)
    np.testing.assert_array_equal(got[1], a & b)


MIXED_SIGN_PAIRS = [("int8", "uint8"), ("int16", "uint16"), ("int32", "uint32"), ("int64", "uint64"), ("int64", "uint32"), ("int8", "uint64"), ("uint16", "int32")]


@pytest.mark.parametrize("left,right", MIXED_SIGN_PAIRS)
def test_mixed_sign_comparisons(left, right):
    a, b = all_pairs(int_edges(left), int_edges(right))
    x = se.tensor("x", left, (None,))
    y = se.tensor("y", right, (None,))
    outs = [x < y, x <= y, x > y, x >= y, se.equal(x, y), se.not_equal(x, y), se.where(x < y, 1, 0)]
    f = check([x, y], outs, [a, b])
    with quiet():
        got = f(a, b)
    np.testing.assert_array_equal(got[0], np.less(a, b))
    # arithmetic on the same pairs promotes like NumPy (int64 with uint64 gives float64)
    check([x, y], [x + y, se.maximum(x, y), x * y], [a, b])


@pytest.mark.parametrize("src", FLOAT_DTYPES)
@pytest.mark.parametrize("dst", INT_DTYPES)
def test_cast_float_to_int_in_range(src, dst):
    info = np.iinfo(dst)
    fmax = float(np.finfo(src).max)
    hi = min(float(info.max), fmax) * 0.999
    lo = max(float(info.min), -fmax) * 0.999
    rng = rng_for("f2i", src, dst)
    special = [0.0, -0.0, 0.5, 0.999, 1.0, 1.5, 2.5, 2.999, 7.75, 100.9]
    if info.min < 0:
        special += [-0.5, -0.999, -1.0, -1.5, -2.5, -2.999, -7.75, -100.9]
    special = [v for v in special if lo <= v <= hi]
    if dst == "uint64" and src == "float64":
        special += [2.0**63, 1.5 * 2.0**63, 2.0**64 - 4096.0]  # the unsigned-only range
    if dst == "int64" and src == "float64":
        special += [-(2.0**63), 2.0**63 - 1024.0]
    values = np.concatenate([np.array(special), rng.uniform(lo, hi, 200)]).astype(src)
    values = values[(values.astype(np.float64) >= lo) & (values.astype(np.float64) <= hi) | np.isin(values, special)]
    x = se.tensor("x", src, (None,))
    f = check([x], se.cast(x, dst), [values])
    with quiet():
        np.testing.assert_array_equal(f(values), values.astype(dst))


@pytest.mark.parametrize("src", INT_DTYPES)
def test_cast_int_to_float16(src):
    info = np.iinfo(src)
    candidates = [0, 1, -1, 7, 2047, 2048, 2049, 2050, 2051, 4097, 4099, 32767, 65504, 65505, 65519, 65520, 65535,
                  70000, -2049, -65519, -65520, int(info.max), int(info.min), int(info.max) - 1]
    vals = np.array([v for v in candidates if info.min <= v <= info.max], dtype=src)
    vals = np.concatenate([vals, full_range(src, 100, rng_for("i2h", src))])
    x = se.tensor("x", src, (None,))
    f = check([x], [se.cast(x, "float16"), se.cast(x, "float32"), se.cast(x, "float64")], [vals], exact=True)
    with quiet():
        np.testing.assert_array_equal(f(vals)[0], vals.astype("float16"))


def _double_rounding_values():
    """float64 values whose float16 rounding differs when done through float32."""
    ulp_half = 2.0**-11
    vals = [
        1 + ulp_half + 2.0**-40,  # just above a tie: rounds up; via float32 it becomes the tie and rounds to even (down)
        1 + 3 * ulp_half - 2.0**-40,  # just below a tie: rounds down; via float32 the tie rounds up to even
        -(1 + ulp_half + 2.0**-40),
        2.0**-25 + 2.0**-50,  # half the smallest subnormal, a bit more: rounds to it
        2.0**-25,  # exactly half: ties to even, 0
        3 * 2.0**-25,
        65504.0, 65519.0, 65519.99999, 65520.0, 1e5, -1e5, 1e-9, -1e-9, 6.1e-5, 5.96e-8,
        0.1, 1 / 3, -0.0, 0.0, np.inf, -np.inf, np.nan,
    ]
    return np.array(vals, dtype=np.float64)


@pytest.mark.parametrize("src", ["float32", "float64"])
def test_cast_float_to_float16_rounding(src):
    rng = rng_for("f2h", src)
    vals = np.concatenate([
        _double_rounding_values(),
        rng.standard_normal(200) * np.exp(rng.uniform(-20, 12, 200)),
    ]).astype(src)
    x = se.tensor("x", src, (None,))
    f = check([x], se.cast(x, "float16"), [vals], exact=True)
    with quiet():
        got = f(vals)
    np.testing.assert_array_equal(got.view(np.uint16), vals.astype("float16").view(np.uint16))


def test_cast_float64_to_float32_and_back():
    vals = np.concatenate([_double_rounding_values(), [1e39, -1e39, 1e-46, 3.4028235e38]])
    x = se.tensor("x", "float64", (None,))
    check([x], [se.cast(x, "float32"), se.cast(se.cast(x, "float32"), "float64")], [vals], exact=True)


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_cast_to_and_from_bool(dtype):
    if np.dtype(dtype).kind == "f":
        vals = np.array([0.0, -0.0, 1.0, -1.0, 0.5, 1e-30 if dtype != "float16" else 1e-7, np.nan, np.inf, -np.inf] * 3, dtype=dtype)
    elif dtype == "bool":
        vals = np.array([True, False] * 10)
    else:
        vals = np.concatenate([int_edges(dtype)] * 3)
    x = se.tensor("x", dtype, (None,))
    b = se.tensor("b", "bool", (None,))
    flags = np.array([True, False, False, True, True] * 7)
    check([x], [se.cast(x, "bool"), se.where(x, 1, 2)], [vals], exact=True)
    check([b], [se.cast(b, dtype), se.cast(b, dtype) + se.cast(b, dtype)], [flags], exact=True)


# -- 4. float semantics --------------------------------------------------------------------

SPECIALS = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1.0, -1.5, 3.0])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_nan_inf_through_max_min_clip_where(dtype):
    """NaN and +-inf in every operand position; values bit for bit (zero signs: next test)."""
    a, b = all_pairs(SPECIALS, SPECIALS)
    a, b = a.astype(dtype), b.astype(dtype)
    c = np.roll(a, 5)
    x = se.tensor("x", dtype, (None,))
    y = se.tensor("y", dtype, (None,))
    z = se.tensor("z", dtype, (None,))
    outs = [
        se.maximum(x, y), se.minimum(x, y), se.clip(x, y, z), se.clip(x, -1.0, 2.0), se.clip(x, None, 0.0),
        se.where(x > y, x, y), se.where(se.isnan(x), y, x), se.relu(x), se.maximum(x, 0.0), se.minimum(0.0, x),
        se.where(x < y, x, 0.0), se.abs(x), se.sign(x),
    ]
    check([x, y, z], outs, [a, b, c], exact=True, zero_sign=False)
    # where/abs/sign do not depend on how ties are broken: their zeros keep their sign too
    check([x, y, z], outs[5:7] + outs[10:], [a, b, c], exact=True)


def _zero_sign_case(dtype):
    zeros = np.array([-0.0, 0.0], dtype=dtype)
    a, b = all_pairs(zeros, zeros)
    a, b = np.tile(a, 10), np.tile(b, 10)  # 40 elements: vector body and tail
    x = se.tensor("x", dtype, (None,))
    y = se.tensor("y", dtype, (None,))
    outs = [se.maximum(x, y), se.minimum(x, y), se.maximum(x, 0.0), se.minimum(x, -0.0), se.relu(x),
            se.clip(x, y, 1.0), se.clip(x, -1.0, y)]
    return [x, y], outs, [a, b]


@pytest.mark.parametrize(
    "dtype",
    [
        "float16",
        "float32",
        "float64",
    ],
)
def test_sign_of_zero_in_max_min(dtype):
    inputs, outs, values = _zero_sign_case(dtype)
    f = check(inputs, outs, values, exact=True)
    # and directly against NumPy's own ufuncs
    a, b = values
    got = f(a, b)
    assert np.array_equal(np.signbit(got[0]), np.signbit(np.maximum(a, b)))
    assert np.array_equal(np.signbit(got[1]), np.signbit(np.minimum(a, b)))


FLOORDIV_VALUES = np.array([5.0, -5.0, 0.0, -0.0, 1.0, 0.1, 3.0, -3.0, 7.5, -2.5, 1e300, 1e-300, np.inf, -np.inf, np.nan])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_float_floor_div_and_mod(dtype):
    with quiet():
        vals = FLOORDIV_VALUES.astype(dtype)
    a, b = all_pairs(vals, vals)
    x = se.tensor("x", dtype, (None,))
    y = se.tensor("y", dtype, (None,))
    f = check([x, y], [x // y, x % y, se.floor_div(x, 0.1), se.mod(x, -3.0)], [a, b], exact=True)
    with quiet():
        got = f(a, b)
        want = [np.floor_divide(a, b), np.remainder(a, b)]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    # 1.0 // 0.1 is 9 in NumPy (floor((1 - fmod(1, 0.1)) / 0.1)), not floor(1 / 0.1) = 10
    one = np.array([1.0], dtype=dtype)
    tenth = np.array([0.1], dtype=dtype)
    with quiet():
        assert f(one, tenth)[0][0] == np.floor_divide(one, tenth)[0]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_round_half_to_even(dtype):
    vals = np.array(
        [0.5, 1.5, 2.5, 3.5, 4.5, -0.5, -1.5, -2.5, -3.5, 0.49999997, 0.5000001, 1.0, -0.0, 0.0, 0.25, -0.25, 1e20, -1e20,
         1023.5, 2047.5, np.nan, np.inf, -np.inf] * 2
    )
    with quiet():
        vals = vals.astype(dtype)
    x = se.tensor("x", dtype, (None,))
    f = check([x], [se.round(x), se.floor(x), se.ceil(x)], [vals], exact=True)
    with quiet():
        np.testing.assert_array_equal(f(vals)[0], np.round(vals))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_float_division_and_special_unaries(dtype):
    with quiet():
        a, b = all_pairs(SPECIALS.astype(dtype), SPECIALS.astype(dtype))
    x = se.tensor("x", dtype, (None,))
    y = se.tensor("y", dtype, (None,))
    outs = [x / y, x * y, x - y, x + y, se.isnan(x / y), se.isinf(x * y), se.isfinite(x + y), se.sqrt(x), x < y,
            se.not_equal(x, y), se.equal(x, y)]
    check([x, y], outs, [a, b], exact=True)


# -- 5. reductions ------------------------------------------------------------------------

AXES = [None, 0, 1, 2, (0, 1), (0, 2), (1, 2), (0, 1, 2), ()]
KINDS = ["sum", "prod", "max", "min", "mean", "var"]


@pytest.mark.parametrize("keepdims", [False, True], ids=["flat", "keepdims"])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("kind", KINDS)
def test_reductions_every_axis(kind, axis, keepdims):
    rng = rng_for("reduce", kind, axis, keepdims)
    a = rng.standard_normal((3, 4, 5))
    x = se.tensor("x", "float64", (None, None, None))
    out = getattr(se, kind)(x, axis=axis, keepdims=keepdims)
    check([x], out, [a])
    check([x], out, [np.asfortranarray(a)])
    check([x], out, [rng.standard_normal((5, 4, 3)).transpose(2, 1, 0)[::-1]])


@pytest.mark.parametrize("dtype", ["float32", "float16", "int32", "uint8", "int64"])
@pytest.mark.parametrize("axis", [None, 0, 2, (0, 2), (1, 2)], ids=str)
def test_reductions_other_dtypes(dtype, axis):
    rng = rng_for("reduce-dtype", dtype, axis)
    a = small_values(dtype, (6, 5, 19), rng)
    x = se.tensor("x", dtype, (None, None, None))
    outs = [se.sum(x, axis=axis), se.max(x, axis=axis), se.min(x, axis=axis), se.mean(x, axis=axis)]
    if dtype != "float16":
        outs.append(se.prod(x[:, :2, :3], axis=axis))
    if np.dtype(dtype).kind == "f":
        outs.append(se.var(x, axis=axis))
    check([x], outs, [a])


@pytest.mark.parametrize("dtype", ["float64", "float32", "int32"])
def test_reductions_over_empty_axes(dtype):
    x = se.tensor("x", dtype, (None, None, None))
    a = np.zeros((0, 3, 4), dtype=dtype)
    outs = [
        se.sum(x, axis=0), se.sum(x), se.prod(x, axis=0), se.mean(x, axis=0), se.mean(x),
        se.max(x, axis=1), se.min(x, axis=(1, 2)), se.sum(x, axis=1, keepdims=True), se.max(x, axis=()),
    ]
    if dtype != "int32":
        outs.append(se.var(x, axis=0))
    f = check([x], outs, [a])
    got = f(a)
    assert (got[0] == 0).all() and got[0].shape == (3, 4)
    assert got[1] == 0
    assert (got[2] == 1).all()
    assert np.isnan(got[3]).all() and np.isnan(got[4])


@pytest.mark.parametrize("kind", ["max", "min"])
@pytest.mark.parametrize("axis", [0, None, (0, 2)], ids=str)
def test_max_of_empty_raises_at_call_time(kind, axis):
    x = se.tensor("x", "float32", (None, None, None))
    out = getattr(se, kind)(x, axis=axis)
    ref = se.function([x], out, backend="numpy", passes="none")
    f = compiled([x], out)  # compiling is fine: the shape is only known at call time
    a = np.zeros((0, 3, 4), dtype="float32")
    with pytest.raises(ValueError):
        ref(a)
    with pytest.raises(ValueError):
        f(a)
    with pytest.raises(ValueError):
        getattr(np, kind)(a, axis=axis)
    # and the same Function still works afterwards
    b = np.ones((2, 3, 4), dtype="float32")
    check([x], out, [b], f=f)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_nan_propagates_through_max_min(dtype):
    rng = rng_for("nanmax", dtype)
    a = small_values(dtype, (6, 37), rng)
    a[0, 0] = np.nan
    a[1, 36] = np.nan
    a[2, 17] = np.nan
    a[2, 3] = np.inf
    a[3, :] = -np.inf
    a[4, 5] = np.inf
    a[4, 30] = np.nan
    a[5, 16] = -np.inf
    x = se.tensor("x", dtype, (None, None))
    outs = []
    for kind in ("max", "min"):
        fn = getattr(se, kind)
        outs += [fn(x, axis=1), fn(x, axis=0), fn(x), fn(x, axis=1, keepdims=True)]
    check([x], outs, [a], exact=True)
    check([x], outs, [a.T.copy().T], exact=True)


def test_small_int_and_bool_sums_promote():
    rng = rng_for("promote")
    x8 = se.tensor("x", "int8", (None, None))
    a = full_range("int8", (300, 3), rng)
    s = se.sum(x8)
    assert s.dtype == "int64"
    f = check([x8], [s, se.sum(x8, axis=0), se.prod(x8[:4], axis=0), se.mean(x8, axis=0)], [a])
    assert f(a)[0] == int(a.astype(np.int64).sum())
    u8 = se.tensor("u", "uint8", (None,))
    check([u8], [se.sum(u8), se.sum(u8 * u8)], [full_range("uint8", 1000, rng)])
    b = se.tensor("b", "bool", (None, None))
    flags = rng.random((40, 7)) < 0.3
    g = check([b], [se.sum(b), se.sum(b, axis=0), se.sum(b, axis=1, keepdims=True), se.mean(b)], [flags])
    assert g(flags)[0].dtype == np.int64 and g(flags)[0] == flags.sum()


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_int_reductions_wrap_like_numpy(dtype):
    rng = rng_for("int-reduce", dtype)
    x = se.tensor("x", dtype, (None, None))
    outs = []
    for axis in (0, 1, None):
        outs += [se.sum(x, axis=axis), se.prod(x, axis=axis), se.max(x, axis=axis), se.min(x, axis=axis),
                 se.mean(x, axis=axis), se.var(x, axis=axis)]
    check([x], outs, [full_range(dtype, (100, 7), rng)])


@pytest.mark.parametrize("ddof", [0, 1, 3, 7])
def test_var_ddof(ddof):
    rng = rng_for("ddof", ddof)
    x = se.tensor("x", "float64", (None, None))
    check([x], [se.var(x, axis=1, ddof=ddof), se.var(x, axis=0, ddof=ddof), se.var(x, ddof=ddof)],
          [rng.standard_normal((4, 3))])


# -- 6. nn ops ----------------------------------------------------------------------------


def _special_rows(dtype, rng, shape=(6, 19)):
    """Rows with one -inf, all -inf, one +inf, one NaN, and a large spread."""
    a = rng.standard_normal(shape).astype(dtype)
    a[1, 3] = -np.inf
    a[2, :] = -np.inf
    a[3, 7] = np.inf
    a[4, 11] = np.nan
    a[5] *= 30  # large spread: a stable softmax must not overflow
    return a


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("axis", [-1, 0, (0, 1)], ids=str)
def test_softmax_family(dtype, axis):
    rng = rng_for("softmax", dtype, axis)
    x = se.tensor("x", dtype, (None, None))
    outs = [
        se.softmax(x, axis=axis), se.log_softmax(x, axis=axis), se.logsumexp(x, axis=axis),
        se.logsumexp(x, axis=axis, keepdims=True),
    ]
    normal = rng.standard_normal((6, 19)).astype(dtype)
    check([x], outs, [normal])
    check([x], outs, [_special_rows(dtype, rng)])
    check([x], outs, [np.ascontiguousarray(_special_rows(dtype, rng).T).T])  # Fortran layout
    check([x], outs, [np.ascontiguousarray(_special_rows(dtype, rng)[:, :1])])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_softmax_family_3d_tuple_axis(dtype):
    rng = rng_for("softmax3d", dtype)
    x = se.tensor("x", dtype, (None, None, None))
    outs = [se.softmax(x, axis=(0, 2)), se.log_softmax(x, axis=(0, 2)), se.logsumexp(x, axis=(0, 2)), se.logsumexp(x)]
    a = rng.standard_normal((3, 4, 21)).astype(dtype)
    a[1, 2, 5] = np.nan
    a[:, 3, :] = -np.inf
    a[0, 1, 0] = np.inf
    check([x], outs, [a])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("params", ["none", "weight", "weight_bias", "bias"])
def test_layer_norm(dtype, params):
    rng = rng_for("layer_norm", dtype, params)
    x = se.tensor("x", dtype, (None, None))
    w = se.tensor("w", dtype, (None,))
    b = se.tensor("b", dtype, (None,))
    weight = w if "weight" in params else None
    bias = b if "bias" in params else None
    out = se.layer_norm(x, weight, bias)
    inputs = [x] + ([w] if weight is not None else []) + ([b] if bias is not None else [])
    for a in (rng.standard_normal((6, 19)).astype(dtype), _special_rows(dtype, rng),
              np.ascontiguousarray(_special_rows(dtype, rng).T).T):
        values = [a] + [rng.standard_normal(a.shape[-1]).astype(dtype) for _ in inputs[1:]]
        check(inputs, out, values)
    # constant rows: the variance is 0, only eps keeps it finite
    const = np.full((4, 33), 2.5, dtype=dtype)
    check(inputs, out, [const] + [np.ones(33, dtype=dtype) for _ in inputs[1:]])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("with_weight", [False, True], ids=["plain", "weight"])
def test_rms_norm(dtype, with_weight):
    rng = rng_for("rms_norm", dtype, with_weight)
    x = se.tensor("x", dtype, (None, None, None))
    w = se.tensor("w", dtype, (None,))
    out = se.rms_norm(x, w if with_weight else None)
    inputs = [x, w] if with_weight else [x]
    a = rng.standard_normal((2, 6, 19)).astype(dtype)
    a[0] = _special_rows(dtype, rng)
    values = [a] + ([rng.standard_normal(19).astype(dtype)] if with_weight else [])
    check(inputs, out, values)
    values[0] = np.zeros((2, 3, 19), dtype=dtype)  # all-zero rows
    check(inputs, out, values)


def test_norms_mixed_parameter_dtypes():
    rng = rng_for("norm-mixed")
    x = se.tensor("x", "float16", (None, None))
    w = se.tensor("w", "float32", (None,))
    b = se.tensor("b", "float64", (None,))
    check([x, w, b], [se.layer_norm(x, w, b), se.rms_norm(x, w)],
          [rng.standard_normal((5, 24)).astype("float16"), rng.standard_normal(24).astype("float32"), rng.standard_normal(24)])


# -- 7. matmul ------------------------------------------------------------------------------

MATMUL_SHAPES = [
    ((3, 4), (4, 5)),
    ((1, 1), (1, 1)),
    ((17, 33), (33, 9)),
    ((4,), (4, 5)),
    ((3, 4), (4,)),
    ((4,), (4,)),
    ((2, 1, 3, 4), (5, 4, 6)),
    ((4,), (2, 4, 5)),
    ((2, 3, 4), (4,)),
    ((3, 0), (0, 4)),
    ((0, 4), (4, 5)),
    ((3, 4), (4, 0)),
    ((2, 0, 4), (4, 3)),
    ((0,), (0,)),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES, ids=str)
def test_matmul_shapes(dtype, sa, sb):
    rng = rng_for("matmul", dtype, sa, sb)
    a = rng.standard_normal(sa).astype(dtype)
    b = rng.standard_normal(sb).astype(dtype)
    x, y = symbolic("a", a), symbolic("b", b)
    check([x, y], se.matmul(x, y), [a, b])
    check([x, y], x @ y, [a, b])
    # statically known shapes compile at function() time
    xs, ys = symbolic("a", a, static=True), symbolic("b", b, static=True)
    check([xs, ys], se.matmul(xs, ys) * 2 + 1, [a, b])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matmul_transposed_and_strided_operands(dtype):
    rng = rng_for("matmul-t", dtype)
    x = se.tensor("x", dtype, (None, None))
    y = se.tensor("y", dtype, (None, None))
    f = compiled([x, y], se.matmul(x, y))
    at = rng.standard_normal((7, 5)).astype(dtype)  # a = at.T is (5, 7)
    bt = rng.standard_normal((3, 7)).astype(dtype)  # b = bt.T is (7, 3)
    a, b = np.ascontiguousarray(at.T), np.ascontiguousarray(bt.T)
    for xa, yb in [(a, b), (at.T, b), (a, bt.T), (at.T, bt.T), (a[::-1], b), (a[:, ::-1], b),
                   (rng.standard_normal((5, 14)).astype(dtype)[:, ::2], b[::-1]),
                   (np.broadcast_to(a[:1], a.shape), b), (np.asfortranarray(a), np.asfortranarray(b))]:
        check([x, y], se.matmul(x, y), [xa, yb], f=f)
    # transposes inside the graph
    p = se.tensor("p", dtype, (None, None))
    q = se.tensor("q", dtype, (None, None))
    out = [se.matmul(se.transpose(p), q), se.matmul(p, se.transpose(q)), se.transpose(se.matmul(se.transpose(p), q))]
    pa = rng.standard_normal((6, 4)).astype(dtype)
    qa = rng.standard_normal((6, 4)).astype(dtype)
    check([p, q], out[:1] + out[2:], [pa, qa])
    check([p, q], out[1], [pa, rng.standard_normal((5, 4)).astype(dtype)])
    # batched transposes, with the product feeding fused elementwise work
    r = se.tensor("r", dtype, (None, None, None))
    s = se.tensor("s", dtype, (None, None, None))
    fused = se.maximum(se.matmul(se.transpose(r, (0, 2, 1)), s) + 1, 0)
    check([r, s], fused, [rng.standard_normal((3, 4, 5)).astype(dtype), rng.standard_normal((1, 4, 2)).astype(dtype)])


@pytest.mark.parametrize("dtype", ["int32", "int64", "int8", "uint16"])
def test_int_matmul(dtype):
    rng = rng_for("imatmul", dtype)
    a = small_values(dtype, (5, 7), rng)
    b = small_values(dtype, (7, 3), rng)
    x, y = symbolic("a", a), symbolic("b", b)
    out = [se.matmul(x, y), se.matmul(x, y) * 2 + 1, se.matmul(x[0], y)]
    f = check([x, y], out, [a, b])
    assert any(isinstance(s, HostStep) for s in f._compiled.plan.steps)
    check([x, y], out, [a.T.copy().T[::-1], b[:, ::-1]], f=f)
    big = full_range(dtype, (4, 9), rng)
    check([x, y], out, [big, full_range(dtype, (9, 2), rng)], f=f)  # wraps like NumPy


def test_matmul_mixed_dtypes():
    rng = rng_for("matmul-mixed")
    x = se.tensor("x", "float32", (None, None))
    y = se.tensor("y", "float64", (None, None))
    check([x, y], se.matmul(x, y), [rng.standard_normal((3, 4)).astype("float32"), rng.standard_normal((4, 2))])
    h = se.tensor("h", "float16", (None, None))
    check([h], se.matmul(h, h), [rng.standard_normal((3, 3)).astype("float16")])


def test_matmul_without_a_bundled_blas(monkeypatch):
    monkeypatch.setattr(runtime, "bind_blas", lambda: False)  # what runtime finds on such a NumPy
    rng = rng_for("no-blas")
    x = se.tensor("x", "float64", (None, None))
    y = se.tensor("y", "float64", (None, None))
    f = check([x, y], se.matmul(x, y) + 1, [rng.standard_normal((3, 4)), rng.standard_normal((4, 2))])
    assert not any(isinstance(s, GemmKernel) for s in f._compiled.plan.steps)


# -- 8. views inside the graph --------------------------------------------------------------


def test_reshape_contiguous_and_transposed():
    rng = rng_for("reshape")
    x = se.tensor("x", "float32", (None, None))
    outs = [
        se.reshape(x, (-1,)) * 2,
        se.reshape(se.transpose(x), (-1,)) + 1,  # needs a copy
        se.reshape(se.transpose(x), (3, -1)),
        se.sum(se.reshape(x[::-1], (2, -1)), axis=1),
    ]
    a = rng.standard_normal((6, 4)).astype("float32")
    f = check([x], outs, [a])
    check([x], outs, [rng.standard_normal((4, 6)).astype("float32").T], f=f)
    check([x], outs, [a[:, ::-1]], f=f)


_RESHAPE_COPY_SCRIPT = """
import numpy as np, symexpr as se
# static shapes: the plan is built inside function(); each is a transposed reshape that needs a copy
for n in (700, 2000, 5000):
    x = se.tensor("x", "float64", (n, n))
    f = se.function([x], se.reshape(se.transpose(x), (-1,)), backend="llvm")
a = np.arange(700 * 700, dtype=np.float64).reshape(700, 700)
x = se.tensor("x", "float64", (700, 700))
f = se.function([x], se.reshape(se.transpose(x), (-1,)) * 2, backend="llvm")
assert np.array_equal(f(a), a.T.reshape(-1) * 2)
print("ok")
"""


def test_reshape_needing_a_copy_of_a_large_array():
    """Run in a child process: the failure mode is a segmentation fault."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(se.__file__)))
    env = dict(os.environ, SYMEXPR_CACHE="0", PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", _RESHAPE_COPY_SCRIPT], env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0 and "ok" in proc.stdout, f"exit status {proc.returncode}\n{proc.stderr[-2000:]}"


def test_slicing_negative_steps():
    rng = rng_for("slicing")
    x = se.tensor("x", "float64", (None, None, None))
    outs = [x[::-1, 1::2] * 2, x[1, ::-2, -1] + 1, x[..., ::-3], se.sum(x[::-1, :, 2:], axis=1), x[-1:, :, :1] - x[:1]]
    a = rng.standard_normal((4, 5, 7))
    check([x], outs, [a])
    check([x], outs, [a[::-1, :, ::-1]])
    check([x], outs, [np.asfortranarray(a)])


def test_expand_squeeze_broadcast_concatenate():
    rng = rng_for("views")
    x = se.tensor("x", "float32", (None, None))
    y = se.tensor("y", "float32", (None, None))
    v = se.tensor("v", "float32", (1, None))
    outs = [
        se.expand_dims(x, 0) + se.expand_dims(y, 1),
        se.squeeze(v, 0) * 2,
        se.broadcast_to(v, (3, 5)) - 1,
        se.concatenate([x, y * 2], axis=0),
        se.concatenate([x, x[::-1], y[:, ::-1]], axis=1),
        se.stack([x, y], axis=1),
        se.sum(se.concatenate([x, y], axis=1), axis=0),
    ]
    a = rng.standard_normal((3, 5)).astype("float32")
    b = rng.standard_normal((3, 5)).astype("float32")
    c = rng.standard_normal((1, 5)).astype("float32")
    check([x, y, v], outs, [a, b, c])
    check([x, y, v], outs, [a.T.copy().T[:, ::-1], b[::-1], c[:, ::-1]])


@pytest.mark.parametrize("dtype", ["float32", "int16", "bool"])
def test_concatenate_mixed_dtypes_and_empty_parts(dtype):
    rng = rng_for("concat", dtype)
    x = se.tensor("x", dtype, (None, None))
    y = se.tensor("y", "float64", (None, None))
    outs = [se.concatenate([x, y], axis=1), se.concatenate([x, x, x], axis=0)]
    a = small_values(dtype, (3, 4), rng)
    check([x, y], outs, [a, rng.standard_normal((3, 0))])
    check([x, y], outs, [a[:, ::-1], rng.standard_normal((3, 2))])
    check([x, y], outs, [small_values(dtype, (0, 4), rng), rng.standard_normal((0, 2))])


VIEW_OUTPUTS = {
    "identity": lambda x: x,
    "transpose": lambda x: se.transpose(x),
    "reversed": lambda x: x[::-1],
    "slice": lambda x: x[1:, ::2],
    "reshape": lambda x: se.reshape(x, (-1,)),
    "expand_dims": lambda x: se.expand_dims(x, 0),
    "row": lambda x: x[0],
}


@pytest.mark.parametrize("name", list(VIEW_OUTPUTS))
def test_output_view_of_input_is_fresh(name):
    rng = rng_for("fresh", name)
    x = se.tensor("x", "float64", (None, None))
    out = VIEW_OUTPUTS[name](x)
    a = rng.standard_normal((4, 6))
    for arr in (a, a[:, ::-1], a.T.copy().T):
        f = compiled([x], out)
        got = f(arr)
        assert_same(got, reference([x], out, arr))
        assert not np.shares_memory(got, arr)
        assert got.flags.writeable
        # static shapes take the compile-at-function()-time path
        xs = se.tensor("x", "float64", arr.shape)
        g = compiled([xs], VIEW_OUTPUTS[name](xs))
        got = g(arr)
        assert not np.shares_memory(got, arr)
        assert_same(got, reference([x], out, arr))


@pytest.mark.parametrize("make", ["computed", "input", "transpose"])
def test_same_variable_returned_twice(make):
    x = se.tensor("x", "float32", (None, None))
    y = {"computed": lambda: x * 2, "input": lambda: x, "transpose": lambda: se.transpose(x)}[make]()
    a = small_values("float32", (3, 4), rng_for("twice", make))
    f = compiled([x], [y, y])
    first, second = f(a)
    want = reference([x], [y, y], a)
    assert_same(first, want[0])
    assert_same(second, want[1])
    assert first is not second
    assert not np.shares_memory(first, second)
    assert not np.shares_memory(first, a) and not np.shares_memory(second, a)
    first[...] = 0
    assert_same(second, want[1])


# -- host steps inside a plan ---------------------------------------------------------------


def test_host_steps_between_native_kernels():
    rng = rng_for("host")
    w = se.tensor("w", "float32", (None, None))
    idx = se.tensor("idx", "int64", (None,))
    x = se.tensor("x", "float32", (None, None))
    outs = [
        se.take(se.exp(w) * 2, idx, axis=0) + 1,
        se.argmax(x * 2 - 1, axis=1) + 1,
        se.cast(se.argmin(x, axis=0), "float32") * se.sum(x, axis=0),
    ]
    f = check([w, idx, x], outs, [rng.standard_normal((10, 6)).astype("float32"), np.array([3, 0, 9, 3, 1]),
                                  rng.standard_normal((5, 33)).astype("float32")])
    steps = f._compiled.plan.steps
    assert any(isinstance(s, HostStep) for s in steps)
    assert any(isinstance(s, LoopKernel) for s in steps)


def _odd_graph(name):
    x = se.tensor("x", "float32", (None,))
    y = se.tensor("y", "int32", (None,))
    return {
        "constant_output": ([x], [se.constant(np.array([1.0, 2.0])) + 1, x * 2]),
        "unused_input": ([x, y], [x * 2]),
        "no_inputs": ([], [se.constant(np.float32(3.0)) * 2]),
        "constant_only": ([x], [se.constant(np.arange(3.0))]),
        "inputs_as_outputs": ([x, y], [x, y, x]),
        "reduction_broadcast_back": ([x], [se.sum(x) + x, x - se.mean(x)]),
        "stack": ([x], [se.stack([x, x * 2, x[::-1]], axis=1)]),
        "integer_index": ([x], [x[2] + x]),
        "where_on_reduction": ([x, y], [se.where(se.sum(x) > 3, x, 0.0), se.cast(se.max(y), "float32") + x]),
        "take_negative_indices": ([x, y], [se.take(x, y - 2) * 2]),
        "argmax_whole": ([x], [se.argmax(x), se.argmin(x * -1)]),
    }[name]


@pytest.mark.parametrize(
    "name",
    ["constant_output", "unused_input", "no_inputs", "constant_only", "inputs_as_outputs", "reduction_broadcast_back",
     "stack", "integer_index", "where_on_reduction", "take_negative_indices", "argmax_whole"],
)
def test_odd_graphs(name):
    inputs, outputs = _odd_graph(name)
    values = [np.arange(5, dtype="float32") if v.dtype == "float32" else np.arange(3, dtype="int32") for v in inputs]
    f = check(inputs, outputs, values)
    got = f(*values)
    for g in got:
        for v in values:
            assert not np.shares_memory(g, v)


# -- 9. threads -------------------------------------------------------------------------------




def _big_case(name):
    rng = rng_for("big", name)
    if name == "elementwise":
        x = se.tensor("x", "float32", (None,))
        y = se.tensor("y", "float32", (None,))
        out = se.where(x > 0, x * y + 1.5, se.maximum(-x, y) / 4)
        return [x, y], out, [rng.standard_normal(2_000_003).astype("float32"), rng.standard_normal(2_000_003).astype("float32")]
    if name == "exp_mul_add":
        x = se.tensor("x", "float32", (None,))
        y = se.tensor("y", "float32", (None,))
        return [x, y], _exp_mul_add(x, y), [rng.standard_normal(2_000_000).astype("float32"), rng.standard_normal(2_000_000).astype("float32")]
    if name == "softmax":
        x = se.tensor("x", "float32", (None, None))
        return [x], se.softmax(x, axis=-1), [rng.standard_normal((2048, 1024)).astype("float32") * 4]
    if name == "layer_norm":
        x = se.tensor("x", "float32", (None, None))
        w = se.tensor("w", "float32", (None,))
        b = se.tensor("b", "float32", (None,))
        return [x, w, b], se.layer_norm(x, w, b), [rng.standard_normal((2048, 1024)).astype("float32"),
                                                   rng.standard_normal(1024).astype("float32"), rng.standard_normal(1024).astype("float32")]
    if name == "sum_axis0":
        x = se.tensor("x", "float64", (None, None))
        return [x], [se.sum(x, axis=0), se.max(x, axis=1)], [small_values("float64", (2048, 1024), rng)]
    if name == "sum_all":
        x = se.tensor("x", "float64", (None,))
        return [x], [se.sum(x), se.mean(x * 2)], [small_values("float64", (2_000_000,), rng)]
    if name == "softmax_axis0":
        x = se.tensor("x", "float64", (None, None))
        return [x], [se.softmax(x, axis=0), se.logsumexp(x, axis=0)], [rng.standard_normal((2048, 1024))]
    if name == "transposed_input":
        x = se.tensor("x", "float32", (None, None))
        return [x], se.exp(x) + se.sum(x, axis=1, keepdims=True), [rng.standard_normal((1024, 2048)).astype("float32").T]
    raise AssertionError(name)


BIG_CASES = ["elementwise", "exp_mul_add", "softmax", "softmax_axis0", "layer_norm", "sum_axis0", "sum_all",
             "transposed_input"]


@pytest.mark.parametrize("name", BIG_CASES)
def test_threads_give_the_reference_results(name):
    inputs, out, values = _big_case(name)
    assert max(v.size for v in values) >= runtime.PARALLEL_THRESHOLD
    f = compiled(inputs, out)
    for n in (1, 2, 3):
        with num_threads(n):
            check(inputs, out, values, f=f)


def test_threads_with_dependent_kernels_in_one_segment():
    """Unfused (passes="none") kernels that read what an earlier kernel wrote in another thread's slice."""
    rng = rng_for("chain")
    x = se.tensor("x", "float64", (None, None))
    t = x * 2
    outs = [se.transpose(t) + 1, se.sum(t, axis=0), se.transpose(t)[::-1] * t, se.softmax(se.transpose(t) - 1, axis=0)]
    a = rng.standard_normal((1024, 1024))
    for passes in ("none", None):
        f = compiled([x], outs, passes)
        for n in (2, 3):
            with num_threads(n):
                for _ in range(3):
                    check([x], outs, [a], f=f)


def test_set_num_threads_validates_and_restores():
    previous = get_num_threads()
    with num_threads(2):
        assert get_num_threads() == 2
    assert get_num_threads() == previous
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError):
            set_num_threads(bad)
    assert get_num_threads() == previous


def _run_in_threads(work, n_threads=2, timeout=120):
    errors = []
    barrier = threading.Barrier(n_threads)

    def target(i):
        try:
            barrier.wait(timeout=timeout)
            work(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    hung = [t for t in threads if t.is_alive()]
    assert not hung, f"{len(hung)} thread(s) still running after {timeout} s: deadlock?"
    if errors:
        raise errors[0]


@pytest.mark.parametrize("threads", [1, 2])
def test_concurrent_calls_from_python_threads(threads):
    rng = rng_for("concurrent", threads)
    x = se.tensor("x", "float32", (None,))
    y = se.tensor("y", "float32", (None,))
    out = [x * y + 1.5, se.sum(x, keepdims=True)]
    f = compiled([x, y], out)
    inputs = [[small_values("float32", (1_000_003,), rng) for _ in range(2)] for _ in range(2)]
    expected = [reference([x, y], out, *v) for v in inputs]

    def work(i):
        for _ in range(12):
            got = f(*inputs[i])
            for g, e in zip(got, expected[i]):
                assert_same(g, e)

    with num_threads(threads):
        _run_in_threads(work)


def test_concurrent_first_calls_specialise_safely():
    """Two threads hitting a fresh Function with different geometries at once."""
    rng = rng_for("concurrent-specialise")
    x = se.tensor("x", "float64", (None, None))
    out = [se.softmax(x, axis=-1), se.sum(x * 2, axis=0)]
    f = compiled([x], out)
    arrays = [small_values("float64", (300, 301), rng), small_values("float64", (700, 150), rng)[::-1]]
    expected = [reference([x], out, a) for a in arrays]

    def work(i):
        for k in range(6):
            j = (i + k) % 2
            got = f(arrays[j])
            for g, e in zip(got, expected[j]):
                assert_same(g, e, "float64")

    with num_threads(2):
        _run_in_threads(work)


_INTERLEAVED_CALLS_SCRIPT = """
import concurrent.futures, os, sys, threading, time
import numpy as np, symexpr as se
from symexpr.backends.llvm import runtime, set_num_threads

n_threads = int(sys.argv[1])
set_num_threads(n_threads)  # each call runs on the caller plus n_threads - 1 pool workers
x = se.tensor("x", "float64", (None, None))
t = x * 2
outs = [se.transpose(t) + 1, se.sum(t, axis=0)]  # unfused: three kernels, spin barriers between them
f = se.function([x], outs, backend="llvm", passes="none")
a = np.ones((512, 512))
f(a)  # compile before the race
real = concurrent.futures.ThreadPoolExecutor(max_workers=n_threads - 1)


class SlowSubmit:
    # Widens the race: a pause after each call's first task is queued lets another
    # caller queue its tasks in between (what a GIL switch inside the submit loop does).
    _max_workers = n_threads - 1

    def submit(self, fn, arrays, tid, n):
        future = real.submit(fn, arrays, tid, n)
        if tid == 1:
            time.sleep(0.02)
        return future


runtime._executor = lambda workers: SlowSubmit()
done = []
expected = [np.asarray(e) for e in f(a)]


def caller():
    for _ in range(5):
        got = f(a)
        assert all(np.array_equal(g, e) for g, e in zip(got, expected))
        done.append(1)


threads = [threading.Thread(target=caller, daemon=True) for _ in range(4)]
for th in threads:
    th.start()
deadline = time.monotonic() + 60
for th in threads:
    th.join(timeout=max(0.0, deadline - time.monotonic()))
print("ok" if len(done) == 20 else "deadlock", flush=True)
os._exit(0 if len(done) == 20 else 1)  # a deadlocked pool would block interpreter exit
"""


@pytest.mark.parametrize(
    "n_threads",
    [
        2,
        3,
        4,
    ],
)
def test_concurrent_calls_with_interleaved_pool_tasks(n_threads):
    """Run in a child process: a deadlock leaves spinning threads behind."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(se.__file__)))
    env = dict(os.environ, SYMEXPR_CACHE="0", PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", _INTERLEAVED_CALLS_SCRIPT, str(n_threads)], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and "ok" in proc.stdout, f"{proc.stdout}\n{proc.stderr[-2000:]}"


# -- output and arena reuse ----------------------------------------------------------------------


def test_results_the_caller_keeps_are_never_reused():
    x = se.tensor("x", "float32", (None, None))
    f = compiled([x], [x * 2, se.exp(x) + 1])  # a temp-free kernel and one with two outputs
    a, b = np.ones((64, 64), "float32"), np.full((64, 64), 3.0, "float32")
    first = f(a)
    kept = [r.copy() for r in first]
    second = f(b)
    assert all(r1 is not r2 for r1, r2 in zip(first, second))
    for r, k in zip(first, kept):
        np.testing.assert_array_equal(r, k)
    view = second[0][:3]  # a view keeps its base alive
    saved = view.copy()
    third = f(a)
    np.testing.assert_array_equal(view, saved)
    assert third[0] is not second[0]


def test_a_dropped_result_is_reused_with_the_right_values():
    x = se.tensor("x", "float64", (None,))
    y = se.tensor("y", "float64", (None,))
    t = se.exp(x) * y
    f = compiled([x, y], [se.sum(t), t - 1, se.transpose(se.reshape(t, (4, -1)))], passes="none")  # temps in the arena
    rng = rng_for("reuse")
    addresses = set()
    for _ in range(4):
        a, b = rng.standard_normal(400), rng.standard_normal(400)
        got = f(a, b)
        addresses.add(got[1].ctypes.data)
        want = reference([x, y], [se.sum(t), t - 1, se.transpose(se.reshape(t, (4, -1)))], a, b)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
        del got
    assert len(addresses) == 1, "a dropped output should be reused"


def test_feeding_a_result_back_in_never_overwrites_it_while_it_is_read():
    x = se.tensor("x", "float32", (None,))
    f = compiled([x], x[::-1] * 2 + 1)  # reads the input backwards: any aliasing would show
    a = np.arange(1000, dtype="float32")
    want = a
    got = a
    for _ in range(5):
        want = want[::-1] * 2 + 1
        got = f(got)
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(f(f(a)), (a[::-1] * 2 + 1)[::-1] * 2 + 1)


# -- 10. inspection -------------------------------------------------------------------------------


def test_source_and_assembly():
    x = se.tensor("x", "float32", (1000,))
    y = se.tensor("y", "float32", (1000,))
    f = compiled([x, y], x * y + x)
    src = f.source
    assert "define" in src and "symexpr_seg0" in src
    asm = f.assembly()
    assert isinstance(asm, str) and asm
    from symexpr.backends.llvm import target

    if not (target.host_has("avx2") or target.host_has("avx512f")):
        pytest.skip("no 256/512-bit vector registers on this host")
    assert "zmm" in asm or "ymm" in asm, "the fused loop was not vectorised"
    plan = f._compiled.plan
    assert isinstance(plan.text(), str) and plan.text()
    assert [type(s) for s in plan.steps] == [LoopKernel]


def test_source_of_dynamic_shapes_is_there_at_function_time():
    """Unknown dims get a probe size and the module is compiled by function(); calls reuse it."""
    x = se.tensor("x", "float64", (None, None))
    f = compiled([x], se.sum(x * 2, axis=1))
    assert "symexpr_seg0" in f.source and "define" in f.source
    source = f.source
    a = np.ones((3, 4))
    check([x], se.sum(x * 2, axis=1), [a], f=f)
    assert f.source == source
    assert f._compiled.plan.steps
    assert f._compiled.compilations == 1


def test_a_graph_the_probe_cannot_shape_compiles_at_the_first_call():
    x = se.tensor("x", "float64", (None,))
    y = se.reshape(x, (-1, 5)) * 2  # the probe size 8 is not a multiple of 5
    f = compiled([x], y)
    with pytest.raises(RuntimeError, match="call it once first"):
        _ = f.source
    check([x], y, [np.arange(10.0)], f=f)
    assert f._compiled.compilations == 1


def test_matmul_plan_uses_gemm():
    x = se.tensor("x", "float64", (8, 8))
    f = compiled([x], se.matmul(x, x) + 1)
    assert any(isinstance(s, GemmKernel) for s in f._compiled.plan.steps) or any(
        isinstance(s, HostStep) for s in f._compiled.plan.steps
    )
    a = np.arange(64.0).reshape(8, 8)
    check([x], se.matmul(x, x) + 1, [a], f=f)


def test_numpy_backend_has_no_source():
    x = se.tensor("x", "float64", (None,))
    f = se.function([x], x + 1, backend="numpy")
    with pytest.raises(AttributeError):
        _ = f.source
    with pytest.raises(AttributeError):
        f.assembly()


# -- 11. errors -----------------------------------------------------------------------------------


def _both_raise(inputs, outputs, args, exc_type, must_contain=()):
    messages = []
    for backend in ("numpy", "llvm"):
        f = se.function(inputs, outputs, backend=backend)
        with pytest.raises(exc_type) as info:
            f(*args)
        text = str(info.value)
        for part in must_contain:
            assert part in text, f"{backend}: {text!r} does not mention {part!r}"
        messages.append(text)
    return messages


def test_wrong_arguments_name_the_argument():
    x = se.tensor("x", "float32", (None, 3))
    y = se.tensor("weights", "float32", (None,))
    out = x + y
    good_x, good_y = np.ones((2, 3), "float32"), np.ones(3, "float32")
    _both_raise([x, y], out, [good_x.astype("float64"), good_y], TypeError, ["'x'", "float32"])
    _both_raise([x, y], out, [good_x, good_y.astype("int32")], TypeError, ["'weights'"])
    _both_raise([x, y], out, [np.ones((2, 4), "float32"), good_y], ValueError, ["'x'"])
    _both_raise([x, y], out, [np.ones(3, "float32"), good_y], ValueError, ["'x'"])
    _both_raise([x, y], out, [good_x, np.ones((1, 3), "float32")], ValueError, ["'weights'"])
    _both_raise([x, y], out, [[[1.0, 2.0, 3.0]], good_y], TypeError, ["'x'"])
    _both_raise([x, y], out, [good_x], TypeError)
    # a static shape compiled at function() time checks the same way
    s = se.tensor("s", "float32", (2, 3))
    _both_raise([s], s * 2, [np.ones((3, 2), "float32")], ValueError, ["'s'"])
    _both_raise([s], s * 2, [np.ones((2, 3), "float64")], TypeError, ["'s'"])


def test_runtime_shape_mismatches_raise_value_error():
    x = se.tensor("x", "float32", (None, None))
    y = se.tensor("y", "float32", (None, None))
    w = se.tensor("w", "float32", (None,))
    a = np.ones((2, 3), "float32")
    _both_raise([x, y], se.concatenate([x, y], axis=0), [a, np.ones((2, 4), "float32")], ValueError)
    _both_raise([x, y], se.concatenate([x, y], axis=1), [a, np.ones((3, 3), "float32")], ValueError)
    _both_raise([x, w], se.layer_norm(x, w), [a, np.ones(4, "float32")], ValueError)
    _both_raise([x, w], se.layer_norm(x, None, w), [a, np.ones(2, "float32")], ValueError)
    _both_raise([x, w], se.rms_norm(x, w), [a, np.ones(5, "float32")], ValueError)
    _both_raise([x, y], x + y, [a, np.ones((4, 3), "float32")], ValueError)
    _both_raise([x, y], se.matmul(x, y), [a, np.ones((4, 2), "float32")], ValueError)
    _both_raise([x], se.reshape(x, (4, -1)), [a], ValueError)
    # the Function still works with good shapes after a failed call
    f = compiled([x, y], se.concatenate([x, y], axis=0))
    with pytest.raises(ValueError):
        f(a, np.ones((2, 4), "float32"))
    check([x, y], se.concatenate([x, y], axis=0), [a, np.ones((5, 3), "float32")], f=f)
