"""Inspecting graphs: ``debugprint``, ``pprint``, ``to_dot`` and ``to_networkx``.

Each accepts a variable, a list of variables, a :class:`~symexpr.Function`
(its compiled, rewritten graph) or a :class:`~symexpr.graph.fgraph.FunctionGraph`.
Every traversal is iterative, so very deep graphs print without recursion.

This module sits above the compiler (it prints compiled :class:`~symexpr.Function`
objects); the infix formatting it shares with lower layers lives in
:mod:`symexpr.graph.text`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from symexpr.compile.function import Function
from symexpr.graph.basic import Constant, Variable
from symexpr.graph.fgraph import FunctionGraph
from symexpr.graph.text import infix_text
from symexpr.graph.text import root_label as _root_label
from symexpr.graph.text import wrap_operands  # noqa: F401  (re-exported: it used to live here)
from symexpr.graph.traversal import toposort
from symexpr.graph.type import format_shape


def _outputs_of(obj, what: str) -> list[Variable]:
    if isinstance(obj, Variable):
        return [obj]
    if isinstance(obj, Function):
        return list(obj.fgraph.outputs)
    if isinstance(obj, FunctionGraph):
        return list(obj.outputs)
    if isinstance(obj, (list, tuple)) and obj and all(isinstance(v, Variable) for v in obj):
        return list(obj)
    raise TypeError(f"{what}: expected a Variable, a non-empty list of Variables or a Function, got {type(obj).__name__}")


def _id_label(n: int) -> str:
    """A, B, ..., Z, AA, AB, ... like Theano."""
    label = ""
    n += 1
    while n:
        n, r = divmod(n - 1, 26)
        label = chr(65 + r) + label
    return label


def _node_key(var: Variable) -> int:
    return id(var.owner) if var.owner is not None else id(var)


def _preorder_ids(outputs) -> dict[int, str]:
    """Ids A, B, C... for nodes and root variables in depth-first pre-order from the outputs."""
    labels: dict[int, str] = {}
    stack = list(reversed(outputs))
    while stack:
        var = stack.pop()
        key = _node_key(var)
        if key in labels:
            continue
        labels[key] = _id_label(len(labels))
        if var.owner is not None:
            stack.extend(reversed(var.owner.inputs))
    return labels


def _describe(var: Variable, label: str, print_type: bool = True) -> str:
    if var.owner is None:
        head = _root_label(var)
    else:
        head = var.owner.op.display_name()
        if len(var.owner.outputs) > 1:
            label = f"{label}.{var.index}"
    name = f" '{var.name}'" if var.owner is not None and var.name else ""
    text = f"{head} [id {label}]{name}"
    return f"{text} {var.dtype} {format_shape(var.type.shape)}" if print_type else text


def debugprint(obj, file=None, max_depth: int = 64, print_type: bool = True, rewrites: bool = False) -> str:
    """Print a graph as a Theano-style tree and return the text.

    Each node shows its op, an id, its dtype and static shape.  A subgraph
    used more than once is printed in full the first time and as its id
    followed by ``···`` after.  A subtree deeper than ``max_depth`` is printed
    as a separate tree below, so deep chains keep a bounded indent.

    Parameters
    ----------
    obj : Variable, list of Variable, Function or FunctionGraph
    file : file-like or "str", optional
        Where to print (default: stdout); ``"str"`` prints nothing.
    max_depth : int
        Indentation depth after which a subtree moves below.
    print_type : bool
        Show dtype and shape.
    rewrites : bool
        For a Function: also list every change the passes made (``Function.rewrite_log``).

    Returns
    -------
    str
        The printed text.
    """
    outputs = _outputs_of(obj, "debugprint")
    if not isinstance(max_depth, int) or isinstance(max_depth, bool) or max_depth < 1:
        raise ValueError(f"debugprint: max_depth must be an int >= 1, got {max_depth!r}")
    labels = _preorder_ids(outputs)
    printed: set[int] = set()
    lines: list[str] = []
    pending = [(var, False) for var in outputs]
    while pending:
        root, force = pending.pop(0)
        stack = [(root, "", "", 0, force)]
        while stack:
            var, first, rest, depth, force = stack.pop()
            text = _describe(var, labels[_node_key(var)], print_type)
            node = var.owner
            if node is None:
                lines.append(first + text)
                continue
            if id(node) in printed and not force:
                lines.append(f"{first}{text} ···")
                continue
            printed.add(id(node))
            if depth >= max_depth:
                lines.append(f"{first}{text} ··· (continued below)")
                pending.append((var, True))
                continue
            lines.append(first + text)
            last = len(node.inputs) - 1
            for i in reversed(range(len(node.inputs))):
                branch, indent = (" └─ ", "   ") if i == last else (" ├─ ", " │ ")
                stack.append((node.inputs[i], rest + branch, rest + indent, depth + 1, False))
    if rewrites:
        if not isinstance(obj, Function):
            raise TypeError(f"debugprint: rewrites=True needs a Function, got {type(obj).__name__}")
        lines.append(f"Rewrites ({len(obj.rewrite_log)}):")
        lines.extend(f"  {record}" for record in obj.rewrite_log)
    text = "\n".join(lines) + "\n"
    if file != "str":
        print(text, end="", file=sys.stdout if file is None else file)
    return text


# -- pprint ---------------------------------------------------------------------


def pprint(obj, max_shared_len: int = 40) -> str:
    """Infix text of a graph, e.g. ``sum(softmax(x @ w + b, axis=1), axis=(0,))``.

    A subexpression used more than once whose text is longer than
    ``max_shared_len`` is printed once as ``t1 = ...`` and named after.
    Unnamed inputs print as ``<input>``.
    """
    return infix_text(_outputs_of(obj, "pprint"), max_shared_len)


# -- Graphviz and networkx -------------------------------------------------------


def _graph_items(outputs):
    """(labels, apply nodes in dependency order, root variables)."""
    labels = _preorder_ids(outputs)
    order = toposort(outputs)
    roots: dict[int, Variable] = {}
    for var in [v for node in order for v in node.inputs] + list(outputs):
        if var.owner is None:
            roots.setdefault(id(var), var)
    return labels, order, list(roots.values())


def to_networkx(obj):
    """The graph as a :class:`networkx.DiGraph`.

    Nodes are keyed by their debugprint-style ids (``"A"``, ``"B"``...).  Each
    has ``kind`` ("input", "constant" or "apply"), ``op`` (display name, or
    ``None``), ``dtype``, ``shape``, ``label`` and ``obj`` (the Apply or
    Variable).  An edge ``u -> v`` carries ``positions`` (which inputs of
    ``v`` it feeds), ``dtype`` and ``shape``.  ``G.graph["outputs"]`` lists the
    ids producing the outputs.
    """
    import networkx as nx

    outputs = _outputs_of(obj, "to_networkx")
    labels, order, roots = _graph_items(outputs)

    def key(var):
        return labels[_node_key(var)]

    g = nx.DiGraph()
    for var in roots:
        kind = "constant" if isinstance(var, Constant) else "input"
        g.add_node(key(var), kind=kind, op=None, dtype=var.dtype, shape=var.type.shape, label=_root_label(var), name=var.name, obj=var)
    for node in order:
        out = node.outputs[0]
        g.add_node(
            key(out), kind="apply", op=node.op.display_name(), dtype=out.dtype, shape=out.type.shape,
            label=node.op.display_name(), name=out.name, obj=node,
        )
        for pos, var in enumerate(node.inputs):
            u, v = key(var), key(out)
            if g.has_edge(u, v):
                g.edges[u, v]["positions"].append(pos)
            else:
                g.add_edge(u, v, positions=[pos], dtype=var.dtype, shape=var.type.shape)
    g.graph["outputs"] = [key(v) for v in outputs]
    return g


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def to_dot(obj, path: str | os.PathLike | None = None) -> str:
    """Graphviz DOT text of a graph; optionally write or render it.

    Parameters
    ----------
    obj : Variable, list of Variable, Function or FunctionGraph
    path : str or path-like, optional
        ``.dot``/``.gv``: write the text.  ``.svg``, ``.png`` or ``.pdf``: render
        with the Graphviz ``dot`` program, which must be installed.

    Returns
    -------
    str
        The DOT text.
    """
    g = to_networkx(_outputs_of(obj, "to_dot"))
    lines = ["digraph symexpr {", "  rankdir=BT;", '  node [fontname="Helvetica", fontsize=10];']
    for key, data in g.nodes(data=True):
        label = _dot_escape(data["label"]) + "\\n" + _dot_escape(f"{data['dtype']} {format_shape(data['shape'])}")
        shape = {"apply": "box", "input": "ellipse", "constant": "note"}[data["kind"]]
        style = ', style=filled, fillcolor="#e8f0fe"' if data["kind"] == "input" else ""
        lines.append(f'  "{key}" [label="{label}", shape={shape}{style}];')
    for u, v, data in g.edges(data=True):
        pos = ",".join(map(str, data["positions"]))
        lines.append(f'  "{u}" -> "{v}" [label="{pos}"];')
    for i, key in enumerate(g.graph["outputs"]):
        lines.append(f'  "out{i}" [label="output {i}", shape=plaintext];')
        lines.append(f'  "{key}" -> "out{i}";')
    lines.append("}")
    text = "\n".join(lines) + "\n"
    if path is not None:
        path = os.fspath(path)
        ext = os.path.splitext(path)[1].lower().lstrip(".")
        if ext in ("dot", "gv"):
            with open(path, "w") as fh:
                fh.write(text)
        elif ext in ("svg", "png", "pdf"):
            dot = shutil.which("dot")
            if dot is None:
                raise RuntimeError(
                    f"to_dot: rendering {path!r} needs the Graphviz 'dot' program, which is not on PATH; "
                    "install Graphviz (e.g. 'apt install graphviz') or write a .dot file and render it elsewhere"
                )
            subprocess.run([dot, f"-T{ext}", "-o", path], input=text.encode(), check=True)
        else:
            raise ValueError(f"to_dot: path must end in .dot, .gv, .svg, .png or .pdf, got {path!r}")
    return text
