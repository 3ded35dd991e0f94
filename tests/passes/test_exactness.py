"""Rules that negate or fold constants are exact for every dtype mix and every value.

``-b`` is computed in ``b``'s own dtype, where it wraps (``-uint8(1)`` is 255,
``-int8(-128)`` is -128), and only then converted to the result dtype; ``a - b``
converts first.  So ``a + (-b)`` and ``a - b`` differ when ``b`` is an unsigned or
signed integer narrower than the result, and a constant folded as ``-c`` in ``c``'s
dtype differs from ``c`` negated in the result dtype.  Each test compares with NumPy
bit for bit, with the rule alone and in the pipelines it runs in.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from support import assert_identical

import symexpr as se
from symexpr.passes import all_rules
from symexpr.passes.patterns import negation_commutes_with_cast, nonnegative
from symexpr.testing import assert_rewrite_fires, assert_rewrite_preserves, cases_for

RULES = {r.name: r for _, r in all_rules()}



def run(inputs, output, values, backend, passes):
    return se.function(inputs, output, backend=backend, passes=passes)(*values)


# -- a + (-b) -> a - b and a - b -> a + (-b) ---------------------------------------------------

# (dtype of a, dtype of b, values of b): -b wraps in b's dtype before the promotion to a's
WRAPPING_MIXES = [
    ("float64", "uint8", [0, 1, 255]),
    ("float32", "uint16", [1, 65535]),
    ("int16", "uint8", [1, 200]),
    ("uint16", "uint8", [1, 255]),
    ("int64", "uint32", [1, 2**32 - 1]),
    ("int16", "int8", [-128, -1, 127]),
    ("float64", "int32", [-(2**31), 5]),
    ("float32", "int64", [-(2**63), 7]),
    ("bool", "int8", [-128, 3]),
]
MIX_IDS = [f"{a}-{b}" for a, b, _ in WRAPPING_MIXES]


def _mix_values(a_dtype, b_dtype, b_values):
    a = np.arange(len(b_values)).astype(a_dtype)
    return a, np.array(b_values, dtype=b_dtype)


@pytest.mark.parametrize("passes", ["rule", "fast_run"])
@pytest.mark.parametrize("a_dtype, b_dtype, b_values", WRAPPING_MIXES, ids=MIX_IDS)
def test_add_neg_to_sub_keeps_a_negation_that_wraps_in_the_operands_dtype(backend, a_dtype, b_dtype, b_values, passes):
    a, b = se.vector("a", dtype=a_dtype), se.vector("b", dtype=b_dtype)
    av, bv = _mix_values(a_dtype, b_dtype, b_values)
    passes = [RULES["add_neg_to_sub"]] if passes == "rule" else passes
    assert_identical(run([a, b], a + (-b), [av, bv], backend, passes), av + (-bv))
    assert_identical(run([a, b], (-b) + a, [av, bv], backend, passes), (-bv) + av)


def test_add_neg_to_sub_float64_plus_negated_uint8_is_numpys_255(backend):
    """The issue's case: float64 x + (-u) with uint8 u = 1 is 255.0 in NumPy, not -1.0."""
    x, u = se.vector("x", dtype="float64"), se.vector("u", dtype="uint8")
    got = se.function([x, u], x + (-u), backend=backend)(np.array([0.0]), np.array([1], "uint8"))
    assert_identical(got, np.array([255.0]))


@pytest.mark.parametrize("passes", ["rule", "canonicalize", "fast_run"])
@pytest.mark.parametrize("a_dtype, b_dtype, b_values", [m for m in WRAPPING_MIXES if m[0] != "bool"],
                         ids=[i for i, m in zip(MIX_IDS, WRAPPING_MIXES) if m[0] != "bool"])
def test_sub_to_add_neg_keeps_a_subtraction_whose_negation_would_wrap(backend, a_dtype, b_dtype, b_values, passes):
    a, b = se.vector("a", dtype=a_dtype), se.vector("b", dtype=b_dtype)
    av, bv = _mix_values(a_dtype, b_dtype, b_values)
    passes = [RULES["sub_to_add_neg"]] if passes == "rule" else [passes]
    assert_identical(run([a, b], a - b, [av, bv], backend, passes), av - bv)


