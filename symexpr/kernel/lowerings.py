"""Lowerings of symexpr's ops to the kernel IR (imported for its registrations)."""

from __future__ import annotations

import math
import numpy as np
from numpy.lib.stride_tricks import as_strided

from symexpr.dtypes import canonical_dtype
from symexpr.graph.basic import Constant
from symexpr.kernel.int8_pack import packed_weight
from symexpr.kernel.ir import Access, Accumulator, AttentionKernel, AttentionMergeKernel, GemmKernel, Instr, LoopKernel, Phase, QGemmKernel
from symexpr.kernel.lower import Unsupported, View, collapse, contiguous_strides, lowers
from symexpr.ops import nnet
from symexpr.ops.attention import Attention, call_splits, decode_group_axis
from symexpr.ops import scalar as ps
from symexpr.ops.elemwise import Elemwise
from symexpr.ops.fused import Fused, FusedReduce
from symexpr.ops.indexing import Subtensor
from symexpr.ops.matmul import MatMul
from symexpr.ops.quant import QLinear
from symexpr.ops.reduction import Reduce, Var
from symexpr.ops.sizes import Identity, ShapeOf
from symexpr.ops.shape import BroadcastTo, Concatenate, ExpandDims, Reshape, Squeeze, Transpose


# -- scalar programs ---------------------------------------------------------
class ProgramBuilder:
    """Builds a kernel-IR program, inferring each instruction's dtype from its operands."""

    def __init__(self, ref_dtypes, supports=None, invariant=()):
        self.program: list[Instr] = []
        self._ref_dtypes = ref_dtypes
        self._supports = supports
        #: Load references whose value is the same at every point of the kernel (one-element inputs).
        self._invariant = set(invariant)

    def dtype_of(self, ref) -> str:
        if ref[0] == "tmp":
            return self.program[ref[1]].dtype
        if ref[0] in ("const", "size"):
            return ref[2]
        return self._ref_dtypes(ref)

    def add(self, op, *args) -> tuple:
        if op == ps.power:
            fast = self._power_fast_path(*args)
            if fast is not None:
                return fast
        return self._append(op, args)

    def _append(self, op, args) -> tuple:
        arg_dtypes = [self.dtype_of(a) for a in args]
        if self._supports is not None and not self._supports(op, arg_dtypes):
            raise Unsupported(f"{op!r} on {arg_dtypes}")
        dtype = canonical_dtype(op.out_dtype(*arg_dtypes))
        self.program.append(Instr(op, tuple(args), dtype))
        return ("tmp", len(self.program) - 1)

    def _power_fast_path(self, x, y):
        """``x ** y`` for an exponent ``y`` that is the same over the whole kernel, as NumPy's
        float32/float64 power loops compute it: with a broadcast exponent of -1, 0, 0.5, 1 or 2
        they return ``1/x``, ``1``, ``sqrt(x)``, ``x`` or ``x*x`` (``(-inf) ** 0.5`` is NaN, not
        C's inf).  A literal exponent picks its form here; one loaded at run time selects it."""
        literal = y[0] == "const"
        if not literal and y not in self._invariant:
            return None
        work = canonical_dtype(ps.power.out_dtype(self.dtype_of(x), self.dtype_of(y)))
        if work not in ("float32", "float64"):
            return None
        xw, yw = self.cast(x, work), self.cast(y, work)
        forms = {
            2.0: lambda: self.add(ps.mul, xw, xw),
            0.5: lambda: self.add(ps.sqrt, xw),
            -1.0: lambda: self.add(ps.true_div, self.const(1, work), xw),
            1.0: lambda: xw,
            0.0: lambda: self.const(1, work),
        }
        if literal:
            form = forms.get(float(y[1]))
            return form() if form is not None else self._append(ps.power, (x, y))
        result = self._append(ps.power, (xw, yw))
        for value, form in forms.items():
            hit = self.add(ps.equal, yw, self.const(value, work))
            result = self.add(ps.where, hit, form(), result)
        return result

    def cast(self, ref, dtype) -> tuple:
        return ref if self.dtype_of(ref) == dtype else self.add(ps.Cast(dtype), ref)

    def const(self, value, dtype) -> tuple:
        return ("const", np.asarray(value, dtype=dtype)[()].item(), dtype)

    def inline(self, program, operands) -> tuple:
        """Append a symexpr ``Fused`` program whose ``("in", i)`` are ``operands[i]``; return its result.

        An instruction may become several (or none: ``add`` can return an operand), so each
        ``("tmp", j)`` of ``program`` maps to what its instruction became, not to a position.
        """
        results = []
        for scalar_op, args in program:
            mapped = [operands[a[1]] if a[0] == "in" else results[a[1]] if a[0] == "tmp" else a for a in args]
            results.append(self.add(scalar_op, *mapped))
        return results[-1]


def _loads_builder(ctx, loads_dtypes):
    return ProgramBuilder(lambda ref: loads_dtypes[ref[1]], ctx.supports)


# -- elementwise ---------------------------------------------------------------
def _inline_inputs(ctx, program, inputs, dtype, first=()):
    """``(builder, result, loaded)``: ``program`` over ``inputs``, its result cast to ``dtype``.

    The program's loads are ``first`` (dtypes of loads the caller provides
    ahead of the inputs), then the inputs that are not one-element constants
    (``loaded``).  One-element constants become literals of the program (a
    load saved, and the code generator sees the value: pow with a constant
    exponent takes NumPy's fast path); one-element loads are marked invariant
    (the same fast path, chosen at run time).  Raises Unsupported when the
    backend lacks one of its ops.
    """
    loaded = [v for v in inputs if not _is_scalar_constant(v)]
    dtypes = list(first) + [v.dtype for v in loaded]
    invariant = [("load", len(first) + k) for k, v in enumerate(loaded) if math.prod(map(int, ctx.shape(v))) == 1]
    builder = ProgramBuilder(lambda ref: dtypes[ref[1]], ctx.supports, invariant)
    operands, n_loads = [("load", k) for k in range(len(first))], len(first)
    for v in inputs:
        if _is_scalar_constant(v):
            operands.append(builder.const(np.asarray(v.data).reshape(()), v.dtype))
        else:
            operands.append(("load", n_loads))
            n_loads += 1
    result = builder.cast(builder.inline(program, operands), dtype)
    return builder, result, loaded


