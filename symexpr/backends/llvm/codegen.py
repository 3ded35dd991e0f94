"""Render a kernel-IR :class:`~symexpr.kernel.ir.Plan` as one LLVM module.

The module has one internal function per kernel (buffer pointers marked
``noalias``, so LLVM vectorises without runtime alias checks) and one exported
entry point per *segment* (a run of native steps between host steps)::

    i32 symexpr_seg<k>(PyTupleObject *arrays, i64 thread, i64 n_threads)

``arrays`` holds the inputs, outputs, constants, the per-call arena and a
small synchronisation array; the entry reads each array's data pointer from
the object itself.  Every thread runs every kernel on its share of the first
outer dimension (an int8 GEMM: on its share of the rows); a spin barrier on an
atomic counter separates kernels.  GEMM steps run on thread 0 only (BLAS
threads itself).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir

from symexpr.backends.llvm import attention, qgemm
from symexpr.backends.llvm import scalar_ops as so
from symexpr.backends.llvm import target
from symexpr.backends.llvm.irloop import CountedLoop
from symexpr.kernel.ir import SELF_THREADED, AttentionKernel, AttentionMergeKernel, GemmKernel, LoopKernel, QGemmKernel
from symexpr.kernel.template import Param

VOID = ir.VoidType()
I8P = ir.IntType(8).as_pointer()
I64 = so.I64
I32 = so.I32
F64 = so.F64

#: Names of the BLAS routines compiled code calls (bound with ``llvm.add_symbol``).
GEMM_SYMBOLS = {"float32": "symexpr_cblas_sgemm", "float64": "symexpr_cblas_dgemm"}

#: Rounds a thread waiting at a barrier spins before it starts yielding its core (about 10-50 us).
SPINS_BEFORE_YIELD = 2000


def _i64(v) -> ir.Constant:
    return ir.Constant(I64, int(v))


def _accumulator_init(acc) -> ir.Constant:
    return so.constant(acc.identity(), acc.dtype)


#: Sequential additions each vector lane makes in one block of a float sum (see ``_phase``).
ADDS_PER_LANE = 8
#: Blocks shorter than this are summed in float64 throughout.
SHORT_SUM = 128


def sum_lanes(cpu_target) -> int:
    """Independent float32 accumulators LLVM keeps for a vectorised sum: lanes x an interleave of 4."""
    if cpu_target.has("avx512f"):
        return 64
    return 32 if cpu_target.has("avx") else 16


def _compensated(acc) -> bool:
    return acc.kind == "sum" and so.is_float(acc.dtype)


def _widen(b, value):
    return value if value.type == F64 else b.fpext(value, F64)


def _neumaier_add(b, total_slot, comp_slot, x):
    """``total += x`` keeping the rounding error in ``comp`` (Neumaier); no fast-math flags, so LLVM keeps the order."""
    s = b.load(total_slot)
    t = b.fadd(s, x)
    fabs = lambda v: so._intrinsic(b, "fabs", v.type, [v])  # noqa: E731
    big_s = b.fcmp_ordered(">=", fabs(s), fabs(x))
    err = b.select(big_s, b.fadd(b.fsub(s, t), x), b.fadd(b.fsub(x, t), s))
    b.store(b.fadd(b.load(comp_slot), err), comp_slot)
    b.store(t, total_slot)


def _combine(builder, kind, dtype, acc, value):
    if so.is_float(dtype):
        if kind == "sum":
            return builder.fadd(acc, value, flags=("reassoc",))
        if kind == "prod":
            return builder.fmul(acc, value, flags=("reassoc",))
        return so._intrinsic(builder, "maximum" if kind == "max" else "minimum", acc.type, [acc, value])
    if dtype == "bool":
        if kind in ("max", "sum"):
            return builder.or_(acc, value)
        return builder.and_(acc, value)
    if kind == "sum":
        return builder.add(acc, value)
    if kind == "prod":
        return builder.mul(acc, value)
    prefix = "s" if so.is_signed(dtype) else "u"
    return so._intrinsic(builder, f"{prefix}{kind}", acc.type, [acc, value])


def _params_of(kernel) -> list:
    """The :class:`Param` s a kernel's loops, accesses and programs use, in a fixed order."""
    found = {}

    def visit(value):
        if isinstance(value, Param):
            found[value.index] = value
        elif isinstance(value, tuple):
            for v in value:
                visit(v)
        elif hasattr(value, "__dataclass_fields__"):
            for name in value.__dataclass_fields__:
                visit(getattr(value, name))

    visit(kernel)
    return [found[k] for k in sorted(found)]


