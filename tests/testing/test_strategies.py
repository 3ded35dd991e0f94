"""symexpr.testing.strategies: the drawn graphs are well typed, run, cover every op family, and read well."""

from __future__ import annotations

import functools
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.vendor.pretty import pretty

import symexpr as se
from symexpr.graph.traversal import ancestors, toposort
from symexpr.ops import scalar as ps
from symexpr.testing import FAMILIES, GraphCase, arrays_for, cases_for, elements_for, graphs, graphs_containing

SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}


def prop(max_examples=None, **kwargs):
    """Settings for a property here; ``max_examples`` is fixed (not scaled by the profile) when given."""
    return settings(**SETTINGS, **({} if max_examples is None else {"max_examples": max_examples}), **kwargs)


#: Coverage counts are checked on a fixed sequence of examples, whatever the profile.
COVERAGE = {"derandomize": True, "database": None}


# -- classifying drawn nodes by the family and op that made them --------------------------------

_SCALAR_NAMES = {"pow": "power", "lt": "less", "le": "less_equal", "gt": "greater", "ge": "greater_equal",
                 "eq": "equal", "neq": "not_equal"}
_SHAPE_OPS = {se.Reshape: "reshape", se.Transpose: "transpose", se.ExpandDims: "expand_dims", se.Squeeze: "squeeze",
              se.BroadcastTo: "broadcast_to", se.Concatenate: "concatenate", se.Subtensor: "getitem"}
_NNET_OPS = {se.Softmax: "softmax", se.LogSoftmax: "log_softmax", se.LogSumExp: "logsumexp",
             se.LayerNorm: "layer_norm", se.RMSNorm: "rms_norm"}


def classify(node) -> tuple[str, str]:
    """``(family, op name)`` of a node, as :data:`FAMILIES` names them."""
    op = node.op
    if isinstance(op, se.Elemwise):
        sop = op.scalar_op
        if isinstance(sop, ps.Cast):
            return "cast", "cast"
        name = _SCALAR_NAMES.get(sop.name, sop.name)
        if name == "where" or name in FAMILIES["compare"]:
            return "compare", name
        if sop.nin == 1:
            return "unary", name
        weak = any(isinstance(v, se.Constant) and v.ndim == 0 for v in node.inputs)
        return ("scalar" if weak else "binary"), name
    if isinstance(op, se.Reduce):
        return "reduce", op.kind
    if isinstance(op, se.Var):
        return "reduce", "var"
    if isinstance(op, se.MatMul):
        return "matmul", "matmul"
    for cls, name in {**_SHAPE_OPS, **_NNET_OPS}.items():
        if isinstance(op, cls):
            return ("shape" if cls in _SHAPE_OPS else "nnet"), name
    raise AssertionError(f"unexpected op {op}")


def check_runs(case: GraphCase, passes="none"):
    """Compile and run on the numpy backend; the results agree with the outputs' static types."""
    results = case.run(passes=passes)
    assert len(results) == len(case.outputs)
    for var, value in zip(case.outputs, results):
        assert isinstance(value, np.ndarray)
        assert value.dtype.name == var.dtype, (var.type, value.dtype)
        assert value.ndim == var.ndim, (var.type, value.shape)
        assert all(d is None or d == s for d, s in zip(var.type.shape, value.shape)), (var.type, value.shape)
    return results


def check_inputs(case: GraphCase):
    assert len(case.inputs) == len(case.values)
    for var, value in zip(case.inputs, case.values):
        assert var.owner is None and not isinstance(var, se.Constant)
        var.type.check_value(value)  # dtype, rank and static dims
        assert not value.flags.writeable
    used = {id(v) for v in case.inputs}
    for node in toposort(case.outputs):
        for v in node.inputs:
            assert v.owner is not None or isinstance(v, se.Constant) or id(v) in used


# -- graphs() --------------------------------------------------------------------------


@prop()
@given(graphs())
def test_default_graphs_are_well_typed_and_run(case):
    check_inputs(case)
    assert 1 <= len(case.outputs) <= 2
    assert 1 <= len(case.inputs) <= 3
    for value in case.values:
        assert np.isfinite(value).all() and (np.abs(value) <= 4).all()
    check_runs(case)