def _lower_map(ctx, node, program):
    out_var = node.outputs[0]
    shape = ctx.shape(out_var)
    builder, result, loaded = _inline_inputs(ctx, program, node.inputs, out_var.dtype)
    views = [ctx.view(v) for v in loaded]
    out = ctx.allocate(out_var)
    ctx.map_kernel(ctx.kernel_name(node), shape, [v.access(shape) for v in views], builder.program, out, result)


def _is_scalar_constant(var) -> bool:
    return isinstance(var, Constant) and np.asarray(var.data).size == 1


@lowers(Elemwise)
def _elemwise(ctx, node):
    _lower_map(ctx, node, ((node.op.scalar_op, tuple(("in", i) for i in range(len(node.inputs)))),))


@lowers(Fused)
def _fused(ctx, node):
    _lower_map(ctx, node, node.op.program)


# -- reductions ----------------------------------------------------------------
def _reduction_dtype(kind, elem_dtype) -> str:
    with np.errstate(all="ignore"):
        return canonical_dtype(np.asarray(getattr(np, kind)(np.ones((1,), elem_dtype))).dtype)


def _accumulate_dtype(dtype) -> str:
    """float16 sums accumulate in float32 (NumPy's own float16 loops also compute in float32)."""
    return "float32" if dtype == "float16" else dtype


def _split_axes(full_shape, axes):
    axes = tuple(sorted(a % len(full_shape) for a in axes)) if full_shape else ()
    kept = tuple(d for d in range(len(full_shape)) if d not in axes)
    return kept, axes


def _phase_access(view_strides, kept, axes, offset, buffer):
    return Access(buffer, offset, tuple(view_strides[d] for d in kept) + tuple(view_strides[d] for d in axes))


def _lower_reduction(ctx, node, body_inputs, body_program, kind, axes, keepdims, epilogue=(), extra=(), initial=None):
    out_var = node.outputs[0]
    views = [ctx.view(v) for v in body_inputs]
    full = tuple(np.broadcast_shapes(*[v.shape for v in views])) if views else ()
    kept, axes = _split_axes(full, axes)
    n_reduced = math.prod(int(full[a]) for a in axes)
    if kind in ("max", "min") and initial is None and n_reduced == 0:
        raise Unsupported("empty max/min")  # NumPy raises; the host step reports it
    body = _loads_builder(ctx, [v.dtype for v in body_inputs])
    value = body.inline(body_program, [("load", i) for i in range(len(views))])
    elem_dtype = body.dtype_of(value)
    red_kind = "sum" if kind == "mean" else kind
    result_dtype = _reduction_dtype(kind, elem_dtype)
    acc_dtype = _accumulate_dtype(result_dtype)
    if kind in ("max", "min"):
        acc_dtype = _accumulate_dtype(elem_dtype)
    value = body.cast(value, acc_dtype)
    loads0 = tuple(
        _phase_access(v.broadcast_strides(full), kept, axes, v.offset, v.buffer) for v in views
    )
    init = None if initial is None else np.asarray(initial, dtype=acc_dtype)[()].item()
    phase0 = Phase(tuple(full[a] for a in axes), loads0, tuple(body.program), (Accumulator(red_kind, acc_dtype, value, init),))

    out = ctx.allocate(out_var)
    out_shape = ctx.shape(out_var)
    kept_shape = tuple(full[d] for d in kept)
    extra_views = [ctx.view(v) for v in extra]
    extra_dtypes = [v.dtype for v in extra]
    extra_loads = tuple(Access(v.buffer, v.offset, _kept_strides(v, out_shape, kept, keepdims)) for v in extra_views)
    store = Access(out.buffer, out.offset, _kept_strides(out, out_shape, kept, keepdims))

    def final_phase(tail_op=None):
        """The per-output phase: ``("acc", 0, 0)`` (combined with ``("acc", 1, 0)`` by ``tail_op``), epilogue, store."""
        post = ProgramBuilder(lambda ref: acc_dtype if ref[0] == "acc" else extra_dtypes[ref[1]], ctx.supports)
        reduced = ("acc", 0, 0)
        if tail_op is not None:
            reduced = post.add(tail_op, reduced, ("acc", 1, 0))
        if kind == "mean":
            reduced = post.add(ps.true_div, reduced, ("size", n_reduced, acc_dtype))
        reduced = post.cast(reduced, result_dtype)
        if epilogue:
            reduced = post.inline(epilogue, [reduced] + [("load", i) for i in range(len(extra_views))])
        reduced = post.cast(reduced, out_var.dtype)
        return Phase((), extra_loads, tuple(post.program), (), ((store, reduced),))

    if _worth_splitting(kept_shape, n_reduced):
        _emit_split_reduction(ctx, node, kept_shape, phase0, final_phase)
        return
    _emit_row_kernel(ctx, node, kept_shape, [phase0, final_phase()])


#: A large reduction with few outputs is split into this many partial reductions (at most).
SPLIT_CHUNKS = 64
#: ... when each output reduces at least this many elements.
SPLIT_MIN_REDUCED = 1 << 16


def _worth_splitting(kept_shape, n_reduced) -> bool:
    """Whether a reduction has so few outputs that its kernel alone would not use the threads.

    A kernel runs in parallel over its first outer dimension: a full reduction
    (one output) or one with a handful of outputs would run on one thread.  The
    decision depends on sizes only, never on the thread count, so results do
    not change with the number of threads.
    """
    n_kept = math.prod(map(int, kept_shape))
    return n_reduced >= SPLIT_MIN_REDUCED and 0 < n_kept < SPLIT_CHUNKS


#: The scalar op combining two partial results of each accumulator kind.
_COMBINE = {"sum": ps.add, "prod": ps.mul, "max": ps.maximum, "min": ps.minimum}


