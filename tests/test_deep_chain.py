"""A 20,000-node chain: building, compiling, running, printing and rewriting never recurse."""

from __future__ import annotations

import inspect
import re
import sys
import time
from contextlib import contextmanager

import numpy as np
import pytest
from support import time_limit

import symexpr as se
from symexpr.graph.fgraph import FunctionGraph
from symexpr.graph.traversal import toposort

#: Apply nodes in the chain (about).
N_NODES = 20_000
#: Each step adds three nodes; a sigmoid every SIGMOID_EVERY steps.
STEPS = N_NODES // 3
SIGMOID_EVERY = 2


@contextmanager
def recursion_limit(limit: int):
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def step(y, i):
    """Structurally distinct nodes: tanh and sigmoid steps alternate."""
    if i % SIGMOID_EVERY:
        return se.sigmoid(y) - y * 0.25
    return se.tanh(y) * 0.5 + y


def numpy_step(y, i):
    if i % SIGMOID_EVERY:
        return (1 / (1 + np.exp(-y))).astype(np.float32) - y * np.float32(0.25)
    return np.tanh(y) * np.float32(0.5) + y


def numpy_chain(x: np.ndarray, first=None) -> np.ndarray:
    y = x
    for i in range(STEPS):
        if i == 0 and first is not None:
            y = first(y) * np.float32(0.5) + y
        else:
            y = numpy_step(y, i)
    return y


@pytest.fixture(scope="module")
def chain():
    x = se.vector("x")
    y = x
    with recursion_limit(1000):
        for i in range(STEPS):
            y = step(y, i)
    return x, y


@pytest.fixture(scope="module")
def values():
    return np.linspace(-3, 3, 13, dtype="float32")


def test_chain_size(chain):
    x, y = chain
    with recursion_limit(1000):
        order = toposort([y])
    assert len(order) >= N_NODES - 3
    assert len({id(n) for n in order}) == len(order), "nodes must be structurally distinct"


def test_build_is_hash_consed(chain):
    x, y = chain
    z = x
    with recursion_limit(1000):
        for i in range(STEPS):
            z = step(z, i)
    assert z is y


def test_compile_and_run(chain, values):
    x, y = chain
    with recursion_limit(1000):
        f = se.function([x], y, backend="numpy")
        got = f(values)
    assert got.dtype == np.float32 and got.shape == values.shape
    np.testing.assert_allclose(got, numpy_chain(values), rtol=1e-5, atol=1e-6)


def test_debugprint(chain):
    x, y = chain
    with recursion_limit(1000):
        text = se.debugprint(y, file="str")
    lines = text.splitlines()
    longest = max(map(len, lines))
    assert longest < 600, f"longest line has {longest} characters"
    top = "Sub" if (STEPS - 1) % SIGMOID_EVERY else "Add"
    assert lines[0] == f"{top} [id A] float32 (None,)"
    assert "··· (continued below)" in text
    assert len(lines) >= N_NODES
    # Every node's id appears, each expanded once: a line without "···" per apply node and root.
    heads = [line for line in lines if "···" not in line]
    assert len(heads) >= N_NODES
    assert text.count("Sigmoid [id") >= STEPS // SIGMOID_EVERY


def test_debugprint_max_depth_bounds_indentation(chain):
    x, y = chain
    with recursion_limit(1000):
        text = se.debugprint(y, file="str", max_depth=10, print_type=False)
    assert max(len(line) for line in text.splitlines()) < 80


def test_pprint_reads_back(chain):
    x, y = chain
    with recursion_limit(1000):
        text = se.pprint(y)
    lines = text.splitlines()
    assert len(lines) > 1
    assert max(map(len, lines)) < 600
    # Each binding names only earlier bindings, and executing the text line by line
    # rebuilds exactly the chain (hash-consing makes ``is`` structural equality).
    namespace = {"x": x, "tanh": se.tanh, "sigmoid": se.sigmoid}
    with recursion_limit(1000):
        for k, line in enumerate(lines[:-1], start=1):
            assert line.startswith(f"t{k} = ")
            for ref in re.findall(r"\bt(\d+)\b", line.split(" = ", 1)[1]):
                assert int(ref) < k
            exec(line, namespace)
        assert eval(lines[-1], namespace) is y


def test_to_networkx(chain):
    x, y = chain
    with recursion_limit(1000):
        g = se.to_networkx(y)
    apply_nodes = [n for n, d in g.nodes(data=True) if d["kind"] == "apply"]
    assert len(apply_nodes) == len(toposort([y]))
    assert g.graph["outputs"] == ["A"]
    (x_key,) = [n for n, d in g.nodes(data=True) if d["obj"] is x]
    assert g.out_degree(x_key) == 2  # tanh(x) and the residual add


def test_to_dot(chain):
    x, y = chain
    with recursion_limit(1000):
        text = se.to_dot(y)
    assert text.startswith("digraph")
    assert text.count('shape=box') == len(toposort([y]))


def test_replace_input_most_node(chain, values):
    x, y = chain
    first = toposort([y])[0]
    assert first.op.display_name() == "Tanh" and first.inputs[0] is x
    fg = FunctionGraph([x], [y])
    with recursion_limit(1000):
        fg.replace(first.outputs[0], se.sin(x), reason="tanh->sin")
        assert fg.outputs[0] is not y
        assert fg.history[0].rule == "tanh->sin"
        order = fg.toposort()
        assert order[0].op.display_name() == "Sin"
        assert len(order) == len(toposort([y]))
        got = se.get_backend("numpy").compile(fg)([values])[0]
        # The user's chain is untouched.
        assert toposort([y])[0] is first
        original = se.function([x], y, backend="numpy")(values)
    np.testing.assert_allclose(got, numpy_chain(values, first=np.sin), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(original, numpy_chain(values), rtol=1e-5, atol=1e-6)


def test_decompose(chain, values):
    """The decompose pass expands every sigmoid of the chain in one go.

    The chain holds thousands of sigmoids; the pass must not rebuild the whole
    chain once per composite (that is quadratic or worse and takes minutes).
    """
    x, y = chain
    start = time.perf_counter()
    with recursion_limit(1000), time_limit(10, f"decompose of a {N_NODES}-node chain"):
        f = se.function([x], y, passes=["decompose"], backend="numpy")
    elapsed = time.perf_counter() - start
    names = {node.op.display_name() for node in f.fgraph.toposort()}
    assert "Sigmoid" not in names
    assert "Tanh" in names
    with recursion_limit(1000):
        got = f(values)
    np.testing.assert_allclose(got, numpy_chain(values), rtol=1e-4, atol=1e-5)
    assert elapsed < 10


# The llvm backend compiles ~2 ms per fused scalar op and ~10 ms per unfused kernel
# (docs/llvm-backend.md), so it gets shorter chains; a recursion limit only a little
# above the current depth catches any recursion that grows with the chain.
@pytest.mark.parametrize("steps, passes", [(600, None), (120, "none")], ids=["fused", "one-kernel-per-node"])
def test_llvm_compiles_a_long_chain_without_recursion(steps, passes):
    x = se.vector("x")
    y = x
    for i in range(steps):
        y = step(y, i)
    values = np.linspace(-3, 3, 37, dtype="float32")
    want = values
    for i in range(steps):
        want = numpy_step(want, i)
    depth = len(inspect.stack())
    with recursion_limit(depth + 150):
        f = se.function([x], y, passes=passes, backend="llvm")
        got = f(values)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