@prop()
@given(graphs(elements="any", max_ops=10))
def test_graphs_with_any_values_run(case):
    check_inputs(case)
    check_runs(case)


@prop()
@given(graphs(dtypes=("bool", "int8", "uint8", "int32", "uint64", "int64", "float16")))
def test_integer_bool_and_float16_graphs_run(case):
    check_inputs(case)
    assert {v.dtype for v in case.inputs} <= {"bool", "int8", "uint8", "int32", "uint64", "int64", "float16"}
    check_runs(case)


def test_every_family_appears_in_a_few_hundred_draws():
    families, names, seen = Counter(), Counter(), Counter()

    @prop(max_examples=300, **COVERAGE)
    @given(graphs())
    def draw(case):
        seen["cases"] += 1
        for node in toposort(case.outputs):
            family, name = classify(node)
            families[family] += 1
            names[(family, name)] += 1
        seen["two outputs"] += len(case.outputs) == 2
        seen["unknown dims"] += any(d is None for v in case.inputs for d in v.type.shape)
        seen["known dims"] += any(d is not None for v in case.inputs for d in v.type.shape)
        seen["empty"] += any(v.size == 0 for v in case.values)
        seen["deep"] += len(toposort(case.outputs)) >= 5

    draw()
    assert seen["cases"] >= 250
    for family in FAMILIES:
        assert families[family] >= 5, (family, families)
    assert len(names) >= 40, names  # of the 58 (family, op) pairs
    for what in ("two outputs", "unknown dims", "known dims", "empty", "deep"):
        assert seen[what] > 0, (what, seen)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_op_of_a_family_appears(family):
    names = Counter()

    @prop(max_examples=30 + 8 * len(FAMILIES[family]), **COVERAGE)
    @given(graphs(ops=(family,)))
    def draw(case):
        for node in toposort(case.outputs):
            names[classify(node)[1]] += 1

    draw()
    expected = set(FAMILIES[family]) | ({"where"} if family == "compare" else set())
    assert set(names) >= expected, expected - set(names)


@pytest.mark.parametrize(
    "ops, allowed",
    [
        (("reshape", "softmax"), {("shape", "reshape"), ("nnet", "softmax")}),
        (("reduce",), {("reduce", n) for n in FAMILIES["reduce"]}),
        (("where",), {("compare", n) for n in FAMILIES["compare"]} | {("compare", "where")}),
        (("exp", "add"), {("unary", "exp"), ("binary", "add"), ("scalar", "add")}),
    ],
)
def test_ops_restricts_the_families(ops, allowed):
    drawn = Counter()

    @prop(max_examples=40)
    @given(graphs(ops=ops))
    def draw(case):
        for node in toposort(case.outputs):
            drawn[classify(node)] += 1
        check_runs(case)

    draw()
    assert set(drawn) <= allowed, set(drawn) - allowed
    assert drawn


@prop(max_examples=30)
@given(graphs(ops=("matmul",), max_ops=3))
def test_matmul_graphs_have_compatible_shapes(case):
    for node in toposort(case.outputs):
        assert isinstance(node.op, (se.MatMul, se.Transpose))
    check_runs(case)


@prop(max_examples=30)
@given(graphs(max_dims=0, max_inputs=1, min_side=1, max_ops=4))
def test_limits_are_respected(case):
    assert len(case.inputs) == 1
    assert case.inputs[0].ndim == 0
    check_runs(case)


def test_argument_errors_are_raised_eagerly():
    with pytest.raises(TypeError, match="dtype"):
        graphs(dtypes=("complex64",))
    with pytest.raises(ValueError, match="unknown name"):
        graphs(ops=("exp", "frobnicate"))
    with pytest.raises(ValueError, match="elements"):
        graphs(elements="nan")
    with pytest.raises(ValueError, match="max_inputs"):
        graphs(min_inputs=4, max_inputs=2)
    with pytest.raises(ValueError, match="min_side"):
        graphs(min_side=3, max_side=2)
    with pytest.raises(TypeError, match="n_args"):
        graphs_containing(lambda *xs: xs[0])
    with pytest.raises(ValueError, match="shapes"):
        graphs_containing(lambda x, y: x + y, shapes=[(2,)])
    with pytest.raises(TypeError, match="unexpected"):
        graphs_containing(lambda x: x, max_op=3)