def _emit_split_reduction(ctx, node, kept_shape, phase0, final_phase):
    """Emit ``phase0`` (a reduction over its inner dims at each kept point) and its final phase as two kernels.

    1. partials: the largest reduced dim (after collapsing) is cut into ``P``
       chunks of ``c`` elements; a kernel over ``(P,) + kept_shape`` (parallel
       over the chunks) stores each chunk's reduction in a temp ``T[p, k]``;
    2. combine, over ``kept_shape``: the same reduction of the ``P`` partials
       (starting from the accumulator's own initial value); when ``P`` does not
       divide that dim, a second phase reduces the ``r < P`` leftover slices and
       the final phase combines the two (``final_phase(op)``); then the epilogue
       and the store.  If the backend lacks the combining op, the leftover
       slices get a kernel of their own that stores ``T[P, k]`` instead.

    The accumulator dtype is kept throughout (integer sums wrap exactly as
    unsplit); ``P`` depends on the sizes only, never on the thread count.
    """
    (acc,) = phase0.accumulators
    n_kept = len(kept_shape)
    k_total = math.prod(map(int, kept_shape))
    extents, inner_strides = collapse(tuple(phase0.inner), [a.strides[n_kept:] for a in phase0.loads])
    j = max(range(len(extents)), key=lambda d: (extents[d], -d))
    n_chunks = min(SPLIT_CHUNKS, extents[j])
    chunk, tail = divmod(extents[j], n_chunks)
    combine_op = _COMBINE[acc.kind]
    tail_kernel = tail and not ctx.supports(combine_op, [acc.dtype, acc.dtype])
    n_partials = n_chunks + (1 if tail_kernel else 0)
    partials = ctx._add_buffer("temp", -1, acc.dtype, n_partials * k_total)
    kept_strides = contiguous_strides(kept_shape)
    partial_acc = Accumulator(acc.kind, acc.dtype, acc.value, None)

    def piece(rows, start) -> Phase:
        """Phase reducing ``rows`` slices of dim ``j`` from slice ``start`` on (strides: kept dims, then inner)."""
        inner = extents[:j] + (rows,) + extents[j + 1 :]
        loads = tuple(
            Access(a.buffer, a.offset + start * s[j], a.strides[:n_kept] + s)
            for a, s in zip(phase0.loads, inner_strides)
        )
        return Phase(inner, loads, phase0.program, (partial_acc,))

    def store_partial(offset, strides) -> Phase:
        return Phase((), (), (), (), ((Access(partials, offset, strides), ("acc", 0, 0)),))

    first = piece(chunk, 0)
    loads = tuple(Access(a.buffer, a.offset, (chunk * s[j],) + a.strides) for a, s in zip(first.loads, inner_strides))
    first = Phase(first.inner, loads, first.program, first.accumulators)
    _emit_row_kernel(ctx, node, (n_chunks,) + tuple(kept_shape), [first, store_partial(0, (k_total,) + kept_strides)])
    if tail_kernel:
        tail_phases = [piece(tail, n_chunks * chunk), store_partial(n_chunks * k_total, kept_strides)]
        _emit_row_kernel(ctx, node, tuple(kept_shape), tail_phases)
    combine = Phase(
        (n_partials,),
        (Access(partials, 0, kept_strides + (k_total,)),),
        (),
        (Accumulator(acc.kind, acc.dtype, ("load", 0), acc.init),),
    )
    if tail and not tail_kernel:
        phases = [combine, piece(tail, n_chunks * chunk), final_phase(combine_op)]
    else:
        phases = [combine, final_phase()]
    _emit_row_kernel(ctx, node, tuple(kept_shape), phases)


def _kept_strides(view: View, out_shape, kept, keepdims) -> tuple:
    """Strides over the kept dims of a value broadcast into the reduced output shape."""
    strides = view.broadcast_strides(out_shape)
    if keepdims:
        return tuple(strides[d] for d in kept)
    return strides


def _emit_row_kernel(ctx, node, outer, phases):
    """Emit a kernel over ``outer`` (collapsing outer dims every phase walks contiguously)."""
    if any(d == 0 for d in outer):
        return
    n_outer = len(outer)
    accesses = []
    for p in phases:
        accesses += [a.strides[:n_outer] for a in p.loads] + [a.strides[:n_outer] for a, _ in p.stores]
    extents, collapsed = collapse(tuple(outer), accesses)
    if not extents:
        extents, collapsed = (1,), [(0,) for _ in accesses]
    it = iter(collapsed)
    new_phases = []
    for p in phases:
        loads = tuple(Access(a.buffer, a.offset, next(it) + a.strides[n_outer:]) for a in p.loads)
        stores = tuple((Access(a.buffer, a.offset, next(it) + a.strides[n_outer:]), ref) for a, ref in p.stores)
        new_phases.append(Phase(p.inner, loads, p.program, p.accumulators, stores))
    new_phases = _collapse_inner(new_phases, len(extents))
    ctx.emit(LoopKernel(ctx.kernel_name(node), extents, tuple(new_phases)))


def _collapse_inner(phases, n_outer):
    out = []
    for p in phases:
        if len(p.inner) <= 1:
            out.append(p)
            continue
        accesses = [a.strides[n_outer:] for a in p.loads] + [a.strides[n_outer:] for a, _ in p.stores]
        extents, collapsed = collapse(tuple(p.inner), accesses)
        if not extents:
            extents, collapsed = (1,), [(0,) for _ in accesses]
        it = iter(collapsed)
        loads = tuple(Access(a.buffer, a.offset, a.strides[:n_outer] + next(it)) for a in p.loads)
        stores = tuple((Access(a.buffer, a.offset, a.strides[:n_outer] + next(it)), r) for a, r in p.stores)
        out.append(Phase(extents, loads, p.program, p.accumulators, stores))
    return out


@lowers(Reduce)
def _reduce(ctx, node):
    op = node.op
    _lower_reduction(ctx, node, node.inputs, ((ps.identity, (("in", 0),)),), op.kind, op.axis, op.keepdims, initial=op.initial)


@lowers(FusedReduce)
def _fused_reduce(ctx, node):
    op = node.op
    n = len(node.inputs) if op.n_body is None else op.n_body
    _lower_reduction(
        ctx, node, node.inputs[:n], op.program, op.kind, op.axis, op.keepdims, epilogue=op.epilogue, extra=node.inputs[n:]
    )


