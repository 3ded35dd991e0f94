"""Fusion: fuse_elemwise (Fused) and fuse_reductions (FusedReduce): exact values, group
boundaries, literals, display text, and random graphs.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import symexpr as se
from symexpr.ops.elemwise import Elemwise
from symexpr.ops.fused import Fused, FusedReduce, program_text, short_program_text
from symexpr.testing import assert_rewrite_preserves, graphs
from symexpr.testing.asserts import default_tolerances

FUSE = ["fuse_elemwise"]
FUSE_ALL = ["fuse_elemwise", "fuse_reductions"]


def rng(*key):
    """A generator seeded by ``key``, so values do not depend on test order."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def op_names(f):
    return [n.op.display_name() for n in f.fgraph.toposort()]


def count(f, cls):
    return sum(isinstance(n.op, cls) for n in f.fgraph.toposort())


def special_values(dtype, shape):
    """Random values of ``dtype``; floats include NaN, +-inf and -0.0."""
    dtype = np.dtype(dtype)
    gen = rng(dtype.name, shape)
    size = int(np.prod(shape))
    if dtype.kind == "f":
        values = gen.standard_normal(size) * 3
        specials = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0], dtype=np.float64)
        values[: min(size, len(specials))] = specials[: min(size, len(specials))]
        gen.shuffle(values)
        return values.astype(dtype).reshape(shape)
    if dtype.kind == "b":
        return gen.integers(0, 2, size).astype(bool).reshape(shape)
    info = np.iinfo(dtype)
    return gen.integers(max(info.min, -9), min(info.max, 9), size, endpoint=True).astype(dtype).reshape(shape)


def assert_identical(got, want, reassociated=False):
    """Same dtype, shape and values, zeros' signs included (a NaN's sign carries no meaning).

    ``reassociated``: float values may differ by the rounding of a reordered sum.
    """
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype, f"dtype {got.dtype} vs {want.dtype}"
    assert got.shape == want.shape, f"shape {got.shape} vs {want.shape}"
    if reassociated and got.dtype.kind == "f":
        rtol, atol = default_tolerances(got.dtype, want)
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
        return
    np.testing.assert_array_equal(got, want)
    if got.dtype.kind == "f":
        zeros = want == 0
        np.testing.assert_array_equal(np.signbit(got[zeros]), np.signbit(want[zeros]))  # -0.0 stays -0.0


def compare_with_unfused(inputs, outputs, values, passes, backend):
    """Compile with ``passes`` and without on ``backend``: identical results; return the fused Function.

    Fusion is exact on every backend, so the unfused graph on the same backend is
    the reference (a compiled backend's math functions are a few ulp from NumPy's).
    A compiled backend may order a fused reduction's sum differently from the
    unfused one, so there reductions agree to rounding only.
    """
    reference = se.function(inputs, outputs, passes="none", backend=backend)
    fused = se.function(inputs, outputs, passes=passes, backend=backend)
    want, got = reference(*values), fused(*values)
    if not isinstance(outputs, list):
        want, got = [want], [got]
    with np.errstate(all="ignore"):
        reassociated = backend != "numpy" and any(isinstance(n.op, FusedReduce) for n in fused.fgraph.toposort())
        for g, w in zip(got, want):
            assert_identical(g, w, reassociated)
    return fused


# -- fuse_elemwise: one node, the same values ---------------------------------------------------


def test_a_chain_becomes_one_fused_node_with_the_same_values(backend):
    x, y, z = se.matrix("x"), se.vector("y"), se.matrix("z")
    out = se.tanh(se.exp(x - y) * z + 1.5) / (se.abs(z) + 2.0)
    values = [special_values("float32", (4, 5)), special_values("float32", (5,)), special_values("float32", (4, 5))]
    with np.errstate(all="ignore"):
        f = compare_with_unfused([x, y, z], out, values, FUSE, backend)
    assert count(f, Fused) == 1 and count(f, Elemwise) == 0
    assert len(f.fgraph.toposort()) == 1
    (node,) = f.fgraph.toposort()
    assert list(node.inputs) == [x, y, z]
    assert f.fgraph.outputs[0].type == out.type


