"""Fused elementwise ops: one op that holds an inner scalar program.

A :class:`Fused` op computes a DAG of scalar ops in one pass over its
inputs; backends compile it to one kernel.  The program is a tuple of
instructions ``(scalar_op, args)`` where each arg is ``("in", i)`` (input
``i``), ``("tmp", j)`` (the result of instruction ``j``) or ``("const", value,
dtype)`` (a scalar literal).  The last instruction is the output.
:class:`FusedReduce` follows the program with a reduction in the same loop nest.
"""

from __future__ import annotations

import numpy as np

from symexpr.dtypes import canonical_dtype
from symexpr.graph.basic import Apply, Op
from symexpr.graph.text import wrap_operands
from symexpr.graph.type import TensorType
from symexpr.ops.convert import as_tensor
from symexpr.ops.elemwise import broadcast_concrete, broadcast_static
from symexpr.ops.reduction import reduced_shape


def _program_dtypes(program, in_dtypes):
    dtypes = []
    for scalar_op, args in program:
        arg_dtypes = [in_dtypes[a[1]] if a[0] == "in" else dtypes[a[1]] if a[0] == "tmp" else a[2] for a in args]
        dtypes.append(scalar_op.out_dtype(*arg_dtypes))
    return dtypes


def run_program(program, inputs):
    """Evaluate a scalar program with NumPy, instruction by instruction (exactly as unfused)."""
    results = []
    for scalar_op, args in program:
        values = [inputs[a[1]] if a[0] == "in" else results[a[1]] if a[0] == "tmp" else np.asarray(a[1], dtype=a[2]) for a in args]
        results.append(np.asarray(scalar_op.impl(*values)))
    return results[-1]


def program_text(program, max_inline: int = 60) -> str:
    """Infix text of a program, e.g. ``exp(i0 - i1) * i2``.

    A temporary used more than once, or whose text is longer than
    ``max_inline``, is named once (``t3 = ...; ``) so the text stays linear in
    the program's size.
    """
    uses = [0] * len(program)
    for _, args in program:
        for a in args:
            if a[0] == "tmp":
                uses[a[1]] += 1
    texts: list[tuple[str, int]] = []
    bindings: list[str] = []
    for index, (scalar_op, args) in enumerate(program):
        parts = []
        for a in args:
            if a[0] == "in":
                parts.append((f"i{a[1]}", 100))
            elif a[0] == "tmp":
                parts.append(texts[a[1]])
            else:
                text = str(np.asarray(a[1], dtype=a[2])[()])
                parts.append((text, 80 if text.startswith("-") else 100))
        text, prec = _scalar_text(scalar_op, parts)
        if index < len(program) - 1 and (uses[index] > 1 or len(text) > max_inline):
            bindings.append(f"t{index} = {text}")
            text, prec = f"t{index}", 100
        texts.append((text, prec))
    return "; ".join(bindings + [texts[-1][0]])


def short_program_text(program, limit: int = 160) -> str:
    """:func:`program_text`, cut to ``limit`` characters for display names."""
    text = program_text(program)
    return text if len(text) <= limit else f"{text[: limit - 20]}... ({len(program)} ops)"


def _scalar_text(op, parts):
    if op.symbol is not None and len(parts) in (1, 2):
        args = wrap_operands(op.precedence, parts)
        text = f"{args[0]} {op.symbol} {args[1]}" if len(args) == 2 else f"{op.symbol}{args[0]}"
        return text, op.precedence
    params = [f"{k}={v}" for k, v in op.params]
    return f"{op.name}({', '.join([t for t, _ in parts] + params)})", 100