# -- GraphCase -------------------------------------------------------------------------


def test_graph_case_repr_is_readable():
    x = se.tensor("x0", dtype="float32", shape=(None, 3))
    y = se.tensor("x1", dtype="float64", shape=(3,))
    out = se.softmax(x * 2.0, axis=-1) + y
    case = GraphCase((x, y), (out, x * 2.0), (np.ones((2, 3), "float32"), np.array([0.5, -0.0, 1e-30])))
    text = repr(case)
    assert text.splitlines() == [
        "GraphCase(",
        "  inputs:",
        "    x0: float32(None, 3) = np.array([[1., 1., 1.], [1., 1., 1.]], dtype='float32')",
        "    x1: float64(3,) = np.array([ 5.e-01, -0.e+00,  1.e-30], dtype='float64')",
        "  outputs:",
        "    softmax(x0 * 2.0, axis=1) + x1",
        "    x0 * 2.0",
        "  output types: float64(None, 3), float32(None, 3)",
        ")",
    ]
    assert "object at 0x" not in text and "<input>" not in text
    # hypothesis prints a falsifying example with its pretty printer, which uses the same text.
    assert pretty(case) == text
    # The printed values round-trip exactly.
    assert np.array_equal(eval(text.split("x1: float64(3,) = ")[1].splitlines()[0]), case.values[1])


@prop(max_examples=20)
@given(graphs())
def test_drawn_repr_names_every_input(case):
    text = repr(case)
    for var in case.inputs:
        assert f"{var.name}: {var.type}" in text
    assert se.pprint(list(case.outputs)).splitlines()[-1] in text


def test_graph_case_function_and_run():
    x = se.vector("x0", dtype="float64")
    case = GraphCase((x,), (se.softmax(x),), (np.array([0.0, np.log(3.0)]),))
    f = case.function()
    assert isinstance(f, se.Function) and f.backend == "numpy"
    np.testing.assert_allclose(f(*case.values)[0], [0.25, 0.75])
    assert any(isinstance(n.op, se.Softmax) for n in case.function(passes="none").fgraph.toposort())
    assert not any(isinstance(n.op, se.Softmax) for n in case.function(passes=["decompose"]).fgraph.toposort())
    np.testing.assert_allclose(case.run(passes="decompose")[0], [0.25, 0.75])


# -- arrays_for, elements_for, cases_for -----------------------------------------------------


@prop(max_examples=40)
@given(st.data())
def test_arrays_for_respects_dtype_and_static_dims(data):
    var = se.tensor("v", dtype=data.draw(st.sampled_from(["float32", "int8", "bool", "uint16"])), shape=(None, 3, None))
    value = data.draw(arrays_for(var, max_side=4, min_side=1))
    var.type.check_value(value)
    assert value.shape[1] == 3 and 1 <= value.shape[0] <= 4 and 1 <= value.shape[2] <= 4
    if value.dtype.kind in "iu":
        assert (np.abs(value.astype(np.int64)) <= 4).all()


def test_elements_any_reaches_nan_inf_and_negative_zero():
    found = Counter()

    @prop(max_examples=150, **COVERAGE)
    @given(arrays_for(se.tensor("v", dtype="float32", shape=(6,)), elements="any"))
    def draw(value):
        found["nan"] += bool(np.isnan(value).any())
        found["inf"] += bool(np.isinf(value).any())
        found["-0"] += bool(((value == 0) & np.signbit(value)).any())
        found["big"] += bool((np.abs(value[np.isfinite(value)]) > 4).any())

    draw()
    assert all(found[k] > 0 for k in ("nan", "inf", "-0", "big")), found
    with pytest.raises(ValueError):
        elements_for("float32", "huge")


@prop(max_examples=30)
@given(cases_for(se.matrix("a") @ se.matrix("b") + se.vector("c", shape=(None,))))
def test_cases_for_draws_runnable_values_for_a_fixed_graph(case):
    assert [v.name for v in case.inputs] == ["a", "b", "c"]
    check_runs(case)


