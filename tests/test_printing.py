"""Printers: debugprint, pprint, to_dot and to_networkx (golden text where the format matters)."""

from __future__ import annotations

import io
import re
import shutil

import networkx as nx
import numpy as np
import pytest
from support import time_limit

import symexpr as se
from symexpr.graph.fgraph import FunctionGraph


def golden_graph():
    x = se.matrix("x")
    w = se.constant(np.arange(32, dtype="float32").reshape(8, 4), name="w")
    b = se.vector("b")
    y = se.softmax(x @ w + b, axis=-1).sum(axis=0)
    return x, w, b, y


GOLDEN_DEBUGPRINT = """\
Sum{axis=(0,)} [id A] float32 (4,)
 └─ Softmax{axis=1} [id B] float32 (None, 4)
    └─ Add [id C] float32 (None, 4)
       ├─ MatMul [id D] float32 (None, 4)
       │  ├─ x [id E] float32 (None, None)
       │  └─ w [id F] float32 (8, 4)
       └─ b [id G] float32 (None,)
"""

GOLDEN_DEBUGPRINT_NO_TYPES = """\
Sum{axis=(0,)} [id A]
 └─ Softmax{axis=1} [id B]
    └─ Add [id C]
       ├─ MatMul [id D]
       │  ├─ x [id E]
       │  └─ w [id F]
       └─ b [id G]
"""

GOLDEN_PPRINT = "sum(softmax(x @ w + b, axis=1), axis=(0,))"


# -- golden -----------------------------------------------------------------------------------


def test_golden_debugprint():
    *_, y = golden_graph()
    assert se.debugprint(y, file="str") == GOLDEN_DEBUGPRINT


def test_golden_debugprint_without_types():
    *_, y = golden_graph()
    assert se.debugprint(y, file="str", print_type=False) == GOLDEN_DEBUGPRINT_NO_TYPES


def test_golden_pprint():
    *_, y = golden_graph()
    assert se.pprint(y) == GOLDEN_PPRINT


def test_golden_pprint_evaluates_back_to_the_same_graph():
    x, w, b, y = golden_graph()
    namespace = {"x": x, "w": w, "b": b, "sum": se.sum, "softmax": se.softmax}
    assert eval(GOLDEN_PPRINT, namespace) is y


def test_golden_function_prints_like_its_graph():
    x, w, b, y = golden_graph()
    f = se.function([x, b], y, passes="none")
    assert se.debugprint(f, file="str") == GOLDEN_DEBUGPRINT
    assert se.pprint(f) == GOLDEN_PPRINT


# -- debugprint ---------------------------------------------------------------------------------


def test_shared_subgraph_printed_once():
    x = se.matrix("x")
    e = se.exp(x)
    out = e + e * 2
    assert se.debugprint(out, file="str") == (
        "Add [id A] float32 (None, None)\n"
        " ├─ Exp [id B] float32 (None, None)\n"
        " │  └─ x [id C] float32 (None, None)\n"
        " └─ Mul [id D] float32 (None, None)\n"
        "    ├─ Exp [id B] float32 (None, None) ···\n"
        "    └─ 2.0 [id E] float32 ()\n"
    )


def test_shared_subtree_is_not_expanded_twice():
    x = se.vector("x")
    deep = se.tanh(se.sin(se.cos(x)))
    out = deep * deep + deep
    text = se.debugprint(out, file="str")
    assert text.count("Cos [id") == 1
    assert text.count("Tanh [id") == 3
    assert text.count("···") == 2


def test_debugprint_list_of_variables():
    x = se.matrix("x")
    e = se.exp(x)
    text = se.debugprint([e + 1, e * 2], file="str")
    assert text == (
        "Add [id A] float32 (None, None)\n"
        " ├─ Exp [id B] float32 (None, None)\n"
        " │  └─ x [id C] float32 (None, None)\n"
        " └─ 1.0 [id D] float32 ()\n"
        "Mul [id E] float32 (None, None)\n"
        " ├─ Exp [id B] float32 (None, None) ···\n"
        " └─ 2.0 [id F] float32 ()\n"
    )
    assert se.debugprint((e + 1, e * 2), file="str") == text


