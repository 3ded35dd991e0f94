"""Lowering to the kernel IR: plan ordering, lowering lookup, and the errors raised at call time."""

from __future__ import annotations

import numpy as np
import pytest

import symexpr as se
from symexpr.graph.basic import Apply, Op
from symexpr.graph.type import TensorType
from symexpr.kernel import lowerings  # noqa: F401  (registers the op lowerings)
from symexpr.kernel.ir import HostStep, LoopKernel
from symexpr.kernel.lower import _LOWERINGS, Unsupported, lowers, plan_hazards
from symexpr.ops.elemwise import Elemwise
from symexpr.ops.convert import as_tensor


@pytest.fixture(autouse=True)
def _no_compile_cache(monkeypatch):
    """Plans under test change with the lowering: never load code compiled for an older plan."""
    monkeypatch.setenv("SYMEXPR_CACHE", "0")


def _both(inputs, outputs, args):
    """Results of the llvm backend on two successive calls with different data, and NumPy's."""
    f = se.function(inputs, outputs, backend="llvm")
    g = se.function(inputs, outputs, backend="numpy")
    for k in range(2):  # the second call would see the first call's values if the order were wrong
        call_args = [a + k if a.dtype.kind == "f" else a for a in args]
        got, want = f(*call_args), g(*call_args)
        for gv, wv in zip(got, want):
            assert gv.dtype == wv.dtype and gv.shape == wv.shape
            np.testing.assert_allclose(gv, wv, rtol=1e-6)  # exp and friends may differ in the last ulp
    return f


# -- 1. a host step reading a view that is also a function output ------------------------------------
def _host_kinds(plan):
    return [type(s.node.op).__name__ for s in plan.steps if isinstance(s, HostStep)]


def test_take_of_a_view_that_is_an_output():
    x = se.matrix("x")
    i = se.vector("i", dtype="int64")
    v = se.expand_dims(x, 0)
    a = np.arange(6, dtype="float32").reshape(2, 3) + 1
    f = _both([x, i], [se.take(v, i, axis=1), v], [a, np.array([1, 0, 1])])
    assert "Take" in _host_kinds(f._compiled.plan)


def test_integer_matmul_of_a_view_that_is_an_output():
    x = se.matrix("x", dtype="int64")
    v = se.transpose(x)
    f = _both([x], [se.matmul(v, x), v], [np.arange(6, dtype="int64").reshape(2, 3) + 1])
    assert "MatMul" in _host_kinds(f._compiled.plan)


def test_integer_power_of_a_view_that_is_an_output():
    x = se.matrix("x", dtype="int64")
    n = se.matrix("n", dtype="int64")
    v = se.expand_dims(x, 0)
    a = np.arange(6, dtype="int64").reshape(2, 3)
    f = _both([x, n], [se.power(v, n), v], [a - 2, a % 3])
    assert _host_kinds(f._compiled.plan), f._compiled.plan.text()


def test_argmax_of_a_view_that_is_an_output():
    x = se.matrix("x")
    v = se.transpose(x)
    f = _both([x], [se.argmax(v, axis=1), v], [np.array([[3, 1, 2], [0, 5, 4]], dtype="float32")])
    assert "ArgReduce" in _host_kinds(f._compiled.plan)


def test_view_of_an_output_that_is_another_output_read_by_a_host_step():
    x = se.matrix("x")
    i = se.vector("i", dtype="int64")
    y = se.exp(x)
    t = se.transpose(y)
    _both([x, i], [se.take(t, i, axis=0), y, t], [np.arange(6, dtype="float32").reshape(2, 3) / 4, np.array([2, 0])])


def test_temps_read_by_a_host_step_stay_live_until_it_runs():
    """Temps only a host step reads must not share arena space with temps written in between."""
    x = se.matrix("x", dtype="int64")
    _both([x], [se.matmul(se.mul(x, 2), se.add(x, 3))], [np.arange(4, dtype="int64").reshape(2, 2)])
    y = se.vector("y")
    i = se.vector("i", dtype="int64")
    _both([y, i], [se.add(se.add(se.take(se.exp(y), i), se.take(se.cos(y), i)), se.take(se.mul(se.sin(y), 2), i))],
          [np.arange(5, dtype="float32") / 3, np.array([4, 0, 2])])


def test_no_step_reads_a_buffer_before_it_is_written():
    x = se.matrix("x")
    i = se.vector("i", dtype="int64")
    v = se.expand_dims(x, 0)
    outputs = [se.take(v, i, axis=1), v, se.argmax(se.exp(v), axis=2), se.transpose(se.exp(x))]
    f = se.function([x, i], outputs, backend="llvm")
    f(np.ones((2, 3), "float32"), np.array([0]))
    assert plan_hazards(f._compiled.plan) == []


# -- 3. a lowering serves the subclasses of the op class it is registered for ------------------------
class _MyElemwise(Elemwise):
    """A subclass that registers no lowering of its own."""