# -- row kernels: var and the nn ops --------------------------------------------------
class RowPasses:
    """Helper for kernels that make several passes over the rows of one input."""

    def __init__(self, ctx, node, x, axes, work_dtype):
        self.ctx, self.node = ctx, node
        self.x = ctx.view(x)
        self.x_dtype = x.dtype
        self.full = self.x.shape
        self.kept, self.axes = _split_axes(self.full, axes)
        self.inner = tuple(self.full[a] for a in self.axes)
        self.count = math.prod(map(int, self.inner))
        self.work = work_dtype
        self.phases = []

    def access(self, view: View, inner=True) -> Access:
        strides = view.broadcast_strides(self.full)
        return _phase_access(strides, self.kept, self.axes if inner else (), view.offset, view.buffer)

    def builder(self, loads_dtypes):
        acc_dtypes = {}
        for p, phase in enumerate(self.phases):
            for k, acc in enumerate(phase.accumulators):
                acc_dtypes[(p, k)] = acc.dtype
        return ProgramBuilder(lambda ref: acc_dtypes[(ref[1], ref[2])] if ref[0] == "acc" else loads_dtypes[ref[1]], self.ctx.supports)

    def phase(self, builder, loads, accumulators=(), stores=(), inner=True):
        self.phases.append(Phase(self.inner if inner else (), tuple(loads), tuple(builder.program), tuple(accumulators), tuple(stores)))
        return len(self.phases) - 1

    def max_phase(self, x_load) -> None:
        """A first phase folding the row maximum of x (in the work dtype) into accumulator ("acc", 0, 0)."""
        b = self.builder([self.x_dtype])
        self.phase(b, [x_load], [Accumulator("max", self.work, b.cast(("load", 0), self.work), float("-inf"))])

    def emit(self):
        _emit_row_kernel(self.ctx, self.node, tuple(self.full[d] for d in self.kept), self.phases)


def _work_dtype(dtype) -> str:
    return nnet._work_dtype(dtype)


@lowers(nnet.Softmax, nnet.LogSoftmax)
def _softmax(ctx, node):
    out_var = node.outputs[0]
    work = _work_dtype(out_var.dtype)
    rows = RowPasses(ctx, node, node.inputs[0], node.op.axis, work)
    out = ctx.allocate(out_var)
    x_load = rows.access(rows.x)
    log = isinstance(node.op, nnet.LogSoftmax)

    rows.max_phase(x_load)

    b = rows.builder([rows.x_dtype])
    shifted = b.add(ps.sub, b.cast(("load", 0), work), ("acc", 0, 0))
    e = b.add(ps.exp, shifted)
    reuse = not log and out_var.dtype == work
    rows.phase(b, [x_load], [Accumulator("sum", work, e)], [(rows.access(out), e)] if reuse else [])

    if reuse:
        b = rows.builder([out_var.dtype])
        y = b.add(ps.true_div, ("load", 0), ("acc", 1, 0))
        loads = [rows.access(out)]
    else:
        b = rows.builder([rows.x_dtype])
        shifted = b.add(ps.sub, b.cast(("load", 0), work), ("acc", 0, 0))
        if log:
            y = b.add(ps.sub, shifted, b.add(ps.log, ("acc", 1, 0)))
        else:
            y = b.add(ps.true_div, b.add(ps.exp, shifted), ("acc", 1, 0))
        loads = [x_load]
    y = b.cast(y, out_var.dtype)
    rows.phase(b, loads, (), [(rows.access(out), y)])
    rows.emit()


@lowers(nnet.LogSumExp)
def _logsumexp(ctx, node):
    out_var = node.outputs[0]
    work = _work_dtype(out_var.dtype)
    rows = RowPasses(ctx, node, node.inputs[0], node.op.axis, work)
    out = ctx.allocate(out_var)
    x_load = rows.access(rows.x)

    rows.max_phase(x_load)

    def finite_max(b):
        m = ("acc", 0, 0)
        return b.add(ps.where, b.add(ps.isfinite, m), m, b.const(0, work))

    b = rows.builder([rows.x_dtype])
    e = b.add(ps.exp, b.add(ps.sub, b.cast(("load", 0), work), finite_max(b)))
    rows.phase(b, [x_load], [Accumulator("sum", work, e)])

    b = rows.builder([])
    y = b.cast(b.add(ps.add, b.add(ps.log, ("acc", 1, 0)), finite_max(b)), out_var.dtype)
    store = Access(out.buffer, out.offset, _kept_strides(out, ctx.shape(out_var), rows.kept, node.op.keepdims))
    rows.phase(b, [], (), [(store, y)], inner=False)
    rows.emit()


@lowers(nnet.LayerNorm, nnet.RMSNorm)
def _norm(ctx, node):
    out_var = node.outputs[0]
    work = _work_dtype(out_var.dtype)
    x = node.inputs[0]
    rows = RowPasses(ctx, node, x, (x.ndim - 1,), work)
    if rows.count == 0:
        raise Unsupported("empty rows")
    out = ctx.allocate(out_var)
    x_load = rows.access(rows.x)
    params = [ctx.view(v) for v in node.inputs[1:]]
    eps = ("const", float(np.asarray(node.op.eps, dtype=work)), work)
    n = ("size", rows.count, work)
    layer = isinstance(node.op, nnet.LayerNorm)

    b = rows.builder([rows.x_dtype])
    xv = b.cast(("load", 0), work)
    rows.phase(b, [x_load], [Accumulator("sum", work, xv if layer else b.add(ps.mul, xv, xv))])

    if layer:
        b = rows.builder([rows.x_dtype])
        c = b.add(ps.sub, b.cast(("load", 0), work), b.add(ps.true_div, ("acc", 0, 0), n))
        rows.phase(b, [x_load], [Accumulator("sum", work, b.add(ps.mul, c, c))])

    b = rows.builder([rows.x_dtype] + [v.dtype for v in node.inputs[1:]])
    xv = b.cast(("load", 0), work)
    if layer:
        mean = b.add(ps.true_div, ("acc", 0, 0), n)
        var = b.add(ps.true_div, ("acc", 1, 0), n)
        y = b.add(ps.true_div, b.add(ps.sub, xv, mean), b.add(ps.sqrt, b.add(ps.add, var, eps)))
        weight, bias = node.op._affine(list(range(1, len(node.inputs))))
    else:
        ms = b.add(ps.true_div, ("acc", 0, 0), n)
        y = b.add(ps.true_div, xv, b.add(ps.sqrt, b.add(ps.add, ms, eps)))
        weight, bias = (1 if node.op.has_weight else None), None
    if weight is not None:
        y = b.add(ps.mul, y, b.cast(("load", weight), work))
    if bias is not None:
        y = b.add(ps.add, y, b.cast(("load", bias), work))
    y = b.cast(y, out_var.dtype)
    loads = [x_load] + [rows.access(v) for v in params]
    rows.phase(b, loads, (), [(rows.access(out), y)])
    rows.emit()