@pytest.mark.parametrize("a_dtype, b_dtype", [("float32", "float32"), ("float64", "float16"), ("int8", "int8"),
                                              ("uint8", "uint8"), ("int32", "float64"), ("uint16", "float32")])
def test_negation_rules_still_fire_where_they_are_exact(a_dtype, b_dtype):
    a, b = se.vector("a", dtype=a_dtype), se.vector("b", dtype=b_dtype)
    assert_rewrite_fires(RULES["add_neg_to_sub"], a + (-b))
    assert_rewrite_fires(RULES["sub_to_add_neg"], a - b)


def test_add_neg_to_sub_fires_for_a_constant_that_cannot_wrap():
    x = se.vector("x", dtype="float64")
    assert_rewrite_fires(RULES["add_neg_to_sub"], x + se.neg(se.constant(np.array([-127, 5], "int8"))))
    f = se.function([x], x + se.neg(se.constant(np.array([-128, 5], "int8"))), passes=[RULES["add_neg_to_sub"]])
    assert f.rewrite_log == []


_A_DTYPES = ("bool", "float16", "float64", "int8", "int16", "uint8", "uint32", "int64")
_B_DTYPES = ("float16", "float64", "int8", "int16", "uint8", "uint32", "int64")


@pytest.mark.parametrize("a_dtype, b_dtype", list(itertools.product(_A_DTYPES, _B_DTYPES)))
def test_negation_rules_preserve_results_for_every_dtype_mix(a_dtype, b_dtype):
    a, b = se.vector("a", dtype=a_dtype), se.vector("b", dtype=b_dtype)
    exact = {"rtol": 0, "atol": 0, "max_examples": 8}
    assert_rewrite_preserves(RULES["add_neg_to_sub"], cases_for(a + (-b), elements="any"), **exact)
    if a_dtype != "bool":
        assert_rewrite_preserves(RULES["sub_to_add_neg"], cases_for(a - b, elements="any"), **exact)


@pytest.mark.parametrize(
    "value, dtype, expected",
    [
        (se.vector("v", dtype="uint8"), "uint8", True),
        (se.vector("v", dtype="uint8"), "int16", False),
        (se.vector("v", dtype="int8"), "float32", False),
        (se.vector("v", dtype="float16"), "float64", True),
        (se.vector("v", dtype="bool"), "bool", False),
        (se.constant(np.array([-127, 127], "int8")), "int64", True),
        (se.constant(np.array([-128, 127], "int8")), "int64", False),
        (se.constant(np.array([0, 0], "uint8")), "float64", True),
        (se.constant(np.array([0, 1], "uint8")), "float64", False),
    ],
)
def test_negation_commutes_with_cast(value, dtype, expected):
    assert negation_commutes_with_cast(value, dtype) is expected


# -- a - c -> a + (-c) ---------------------------------------------------------------------------

# (dtype of x, the constant c)
CONSTANT_CASES = [
    ("float64", np.int32(-(2**31))),
    ("float32", np.int8(-128)),
    ("int16", np.int8(-128)),
    ("int64", np.array([-(2**31), 0, 2**31 - 1], "int32")),
    ("int8", np.int8(-128)),
    ("float64", np.uint8(3)),
    ("int16", np.uint8(200)),
    ("uint8", np.uint8(3)),
    ("uint8", np.array([0, 1, 255], "uint8")),
    ("float32", np.float64(-0.0)),
    ("float16", np.float32(0.1)),
    ("int32", np.float64(-0.5)),
    ("int8", np.bool_(True)),
]


@pytest.mark.parametrize("passes", ["rule", "canonicalize", "fast_run"])
@pytest.mark.parametrize("x_dtype, c", CONSTANT_CASES, ids=[f"{d}-{np.asarray(c).dtype}" for d, c in CONSTANT_CASES])
def test_sub_const_is_exact_for_every_constant(backend, x_dtype, c, passes):
    x = se.vector("x", dtype=x_dtype, shape=(3,))
    xv = np.array([0, 1, 2]).astype(x_dtype)
    if x_dtype.startswith("float"):
        with np.errstate(over="ignore"):  # -2**31 is -inf in float16
            xv = np.array([-0.0, 1.5, -(2.0**31)]).astype(x_dtype)
    passes = [RULES["sub_const"]] if passes == "rule" else [passes]
    out = x - se.constant(c)
    assert_identical(run([x], out, [xv], backend, passes), xv - c)


