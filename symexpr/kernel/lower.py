"""Lowering: a rewritten graph plus concrete input geometry becomes a kernel-IR :class:`Plan`.

Each op class registers a lowering with :func:`lowers` (a subclass without
its own uses its nearest registered base class's).  View ops (transpose,
reshape of contiguous data, slicing, broadcasting, expand/squeeze) cost
nothing: they only change the strided view later kernels read through.  An op
with no lowering, or whose lowering declines (raises :class:`Unsupported`),
runs as a :class:`~symexpr.kernel.ir.HostStep` with its NumPy ``perform``.

A value's view never changes once set: host steps read their inputs through
``Plan.views`` when they run, so every step sees a value where it lived when the
step was planned.  :func:`build_plan` checks that no step reads a temp or output
buffer before a step writes it (:func:`plan_hazards`), then places the temps in
the per-call arena (:func:`place_intervals`).
"""

from __future__ import annotations

import bisect
import math

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
    SELF_THREADED,
)
from symexpr.ops import scalar as ps
from symexpr.graph.text import infix_text
from symexpr.ops.messages import shape_error
from symexpr.ops.sizes import ShapeOf

_LOWERINGS: dict[type, object] = {}
_ARENA_ALIGN = 64


class Unsupported(Exception):
    """Raised by a lowering that cannot handle this node; the node then runs on the host."""


class SizeFromData(ValueError):
    """A size input (a reshape target, a slice bound...) depends on an input's values, not only its shape."""


class StaticNode:
    """A node whose size inputs' values are written into its op (``Op.static_op``): what lowerings see.

    It has the node's outputs and only its other inputs; ``original`` is the graph's node.
    """

    __slots__ = ("op", "inputs", "outputs", "original")

    def __init__(self, op, inputs, outputs, original):
        self.op, self.inputs, self.outputs, self.original = op, tuple(inputs), tuple(outputs), original


def lowers(*op_classes):
    """Register the decorated ``fn(ctx, node)`` as the lowering of ``op_classes``."""

    def register(fn):
        for cls in op_classes:
            _LOWERINGS[cls] = fn
        return fn

    return register


def lowering_for(op_class):
    """The lowering registered for ``op_class`` or its nearest base class (along the MRO), else None.

    A subclass of a lowered op is lowered like its base unless it registers its own.
    """
    return next((_LOWERINGS[c] for c in op_class.__mro__ if c in _LOWERINGS), None)


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
    """Merge dims every access walks contiguously, from dim ``first`` on.

    Returns ``(extents, [strides per access])``.  Dims before ``first`` are kept as is.
    A unit dim is not dropped: it merges like any other (a C-contiguous array's
    unit dim has the stride of the dims after it, so it merges as the same dim
    of any other size would), which keeps the plan's structure, and so its
    compiled code, the same when a dimension is 1 in one call and larger in
    the next.
    """
    strides = [list(a) for a in accesses]
    dims = list(range(len(extents)))
    keep_ext = [extents[d] for d in dims[:first]]
    keep_str = [[s[d] for d in dims[:first]] for s in strides]
    run_ext, run_str = [], [[] for _ in strides]
    for d in dims[first:]:
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
        #: ``id(variable) -> value`` of the size inputs (and what they are computed from) evaluated so far.
        self.size_values: dict[int, np.ndarray] = {}
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
        if isinstance(var, Constant) and id(var) not in self.shapes:
            return var.data.shape
        return self.shapes[id(var)]

    def size_value(self, var):
        """The value of a size input, computed from constants and input shapes when planning.

        Raises
        ------
        SizeFromData
            If it depends on the values of a function input.
        """
        values = self.size_values
        stack = [var]
        while stack:
            top = stack[-1]
            if id(top) in values:
                stack.pop()
                continue
            node = top.owner
            if isinstance(top, Constant):
                values[id(top)] = top.data
            elif node is None:
                raise SizeFromData(
                    f"the size {infix_text([var])} depends on the values of the input {top.name if top.name else repr(top)}: this backend "
                    "plans memory from input shapes, so sizes must be computed from shapes (x.shape[i]) and constants"
                )
            elif isinstance(node.op, ShapeOf):
                values[id(top)] = np.asarray(self.shape(node.inputs[0])[node.op.axis], dtype=np.int64)
            else:
                missing = [v for v in node.inputs if id(v) not in values]
                if missing:
                    stack.extend(missing)
                    continue
                with np.errstate(all="ignore"):
                    results = node.op.perform(node, [values[id(v)] for v in node.inputs])
                for out, value in zip(node.outputs, results):
                    values[id(out)] = np.asarray(value)
            stack.pop()
        return values[id(var)]

    def view(self, var) -> View:
        """The view of an already lowered value (constants get a buffer on first use)."""
        if id(var) not in self.views:
            if not isinstance(var, Constant):
                raise AssertionError(f"symexpr bug: {var!r} used before it was computed")
            self.set_constant(var, var.data)
        return self.views[id(var)]

    def set_constant(self, var, data) -> None:
        """Make ``var`` live in a constant buffer holding ``data`` (a value known when planning)."""
        data = np.asarray(data, dtype=var.dtype)
        data = data if data.flags.c_contiguous else np.array(data, order="C")
        self.plan.constants.append(data)
        buf = self._add_buffer("const", len(self.plan.constants) - 1, var.dtype, data.size)
        self.shapes[id(var)] = data.shape
        self.views[id(var)] = View(buf, 0, data.shape, contiguous_strides(data.shape))

    def constant_buffer(self, data) -> int:
        """A constant buffer holding ``data`` (a C-contiguous array no graph variable stands for, e.g. a packed weight)."""
        data = np.asarray(data)
        if not data.flags.c_contiguous:
            data = np.ascontiguousarray(data)
        self.plan.constants.append(data)
        return self._add_buffer("const", len(self.plan.constants) - 1, data.dtype.name, data.size)

    def temp_buffer(self, dtype, shape) -> View:
        """A fresh contiguous temp of ``shape`` that belongs to no variable."""
        buf = self._add_buffer("temp", -1, dtype, math.prod(map(int, shape)))
        return View(buf, 0, shape, contiguous_strides(shape))

    def allocate(self, var) -> View:
        """A fresh contiguous buffer for ``var`` (an output buffer when ``var`` is a graph output)."""
        shape = self.shape(var)
        size = math.prod(map(int, shape))
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


