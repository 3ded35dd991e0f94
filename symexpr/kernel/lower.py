"""Lowering: a rewritten graph plus concrete input geometry becomes a kernel-IR :class:`Plan`.

Each op class registers a lowering with :func:`lowers`.  View ops (transpose,
reshape of contiguous data, slicing, broadcasting, expand/squeeze) cost
nothing: they only change the strided view later kernels read through.  An op
with no lowering, or whose lowering declines (raises :class:`Unsupported`),
runs as a :class:`~symexpr.kernel.ir.HostStep` with its NumPy ``perform``.
"""

from __future__ import annotations

import numpy as np

from symexpr.graph.basic import Constant
from symexpr.kernel.ir import (
    Access,
    Buffer,
    GemmKernel,
    HostStep,
    Instr,
    LoopKernel,
    Phase,
    Plan,
)
from symexpr.ops import scalar as ps

_LOWERINGS: dict[type, object] = {}
_ARENA_ALIGN = 64


class Unsupported(Exception):
    """Raised by a lowering that cannot handle this node; the node then runs on the host."""


def lowers(*op_classes):
    """Register the decorated ``fn(ctx, node)`` as the lowering of ``op_classes``."""

    def register(fn):
        for cls in op_classes:
            _LOWERINGS[cls] = fn
        return fn

    return register


def contiguous_strides(shape) -> tuple:
    """C-order element strides of ``shape``."""
    strides, step = [], 1
    for d in reversed(shape):
        strides.append(step)
        step *= max(int(d), 1)
    return tuple(reversed(strides))


class View:
    """Where a value lives: ``buffer`` plus an element ``offset`` and ``strides`` for ``shape``."""

    __slots__ = ("buffer", "offset", "shape", "strides")

    def __init__(self, buffer, offset, shape, strides):
        self.buffer, self.offset, self.shape, self.strides = buffer, int(offset), tuple(shape), tuple(strides)

    def is_contiguous(self) -> bool:
        want = contiguous_strides(self.shape)
        return all(d <= 1 or s == w for d, s, w in zip(self.shape, self.strides, want))

    def broadcast_strides(self, shape) -> tuple:
        """Strides reading this view as if broadcast to ``shape`` (NumPy rules)."""
        lead = len(shape) - len(self.shape)
        out = [0] * lead
        for d, s, target in zip(self.shape, self.strides, shape[lead:]):
            out.append(0 if d == 1 and target != 1 else s)
        return tuple(out)

    def access(self, shape) -> Access:
        return Access(self.buffer, self.offset, self.broadcast_strides(shape))


def collapse(extents, accesses, first: int = 0):
    """Drop unit dims and merge dims every access walks contiguously, from dim ``first`` on.

    Returns ``(extents, [strides per access])``.  Dims before ``first`` are kept as is.
    """
    strides = [list(a) for a in accesses]
    dims = list(range(len(extents)))
    keep_ext = [extents[d] for d in dims[:first]]
    keep_str = [[s[d] for d in dims[:first]] for s in strides]
    run_ext, run_str = [], [[] for _ in strides]
    for d in dims[first:]:
        if extents[d] == 1:
            continue
        if run_ext and all(rs[-1] == s[d] * extents[d] for rs, s in zip(run_str, strides)):
            run_ext[-1] *= extents[d]
            for rs, s in zip(run_str, strides):
                rs[-1] = s[d]
            continue
        run_ext.append(extents[d])
        for rs, s in zip(run_str, strides):
            rs.append(s[d])
    return tuple(keep_ext + run_ext), [tuple(k + r) for k, r in zip(keep_str, run_str)]