def test_sub_const_float64_minus_int32_minimum_is_numpys_value(backend):
    """The issue's case: float64 x - int32(-2**31) is x + 2147483648.0."""
    x = se.vector("x", dtype="float64")
    f = se.function([x], x - se.constant(np.int32(-(2**31))), backend=backend)
    assert_identical(f(np.array([0.0, -1.0])), np.array([2147483648.0, 2147483647.0]))


@pytest.mark.parametrize("x_dtype, value", [("int8", -128), ("uint8", 3), ("float32", 3), ("int16", -(2**15))])
def test_sub_const_with_a_weak_python_scalar(backend, x_dtype, value):
    x = se.vector("x", dtype=x_dtype)
    xv = np.array([0, 1, 2]).astype(x_dtype)
    f = se.function([x], x - value, backend=backend, passes=["canonicalize"])
    assert [r.rule for r in f.rewrite_log] == ["sub_const"]
    assert_identical(f(xv), xv - value)


_X_DTYPES = ("float32", "float64", "int8", "int16", "uint8", "int64")
_C_DTYPES = ("int8", "int32", "uint8", "uint16", "float16", "float64")


@pytest.mark.parametrize("x_dtype, c_dtype", list(itertools.product(_X_DTYPES, _C_DTYPES)))
def test_sub_const_preserves_results_for_the_extremes_of_every_dtype_mix(x_dtype, c_dtype):
    if np.dtype(c_dtype).kind == "f":
        info = np.finfo(c_dtype)
        values = [info.min, info.max, -0.0, 0.0, info.smallest_subnormal, np.inf, -np.inf, np.nan]
    else:
        info = np.iinfo(c_dtype)
        values = [info.min, info.max, 0, 1, info.min + 1]
    c = se.constant(np.array(values, dtype=c_dtype))
    x = se.vector("x", dtype=x_dtype, shape=(len(values),))
    assert_rewrite_preserves(RULES["sub_const"], cases_for(x - c, elements="any"), rtol=0, atol=0, max_examples=8)


# -- (x op c1) op c2 -> x op (c1 op c2) ----------------------------------------------------------


@pytest.mark.parametrize(
    "build, rule",
    [
        (lambda x: (x + se.constant(np.int8(100))) + se.constant(np.int16(32767)), "gather_add_constants"),
        (lambda x: (x * se.constant(np.int16(300))) * se.constant(np.int16(300)), "gather_mul_constants"),
        (lambda x: (x + se.constant(np.uint8(200))) + se.constant(np.uint8(100)), "gather_add_constants"),
        (lambda x: (x * se.constant(np.array([3, 255], "uint8"))) * se.constant(np.uint8(255)), "gather_mul_constants"),
    ],
    ids=["add-int8-int16", "mul-int16", "add-uint8", "mul-uint8"],
)
def test_gather_constants_folds_in_the_result_dtype(backend, build, rule):
    """c1 op c2 must be computed in x's dtype: int16(300) * int16(300) wraps in int16, not in int32."""
    x = se.vector("x", dtype="int32", shape=(2,))
    xv = np.array([1, -7], "int32")
    out = build(x)
    want = se.function([x], out, passes="none", backend="numpy")(xv)
    f = se.function([x], out, passes=[RULES[rule]], backend=backend)
    assert [r.rule for r in f.rewrite_log] == [rule]
    assert_identical(f(xv), want)


# -- facts the rules rely on ------------------------------------------------------------------------


def test_abs_of_a_signed_integer_is_not_known_nonnegative():
    """abs(int8(-128)) is -128."""
    assert not nonnegative(se.abs(se.vector("i", dtype="int8")))
    assert not nonnegative(se.abs(se.vector("i", dtype="int64")))
    assert nonnegative(se.abs(se.vector("f", dtype="float32")))
    assert nonnegative(se.abs(se.vector("u", dtype="uint8")))