class Fused(Op):
    """A fused elementwise computation with NumPy broadcasting over its inputs."""

    __props__ = ("program",)

    def __init__(self, program: tuple):
        self.program = tuple(program)

    def display_name(self):
        return f"Fused{{{short_program_text(self.program)}}}"

    def make_node(self, *inputs) -> Apply:
        inputs = [as_tensor(v) for v in inputs]
        dtype = canonical_dtype(_program_dtypes(self.program, [v.dtype for v in inputs])[-1])
        shape = broadcast_static([v.type.shape for v in inputs], "fused")
        return Apply(self, inputs, [TensorType(dtype, shape)])

    def perform(self, node, inputs):
        out = run_program(self.program, inputs)
        return [np.broadcast_to(out, broadcast_concrete([a.shape for a in inputs]))]

    def infer_shape(self, node, input_shapes):
        return [broadcast_concrete(input_shapes)]

    def pprint(self, node, args):
        return f"fused[{short_program_text(self.program)}]({', '.join(args)})", 100


class FusedReduce(Op):
    """A fused elementwise program, ``numpy.<kind>`` over ``axis``, then an optional epilogue, in one loop nest.

    The first ``n_body`` inputs feed ``program``; its result is reduced.  The
    ``epilogue`` (a program, or ``()`` for none) then runs per output element on
    ``("in", 0)``, the reduced value, and ``("in", k)``, the remaining inputs
    ``n_body + k - 1``, e.g. ``log(sum(exp(x)))`` or ``sum(x * x) / n``.
    """

    __props__ = ("program", "kind", "axis", "keepdims", "n_body", "epilogue")

    def __init__(self, program: tuple, kind: str, axis: tuple, keepdims: bool, n_body: int | None = None, epilogue=()):
        self.program = tuple(program)
        self.kind = kind
        self.axis = tuple(axis)
        self.keepdims = bool(keepdims)
        self.n_body = n_body
        self.epilogue = tuple(epilogue)

    def _text(self):
        keep = ", keepdims=True" if self.keepdims else ""
        text = f"{self.kind}(axis={self.axis}{keep}) of {short_program_text(self.program)}"
        if self.epilogue:
            text += f", then {short_program_text(self.epilogue)}"
        return text

    def display_name(self):
        return f"FusedReduce{{{self._text()}}}"

    def _reduce(self, value):
        return getattr(np, self.kind)(value, axis=self.axis, keepdims=self.keepdims)

    def _split(self, inputs):
        n = len(inputs) if self.n_body is None else self.n_body
        return inputs[:n], inputs[n:]

    def make_node(self, *inputs) -> Apply:
        inputs = [as_tensor(v) for v in inputs]
        body, extra = self._split(inputs)
        elem_dtype = _program_dtypes(self.program, [v.dtype for v in body])[-1]
        shape = broadcast_static([v.type.shape for v in body], "fused")
        with np.errstate(all="ignore"):
            dtype = canonical_dtype(np.asarray(self._reduce(np.ones((1,) * len(shape), elem_dtype))).dtype)
        out_shape = reduced_shape(shape, self.axis, self.keepdims)
        if self.epilogue:
            dtype = canonical_dtype(_program_dtypes(self.epilogue, [dtype] + [v.dtype for v in extra])[-1])
            if broadcast_static([out_shape] + [v.type.shape for v in extra], "fused epilogue") != out_shape:
                raise ValueError("FusedReduce: the epilogue inputs must broadcast into the reduced shape")
        return Apply(self, inputs, [TensorType(dtype, out_shape)])

    def perform(self, node, inputs):
        body, extra = self._split(inputs)
        full = broadcast_concrete([a.shape for a in body])
        value = np.asarray(self._reduce(np.broadcast_to(run_program(self.program, body), full)))
        if self.epilogue:
            value = np.broadcast_to(run_program(self.epilogue, [value, *extra]), value.shape)
        return [np.asarray(value)]

    def infer_shape(self, node, input_shapes):
        body, _ = self._split(input_shapes)
        return [reduced_shape(broadcast_concrete(body), self.axis, self.keepdims)]

    def pprint(self, node, args):
        return f"fused_reduce[{self._text()}]({', '.join(args)})", 100
