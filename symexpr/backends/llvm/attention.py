"""LLVM IR for :class:`~symexpr.kernel.ir.AttentionKernel`: FlashAttention-style tiles with BLASST skipping.

One work item is a query tile (``block_q`` rows) of one point of the
leading space; the items are dealt round-robin to the threads (so a causal
mask's short and long tiles spread evenly).  For each item::

    m = -inf, l = 0, O = 0                          (per row; O on the stack, dv padded)
    for each key tile j it visits (causal: up to its last visible key):
        Kt = k tile, transposed on the stack         [d][BKP], 8 x 8 blocks transposed in registers
        S  = (q @ Kt) * scale                        4-row x 2-vector register blocks (1-row ones for
                                                     the last rows), over the tile's keys rounded up
                                                     to a block (not all of BKP)
        S += mask; S = -inf where causal hides a key or past the tile's keys
        tmax = rowmax(S)                             (NaN-ignoring, as the running max)
        if j > 0 and every row has exp(tmax - m) < lambda:  skip (v is not read)
        else: m' = max(m, tmax); P = exp(S - m'); l = l*exp(m - m') + rowsum(P)
              O = O*exp(m - m') + P @ v_tile         (v tile copied to the stack, dv padded)
    out = O / l                                      (no keys at all: 0)

A max of ``-inf`` is replaced by 0 before the exponentials, so a row that
has seen only masked keys keeps ``l = 0`` and ends as 0/0 = NaN, as
:class:`~symexpr.ops.nnet.Softmax` gives for a fully masked row.  ``BKP``
is ``block_k`` rounded up to the register block's width; ``dv`` is padded
the same way on the stack (about ``(BQ + BKP) * dv + BKP * d + BQ * BKP``
floats; the lowering sends larger tiles to the host, see ``attention_stack_bytes``).

The exponentials are scalar loops of the inline math library
(:mod:`symexpr.kernel.mathfns`), which LLVM's loop vectoriser turns
into vector code; the two products are explicit vector code, with
``llvm.fmuladd`` (one FMA where the target has it).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir

from symexpr.backends.llvm.irloop import CountedLoop, aligned_alloca, const, declare, imin, splat
from symexpr.backends.llvm.scalar_ops import F32, I32, I64, emit_exp_nonpositive, emit_math
from symexpr.kernel.ir import AttentionMergeKernel
from symexpr.ops.attention import MAX_SPLITS

#: Query rows per register block of the two products.
ROWS = 4
#: Vectors per register block (columns: keys in q @ k^T, head dims in P @ v).
VECTORS = 2
#: Keys per step of the few-rows (decode) products: independent FMA chains.
KEYS = 4
_F64 = ir.DoubleType()


def vector_width(cpu_target) -> int:
    """float32 lanes per vector: 16 with AVX-512, else 8 (two SSE registers where there is no AVX)."""
    return 16 if cpu_target.has("avx512f") else 8


def attention_function(gen, kernel, buffers):
    """Emit the function of ``kernel`` in ``gen``'s module: ``(buffers..., params, tid, nthreads)``.

    Parameters
    ----------
    gen : ModuleGenerator
        The module being built (``_kernel_function``, ``num``, ``module.cpu_target``).
    kernel : AttentionKernel or AttentionMergeKernel
        The step, from the plan template (the merge of split keys has its own body).
    buffers : list of int
        The kernel's buffers, in the order of the function's pointer arguments.

    Returns
    -------
    llvmlite.ir.Function
    """
    fn, b = gen._kernel_function(kernel, buffers)
    fn.attributes.add("nounwind")
    args = dict(zip(buffers, fn.args))
    tid, nthreads = fn.args[len(buffers) + 1], fn.args[len(buffers) + 2]
    emitter = _MergeEmitter if isinstance(kernel, AttentionMergeKernel) else _Emitter
    emitter(gen, kernel, b, args, tid, nthreads).emit()
    return fn


def _transpose8(b, rows):
    """The columns of an 8 x 8 block given as 8 row vectors (``<8 x float>``): unpack, then 64- and 128-bit moves."""

    def shuffle(x, y, mask):
        return b.shuffle_vector(x, y, ir.Constant(ir.VectorType(I32, 8), mask))

    pairs = []
    for i in range(0, 8, 2):
        pairs.append(shuffle(rows[i], rows[i + 1], [0, 8, 1, 9, 4, 12, 5, 13]))
        pairs.append(shuffle(rows[i], rows[i + 1], [2, 10, 3, 11, 6, 14, 7, 15]))
    quads = []
    for i in (0, 4):
        for lo, hi in ((i, i + 2), (i + 1, i + 3)):
            quads.append(shuffle(pairs[lo], pairs[hi], [0, 1, 8, 9, 4, 5, 12, 13]))
            quads.append(shuffle(pairs[lo], pairs[hi], [2, 3, 10, 11, 6, 7, 14, 15]))
    # quads[j] (j < 4): rows 0-3 of columns j and j + 4; quads[j + 4]: rows 4-7 of the same
    return ([shuffle(quads[j], quads[j + 4], [0, 1, 2, 3, 8, 9, 10, 11]) for j in range(4)]
            + [shuffle(quads[j], quads[j + 4], [4, 5, 6, 7, 12, 13, 14, 15]) for j in range(4)])


def _ceil_div(b, x, n):
    return b.sdiv(b.add(x, b.sub(n, const(1))), n)


def _unravel(b, index, sizes):
    """The multi-index of ``index`` over ``sizes`` (row-major)."""
    out = []
    for n in reversed(sizes):
        out.append(b.srem(index, n))
        index = b.sdiv(index, n)
    return out[::-1]


class _KernelEmitter:
    """What the attention kernel and its merge share: operand pointers, loops, stack slots, addresses."""

    def __init__(self, gen, kernel, b, args, tid, nthreads):
        self.k, self.b, self.num = kernel, b, gen.num
        self.tid, self.nthreads = tid, nthreads
        self.w = vector_width(gen.module.cpu_target)
        self.vec = ir.VectorType(F32, self.w)
        self.bq = int(kernel.block_q)
        self.ptr = {}
        for role, access in kernel.accesses():
            ty = I64 if role == "counts" else F32
            self.ptr[role] = b.bitcast(args[access.buffer], ty.as_pointer())
        self.counters = {}
        self.vslots = {}

    def _stack(self, count, name):
        return aligned_alloca(self.b, F32, name, count)

    def _entry_slot(self, slots, name, ty):
        """A stack slot of ``ty`` named ``name``, allocated once at the start of the entry block."""
        slot = slots.get(name)
        if slot is None:
            b = self.b
            entry = b.function.entry_basic_block
            with b.goto_block(entry):
                b.position_at_start(entry)
                slot = slots[name] = b.alloca(ty, name=name)
        return slot

    def _counter(self, name):
        return self._entry_slot(self.counters, name, I64)

    def _loop(self, name, start, stop, step=1):
        return CountedLoop(self.b, self._counter(name), start, stop, step, name=name)

    def _max(self, a, x):
        """``x`` where ``x > a``, else ``a``: NaN in ``x`` is ignored (vector or scalar)."""
        b = self.b
        return b.select(b.fcmp_ordered(">", x, a), x, a)

    def _offset(self, role, lead_index):
        access = getattr(self.k, role)
        b = self.b
        off = self.num(access.offset)
        for idx, stride in zip(lead_index, access.strides):
            off = b.add(off, b.mul(idx, self.num(stride)))
        return off

    def _tile_rows(self, qt, lead_index, role):
        """The first row of query tile ``qt`` of operand ``role`` at ``lead_index``."""
        b, access = self.b, getattr(self.k, role)
        row0 = b.mul(b.mul(qt, const(self.bq)), self.num(access.strides[-2]))
        return b.gep(self.ptr[role], [b.add(self._offset(role, lead_index), row0)])

    def _counts_of(self, qt, lead_index):
        """The address of query tile ``qt``'s ``(visited, skipped)`` counts at ``lead_index``."""
        b, counts = self.b, self.k.counts
        return b.gep(self.ptr["counts"], [b.add(self._offset("counts", lead_index), b.mul(qt, self.num(counts.strides[-2])))])


