"""Error messages in the user's terms: expressions and operands by the names the user gave them.

A failing node is named by its op, or for a fused node by its program with the
inputs' names for ``i0``, ``i1``, ...; a broadcasting mismatch names the
operands and their shapes.  Both the NumPy reference backend and the kernel
lowering (for shapes known when a compiled function specialises) use these.
"""

from __future__ import annotations

import re

import numpy as np

from symexpr.graph.basic import Constant
from symexpr.graph.type import format_shape
from symexpr.graph.text import ATOM, node_infix, root_label, wrap
from symexpr.ops.elemwise import Elemwise
from symexpr.ops.fused import Fused, FusedReduce, program_text


def shape_error(node, shapes: list, exc: Exception) -> Exception:
    """The error to raise when ``infer_shape`` of ``node`` fails with ``exc`` on inputs of concrete ``shapes``.

    The message names the node and the shapes, or for a broadcasting mismatch
    the user's expression and operands (:func:`broadcast_message`).
    """
    described = ", ".join(str(tuple(s)) for s in shapes)
    msg = broadcast_message(node, shapes)
    if msg is None:
        msg = f"{exc}\n  while evaluating {node_label(node)} on inputs of shapes {described}"
    return exception_with_message(exc, msg)


def exception_with_message(exc: BaseException, msg: str) -> BaseException:
    """A new exception carrying ``msg``, of ``exc``'s type when that type can be built from one message.

    Some exception types take other constructor arguments (``UnicodeDecodeError``,
    or a user's exception with required keyword arguments), and some build
    fine but then show something else.  Those become the nearest base class in
    ``exc``'s MRO that does carry the message (``UnicodeError``, ``ValueError``,
    ..., at worst ``Exception``), with the original type's name leading the
    message; the caller chains the original (``raise ... from exc``).
    """
    for cls in type(exc).__mro__:
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            continue
        text = msg if cls is type(exc) else f"{type(exc).__name__}: {msg}"
        try:
            new = cls(text)
            shown = str(new)
        except Exception:
            continue
        if text in shown or shown == repr(text):
            return new
    return RuntimeError(f"{type(exc).__name__}: {msg}")  # not reached: Exception(text) always works


# -- naming a node in the user's terms -------------------------------------------------
_INPUT_REF = re.compile(r"\bi(\d+)\b")
_MAX_OPERAND_TEXT = 60


def _is_fused(op) -> bool:
    return isinstance(op, (Fused, FusedReduce))


def node_label(node) -> str:
    """The op's display name; for a fused node, its program with the inputs' names for ``i0``, ``i1``, ...."""
    if _is_fused(node.op):
        return f"{type(node.op).__name__}{{{expression_text(node)}}}"
    return node.op.display_name()


def expression_text(node, var=None, depth: int = 3) -> str:
    """Infix text of ``node``'s output ``var`` (default: the first) over its inputs' names.

    Named variables print as their name, constants as their value, and an
    unnamed intermediate as its own short expression (``depth`` levels deep).
    """
    var = node.outputs[0] if var is None else var
    return _node_text(node, var, depth)[0]


def _substitute(program, parts) -> str:
    """``program_text(program)`` with input ``i<k>`` replaced by ``parts[k]`` (parenthesised unless atomic)."""
    return _INPUT_REF.sub(lambda m: wrap(*parts[int(m.group(1))], ATOM), program_text(program))


def _operand_text(var, depth: int) -> tuple[str, int]:
    if var.name:
        return var.name, ATOM
    if isinstance(var, Constant) or var.owner is None:
        label = root_label(var)
        return label, 80 if label.startswith("-") else ATOM
    if depth <= 0:
        return f"<{type(var.owner.op).__name__} output>", ATOM
    text, prec = _node_text(var.owner, var, depth - 1)
    if len(text) > _MAX_OPERAND_TEXT or "\n" in text:
        return f"<{type(var.owner.op).__name__} output>", ATOM
    return text, prec


def _node_text(node, var, depth: int) -> tuple[str, int]:
    parts = [_operand_text(v, depth) for v in node.inputs]
    op = node.op
    if isinstance(op, Fused):
        return _substitute(op.program, parts), 0
    if isinstance(op, FusedReduce):
        n = len(parts) if op.n_body is None else op.n_body
        keep = ", keepdims=True" if op.keepdims else ""
        text = f"{op.kind}({_substitute(op.program, parts[:n])}, axis={op.axis}{keep})"
        if op.epilogue:
            return _substitute(op.epilogue, [(text, ATOM)] + parts[n:]), 0
        return text, ATOM
    try:
        text, prec = node_infix(node, parts)
    except Exception:  # a printer that cannot handle these operands: call syntax
        text, prec = f"{type(op).__name__.lower()}({', '.join(t for t, _ in parts)})", ATOM
    if len(node.outputs) > 1:
        text, prec = f"{wrap(text, prec, ATOM)}[{node.outputs.index(var)}]", ATOM
    return text, prec


def _broadcast_operands(node) -> list[int]:
    """Positions of the inputs ``node`` broadcasts together elementwise (empty for other ops)."""
    op = node.op
    if isinstance(op, (Elemwise, Fused)):
        return list(range(len(node.inputs)))
    if isinstance(op, FusedReduce):
        return list(range(len(node.inputs) if op.n_body is None else op.n_body))
    return []


def broadcast_message(node, shapes: list) -> str | None:
    """``"x * y + 1.0: operands x (shape (3,)) and y (shape (4,)) cannot be broadcast together ..."``, or None.

    None unless ``node`` broadcasts its inputs together and the concrete
    ``shapes`` (None for a non-array input) do not broadcast.
    """
    positions = [i for i in _broadcast_operands(node) if i < len(shapes) and shapes[i] is not None]
    ndim = max((len(shapes[i]) for i in positions), default=0)
    for axis in range(-ndim, 0):
        sizes = {i: shapes[i][axis] for i in positions if len(shapes[i]) >= -axis and shapes[i][axis] != 1}
        if len(set(sizes.values())) > 1:
            break
    else:
        return None
    names = [_operand_text(node.inputs[i], 2)[0] for i in sizes]
    listed = [f"{name} (shape {tuple(shapes[i])})" for name, i in zip(names, sizes)]
    operands = ", ".join(listed[:-1]) + " and " + listed[-1]
    dims = ", ".join(f"{name} {sizes[i]}" for name, i in zip(names, sizes))
    msg = (
        f"{expression_text(node)}: operands {operands} cannot be broadcast together "
        f"(dimension {axis}: {dims})"
    )
    if not _is_fused(node.op):  # a fused node's label would only repeat the expression
        msg += f"\n  while evaluating {node_label(node)}"
    return msg


def node_error(node, inputs: list, exc: Exception) -> Exception:
    """``exc`` re-raised with the failing node, its input shapes and dtypes in the message.

    A broadcasting mismatch of an elementwise node is reported in the user's
    terms instead: the expression and the operands (by variable name) whose
    shapes do not broadcast.
    """
    described = ", ".join(
        f"{a.dtype}{format_shape(a.shape)}" if isinstance(a, np.ndarray) else type(a).__name__ for a in inputs
    )
    shapes = [tuple(a.shape) if isinstance(a, np.ndarray) else None for a in inputs]
    msg = broadcast_message(node, shapes) or f"{exc}\n  while evaluating {node_label(node)} on inputs {described}"
    return exception_with_message(exc, msg)