# -- error messages in the user's terms --------------------------------------------------
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
    live = live_variables(fgraph)
    for node in fgraph.toposort():
        node = _static_node(ctx, node)
        in_shapes = [ctx.shape(v) for v in node.inputs]
        try:
            out_shapes = node.op.infer_shape(node, in_shapes)
        except Exception as exc:
            raise shape_error(node, in_shapes, exc) from exc
        for var, shape in zip(node.outputs, out_shapes):
            ctx.shapes[id(var)] = tuple(int(d) for d in shape)
        if not any(id(v) in live for v in node.outputs):
            continue  # computes a size only (or nothing an output needs): evaluated when planning
        lowering = lowering_for(type(node.op))
        mark = ctx.mark()
        try:
            if lowering is None:
                raise Unsupported(type(node.op).__name__)
            lowering(ctx, node)
        except Unsupported:
            ctx.rollback(mark, node)
            ctx.host(node)
    _finish_outputs(ctx)
    # Host steps read their inputs through the views: liveness and the order check need them.
    ctx.plan.views = ctx.views
    hazards = plan_hazards(ctx.plan)
    if hazards:
        step, buf = hazards[0]
        raise AssertionError(
            f"symexpr bug: step {step} reads buffer {buf} before any step writes it\n{ctx.plan.text()}"
        )
    _place_temps(ctx.plan)
    return ctx.plan


def live_variables(fgraph) -> set:
    """``id`` s of the variables the outputs need the values of.

    A size input's value is computed while planning, and ``x.shape[i]`` needs
    only ``x``'s shape: neither makes its operand live.
    """
    live = {id(v) for v in fgraph.outputs}
    for node in reversed(fgraph.toposort()):
        if not any(id(v) in live for v in node.outputs) or isinstance(node.op, ShapeOf):
            continue
        sizes = set(node.op.size_positions(node))
        live.update(id(v) for i, v in enumerate(node.inputs) if i not in sizes)
    return live


def _static_node(ctx, node):
    """``node`` itself, or a :class:`StaticNode` with the values of its size inputs built into its op."""
    positions = node.op.size_positions(node)
    if not positions:
        return node
    sizes = [ctx.size_value(node.inputs[p]) for p in positions]
    op = node.op.static_op(node, sizes)
    inputs = [v for i, v in enumerate(node.inputs) if i not in positions]
    return StaticNode(op, inputs, node.outputs, node)


def _finish_outputs(ctx) -> None:
    """Give every graph output its own output buffer, copying when its value lives elsewhere.

    The copy goes to a fresh output buffer that is *not* recorded as the
    variable's home: steps emitted earlier (host steps in particular, which
    read their inputs through ``plan.views`` when they run) must keep reading
    the value where it was when they were planned, since the copy runs last.
    """
    outputs = []
    for var in ctx.fgraph.outputs:
        buf = ctx._output_buffers.get(id(var))
        if buf is None:
            src = ctx.view(var)
            shape = ctx.shape(var)
            buf = ctx._add_buffer("output", len(ctx._output_buffers), var.dtype, math.prod(map(int, shape)))
            ctx._output_buffers[id(var)] = buf
            ctx.copy(var, src, View(buf, 0, shape, contiguous_strides(shape)))
        outputs.append((buf, ctx.shape(var), var.dtype))
    ctx.plan.outputs = outputs