@pytest.mark.parametrize(
    "shapes",
    [
        [(3, 4), (4,), ()],
        [(3, 1), (1, 4), (1, 1)],
        [(2, 3, 4), (3, 1), (4,)],
        [(0, 4), (4,), ()],
        [(5,), (1,), (5,)],
    ],
    ids=["matrix-vector-scalar", "outer", "rank3", "empty", "size1"],
)
def test_broadcasting_inputs(shapes, backend):
    x, y, s = (se.tensor(n, "float32", shape=(None,) * len(sh)) for n, sh in zip("xys", shapes))
    out = se.exp(x - y) * s + se.maximum(x, y) - se.sin(s)
    values = [special_values("float32", sh) for sh in shapes]
    f = compare_with_unfused([x, y, s], out, values, FUSE, backend)
    assert len(f.fgraph.toposort()) == 1 and count(f, Fused) == 1


def test_broadcasting_with_static_shapes_keeps_the_static_output_shape():
    x = se.tensor("x", "float32", shape=(3, 1))
    y = se.tensor("y", "float32", shape=(4,))
    out = se.exp(x + y) * 2.0
    f = se.function([x, y], out, passes=FUSE)
    assert f.fgraph.outputs[0].type.shape == (3, 4) == out.type.shape
    assert count(f, Fused) == 1


@pytest.mark.parametrize(
    "dtypes",
    [
        ("float32", "float64", "int8"),
        ("int8", "uint8", "float16"),
        ("int32", "uint32", "bool"),
        ("float16", "int64", "uint64"),
        ("bool", "bool", "int16"),
    ],
)
def test_mixed_dtypes(dtypes, backend):
    a_t, b_t, c_t = dtypes
    a, b = se.matrix("a", dtype=a_t), se.vector("b", dtype=b_t)
    c = se.tensor("c", dtype=c_t, shape=(None, 1))
    out = se.where(se.less(a, b), a * 3 + b, c) + se.maximum(b, c) * 2
    values = [special_values(a_t, (3, 4)), special_values(b_t, (4,)), special_values(c_t, (3, 1))]
    with np.errstate(all="ignore"):
        f = compare_with_unfused([a, b, c], out, values, FUSE, backend)
    assert count(f, Fused) == 1 and count(f, Elemwise) == 0
    assert f.fgraph.outputs[0].dtype == out.dtype


def test_mixed_float_dtypes_with_casts(backend):
    x16, x64 = se.vector("x16", dtype="float16"), se.vector("x64", dtype="float64")
    out = se.cast(se.exp(x16) * 3.0, "float32") + se.cast(x64, "float16") - se.sqrt(se.abs(x64))
    values = [special_values("float16", (7,)), special_values("float64", (7,))]
    with np.errstate(all="ignore"):
        f = compare_with_unfused([x16, x64], out, values, FUSE, backend)
    assert count(f, Fused) == 1


def test_a_single_elementwise_node_is_not_wrapped():
    x = se.vector("x")
    f = se.function([x], se.exp(x), passes=FUSE)
    assert op_names(f) == ["Exp"]
    assert f.rewrite_log == []


def test_fusion_stops_at_non_elementwise_nodes(backend):
    x = se.matrix("x")
    out = se.exp(se.softmax(x * 2.0 + 1.0, axis=1)) - 1.0
    a = special_values("float32", (3, 4))
    with np.errstate(all="ignore"):
        f = compare_with_unfused([x], out, [a], FUSE, backend)
    assert op_names(f) == ["Fused{i0 * 2.0 + 1.0}", "Softmax{axis=1}", "Fused{exp(i0) - 1.0}"]


def test_fuse_records_each_group():
    x = se.matrix("x")
    out = se.exp(se.softmax(x * 2.0 + 1.0, axis=1)) - 1.0
    f = se.function([x], out, passes=FUSE)
    assert [r.rule for r in f.rewrite_log] == ["fuse_elemwise", "fuse_elemwise"]
    assert f.rewrite_log[-1].before is out
    assert f.rewrite_log[-1].after is f.fgraph.outputs[0]


# -- group boundaries ---------------------------------------------------------------------------


