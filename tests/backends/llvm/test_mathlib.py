"""The inline math library of the llvm backend: accuracy, special values, vectorisation.

Each function is compiled into ``void f(T* noalias in0, T* noalias in1, T* noalias out, i64 n)``,
a plain scalar loop ``out[i] = f(in0[i] (, in1[i]))`` optimised at -O3 (the loop vectoriser
turns it into SIMD code) and called through ctypes. Errors are in ulp of the exact result
rounded to the working type (see docs/math-accuracy.md), against NumPy in float64 for float32
and NumPy in long double (or mpmath for erf) for float64.
"""

from __future__ import annotations

import ctypes
import functools
import math
import re

import llvmlite.binding as llvm

from symexpr.backends.llvm.target import optimise
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llvmlite import ir

from symexpr.backends.llvm.scalar_ops import emit_math
from symexpr.kernel.mathfns import MATH_FUNCTIONS, MAX_ULP, TRIG_ACCURATE_RANGE

llvm.initialize_native_target()
llvm.initialize_native_asmprinter()

DTYPES = ["float32", "float64"]
UNARY = sorted(MATH_FUNCTIONS - {"pow"})
LD = np.longdouble
HAVE_LONGDOUBLE = np.finfo(LD).nmant >= 63
needs_ld = pytest.mark.skipif(not HAVE_LONGDOUBLE, reason="no extended long double for a float64 reference")

_ENGINES = []  # keep the MCJIT engines (and so the compiled code) alive


def _ir_type(dtype):
    return ir.FloatType() if dtype == "float32" else ir.DoubleType()


def _loop_module(name, dtype):
    """``void f(T* in0, T* in1, T* out, i64 n)``: ``out[i] = name(in0[i] (, in1[i]))``."""
    ty = _ir_type(dtype)
    i64 = ir.IntType(64)
    module = ir.Module(name=f"{name}_{dtype}")
    module.triple = llvm.get_process_triple()
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [ty.as_pointer()] * 3 + [i64]), name="f")
    for arg in fn.args[:3]:
        arg.add_attribute("noalias")
    in0, in1, out, n = fn.args
    entry, loop, done = fn.append_basic_block("entry"), fn.append_basic_block("loop"), fn.append_basic_block("done")
    b = ir.IRBuilder(entry)
    b.cbranch(b.icmp_signed(">", n, ir.Constant(i64, 0)), loop, done)
    b.position_at_end(loop)
    i = b.phi(i64)
    i.add_incoming(ir.Constant(i64, 0), entry)
    align = 4 if dtype == "float32" else 8
    args = [b.load(b.gep(in0, [i]), align=align)]
    if name == "pow":
        args.append(b.load(b.gep(in1, [i]), align=align))
    b.store(emit_math(b, name, args), b.gep(out, [i]), align=align)
    nxt = b.add(i, ir.Constant(i64, 1))
    i.add_incoming(nxt, loop)
    b.cbranch(b.icmp_signed("<", nxt, n), loop, done)
    b.position_at_end(done)
    b.ret_void()
    return module


def _target_machine():
    target = llvm.Target.from_default_triple()
    return target.create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=3
    )


@functools.cache
def _compiled(name, dtype):
    """(ctypes function, optimised IR, assembly) of the loop kernel for ``name``."""
    mod = llvm.parse_assembly(str(_loop_module(name, dtype)))
    mod.verify()
    tm = _target_machine()
    optimise(mod, tm)
    optimised = str(mod)
    asm = tm.emit_assembly(mod)
    engine = llvm.create_mcjit_compiler(mod, tm)
    engine.finalize_object()
    _ENGINES.append(engine)
    proto = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
    return proto(engine.get_function_address("f")), optimised, asm


def compute(name, x, y=None):
    """``name`` applied elementwise by the compiled kernel (x's dtype)."""
    x = np.ascontiguousarray(x)
    y = x if y is None else np.ascontiguousarray(y, dtype=x.dtype)
    out = np.empty_like(x)
    _compiled(name, x.dtype.name)[0](x.ctypes.data, y.ctypes.data, out.ctypes.data, x.size)
    return out


# ---- references and ulp ----------------------------------------------------------------


def _erf_mpmath(x):
    mp = pytest.importorskip("mpmath")
    with mp.workprec(80):
        text = [mp.nstr(mp.erf(mp.mpf(float(v))), 25) if np.isfinite(v) else str(np.tanh(v)) for v in x]
    return np.array(text).astype(LD)


