"""Cleanup: constant folding (and what it must not fold), merging equal constants, and
common-subexpression elimination by hash-consing.
"""

from __future__ import annotations

import numpy as np
import pytest

import symexpr as se
from symexpr.passes.cleanup import MAX_FOLD_GROWTH


def constants_in(f):
    return [v for v in f.fgraph.variables if isinstance(v, se.Constant)]


def op_names(f):
    return [n.op.display_name() for n in f.fgraph.toposort()]


def rules_fired(f):
    return [r.rule for r in f.rewrite_log]


# -- constant folding ----------------------------------------------------------------------


def test_an_all_constant_subgraph_folds_to_numpys_value(backend):
    x = se.vector("x")
    base = np.arange(4, dtype="float32")
    scale = se.exp(se.constant(base) * 0.5 + 1.0) - se.constant(np.float32(3))
    f = se.function([x], x * scale, passes="fast_compile", backend=backend)
    assert op_names(f) == ["Mul"]
    (folded,) = [v for v in f.fgraph.outputs[0].owner.inputs if isinstance(v, se.Constant)]
    want = np.exp(base * np.float32(0.5) + np.float32(1.0)) - np.float32(3)
    assert folded.data.dtype == want.dtype == np.dtype("float32")
    np.testing.assert_array_equal(folded.data, want)
    assert set(rules_fired(f)) == {"constant_folding"}
    a = np.linspace(-1, 1, 4).astype("float32")
    np.testing.assert_array_equal(f(a), a * want)


@pytest.mark.parametrize(
    "build, expected",
    [
        (lambda: se.constant(np.arange(6, dtype="int8")).reshape(2, 3).T * 3, np.arange(6, dtype="int8").reshape(2, 3).T * np.int8(3)),
        (lambda: se.constant(np.arange(6, dtype="float64")).reshape(2, 3).sum(axis=1), np.arange(6.0).reshape(2, 3).sum(axis=1)),
        (lambda: se.softmax(se.constant(np.array([1.0, 2.0, 3.0], "float32")), axis=0), None),
        (lambda: se.constant(np.array([True, False])) & se.constant(np.array([True, True])), np.array([True, False])),
        (lambda: se.cast(se.constant(np.array([1.7, -2.5])), "int32"), np.array([1, -2], "int32")),
    ],
    ids=["int8-reshape-transpose", "sum", "softmax", "bool", "cast"],
)
def test_folded_constant_equals_the_node_value(build, expected, backend):
    var = build()
    if expected is None:
        expected = se.function([], var, passes="none", backend="numpy")()  # folding runs NumPy's perform
    f = se.function([], var, passes=["cleanup"], backend=backend)
    (out,) = f.fgraph.outputs
    assert isinstance(out, se.Constant)
    assert out.data.dtype == np.asarray(expected).dtype
    np.testing.assert_array_equal(out.data, expected)
    np.testing.assert_array_equal(f(), expected)


def test_folding_feeds_the_other_canonicalize_rules():
    x = se.vector("x")
    f = se.function([x], x * (se.constant(np.float32(3)) - 2.0), passes=["canonicalize"])
    assert f.fgraph.outputs[0] is x
    assert "constant_folding" in rules_fired(f) and rules_fired(f)[-1] == "mul_one"


def test_folding_keeps_special_values():
    x = se.vector("x", dtype="float64")
    k = se.constant(np.array([0.0, -1.0, 1.0])) / se.constant(np.array([0.0, 0.0, 0.0]))
    neg_zero = se.constant(np.float64(-1.0)) * se.constant(np.float64(0.0))
    f = se.function([x], x + k + neg_zero, passes=["cleanup"])
    folded = [c.data for c in constants_in(f)]
    assert any(d.shape == (3,) and np.isnan(d[0]) and d[1] == -np.inf and d[2] == np.inf for d in folded)
    assert any(d.shape == () and d == 0 and np.signbit(d) for d in folded)


def test_a_large_broadcast_of_a_scalar_is_not_folded(backend):
    x = se.vector("x")
    big = se.broadcast_to(se.constant(np.float32(1)), (300, 300))
    f = se.function([x], x + big.sum(), backend=backend)
    assert op_names(f)[:2] == ["BroadcastTo{shape=(300, 300)}", "Sum{axis=(0, 1)}"]
    assert all(c.data.size <= 1 for c in constants_in(f))
    np.testing.assert_array_equal(f(np.zeros(2, "float32")), np.full(2, 90000, "float32"))


