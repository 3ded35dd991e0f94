"""FunctionGraph: toposort, clients, replace / replace_all, history."""

from __future__ import annotations

import numpy as np
import pytest
from support import ids

import symexpr as se
from symexpr.graph.basic import Apply, Constant
from symexpr.graph.fgraph import FunctionGraph
from symexpr.graph.traversal import toposort


def evaluate(fg: FunctionGraph, *arrays) -> list:
    """Run the graph's current outputs with the NumPy reference backend."""
    return se.get_backend("numpy").compile(fg)(list(arrays))


def snapshot(outputs):
    """Every node the outputs depend on, with its op and input objects."""
    return [(node, node.op, node.inputs, node.outputs) for node in toposort(outputs)]


def assert_topological(order):
    position = {id(node): i for i, node in enumerate(order)}
    assert len(position) == len(order), "a node appears twice"
    for i, node in enumerate(order):
        for var in node.inputs:
            if var.owner is not None:
                assert id(var.owner) in position, f"{var.owner} is missing from the order"
                assert position[id(var.owner)] < i, f"{node} comes before its input {var.owner}"


@pytest.fixture
def diamond():
    x, y = se.vector("x"), se.vector("y")
    a = se.exp(x)
    b = a * y
    c = b + a
    d = se.sin(a)
    return x, y, a, b, c, d


# -- construction ----------------------------------------------------------------------


def test_inputs_must_be_input_variables():
    x = se.vector("x")
    with pytest.raises(TypeError, match="input 0"):
        FunctionGraph([x + 1], [x])
    with pytest.raises(TypeError, match="input 1"):
        FunctionGraph([x, se.constant(1.0)], [x])
    with pytest.raises(TypeError):
        FunctionGraph([np.ones(3)], [x])


def test_inputs_and_outputs_containers(diamond):
    x, y, a, b, c, d = diamond
    fg = FunctionGraph([x, y], (c, d))
    assert ids(fg.inputs) == ids((x, y))
    assert ids(fg.outputs) == ids([c, d])
    assert fg.history == []
    assert "FunctionGraph" in repr(fg)


# -- toposort ----------------------------------------------------------------------------


def test_toposort_order(diamond):
    x, y, a, b, c, d = diamond
    fg = FunctionGraph([x, y], [c, d])
    order = fg.toposort()
    assert_topological(order)
    assert set(map(id, order)) == {id(v.owner) for v in (a, b, c, d)}
    assert order[0] is a.owner
    assert fg.apply_nodes == order


def test_toposort_is_deterministic(diamond):
    x, y, a, b, c, d = diamond
    first = FunctionGraph([x, y], [c, d]).toposort()
    second = FunctionGraph([x, y], [c, d]).toposort()
    assert first == second
    # Depth-first post-order, inputs left to right.
    assert first == [a.owner, b.owner, c.owner, d.owner]


def test_toposort_only_needed_nodes(diamond):
    x, y, a, b, c, d = diamond
    unrelated = se.cos(y) * 3  # built but not an output
    fg = FunctionGraph([x, y], [b])
    assert fg.toposort() == [a.owner, b.owner]
    assert unrelated.owner not in fg.toposort()


def test_toposort_larger_graph():
    x = se.matrix("x")
    w = se.constant(np.ones((3, 3), "float32"), name="w")
    h = x
    for i in range(10):
        h = se.tanh(h @ w + i) + h * 0.5
    fg = FunctionGraph([x], [h, h.sum(axis=0)])
    order = fg.toposort()
    assert_topological(order)
    assert order[-1] is h.sum(axis=0).owner


def test_variables(diamond):
    x, y, a, b, c, d = diamond
    w = se.constant(2.0, name="two")
    out = c * w
    fg = FunctionGraph([x, y], [out])
    ids = {id(v) for v in fg.variables}
    for var in (x, y, a, b, c, out):
        assert id(var) in ids
    assert any(isinstance(v, Constant) and v.name == "two" for v in fg.variables)
    assert len(ids) == len(fg.variables)


# -- clients -----------------------------------------------------------------------------


def test_clients(diamond):
    x, y, a, b, c, d = diamond
    fg = FunctionGraph([x, y], [c, a])
    clients = fg.clients
    assert clients[x] == [(a.owner, 0)]
    assert clients[y] == [(b.owner, 1)]
    assert clients[a] == [(b.owner, 0), (c.owner, 1), ("output", 1)]
    assert clients[b] == [(c.owner, 0)]
    assert clients[c] == [("output", 0)]
    assert d not in clients


def test_clients_repeated_uses():
    x = se.vector("x")
    sq = x * x
    fg = FunctionGraph([x], [sq, sq])
    assert fg.clients[x] == [(sq.owner, 0), (sq.owner, 1)]
    assert fg.clients[sq] == [("output", 0), ("output", 1)]


def test_clients_unused_input_and_input_output():
    x, y = se.vector("x"), se.vector("y")
    fg = FunctionGraph([x, y], [x])
    assert fg.clients[y] == []
    assert fg.clients[x] == [("output", 0)]
    assert fg.toposort() == []