class _MergeEmitter(_KernelEmitter):
    """The body of :class:`~symexpr.kernel.ir.AttentionMergeKernel`: work items dealt round-robin."""

    def emit(self):
        k, b = self.k, self.b
        splits = self.num(k.splits)
        lq, dv = self.num(k.lq), self.num(k.dv)
        nqt = _ceil_div(b, lq, const(self.bq))
        items = nqt
        for size in k.lead:
            items = b.mul(items, self.num(size))
        # one split: the attention kernel wrote out and counts itself
        items = b.select(b.icmp_signed(">", splits, const(1)), items, const(0))
        mine = b.select(b.icmp_signed("<", self.tid, items), _ceil_div(b, b.sub(items, self.tid), self.nthreads), const(0))
        unit_stride, row_stride = (self.num(x) for x in k.partial.strides)
        weights = self._stack(const(MAX_SPLITS), "w")
        top_slot = self._entry_slot(self.vslots, "top", F32)
        total_slot = self._entry_slot(self.vslots, "total", F32)
        acc_slot = self._entry_slot(self.vslots, "acc", F32)
        counts_slots = self._counter("visited"), self._counter("skipped")
        neg_inf, zero = ir.Constant(F32, float("-inf")), ir.Constant(F32, 0.0)
        o_rs = self.num(k.out.strides[-2])
        with self._loop("item", const(0), mine) as it:
            item = b.add(self.tid, b.mul(it, self.nthreads))
            qt = b.srem(item, nqt)
            lead_index = _unravel(b, b.sdiv(item, nqt), [self.num(n) for n in k.lead])
            nr = imin(b, const(self.bq), b.sub(lq, b.mul(qt, const(self.bq))))
            base = b.gep(self.ptr["partial"], [b.add(self.num(k.partial.offset), b.mul(b.mul(item, splits), unit_stride))])
            out_rows = self._tile_rows(qt, lead_index, "out")

            def part(split, r, index):
                return b.load(b.gep(base, [b.add(b.add(b.mul(split, unit_stride), b.mul(r, row_stride)), index)]))

            with self._loop("row", const(0), nr) as r:
                b.store(neg_inf, top_slot)
                with self._loop("max.s", const(0), splits) as sp:
                    b.store(self._max(b.load(top_slot), part(sp, r, dv)), top_slot)
                top = b.load(top_slot)
                top = b.select(b.fcmp_ordered("==", top, neg_inf), zero, top)
                b.store(zero, total_slot)
                with self._loop("sum.s", const(0), splits) as sp:
                    w = emit_math(b, "exp", [b.fsub(part(sp, r, dv), top)])
                    b.store(w, b.gep(weights, [sp]))
                    b.store(b.fadd(b.load(total_slot), b.fmul(w, part(sp, r, b.add(dv, const(1))))), total_slot)
                total = b.load(total_slot)
                dst = b.gep(out_rows, [b.mul(r, o_rs)])
                with self._loop("out.e", const(0), dv) as e:
                    b.store(zero, acc_slot)
                    with self._loop("out.s", const(0), splits) as sp:
                        term = b.fmul(b.load(b.gep(weights, [sp])), part(sp, r, e))
                        b.store(b.fadd(b.load(acc_slot), term), acc_slot)
                    b.store(b.fdiv(b.load(acc_slot), total), b.gep(dst, [e]))
            for slot in counts_slots:
                b.store(const(0), slot)
            with self._loop("counts.s", const(0), splits) as sp:
                tail = b.gep(base, [b.add(b.mul(sp, unit_stride), b.sub(unit_stride, const(2)))])
                for i, slot in enumerate(counts_slots):
                    b.store(b.add(b.load(slot), b.fptosi(b.load(b.gep(tail, [const(i)])), I64)), slot)
            counts = self._counts_of(qt, lead_index)
            b.store(b.load(counts_slots[0]), counts)
            b.store(b.load(counts_slots[1]), b.gep(counts, [self.num(k.counts.strides[-1])]))
        b.ret_void()