def reference(name, x, y=None):
    """The exact result in higher precision: float64 for float32 inputs, long double for float64."""
    hp = np.float64 if x.dtype == np.float32 else LD
    xh = x.astype(hp)
    with np.errstate(all="ignore"):
        if name == "erf":
            if hp is np.float64:
                return np.vectorize(math.erf, otypes=[np.float64])(xh)
            return _erf_mpmath(x)
        if name == "sigmoid":
            e = np.exp(-np.abs(xh))
            return np.where(xh >= 0, 1 / (1 + e), e / (1 + e))
        if name == "pow":
            return np.power(xh, y.astype(hp))
        return getattr(np, name)(xh)


def ulp_error(got, ref, dtype):
    """``|got - ref| / spacing(ref rounded to dtype)``; 0 for matching NaN/inf, inf for mismatches."""
    dt = np.dtype(dtype)
    with np.errstate(all="ignore"):
        rounded = ref.astype(dt)
        spacing = np.abs(np.spacing(rounded)).astype(ref.dtype)
        spacing[rounded == 0] = np.finfo(dt).smallest_subnormal
        err = np.abs(got.astype(ref.dtype) - ref) / spacing
        same_inf = np.isinf(got) & np.isinf(rounded) & (np.sign(got) == np.sign(rounded))
        err[same_inf] = 0
        err[np.isnan(got) & np.isnan(ref)] = 0
        err[np.isnan(got) != np.isnan(ref)] = np.inf
        err[np.isinf(got) & ~same_inf] = np.inf
        err[np.isinf(rounded) & ~np.isinf(got)] = np.inf
    return err


def assert_within_bound(name, x, y=None, got=None):
    dtype = x.dtype.name
    got = compute(name, x, y) if got is None else got
    err = ulp_error(got, reference(name, x, y), dtype)
    bound = MAX_ULP[(name, dtype)]
    worst = int(np.argmax(err))
    where = f"x={x[worst]!r}" + ("" if y is None else f", y={y[worst]!r}")
    assert err[worst] <= bound, f"{name}({dtype}): {err[worst]:.3f} ulp > {bound} at {where}: got {got[worst]!r}"
    return float(err[worst])


# ---- input sets ------------------------------------------------------------------------