@lowers(Var)
def _var(ctx, node):
    out_var = node.outputs[0]
    dtype = out_var.dtype
    work = _accumulate_dtype(dtype)
    rows = RowPasses(ctx, node, node.inputs[0], node.op.axis, work)
    out = ctx.allocate(out_var)
    x_load = rows.access(rows.x)
    n = ("size", rows.count, work)
    dof = ("size", max(rows.count - node.op.ddof, 0), work)

    b = rows.builder([rows.x_dtype])
    rows.phase(b, [x_load], [Accumulator("sum", work, b.cast(("load", 0), work))])
    b = rows.builder([rows.x_dtype])
    c = b.add(ps.sub, b.cast(("load", 0), work), b.add(ps.true_div, ("acc", 0, 0), n))
    rows.phase(b, [x_load], [Accumulator("sum", work, b.add(ps.mul, c, c))])
    b = rows.builder([])
    y = b.cast(b.add(ps.true_div, ("acc", 1, 0), dof), dtype)
    store = Access(out.buffer, out.offset, _kept_strides(out, ctx.shape(out_var), rows.kept, node.op.keepdims))
    rows.phase(b, [], (), [(store, y)], inner=False)
    rows.emit()


# -- views ---------------------------------------------------------------------
def _geometry(ctx, var, view: View, fn):
    """Offset and strides of ``fn(array)`` for an array laid out like ``view``, or None if not a view.

    NumPy computes the geometry on a stand-in array that shares no real data
    (nothing is read), so view semantics are NumPy's own.
    """
    itemsize = np.dtype(var.dtype).itemsize
    base = np.zeros(1, dtype=var.dtype)
    stand_in = as_strided(base, view.shape, tuple(s * itemsize for s in view.strides), writeable=False)
    result = fn(stand_in)
    if not isinstance(result, np.ndarray):
        return None
    owner = result
    while owner is not None and owner is not base:
        owner = owner.base
    if owner is None:
        return None
    delta = result.__array_interface__["data"][0] - base.__array_interface__["data"][0]
    if delta % itemsize or any(s % itemsize for s in result.strides):
        return None
    return view.offset + delta // itemsize, tuple(s // itemsize for s in result.strides)


def _lower_view(ctx, node, fn):
    var = node.inputs[0]
    src = ctx.view(var)
    geometry = _geometry(ctx, var, src, fn)
    if geometry is None:
        raise Unsupported("not a view")
    ctx.set_view(node.outputs[0], src.buffer, *geometry)


@lowers(Transpose, ExpandDims, Squeeze, BroadcastTo)
def _simple_view(ctx, node):
    _lower_view(ctx, node, lambda a: node.op.perform(node, [a])[0])


@lowers(Identity)
def _identity(ctx, node):
    src = ctx.view(node.inputs[0])
    ctx.set_view(node.outputs[0], src.buffer, src.offset, src.strides)


@lowers(ShapeOf)
def _shape_of(ctx, node):
    ctx.set_constant(node.outputs[0], ctx.size_value(node.outputs[0]))


@lowers(Subtensor)
def _subtensor(ctx, node):
    from symexpr.ops.indexing import _to_python

    idx = tuple(_to_python(e) for e in node.op.idx)
    if not any(e is Ellipsis for e in idx):
        idx = idx + (Ellipsis,)  # a full integer index then gives a 0-d view, not a scalar copy
    _lower_view(ctx, node, lambda a: a[idx])


def reshape_strides(shape, strides, new_shape):
    """Element strides that let ``new_shape`` view an array of ``shape``/``strides`` without a copy, else None.

    NumPy's ``_attempt_nocopy_reshape``: unit dims are ignored, and each run of old
    dims that merges into a run of new dims must be C-contiguous within itself.
    """
    new_shape = tuple(int(d) for d in new_shape)
    if 0 in shape or 0 in new_shape:
        return contiguous_strides(new_shape)
    old = [(d, s) for d, s in zip(shape, strides) if d != 1]
    new_strides = [0] * len(new_shape)
    oi, oj, ni, nj = 0, 1, 0, 1
    while ni < len(new_shape) and oi < len(old):
        n_size, o_size = new_shape[ni], old[oi][0]
        while n_size != o_size:
            if n_size < o_size:
                n_size *= new_shape[nj]
                nj += 1
            else:
                o_size *= old[oj][0]
                oj += 1
        for k in range(oi, oj - 1):
            if old[k][1] != old[k + 1][0] * old[k + 1][1]:
                return None
        new_strides[nj - 1] = old[oj - 1][1]
        for k in range(nj - 1, ni, -1):
            new_strides[k - 1] = new_strides[k] * new_shape[k]
        ni, nj, oi, oj = nj, nj + 1, oj, oj + 1
    last = new_strides[ni - 1] if ni else 1
    for k in range(ni, len(new_shape)):
        new_strides[k] = last
    return tuple(new_strides)


@lowers(Reshape)
def _reshape(ctx, node):
    out_var = node.outputs[0]
    shape = ctx.shape(out_var)
    src = ctx.view(node.inputs[0])
    strides = reshape_strides(src.shape, src.strides, shape)
    if strides is not None:
        ctx.set_view(out_var, src.buffer, src.offset, strides)
        return
    dense = View(None, 0, src.shape, contiguous_strides(src.shape))
    out = ctx.allocate(out_var)
    dense.buffer, dense.offset = out.buffer, out.offset
    ctx.copy(node.inputs[0], src, dense)


@lowers(Concatenate)
def _concatenate(ctx, node):
    out_var = node.outputs[0]
    out = ctx.allocate(out_var)
    axis = node.op.axis
    start = 0
    for var in node.inputs:
        src = ctx.view(var)
        part = View(out.buffer, out.offset + start * out.strides[axis], src.shape, out.strides)
        builder = _loads_builder(ctx, [var.dtype])
        result = builder.cast(builder.add(ps.identity, ("load", 0)), out_var.dtype)
        ctx.map_kernel(ctx.kernel_name(node), src.shape, [src.access(src.shape)], builder.program, part, result)
        start += src.shape[axis]