# -- graphs_containing -------------------------------------------------------------------


def recording(template):
    """The template, recording ``(args, result)`` of each call."""
    calls = []

    @functools.wraps(template)  # keeps the signature, which tells graphs_containing the arity
    def wrapped(*args):
        out = template(*args)
        calls.append((args, out))
        return out

    wrapped.calls = calls
    return wrapped


def _args_of(template, case):
    (args,) = [a for a, out in template.calls if out is case.template_output][-1:]
    return args


TEMPLATES = [
    (lambda x: x * 1, {}, lambda out: out.owner.op == se.Elemwise(ps.mul)),
    (lambda x: se.log(se.softmax(x)), {"min_dims": 1},
     lambda out: out.owner.op == se.Elemwise(ps.log) and isinstance(out.owner.inputs[0].owner.op, se.Softmax)),
    (lambda x, y: x - x + y, {},
     lambda out: out.owner.op == se.Elemwise(ps.add) and out.owner.inputs[0].owner.inputs[0] is out.owner.inputs[0].owner.inputs[1]),
    (lambda a, b: se.matmul(a, b), {"min_dims": 1}, lambda out: isinstance(out.owner.op, se.MatMul)),
]


@pytest.mark.parametrize("template, kwargs, looks_right", TEMPLATES, ids=["mul_one", "log_softmax", "sub_self", "matmul"])
def test_graphs_containing_contains_the_template_result(template, kwargs, looks_right):
    stats = Counter()
    template = recording(template)

    @prop(max_examples=50, **COVERAGE)
    @given(graphs_containing(template, **kwargs))
    def draw(case):
        out = case.template_output
        assert out is not None and looks_right(out)
        assert id(out) in ancestors(case.outputs[:1])  # an ancestor of the first output
        assert any(out is n.outputs[0] for n in toposort(case.outputs))
        check_inputs(case)
        check_runs(case)
        args = _args_of(template, case)
        stats["inside"] += case.outputs[0] is not out
        stats["subexpression arg"] += any(a.owner is not None for a in args)
        stats["input arg"] += any(a.owner is None for a in args)

    draw()
    assert stats["inside"] > 0 and stats["subexpression arg"] > 0 and stats["input arg"] > 0, stats


def test_graphs_containing_respects_argument_constraints():
    template = recording(lambda x, y: se.where(x, y, y * 2))

    @prop(max_examples=40)
    @given(graphs_containing(template, dtypes=("bool", "int16"), shapes=[(None, 3), None], min_dims=[0, 2]))
    def draw(case):
        x, y = _args_of(template, case)
        values = dict(zip(map(id, case.inputs), case.values))
        assert x.dtype in ("bool", "int16") and y.dtype in ("bool", "int16")
        assert y.ndim >= 2
        assert x.ndim == 2
        if x.owner is None:
            assert values[id(x)].shape[1] == 3
        check_runs(case)

    draw()


def test_graphs_containing_takes_an_op_function():
    @prop(max_examples=20)
    @given(graphs_containing(se.layer_norm, min_dims=1, max_ops=3))
    def draw(case):
        assert isinstance(case.template_output.owner.op, se.LayerNorm)
        check_runs(case)

    draw()


def test_graphs_containing_rejects_a_constant_template():
    @prop(max_examples=5)
    @given(graphs_containing(lambda x: se.constant(1.0)))
    def draw(case):
        pass

    with pytest.raises(TypeError, match="constant"):
        draw()


# -- import hygiene ------------------------------------------------------------------------


def test_import_symexpr_does_not_import_hypothesis():
    code = "import sys, symexpr; assert 'hypothesis' not in sys.modules; assert 'symexpr.testing' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=_repo_root())


def test_missing_hypothesis_gives_a_clear_import_error():
    code = (
        "import sys; sys.modules['hypothesis'] = None\n"
        "try:\n    import symexpr.testing\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, cwd=_repo_root(), capture_output=True, text=True)
    assert "pip install symexpr[test]" in out.stdout


def _repo_root():
    import pathlib

    return str(pathlib.Path(se.__file__).resolve().parent.parent)