def test_an_intermediate_used_twice_is_not_absorbed_into_either_consumer(backend):
    x, y = se.matrix("x"), se.matrix("y")
    t = se.exp(x - y)
    outs = [se.sin(t) * 2.0 + 1.0, se.cos(t) * 3.0]
    values = [special_values("float32", (3, 4)), special_values("float32", (3, 4))]
    with np.errstate(all="ignore"):
        f = compare_with_unfused([x, y], outs, values, FUSE, backend)
    nodes = f.fgraph.toposort()
    assert count(f, Fused) == 3 and count(f, Elemwise) == 0 and len(nodes) == 3
    producer = nodes[0]
    assert producer.op.display_name() == "Fused{exp(i0 - i1)}"
    for out in f.fgraph.outputs:
        assert list(out.owner.inputs) == [producer.outputs[0]]
    # nothing is computed twice: exp appears in one program only
    programs = [n.op.program for n in nodes]
    assert sum(op.name == "exp" for p in programs for op, _ in p) == 1


def test_an_intermediate_used_twice_by_one_consumer_is_absorbed(backend):
    x = se.vector("x")
    t = se.tanh(x * 2.0 + 1.0)
    values = [special_values("float32", (6,))]
    f = compare_with_unfused([x], t * t, values, FUSE, backend)
    assert count(f, Fused) == 1 and len(f.fgraph.toposort()) == 1
    (node,) = f.fgraph.toposort()
    assert sum(op.name == "tanh" for op, _ in node.op.program) == 1  # computed once


def test_an_intermediate_used_by_a_non_elementwise_node_is_not_absorbed():
    x = se.matrix("x")
    t = se.exp(x) * 2.0
    out = t + t.sum(axis=1, keepdims=True)
    f = se.function([x], out, passes=FUSE)
    assert op_names(f) == ["Fused{exp(i0) * 2.0}", "Sum{axis=(1,), keepdims=True}", "Add"]


def test_a_graph_output_used_inside_is_not_absorbed(backend):
    x = se.matrix("x")
    t = se.exp(x * 2.0)
    outs = [t, se.sin(t) + 1.0]
    values = [special_values("float32", (2, 3))]
    with np.errstate(all="ignore"):
        f = compare_with_unfused([x], outs, values, FUSE, backend)
    first, second = f.fgraph.outputs
    assert first.owner.op.display_name() == "Fused{exp(i0 * 2.0)}"
    assert second.owner.op.display_name() == "Fused{sin(i0) + 1.0}"
    assert list(second.owner.inputs) == [first]
    assert count(f, Fused) == 2 and count(f, Elemwise) == 0


def test_a_graph_output_used_inside_a_single_node_chain_stays_unfused():
    x = se.matrix("x")
    t = se.exp(x)
    f = se.function([x], [t, se.sin(t) * 2.0], passes=FUSE)
    assert op_names(f) == ["Exp", "Fused{sin(i0) * 2.0}"]


def test_the_same_variable_as_two_outputs():
    x = se.vector("x")
    t = se.exp(x) * 2.0
    f = se.function([x], [t, t], passes=FUSE)
    assert f.fgraph.outputs[0] is f.fgraph.outputs[1]
    a = special_values("float32", (4,))
    got = f(a)
    with np.errstate(all="ignore"):
        assert_identical(got[0], np.exp(a) * np.float32(2))
        assert_identical(got[1], got[0])


def test_a_fused_node_already_in_the_graph_is_absorbed(backend):
    x = se.vector("x")
    from symexpr.ops import scalar as ps

    inner = Fused(((ps.exp, (("in", 0),)), (ps.mul, (("tmp", 0), ("const", 2.0, "float32")))))(x)
    out = se.sin(inner) - x
    values = [special_values("float32", (5,))]
    with np.errstate(all="ignore"):
        f = compare_with_unfused([x], out, values, FUSE, backend)
    assert op_names(f) == ["Fused{sin(exp(i0) * 2.0) - i0}"]


# -- constants ---------------------------------------------------------------------------------