# -- matmul --------------------------------------------------------------------
def _blas_operand(strides, rows, cols):
    """True when a (rows, cols) block with these strides is a BLAS operand: unit stride one way, a valid leading dimension the other."""
    rs, cs = strides[-2], strides[-1]
    return (cs == 1 and rs >= max(1, cols)) or (rs == 1 and cs >= max(1, rows))


@lowers(MatMul)
def _matmul(ctx, node):
    out_var = node.outputs[0]
    if out_var.dtype not in ("float32", "float64") or any(v.dtype != out_var.dtype for v in node.inputs):
        raise Unsupported("matmul dtype")
    if not ctx.supports(node.op, [v.dtype for v in node.inputs]):
        raise Unsupported("no GEMM on this backend")
    a, b = (ctx.view(v) for v in node.inputs)
    a_shape, a_strides = a.shape, a.strides
    b_shape, b_strides = b.shape, b.strides
    if len(a_shape) == 1:
        a_shape, a_strides = (1,) + a_shape, (0,) + a_strides
    if len(b_shape) == 1:
        b_shape, b_strides = b_shape + (1,), b_strides + (0,)
    m, k = a_shape[-2:]
    n = b_shape[-1]
    batch = tuple(np.broadcast_shapes(a_shape[:-2], b_shape[:-2]))
    av = View(a.buffer, a.offset, a_shape, a_strides)
    bv = View(b.buffer, b.offset, b_shape, b_strides)
    a_acc = av.access(batch + (m, k))
    b_acc = bv.access(batch + (k, n))
    # A unit dimension's stride is arbitrary: give it the value BLAS wants.
    a_acc = Access(a_acc.buffer, a_acc.offset, _fix_unit(a_acc.strides, (m, k)))
    b_acc = Access(b_acc.buffer, b_acc.offset, _fix_unit(b_acc.strides, (k, n)))
    out = ctx.allocate(out_var)
    c_acc = Access(out.buffer, out.offset, contiguous_strides(batch + (m, n)))
    if m * n == 0:
        return
    batch, m, a_acc, b_acc, c_acc = _fold_batch_into_rows(batch, m, a_acc, b_acc, c_acc)
    if not (_blas_operand(a_acc.strides, m, k) and _blas_operand(b_acc.strides, k, n)):
        raise Unsupported("strided matmul operand")
    ctx.emit(GemmKernel(ctx.kernel_name(node), out_var.dtype, batch, m, n, k, a_acc, b_acc, c_acc))


def _fold_batch_into_rows(batch, m, a, b, c):
    """Merge trailing batch dims into the rows when ``b`` is the same matrix for each of them.

    ``(32, 18, 384) @ (384, 1536)`` becomes one ``(576, 384) @ (384, 1536)``
    GEMM (BLAS packs the weight once) whenever ``a``'s rows continue evenly
    across those batch dims, as in a C-contiguous activation; ``c`` is
    contiguous, so its rows always do.
    """
    while batch:
        d = len(batch) - 1
        rs, cs = a.strides[-2], a.strides[-1]
        if b.strides[d] != 0 or cs != 1 or a.strides[d] != m * rs:
            break
        m *= batch[d]
        batch = batch[:-1]
        a, b, c = (Access(x.buffer, x.offset, x.strides[:d] + x.strides[d + 1 :]) for x in (a, b, c))
    return batch, m, a, b, c


def _fix_unit(strides, dims):
    rows, cols = dims
    rs, cs = strides[-2], strides[-1]
    if cols == 1:
        cs = 1
    if rows == 1:
        rs = max(cols, 1) if cs == 1 else 1
    return strides[:-2] + (rs, cs)


# -- int8 GEMM -----------------------------------------------------------------
@lowers(QLinear)
def _qlinear(ctx, node):
    """A :class:`QGemmKernel` for a constant weight (packed once per constant); anything else runs on the host.

    The activation's leading dims fold into the kernel's rows when the
    activation, ``sx``, the output and the epilogue's operands all continue
    evenly across them (any C-contiguous layout); otherwise the activation
    (and ``sx``) are first copied to contiguous temps.  An activation whose K
    stride is not 1 is copied too.  An epilogue program runs in the kernel
    when its operands fold with the rows and do not enlarge the product at
    this call's sizes; otherwise the kernel writes the product to a temp and
    a loop kernel applies the program over the broadcast shape.
    """
    op = node.op
    xq, wq = node.inputs[:2]
    if not isinstance(wq, Constant):
        raise Unsupported("QLinear with a weight that is not a constant")
    if not ctx.supports(op, [v.dtype for v in node.inputs[: op.n_standard]]):
        raise Unsupported("no int8 GEMM on this backend")
    k, n = (int(d) for d in wq.data.shape)
    if k == 0:
        raise Unsupported("QLinear with K = 0")
    out_var = node.outputs[0]
    lead = tuple(ctx.shape(xq)[:-1])
    product = lead + (n,)
    full = tuple(ctx.shape(out_var))
    extras = node.inputs[op.n_standard:]
    post = _epilogue_program(ctx, op.epilogue, extras) if op.epilogue else None
    out = ctx.allocate(out_var)
    if math.prod(map(int, product)) == 0 or math.prod(map(int, full)) == 0:
        return
    if not op.epilogue:
        _emit_qgemm(ctx, node, out, lead)
        return
    if post is not None and full == product:
        program, result, loaded = post
        if _emit_qgemm(ctx, node, out, lead, (program, result, [ctx.view(v) for v in loaded])):
            return
    if post is None:  # the backend lacks one of the program's ops: the whole node runs on the host
        raise Unsupported(f"{op.display_name()}: an op of its epilogue program")
    # the product to a temp, then the epilogue program as a loop kernel over the broadcast shape
    y = ctx.temp_buffer("float32", product)
    _emit_qgemm(ctx, node, y, lead)
    program, result, loaded = post
    loads = [y.access(full)] + [ctx.view(v).access(full) for v in loaded]
    ctx.map_kernel(f"k{len(ctx.plan.steps)}_epilogue", full, loads, list(program), out, result)


