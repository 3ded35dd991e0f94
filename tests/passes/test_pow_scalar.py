"""``x ** scalar`` computes what NumPy computes, on every backend.

NumPy 2.4 has two fast paths for a scalar exponent, and both give results that
differ from C's ``pow``:

- ``ndarray.__pow__`` (``fast_scalar_power`` in ``numpy/_core/src/multiarray/number.c``):
  for an exponent that is exactly a Python ``int`` or ``float``, ``x ** 2`` is
  ``np.square(x)`` for any dtype, and for float arrays ``x ** -1`` is
  ``np.reciprocal(x)`` and ``x ** 0.5`` is ``np.sqrt(x)``; NumPy scalars and 0-d
  arrays as exponents go to ``np.power``.
- ``np.power``'s float32/float64 loops (``loops_umath_fp.dispatch.c.src``): when the
  exponent is broadcast (stride 0, as a 0-d exponent always is) and equals -1, 0,
  0.5, 1 or 2, the result is ``1/x``, ``1``, ``sqrt(x)``, ``x`` or ``x*x``.  The
  float16 loop has no such path.

``sqrt`` and ``pow`` differ at -inf (``nan`` against ``inf``) and -0.0 (``-0.0``
against ``0.0``).  symexpr builds ``x ** 0.5`` as ``power(x, 0.5)`` with a 0-d
constant: the NumPy backend takes the loop's fast path, and the ``pow_scalar_exponent``
rule rewrites it to ``sqrt`` (``1/x``, ``x*x``, ``x``) so that compiled backends agree.
"""

from __future__ import annotations

import numpy as np
import pytest
from support import assert_identical

import symexpr as se
from symexpr.graph.traversal import graph_inputs
from symexpr.passes import all_rules
from symexpr.testing import assert_rewrite_fires

RULES = {r.name: r for _, r in all_rules()}
POW_RULE = RULES["pow_scalar_exponent"]



def float_values(dtype) -> np.ndarray:
    info = np.finfo(dtype)
    special = [-np.inf, -0.0, 0.0, np.inf, np.nan, -1.0, 1.0, 2.0, 4.0, 0.1, -3.5, 1e-3,
               info.tiny, info.smallest_subnormal, -info.smallest_subnormal, info.max, -info.max, info.eps]
    rng = np.random.default_rng(7)
    scale = 2.0 ** rng.integers(info.minexp, info.maxexp, 400)
    random = rng.uniform(1, 2, 400) * scale * rng.choice([-1, 1], 400)
    with np.errstate(over="ignore"):
        return np.concatenate([np.array(special, dtype), random.astype(dtype)])


def int_values(dtype) -> np.ndarray:
    if dtype == "bool":
        return np.array([True, False])
    info = np.iinfo(dtype)
    rng = np.random.default_rng(3)
    extremes = [info.min, info.max, 0, 1, 2, 3, info.max - 1, info.min + 1 if info.min else 5]
    random = rng.integers(info.min, info.max, 200, dtype=dtype, endpoint=True)
    return np.concatenate([np.array(extremes, dtype), random])


def numpy_pow(values, exponent):
    with np.errstate(all="ignore"):
        return values ** exponent


FAST_EXPONENTS = [0.5, 2, -1, 1, 0, 2.0, -1.0, 1.0, 0.0]


@pytest.mark.parametrize("passes", ["fast_run", "rule"])
@pytest.mark.parametrize("exponent", FAST_EXPONENTS, ids=repr)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_float_array_to_a_scalar_exponent_is_numpys_value(backend, dtype, exponent, passes):
    """x ** 0.5 is sqrt(x): NaN for -inf and -0.0 for -0.0 (C's pow gives inf and 0.0)."""
    x = se.vector("x", dtype=dtype)
    values = float_values(dtype)
    f = se.function([x], x ** exponent, backend=backend, passes=[POW_RULE] if passes == "rule" else passes)
    with np.errstate(all="ignore"):
        got = f(values)
    assert_identical(got, numpy_pow(values, exponent))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sqrt_of_minus_inf_and_minus_zero(backend, dtype):
    """The issue's values: (-inf) ** 0.5 is NaN and (-0.0) ** 0.5 is -0.0 in NumPy."""
    x = se.vector("x", dtype=dtype)
    with np.errstate(invalid="ignore"):
        got = se.function([x], x ** 0.5, backend=backend)(np.array([-np.inf, -0.0, 4.0], dtype))
    assert np.isnan(got[0])
    assert got[1] == 0 and np.signbit(got[1])
    assert got[2] == 2


@pytest.mark.parametrize("exponent", [0.5, 2.0, -1.0, 1.0, 2, 0], ids=repr)
@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "int32", "uint32", "int64", "uint64", "bool"])
def test_integer_array_to_a_scalar_exponent_is_numpys_value_and_dtype(backend, dtype, exponent):
    """int ** 0.5 is float64 sqrt(float64(x)), int ** 2 stays an integer (wrapping), and so on."""
    if dtype == "bool" and exponent == 2:
        pytest.skip("bool ** 2 is int8 in NumPy: see test_bool_array_squared_is_int8_as_in_numpy")
    x = se.vector("x", dtype=dtype)
    values = int_values(dtype)
    out = x ** exponent
    want = numpy_pow(values, exponent)
    assert out.dtype == want.dtype.name
    with np.errstate(all="ignore"):
        got = se.function([x], out, backend=backend)(values)
    assert_identical(got, want)