def test_zero_d_constants_become_literals_not_inputs():
    x = se.matrix("x")
    row = se.constant(np.arange(3, dtype="float32"))
    out = (x + 2.0) * row - se.constant(np.float32(0.5))
    f = se.function([x], out, passes=FUSE)
    (node,) = f.fgraph.toposort()
    assert list(node.inputs) == [x, row]  # the 1-d constant is an input, the 0-d ones are not
    consts = [a for _, args in node.op.program for a in args if a[0] == "const"]
    assert consts == [("const", 2.0, "float32"), ("const", 0.5, "float32")]
    assert node.op.display_name() == "Fused{(i0 + 2.0) * i1 - 0.5}"
    a = special_values("float32", (2, 3))
    with np.errstate(all="ignore"):
        assert_identical(f(a), se.function([x], out, passes="none")(a))


def test_zero_d_integer_and_bool_literals_keep_their_dtype(backend):
    i = se.vector("i", dtype="int8")
    b = se.vector("b", dtype="bool")
    out = se.where(b & se.constant(np.True_), i * 3 + se.constant(np.int8(-128)), i)
    values = [special_values("int8", (6,)), special_values("bool", (6,))]
    f = compare_with_unfused([i, b], out, values, FUSE, backend)
    (node,) = f.fgraph.toposort()
    assert list(node.inputs) == [b, i]  # in first-use order
    consts = [a for _, args in node.op.program for a in args if a[0] == "const"]
    assert consts == [("const", True, "bool"), ("const", 3, "int8"), ("const", -128, "int8")]
    assert node.op.display_name() == "Fused{where(i0 & True, i1 * 3 + -128, i1)}"


def test_special_float_literals(backend):
    x = se.vector("x", dtype="float64")
    out = se.maximum(x + se.constant(np.float64(-0.0)), se.constant(np.float64(np.nan))) * se.constant(np.float64(np.inf))
    values = [special_values("float64", (6,))]
    with np.errstate(all="ignore"):
        f = compare_with_unfused([x], out, values, FUSE, backend)
    (node,) = f.fgraph.toposort()
    assert list(node.inputs) == [x]


# -- display -------------------------------------------------------------------------------


def test_fused_display_text():
    x, y, z = se.matrix("x"), se.vector("y"), se.matrix("z")
    f = se.function([x, y, z], se.exp(x - y) * z, passes=FUSE)
    (node,) = f.fgraph.toposort()
    assert node.op.display_name() == "Fused{exp(i0 - i1) * i2}"
    assert se.pprint(f) == "fused[exp(i0 - i1) * i2](x, y, z)"
    assert se.debugprint(f, file="str") == (
        "Fused{exp(i0 - i1) * i2} [id A] float32 (None, None)\n"
        " ├─ x [id B] float32 (None, None)\n"
        " ├─ y [id C] float32 (None,)\n"
        " └─ z [id D] float32 (None, None)\n"
    )


@pytest.mark.parametrize(
    "build, text",
    [
        (lambda x, y: (x - y) - (y - x), "Fused{i0 - i1 - (i1 - i0)}"),
        (lambda x, y: -(x ** 3.0) + (-x) ** 3.0, "Fused{-i0 ** 3.0 + (-i0) ** 3.0}"),
        (lambda x, y: (x ** y) ** 3.0 + x ** (y ** 3.0), "Fused{(i0 ** i1) ** 3.0 + i0 ** i1 ** 3.0}"),
        (lambda x, y: (x + 1.0) * y / 3.0, "Fused{(i0 + 1.0) * i1 / 3.0}"),
        (lambda x, y: (x - 1.0) / (y * 2.0), "Fused{(i0 - 1.0) / (i1 * 2.0)}"),
        (lambda x, y: se.maximum(x, y) * -1.0, "Fused{maximum(i0, i1) * -1.0}"),
        (lambda x, y: se.gelu(x, approximate="tanh") + y, "Fused{gelu(i0, approximate=tanh) + i1}"),
    ],
)
def test_fused_display_text_precedence(build, text):
    x, y = se.vector("x"), se.vector("y")
    f = se.function([x, y], build(x, y), passes=FUSE)
    assert f.fgraph.outputs[0].owner.op.display_name() == text