def test_lowering_lookup_walks_the_mro():
    from symexpr.ops import scalar as ps

    x = se.vector("x")
    out = _MyElemwise(ps.exp)(x)
    f = se.function([x], out, backend="llvm")
    a = np.linspace(-1, 1, 7, dtype="float32")
    np.testing.assert_allclose(f(a), np.exp(a), rtol=1e-6)
    plan = f._compiled.plan
    assert not any(isinstance(s, HostStep) for s in plan.steps), plan.text()
    assert any(isinstance(s, LoopKernel) for s in plan.steps)


def test_a_subclass_lowering_overrides_its_base():
    from symexpr.kernel.lower import lowering_for

    class Sub(_MyElemwise):
        pass

    assert lowering_for(Sub) is _LOWERINGS[Elemwise]
    try:

        @lowers(Sub)
        def _declines(ctx, node):
            raise Unsupported("test")

        assert lowering_for(Sub) is _declines
        assert lowering_for(_MyElemwise) is _LOWERINGS[Elemwise]
    finally:
        del _LOWERINGS[Sub]
    assert lowering_for(Sub) is _LOWERINGS[Elemwise]


# -- 4. re-raising exceptions whose constructors take other arguments ------------------------------------
class CodedError(Exception):
    """An exception a one-message constructor cannot build."""

    def __init__(self, msg, *, code):
        super().__init__(msg)
        self.code = code


class ForgetfulError(ValueError):
    """Builds from one argument but shows a fixed text: re-raising with type(exc)(msg) would lose the message."""

    def __init__(self, msg="", code=7):
        super().__init__(f"error code {code}")


def _unicode_error():
    return UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")


_ERRORS = {
    "unicode": _unicode_error,
    "coded": lambda: CodedError("the coded failure", code=3),
    "forgetful": lambda: ForgetfulError("ignored", code=42),
}


class _Boom(Op):
    """Copies its input, or raises the named error from ``perform`` or ``infer_shape``."""

    __props__ = ("error", "where")

    def __init__(self, error, where):
        self.error, self.where = error, where

    def make_node(self, x):
        x = as_tensor(x)
        return Apply(self, [x], [TensorType(x.dtype, x.type.shape)])

    def perform(self, node, inputs):
        if self.where == "perform":
            raise _ERRORS[self.error]()
        return [np.array(inputs[0])]

    def infer_shape(self, node, input_shapes):
        if self.where == "infer_shape":
            raise _ERRORS[self.error]()
        return [input_shapes[0]]


@pytest.mark.parametrize(
    "backend, where", [("numpy", "perform"), ("llvm", "perform"), ("llvm", "infer_shape")]
)
@pytest.mark.parametrize(
    "error, kind, original_text",
    [
        ("unicode", UnicodeError, "invalid start byte"),
        ("coded", Exception, "the coded failure"),
        ("forgetful", ValueError, "error code 42"),
    ],
)
def test_reraise_keeps_the_message_and_a_catchable_type(backend, where, error, kind, original_text):
    x = se.vector("x")
    f = se.function([x], _Boom(error, where)(x), backend=backend)
    with pytest.raises(kind) as info:
        f(np.zeros(3, "float32"))
    text = str(info.value)
    assert original_text in text and "while evaluating _Boom" in text, text
    assert type(info.value.__cause__) is type(_ERRORS[error]())  # the original, chained
    if type(info.value) is not type(info.value.__cause__):
        assert text.startswith(type(info.value.__cause__).__name__), text


def test_exception_with_message_keeps_the_type_when_it_can():
    from symexpr.ops.messages import exception_with_message

    new = exception_with_message(ValueError("bad"), "bad\n  more")
    assert type(new) is ValueError and str(new) == "bad\n  more"
    new = exception_with_message(KeyError("k"), "'k' missing")
    assert type(new) is KeyError and new.args == ("'k' missing",)
    new = exception_with_message(_unicode_error(), "decode failed")
    assert type(new) is UnicodeError and str(new) == "UnicodeDecodeError: decode failed"


# -- 5. call-time broadcasting errors name the user's variables ----------------------------------------
@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_broadcast_error_names_the_users_variables(backend):
    x, y = se.vector("x"), se.vector("y")
    f = se.function([x, y], se.add(se.mul(x, y), 1.0), backend=backend)
    with pytest.raises(ValueError) as info:
        f(np.ones(3, "float32"), np.ones(4, "float32"))
    text = str(info.value)
    assert "x * y + 1.0: operands x (shape (3,)) and y (shape (4,)) cannot be broadcast together" in text, text
    assert "i0" not in text and "i1" not in text, text


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_broadcast_error_of_a_reduction_and_an_unnamed_operand(backend):
    x, y = se.matrix("x"), se.vector("y")
    i = se.vector("i", dtype="int64")
    out = se.sum(se.exp(se.mul(se.take(x, i, axis=0), y)), axis=1)
    f = se.function([x, i, y], out, backend=backend)
    with pytest.raises(ValueError) as info:
        f(np.ones((3, 5), "float32"), np.array([0, 2]), np.ones(4, "float32"))
    text = str(info.value)
    assert "take(x, i" in text and "(shape (2, 5))" in text and "y (shape (4,))" in text, text
    assert "i0" not in text and "i1" not in text, text