@pytest.mark.parametrize("exponent", [se.constant(np.float64(0.5)), se.constant(np.float32(0.5)), np.float64(0.5)],
                         ids=["constant-float64", "constant-float32", "numpy-float64"])
@pytest.mark.parametrize("dtype", ["float16", "float32", "int16"])
def test_power_with_a_0d_exponent_of_another_dtype(backend, dtype, exponent):
    """A strong 0-d exponent: NumPy's power converts x to the result dtype and takes the fast path there."""
    x = se.vector("x", dtype=dtype)
    values = float_values(dtype) if dtype.startswith("float") else int_values(dtype)
    value = exponent.data if isinstance(exponent, se.Constant) else exponent
    with np.errstate(all="ignore"):
        want = np.power(values, np.asarray(value))
        got = se.function([x], se.power(x, exponent), backend=backend)(values)
    assert_identical(got, want)


def test_pow_scalar_exponent_fires_and_declines():
    x = se.vector("x")
    h = se.vector("h", dtype="float16")
    # (``x ** 0.5`` itself builds sqrt: the operator takes NumPy's fast path; se.power keeps np.power)
    for out in (se.power(x, 0.5), se.power(x, -1), se.power(x, 2), x ** 1.0, se.cast(x, "int32") ** 0.5,
                h ** se.constant(np.float32(0.5))):
        assert_rewrite_fires(POW_RULE, out)
    for out in (
        x ** 3,  # C's pow, not a fast path
        x ** se.constant(np.full(3, 0.5, "float32")),  # not 0-d: NumPy's loop gives C's pow for an array of 0.5
        se.power(h, 0.5),  # float16 power has no fast path in NumPy's loop
        se.power(se.vector("i", dtype="int32"), 2),  # integer power
    ):
        f = se.function([v for v in graph_inputs([out]) if not isinstance(v, se.Constant)], out, passes=[POW_RULE])
        assert f.rewrite_log == []


# -- outside the passes: the operator and the compiled backends ----------------------------------------
#
# ``Variable.__pow__`` builds what NumPy's ``fast_scalar_power`` builds for an exponent that is
# exactly a Python int or float (``x * x`` for 2, bool ** 2 being int8; for floats ``1 / x`` for -1
# and ``sqrt(x)`` for 0.5), while ``se.power(x, y)`` stays ``np.power``; and the llvm backend given
# ``power(x, c)`` with a one-element constant ``c`` in {-1, 0, 0.5, 1, 2} and a float32/float64
# result computes the power loops' fast path without any pass.


def test_float16_array_to_the_half_is_sqrt_as_in_numpy(backend):
    x = se.vector("x", dtype="float16")
    values = np.array([-np.inf, -0.0, 4.0], "float16")
    with np.errstate(invalid="ignore"):
        got = se.function([x], x ** 0.5, backend=backend)(values)
    assert_identical(got, numpy_pow(values, 0.5))


def test_bool_array_squared_is_int8_as_in_numpy():
    b = se.vector("b", dtype="bool")
    assert (b ** 2).dtype == (np.array([True]) ** 2).dtype.name


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_compiled_power_without_passes_is_numpys_value(backend, dtype):
    if backend == "numpy":
        pytest.skip("the NumPy backend runs np.power, which takes the fast path")
    x = se.vector("x", dtype=dtype)
    values = np.array([-np.inf, -0.0, 4.0], dtype)
    with np.errstate(invalid="ignore"):
        got = se.function([x], x ** 0.5, backend=backend, passes="none")(values)
        power = se.function([x], se.power(x, se.constant(np.asarray(0.5, dtype))), backend=backend, passes="none")
        assert_identical(power(values), np.power(values, np.asarray(0.5, dtype)))
    assert_identical(got, numpy_pow(values, 0.5))


@pytest.mark.parametrize("shape", [(), (1,), (1, 1)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_power_with_a_one_element_input_exponent_is_numpys_value(backend, dtype, shape):
    """NumPy's power loops take the fast path for any broadcast exponent, also one passed at run time."""
    x = se.tensor("x", dtype, (None,) * max(len(shape), 1))
    e = se.tensor("e", dtype, shape)
    f = se.function([x, e], [x ** e, se.power(x, e) * 2], backend=backend)
    values = np.array([-np.inf, -0.0, 4.0, np.nan, 3.3, -2.0], dtype).reshape((-1,) + (1,) * (max(len(shape), 1) - 1))
    for exponent in (0.5, 2.0, -1.0, 1.0, 0.0):  # the fast-path values: exact, like NumPy
        ev = np.full(shape, exponent, dtype)
        with np.errstate(all="ignore"):
            got = f(values, ev)
            assert_identical(got[0], np.power(values, ev))
            assert_identical(got[1], np.power(values, ev) * 2)


def test_power_fast_path_inside_a_fused_program(backend):
    """Fused programs with several powers of one run-time exponent, and instructions using their results."""
    x = se.vector("x", dtype="float32")
    e = se.scalar("e", dtype="float32")
    out = x ** e + (x * 2) ** e * 3
    f = se.function([x, e], out, backend=backend)
    assert any(n.op.display_name().startswith("Fused") for n in f.fgraph.toposort())
    values = np.array([-np.inf, -0.0, 4.0, np.nan, 3.3, -2.0], "float32")
    for exponent in (0.5, 2.0, -1.0, 1.0, 0.0):
        ev = np.float32(exponent)
        with np.errstate(all="ignore"):
            assert_identical(f(values, ev), np.power(values, ev) + np.power(values * 2, ev) * 3)
