"""Every registered rule: it fires on its target, and it preserves meaning on random graphs containing it.

A new rule must add an entry to TARGETS (the first test fails otherwise).
"""

from __future__ import annotations

import numpy as np
import pytest

import symexpr as se
from symexpr.passes import all_rules
from symexpr.testing import assert_rewrite_fires, assert_rewrite_preserves, graphs_containing

FLOATS = ("float32", "float64")
INTS = ("int8", "uint8", "int32", "int64")
ALL = FLOATS + INTS + ("float16", "bool")
NUMBERS = FLOATS + INTS + ("float16",)  # where bool has no such operator


def _gelu_erf(x):
    return 0.5 * x * (1 + se.erf(x * 0.7071067811865476))


def _gelu_tanh(x):
    return 0.5 * x * (1 + se.tanh((x + x * x * x * 0.044715) * 0.7978845608028654))


def _softmax_stable(x):
    e = se.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _softmax_naive(x):
    return se.exp(x) / se.exp(x).sum(axis=-1, keepdims=True)


def _layer_norm(x):
    c = x - x.mean(axis=-1, keepdims=True)
    return c / se.sqrt((c * c).mean(axis=-1, keepdims=True) + 1e-5)


def _rms_norm(x):
    return x / se.sqrt((x * x).mean(axis=-1, keepdims=True) + 1e-6)


# rule -> (template, dtypes it must preserve meaning for, dtype it fires on, extra strategy options,
#          tolerance: None = exact, "ulp" = a few ulp of the output dtype, a float = rtol and atol)
TARGETS = {
    # canonicalize
    "mul_one": (lambda x: x * 1, ALL, "float32", {}, None),
    "add_zero": ([lambda x: x + 0, lambda x: x + 0.0, lambda x: x + (-0.0)], ALL, "int32", {}, None),
    "sub_zero": ([lambda x: x - 0, lambda x: x - 0.0, lambda x: x - (-0.0)], NUMBERS, "float32", {}, None),
    "div_one": (lambda x: x / 1, ALL, "float32", {}, None),
    "pow_one": (lambda x: x ** 1, NUMBERS, "float64", {}, None),
    "pow_scalar_exponent": (
        [lambda x: se.power(x, 0.5), lambda x: se.power(x, -1.0), lambda x: se.power(x, 2.0),
         lambda x: se.power(x, 1.0), lambda x: se.power(x, 2), lambda x: se.power(x, se.constant(np.float64(0.5)))],
        ALL, "float32", {}, None,
    ),
    "neg_neg": (lambda x: -(-x), NUMBERS, "int8", {}, None),
    "invert_invert": (lambda x: ~(~x), INTS + ("bool",), "bool", {}, None),
    "sub_self": (lambda x: x - x, NUMBERS, "int32", {}, None),
    "sub_to_add_neg": (lambda x, y: x - y, NUMBERS, "float32", {}, None),
    "sub_const": (lambda x: x - 3, NUMBERS, "float32", {}, None),
    "constant_to_right": (
        [lambda x: 2 + x, lambda x: 3 * x, lambda x: se.maximum(0.0, x), lambda x: se.minimum(-0.0, x), lambda x: se.maximum(1, x)],
        ALL, "float32", {}, None,
    ),
    "gather_add_constants": (lambda x: (x + 3) + 4, ALL, "int32", {}, None),
    "gather_mul_constants": (lambda x: (x * 3) * 5, ALL, "int64", {}, None),
    "transpose_transpose": (lambda x: x.T.T, ALL, "float32", {"min_dims": 2}, None),
    "reshape_reshape": (lambda x: x.reshape(-1).reshape(-1), ALL, "float32", {}, None),
    "reshape_noop": (lambda x: x.reshape(2, 3), FLOATS, "float32", {"shapes": (2, 3)}, None),
    "cast_cast": (
        [lambda x, a=a, b=b: x.astype(a).astype(b) for a in ("float64", "float16", "int8", "uint8", "int64", "bool")
         for b in ("float32", "int32")],
        ALL, "float32", {}, None,
    ),
    "log_exp": (lambda x: se.log(se.exp(x)), FLOATS, "float32", {}, 1e-5),
    "exp_log": (lambda x: se.exp(se.log(se.abs(x))), FLOATS, "float64", {}, 1e-5),
    "sum_of_sum": (lambda x: x.sum(axis=0).sum(axis=0), ALL, "int32", {"min_dims": 2}, None),
    "constant_folding": (lambda x: x + se.constant(np.float32(2.0)) * 3.0, ("float32",), "float32", {}, None),
    # stabilize
    "log_softmax": (lambda x: se.log(se.softmax(x)), FLOATS, "float32", {"min_dims": 1}, 1e-5),
    "log1p": (lambda x: se.log(se.abs(x) + 1), FLOATS, "float32", {}, 1e-5),
    "expm1": (lambda x: se.exp(x) + (-1.0), FLOATS, "float32", {}, 1e-5),
    "expm1_sub": (lambda x: se.exp(x) - 1, FLOATS, "float64", {}, 1e-5),
    "logsumexp": (lambda x: se.log(se.exp(x).sum(axis=-1)), FLOATS, "float32", {"min_dims": 1}, 1e-5),
    "softmax_stable": (_softmax_stable, FLOATS, "float32", {"min_dims": 1}, 1e-5),
    "softmax_naive": (_softmax_naive, FLOATS, "float64", {"min_dims": 1}, 1e-5),
    "silu": (lambda x: x * se.sigmoid(x), FLOATS, "float32", {}, 1e-5),
    "gelu_erf": (_gelu_erf, FLOATS, "float32", {}, 1e-5),
    "gelu_tanh": (_gelu_tanh, FLOATS, "float32", {}, 1e-5),
    "rms_norm": (_rms_norm, FLOATS, "float32", {"min_dims": 1}, 1e-4),
    "layer_norm": (_layer_norm, FLOATS, "float64", {"min_dims": 1}, 1e-4),
    "layer_norm_affine": (
        lambda x: se.layer_norm(x) * se.constant(np.float32([1.5, -2.0, 0.5])) + se.constant(np.float32([0.1, 0.2, 0.3])),
        ("float32",), "float32", {"shapes": (None, 3)}, 1e-5,
    ),
    "rms_norm_weight": (lambda x: se.rms_norm(x) * se.constant(np.float32([1.5, -2.0, 0.5])), ("float32",), "float32",
                        {"shapes": (None, 3)}, 1e-5),
    "layer_norm_var": (
        lambda x: (x - x.mean(axis=-1, keepdims=True)) / se.sqrt(x.var(axis=-1, keepdims=True) + 1e-5),
        FLOATS, "float32", {"min_dims": 1}, 1e-4,
    ),
    "logsumexp_shifted": (
        lambda x: se.log(se.exp(x - x.max(axis=-1, keepdims=True)).sum(axis=-1, keepdims=True)) + x.max(axis=-1, keepdims=True),
        FLOATS, "float32", {"min_dims": 1}, 1e-5,
    ),
    # specialize
    "pow_two": (lambda x: se.power(x, 2), NUMBERS, "float32", {}, None),
    "pow_small_int": (lambda x: x ** 3, NUMBERS, "float32", {}, "ulp"),
    "div_by_power_of_two": (lambda x: x / 4.0, ALL, "float32", {}, None),
    "rsqrt": (lambda x: 1 / se.sqrt(x), ALL, "float32", {}, None),
    "add_neg_to_sub": (lambda x, y: x + (-y), NUMBERS, "float32", {}, None),
    "mul_minus_one": (lambda x: x * -1, FLOATS + ("float16", "int8", "int32", "int64"), "float32", {}, None),
}