def step_buffers(step, views) -> tuple[set, set]:
    """``(read, written)``: the buffers ``step`` reads and writes (``views``: ``id(variable) -> View``)."""
    if isinstance(step, HostStep):
        return {views[id(v)].buffer for v in step.node.inputs if id(v) in views}, set(step.outputs)
    if isinstance(step, GemmKernel):
        return {step.a.buffer, step.b.buffer}, {step.c.buffer}
    if isinstance(step, SELF_THREADED):
        accesses = step.accesses()
        return ({a.buffer for role, a in accesses if role not in step.OUTPUTS},
                {a.buffer for role, a in accesses if role in step.OUTPUTS})
    read, written = set(), set()
    for phase in step.phases:
        read.update(a.buffer for a in phase.loads)
        written.update(a.buffer for a, _ in phase.stores)
    return read, written


def _referenced_buffers(step, views) -> set:
    read, written = step_buffers(step, views)
    return read | written


def plan_hazards(plan: Plan) -> list:
    """``(step, buffer)`` for each step reading a temp or output buffer that no step up to it has written.

    Empty for a well-ordered plan.  Empty buffers are never written and may be read.
    Needs ``plan.views`` (host steps read through them).
    """
    written: set = set()
    hazards = []
    for i, step in enumerate(plan.steps):
        read, wrote = step_buffers(step, plan.views)
        written |= wrote
        for b in sorted(read - written):
            spec = plan.buffers[b]
            if spec.kind in ("temp", "output") and spec.size > 0:
                hazards.append((i, b))
    return hazards


def _aligned(nbytes: int) -> int:
    return -(-max(int(nbytes), 1) // _ARENA_ALIGN) * _ARENA_ALIGN


def place_intervals(intervals) -> tuple[list, int]:
    """Arena offsets for blocks live over step ranges: ``[(first, last, nbytes), ...] -> (offsets, arena_bytes)``.

    Blocks whose step ranges overlap (inclusive) never overlap in memory.
    Every offset is a multiple of ``_ARENA_ALIGN`` and every block is rounded up
    to it.  At each step the blocks starting there are placed (in list order),
    then the blocks ending there are freed.  Placement is best fit over a free
    list that merges adjacent free blocks; a block that fits nowhere extends a
    free block at the top of the arena, or the arena.  O(n log n) in the number
    of blocks (plus moving entries in one sorted list of free blocks, which
    merging keeps short).
    """
    starts: dict[int, list] = {}
    ends: dict[int, list] = {}
    for k, (first, last, _) in enumerate(intervals):
        starts.setdefault(first, []).append(k)
        ends.setdefault(last, []).append(k)
    offsets = [0] * len(intervals)
    sizes = [_aligned(n) for _, _, n in intervals]
    by_size: list = []  # sorted (size, offset) of the free blocks
    by_start: dict = {}  # offset -> size
    by_end: dict = {}  # offset + size -> offset
    top = 0

    def take(off):
        size = by_start.pop(off)
        del by_end[off + size]
        del by_size[bisect.bisect_left(by_size, (size, off))]
        return size

    def give(off, size):
        by_start[off] = size
        by_end[off + size] = off
        bisect.insort(by_size, (size, off))

    for step in sorted(set(starts) | set(ends)):
        for k in starts.get(step, ()):
            size = sizes[k]
            j = bisect.bisect_left(by_size, (size, -1))
            if j < len(by_size):
                avail, off = by_size[j]
                take(off)
                if avail > size:
                    give(off + size, avail - size)
            elif top in by_end:  # the free block at the top grows into fresh space
                off = by_end[top]
                take(off)
                top = off + size
            else:
                off = top
                top += size
            offsets[k] = off
        for k in ends.get(step, ()):
            off, size = offsets[k], sizes[k]
            if off + size in by_start:  # merge with the free block after
                size += take(off + size)
            if off in by_end:  # and the one before
                before = by_end[off]
                size += take(before)
                off = before
            give(off, size)
    return offsets, top


def _place_temps(plan: Plan) -> None:
    """Give each temp an arena offset, reusing space whose last reader has run (see :func:`place_intervals`)."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for i, step in enumerate(plan.steps):
        for b in _referenced_buffers(step, plan.views):
            if plan.buffers[b].kind == "temp":
                first.setdefault(b, i)
                last[b] = i
    temps = sorted(first)
    offsets, plan.arena_bytes = place_intervals([(first[b], last[b], plan.buffers[b].nbytes) for b in temps])
    for b, off in zip(temps, offsets):
        old = plan.buffers[b]
        plan.buffers[b] = Buffer("temp", off, old.dtype, old.size)