class LoweringContext:
    """State while lowering one graph: buffers, views and the growing step list."""

    def __init__(self, fgraph, input_geometry, supports=None):
        self.fgraph = fgraph
        #: ``supports(scalar_op, arg_dtypes) -> bool``: what the target backend can compile.
        self.supports = supports or (lambda op, dtypes: True)
        self.plan = Plan()
        self.shapes: dict[int, tuple] = {}
        self.views: dict[int, View] = {}
        self._outputs_wanted = {id(v) for v in fgraph.outputs}
        self._output_buffers: dict[int, int] = {}
        for i, (var, (shape, strides)) in enumerate(zip(fgraph.inputs, input_geometry)):
            buf = self._add_buffer("input", i, var.dtype, _extent(shape, strides))
            self.shapes[id(var)] = tuple(shape)
            self.views[id(var)] = View(buf, 0, shape, strides)

    # -- buffers and views -------------------------------------------------
    def _add_buffer(self, kind, index, dtype, size) -> int:
        self.plan.buffers.append(Buffer(kind, index, dtype, int(size)))
        return len(self.plan.buffers) - 1

    def shape(self, var) -> tuple:
        return self.shapes[id(var)]

    def view(self, var) -> View:
        """The view of an already lowered value (constants get a buffer on first use)."""
        if id(var) not in self.views:
            if not isinstance(var, Constant):
                raise AssertionError(f"symexpr bug: {var!r} used before it was computed")
            data = var.data if var.data.flags.c_contiguous else np.array(var.data, order="C")
            self.plan.constants.append(data)
            buf = self._add_buffer("const", len(self.plan.constants) - 1, var.dtype, data.size)
            self.shapes[id(var)] = data.shape
            self.views[id(var)] = View(buf, 0, data.shape, contiguous_strides(data.shape))
        return self.views[id(var)]

    def allocate(self, var) -> View:
        """A fresh contiguous buffer for ``var`` (an output buffer when ``var`` is a graph output)."""
        shape = self.shape(var)
        size = int(np.prod(shape, dtype=np.int64))
        if id(var) in self._outputs_wanted and id(var) not in self._output_buffers:
            index = len(self._output_buffers)
            buf = self._add_buffer("output", index, var.dtype, size)
            self._output_buffers[id(var)] = buf
        else:
            buf = self._add_buffer("temp", -1, var.dtype, size)
        view = View(buf, 0, shape, contiguous_strides(shape))
        self.views[id(var)] = view
        self.plan.allocated[id(var)] = buf
        return view

    def set_view(self, var, buffer, offset, strides) -> None:
        self.views[id(var)] = View(buffer, offset, self.shape(var), strides)
        self.plan.allocated.pop(id(var), None)

    def mark(self):
        """A point :meth:`rollback` can return to when a lowering declines."""
        return len(self.plan.steps), len(self.plan.buffers), len(self.plan.constants), dict(self._output_buffers)

    def rollback(self, mark, node) -> None:
        steps, buffers, constants, outputs = mark
        del self.plan.steps[steps:]
        del self.plan.buffers[buffers:]
        del self.plan.constants[constants:]
        self._output_buffers = outputs
        for var in node.outputs:
            self.views.pop(id(var), None)
            self.plan.allocated.pop(id(var), None)
        for var in node.inputs:  # constants first seen by the failed lowering
            if id(var) in self.views and self.views[id(var)].buffer >= buffers:
                del self.views[id(var)]

    # -- steps ---------------------------------------------------------------
    def kernel_name(self, node) -> str:
        base = type(node.op).__name__.lower()
        return f"k{len(self.plan.steps)}_{base}"

    def emit(self, step) -> None:
        self.plan.steps.append(step)

    def map_kernel(self, name, shape, loads, program, store: View, value_ref=None):
        """Emit ``store[i] = program(loads[i])`` over ``shape`` (collapsing dims when it can)."""
        if any(d == 0 for d in shape):
            return
        value_ref = value_ref or ("tmp", len(program) - 1)
        accesses = [a.strides for a in loads] + [store.broadcast_strides(shape)]
        extents, strides = collapse(tuple(shape), accesses)
        if not extents:
            extents, strides = (1,), [(0,) for _ in strides]
        loads = tuple(Access(a.buffer, a.offset, s) for a, s in zip(loads, strides))
        out = Access(store.buffer, store.offset, strides[-1])
        phase = Phase((), loads, tuple(program), (), ((out, value_ref),))
        self.emit(LoopKernel(name, extents, (phase,)))

    def copy(self, var, src: View, dst: View) -> None:
        program = [Instr(ps.identity, (("load", 0),), var.dtype)]
        if src.buffer != dst.buffer or src.offset != dst.offset or src.strides != dst.strides:
            self.map_kernel(f"k{len(self.plan.steps)}_copy", dst.shape, [src.access(dst.shape)], program, dst)

    def host(self, node) -> None:
        outs = [self.allocate(v).buffer for v in node.outputs]
        self.emit(HostStep(node, tuple(outs)))