class _Emitter(_KernelEmitter):
    def __init__(self, gen, kernel, b, args, tid, nthreads):
        super().__init__(gen, kernel, b, args, tid, nthreads)
        self.block = self.w * VECTORS
        self.bk = int(kernel.block_k)
        self.bkp = -(-self.bk // self.block) * self.block
        n = self.num
        self.lq, self.lkv, self.d, self.dv = n(kernel.lq), n(kernel.lkv), n(kernel.d), n(kernel.dv)
        # causal: key j is visible to query i when j <= i + shift
        self.shift = b.sub(self.lkv, self.lq) if kernel.causal == "bottom_right" else const(0)
        self.dvp = b.mul(_ceil_div(b, self.dv, const(self.block)), const(self.block))
        self.s = self._stack(const(self.bq * self.bkp), "S")
        kt_rows = b.add(self.d, const(1))
        self.kt = self._stack(b.mul(kt_rows, const(self.bkp)), "Kt")
        self.vp = self._stack(b.mul(const(self.bkp), self.dvp), "Vp")
        self.o = self._stack(b.mul(const(self.bq), self.dvp), "O")
        self.m = self._stack(const(self.bq), "m")
        self.l = self._stack(const(self.bq), "l")
        self.tmax = self._stack(const(self.bq), "tmax")
        # stale stack contents would be undefined values; zero the tiles once
        self._fill(self.kt, b.mul(kt_rows, const(self.bkp)), 0.0, "zero.kt")
        self._fill(self.vp, b.mul(const(self.bkp), self.dvp), 0.0, "zero.vp")
        self._fill(self.s, const(self.bq * self.bkp), 0.0, "zero.s")

    # -- helpers ---------------------------------------------------------------------------------
    def _vslot(self, name):
        return self._entry_slot(self.vslots, name, self.vec)

    def _fill(self, ptr, count, value, name):
        b = self.b
        with self._loop(name, const(0), count) as i:
            b.store(ir.Constant(F32, value), b.gep(ptr, [i]))

    def _vload(self, ptr, index):
        b = self.b
        return b.load(b.bitcast(b.gep(ptr, [index]), self.vec.as_pointer()), align=4)

    def _vstore(self, value, ptr, index):
        b = self.b
        b.store(value, b.bitcast(b.gep(ptr, [index]), self.vec.as_pointer()), align=4)

    def _fmuladd(self, a, x, y):
        fn = declare(self.b.module, f"llvm.fmuladd.v{self.w}f32", self.vec, [self.vec] * 3)
        return self.b.call(fn, [a, x, y])

    def _vconst(self, value):
        return ir.Constant(self.vec, [float(value)] * self.w)

    def _lanes(self, v):
        return [self.b.extract_element(v, const(i, I32)) for i in range(self.w)]

    # -- the kernel -----------------------------------------------------------------------------
    def emit(self):
        k, b = self.k, self.b
        nqt = _ceil_div(b, self.lq, const(self.bq))
        items = nqt
        for size in k.lead:
            items = b.mul(items, self.num(size))
        self.splits = self.num(k.splits)
        total = b.mul(items, self.splits)
        # units (item, split) tid, tid + nthreads, ...: count = ceil((total - tid) / nthreads) when tid < total
        mine = b.select(b.icmp_signed("<", self.tid, total), _ceil_div(b, b.sub(total, self.tid), self.nthreads), const(0))
        self._lambda_setup()
        with self._loop("item", const(0), mine) as it:
            unit = b.add(self.tid, b.mul(it, self.nthreads))
            split = b.srem(unit, self.splits)
            item = b.sdiv(unit, self.splits)
            qt = b.srem(item, nqt)
            lead_index = _unravel(b, b.sdiv(item, nqt), [self.num(n) for n in k.lead])
            self._item(qt, lead_index, unit, split)
        b.ret_void()

    def _lambda_setup(self):
        """``self.lam`` (float32 lambda) and ``self.skip_on`` (i1), or None when the kernel never skips."""
        k, b = self.k, self.b
        self.lam = self.skip_on = None
        if k.mode == "lambda":
            lam = float(np.float32(k.threshold))  # the op compares lambda with 1 in float32
            if lam < 1.0:
                self.lam = ir.Constant(F32, lam)
                self.skip_on = ir.Constant(ir.IntType(1), 1)
        elif k.mode == "scale_factor":
            lkv = b.sitofp(b.select(b.icmp_signed(">", self.lkv, const(1)), self.lkv, const(1)), _F64)
            sf = ir.Constant(_F64, float(k.threshold))
            if k.decode_threshold is not None:  # a decode step (one query) takes its own factor
                sf = b.select(b.icmp_signed("==", self.lq, const(1)), ir.Constant(_F64, float(k.decode_threshold)), sf)
            self.lam = b.fptrunc(b.fdiv(sf, lkv), F32)
            self.skip_on = b.fcmp_ordered("<", self.lam, ir.Constant(F32, 1.0))

    def _item(self, qt, lead_index, unit, split):
        k, b = self.k, self.b
        r0 = b.mul(qt, const(self.bq))
        nr = imin(b, const(self.bq), b.sub(self.lq, r0))
        self.q_rows = self._tile_rows(qt, lead_index, "q")
        self.k_rows = b.gep(self.ptr["k"], [self._offset("k", lead_index)])
        self.v_rows = b.gep(self.ptr["v"], [self._offset("v", lead_index)])
        out_rows = self._tile_rows(qt, lead_index, "out")
        if k.mask is not None:
            self.mask_rows = self._tile_rows(qt, lead_index, "mask")
        with self._loop("init", const(0), const(self.bq)) as r:
            b.store(ir.Constant(F32, float("-inf")), b.gep(self.m, [r]))
            b.store(ir.Constant(F32, 0.0), b.gep(self.l, [r]))
        self._fill(self.o, b.mul(const(self.bq), self.dvp), 0.0, "zero.o")
        nkt = _ceil_div(b, self.lkv, const(self.bk))
        visits = nkt
        if k.causal:
            # keys up to r0 + nr - 1 + (lkv - lq) are visible to some row of the tile
            last = b.add(b.add(r0, b.sub(nr, const(1))), self.shift)
            reach = b.sdiv(b.add(last, const(self.bk)), const(self.bk))  # floor((last + 1) / bk) rounded up
            reach = b.select(b.icmp_signed("<", last, const(0)), const(0), reach)
            visits = imin(b, reach, nkt)
        # this split's key tiles: [first, stop), ceil(visits / splits) of them (the last split fewer)
        per = _ceil_div(b, visits, self.splits)
        first = imin(b, b.mul(split, per), visits)
        stop = imin(b, b.add(first, per), visits)
        skipped = self._counter("skipped")
        b.store(const(0), skipped)
        with self._loop("ktile", first, stop) as j:
            c0 = b.mul(j, const(self.bk))
            nk = imin(b, const(self.bk), b.sub(self.lkv, c0))
            self._scores(r0, nr, c0, nk)
            skip = self._vote(b.icmp_signed(">", j, first), nr)
            if skip is None:
                self._accumulate(nr, c0, nk)
            else:
                with b.if_else(skip) as (then, otherwise):
                    with then:
                        b.store(b.add(b.load(skipped), const(1)), skipped)
                    with otherwise:
                        self._accumulate(nr, c0, nk)
        with b.if_else(b.icmp_signed("==", self.splits, const(1))) as (whole, part):
            with whole:
                self._finish(nr, out_rows)
                counts = self._counts_of(qt, lead_index)
                b.store(visits, counts)
                b.store(b.load(skipped), b.gep(counts, [self.num(k.counts.strides[-1])]))
            with part:
                self._write_partial(nr, unit, b.sub(stop, first), b.load(skipped))

    def _scores(self, r0, nr, c0, nk):
        """``S[:nr, :BKP]``: scaled logits with the mask added, -inf where no key is or causal hides one; ``tmax``."""
        k, b = self.k, self.b
        bkp = const(self.bkp)
        # the tile's keys rounded up to the register block: the columns computed (the rest of BKP is not)
        self.ncols = ncols = b.mul(_ceil_div(b, nk, const(self.block)), const(self.block))
        k_rs = self.num(k.k.strides[-2])
        with b.if_else(b.icmp_signed("<", nr, const(ROWS))) as (few, many):
            with few:  # fewer rows than a block (a decode step): one dot product per row and key, K read in place
                self._qk_dots(nr, c0, nk, k_rs)
            with many:
                self._pack_keys(c0, nk, k_rs)
                self._row_blocks("qk", nr, lambda rb, rows: self._qk_block(rb, rows, ncols))
        m_rs = self.num(k.mask.strides[-2]) if k.mask is not None else None
        m_cs = self.num(k.mask.strides[-1]) if k.mask is not None else None
        neg_inf = ir.Constant(F32, float("-inf"))
        with self._loop("row", const(0), nr) as r:
            srow = b.gep(self.s, [b.mul(r, bkp)])
            if k.mask is not None:
                mrow = b.gep(self.mask_rows, [b.add(b.mul(r, m_rs), b.mul(c0, m_cs))])
                with self._loop("mask.c", const(0), nk) as c:
                    cell = b.gep(srow, [c])
                    b.store(b.fadd(b.load(cell), b.load(b.gep(mrow, [b.mul(c, m_cs)]))), cell)
            hidden = nk
            if k.causal:
                # row r0 + r sees keys up to r0 + r + lkv - lq: in this tile, those below that - c0 + 1
                seen = b.sub(b.add(b.add(r, r0), self.shift), b.sub(c0, const(1)))
                hidden = imin(b, nk, b.select(b.icmp_signed("<", seen, const(0)), const(0), seen))
            with self._loop("hide.c", hidden, ncols) as c:
                b.store(neg_inf, b.gep(srow, [c]))
            tmax = self._row_reduce(srow, "max")
            b.store(tmax, b.gep(self.tmax, [r]))

    def _row_reduce(self, row, kind):
        """Max (NaN-ignoring) or sum of the row's computed columns: vector lanes, then across them."""
        b = self.b
        slot = self._vslot(f"red.{kind}")
        start = float("-inf") if kind == "max" else 0.0
        b.store(self._vconst(start), slot)
        with self._loop(f"red.{kind}", const(0), self.ncols, self.w) as c:
            x = self._vload(row, c)
            acc = b.load(slot)
            b.store(self._max(acc, x) if kind == "max" else b.fadd(acc, x), slot)
        lanes = self._lanes(b.load(slot))
        total = lanes[0]
        for x in lanes[1:]:
            total = self._max(total, x) if kind == "max" else b.fadd(total, x)
        return total

    def _vote(self, not_first, nr):
        """i1: skip this tile (every row's ``exp(tmax - m) < lambda``, and ``not_first``: not its split's first), or None (never)."""
        if self.lam is None:
            return None
        b = self.b
        flag = self._counter("vote")
        b.store(const(1), flag)
        with self._loop("vote.r", const(0), nr) as r:
            gap = b.fsub(b.load(b.gep(self.tmax, [r])), b.load(b.gep(self.m, [r])))
            small = b.fcmp_ordered("<", emit_math(b, "exp", [gap]), self.lam)
            b.store(b.select(small, b.load(flag), const(0)), flag)
        all_small = b.icmp_signed("!=", b.load(flag), const(0))
        return b.and_(b.and_(all_small, not_first), self.skip_on)

    def _accumulate(self, nr, c0, nk):
        """Fold the tile into ``m``, ``l`` and ``O`` (the v tile is read only here)."""
        k, b = self.k, self.b
        bkp = const(self.bkp)
        zero, neg_inf = ir.Constant(F32, 0.0), ir.Constant(F32, float("-inf"))
        with self._loop("acc.r", const(0), nr) as r:
            m_old = b.load(b.gep(self.m, [r]))
            m_new = self._max(m_old, b.load(b.gep(self.tmax, [r])))
            m_use = b.select(b.fcmp_ordered("==", m_new, neg_inf), zero, m_new)
            alpha = emit_math(b, "exp", [b.fsub(m_old, m_use)])
            srow = b.gep(self.s, [b.mul(r, bkp)])
            with self._loop("exp.c", const(0), self.ncols) as c:
                cell = b.gep(srow, [c])
                b.store(emit_exp_nonpositive(b, b.fsub(b.load(cell), m_use)), cell)
            lp = b.gep(self.l, [r])
            b.store(b.fadd(b.fmul(b.load(lp), alpha), self._row_reduce(srow, "sum")), lp)
            b.store(m_new, b.gep(self.m, [r]))
            orow = b.gep(self.o, [b.mul(r, self.dvp)])
            with self._loop("rescale.e", const(0), self.dvp) as e:
                cell = b.gep(orow, [e])
                b.store(b.fmul(b.load(cell), alpha), cell)
        # Vp[c][e] = v[c0 + c][e]
        v_rs = self.num(k.v.strides[-2])
        with self._loop("vpack.c", const(0), nk) as c:
            src = b.gep(self.v_rows, [b.mul(b.add(c0, c), v_rs)])
            dst = b.gep(self.vp, [b.mul(c, self.dvp)])
            with self._loop("vpack.e", const(0), self.dv) as e:
                b.store(b.load(b.gep(src, [e])), b.gep(dst, [e]))
        self._row_blocks("pv", nr, lambda rb, rows: self._pv_block(rb, rows, nk))

    def _row_blocks(self, name, nr, block):
        """``block(rb, ROWS)`` over the whole blocks of ``nr`` rows, then ``block(r, 1)`` for the rest (a decode step's one row)."""
        b = self.b
        whole = b.mul(b.sdiv(nr, const(ROWS)), const(ROWS))
        with self._loop(f"{name}.r", const(0), whole, ROWS) as rb:
            block(rb, ROWS)
        with self._loop(f"{name}.tail", whole, nr) as r:
            block(r, 1)

    def _qk_dots(self, nr, c0, nk, k_rs):
        """``S[r, c] = scale * q[r] . k[c0 + c]`` for ``r < nr``, ``c < nk``: vectors along d, then across lanes.

        Keys go :data:`KEYS` at a time, each with its own accumulator (independent
        FMA chains), then one at a time.  The columns past ``nk`` are left as
        they are (the caller hides them).
        """
        b = self.b
        q_rs = self.num(self.k.q.strides[-2])
        whole = b.mul(b.sdiv(self.d, const(self.w)), const(self.w))
        keys = b.mul(b.sdiv(nk, const(KEYS)), const(KEYS))
        scale = ir.Constant(F32, float(self.k.scale))
        with self._loop("dot.r", const(0), nr) as r:
            q_row = b.gep(self.q_rows, [b.mul(r, q_rs)])
            s_row = b.gep(self.s, [b.mul(r, const(self.bkp))])
            with self._loop("dot.c4", const(0), keys, KEYS) as c:
                self._dots(q_row, s_row, [b.add(c, const(i)) for i in range(KEYS)], c0, k_rs, whole, scale)
            with self._loop("dot.c", keys, nk) as c:
                self._dots(q_row, s_row, [c], c0, k_rs, whole, scale)

    def _dots(self, q_row, s_row, cols, c0, k_rs, whole, scale):
        """``S[r, c] = scale * q_row . k[c0 + c]`` for each ``c`` of ``cols``, one vector accumulator each."""
        b = self.b
        k_rows = [b.gep(self.k_rows, [b.mul(b.add(c0, c), k_rs)]) for c in cols]
        accs = [self._vslot(f"dot.acc{i}") for i in range(len(cols))]
        tails = [self._entry_slot(self.vslots, f"dot.tail{i}", F32) for i in range(len(cols))]
        for acc, tail in zip(accs, tails):
            b.store(self._vconst(0.0), acc)
            b.store(ir.Constant(F32, 0.0), tail)
        with self._loop(f"dot.d{len(cols)}", const(0), whole, self.w) as dd:
            qv = self._vload(q_row, dd)
            for acc, k_row in zip(accs, k_rows):
                b.store(self._fmuladd(qv, self._vload(k_row, dd), b.load(acc)), acc)
        with self._loop(f"dot.t{len(cols)}", whole, self.d) as dd:
            qs = b.load(b.gep(q_row, [dd]))
            for tail, k_row in zip(tails, k_rows):
                b.store(b.fadd(b.load(tail), b.fmul(qs, b.load(b.gep(k_row, [dd])))), tail)
        for c, acc, tail in zip(cols, accs, tails):
            total = b.load(tail)
            for x in self._lanes(b.load(acc)):
                total = b.fadd(total, x)
            b.store(b.fmul(total, scale), b.gep(s_row, [c]))

    def _pack_keys(self, c0, nk, k_rs):
        """``Kt[dd][c] = k[c0 + c][dd]``: 8 x 8 blocks transposed in registers, scalar copies at the edges."""
        b = self.b
        bkp = const(self.bkp)
        vec8 = ir.VectorType(F32, 8)
        keys8 = b.mul(b.sdiv(nk, const(8)), const(8))
        dims8 = b.mul(b.sdiv(self.d, const(8)), const(8))

        def scalar(c, dd):
            src = b.gep(self.k_rows, [b.add(b.mul(b.add(c0, c), k_rs), dd)])
            b.store(b.load(src), b.gep(self.kt, [b.add(b.mul(dd, bkp), c)]))

        with self._loop("pack.c8", const(0), keys8, 8) as c:
            rows = [b.gep(self.k_rows, [b.mul(b.add(c0, b.add(c, const(i))), k_rs)]) for i in range(8)]
            with self._loop("pack.d8", const(0), dims8, 8) as dd:
                block = [b.load(b.bitcast(b.gep(row, [dd]), vec8.as_pointer()), align=4) for row in rows]
                for j, column in enumerate(_transpose8(b, block)):
                    dst = b.gep(self.kt, [b.add(b.mul(b.add(dd, const(j)), bkp), c)])
                    b.store(column, b.bitcast(dst, vec8.as_pointer()), align=4)
            with self._loop("pack.dt", dims8, self.d) as dd:
                for i in range(8):
                    scalar(b.add(c, const(i)), dd)
        with self._loop("pack.ct", keys8, nk) as c:
            with self._loop("pack.d", const(0), self.d) as dd:
                scalar(c, dd)

    def _qk_block(self, rb, rows, ncols):
        """``S[rb:rb + rows, :ncols] = (q @ Kt) * scale``: rows x VECTORS vector accumulators."""
        k, b = self.k, self.b
        bkp = const(self.bkp)
        q_rs = self.num(k.q.strides[-2])
        scale = self._vconst(k.scale)
        q_rows = [b.gep(self.q_rows, [b.mul(b.add(rb, const(i)), q_rs)]) for i in range(rows)]
        with self._loop(f"qk{rows}.c", const(0), ncols, self.block) as cb:
            slots = [[self._vslot(f"qkacc{i}_{v}") for v in range(VECTORS)] for i in range(rows)]
            for row in slots:
                for slot in row:
                    b.store(self._vconst(0.0), slot)
            with self._loop(f"qk{rows}.d", const(0), self.d) as dd:
                kvs = [self._vload(self.kt, b.add(b.mul(dd, bkp), b.add(cb, const(v * self.w)))) for v in range(VECTORS)]
                for i in range(rows):
                    qv = splat(b, b.load(b.gep(q_rows[i], [dd])), self.w)
                    for v in range(VECTORS):
                        b.store(self._fmuladd(qv, kvs[v], b.load(slots[i][v])), slots[i][v])
            for i in range(rows):
                base = b.add(b.mul(b.add(rb, const(i)), bkp), cb)
                for v in range(VECTORS):
                    self._vstore(b.fmul(b.load(slots[i][v]), scale), self.s, b.add(base, const(v * self.w)))

    def _pv_block(self, rb, rows, nk):
        """``O[rb:rb + rows] += P @ Vp`` over the tile's ``nk`` keys: rows x VECTORS vector accumulators."""
        b = self.b
        bkp = const(self.bkp)
        with self._loop(f"pv{rows}.e", const(0), self.dvp, self.block) as eb:
            slots = [[self._vslot(f"pvacc{i}_{v}") for v in range(VECTORS)] for i in range(rows)]
            for i in range(rows):
                base = b.add(b.mul(b.add(rb, const(i)), self.dvp), eb)
                for v in range(VECTORS):
                    b.store(self._vload(self.o, b.add(base, const(v * self.w))), slots[i][v])
            with self._loop(f"pv{rows}.c", const(0), nk) as c:
                vrow = b.add(b.mul(c, self.dvp), eb)
                vvs = [self._vload(self.vp, b.add(vrow, const(v * self.w))) for v in range(VECTORS)]
                for i in range(rows):
                    p = splat(b, b.load(b.gep(self.s, [b.add(b.mul(b.add(rb, const(i)), bkp), c)])), self.w)
                    for v in range(VECTORS):
                        b.store(self._fmuladd(p, vvs[v], b.load(slots[i][v])), slots[i][v])
            for i in range(rows):
                base = b.add(b.mul(b.add(rb, const(i)), self.dvp), eb)
                for v in range(VECTORS):
                    self._vstore(b.load(slots[i][v]), self.o, b.add(base, const(v * self.w)))

    def _finish(self, nr, out_rows):
        """``out = O / l`` for the tile's rows (0 when there are no keys at all)."""
        k, b = self.k, self.b
        o_rs = self.num(k.out.strides[-2])
        no_keys = b.icmp_signed("==", self.lkv, const(0))
        with self._loop("out.r", const(0), nr) as r:
            l = b.load(b.gep(self.l, [r]))
            orow = b.gep(self.o, [b.mul(r, self.dvp)])
            dst = b.gep(out_rows, [b.mul(r, o_rs)])
            with self._loop("out.e", const(0), self.dv) as e:
                value = b.fdiv(b.load(b.gep(orow, [e])), l)
                b.store(b.select(no_keys, ir.Constant(F32, 0.0), value), b.gep(dst, [e]))

    def _write_partial(self, nr, unit, visited, skipped):
        """This split's rows ``O[0:dv], m, l`` and its ``(visited, skipped)`` counts, at work unit ``unit`` of ``partial``."""
        k, b = self.k, self.b
        unit_stride, row_stride = (self.num(x) for x in k.partial.strides)
        base = b.gep(self.ptr["partial"], [b.add(self.num(k.partial.offset), b.mul(unit, unit_stride))])
        with self._loop("part.r", const(0), nr) as r:
            orow = b.gep(self.o, [b.mul(r, self.dvp)])
            dst = b.gep(base, [b.mul(r, row_stride)])
            with self._loop("part.e", const(0), self.dv) as e:
                b.store(b.load(b.gep(orow, [e])), b.gep(dst, [e]))
            b.store(b.load(b.gep(self.m, [r])), b.gep(dst, [self.dv]))
            b.store(b.load(b.gep(self.l, [r])), b.gep(dst, [b.add(self.dv, const(1))]))
        tail = b.gep(base, [b.sub(unit_stride, const(2))])
        b.store(b.sitofp(visited, F32), tail)
        b.store(b.sitofp(skipped, F32), b.gep(tail, [const(1)]))