def test_debugprint_unnamed_input_and_named_intermediate():
    v = se.vector()
    y = v * 2
    y.name = "twice"
    try:
        assert se.debugprint(y + 1, file="str") == (
            "Add [id A] float32 (None,)\n"
            " ├─ Mul [id B] 'twice' float32 (None,)\n"
            " │  ├─ <input> [id C] float32 (None,)\n"
            " │  └─ 2.0 [id D] float32 ()\n"
            " └─ 1.0 [id E] float32 ()\n"
        )
    finally:
        y.name = None


def test_debugprint_to_file_object():
    *_, y = golden_graph()
    buf = io.StringIO()
    text = se.debugprint(y, file=buf)
    assert buf.getvalue() == text == GOLDEN_DEBUGPRINT


def test_debugprint_defaults_to_stdout(capsys):
    *_, y = golden_graph()
    text = se.debugprint(y)
    assert capsys.readouterr().out == text == GOLDEN_DEBUGPRINT


def test_debugprint_str_prints_nothing(capsys):
    *_, y = golden_graph()
    text = se.debugprint(y, file="str")
    assert capsys.readouterr().out == ""
    assert text == GOLDEN_DEBUGPRINT


def test_debugprint_function_shows_the_rewritten_graph():
    x, w, b, y = golden_graph()
    f = se.function([x, b], y, passes=["decompose"])
    text = se.debugprint(f, file="str")
    assert "Softmax" not in text
    assert "TrueDiv" in text and "Exp" in text
    assert text.splitlines()[0] == "Sum{axis=(0,)} [id A] float32 (4,)"
    assert text == se.debugprint(f.fgraph, file="str") == se.debugprint(f.fgraph.outputs, file="str")


def test_debugprint_function_graph():
    x, w, b, y = golden_graph()
    fg = FunctionGraph([x, b], [y])
    assert se.debugprint(fg, file="str") == GOLDEN_DEBUGPRINT


CHAIN_MAX_DEPTH_2 = """\
Exp [id A] float32 (None,)
 └─ Sin [id B] float32 (None,)
    └─ Cos [id C] float32 (None,) ··· (continued below)
Cos [id C] float32 (None,)
 └─ Tanh [id D] float32 (None,)
    └─ x [id E] float32 (None,)
"""


def test_max_depth_continuation():
    x = se.vector("x")
    y = se.exp(se.sin(se.cos(se.tanh(x))))
    assert se.debugprint(y, file="str", max_depth=2) == CHAIN_MAX_DEPTH_2
    full = se.debugprint(y, file="str")
    assert "continued below" not in full
    assert len(full.splitlines()) == 5


def test_max_depth_one():
    x = se.vector("x")
    y = se.exp(se.sin(x))
    assert se.debugprint(y, file="str", max_depth=1, print_type=False) == (
        "Exp [id A]\n"
        " └─ Sin [id B] ··· (continued below)\n"
        "Sin [id B]\n"
        " └─ x [id C]\n"
    )


@pytest.mark.parametrize("max_depth", [0, -1])
def test_max_depth_below_one_is_rejected(max_depth):
    # With max_depth=0 every root is "continued below" as itself: it must not loop forever.
    x = se.vector("x")
    y = se.exp(se.sin(x))
    with time_limit(1, f"debugprint(max_depth={max_depth})"):
        with pytest.raises(ValueError, match="max_depth"):
            se.debugprint(y, file="str", max_depth=max_depth)


def test_small_multidimensional_constant_prints_on_one_line():
    x = se.matrix("x")
    y = x + se.constant(np.eye(2, dtype="float32"))
    text = se.debugprint(y, file="str")
    assert len(text.splitlines()) == 3, text
    assert "\n" not in se.pprint(y), se.pprint(y)