def bit_sweep(dtype, n, lo=None, hi=None):
    """About n values of both signs, evenly spaced in bit pattern over positive finite [lo, hi]."""
    dt = np.dtype(dtype)
    it = np.uint32 if dt.itemsize == 4 else np.uint64
    lo = dt.type(np.finfo(dt).smallest_subnormal if lo is None else lo)
    hi = dt.type(np.finfo(dt).max if hi is None else hi)
    bl, bh = int(lo.view(it)), int(hi.view(it))
    bits = np.unique(np.clip(np.linspace(bl, bh, n // 2).astype(it), it(bl), it(bh))).view(dt)
    return np.concatenate([bits, -bits])


#: Points around which a dense linear sweep is made (reduction boundaries, thresholds).
INTERESTING = {
    "exp": {"float32": [0, 0.3466, 1, -1, 88.72, -87.33, -103.97], "float64": [0, 0.3466, 1, 709.78, -708.4, -745.1]},
    "log": {"float32": [1, 0.7071, 1.4142, 2], "float64": [1, 0.7071, 1.4142, 2]},
    "log1p": {"float32": [0, -0.2929, 0.4142, -0.5, 1, -0.99], "float64": [0, -0.2929, 0.4142, -0.5, 1, -0.99]},
    "expm1": {"float32": [0, 0.3466, -0.3466, 1, -1, 88.72], "float64": [0, 0.3466, -0.3466, 1, -1, 709.78]},
    "sin": {"float32": [0, 0.7854, 1.5708, 3.1416, 100], "float64": [0, 0.7854, 1.5708, 3.1416, 100]},
    "cos": {"float32": [0, 0.7854, 1.5708, 3.1416, 100], "float64": [0, 0.7854, 1.5708, 3.1416, 100]},
    "tanh": {"float32": [0, 0.35, 1, 5, 9], "float64": [0, 0.35, 1, 5, 19]},
    "sigmoid": {"float32": [0, -2, -20, -87.5, -103], "float64": [0, -2, -20, -708.5, -744]},
    "erf": {"float32": [0, 0.5, 1, 2, 3.9], "float64": [0, 0.5, 1, 2, 3.5, 5.9]},
}


def accuracy_inputs(name, dtype):
    f32 = dtype == "float32"
    dense = 65536 if f32 else 8192
    parts = [bit_sweep(dtype, 1_000_000 if f32 else 200_000)]
    for c in INTERESTING[name][dtype]:
        for w in (1e-3, 1.0):
            parts.append(np.linspace(c - w, c + w, dense))
    parts.append(np.geomspace(float(np.finfo(dtype).smallest_subnormal), 1e-3, dense))
    parts.append(-np.geomspace(float(np.finfo(dtype).smallest_subnormal), 1e-3, dense))
    x = np.concatenate(parts).astype(dtype)
    if name in ("sin", "cos"):
        x = x[np.abs(x) < TRIG_ACCURATE_RANGE[dtype]]
    if name == "erf" and not f32:
        x = x[:: max(1, x.size // 16384)]  # mpmath reference
    return x


# ---- accuracy ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", UNARY)
def test_unary_accuracy(name, dtype):
    if dtype == "float64" and not HAVE_LONGDOUBLE:
        pytest.skip("no extended long double for a float64 reference")
    assert_within_bound(name, accuracy_inputs(name, dtype))


def _pow_inputs(dtype, n):
    rng = np.random.default_rng(1234)
    big = math.log(float(np.finfo(dtype).max))
    small = -math.log(2.0) * (-np.finfo(dtype).minexp + np.finfo(dtype).nmant)
    xs, ys = [], []
    # log-uniform bases; exponents so that y*log(x) spans the whole finite result range
    x = np.exp(rng.uniform(-0.99 * big, 0.99 * big, n))
    xs.append(x)
    ys.append(rng.uniform(small, big, n) / np.log(x))
    # bases near 1 with large exponents (where the double-word log matters)
    x = 1 + rng.uniform(-0.3, 0.42, n)
    xs.append(x)
    ys.append(rng.uniform(small, big, n) / np.log(x))
    # negative bases with integer exponents
    xs.append(-np.exp(rng.uniform(-5, 5, n)))
    ys.append(np.round(rng.uniform(-40, 40, n)))
    # a plain box
    xs.append(rng.uniform(0, 10, n))
    ys.append(rng.uniform(-10, 10, n))
    with np.errstate(all="ignore"):
        x, y = np.concatenate(xs).astype(dtype), np.concatenate(ys).astype(dtype)
    ok = np.isfinite(y)
    return x[ok], y[ok]


@pytest.mark.parametrize("dtype", DTYPES)
def test_pow_accuracy(dtype):
    if dtype == "float64" and not HAVE_LONGDOUBLE:
        pytest.skip("no extended long double for a float64 reference")
    x, y = _pow_inputs(dtype, 200_000 if dtype == "float32" else 100_000)
    assert_within_bound("pow", x, y)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["sin", "cos"])
def test_trig_beyond_accurate_range_is_bounded(name, dtype):
    x = bit_sweep(dtype, 200_000, TRIG_ACCURATE_RANGE[dtype], None)
    got = compute(name, x)
    assert np.all(np.isfinite(got))
    assert np.all(np.abs(got) <= 1)


# ---- special values ------------------------------------------------------------------------


def _specials(dtype):
    fi = np.finfo(dtype)
    # fmt: off
    base = [
        0.0, fi.smallest_subnormal, 3 * fi.smallest_subnormal, fi.smallest_normal / 3, fi.smallest_normal,
        fi.eps, 1e-30, 0.5, 1.0, 2.0, 10.0, 1e10, 1e30, fi.max / 2, fi.max, np.inf,
        88.72, 88.73, 89.0, 103.9, 104.0, 709.78, 709.79, 745.1, 746.0,  # exp thresholds
    ]
    # fmt: on
    x = np.array(base, dtype=np.float64)
    with np.errstate(over="ignore"):
        x = np.concatenate([x, -x, [np.nan]]).astype(dtype)
    return x


def _numpy_function(name):
    if name == "sigmoid":  # 1/(1+exp(-x)), evaluated without overflow (subnormal exp(x) for x << 0)
        return lambda x: reference("sigmoid", x).astype(x.dtype)
    if name == "erf":
        return lambda x: np.vectorize(math.erf, otypes=[np.float64])(x.astype(np.float64)).astype(x.dtype)
    return getattr(np, name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", UNARY)
def test_unary_special_values_like_numpy(name, dtype):
    x = _specials(dtype)
    if name in ("sin", "cos"):
        x = x[~(np.isfinite(x) & (np.abs(x) >= TRIG_ACCURATE_RANGE[dtype]))]
    got = compute(name, x)
    with np.errstate(all="ignore"):
        expected = _numpy_function(name)(x)
    # NaN, infinities and signed zeros exactly as NumPy; the rest within the bound
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    inf = np.isinf(expected)
    np.testing.assert_array_equal(got[inf], expected[inf])
    zero = expected == 0
    np.testing.assert_array_equal(got[zero], 0)
    np.testing.assert_array_equal(np.signbit(got[zero]), np.signbit(expected[zero]), err_msg=f"{name}: sign of 0")
    if dtype == "float32" or HAVE_LONGDOUBLE:
        assert_within_bound(name, x, got=got)


def _exact(name, dtype, cases):
    x = np.array([c[0] for c in cases], dtype=dtype)
    want = np.array([c[1] for c in cases], dtype=dtype)
    got = compute(name, x)
    np.testing.assert_array_equal(got, want, err_msg=f"{name}({dtype}) at {x}")
    number = ~np.isnan(want)
    np.testing.assert_array_equal(np.signbit(got[number]), np.signbit(want[number]), err_msg=f"{name}({dtype}) at {x}")


INF, NAN = np.inf, np.nan


@pytest.mark.parametrize("dtype", DTYPES)
def test_documented_special_values(dtype):
    big = 1e5 if dtype == "float32" else 1e30
    _exact("exp", dtype, [(-INF, 0.0), (INF, INF), (NAN, NAN), (big, INF), (-big, 0.0), (0.0, 1.0), (-0.0, 1.0)])
    _exact("log", dtype, [(0.0, -INF), (-0.0, -INF), (-1.0, NAN), (-INF, NAN), (INF, INF), (1.0, 0.0), (NAN, NAN)])
    _exact("log1p", dtype, [(-1.0, -INF), (-2.0, NAN), (-INF, NAN), (INF, INF), (0.0, 0.0), (-0.0, -0.0), (NAN, NAN)])
    _exact("expm1", dtype, [(-INF, -1.0), (INF, INF), (big, INF), (-big, -1.0), (0.0, 0.0), (-0.0, -0.0), (NAN, NAN)])
    for f in ("sin", "cos"):
        _exact(f, dtype, [(INF, NAN), (-INF, NAN), (NAN, NAN)])
    _exact("sin", dtype, [(0.0, 0.0), (-0.0, -0.0)])
    _exact("cos", dtype, [(0.0, 1.0), (-0.0, 1.0)])
    _exact("tanh", dtype, [(INF, 1.0), (-INF, -1.0), (big, 1.0), (-big, -1.0), (0.0, 0.0), (-0.0, -0.0), (NAN, NAN)])
    _exact("sigmoid", dtype, [(-INF, 0.0), (INF, 1.0), (big, 1.0), (-big, 0.0), (0.0, 0.5), (-0.0, 0.5), (NAN, NAN)])
    _exact("erf", dtype, [(INF, 1.0), (-INF, -1.0), (big, 1.0), (-big, -1.0), (0.0, 0.0), (-0.0, -0.0), (NAN, NAN)])


@pytest.mark.parametrize("dtype", DTYPES)
def test_results_never_nan_for_large_arguments(dtype):
    x = np.concatenate([bit_sweep(dtype, 20_000, 1.0, None), [np.inf, -np.inf]]).astype(dtype)
    for name in ("exp", "expm1", "tanh", "sigmoid", "erf"):
        assert not np.isnan(compute(name, x)).any(), name


# C99 Annex F pow special cases (NumPy's np.power follows them for floats).
# fmt: off
_POW_CASES = [
    (NAN, 0.0, 1.0), (NAN, -0.0, 1.0), (INF, 0.0, 1.0), (-3.0, -0.0, 1.0), (0.0, 0.0, 1.0),
    (1.0, NAN, 1.0), (1.0, INF, 1.0), (1.0, -INF, 1.0), (1.0, 7.5, 1.0),
    (-1.0, INF, 1.0), (-1.0, -INF, 1.0),
    (-8.0, 1 / 3, NAN), (-2.0, 0.5, NAN), (-0.5, -2.5, NAN), (-1.0, NAN, NAN), (NAN, 1.0, NAN), (2.0, NAN, NAN),
    (-2.0, 3.0, -8.0), (-2.0, 2.0, 4.0), (-2.0, -3.0, -0.125), (-2.0, -2.0, 0.25), (-1.0, 3.0, -1.0),
    (0.0, -3.0, INF), (-0.0, -3.0, -INF), (0.0, -2.0, INF), (-0.0, -2.0, INF), (-0.0, -0.5, INF),
    (0.0, -INF, INF), (-0.0, -INF, INF),
    (0.0, 3.0, 0.0), (-0.0, 3.0, -0.0), (0.0, 2.0, 0.0), (-0.0, 2.0, 0.0), (-0.0, 0.5, 0.0), (0.0, INF, 0.0),
    (0.5, -INF, INF), (-0.5, -INF, INF), (2.0, -INF, 0.0), (-2.0, -INF, 0.0),
    (0.5, INF, 0.0), (-0.5, INF, 0.0), (2.0, INF, INF), (-2.0, INF, INF),
    (-INF, -3.0, -0.0), (-INF, -2.0, 0.0), (-INF, -0.5, 0.0), (-INF, 3.0, -INF), (-INF, 2.0, INF), (-INF, 0.5, INF),
    (INF, -1.0, 0.0), (INF, -0.5, 0.0), (INF, 0.5, INF), (INF, 2.0, INF),
    (10.0, 400.0, INF), (10.0, -400.0, 0.0), (-10.0, 401.0, -INF), (-10.0, -401.0, -0.0), (0.5, 2000.0, 0.0),
    (4.0, 0.5, 2.0), (2.0, 10.0, 1024.0), (2.0, -1.0, 0.5), (9.0, 0.5, 3.0),
]
# fmt: on


@pytest.mark.parametrize("dtype", DTYPES)
def test_pow_special_cases_like_numpy(dtype):
    x = np.array([c[0] for c in _POW_CASES], dtype=dtype)
    y = np.array([c[1] for c in _POW_CASES], dtype=dtype)
    want = np.array([c[2] for c in _POW_CASES], dtype=dtype)
    got = compute("pow", x, y)
    with np.errstate(all="ignore"):
        numpy_result = np.power(x, y)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got[got == 0]), np.signbit(want[want == 0]))
    np.testing.assert_array_equal(got, numpy_result)
    np.testing.assert_array_equal(np.signbit(got[got == 0]), np.signbit(numpy_result[numpy_result == 0]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_pow_against_numpy_on_a_grid_of_special_operands(dtype):
    # fmt: off
    vals = np.array([NAN, INF, -INF, 0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.0, 2.5, -2.5, 1e-3, 1e3,
                     np.finfo(dtype).max, np.finfo(dtype).smallest_subnormal], dtype=dtype)
    # fmt: on
    x, y = (a.ravel() for a in np.meshgrid(vals, vals))
    got = compute("pow", x, y)
    with np.errstate(all="ignore"):
        expected = np.power(x, y)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    exact = np.isinf(expected) | (expected == 0) | (np.abs(expected) == 1)
    np.testing.assert_array_equal(got[exact], expected[exact])
    np.testing.assert_array_equal(np.signbit(got[exact]), np.signbit(expected[exact]))
    if dtype == "float32" or HAVE_LONGDOUBLE:
        assert_within_bound("pow", x, y, got=got)


# ---- property tests -----------------------------------------------------------------------


def _floats(dtype):
    return st.floats(width=32 if dtype == "float32" else 64, allow_nan=True, allow_infinity=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", UNARY)
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_unary_property_against_numpy(name, dtype, data):
    if dtype == "float64" and not HAVE_LONGDOUBLE:
        pytest.skip("no extended long double for a float64 reference")
    x = np.array(data.draw(st.lists(_floats(dtype), min_size=1, max_size=16), label="x"), dtype=dtype)
    got = compute(name, x)
    if name in ("sin", "cos"):
        far = np.isfinite(x) & (np.abs(x) >= TRIG_ACCURATE_RANGE[dtype])
        assert np.all(np.abs(got[far]) <= 1)
        x, got = x[~far], got[~far]
    if x.size:
        assert_within_bound(name, x, got=got)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_pow_property_against_numpy(dtype, data):
    if dtype == "float64" and not HAVE_LONGDOUBLE:
        pytest.skip("no extended long double for a float64 reference")
    n = data.draw(st.integers(1, 16), label="n")
    x = np.array(data.draw(st.lists(_floats(dtype), min_size=n, max_size=n), label="x"), dtype=dtype)
    small_ints = st.integers(-60, 60).map(float)
    y = np.array(
        data.draw(st.lists(st.one_of(_floats(dtype), small_ints), min_size=n, max_size=n), label="y"), dtype=dtype
    )
    got = compute("pow", x, y)
    with np.errstate(all="ignore"):
        expected = np.power(x, y)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    assert_within_bound("pow", x, y, got=got)


# ---- code shape and vectorisation ---------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(MATH_FUNCTIONS))
def test_emitted_code_is_straight_line_and_vectorises(name, dtype):
    # one basic block, no PHIs, calls only to LLVM intrinsics
    ty = _ir_type(dtype)
    module = ir.Module()
    nargs = 2 if name == "pow" else 1
    fn = ir.Function(module, ir.FunctionType(ty, [ty] * nargs), name="g")
    b = ir.IRBuilder(fn.append_basic_block())
    b.ret(emit_math(b, name, list(fn.args)))
    text = str(module)
    assert len(fn.blocks) == 1
    assert " phi " not in text and " br " not in text
    called = set(re.findall(r'call [^@]*@"?([\w.]+)', text))
    assert called and all(c.startswith("llvm.") for c in called), called
    assert all(g.name.startswith("llvm.") for g in module.functions if g.is_declaration)
    # the -O3 loop: no calls but LLVM intrinsics, vector types, and SIMD registers in the body
    _, optimised, asm = _compiled(name, dtype)
    callees = set(re.findall(r"call [^@]*@([\w.]+)", optimised))
    assert all(c.startswith("llvm.") for c in callees), callees
    assert re.search(r"<(4|8|16) x (float|double)>", optimised)
    if "+avx512f" in llvm.get_host_cpu_features().flatten().split(","):
        assert re.search(r"vfmadd\w*\s+.*%[zy]mm", asm), "no vector fma on zmm/ymm registers"
        assert "zmm" in asm or "ymm" in asm


def test_many_calls_in_one_module_declare_each_intrinsic_once():
    module = ir.Module()
    module.triple = llvm.get_process_triple()
    for dtype in DTYPES:
        ty = _ir_type(dtype)
        for k in range(2):
            fn = ir.Function(module, ir.FunctionType(ty, [ty, ty]), name=f"g_{dtype}_{k}")
            b = ir.IRBuilder(fn.append_basic_block())
            acc = fn.args[0]
            for name in sorted(MATH_FUNCTIONS):
                args = [acc, fn.args[1]] if name == "pow" else [acc]
                acc = b.fadd(acc, emit_math(b, name, args))
            b.ret(acc)
    llvm.parse_assembly(str(module)).verify()


def test_unknown_function_and_bad_arguments():
    module = ir.Module()
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [ir.FloatType(), ir.DoubleType(), ir.IntType(32)]), "g")
    b = ir.IRBuilder(fn.append_basic_block())
    f32, f64, i32 = fn.args
    with pytest.raises(ValueError, match="atan2"):
        emit_math(b, "atan2", [f32, f32])
    with pytest.raises(ValueError):
        emit_math(b, "exp", [f32, f32])
    with pytest.raises(ValueError):
        emit_math(b, "pow", [f32, f64])
    with pytest.raises(ValueError):
        emit_math(b, "exp", [i32])


@pytest.mark.parametrize("dtype", DTYPES)
def test_odd_length_tail_matches_vector_body(dtype):
    n = 1_000_003
    x = np.random.default_rng(7).uniform(-20, 20, n).astype(dtype)
    for name in ("exp", "sin", "erf"):
        got = compute(name, x)
        # the scalar remainder loop (n = 1) computes the same bits as the vector body and the tail
        for i in [*range(20), *range(n - 40, n)]:
            assert compute(name, x[i : i + 1])[0].tobytes() == got[i].tobytes()
        if dtype == "float32":
            assert_within_bound(name, x[-100_000:], got=got[-100_000:])