def _epilogue_program(ctx, epilogue, extras):
    """``(program, result, loaded variables)`` of a QLinear epilogue over loads ``(product, *loaded)``.

    As a loop kernel's program (:func:`_inline_inputs`); None when the backend
    lacks one of its ops.
    """
    try:
        builder, result, loaded = _inline_inputs(ctx, epilogue, extras, "float32", first=("float32",))
    except Unsupported:
        return None
    return tuple(builder.program), result, loaded


def _emit_qgemm(ctx, node, out: View, lead, post=None) -> bool:
    """Emit the int8 GEMM writing ``out`` (the product's shape); with ``post``, its epilogue program too.

    ``post`` is ``(program, result, views of the loaded operands)``.  Returns
    False, emitting nothing, when those operands do not fold with the rows.
    """
    op = node.op
    xq, wq = node.inputs[:2]
    k, n = (int(d) for d in wq.data.shape)
    m = math.prod(map(int, lead))
    product = tuple(lead) + (n,)
    post_strides = [] if post is None else [v.broadcast_strides(product) for v in post[2]]
    if post_strides and _fold_rows(lead, None, None, out, post_strides) is None:
        return False
    x = ctx.view(xq)
    sx = ctx.view(node.inputs[2]) if op.scaled else None
    per_token = sx is not None and len(sx.shape) > 0
    if x.strides[-1] != 1 and k > 1:
        x = _contiguous_copy(ctx, xq, x)
    rows = _fold_rows(lead, x, sx if per_token else None, out, post_strides)
    if rows is None:
        # fresh C-order copies fold (a view that is_contiguous() passes can still hold a negative
        # stride on a dim of size 1, which collapse() does not merge)
        x = _contiguous_copy(ctx, xq, x)
        if per_token:
            sx = _contiguous_copy(ctx, node.inputs[2], sx)
        rows = _fold_rows(lead, x, sx if per_token else None, out, post_strides)
    x_rs, sx_rs, out_rs, post_rs = rows
    if m == 1:  # a single row's stride is arbitrary: give it the value a longer C-order operand has
        x_rs, out_rs = max(k, 1), n
        sx_rs = 1 if per_token else 0
        post_rs = [(n if s[-1] else 1) if any(s[:-1]) else 0 for s in post_strides]
    packed = packed_weight(wq)
    w_buf = ctx.constant_buffer(packed.data)
    comp_buf = ctx.constant_buffer(packed.comp)
    x_acc = Access(x.buffer, x.offset, (x_rs, 1))
    out_acc = Access(out.buffer, out.offset, (out_rs, 1))
    extra = {}
    if op.scaled:
        extra["sx"] = Access(sx.buffer, sx.offset, (sx_rs if per_token else 0,))
        for name, var in (("sw", node.inputs[3]),) + ((("bias", node.inputs[4]),) if op.has_bias else ()):
            v = ctx.view(var)
            stride = v.strides[0] if len(v.shape) == 1 and n > 1 else (1 if len(v.shape) == 1 else 0)
            extra[name] = Access(v.buffer, v.offset, (stride,))
    if post is not None:
        program, result, views = post
        extra["post"] = program
        extra["post_result"] = result
        # a column stride of 1 where there is one column (never used): the same code as for wider ones
        extra["post_loads"] = tuple(Access(v.buffer, v.offset, (rs, s[-1] if n > 1 else 1))
                                    for v, rs, s in zip(views, post_rs, post_strides))
    ctx.emit(
        QGemmKernel(
            ctx.kernel_name(node), m, n, k, packed.n_pad, x_acc, Access(w_buf, 0, ()), Access(comp_buf, 0, ()),
            out_acc, "scaled" if op.scaled else "int32", op.weight_bits, **extra,
        )
    )
    return True


#: Stack bytes the attention kernel may use per thread for its tiles (larger tiles or head dims run on
#: the host): 64 x 64 tiles fit head dims up to 256 (about 215 KiB), well inside the 8 MiB of the main
#: thread and of Python's threads (a thread started with ``threading.stack_size`` below ~400 KiB
#: is too small for that).
ATTENTION_STACK_BYTES = 320 * 1024


