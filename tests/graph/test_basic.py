"""The graph object model: Variable, Constant, Apply, Op, hash-consing and input declaration."""

from __future__ import annotations

import re

import numpy as np
import pytest
from support import ids

import symexpr as se
from symexpr.graph.basic import Apply, Constant, Op, Variable
from symexpr.graph.type import TensorType
from symexpr.ops import scalar as ps

F32 = "float32"


def scalar_op_name(var: Variable) -> str:
    """Name of the scalar op of an elementwise node (``"add"``, ``"lt"``...)."""
    assert var.owner is not None, f"{var!r} is not computed by a node"
    assert isinstance(var.owner.op, se.Elemwise), f"{var!r} is computed by {var.owner.op}, not an Elemwise"
    return var.owner.op.scalar_op.name


# -- attributes ---------------------------------------------------------------------


class TestAttributes:
    def test_input_variable_attributes(self):
        x = se.matrix("x", shape=(None, 3))
        assert x.dtype == "float32"
        assert x.ndim == 2
        assert x.type.shape == (None, 3)
        assert x.type == TensorType("float32", (None, 3))
        assert x.owner is None and x.index is None
        assert x.name == "x"
        assert repr(x) == "<x: float32(None, 3)>"

    def test_computed_variable_attributes(self):
        x = se.matrix("x", shape=(None, 3))
        y = x * 2
        assert isinstance(y.owner, Apply)
        assert y.index == 0
        assert ids(y.owner.outputs) == ids((y,))
        assert y.owner.out is y
        assert y.owner.inputs[0] is x
        assert y.name is None
        assert y.dtype == "float32" and y.type.shape == (None, 3)

    def test_T(self):
        x = se.matrix("x", shape=(2, 3))
        t = x.T
        assert isinstance(t.owner.op, se.Transpose)
        assert t.owner.op.axes == (1, 0)
        assert ids(t.owner.inputs) == ids((x,))
        assert t.type.shape == (3, 2)
        assert t is x.transpose() is x.transpose(1, 0) is x.transpose((1, 0)) is se.transpose(x)
        assert x.T.T.type.shape == (2, 3)

    def test_transpose_identity_and_1d(self):
        x = se.matrix("x")
        v = se.vector("v")
        assert x.transpose(0, 1) is x
        assert v.T is v
        t3 = se.tensor("t", ndim=3, shape=(2, 3, 4)).transpose(2, 0, 1)
        assert t3.type.shape == (4, 2, 3)
        assert t3.owner.op.axes == (2, 0, 1)

    @pytest.mark.parametrize("method", ["sum", "mean", "max", "min", "prod"])
    def test_reduction_methods(self, method):
        x = se.matrix("x", shape=(4, 3))
        y = getattr(x, method)(axis=1)
        op = y.owner.op
        assert isinstance(op, se.Reduce)
        assert (op.kind, op.axis, op.keepdims) == (method, (1,), False)
        assert ids(y.owner.inputs) == ids((x,))
        assert y.type.shape == (4,)
        assert y is getattr(se, method)(x, axis=1)
        assert y is getattr(x, method)(axis=-1)
        kept = getattr(x, method)(axis=0, keepdims=True)
        assert kept.type.shape == (1, 3) and kept.owner.op.keepdims is True
        full = getattr(x, method)()
        assert full.shape == () and full.owner.op.axis == (0, 1)

    def test_var_method(self):
        x = se.matrix("x", shape=(4, 3))
        y = x.var(axis=0, ddof=1)
        assert isinstance(y.owner.op, se.Var)
        assert (y.owner.op.axis, y.owner.op.ddof, y.owner.op.keepdims) == ((0,), 1, False)
        assert y.type.shape == (3,)
        assert x.var().owner.op.ddof == 0

    @pytest.mark.parametrize("method", ["argmax", "argmin"])
    def test_arg_methods(self, method):
        x = se.matrix("x", shape=(4, 3))
        y = getattr(x, method)(axis=1)
        assert isinstance(y.owner.op, se.ArgReduce)
        assert (y.owner.op.kind, y.owner.op.axis) == (method, 1)
        assert y.dtype == "int64"
        assert y.type.shape == (4,)
        flat = getattr(x, method)()
        assert flat.owner.op.axis is None and flat.shape == ()

    def test_reshape_method(self):
        x = se.matrix("x", shape=(2, 6))
        y = x.reshape(3, 4)
        assert isinstance(y.owner.op, se.Reshape)
        assert y.owner.op.shape == (3, 4)
        assert y.type.shape == (3, 4)
        assert y is x.reshape((3, 4)) is x.reshape([3, 4]) is se.reshape(x, (3, 4))
        assert x.reshape(-1).type.shape == (12,)
        assert x.reshape(4, -1).type.shape == (4, 3)

    def test_astype(self):
        x = se.matrix("x")
        assert x.astype("float32") is x
        y = x.astype("float64")
        assert y.dtype == "float64"
        assert isinstance(y.owner.op, se.Elemwise)
        assert scalar_op_name(y) == "cast"
        assert y is x.astype(np.float64) is se.cast(x, "float64")

    def test_squeeze_method(self):
        x = se.tensor("x", shape=(1, 3, 1))
        assert x.squeeze().type.shape == (3,)
        assert x.squeeze(axis=0).type.shape == (3, 1)
        m = se.matrix("m")
        assert m.squeeze() is m  # no dimension is statically 1

    def test_indexing(self):
        x = se.matrix("x", shape=(5, 4))
        y = x[0]
        assert isinstance(y.owner.op, se.Subtensor)
        assert y.type.shape == (4,)
        assert x[1:4:2, 0].type.shape == (2,)
        assert x[::-1].type.shape == (5, 4)
        assert x[None].type.shape == (1, 5, 4)
        assert x[..., None].type.shape == (5, 4, 1)
        assert x[:] is x and x[...] is x and x[:, :] is x
        assert x[0] is x[0]
        assert x[0] is not x[1]

    def test_indexing_errors(self):
        x = se.matrix("x", shape=(5, 4))
        with pytest.raises(IndexError):
            x[0, 0, 0]
        with pytest.raises(IndexError):
            x[7]
        with pytest.raises(TypeError, match="take"):
            x[se.vector("i", dtype="int64")]