RULES = {rule.name: rule for _, rule in all_rules()}


def test_every_registered_rule_has_a_target():
    assert sorted(RULES) == sorted(TARGETS)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_rule_fires_on_its_target(name):
    templates, _, dtype, options, _ = TARGETS[name]
    template = templates[0] if isinstance(templates, list) else templates
    shape = options.get("shapes", (2, 3) if options.get("min_dims") else (3,))
    n_args = template.__code__.co_argcount - len(template.__defaults__ or ())
    args = [se.tensor(f"a{i}", dtype=dtype, shape=tuple(shape)) for i in range(n_args)]
    f = assert_rewrite_fires(RULES[name], template(*args))
    assert any(r.rule == name for r in f.rewrite_log)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_rule_preserves_meaning(name):
    templates, dtypes, _, options, tolerance = TARGETS[name]
    templates = templates if isinstance(templates, list) else [templates]
    # Exact rules are checked bit for bit on values that include NaN, +-inf and -0.0;
    # rules that move values toward the exact result get a tolerance and finite values.
    if tolerance is None:
        tol = {"rtol": 0.0, "atol": 0.0}
    elif tolerance == "ulp":
        tol = {}  # symexpr.testing's default: 64 eps of the output dtype
    else:
        tol = {"rtol": tolerance, "atol": tolerance}
    elements = "any" if tolerance is None else "finite"
    # A rule that moves values (toward the exact result) is compared where it acts: ops placed
    # on top could amplify a tiny, legitimate difference without bound (log of ~0, say).
    after = {} if tolerance is None else {"max_ops_after": 0, "max_ops": 0}
    for template in templates:
        for dtype in dtypes:
            try:
                template(se.tensor("probe", dtype=dtype, shape=options.get("shapes", (2, 3))))
            except (TypeError, ValueError, OverflowError):
                continue  # the template does not type-check for this dtype (e.g. -bool)
            strategy = graphs_containing(template, dtypes=(dtype,), elements=elements, **after, **options)
            assert_rewrite_preserves(RULES[name], strategy, max_examples=15, **tol)


def test_reshape_reshape_keeps_what_the_outer_reshape_knew():
    """Found by hypothesis: reshape(reshape(x, (0,)), (-1,)) is statically (0,); merging to reshape(x, (-1,)) was not."""
    x = se.tensor("x", "float16", (None,))
    y = se.reshape(se.reshape(se.reshape(x + 1.0, (0,)), (-1,)), (-1,))
    for backend in ("numpy", "llvm"):
        assert se.function([x], y, backend=backend)(np.zeros((0,), np.float16)).shape == (0,)