def test_graphs_of_roots_only():
    x = se.vector("x")
    c = se.constant(np.ones(2, "float32"))
    assert se.debugprint([x, x + 1, c], file="str") == (
        "x [id A] float32 (None,)\n"
        "Add [id B] float32 (None,)\n"
        " ├─ x [id A] float32 (None,)\n"
        " └─ 1.0 [id C] float32 ()\n"
        "[1., 1.] [id D] float32 (2,)\n"
    )
    assert se.pprint([x, c]) == "x\n[1., 1.]"
    g = se.to_networkx(x)
    assert list(g.nodes) == ["A"] and g.graph["outputs"] == ["A"] and g.number_of_edges() == 0
    f = se.function([x], [x, c])
    assert se.debugprint(f, file="str") == "x [id A] float32 (None,)\n[1., 1.] [id B] float32 (2,)\n"
    assert '"A" -> "out0";' in se.to_dot(c)


def test_constant_labels():
    x = se.vector("x")
    big = se.constant(np.zeros(10, "float32"))
    named = se.constant(np.zeros(10, "float32"), name="zeros")
    small = se.constant(np.array([1, 2], "float32"))
    text = se.debugprint([x + big, x + named, x + small], file="str", print_type=False)
    assert "Constant{(10,)} [id" in text
    assert "zeros [id" in text
    assert "[1., 2.] [id" in text


# -- pprint ---------------------------------------------------------------------------------------


def scalars():
    return se.scalar("a"), se.scalar("b"), se.scalar("c")