def test_fold_growth_limit_boundary():
    at_limit = se.broadcast_to(se.constant(np.float32(2)), (MAX_FOLD_GROWTH // 256, 256))
    over = se.broadcast_to(se.constant(np.float32(2)), (MAX_FOLD_GROWTH // 256 + 1, 256))
    f = se.function([], at_limit, passes=["cleanup"])
    assert isinstance(f.fgraph.outputs[0], se.Constant) and f.fgraph.outputs[0].data.size == MAX_FOLD_GROWTH
    g = se.function([], over, passes=["cleanup"])
    assert not isinstance(g.fgraph.outputs[0], se.Constant)
    assert op_names(g) == [f"BroadcastTo{{shape=({MAX_FOLD_GROWTH // 256 + 1}, 256)}}"]


def test_a_large_result_no_larger_than_its_input_is_folded():
    data = np.arange(300 * 300, dtype="float32").reshape(300, 300)
    f = se.function([], se.constant(data) * 2.0, passes=["cleanup"])
    (out,) = f.fgraph.outputs
    assert isinstance(out, se.Constant)
    np.testing.assert_array_equal(out.data, data * np.float32(2))


def test_a_node_whose_evaluation_raises_is_left_for_call_time(backend):
    i = se.vector("i", dtype="int64")
    bad = se.take(se.constant(np.arange(3)), se.constant(np.array([5])))
    f = se.function([i], i + bad, backend=backend)  # compiling does not raise
    assert "Take{axis=0}" in op_names(f)
    assert not any(r.rule == "constant_folding" and r.before is bad for r in f.rewrite_log)
    with pytest.raises(IndexError, match="Take"):
        f(np.arange(1))


def test_a_node_whose_evaluation_raises_in_a_constant_only_output(backend):
    bad = se.take(se.constant(np.arange(3, dtype="float32")), se.constant(np.array([-7])))
    f = se.function([], bad * 2.0, backend=backend)
    with pytest.raises(IndexError, match="Take"):
        f()


def test_folding_an_integer_power_error_is_left_for_call_time(backend):
    i = se.vector("i", dtype="int64")
    f = se.function([i], i + se.constant(2) ** se.constant(-1), backend=backend)
    with pytest.raises(ValueError, match="negative integer powers"):
        f(np.arange(2))


# -- merging constants ---------------------------------------------------------------------


def test_merge_makes_equal_constants_with_different_names_one(backend):
    x = se.vector("x")
    two = se.constant(np.float32(2), name="two")
    deux = se.constant(np.float32(2), name="deux")
    assert two is not deux
    f = se.function([x], x * two + x * deux, passes=["merge"], backend=backend)
    assert constants_in(f) == [two]  # the first one met
    assert [(r.pass_name, r.rule) for r in f.rewrite_log] == [("merge", "merge_constants")]
    assert f.rewrite_log[0].before is deux and f.rewrite_log[0].after is two
    # after the merge x * two and x * deux are one node: CSE for free
    assert op_names(f) == ["Mul", "Add"]
    np.testing.assert_array_equal(f(np.arange(3, dtype="float32")), np.arange(3, dtype="float32") * 4)


def test_merge_of_named_and_unnamed_array_constants():
    x = se.matrix("x")
    data = np.arange(6, dtype="int32").reshape(2, 3)
    a = se.constant(data, name="table")
    b = se.constant(data.copy())
    f = se.function([x], [x * a, x + b], passes="fast_compile")
    consts = constants_in(f)
    assert len(consts) == 1
    np.testing.assert_array_equal(consts[0].data, data)


@pytest.mark.parametrize(
    "first, second",
    [
        (np.float32(2), np.float32(3)),
        (np.float32(2), np.float64(2)),
        (np.float32(0.0), np.float32(-0.0)),
        (np.float32(2), np.array([2], "float32")),
        (np.array([1, 2], "int32"), np.array([2, 1], "int32")),
        (np.int8(1), np.True_),
    ],
    ids=["values", "dtypes", "signed-zero", "shapes", "order", "int-vs-bool"],
)
def test_merge_keeps_different_constants_apart(first, second):
    x = se.vector("x", dtype="float64")
    a = se.constant(first, name="a")
    b = se.constant(second, name="b")
    f = se.function([x], [x * a, x * b], passes=["merge"])
    assert len(constants_in(f)) == 2
    assert f.rewrite_log == []


def test_merge_keeps_results_that_depend_on_the_sign_of_zero(backend):
    x = se.vector("x")
    pos = se.constant(np.float32(0.0), name="pos")
    neg = se.constant(np.float32(-0.0), name="neg")
    f = se.function([x], [x * 0.0 + pos, x * 0.0 + neg], passes="fast_run", backend=backend)
    a = np.array([1.0, -1.0], "float32")
    got_pos, got_neg = f(a)
    want_pos, want_neg = se.function([x], [x * 0.0 + pos, x * 0.0 + neg], passes="none")(a)
    np.testing.assert_array_equal(np.signbit(got_pos), np.signbit(want_pos))
    np.testing.assert_array_equal(np.signbit(got_neg), np.signbit(want_neg))


# -- CSE by hash-consing -------------------------------------------------------------------


def test_equal_subgraphs_built_twice_are_one_node():
    x, y = se.vector("x"), se.vector("y")
    a = se.exp(x * y) * 2.0
    b = se.exp(x * y) * 2.0
    assert a is b
    f = se.function([x, y], a + b, passes="none")
    assert op_names(f) == ["Mul", "Exp", "Mul", "Add"]
    assert len(f.fgraph.toposort()) == 4
    add = f.fgraph.outputs[0].owner
    assert add.inputs[0] is add.inputs[1]


def test_cse_across_outputs_and_constants_built_twice():
    x = se.matrix("x")
    outs = [se.softmax(x * se.constant(np.float32(3)), axis=1), se.softmax(x * se.constant(np.float32(3)), axis=1).sum()]
    f = se.function([x], outs, passes="none")
    assert len(f.fgraph.toposort()) == 3  # Mul, Softmax, Sum
    assert outs[1].owner.inputs[0] is outs[0]


def test_operands_are_not_reordered():
    x, y = se.vector("x"), se.vector("y")
    f = se.function([x, y], (x + y) * (y + x), passes="none")
    assert len(f.fgraph.toposort()) == 3
    g = se.function([x, y], (x + y) * (x + y), passes="none")
    assert len(g.fgraph.toposort()) == 2


def test_cse_needs_no_pass_and_rewrites_keep_it(backend):
    x = se.vector("x")
    t = se.exp(x) * 1.0
    f = se.function([x], se.sin(t) + se.cos(se.exp(x) * 1.0), passes=["canonicalize"], backend=backend)
    exps = [n for n in f.fgraph.toposort() if n.op.display_name() == "Exp"]
    assert len(exps) == 1
    a = np.linspace(-1, 1, 5).astype("float32")
    np.testing.assert_allclose(f(a), np.sin(np.exp(a)) + np.cos(np.exp(a)), rtol=1e-6)