# -- replace -------------------------------------------------------------------------------


def test_replace_rebuilds_consumers(diamond):
    x, y, a, b, c, d = diamond
    fg = FunctionGraph([x, y], [c, d])
    new = se.cos(x)
    fg.replace(a, new, reason="exp->cos")
    # Hash-consing: the rebuilt graph is the graph one would build by hand.
    assert fg.outputs[0] is new * y + new
    assert fg.outputs[1] is se.sin(new)
    assert ids([(h.rule, h.before, h.after) for h in fg.history]) == ids([("exp->cos", a, new)])
    # The derived views follow the change.
    assert a.owner not in fg.toposort()
    assert_topological(fg.toposort())
    assert fg.clients[new] == [(fg.outputs[0].owner.inputs[0].owner, 0), (fg.outputs[0].owner, 1), (fg.outputs[1].owner, 0)]
    assert a not in fg.clients


def test_replace_does_not_mutate_the_original_graph(diamond):
    x, y, a, b, c, d = diamond
    before = snapshot([c, d])
    fg = FunctionGraph([x, y], [c, d])
    fg.replace(a, se.cos(x))
    assert ids(snapshot([c, d])) == ids(before)
    assert ids(c.owner.inputs) == ids((b, a)) and ids(a.owner.inputs) == ids((x,))
    xv = np.array([0.0, 1.0, -2.0], "float32")
    yv = np.array([3.0, 0.5, 2.0], "float32")
    # The original outputs still compute the old values ...
    old_c, old_d = se.function([x, y], [c, d])(xv, yv)
    np.testing.assert_allclose(old_c, np.exp(xv) * yv + np.exp(xv), rtol=1e-6)
    np.testing.assert_allclose(old_d, np.sin(np.exp(xv)), rtol=1e-6)
    # ... and the rewritten graph the new ones.
    new_c, new_d = evaluate(fg, xv, yv)
    np.testing.assert_allclose(new_c, np.cos(xv) * yv + np.cos(xv), rtol=1e-6)
    np.testing.assert_allclose(new_d, np.sin(np.cos(xv)), rtol=1e-6)


def test_replace_an_output_variable(diamond):
    x, y, a, b, c, d = diamond
    fg = FunctionGraph([x, y], [c, d])
    fg.replace(c, se.tanh(x))
    assert ids(fg.outputs) == ids([se.tanh(x), d])
    assert fg.clients[se.tanh(x)] == [("output", 0)]


def test_replace_unused_variable_changes_nothing(diamond):
    x, y, a, b, c, d = diamond
    fg = FunctionGraph([x, y], [b])
    fg.replace(d, se.cos(a))
    assert ids(fg.outputs) == ids([b])


def test_replace_with_itself_is_a_no_op(diamond):
    x, y, a, b, c, d = diamond
    fg = FunctionGraph([x, y], [c])
    fg.replace(a, a)
    assert ids(fg.outputs) == ids([c])
    assert fg.history == []


@pytest.mark.parametrize(
    "new",
    [
        lambda: se.vector("z", dtype="float64"),
        lambda: se.matrix("z"),
        lambda: se.scalar("z"),
        lambda: se.vector("z", dtype="int32"),
    ],
    ids=["dtype", "rank-up", "rank-down", "int"],
)
def test_replace_type_incompatible_raises(new):
    x = se.vector("x")
    out = se.exp(x) * 2
    fg = FunctionGraph([x], [out])
    with pytest.raises(TypeError, match="replace"):
        fg.replace(se.exp(x), new())
    assert ids(fg.outputs) == ids([out])
    assert fg.history == []


def test_replace_contradicting_static_shape_raises():
    v = se.vector("v", shape=(3,))
    fg = FunctionGraph([v], [se.exp(v)])
    longer = se.concatenate([se.exp(v), se.exp(v)[:1]])
    assert longer.type.shape == (4,)
    with pytest.raises(TypeError, match=r"\(4,\)"):
        fg.replace(se.exp(v), longer)
    assert ids(fg.outputs) == ids([se.exp(v)])


def test_replace_with_more_specific_static_shape():
    w = se.vector("w")
    fg = FunctionGraph([w], [se.exp(w) * 2])
    first = se.broadcast_to(se.exp(w)[:1], (3,))
    assert first.type.shape == (3,)
    fg.replace(se.exp(w), first)
    assert fg.outputs[0].type.shape == (3,)
    got = evaluate(fg, np.array([0.0, 1.0, 2.0], "float32"))[0]
    np.testing.assert_allclose(got, [2.0, 2.0, 2.0], rtol=1e-6)


def test_replace_with_non_variable_raises():
    x = se.vector("x")
    fg = FunctionGraph([x], [se.exp(x)])
    with pytest.raises(TypeError, match="Variable"):
        fg.replace(se.exp(x), 3.0)