def test_fused_display_of_a_comparison_of_a_comparison_keeps_parentheses():
    """``(x < y) == b`` must not print as ``i0 < i1 == i2``, which Python reads as a chained comparison."""
    x, y = se.vector("x"), se.vector("y")
    b = se.vector("b", dtype="bool")
    f = se.function([x, y, b], se.where(se.equal(se.less(x, y), b), x, y), passes=FUSE)
    assert se.pprint(se.equal(se.less(x, y), b)) == "(x < y) == b"
    assert f.fgraph.outputs[0].owner.op.display_name() == "Fused{where((i0 < i1) == i2, i0, i1)}"


def test_fused_display_names_a_temporary_used_twice():
    x, b = se.matrix("x"), se.vector("b")
    t = se.tanh(x * 2.0 + b)
    f = se.function([x, b], t * t, passes=FUSE)
    assert f.fgraph.outputs[0].owner.op.display_name() == "Fused{t2 = tanh(i0 * 2.0 + i1); t2 * t2}"


def test_fused_display_of_a_200_deep_chain_stays_bounded():
    x = se.vector("x")
    v = x
    for k in range(200):
        v = se.sin(v) + 1.0 if k % 2 else se.exp(v) * 0.5
    f = se.function([x], v, passes=FUSE)
    (node,) = f.fgraph.toposort()
    op = node.op
    assert len(op.program) == 400
    full = program_text(op.program)
    assert len(full) <= 20 * len(op.program)  # linear in the program
    short = short_program_text(op.program)
    assert len(short) <= 160
    assert short.endswith("... (400 ops)")
    assert op.display_name() == f"Fused{{{short}}}"
    assert len(op.display_name()) <= 170
    assert "\n" not in se.debugprint(f, file="str").rstrip("\n").split("\n")[0]
    assert len(str(f.rewrite_log[0])) <= 2 * 120 + 40


def test_fused_display_of_a_200_deep_chain_with_reuse_stays_linear():
    """Each level uses the one below twice: written out in full the text would double per level."""
    x = se.vector("x")
    v = x
    for _ in range(200):
        v = se.tanh(v) * se.tanh(v)
    with np.errstate(all="ignore"):
        f = se.function([x], v, passes=FUSE)
    (node,) = f.fgraph.toposort()
    op = node.op
    assert len(op.program) == 400
    assert len(program_text(op.program)) <= 20 * len(op.program)
    assert len(op.display_name()) <= 170 and op.display_name().endswith("(400 ops)}")
    assert len(se.pprint(f)) <= 200


def test_fused_reduce_display_text():
    x = se.matrix("x")
    f = se.function([x], se.exp(x).sum(axis=1), passes=FUSE_ALL)
    assert op_names(f) == ["FusedReduce{sum(axis=(1,)) of exp(i0)}"]
    g = se.function([x], (se.exp(x) * 2.0).max(axis=0, keepdims=True), passes=FUSE_ALL)
    assert op_names(g) == ["FusedReduce{max(axis=(0,), keepdims=True) of exp(i0) * 2.0}"]
    assert g.fgraph.outputs[0].type.shape == (1, None)


# -- fuse_reductions -----------------------------------------------------------------------


def test_fused_reduce_sum_exp_x_minus_m_equals_unfused(backend):
    x = se.matrix("x")
    m = x.max(axis=1, keepdims=True)
    out = se.sum(se.exp(x - m), axis=1)
    for a in (rng("sum-exp").standard_normal((5, 7)).astype("float32") * 10, special_values("float32", (4, 6))):
        with np.errstate(all="ignore"):
            f = compare_with_unfused([x], out, [a], FUSE_ALL, backend)
    assert op_names(f) == ["Max{axis=(1,), keepdims=True}", "FusedReduce{sum(axis=(1,)) of exp(i0 - i1)}"]
    assert [r.rule for r in f.rewrite_log] == ["fuse_elemwise", "fuse_reduction"]


@pytest.mark.parametrize("kind", ["sum", "prod", "max", "min"])
@pytest.mark.parametrize("axis, keepdims", [((0,), False), ((1,), True), ((0, 1), False), (None, True)])
def test_fused_reduce_kinds_equal_unfused(kind, axis, keepdims, backend):
    x, y = se.matrix("x"), se.vector("y", dtype="float64")
    elem = se.tanh(x) * y + 0.5
    out = getattr(se, kind)(elem, axis=axis, keepdims=keepdims)
    gen = rng(kind, axis, keepdims)
    values = [gen.standard_normal((3, 4)).astype("float32"), gen.standard_normal(4)]
    f = compare_with_unfused([x, y], out, values, FUSE_ALL, backend)
    assert count(f, FusedReduce) == 1 and len(f.fgraph.toposort()) == 1