@lowers(Attention)
def _attention(ctx, node):
    """An :class:`AttentionKernel` for float32 or float16 attention; float64 (and huge head dims) run on the host.

    Operands whose last stride is not 1 (a transposed head layout) are
    copied to contiguous temps first; any other layout (the (B, L, H, d)
    view of a reshape/transpose, broadcast GQA heads, broadcast masks) is read
    in place through its strides.  float16 operands are converted to float32
    temps (each once, at its own size: a broadcast operand is not expanded),
    the kernel computes in float32, as the op defines, and its result is
    rounded to float16 once.
    """
    op = node.op
    if any(v.dtype not in ("float32", "float16") for v in node.inputs):
        raise Unsupported("attention kernels take float32 or float16 operands")
    out_var, counts_var = node.outputs
    lead = tuple(ctx.shape(out_var)[:-2])
    lq, dv = ctx.shape(out_var)[-2:]
    lkv, d = ctx.shape(node.inputs[1])[-2:]
    if dv == 0:
        raise Unsupported("attention with a value head dim of 0")
    if attention_stack_bytes(op.block_q, op.block_k, d, dv) > ATTENTION_STACK_BYTES:
        raise Unsupported(f"attention tiles {op.block_q}x{op.block_k} with head dims {d}, {dv} need more than "
                          f"{ATTENTION_STACK_BYTES // 1024} KiB of stack")
    result = ctx.allocate(out_var)
    # a float16 result is computed into a float32 temp, rounded once at the end
    out = result if out_var.dtype == "float32" else ctx.temp_buffer("float32", result.shape)
    counts = ctx.allocate(counts_var)
    grouped = decode_group_axis(*(ctx.shape(v) for v in node.inputs[:3]), op.causal)
    accesses = []
    for var in node.inputs[:3]:
        view = ctx.view(var)
        if var.dtype != "float32":
            view = _float32_copy(ctx, view)
        elif view.strides[-1] != 1 and view.shape[-1] > 1:
            view = _contiguous_copy(ctx, var, view)
        full = lead + tuple(view.shape[-2:])
        strides = view.broadcast_strides(full)
        if view.shape[-1] == 1:
            strides = strides[:-1] + (1,)
        accesses.append(Access(view.buffer, view.offset, strides))
    mask = None
    if op.has_mask:
        view = ctx.view(node.inputs[3])
        if node.inputs[3].dtype != "float32":
            view = _float32_copy(ctx, view)
        mask = Access(view.buffer, view.offset, view.broadcast_strides(lead + (lq, lkv)))
    if out.shape[-1] == 1:  # one output column: its stride is never used
        out_strides = out.strides[:-1] + (1,)
    else:
        out_strides = out.strides
    if math.prod(map(int, ctx.shape(out_var))) == 0:
        return
    decode = None
    if op.threshold is not None:
        mode, threshold = "lambda", op.threshold
    elif op.scale_factor is not None:
        mode, threshold, decode = "scale_factor", op.scale_factor, op.decode_scale_factor
    else:
        mode, threshold = "dense", 0.0
    out_acc = Access(out.buffer, out.offset, out_strides)
    counts_acc = Access(counts.buffer, counts.offset, counts.strides)
    causal = op.causal
    if grouped:
        # A GQA/MQA decode step: the heads of axis -3 become the query rows (one read of k and v per
        # group); the kernel sees lead[:-1] and lq = G.  Every head's counts are 0 but a tile's first.
        ctx.map_kernel(f"k{len(ctx.plan.steps)}_zero", counts.shape, [],
                       [Instr(ps.identity, (("const", 0, "int64"),), "int64")], counts)
        q_acc, k_acc, v_acc = accesses
        accesses = [Access(q_acc.buffer, q_acc.offset, q_acc.strides[:-3] + (q_acc.strides[-3], q_acc.strides[-1])),
                    Access(k_acc.buffer, k_acc.offset, k_acc.strides[:-3] + k_acc.strides[-2:]),
                    Access(v_acc.buffer, v_acc.offset, v_acc.strides[:-3] + v_acc.strides[-2:])]
        if mask is not None:
            mask = Access(mask.buffer, mask.offset, mask.strides[:-3] + (mask.strides[-3], mask.strides[-1]))
        out_acc = Access(out.buffer, out.offset, out.strides[:-3] + (out.strides[-3], out_strides[-1]))
        counts_acc = Access(counts.buffer, counts.offset,
                            counts.strides[:-3] + (counts.strides[-3] * op.block_q, counts.strides[-1]))
        lq, lead = lead[-1], lead[:-1]
        causal = False  # one query: bottom-right causal hides nothing
        if decode is not None:  # the call is a decode step: its factor, decided here
            threshold, decode = decode, None
    # Few work items over many key tiles: split the keys (the kernel writes partials the merge combines).
    # The merge step is always there (it returns at once for one split), so the plan's structure, and
    # the compiled module, are the same for every length.
    items = math.prod(map(int, lead)) * -(-lq // op.block_q)
    splits = call_splits(lead, lq, lkv, op.block_q, op.block_k)
    row = dv + 2  # O[0:dv], m, l
    unit = min(op.block_q, lq) * row + 2  # the rows of a (tile, split), then its visited and skipped counts
    partial = ctx.temp_buffer("float32", (items * splits * unit if splits > 1 else 0,))
    partial_acc = Access(partial.buffer, partial.offset, (unit, row))
    ctx.emit(
        AttentionKernel(
            ctx.kernel_name(node), lead, lq, lkv, d, dv, *accesses, out_acc, counts_acc, mask,
            op.scale, causal, mode, threshold, op.block_q, op.block_k, decode, splits, partial_acc,
        )
    )
    ctx.emit(AttentionMergeKernel(f"{ctx.kernel_name(node)}_merge", lead, lq, dv, op.block_q, splits,
                                  partial_acc, out_acc, counts_acc))
    if out is not result:
        _convert(ctx, out, result)


def attention_stack_bytes(block_q: int, block_k: int, d: int, dv: int) -> int:
    """Stack bytes of the llvm attention kernel's tiles: scores, transposed K, V and output rows, row state.

    Columns and value dims are padded to 32 (the widest register block).
    """
    bkp = -(-block_k // 32) * 32
    dvp = -(-dv // 32) * 32
    bq = -(-block_q // 4) * 4
    return 4 * (bq * bkp + (d + 1) * bkp + bkp * dvp + bq * dvp + 3 * bq) + 4096


def _convert(ctx, src: View, dst: View) -> None:
    """``dst = src`` converted to ``dst``'s dtype (NumPy's rounding)."""
    dtype = ctx.plan.buffers[dst.buffer].dtype
    program = [Instr(ps.Cast(dtype), (("load", 0),), dtype)]
    ctx.map_kernel(f"k{len(ctx.plan.steps)}_convert", dst.shape, [src.access(dst.shape)], program, dst)


def _float32_copy(ctx, view: View) -> View:
    """A contiguous float32 temp holding ``view``'s values (``view``'s own shape: broadcasting stays in the strides)."""
    dense = ctx.temp_buffer("float32", view.shape)
    _convert(ctx, view, dense)
    return dense


def _contiguous_copy(ctx, var, view: View) -> View:
    dense = ctx.temp_buffer(var.dtype, view.shape)
    ctx.copy(var, view, dense)
    return dense


def _fold_rows(lead, x, sx, out: View, others=()):
    """``(x, sx, out, [others])`` row strides when the leading dims merge into one row dim for all, else None.

    ``x`` may be None (only ``out`` and ``others`` are checked); ``others`` are
    stride tuples over ``lead + (n,)``.
    """
    if not lead:
        return (max(x.shape[-1], 1) if x is not None else 0, 1, out.shape[-1], [0 for _ in others])
    accesses = [out.strides[:-1]] + [s[:-1] for s in others]
    accesses += [x.strides[:-1]] if x is not None else []
    accesses += [sx.strides[:-1]] if sx is not None else []
    extents, strides = collapse(lead, accesses)
    if len(extents) != 1:
        return None
    rows = [s[0] for s in strides]
    out_rs, other_rs = rows[0], rows[1:1 + len(others)]
    x_rs = rows[1 + len(others)] if x is not None else 0
    sx_rs = rows[-1] if sx is not None else 0
    return x_rs, sx_rs, out_rs, other_rs