def test_replace_input_by_expression_of_itself():
    """``replace(x, f(x))`` wraps ``x`` instead of creating a cycle."""
    x = se.vector("x")
    out = se.exp(x) * 2
    fg = FunctionGraph([x], [out])
    wrapped = se.cast(se.cast(x, "float64") * 1.5, "float32")
    fg.replace(x, wrapped, reason="cast")
    assert fg.outputs[0] is se.exp(wrapped) * 2
    assert_topological(fg.toposort())  # toposort raises on a cycle
    assert ids(fg.inputs) == ids((x,))
    xv = np.array([0.0, 1.0, -1.0], "float32")
    np.testing.assert_allclose(evaluate(fg, xv)[0], np.exp((xv.astype("float64") * 1.5).astype("float32")) * 2, rtol=1e-6)
    # The user's graph still computes exp(x) * 2.
    np.testing.assert_allclose(se.function([x], out)(xv), np.exp(xv) * 2, rtol=1e-6)


def test_replace_intermediate_by_expression_of_itself():
    x = se.vector("x")
    e = se.exp(x)
    out = e + 1
    fg = FunctionGraph([x], [out])
    fg.replace(e, e * 2)
    assert fg.outputs[0] is e * 2 + 1
    xv = np.array([0.0, 1.0], "float32")
    np.testing.assert_allclose(evaluate(fg, xv)[0], np.exp(xv) * 2 + 1, rtol=1e-6)


def test_replace_by_expression_already_in_the_graph():
    """Substituting ``x := sqrt(x)`` in ``2 x + sqrt(x)`` gives ``2 sqrt(x) + sqrt(sqrt(x))``.

    The existing ``sqrt(x)`` node is a use of ``x`` in the graph, even though
    hash-consing makes it the same object as the replacement.
    """
    x = se.vector("x")
    fg = FunctionGraph([x], [x * 2 + se.sqrt(x)])
    fg.replace(x, se.sqrt(x))
    xv = np.array([1.0, 4.0, 16.0], "float32")
    expected = np.sqrt(xv) * 2 + np.sqrt(np.sqrt(xv))
    np.testing.assert_allclose(evaluate(fg, xv)[0], expected, rtol=1e-6)


def test_replace_all_several_pairs():
    x, y = se.vector("x"), se.vector("y")
    out = se.exp(x) + se.sin(y)
    fg = FunctionGraph([x, y], [out, se.exp(x)])
    fg.replace_all({se.exp(x): se.cos(x), se.sin(y): se.tanh(y)}, reason="pair")
    assert ids(fg.outputs) == ids([se.cos(x) + se.tanh(y), se.cos(x)])
    assert ids([(h.rule, h.before, h.after) for h in fg.history]) == ids([
        ("pair", se.exp(x), se.cos(x)),
        ("pair", se.sin(y), se.tanh(y)),
    ])
    xv = np.array([0.5, 1.0], "float32")
    yv = np.array([2.0, -1.0], "float32")
    got = evaluate(fg, xv, yv)
    np.testing.assert_allclose(got[0], np.cos(xv) + np.tanh(yv), rtol=1e-6)
    np.testing.assert_allclose(got[1], np.cos(xv), rtol=1e-6)
    assert ids(out.owner.inputs) == ids((se.exp(x), se.sin(y)))


def test_replace_all_swap_is_simultaneous():
    x, y = se.vector("x"), se.vector("y")
    fg = FunctionGraph([x, y], [x - y])
    fg.replace_all({x: y, y: x})
    assert ids(fg.outputs) == ids([y - x])


def test_replace_all_chained_nodes():
    x = se.vector("x")
    a = se.exp(x)
    b = se.sin(a)
    out = b * 3 + a
    fg = FunctionGraph([x], [out])
    fg.replace_all({a: se.cos(x), b: se.tanh(x)})
    assert ids(fg.outputs) == ids([se.tanh(x) * 3 + se.cos(x)])


def test_replace_all_empty_mapping():
    x = se.vector("x")
    fg = FunctionGraph([x], [x + 1])
    fg.replace_all({})
    assert ids(fg.outputs) == ids([x + 1]) and fg.history == []


def test_history_records_reasons_in_order():
    x = se.vector("x")
    fg = FunctionGraph([x], [se.exp(x) * 2])
    fg.replace(se.exp(x), se.sin(x), reason="first")
    fg.replace(se.sin(x), se.cos(x), reason="second")
    fg.replace(se.cos(x) * 2, se.cos(x) + se.cos(x))
    assert [h.rule for h in fg.history] == ["first", "second", "replace"]
    assert fg.history[0].before is se.exp(x) and fg.history[0].after is se.sin(x)
    assert fg.history[1].before is se.sin(x) and fg.history[1].after is se.cos(x)
    assert ids(fg.outputs) == ids([se.cos(x) + se.cos(x)])


def test_rebuilt_nodes_reinfer_types():
    x = se.vector("x")
    v3 = se.vector("v3", shape=(3,))
    fg = FunctionGraph([x, v3], [se.exp(x) + 1])
    fg.replace(se.exp(x), se.exp(x) * v3)
    assert fg.outputs[0].type.shape == (3,)  # the rebuilt Add knows the static size now
    assert isinstance(fg.outputs[0].owner, Apply)
