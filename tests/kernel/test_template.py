"""Plan templates: sizes become parameters; the structure decides when code is compiled again."""

from __future__ import annotations

import numpy as np

import symexpr as se
from symexpr.graph.fgraph import FunctionGraph
from symexpr.kernel import lowerings  # noqa: F401  (registers the lowerings)
from symexpr.kernel.lower import build_plan, contiguous_strides
from symexpr.kernel.template import Param, parametrise


def _template(outputs, inputs, shapes):
    fgraph = FunctionGraph(inputs, outputs)
    plan = build_plan(fgraph, [(s, contiguous_strides(s)) for s in shapes])
    return plan, parametrise(plan)


def test_sizes_become_params_and_the_structure_is_shared():
    x = se.matrix("x", "float32")
    outs = [se.softmax(x, axis=-1), x.mean(axis=1)]
    _, t1 = _template(outs, [x], [(3, 5)])
    _, t2 = _template(outs, [x], [(40, 700)])
    assert t1.key() == t2.key()
    assert list(t1.params) != list(t2.params)
    assert 700 in t2.params and 5 in t1.params


def test_innermost_unit_and_zero_strides_stay_literal():
    x = se.matrix("x", "float32")
    y = se.vector("y", "float32")
    z = se.matrix("z", "float32", (None, 1))
    _, t = _template([x + y, x * z], [x, y, z], [(4, 6), (6,), (4, 1)])
    inner = {}
    for kernel in t.steps:
        for a in kernel.phases[0].loads:
            inner.setdefault(a.buffer, set()).add(a.strides[-1])
    assert inner[1] == {1} and inner[2] == {0}  # y's row is contiguous; z broadcasts along the row
    for kernel in t.steps:
        assert all(isinstance(d, Param) for d in kernel.outer)
        assert all(isinstance(s, Param) for a in kernel.phases[0].loads for s in a.strides[:-1])


def test_a_dimension_of_one_that_does_not_broadcast_keeps_the_structure():
    x = se.tensor("x", "float32", (None, None, 8))
    outs = [se.softmax(x, axis=-1), x.sum(axis=-1), x * 2]
    _, t1 = _template(outs, [x], [(1, 5, 8)])
    _, t2 = _template(outs, [x], [(3, 5, 8)])
    _, t3 = _template(outs, [x], [(3, 1, 8)])
    assert t1.key() == t2.key() == t3.key()


def test_a_broadcasting_dimension_of_one_changes_the_structure():
    x = se.matrix("x", "float32")
    y = se.matrix("y", "float32")
    outs = [x * y]
    _, t1 = _template(outs, [x, y], [(4, 6), (4, 6)])
    _, t2 = _template(outs, [x, y], [(4, 6), (4, 1)])
    assert t1.key() != t2.key()


def test_temp_offsets_are_params():
    x = se.matrix("x", "float64")
    h = se.exp(x) @ se.exp(x).T  # the exp result is a temp the GEMM reads
    plan, t = _template([h + 1], [x], [(3, 4)])
    temps = [b for b in t.buffers if b.kind == "temp"]
    assert temps and all(isinstance(b.index, Param) for b in temps)
    assert [int(t.params[b.index.index]) for b in temps] == [b.index for b in plan.buffers if b.kind == "temp"]
    assert np.asarray(t.params).dtype == np.int64