def _extent(shape, strides) -> int:
    if any(d == 0 for d in shape):
        return 0
    lo = sum((d - 1) * s for d, s in zip(shape, strides) if s < 0)
    hi = sum((d - 1) * s for d, s in zip(shape, strides) if s > 0)
    return hi - lo + 1


def build_plan(fgraph, input_geometry, supports=None) -> Plan:
    """Lower ``fgraph`` for inputs of the given ``(shape, element strides)``.

    Parameters
    ----------
    fgraph : FunctionGraph
        The rewritten graph.
    input_geometry : list of (tuple, tuple)
        Concrete shape and element strides of each input, in input order.
    supports : callable, optional
        ``supports(scalar_op, arg_dtypes)``: False makes a node using that
        scalar op run on the host instead.

    Returns
    -------
    Plan
        Steps, buffers (temps already placed in the arena), and output buffers.
    """
    ctx = LoweringContext(fgraph, input_geometry, supports)
    for node in fgraph.toposort():
        in_shapes = [ctx.view(v).shape for v in node.inputs]
        try:
            out_shapes = node.op.infer_shape(node, in_shapes)
        except Exception as exc:
            shapes = ", ".join(str(tuple(s)) for s in in_shapes)
            raise type(exc)(f"{exc}\n  while evaluating {node.op.display_name()} on inputs of shapes {shapes}") from exc
        for var, shape in zip(node.outputs, out_shapes):
            ctx.shapes[id(var)] = tuple(int(d) for d in shape)
        lowering = _LOWERINGS.get(type(node.op))
        mark = ctx.mark()
        try:
            if lowering is None:
                raise Unsupported(type(node.op).__name__)
            lowering(ctx, node)
        except Unsupported:
            ctx.rollback(mark, node)
            ctx.host(node)
    _finish_outputs(ctx)
    _place_temps(ctx.plan)
    ctx.plan.views = ctx.views
    return ctx.plan


def _finish_outputs(ctx) -> None:
    """Give every graph output its own output buffer, copying when its value lives elsewhere."""
    outputs = []
    for var in ctx.fgraph.outputs:
        buf = ctx._output_buffers.get(id(var))
        if buf is None:
            src = ctx.view(var)
            ctx._outputs_wanted.add(id(var))
            dst = ctx.allocate(var)
            ctx.copy(var, src, dst)
            buf = dst.buffer
        outputs.append((buf, ctx.shape(var), var.dtype))
    ctx.plan.outputs = outputs


def _referenced_buffers(step, views) -> set:
    if isinstance(step, HostStep):
        used = set(step.outputs)
        for v in step.node.inputs:
            if id(v) in views:
                used.add(views[id(v)].buffer)
        return used
    if isinstance(step, GemmKernel):
        return {step.a.buffer, step.b.buffer, step.c.buffer}
    used = set()
    for phase in step.phases:
        used.update(a.buffer for a in phase.loads)
        used.update(a.buffer for a, _ in phase.stores)
    return used


def _place_temps(plan: Plan) -> None:
    """Give each temp an arena offset, reusing space whose last reader has run (first fit)."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for i, step in enumerate(plan.steps):
        for b in _referenced_buffers(step, plan.views):
            first.setdefault(b, i)
            last[b] = i
    free: list[tuple[int, int]] = []  # (offset, size)
    top = 0
    expiring: dict[int, list[int]] = {}
    placed = {}
    for i in range(len(plan.steps)):
        for b in sorted(b for b, f in first.items() if f == i and plan.buffers[b].kind == "temp"):
            size = -(-max(plan.buffers[b].nbytes, 1) // _ARENA_ALIGN) * _ARENA_ALIGN
            for j, (off, avail) in enumerate(free):
                if avail >= size:
                    placed[b] = off
                    free[j] = (off + size, avail - size)
                    break
            else:
                placed[b] = top
                top += size
            expiring.setdefault(last[b], []).append(b)
        for b in expiring.pop(i, []):
            size = -(-max(plan.buffers[b].nbytes, 1) // _ARENA_ALIGN) * _ARENA_ALIGN
            free.append((placed[b], size))
    for b, off in placed.items():
        old = plan.buffers[b]
        plan.buffers[b] = Buffer("temp", off, old.dtype, old.size)
    plan.arena_bytes = top