BINARY = [
    (lambda a, b: a + b, "add"),
    (lambda a, b: a - b, "sub"),
    (lambda a, b: a * b, "mul"),
    (lambda a, b: a / b, "true_div"),
    (lambda a, b: a // b, "floor_div"),
    (lambda a, b: a % b, "mod"),
    (lambda a, b: a**b, "pow"),
    (lambda a, b: a < b, "lt"),
    (lambda a, b: a <= b, "le"),
    (lambda a, b: a > b, "gt"),
    (lambda a, b: a >= b, "ge"),
    (lambda a, b: a == b, "eq"),
    (lambda a, b: a != b, "neq"),
]


class TestOperators:
    @pytest.mark.parametrize("build, name", BINARY, ids=[n for _, n in BINARY])
    def test_binary_operators(self, build, name):
        a, b = se.vector("a"), se.vector("b")
        y = build(a, b)
        assert isinstance(y, Variable)
        assert scalar_op_name(y) == name
        assert ids(y.owner.inputs) == ids((a, b))

    @pytest.mark.parametrize("build, name", [(lambda a, b: a & b, "and"), (lambda a, b: a | b, "or"), (lambda a, b: a ^ b, "xor")])
    def test_bitwise_operators(self, build, name):
        a, b = se.vector("a", dtype="int32"), se.vector("b", dtype="int32")
        y = build(a, b)
        assert scalar_op_name(y) == name
        assert ids(y.owner.inputs) == ids((a, b))

    def test_unary_operators(self):
        a = se.vector("a")
        assert scalar_op_name(-a) == "neg"
        assert scalar_op_name(abs(a)) == "abs"
        assert +a is a
        assert scalar_op_name(~se.vector("m", dtype="bool")) == "invert"

    def test_matmul_operator(self):
        a, b = se.matrix("a", shape=(2, 3)), se.matrix("b", shape=(3, 4))
        y = a @ b
        assert isinstance(y.owner.op, se.MatMul)
        assert ids(y.owner.inputs) == ids((a, b))
        assert y.type.shape == (2, 4)

    def test_reflected_operators(self):
        x = se.vector("x")
        y = 2 - x
        assert scalar_op_name(y) == "sub"
        left, right = y.owner.inputs
        assert right is x
        assert isinstance(left, Constant) and left.dtype == "float32" and left.data == 2
        y = 1 / x
        assert scalar_op_name(y) == "true_div" and y.owner.inputs[1] is x

    def test_python_scalars_are_weak(self):
        x = se.vector("x", dtype="float16")
        assert (x * 2.5).dtype == "float16"
        assert (x + 1).dtype == "float16"
        assert (se.vector("i", dtype="int8") + 1).dtype == "int8"


# -- hash-consing ---------------------------------------------------------------------


class TestHashConsing:
    def test_same_expression_is_same_object(self):
        x, y = se.matrix("x"), se.matrix("y")
        assert (x + y) is (x + y)
        assert se.exp(x) is se.exp(x)
        assert (x * 2 + 1) is (x * 2 + 1)
        assert x.sum(axis=0) is x.sum(axis=-2)
        assert (x + y).owner is (x + y).owner

    def test_structurally_equal_subgraphs_built_twice(self):
        def build(x, b):
            w = se.constant(np.arange(12, dtype="float32").reshape(3, 4), name="w")
            return se.softmax(x @ w + b, axis=-1).sum(axis=0)

        x, b = se.matrix("x"), se.vector("b")
        assert build(x, b) is build(x, b)

    def test_different_expressions_are_different(self):
        x, y = se.matrix("x"), se.matrix("y")
        assert (x + y) is not (x - y)
        assert (x + y) is not (x + x)
        assert x.sum(axis=0) is not x.sum(axis=1)

    def test_equal_op_instances_share_the_node(self):
        x = se.matrix("x")
        a = se.Reduce("sum", (0,), False)(x)
        b = se.Reduce("sum", (0,), False)(x)
        assert a is b

    def test_apply_constructor_is_hash_consed(self):
        x = se.vector("x")
        op = se.Elemwise(ps.exp)
        n1 = Apply(op, [x], [TensorType("float32", (None,))])
        n2 = Apply(op, (x,), [TensorType("float32", (None,))])
        assert n1 is n2
        assert se.exp(x).owner is n1

    def test_apply_rejects_non_variable_inputs(self):
        with pytest.raises(TypeError, match="input 0 must be a Variable"):
            Apply(se.Elemwise(ps.exp), [np.ones(3)], [TensorType("float64", (3,))])

    def test_equal_constants_are_one_object(self):
        assert se.constant(1.0) is se.constant(1.0)
        assert se.constant(np.arange(3)) is se.constant([0, 1, 2])
        assert se.constant(np.float32(2.5)) is se.constant(np.array(2.5, dtype="float32"))
        assert se.constant(np.nan) is se.constant(np.nan)
        assert se.constant([1.0, 2.0], name="w") is se.constant(np.array([1.0, 2.0]), name="w")

    def test_unequal_constants_are_different(self):
        assert se.constant(1.0, name="a") is not se.constant(1.0, name="b")
        assert se.constant(1.0, name="a") is not se.constant(1.0)
        assert se.constant(np.float32(1)) is not se.constant(np.float64(1))
        assert se.constant(0.0) is not se.constant(-0.0)
        assert se.constant(np.zeros((2, 0))) is not se.constant(np.zeros((0, 2)))
        assert se.constant([1, 2]) is not se.constant([2, 1])

    def test_constants_in_expressions(self):
        x = se.vector("x")
        assert (x + 1.0) is (x + 1)  # both weak, float32 1.0
        assert (x + np.float32(1)) is (x + 1.0)
        assert (x + np.float64(1)) is not (x + 1.0)  # strong float64 promotes
        assert (x + 0.0) is not (x + -0.0)

    def test_inputs_with_the_same_name_are_distinct(self):
        x1, x2 = se.matrix("x"), se.matrix("x")
        assert x1 is not x2
        assert (x1 + 1) is not (x2 + 1)
        assert se.scalar() is not se.scalar()


# -- immutability -------------------------------------------------------------------------


class TestImmutability:
    @pytest.mark.parametrize("attr", ["op", "inputs", "outputs", "new_attribute"])
    def test_apply_is_immutable(self, attr):
        node = (se.vector("x") + 1).owner
        before = (node.op, node.inputs, node.outputs)
        with pytest.raises(AttributeError, match="immutable"):
            setattr(node, attr, None)
        assert (node.op, node.inputs, node.outputs) == before
        assert isinstance(node.inputs, tuple) and isinstance(node.outputs, tuple)

    def test_op_is_immutable(self):
        op = se.Reduce("sum", (0,))
        h = hash(op)
        with pytest.raises(AttributeError, match="immutable"):
            op.kind = "prod"
        with pytest.raises(AttributeError, match="immutable"):
            op.extra = 1
        assert op.kind == "sum" and hash(op) == h
        elem = (se.vector("x") + 1).owner.op
        with pytest.raises(AttributeError):
            elem.scalar_op = ps.mul

    @pytest.mark.parametrize("attr", ["type", "owner", "index"])
    def test_variable_structure_is_immutable(self, attr):
        x = se.vector("x")
        y = x + 1
        before = getattr(y, attr)
        with pytest.raises(AttributeError):
            setattr(y, attr, None)
        assert getattr(y, attr) is before
        with pytest.raises(AttributeError):
            setattr(x, attr, None)

    def test_variable_name_must_be_str(self):
        with pytest.raises(TypeError):
            se.vector("x").name = 3

    def test_type_is_immutable(self):
        t = TensorType("float32", (None, 3))
        with pytest.raises(AttributeError):
            t.dtype = "float64"
        assert t == TensorType(np.float32, [None, 3]) and hash(t) == hash(TensorType("float32", (None, 3)))

    @pytest.mark.parametrize("attr", ["data", "name", "type", "owner", "digest"])
    def test_constant_attributes_cannot_be_set(self, attr):
        c = se.constant(np.arange(3.0), name="c")
        before = getattr(c, attr)
        with pytest.raises(AttributeError):
            setattr(c, attr, np.zeros(3))
        assert getattr(c, attr) is before

    def test_constant_data_is_read_only(self):
        c = se.constant(np.arange(3.0))
        assert not c.data.flags.writeable
        with pytest.raises(ValueError):
            c.data[0] = 5.0
        with pytest.raises(ValueError):
            c.data += 1
        np.testing.assert_array_equal(c.data, [0.0, 1.0, 2.0])

    def test_constant_data_cannot_be_made_writeable(self):
        # The constant is interned by a digest of its bytes: if its buffer could be
        # made writeable again, changing it would silently change every graph that
        # shares it while the intern key stays the same.
        c = se.constant(np.arange(3.0))
        with pytest.raises(ValueError):
            c.data.setflags(write=True)
        np.testing.assert_array_equal(c.data, [0.0, 1.0, 2.0])

    def test_constant_copies_the_user_array(self):
        arr = np.arange(4, dtype="float32")
        c = se.constant(arr)
        arr[0] = 100.0
        np.testing.assert_array_equal(c.data, [0, 1, 2, 3])
        assert not np.shares_memory(c.data, arr)
        assert arr.flags.writeable  # the user's array is left alone
        x = se.vector("x")
        np.testing.assert_array_equal((x + c).eval({x: np.zeros(4, "float32")}), [0, 1, 2, 3])

    def test_constant_from_non_contiguous_array(self):
        arr = np.arange(6.0).reshape(2, 3).T
        c = se.constant(arr)
        np.testing.assert_array_equal(c.data, arr)
        assert c.data.flags.c_contiguous
        assert c.type.shape == (3, 2)


# -- Op equality ------------------------------------------------------------------------------


class Scale(Op):
    __props__ = ("factor",)

    def __init__(self, factor):
        self.factor = factor

    def make_node(self, x):
        x = se.as_tensor(x)
        return Apply(self, [x], [x.type])

    def perform(self, node, inputs):
        return [inputs[0] * np.asarray(self.factor, dtype=inputs[0].dtype)]


class Shift(Op):
    __props__ = ("factor",)

    def __init__(self, factor):
        self.factor = factor


class TestOpEquality:
    def test_equal_by_props(self):
        assert se.Reduce("sum", (0,)) == se.Reduce("sum", (0,))
        assert hash(se.Reduce("sum", (0,))) == hash(se.Reduce("sum", (0,)))
        assert se.Reduce("sum", (0,)) != se.Reduce("sum", (1,))
        assert se.Reduce("sum", (0,)) != se.Reduce("prod", (0,))
        assert se.Reduce("sum", (0,), keepdims=True) != se.Reduce("sum", (0,))
        assert len({se.Reduce("sum", (0,)), se.Reduce("sum", (0,)), se.Reduce("max", (0,))}) == 2

    def test_different_classes_with_equal_props_differ(self):
        assert se.Reshape((1, 0)) != se.Transpose((1, 0))
        assert Scale(2.0) != Shift(2.0)

    def test_elemwise_equality(self):
        assert se.Elemwise(ps.add) == se.Elemwise(ps.add)
        assert se.Elemwise(ps.add) != se.Elemwise(ps.mul)
        assert se.Elemwise(ps.Cast("float32")) == se.Elemwise(ps.Cast(np.float32))
        assert se.Elemwise(ps.Cast("float32")) != se.Elemwise(ps.Cast("float64"))

    def test_custom_op(self):
        x = se.vector("x")
        assert Scale(2.0) == Scale(2.0) and hash(Scale(2.0)) == hash(Scale(2.0))
        assert Scale(2.0) != Scale(3.0)
        assert Scale(2.0)(x) is Scale(2.0)(x)
        assert Scale(2.0)(x) is not Scale(3.0)(x)
        assert Scale(2.0).display_name() == "Scale{factor=2.0}"
        np.testing.assert_array_equal(Scale(2.0)(x).eval({x: np.arange(3, dtype="float32")}), [0, 2, 4])
        with pytest.raises(AttributeError):
            Scale(2.0).factor = 3.0


# -- truth value, iteration, len ---------------------------------------------------------------


class TestPythonProtocols:
    def test_bool_raises_helpful_type_error(self):
        x = se.vector("x")
        with pytest.raises(TypeError, match="truth value") as info:
            bool(x > 0)
        assert "where" in str(info.value)
        with pytest.raises(TypeError, match="truth value"):
            if x:
                pass
        with pytest.raises(TypeError, match="truth value"):
            x and x  # noqa: B018
        with pytest.raises(TypeError, match="truth value"):
            not x  # noqa: B018

    def test_chained_comparison_raises(self):
        a, b, c = se.scalar("a"), se.scalar("b"), se.scalar("c")
        with pytest.raises(TypeError, match="truth value"):
            a < b < c  # noqa: B015

    def test_membership_uses_truth_value(self):
        x, y = se.vector("x"), se.vector("y")
        with pytest.raises(TypeError, match="truth value"):
            x in [y]  # noqa: B015

    def test_iteration_raises_helpful_type_error(self):
        x = se.vector("x", shape=(3,))
        with pytest.raises(TypeError, match="iterat") as info:
            iter(x)
        assert "x[i]" in str(info.value)
        with pytest.raises(TypeError, match="iterat"):
            list(x)
        with pytest.raises(TypeError, match="iterat"):
            a, b, c = x
        with pytest.raises(TypeError, match="iterat"):
            for _ in x:
                pass

    def test_len(self):
        assert len(se.vector("v", shape=(3,))) == 3
        assert len(se.matrix("m", shape=(5, None))) == 5
        assert len(se.tensor("e", shape=(0, 2))) == 0
        with pytest.raises(TypeError, match="not known"):
            len(se.matrix("m", shape=(None, 5)))
        with pytest.raises(TypeError, match="0-d"):
            len(se.scalar("s"))
        assert len(se.matrix("m", shape=(4, 2)).T) == 2


# -- NumPy values on the left -----------------------------------------------------------------


class TestNumpyOnTheLeft:
    def test_numpy_scalar_times_variable_builds_a_graph(self):
        x = se.vector("x")
        y = np.float32(2) * x
        assert isinstance(y, Variable), f"got {type(y).__name__}"
        assert not isinstance(y, np.ndarray)
        assert scalar_op_name(y) == "mul"
        const, var = y.owner.inputs
        assert var is x and isinstance(const, Constant) and const.dtype == "float32"
        assert y.dtype == "float32"
        np.testing.assert_array_equal(y.eval({x: np.arange(3, dtype="float32")}), [0, 2, 4])

    def test_numpy_scalars_are_strong(self):
        x = se.vector("x")
        assert (np.float64(2) * x).dtype == "float64"
        assert (np.float64(2) + x).dtype == "float64"
        assert (se.vector("i", dtype="int8") + np.int16(1)).dtype == "int16"

    @pytest.mark.parametrize(
        "build, name",
        [
            (lambda n, x: n + x, "add"),
            (lambda n, x: n - x, "sub"),
            (lambda n, x: n / x, "true_div"),
            (lambda n, x: n**x, "pow"),
            (lambda n, x: n < x, "gt"),
            (lambda n, x: n == x, "eq"),
        ],
    )
    def test_numpy_left_operands(self, build, name):
        x = se.vector("x")
        y = build(np.float32(3), x)
        assert isinstance(y, Variable)
        assert scalar_op_name(y) == name

    def test_numpy_array_on_the_left(self):
        x = se.matrix("x")
        y = np.ones((2, 3), dtype="float32") + x
        assert isinstance(y, Variable) and y.type.shape == (2, 3)
        z = np.ones((2, 2), dtype="float32") @ x
        assert isinstance(z, Variable) and isinstance(z.owner.op, se.MatMul)
        assert z.type.shape == (2, None)

    def test_numpy_ufunc_on_variable_raises(self):
        with pytest.raises(TypeError):
            np.exp(se.vector("x"))


# -- declaring inputs -----------------------------------------------------------------------------


class TestDeclaringInputs:
    def test_defaults(self):
        assert se.scalar().type == TensorType("float32", ())
        assert se.vector().type == TensorType("float32", (None,))
        assert se.matrix().type == TensorType("float32", (None, None))
        assert se.tensor(ndim=3).type == TensorType("float32", (None, None, None))
        assert se.scalar().name is None

    def test_dtype_and_shape_spellings(self):
        assert se.scalar("s", "int8").dtype == "int8"
        assert se.tensor("t", dtype=np.float16, ndim=1).dtype == "float16"
        assert se.tensor("t", dtype="f8", ndim=1).dtype == "float64"
        assert se.tensor("t", dtype=np.dtype("uint16"), ndim=1).dtype == "uint16"
        assert se.vector("v", shape=(np.int64(3),)).type.shape == (3,)
        assert se.tensor("t", shape=5).type.shape == (5,)
        assert se.tensor("t", shape=[2, None]).type.shape == (2, None)
        assert se.tensor("t", shape=(2, 3), ndim=2).type.shape == (2, 3)
        assert isinstance(se.tensor("t", shape=(2,)).type.shape[0], int)

    @pytest.mark.parametrize("factory", [se.scalar, se.vector, se.matrix, lambda name, dtype: se.tensor(name, dtype, ndim=2)])
    @pytest.mark.parametrize("dtype", ["complex64", "foo", object, "str", "datetime64", "float128"])
    def test_bad_dtype(self, factory, dtype):
        with pytest.raises(TypeError) as info:
            factory("x", dtype)
        msg = str(info.value)
        assert "float32" in msg, f"message should list the supported dtypes: {msg}"

    def test_bad_dtype_names_it(self):
        with pytest.raises(TypeError, match="complex64"):
            se.vector("x", "complex64")

    @pytest.mark.parametrize(
        "shape, dim, bad",
        [((2, "x"), 1, "'x'"), ((2, -1), 1, "-1"), ((1.0, 2), 0, "1.0"), ((3, None, True), 2, "True"), ((np.bool_(True),), 0, "True")],
    )
    def test_bad_shape_entries_name_the_dimension(self, shape, dim, bad):
        with pytest.raises(TypeError) as info:
            se.tensor("x", shape=shape)
        msg = str(info.value)
        assert f"dimension {dim}" in msg, msg
        assert bad in msg, msg

    def test_bad_shape_container(self):
        with pytest.raises(TypeError):
            se.tensor("x", shape=1.5)
        with pytest.raises(TypeError):
            se.tensor("x", shape=object())

    def test_shape_or_ndim_required(self):
        with pytest.raises(TypeError, match="ndim"):
            se.tensor("x")

    @pytest.mark.parametrize("ndim", [-1, 1.0, True, "2"])
    def test_bad_ndim(self, ndim):
        with pytest.raises(TypeError, match="ndim"):
            se.tensor("x", ndim=ndim)

    def test_ndim_mismatch(self):
        with pytest.raises(ValueError, match="ndim"):
            se.tensor("x", shape=(2, 3), ndim=3)
        with pytest.raises(ValueError):
            se.vector("x", shape=(2, 3))
        with pytest.raises(ValueError):
            se.matrix("x", shape=(2,))

    @pytest.mark.parametrize("name", [3, b"x", ["x"]])
    def test_bad_name(self, name):
        with pytest.raises(TypeError, match="name"):
            se.tensor(name, ndim=1)


# -- constant / as_tensor ---------------------------------------------------------------------------


class TestConstant:
    @pytest.mark.parametrize(
        "value, dtype, shape",
        [
            (3, "int64", ()),
            (2.0, "float64", ()),
            (True, "bool", ()),
            (np.float32(1.5), "float32", ()),
            ([1, 2, 3], "int64", (3,)),
            (np.zeros((2, 3), dtype="uint8"), "uint8", (2, 3)),
            (np.zeros((0, 4), dtype="float16"), "float16", (0, 4)),
        ],
    )
    def test_dtype_and_shape(self, value, dtype, shape):
        c = se.constant(value)
        assert isinstance(c, Constant)
        assert (c.dtype, c.type.shape) == (dtype, shape)
        assert c.owner is None
        np.testing.assert_array_equal(c.data, np.asarray(value))

    def test_dtype_argument_converts(self):
        c = se.constant([1.7, -2.2], dtype="int32")
        assert c.dtype == "int32"
        np.testing.assert_array_equal(c.data, [1, -2])
        assert se.constant([[1, 2]], dtype=np.int8).type == TensorType("int8", (1, 2))

    def test_name(self):
        c = se.constant(np.ones(3), name="ones")
        assert c.name == "ones"
        assert repr(c) == "<Constant ones: float64(3,)>"
        assert repr(se.constant(2.5)) == "<Constant 2.5: float64()>"

    def test_rejects_variables(self):
        x = se.vector("x")
        with pytest.raises(TypeError, match="symbolic"):
            se.constant(x)

    @pytest.mark.parametrize("value", ["abc", [1 + 2j], None, object(), np.datetime64("2020"), [[1], [2, 3]]])
    def test_rejects_unsupported_values(self, value):
        with pytest.raises(TypeError, match="constant"):
            se.constant(value)

    def test_rejects_bad_name(self):
        with pytest.raises(TypeError, match="name"):
            se.constant(1.0, name=3)

    def test_bad_dtype_argument_message(self):
        # The data is fine; the dtype argument is the problem and the message should say so
        # rather than claim the value could not be made into an array.
        with pytest.raises(TypeError) as info:
            se.constant([1, 2], dtype="complex64")
        msg = str(info.value)
        assert "complex64" in msg
        assert "cannot make an array" not in msg, msg

    def test_as_tensor(self):
        x = se.vector("x")
        assert se.as_tensor(x) is x
        c = se.as_tensor(np.arange(3, dtype="int16"))
        assert isinstance(c, Constant) and c.dtype == "int16"
        assert c is se.constant(np.arange(3, dtype="int16"))
        assert se.as_tensor(2).dtype == "int64"  # on its own a Python int takes NumPy's default
        assert se.as_tensor(2.0, name="two").name == "two"
        with pytest.raises(TypeError):
            se.as_tensor("abc")


# -- eval -------------------------------------------------------------------------------------------


class TestEval:
    def test_eval_input(self):
        x = se.matrix("x")
        arr = np.arange(6, dtype="float32").reshape(2, 3)
        out = x.eval({x: arr})
        np.testing.assert_array_equal(out, arr)
        assert out is not arr and not np.shares_memory(out, arr)

    def test_eval_expression(self):
        x, y = se.vector("x"), se.vector("y")
        a = np.array([1, 2, 3], dtype="float32")
        b = np.array([4, 5, 6], dtype="float32")
        got = (x * 2 + y).eval({y: b, x: a})
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, a * 2 + b)

    def test_eval_constant_needs_no_inputs(self):
        assert (se.constant(2.0) * 3).eval() == 6.0
        np.testing.assert_array_equal(se.constant([1, 2]).eval(), [1, 2])

    def test_eval_missing_input(self):
        x, y = se.vector("x"), se.vector("y")
        with pytest.raises(ValueError, match=r"\by\b"):
            (x + y).eval({x: np.ones(2, "float32")})

    def test_eval_checks_values(self):
        x = se.vector("x")
        with pytest.raises(TypeError, match="float64"):
            x.eval({x: np.ones(2)})
        with pytest.raises(TypeError):
            x.eval({x: [1.0, 2.0]})


def test_variable_type_checks():
    with pytest.raises(TypeError, match="TensorType"):
        Variable("float32")
    with pytest.raises(TypeError, match="name"):
        Variable(TensorType("float32", ()), name=1)


def test_repr_of_nodes():
    x = se.vector("x")
    assert repr((x + 1).owner) == "<Apply Add>"
    assert re.fullmatch(r"<Sum\{axis=\(0,\)\}: float32\(\)>", repr(x.sum()))