@pytest.mark.parametrize("dtype", ["int8", "uint8", "bool", "float16"])
def test_fused_reduce_small_dtypes_keep_numpys_accumulator_dtype(dtype, backend):
    x = se.matrix("x", dtype=dtype)
    elem = se.maximum(x, x) if dtype == "bool" else x * 3
    out = se.sum(elem, axis=1)
    a = special_values(dtype, (3, 5))
    with np.errstate(all="ignore"):
        f = compare_with_unfused([x], out, [a], FUSE_ALL, backend)
    assert count(f, FusedReduce) == 1
    assert f.fgraph.outputs[0].dtype == out.dtype


def test_fused_reduce_of_a_single_elementwise_node(backend):
    x = se.matrix("x")
    a = special_values("float32", (3, 4))
    with np.errstate(all="ignore"):
        f = compare_with_unfused([x], se.exp(x).sum(axis=1), [a], FUSE_ALL, backend)
    assert op_names(f) == ["FusedReduce{sum(axis=(1,)) of exp(i0)}"]


def test_a_reduction_whose_input_has_other_uses_is_not_fused(backend):
    x = se.matrix("x")
    e = se.exp(x) * 2.0
    a = special_values("float32", (3, 4))
    with np.errstate(all="ignore"):
        f = compare_with_unfused([x], [e.sum(axis=1), e.max(axis=1)], [a], FUSE_ALL, backend)
        g = compare_with_unfused([x], [e, e.sum(axis=0)], [a], FUSE_ALL, backend)
        h = compare_with_unfused([x], e.sum(axis=1, keepdims=True) + e, [a], FUSE_ALL, backend)
    for fn in (f, g, h):
        assert count(fn, FusedReduce) == 0
    assert op_names(f) == ["Fused{exp(i0) * 2.0}", "Sum{axis=(1,)}", "Max{axis=(1,)}"]
    assert op_names(g) == ["Fused{exp(i0) * 2.0}", "Sum{axis=(0,)}"]


def test_max_with_initial_is_not_fused(backend):
    x = se.matrix("x")
    out = se.Reduce("max", (1,), initial=-np.inf)(se.exp(x) * 2.0)
    for shape in ((3, 4), (3, 0)):
        a = special_values("float32", shape)
        with np.errstate(all="ignore"):
            f = compare_with_unfused([x], out, [a], FUSE_ALL, backend)
    assert count(f, FusedReduce) == 0
    assert op_names(f) == ["Fused{exp(i0) * 2.0}", "Max{axis=(1,), initial=-inf}"]


def test_mean_is_not_fused():
    x = se.matrix("x")
    f = se.function([x], (se.exp(x) * 2.0).mean(axis=1), passes=FUSE_ALL)
    assert count(f, FusedReduce) == 0


def test_a_reduction_of_an_input_is_not_fused():
    x = se.matrix("x")
    f = se.function([x], x.sum(axis=1), passes=FUSE_ALL)
    assert count(f, FusedReduce) == 0


def test_a_reduction_of_an_input_with_a_consumer_gets_an_identity_body_and_an_epilogue():
    x = se.matrix("x")
    f = se.function([x], x.sum(axis=1) * 2.0, passes=FUSE_ALL)
    (node,) = f.fgraph.toposort()
    assert node.op.display_name() == "FusedReduce{sum(axis=(1,)) of identity(i0), then i0 * 2.0}"


# -- random graphs --------------------------------------------------------------------------


def test_fusion_preserves_results_exactly_on_random_graphs(backend):
    strategy = graphs(ops=["unary", "binary", "scalar", "compare"], elements="any")
    assert_rewrite_preserves(FUSE_ALL, strategy, rtol=0, atol=0, backend=backend, reference_backend=backend)