def _canonical(value, lo: int, buffers: dict):
    """``value`` (a kernel step or part of one) with params counted from ``lo`` and buffers by position.

    Two kernels with equal canonical forms compile to the same function: its
    body depends on its buffers only through their positions and dtypes, and
    on params only through their offsets in the block the segment passes.
    """
    if isinstance(value, Param):
        return ("p", value.index - lo)
    if isinstance(value, tuple):
        return tuple(_canonical(v, lo, buffers) for v in value)
    if isinstance(value, float):
        return ("f", repr(value))
    if hasattr(value, "__dataclass_fields__"):
        fields = [f for f in value.__dataclass_fields__ if f != "name"]
        if "buffer" in fields:
            return ("buffer", buffers[value.buffer]) + tuple(_canonical(getattr(value, f), lo, buffers) for f in fields if f != "buffer")
        return (type(value).__name__,) + tuple(_canonical(getattr(value, f), lo, buffers) for f in fields)
    return value


class ModuleGenerator:
    """Builds the LLVM module of one plan template (:class:`~symexpr.kernel.template.Template`).

    Every size in the template is a :class:`~symexpr.kernel.template.Param`:
    kernels load the ones they use from the run-time parameter vector once, on
    entry, so one module runs every geometry that has this template.
    """

    def __init__(self, plan, name: str, triple: str, object_layout: tuple[int, int], cpu_target=None):
        self.plan = plan
        self.module = ir.Module(name=name)
        self.module.triple = triple
        # scalar_ops reads it to choose instructions the target has (e.g. native float16 conversions)
        self.module.cpu_target = cpu_target or target.active_target()
        self.items_offset, self.data_offset = object_layout
        self.n_slots = self._slot_count()
        #: Kernel functions by canonical form (see :func:`_canonical`): equal kernels are compiled once.
        self._functions: dict = {}
        self._param_base = 0

    # -- slots in the argument tuple ----------------------------------------------
    def _slot_count(self):
        kinds = [b.kind for b in self.plan.buffers]
        self.n_inputs = sum(k == "input" for k in kinds)
        self.n_outputs = sum(k == "output" for k in kinds)
        self.n_consts = self.plan.n_constants
        self.arena_slot = self.n_inputs + self.n_outputs + self.n_consts
        self.sync_slot = self.arena_slot + 1
        self.params_slot = self.sync_slot + 1
        return self.params_slot + 1

    def slot_of(self, buffer) -> int:
        b = self.plan.buffers[buffer]
        if b.kind == "input":
            return b.index
        if b.kind == "output":
            return self.n_inputs + b.index
        if b.kind == "const":
            return self.n_inputs + self.n_outputs + b.index
        return self.arena_slot

    # -- kernels --------------------------------------------------------------------
    def kernel_buffers(self, kernel) -> list[int]:
        if isinstance(kernel, GemmKernel):
            return [kernel.a.buffer, kernel.b.buffer, kernel.c.buffer]
        if isinstance(kernel, SELF_THREADED):
            return list(dict.fromkeys(a.buffer for _, a in kernel.accesses()))
        used = []
        for phase in kernel.phases:
            for access in list(phase.loads) + [a for a, _ in phase.stores]:
                if access.buffer not in used:
                    used.append(access.buffer)
        return used

    def kernel_function(self, step):
        """``(function, first_param)``: the function of kernel ``step``, shared by every kernel of its canonical form.

        The function takes ``(buffers..., params + first_param, start, stop)``.
        """
        buffers = self.kernel_buffers(step)
        params = _params_of(step)
        lo = params[0].index if params else 0
        key = (_canonical(step, lo, {buf: k for k, buf in enumerate(buffers)}),
               tuple(self.plan.buffers[buf].dtype for buf in buffers))
        fn = self._functions.get(key)
        if fn is None:
            self._param_base = lo
            if isinstance(step, LoopKernel):
                fn = self.loop_kernel(step)
            elif isinstance(step, QGemmKernel):
                fn = qgemm.qgemm_function(self, step, buffers)
            elif isinstance(step, (AttentionKernel, AttentionMergeKernel)):
                fn = attention.attention_function(self, step, buffers)
            else:
                fn = self.gemm_kernel(step)
            self._functions[key] = fn
        return fn, lo

    def _kernel_function(self, kernel, buffers):
        """The kernel's function ``(buffers..., params, start, stop)``, with an entry block that loads its params."""
        fnty = ir.FunctionType(VOID, [I8P] * len(buffers) + [I64.as_pointer(), I64, I64])
        fn = ir.Function(self.module, fnty, f"kernel{len(self._functions)}_{kernel.name.split('_', 1)[-1]}")
        fn.linkage = "internal"
        # Inlining a kernel into its segment gains nothing (one call per run) and makes
        # the optimiser's time grow faster than linearly in the number of kernels.
        fn.attributes.add("noinline")
        for arg in fn.args[: len(buffers) + 1]:
            arg.add_attribute("noalias")
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        params = fn.args[len(buffers)]
        base = self._param_base
        self._params = {
            p.index: b.load(b.gep(params, [_i64(p.index - base)]), name=f"p{p.index - base}") for p in _params_of(kernel)
        }
        return fn, b

    def num(self, value) -> ir.Value:
        """An integer of the template: a literal, or a param the current kernel loaded on entry."""
        if isinstance(value, Param):
            return self._params[value.index]
        return _i64(value)

    def loop_kernel(self, kernel: LoopKernel):
        buffers = self.kernel_buffers(kernel)
        fn, b = self._kernel_function(kernel, buffers)
        pointers = {}
        for buf, arg in zip(buffers, fn.args):
            dtype = self.plan.buffers[buf].dtype
            pointers[buf] = b.bitcast(arg, so.memory_type(dtype).as_pointer())
        start, stop = fn.args[len(buffers) + 1], fn.args[len(buffers) + 2]
        n_outer = len(kernel.outer)
        max_inner = max((len(p.inner) for p in kernel.phases), default=0)
        counters = [b.alloca(I64, name=f"i{d}") for d in range(n_outer + max_inner + 1)]
        accs = {}
        self._compensated = {}
        for p, phase in enumerate(kernel.phases):
            for k, acc in enumerate(phase.accumulators):
                ty = so.register_type(acc.dtype)
                accs[(p, k)] = b.alloca(ty, name=f"acc{p}_{k}")
                if _compensated(acc) and phase.inner:
                    self._compensated[(p, k)] = (
                        b.alloca(ty, name=f"part{p}_{k}"),
                        b.alloca(F64, name=f"rest{p}_{k}"),
                        b.alloca(F64, name=f"total{p}_{k}"),
                        b.alloca(F64, name=f"comp{p}_{k}"),
                    )

        def outer(d, index):
            if d == n_outer:
                for p, phase in enumerate(kernel.phases):
                    self._phase(b, kernel, p, phase, index, pointers, counters, accs)
                return
            lo, hi = (start, stop) if d == 0 else (_i64(0), self.num(kernel.outer[d]))
            with CountedLoop(b, counters[d], lo, hi) as i:
                outer(d + 1, index + [i])

        outer(0, [])
        b.ret_void()
        return fn

    def _phase(self, b, kernel, p, phase, outer_index, pointers, counters, accs):
        for k, acc in enumerate(phase.accumulators):
            b.store(_accumulator_init(acc), accs[(p, k)])
        n_outer = len(outer_index)
        compensated = {key: slots for key, slots in self._compensated.items() if key[0] == p}
        if not compensated:

            def inner(d, index):
                if d == len(phase.inner):
                    self._body(b, p, phase, index, pointers, accs)
                    return
                with CountedLoop(b, counters[n_outer + d], _i64(0), self.num(phase.inner[d])) as i:
                    inner(d + 1, index + [i])

            inner(0, list(outer_index))
            return
        # Float sums: the innermost loop runs over blocks of ADDS_PER_LANE x sum_lanes elements.  A
        # block's first multiple of sum_lanes elements is added into a partial sum in the value's type
        # (reassociated: LLVM spreads it over many vector lanes and adds them as a tree, with no
        # scalar remainder); the rest, which would be a sequential chain, is added in float64, and
        # so are blocks shorter than SHORT_SUM (a handful of vector iterations would leave the
        # tree of lanes as the main source of error).
        # Both partial sums go into a float64 total with Neumaier's compensation.  Errors are
        # those of NumPy's pairwise summation or smaller (docs/llvm-backend.md, "Float sums").
        body_accs = dict(accs)
        for key, (_, _, total, comp) in compensated.items():
            b.store(_widen(b, b.load(accs[key])), total)
            b.store(ir.Constant(F64, 0.0), comp)
        last = len(phase.inner) - 1
        extent = self.num(phase.inner[last])
        lanes = sum_lanes(self.module.cpu_target)
        block = lanes * ADDS_PER_LANE
        tail_start = b.mul(b.sdiv(extent, _i64(block)), _i64(block))

        def run_loop(which, lo, hi, index):
            # which: 0 the partial in the value's type, 1 the float64 partial.  A float64 sum's rest
            # would gain nothing from a float64 partial: each element goes to the total, compensated.
            direct = {key for key, slots in compensated.items() if which == 1 and slots[0].type == F64.as_pointer()}
            for key, slots in compensated.items():
                if key in direct:
                    body_accs[key] = (slots[2], slots[3])
                else:
                    body_accs[key] = slots[which]
                    b.store(ir.Constant(slots[which].type.pointee, 0.0), slots[which])
            with CountedLoop(b, counters[n_outer + last], lo, hi) as i:
                self._body(b, p, phase, index + [i], pointers, body_accs)
            for key, slots in compensated.items():
                if key not in direct:
                    _neumaier_add(b, slots[2], slots[3], _widen(b, b.load(slots[which])))

        # A strided inner loop is not vectorised: its "vector part" would be one long chain.
        unit = all(access.strides[-1] in (0, 1) for access in phase.loads)

        if unit:
            # the vector part: every full block, and the rest rounded down to the lanes unless it is short
            tail = b.sub(extent, tail_start)
            tail_vector = b.select(b.icmp_signed("<", tail, _i64(SHORT_SUM)), _i64(0), b.sub(tail, b.srem(tail, _i64(lanes))))
            vector_end = b.add(tail_start, tail_vector)
            n_chunks = b.sdiv(b.add(vector_end, _i64(block - 1)), _i64(block))

        def inner(d, index):
            if d < last:
                with CountedLoop(b, counters[n_outer + d], _i64(0), self.num(phase.inner[d])) as i:
                    inner(d + 1, index + [i])
                return
            rest = _i64(0)
            if unit:
                # blocks of the vector part, each summed in the value's type; the last may be shorter
                with CountedLoop(b, counters[n_outer + last + 1], _i64(0), n_chunks) as chunk:
                    lo = b.mul(chunk, _i64(block))
                    hi = b.add(lo, _i64(block))
                    run_loop(0, lo, b.select(b.icmp_signed("<", hi, vector_end), hi, vector_end), index)
                rest = vector_end
            run_loop(1, rest, extent, index)  # the rest, in float64

        inner(0, list(outer_index))
        for key, (_, _, total_slot, comp) in compensated.items():
            total = b.load(total_slot)
            finite = b.fcmp_ordered("<", so._intrinsic(b, "fabs", F64, [total]), ir.Constant(F64, float("inf")))
            final = b.select(finite, b.fadd(total, b.load(comp)), total)
            slot = accs[key]
            b.store(final if slot.type.pointee == F64 else b.fptrunc(final, slot.type.pointee), slot)

    def _address(self, b, access, index, pointers):
        offset = self.num(access.offset)
        for i, stride in zip(index, access.strides):
            if isinstance(stride, Param) or stride:
                offset = b.add(offset, b.mul(i, self.num(stride)))
        return b.gep(pointers[access.buffer], [offset], inbounds=True)

    def _body(self, b, p, phase, index, pointers, accs):
        values = {}
        for k, access in enumerate(phase.loads):
            dtype = self.plan.buffers[access.buffer].dtype
            raw = b.load(self._address(b, access, index, pointers), align=np.dtype(dtype).itemsize)
            values[("load", k)] = (so.from_memory(b, raw, dtype), dtype)
        so.emit_program(b, phase.program, values, lambda ref: self._ref(b, ref, values, accs))
        for k, acc in enumerate(phase.accumulators):
            value, _ = self._ref(b, acc.value, values, accs)
            slot = accs[(p, k)]
            if isinstance(slot, tuple):  # a float64 sum's compensated total
                _neumaier_add(b, *slot, value)
                continue
            if slot.type.pointee != value.type:  # a float sum's float64 partial
                value = _widen(b, value)
            b.store(_combine(b, acc.kind, acc.dtype, b.load(slot), value), slot)
        for access, ref in phase.stores:
            value, vdtype = self._ref(b, ref, values, accs)
            dtype = self.plan.buffers[access.buffer].dtype
            if vdtype != dtype:
                value = so.cast(b, value, vdtype, dtype)
            b.store(so.to_memory(b, value, dtype), self._address(b, access, index, pointers), align=np.dtype(dtype).itemsize)

    def _ref(self, b, ref, values, accs):
        if ref[0] == "const":
            return so.constant(ref[1], ref[2]), ref[2]
        if ref[0] == "size":
            return so.cast(b, self.num(ref[1]), "int64", ref[2]), ref[2]
        if ref[0] == "acc":
            slot = accs[(ref[1], ref[2])]
            return b.load(slot), self._acc_dtype(ref)
        return values[ref]

    def _acc_dtype(self, ref):
        return self._current_kernel.phases[ref[1]].accumulators[ref[2]].dtype

    def gemm_kernel(self, kernel: GemmKernel):
        buffers = self.kernel_buffers(kernel)
        fn, b = self._kernel_function(kernel, buffers)
        fty = so.register_type(kernel.dtype)
        pa, pb, pc = (b.bitcast(arg, fty.as_pointer()) for arg in fn.args[:3])
        name = GEMM_SYMBOLS[kernel.dtype]
        gemm = self.module.globals.get(name)
        if gemm is None:
            ptr = fty.as_pointer()
            gemm = ir.Function(
                self.module,
                ir.FunctionType(VOID, [I32, I32, I32, I64, I64, I64, fty, ptr, I64, ptr, I64, fty, ptr, I64]),
                name,
            )
        a_trans = kernel.a.strides[-1] != 1
        b_trans = kernel.b.strides[-1] != 1
        lda = self._leading(b, kernel.a.strides[-1] if a_trans else kernel.a.strides[-2])
        ldb = self._leading(b, kernel.b.strides[-1] if b_trans else kernel.b.strides[-2])
        ldc = self._leading(b, kernel.c.strides[-2])
        nb = len(kernel.batch)
        counters = [b.alloca(I64) for _ in range(nb)]

        def level(d, index):
            if d == nb:
                ptrs = []
                for base, access in ((pa, kernel.a), (pb, kernel.b), (pc, kernel.c)):
                    ptrs.append(self._address(b, type(access)(access.buffer, access.offset, access.strides[:nb]), index, {access.buffer: base}))
                args = [
                    ir.Constant(I32, 101),
                    ir.Constant(I32, 112 if a_trans else 111),
                    ir.Constant(I32, 112 if b_trans else 111),
                    self.num(kernel.m), self.num(kernel.n), self.num(kernel.k),
                    ir.Constant(fty, 1.0), ptrs[0], lda, ptrs[1], ldb,
                    ir.Constant(fty, 0.0), ptrs[2], ldc,
                ]
                b.call(gemm, args)
                return
            # The first batch dim runs over the caller's [start, stop): the segment splits it across threads.
            lo, hi = (fn.args[-2], fn.args[-1]) if d == 0 else (_i64(0), self.num(kernel.batch[d]))
            with CountedLoop(b, counters[d], lo, hi) as i:
                level(d + 1, index + [i])

        level(0, [])
        b.ret_void()
        return fn

    def _leading(self, b, stride):
        """A BLAS leading dimension: ``max(stride, 1)``."""
        if not isinstance(stride, Param):
            return _i64(max(stride, 1))
        value = self.num(stride)
        return b.select(b.icmp_signed("<", value, _i64(1)), _i64(1), value)

    # -- entry points -------------------------------------------------------------
    def segment(self, k: int, steps: list):
        """The exported entry point running ``steps`` (kernels) in order."""
        fnty = ir.FunctionType(I32, [I8P, I64, I64])
        fn = ir.Function(self.module, fnty, f"symexpr_seg{k}")
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        tup, tid, nthreads = fn.args
        data = {}

        def slot_data(slot):
            if slot not in data:
                item = b.gep(tup, [_i64(self.items_offset + 8 * slot)])
                obj = b.load(b.bitcast(item, I8P.as_pointer()))
                data[slot] = b.load(b.bitcast(b.gep(obj, [_i64(self.data_offset)]), I8P.as_pointer()))
            return data[slot]

        params = b.bitcast(slot_data(self.params_slot), I64.as_pointer())

        def param(value):
            if isinstance(value, Param):
                return b.load(b.gep(params, [_i64(value.index)]))
            return _i64(value)

        def buffer_ptr(buf):
            spec = self.plan.buffers[buf]
            base = slot_data(self.slot_of(buf))
            if spec.kind == "temp":
                return b.gep(base, [param(spec.index)])
            return base

        def share(extent):
            """This thread's ``[lo, hi)`` of ``range(extent)``: equal chunks in thread order."""
            chunk = b.sdiv(b.add(extent, b.sub(nthreads, _i64(1))), nthreads)
            lo = b.select(b.icmp_signed("<", b.mul(tid, chunk), extent), b.mul(tid, chunk), extent)
            hi = b.select(b.icmp_signed("<", b.add(lo, chunk), extent), b.add(lo, chunk), extent)
            return lo, hi

        counter = b.bitcast(b.gep(slot_data(self.sync_slot), [_i64(8 * k)]), I64.as_pointer())
        self._spin_counter = b.alloca(I64, name="spins")
        one_thread = b.icmp_signed("<=", nthreads, _i64(1))
        for n, step in enumerate(steps):
            self._current_kernel = step
            fn_k, first_param = self.kernel_function(step)
            args = [buffer_ptr(buf) for buf in self.kernel_buffers(step)] + [b.gep(params, [_i64(first_param)])]
            if isinstance(step, LoopKernel):
                b.call(fn_k, args + list(share(param(step.outer[0]))))
            elif isinstance(step, SELF_THREADED):  # the kernel splits its work itself
                b.call(fn_k, args + [tid, nthreads])
            elif step.batch:  # a batched GEMM: each thread calls BLAS (single-threaded) on its batch entries
                b.call(fn_k, args + list(share(param(step.batch[0]))))
            else:  # one GEMM: BLAS threads it
                with b.if_then(b.icmp_signed("==", tid, _i64(0))):
                    b.call(fn_k, args + [_i64(0), _i64(1)])
            if n < len(steps) - 1:
                self._barrier(b, counter, nthreads, one_thread, n)
        b.ret(ir.Constant(I32, 0))
        return fn

    def _barrier(self, b, counter, nthreads, one_thread, n):
        """Wait until every thread has finished kernel ``n``.

        Spin (with ``pause``) for :data:`SPINS_BEFORE_YIELD` rounds, then call
        ``sched_yield`` between checks: with more threads than free cores the
        threads being waited for need the core a spinning thread would hold.
        """
        with b.if_then(b.not_(one_thread)):
            b.atomic_rmw("add", counter, _i64(1), "seq_cst")
            target_count = b.mul(nthreads, _i64(n + 1))
            spins = self._spin_counter
            b.store(_i64(0), spins)
            head = b.append_basic_block("barrier.wait")
            spin = b.append_basic_block("barrier.spin")
            pause_block = b.append_basic_block("barrier.pause")
            yield_block = b.append_basic_block("barrier.yield")
            done = b.append_basic_block("barrier.done")
            b.branch(head)
            b.position_at_end(head)
            seen = b.load_atomic(counter, "acquire", 8)
            b.cbranch(b.icmp_signed("<", seen, target_count), spin, done)
            b.position_at_end(spin)
            count = b.load(spins)
            b.store(b.add(count, _i64(1)), spins)
            b.cbranch(b.icmp_signed("<", count, _i64(SPINS_BEFORE_YIELD)), pause_block, yield_block)
            b.position_at_end(pause_block)
            if self.module.triple.startswith(("x86_64", "i686", "i386")):
                pause = self.module.globals.get("llvm.x86.sse2.pause") or ir.Function(
                    self.module, ir.FunctionType(VOID, []), "llvm.x86.sse2.pause"
                )
                b.call(pause, [])
            b.branch(head)
            b.position_at_end(yield_block)
            sched_yield = self.module.globals.get("sched_yield") or ir.Function(
                self.module, ir.FunctionType(I32, []), "sched_yield"
            )
            b.call(sched_yield, [])
            b.branch(head)
            b.position_at_end(done)


def generate_module(plan, segments, name, triple, object_layout, cpu_target=None) -> str:
    """LLVM IR text for ``plan``: one entry point per segment (a list of kernel steps).

    ``cpu_target`` (default: the active target) decides which instructions the IR may rely on.
    """
    gen = ModuleGenerator(plan, name, triple, object_layout, cpu_target)
    for k, steps in enumerate(segments):
        gen.segment(k, steps)
    return str(gen.module)