PRECEDENCE_CASES = [
    ("(a+b)*c", lambda a, b, c, x, y: (a + b) * c, "(a + b) * c"),
    ("a+b*c", lambda a, b, c, x, y: a + b * c, "a + b * c"),
    ("a-(b-c)", lambda a, b, c, x, y: a - (b - c), "a - (b - c)"),
    ("a-(b+c)", lambda a, b, c, x, y: a - (b + c), "a - (b + c)"),
    ("(a-b)-c", lambda a, b, c, x, y: (a - b) - c, "a - b - c"),
    ("a+(b+c)", lambda a, b, c, x, y: a + (b + c), "a + (b + c)"),
    ("a/(b*c)", lambda a, b, c, x, y: a / (b * c), "a / (b * c)"),
    ("(a/b)*c", lambda a, b, c, x, y: (a / b) * c, "a / b * c"),
    ("a//(b%c)", lambda a, b, c, x, y: a // (b % c), "a // (b % c)"),
    ("-(a+b)", lambda a, b, c, x, y: -(a + b), "-(a + b)"),
    ("-a+b", lambda a, b, c, x, y: -a + b, "-a + b"),
    ("a--b", lambda a, b, c, x, y: a - -b, "a - -b"),
    ("-(a**b)", lambda a, b, c, x, y: -(a**b), "-a ** b"),
    ("(-a)**b", lambda a, b, c, x, y: (-a) ** b, "(-a) ** b"),
    ("a**b**c", lambda a, b, c, x, y: a**b**c, "a ** b ** c"),
    ("(a**b)**c", lambda a, b, c, x, y: (a**b) ** c, "(a ** b) ** c"),
    ("x.T@y", lambda a, b, c, x, y: x.T @ y, "x.T @ y"),
    ("(x@y).T", lambda a, b, c, x, y: (x @ y).T, "(x @ y).T"),
    ("x@(y@x)", lambda a, b, c, x, y: x @ (y @ x), "x @ (y @ x)"),
    ("(x@y)@x", lambda a, b, c, x, y: (x @ y) @ x, "x @ y @ x"),
    ("(x*2)@y", lambda a, b, c, x, y: (x * 2) @ y, "x * 2.0 @ y"),
    ("x@(y*2)", lambda a, b, c, x, y: x @ (y * 2), "x @ (y * 2.0)"),
    ("-x@y", lambda a, b, c, x, y: -x @ y, "-x @ y"),
    ("-(x@y)", lambda a, b, c, x, y: -(x @ y), "-(x @ y)"),
    ("(x+1)[0]", lambda a, b, c, x, y: (x + 1)[0], "(x + 1.0)[0]"),
    ("x[0]+1", lambda a, b, c, x, y: x[0] + 1, "x[0] + 1.0"),
    ("(x**3)[0]", lambda a, b, c, x, y: (x**3)[0], "(x ** 3.0)[0]"),
    ("(-x)[0]", lambda a, b, c, x, y: (-x)[0], "(-x)[0]"),
    ("-x[0]", lambda a, b, c, x, y: -x[0], "-x[0]"),
    ("x[1:, None]", lambda a, b, c, x, y: x[1:, None], "x[1:, None]"),
    ("a+b<c", lambda a, b, c, x, y: a + b < c, "a + b < c"),
    ("(a<b)==(b<c)", lambda a, b, c, x, y: (a < b) == (b < c), "(a < b) == (b < c)"),
    ("(a<b)<c", lambda a, b, c, x, y: (a < b) < c, "(a < b) < c"),
    ("a<(b<c)", lambda a, b, c, x, y: a < (b < c), "a < (b < c)"),
    ("(a<=b)>(b>=c)", lambda a, b, c, x, y: (a <= b) > (b >= c), "(a <= b) > (b >= c)"),
    ("(a<b)&(b<c)", lambda a, b, c, x, y: (a < b) & (b < c), "(a < b) & (b < c)"),
    ("~(a<b)", lambda a, b, c, x, y: ~(a < b), "~(a < b)"),
    ("(a<b)|(b<c)&(a!=c)", lambda a, b, c, x, y: (a < b) | ((b < c) & (a != c)), "(a < b) | (b < c) & (a != c)"),
    ("((a<b)|(b<c))&(a!=c)", lambda a, b, c, x, y: ((a < b) | (b < c)) & (a != c), "((a < b) | (b < c)) & (a != c)"),
    ("exp(a+b)*c", lambda a, b, c, x, y: se.exp(a + b) * c, "exp(a + b) * c"),
    ("maximum", lambda a, b, c, x, y: se.maximum(a + b, c * 2), "maximum(a + b, c * 2.0)"),
    ("where", lambda a, b, c, x, y: se.where(a < b, a - b, -a), "where(a < b, a - b, -a)"),
    ("sum", lambda a, b, c, x, y: (x * y).sum(axis=1), "sum(x * y, axis=(1,))"),
    ("sum-keepdims", lambda a, b, c, x, y: x.max(axis=-1, keepdims=True) - x, "max(x, axis=(1,), keepdims=True) - x"),
    ("cast", lambda a, b, c, x, y: se.cast(a + b, "float64") * 2, "cast(a + b, dtype='float64') * 2.0"),
    ("abs", lambda a, b, c, x, y: abs(a - b), "abs(a - b)"),
    ("softmax", lambda a, b, c, x, y: se.softmax(x * 2, axis=0) + y, "softmax(x * 2.0, axis=0) + y"),
]


@pytest.mark.parametrize("build, expected", [(b, e) for _, b, e in PRECEDENCE_CASES], ids=[i for i, _, _ in PRECEDENCE_CASES])
def test_pprint_precedence(build, expected):
    a, b, c = scalars()
    x, y = se.matrix("x"), se.matrix("y")
    expr = build(a, b, c, x, y)
    assert se.pprint(expr) == expected
    # Read back with Python's own precedence rules, the text builds the very same
    # (hash-consed) graph.
    namespace = {
        "a": a, "b": b, "c": c, "x": x, "y": y,
        "exp": se.exp, "maximum": se.maximum, "where": se.where, "sum": se.sum, "max": se.max,
        "cast": se.cast, "abs": se.abs, "softmax": se.softmax,
    }
    assert eval(expected, namespace) is expr


def test_pprint_shared_long_subexpression_is_bound_once():
    x = se.matrix("x")
    s = se.exp(x - x.max(axis=-1, keepdims=True))
    out = s / s.sum(axis=-1, keepdims=True)
    text = se.pprint(out)
    assert text == "t1 = exp(x - max(x, axis=(1,), keepdims=True))\nt1 / sum(t1, axis=(1,), keepdims=True)"
    namespace = {"x": x, "exp": se.exp, "max": se.max, "sum": se.sum}
    *bindings, last = text.splitlines()
    for line in bindings:
        exec(line, namespace)
    assert eval(last, namespace) is out
    # A larger threshold inlines it.
    assert "t1" not in se.pprint(out, max_shared_len=1000)


def test_pprint_short_shared_subexpression_is_inlined():
    x = se.matrix("x")
    e = se.exp(x)
    assert se.pprint(e * e + e) == "exp(x) * exp(x) + exp(x)"


def test_pprint_several_outputs():
    x = se.matrix("x")
    assert se.pprint([(x + 1) * 2, -x**3]) == "(x + 1.0) * 2.0\n-x ** 3.0"
    assert se.pprint([x, x + 1]) == "x\nx + 1.0"


def test_pprint_roots():
    assert se.pprint(se.vector() + 1) == "<input> + 1.0"
    assert se.pprint(se.vector("v")) == "v"
    assert se.pprint(se.constant(np.ones(8, "float32"), name="ones") * se.vector("v")) == "ones * v"
    assert se.pprint(se.constant(np.float32(-1)) ** se.scalar("a")) == "(-1.0) ** a"


def test_pprint_function_shows_the_rewritten_graph():
    x = se.matrix("x")
    f = se.function([x], se.sigmoid(x), passes=["decompose"])
    assert se.pprint(f) == "where(x >= 0.0, 1.0 / (1.0 + exp(-abs(x))), exp(-abs(x)) / (1.0 + exp(-abs(x))))"


# -- to_dot -------------------------------------------------------------------------------------


def test_to_dot_text():
    x, w, b, y = golden_graph()
    text = se.to_dot(y)
    assert text.startswith("digraph")
    assert text.rstrip().endswith("}")
    for op in ["Sum{axis=(0,)}", "Softmax{axis=1}", "Add", "MatMul"]:
        assert f'"{op}\\n' in text or f'label="{op}' in text, op
    for root in ["x", "w", "b"]:
        assert f'label="{root}\\n' in text
    assert text.count(" -> ") == 7  # six data edges and one output edge
    assert '"A" -> "out0";' in text
    assert '"E" -> "D" [label="0"];' in text and '"F" -> "D" [label="1"];' in text


def test_to_dot_every_op_of_a_rewritten_function():
    x, w, b, y = golden_graph()
    f = se.function([x, b], y, passes=["decompose"])
    text = se.to_dot(f)
    for node in f.fgraph.toposort():
        assert node.op.display_name() in text


def test_to_dot_repeated_input_edge_label():
    x = se.vector("x")
    assert '"B" -> "A" [label="0,1"];' in se.to_dot(x * x)


@pytest.mark.parametrize("ext", ["dot", "gv", "DOT"])
def test_to_dot_writes_dot_files(tmp_path, ext):
    *_, y = golden_graph()
    path = tmp_path / f"graph.{ext}"
    text = se.to_dot(y, path)
    assert path.read_text() == text
    text2 = se.to_dot(y, str(tmp_path / "again.dot"))
    assert text2 == text


@pytest.mark.parametrize("ext", ["svg", "png", "pdf"])
def test_to_dot_render_without_graphviz(tmp_path, monkeypatch, ext):
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    *_, y = golden_graph()
    path = tmp_path / f"graph.{ext}"
    with pytest.raises(RuntimeError) as info:
        se.to_dot(y, path)
    msg = str(info.value)
    assert "Graphviz" in msg and "dot" in msg
    assert not path.exists()


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_to_dot_renders_svg(tmp_path):
    *_, y = golden_graph()
    path = tmp_path / "graph.svg"
    se.to_dot(y, path)
    assert "<svg" in path.read_text()


@pytest.mark.parametrize("name", ["graph.txt", "graph", "graph.jpeg"])
def test_to_dot_rejects_unknown_extensions(tmp_path, name):
    *_, y = golden_graph()
    path = tmp_path / name
    with pytest.raises(ValueError, match=r"\.dot"):
        se.to_dot(y, path)
    assert not path.exists()


# -- to_networkx -----------------------------------------------------------------------------------


def debugprint_ids(text: str) -> dict[str, str]:
    """id -> head text (op display name or root label) from debugprint output."""
    found = {}
    for line in text.splitlines():
        m = re.match(r"^[ │├└─]*(.+?) \[id ([A-Z]+)\]", line)
        assert m, line
        found.setdefault(m.group(2), m.group(1))
    return found


def test_to_networkx_nodes():
    x, w, b, y = golden_graph()
    g = se.to_networkx(y)
    assert isinstance(g, nx.DiGraph)
    assert nx.is_directed_acyclic_graph(g)
    assert g.graph["outputs"] == ["A"]
    assert set(g.nodes) == set("ABCDEFG")
    a = g.nodes["A"]
    assert (a["kind"], a["op"], a["dtype"], a["shape"]) == ("apply", "Sum{axis=(0,)}", "float32", (4,))
    assert a["obj"] is y.owner
    assert g.nodes["E"]["kind"] == "input" and g.nodes["E"]["op"] is None and g.nodes["E"]["obj"] is x
    assert g.nodes["F"]["kind"] == "constant" and g.nodes["F"]["shape"] == (8, 4) and g.nodes["F"]["obj"] is w
    assert g.nodes["G"]["dtype"] == "float32" and g.nodes["G"]["shape"] == (None,)
    for _, data in g.nodes(data=True):
        assert {"op", "dtype", "shape", "kind", "label"} <= set(data)


def test_to_networkx_ids_match_debugprint():
    x = se.matrix("x")
    e = se.exp(x)
    outs = [(e + 1).sum(axis=0), e * se.constant(np.ones(3, "float32"), name="ones")]
    labels = debugprint_ids(se.debugprint(outs, file="str"))
    g = se.to_networkx(outs)
    assert set(g.nodes) == set(labels)
    for key, data in g.nodes(data=True):
        assert data["label"] == labels[key], key
        if data["kind"] == "apply":
            assert data["op"] == labels[key]
    roots = [m.group(1) for m in re.finditer(r"^\S.*? \[id ([A-Z]+)\]", se.debugprint(outs, file="str"), re.M)]
    assert g.graph["outputs"] == roots == ["A", "F"]


def test_to_networkx_edges():
    x = se.vector("x")
    g = se.to_networkx(x * x)
    assert g.number_of_edges() == 1
    (u, v, data), = g.edges(data=True)
    assert g.nodes[u]["obj"] is x and g.nodes[v]["op"] == "Mul"
    assert data["positions"] == [0, 1]
    assert data["dtype"] == "float32" and data["shape"] == (None,)

    y = se.vector("y")
    g2 = se.to_networkx(y - x)
    pos = {g2.nodes[u]["label"]: d["positions"] for u, _, d in g2.edges(data=True)}
    assert pos == {"y": [0], "x": [1]}


def test_to_networkx_of_function():
    x, w, b, y = golden_graph()
    f = se.function([x, b], y, passes=["decompose"])
    g = se.to_networkx(f)
    apply_ops = sorted(d["op"] for _, d in g.nodes(data=True) if d["kind"] == "apply")
    assert apply_ops == sorted(n.op.display_name() for n in f.fgraph.toposort())


# -- bad arguments -----------------------------------------------------------------------------------


@pytest.mark.parametrize("printer", [se.debugprint, se.pprint, se.to_dot, se.to_networkx])
@pytest.mark.parametrize("bad", [3, None, "x", [], [se.vector("v"), 3], np.ones(3), {"a": 1}], ids=["int", "None", "str", "empty", "mixed", "array", "dict"])
def test_printers_reject_bad_arguments(printer, bad):
    with pytest.raises(TypeError):
        printer(bad)