def test_fusion_preserves_reductions_on_random_graphs(backend):
    """Exact on NumPy; a compiled backend may order a fused sum differently from the unfused one."""
    strategy = graphs(ops=["unary", "binary", "scalar", "compare", "reduce"], elements="any")
    exact = {"rtol": 0, "atol": 0} if backend == "numpy" else {}
    assert_rewrite_preserves(FUSE_ALL, strategy, backend=backend, reference_backend=backend, **exact)


def test_fusion_preserves_results_exactly_on_random_integer_and_bool_graphs(backend):
    strategy = graphs(ops=["unary", "binary", "scalar", "compare", "reduce"], elements="any",
                      dtypes=("int8", "uint8", "int32", "bool", "float16"))
    assert_rewrite_preserves(FUSE_ALL, strategy, rtol=0, atol=0, backend=backend, reference_backend=backend)


# -- reductions fused with their elementwise consumer (epilogue) -----------------------------------


def test_reduction_consumer_becomes_the_epilogue(backend):
    x = se.matrix("x")
    out = se.sqrt((x * x).sum(axis=-1) + 1e-6) * 2.0
    f = se.function([x], out, backend=backend)
    (node,) = f.fgraph.toposort()
    assert isinstance(node.op, FusedReduce) and node.op.epilogue
    assert node.op.display_name() == "FusedReduce{sum(axis=(1,)) of i0 * i0, then sqrt(i0 + 1e-06) * 2.0}"
    a = np.random.default_rng(0).standard_normal((3, 5)).astype("float32")
    np.testing.assert_array_equal(f(a), se.function([x], out, passes="none")(a))


def test_epilogue_takes_extra_inputs_that_fit_the_reduced_shape(backend):
    x = se.matrix("x")
    scale = se.constant(np.float32([[2.0]]))
    out = x.sum(axis=1, keepdims=True) * scale + 1.0
    f = se.function([x], out, backend=backend)
    (node,) = f.fgraph.toposort()
    assert isinstance(node.op, FusedReduce) and node.op.epilogue and node.op.n_body == 1
    a = np.arange(6, dtype="float32").reshape(2, 3)
    np.testing.assert_array_equal(f(a), se.function([x], out, passes="none")(a))


def test_epilogue_is_not_fused_when_another_input_could_enlarge_the_result():
    x, n = se.matrix("x"), se.vector("n")
    f = se.function([x, n], (x * x).sum(axis=1) / n)
    reduce_nodes = [node for node in f.fgraph.toposort() if isinstance(node.op, FusedReduce)]
    assert len(reduce_nodes) == 1 and not reduce_nodes[0].op.epilogue


def test_epilogue_is_not_fused_when_the_reduction_has_other_uses():
    x = se.matrix("x")
    s = (x * x).sum(axis=1)
    f = se.function([x], [se.sqrt(s), s + 1.0])
    reduce_nodes = [node for node in f.fgraph.toposort() if isinstance(node.op, FusedReduce)]
    assert len(reduce_nodes) == 1 and not reduce_nodes[0].op.epilogue


def test_epilogue_with_several_other_inputs(backend):
    # Regression: numbering the epilogue's inputs compared variables with ==, which builds a node.
    x, a, b = se.vector("x"), se.scalar("a"), se.scalar("b")
    out = x.sum() * a + b
    f = se.function([x, a, b], out, backend=backend)
    (node,) = f.fgraph.toposort()
    assert isinstance(node.op, FusedReduce) and node.op.epilogue
    args = np.float32([1, 2, 3]), np.float32(2), np.float32(-1)
    np.testing.assert_array_equal(f(*args), se.function([x, a, b], out, passes="none")(*args))


def test_a_chain_longer_than_the_cap_becomes_several_fused_nodes():
    from symexpr.passes.fusion import MAX_FUSED_NODES

    x = se.vector("x")
    v = x
    for k in range(MAX_FUSED_NODES + 100):
        v = se.sin(v) if k % 2 else v * 0.5
    values = [np.linspace(-2, 2, 11, dtype="float32")]
    f = compare_with_unfused([x], v, values, FUSE, "numpy")
    sizes = [len(n.op.program) for n in f.fgraph.toposort()]
    assert all(isinstance(n.op, Fused) for n in f.fgraph.toposort())
    assert len(sizes) == 2 and max(sizes) == MAX_FUSED_NODES and sum(sizes) == MAX_FUSED_NODES + 100
