"""LLVM IR for :class:`~symexpr.kernel.ir.QGemmKernel`: an exact int8 GEMM with a fused dequantizing epilogue.

The kernel multiplies unsigned activation bytes ``u = x ^ 0x80`` (``x + 128``)
by the signed packed weight (:mod:`symexpr.kernel.int8_pack`) and subtracts
the compensation ``128 * colsum(w)`` from each int32 accumulator.  The 4-way
byte dot product is the only part that differs between the variants
(:func:`choose_variant`), chosen from the *target's* features when the code is
generated:

``avx512-vnni``
    ``llvm.x86.avx512.vpdpbusd.512`` on zmm registers (16 int32 lanes).
``avx-vnni``
    ``llvm.x86.avx512.vpdpbusd.256`` with AVX-VNNI (``{vex} vpdpbusd``), or
    with AVX512-VNNI + AVX512-VL, on ymm registers.
``avx2-maddubs``
    ``llvm.x86.avx2.pmadd.ub.sw`` then ``llvm.x86.avx2.pmadd.wd`` by ones, for
    7-bit weights only: ``vpmaddubsw`` saturates its int16 pair sums, and
    ``255 * 63 * 2 = 32130`` cannot.
``avx2-madd16``
    8-bit weights on AVX2: activations widened to 16 bits when they are packed,
    weights sign-extended in registers, ``llvm.x86.avx2.pmadd.wd`` (exact:
    ``|u * w| <= 255 * 128``), each column's two pair sums added at the end.
``generic``
    zero/sign extension and int32 multiply-adds, which LLVM vectorises with
    what the target has (any x86-64; AVX2 with 8-bit weights).

Never emit an intrinsic the target lacks: LLVM aborts the process ("Cannot
select").  All variants compute the same int32 sums, modulo 2^32 as NumPy's
int32 matmul does, so results are identical.

Work split.  The function is called with the thread's index and the thread
count and computes its own share (:func:`_share`): whole row tiles when there
are at least :data:`ROW_TILES_PER_THREAD` of them per thread, otherwise (small
batches) every row and an even share of the column tiles.

Loop nest of one thread (rows ``[start, stop)``, column tiles ``[clo, chi)``)::

    for each K block of KC groups of 4:              (literal count; K is a literal)
      for each N block of NC columns:
        for each block of MC rows (a multiple of MR):
          pack the block's activation bytes of this K block, xor 0x80 (stack buffer, MC x 4 KC)
          for each column block of NB = NV * lanes columns in the N block:
            for each tile of MR rows in the row block:
              MR x NV vector accumulators <- 0, or the int32 partial sums kept in ``out``
              for each group of 4 in the K block:
                broadcast 4 activation bytes per row; load NV weight vectors; MR x NV dot products
              last K block: epilogue to ``out``; else: partial sums to ``out`` (as int32 bits)

The weight panel of a column block (:mod:`~symexpr.kernel.int8_pack`: 16
columns, 64 bytes per group of 4, contiguous down K) is one sequential stream
of ``64 * KC`` bytes per K block, which the row tiles of a row block read in
turn (from L1 for small KC, else L2), with a software prefetch ``prefetch``
bytes ahead; the row block's packed activations (``MC * 4 KC`` bytes, on the
stack) stay in L2 while every column block of the N block reuses them.  A
large KC (1024 groups: K up to 4096 in one block) avoids most round trips of
the int32 partial sums through ``out``.  The register tiles fit the 16 ymm
registers of AVX2 (MR x NV accumulators, NV weights, the broadcast, the ones
vector of ``vpmaddwd``, one temporary): the inner loop's assembly has no
spills (the tests check it for every variant).

The tile edges (rows past ``stop``, columns past N) are computed on the packed
buffers (stale activation rows, zero weight padding) and never stored: the
accumulators go through a small stack tile from which the epilogue stores the
valid part.  Columns past N are neither read from ``sw``/``bias`` nor written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from llvmlite import ir

from symexpr.backends.llvm import scalar_ops as so
from symexpr.backends.llvm.irloop import CountedLoop
from symexpr.backends.llvm.irloop import aligned_alloca as _aligned_alloca
from symexpr.backends.llvm.irloop import const as _c
from symexpr.backends.llvm.irloop import declare as _declare
from symexpr.backends.llvm.irloop import imin as _min
from symexpr.backends.llvm.irloop import splat as _broadcast
from symexpr.backends.llvm.scalar_ops import F32, I8, I16, I32, I64
from symexpr.kernel.int8_pack import ACTIVATION_SHIFT, N_ALIGN, PANEL



@dataclass(frozen=True)
class Variant:
    """One way to compute the kernel: its dot product and register blocking.

    ``lanes`` int32 lanes per vector, ``rows`` (MR) x ``vectors`` (NV) vector
    accumulators; ``kc`` groups of 4 per K block; ``nc`` columns per N block;
    ``mc`` rows per packed activation block (rounded down to a multiple of MR,
    at least MR, and capped so the block takes at most :data:`APACK_BYTES`);
    ``prefetch``: bytes ahead in each weight panel to prefetch (0: none).
    """

    name: str
    lanes: int
    rows: int
    vectors: int
    kc: int = 256
    nc: int = 256
    mc: int = 0
    prefetch: int = 0

    @property
    def row_block(self) -> int:
        """Rows per packed activation block (MC, a multiple of MR)."""
        return max(self.rows, self.mc // self.rows * self.rows)

    @property
    def cols(self) -> int:
        """Columns per micro-tile (NB)."""
        return self.lanes * self.vectors


#: The variants, by name.  The AVX2 ones' tiles and blocking were measured on an AMD Zen 3 (docs/llvm-backend.md);
#: the VNNI ones follow the same structure, blocked by analogy (not yet run on VNNI hardware).
VARIANTS = {
    "avx512-vnni": Variant("avx512-vnni", 16, 4, 4, kc=512, nc=256, mc=24, prefetch=512),
    "avx-vnni": Variant("avx-vnni", 8, 6, 2, kc=1024, nc=1024, mc=12, prefetch=512),
    "avx2-maddubs": Variant("avx2-maddubs", 8, 4, 2, kc=1024, nc=1024, mc=16, prefetch=512),
    "avx2-madd16": Variant("avx2-madd16", 8, 6, 1, kc=1024, nc=1024, mc=6, prefetch=512),
    "generic-avx2": Variant("generic", 8, 4, 2, kc=1024, nc=256, mc=4),
    "generic": Variant("generic", 4, 4, 2, kc=1024, nc=256, mc=4),
}
#: Most bytes of packed activations (MC rows x KC groups of 4) a thread keeps on its stack.
APACK_BYTES = 1 << 17


def choose_variant(cpu_target, weight_bits: int) -> Variant:
    """The fastest exact variant ``cpu_target`` can run for weights of ``weight_bits`` bits.

    Parameters
    ----------
    cpu_target : CPUTarget
        The target code is generated for (its features, never the host's, decide).
    weight_bits : {8, 7}
        The weight range the kernel's ``QLinear`` declares.

    Returns
    -------
    Variant
    """
    has = cpu_target.has
    if has("avx512vnni") and has("avx512f") and has("avx512bw"):
        return VARIANTS["avx512-vnni"]
    if has("avxvnni") or (has("avx512vnni") and has("avx512vl")):
        return VARIANTS["avx-vnni"]
    if has("avx2"):
        return VARIANTS["avx2-maddubs" if weight_bits == 7 else "avx2-madd16"]
    return VARIANTS["generic"]


#: A thread's share is whole row tiles while there are at least this many row tiles per thread;
#: with fewer rows (small batches) the threads split the column tiles instead.
ROW_TILES_PER_THREAD = 4


def _share(b, var, m, ncb, tid, nthreads):
    """Thread ``tid`` of ``nthreads``'s rows ``[lo, hi)`` and column tiles ``[clo, chi)``.

    Rows are split in whole row tiles when ``m`` has at least
    :data:`ROW_TILES_PER_THREAD` tiles per thread (or the columns have fewer tiles
    than threads); otherwise every thread takes all rows and an even share of the
    column tiles.
    """
    def split(total, unit):
        units = b.sdiv(b.add(total, _c(unit - 1)), _c(unit))
        chunk = b.mul(b.sdiv(b.add(units, b.sub(nthreads, _c(1))), nthreads), _c(unit))
        lo = _min(b, b.mul(tid, chunk), total)
        return lo, _min(b, b.add(lo, chunk), total)

    row_tiles = b.sdiv(b.add(m, _c(var.rows - 1)), _c(var.rows))
    by_rows = b.or_(b.icmp_signed(">=", row_tiles, b.mul(nthreads, _c(ROW_TILES_PER_THREAD))),
                    b.icmp_signed("<", _c(ncb), nthreads))
    lo, hi = split(m, var.rows)
    clo, chi = split(_c(ncb), 1)
    zero = _c(0)
    return (b.select(by_rows, lo, zero), b.select(by_rows, hi, m),
            b.select(by_rows, zero, clo), b.select(by_rows, _c(ncb), chi))


# -- the 4-way byte dot products ---------------------------------------------------------------
def _dot_vnni(b, acc, a, w, lanes):
    vec = ir.VectorType(I32, lanes)
    fn = _declare(b.module, f"llvm.x86.avx512.vpdpbusd.{lanes * 32}", vec, [vec, vec, vec])
    return b.call(fn, [acc, a, w])


def _dot_maddubs(b, acc, a, w, lanes):
    bytes_ = ir.VectorType(I8, lanes * 4)
    shorts = ir.VectorType(I16, lanes * 2)
    ints = ir.VectorType(I32, lanes)
    maddubs = _declare(b.module, "llvm.x86.avx2.pmadd.ub.sw", shorts, [bytes_, bytes_])
    maddwd = _declare(b.module, "llvm.x86.avx2.pmadd.wd", ints, [shorts, shorts])
    pairs = b.call(maddubs, [b.bitcast(a, bytes_), b.bitcast(w, bytes_)])
    quads = b.call(maddwd, [pairs, ir.Constant(shorts, [1] * (lanes * 2))])
    return b.add(acc, quads)


def _dot_generic(b, acc, a, w, lanes):
    """Pair sums: ``acc`` has 2 * lanes int32 lanes, lane ``2j + h`` summing products ``2h`` and ``2h + 1`` of column j.

    Written so that LLVM matches ``pmaddwd`` (x86-64's 16-bit multiply-add of pairs,
    exact here: ``|u * w| <= 255 * 128``) where the target has it; :func:`_finish_generic`
    adds each column's two lanes at the end.
    """
    shorts = ir.VectorType(I16, lanes * 4)
    pairs = ir.VectorType(I32, lanes * 2)
    bytes_ = ir.VectorType(I8, lanes * 4)
    a16 = b.zext(b.bitcast(a, bytes_), shorts)
    w16 = b.sext(b.bitcast(w, bytes_), shorts)
    undef = ir.Constant(shorts, None)
    even = ir.Constant(ir.VectorType(I32, lanes * 2), [2 * j for j in range(lanes * 2)])
    odd = ir.Constant(ir.VectorType(I32, lanes * 2), [2 * j + 1 for j in range(lanes * 2)])

    def half(mask):
        x = b.sext(b.shuffle_vector(a16, undef, mask), pairs)
        y = b.sext(b.shuffle_vector(w16, undef, mask), pairs)
        return b.mul(x, y)

    return b.add(acc, b.add(half(even), half(odd)))


def _dot_madd16(b, acc, a, w, lanes):
    """Pair sums like :func:`_dot_generic`; ``a`` is 4 activations as 16-bit values, broadcast (``<lanes x i32>``
    holding ``lanes / 2`` copies of the 64-bit quad)."""
    shorts = ir.VectorType(I16, lanes * 2)
    bytes_ = ir.VectorType(I8, lanes * 4)
    ints = ir.VectorType(I32, lanes)
    maddwd = _declare(b.module, "llvm.x86.avx2.pmadd.wd", ints, [shorts, shorts])
    wb = b.bitcast(w, bytes_)
    undef = ir.Constant(bytes_, None)
    a16 = b.bitcast(a, shorts)
    parts = []
    for h in range(2):
        half = b.shuffle_vector(wb, undef, ir.Constant(ir.VectorType(I32, lanes * 2), list(range(h * lanes * 2, (h + 1) * lanes * 2))))
        parts.append(b.call(maddwd, [a16, b.sext(half, shorts)]))
    both = b.shuffle_vector(parts[0], parts[1], ir.Constant(ir.VectorType(I32, lanes * 2), list(range(lanes * 2))))
    return b.add(acc, both)


def _finish_generic(b, acc, lanes):
    undef = ir.Constant(acc.type, None)
    even = ir.Constant(ir.VectorType(I32, lanes), [2 * j for j in range(lanes)])
    odd = ir.Constant(ir.VectorType(I32, lanes), [2 * j + 1 for j in range(lanes)])
    return b.add(b.shuffle_vector(acc, undef, even), b.shuffle_vector(acc, undef, odd))


_DOTS = {
    "avx512-vnni": _dot_vnni,
    "avx-vnni": _dot_vnni,
    "avx2-maddubs": _dot_maddubs,
    "avx2-madd16": _dot_madd16,
    "generic": _dot_generic,
}
#: Variants whose accumulators hold two pair sums per column (see :func:`_dot_generic`).
_PAIRED = ("avx2-madd16", "generic")


# -- the kernel function -----------------------------------------------------------------------------
def qgemm_function(gen, kernel, buffers):
    """Emit the function of ``kernel`` in ``gen``'s module: ``(buffers..., params, tid, nthreads)``.

    The function computes thread ``tid``'s share of the product (see :func:`_share`):
    the caller passes the thread's index and the thread count, not a range.

    Parameters
    ----------
    gen : ModuleGenerator
        The module being built (its ``_kernel_function`` makes the function and
        loads the params, its ``num`` reads a size, ``module.cpu_target`` picks the variant).
    kernel : QGemmKernel
        The step, from the plan template.
    buffers : list of int
        The kernel's buffers, in the order of the function's pointer arguments.

    Returns
    -------
    llvmlite.ir.Function
    """
    var = choose_variant(gen.module.cpu_target, kernel.weight_bits)
    if N_ALIGN % var.cols:
        raise AssertionError(f"symexpr bug: {var.cols} columns per tile do not divide the packing's {N_ALIGN}")
    fn, b = gen._kernel_function(kernel, buffers)
    fn.attributes.add("nounwind")
    args = {buf: arg for buf, arg in zip(buffers, fn.args)}
    tid, nthreads = fn.args[len(buffers) + 1], fn.args[len(buffers) + 2]
    _Emitter(gen, kernel, var, b, args, tid, nthreads).emit()
    return fn


class _Emitter:
    def __init__(self, gen, kernel, var, b, args, tid, nthreads):
        self.gen, self.k, self.var, self.b = gen, kernel, var, b
        self.num = gen.num
        self.dot = _DOTS[var.name]
        self.vec = ir.VectorType(I32, var.lanes)
        K, N = int(kernel.k), int(kernel.n)
        self.groups = -(-K // 4)
        self.kc = min(var.kc, self.groups)
        # activations per packed row; the madd16 variant packs them as 16-bit values
        self.kcb = self.kc * 4
        self.a_ty = I16 if var.name == "avx2-madd16" else I8
        self.n_kblocks = -(-self.groups // self.kc)
        self.ncb = -(-N // var.cols)  # column tiles
        self.nc_tiles = max(1, var.nc // var.cols)  # column tiles per N block
        self.start, self.stop, self.col_lo, self.col_hi = _share(b, var, self.num(kernel.m), self.ncb, tid, nthreads)
        ptr = lambda access, ty: b.bitcast(args[access.buffer], ty.as_pointer())  # noqa: E731
        self.x = b.gep(ptr(kernel.x, I8), [self.num(kernel.x.offset)])
        self.w = ptr(kernel.w, I8)
        self.comp = ptr(kernel.comp, I32)
        scaled = kernel.epilogue == "scaled"
        out_ty = F32 if scaled else I32
        self.out = b.gep(ptr(kernel.out, out_ty), [self.num(kernel.out.offset)])
        self.out_bits = b.bitcast(self.out, I32.as_pointer())  # partial sums between K blocks
        self.sx = self.sw = self.bias = None
        if scaled:
            self.sx = b.gep(ptr(kernel.sx, F32), [self.num(kernel.sx.offset)])
            self.sw = b.gep(ptr(kernel.sw, F32), [self.num(kernel.sw.offset)])
            if kernel.bias is not None:
                self.bias = b.gep(ptr(kernel.bias, F32), [self.num(kernel.bias.offset)])
        # the post program's operands: typed pointers at their offsets
        self.post_dtypes = [gen.plan.buffers[a.buffer].dtype for a in kernel.post_loads]
        self.post_ptrs = [b.gep(ptr(a, so.memory_type(dt)), [self.num(a.offset)])
                          for a, dt in zip(kernel.post_loads, self.post_dtypes)]
        self.x_rs = self.num(kernel.x.strides[0])
        self.out_rs = self.num(kernel.out.strides[0])
        # stack buffers: the packed activation tile and the accumulator tile (zeroed once: always defined)
        mr, nb, mc = var.rows, var.cols, var.row_block
        while mc > mr and mc * self.kcb * (self.a_ty.width // 8) > APACK_BYTES:
            mc -= mr
        self.mc = mc
        apack = _aligned_alloca(b, ir.ArrayType(self.a_ty, mc * self.kcb), "apack")
        self.apack = b.bitcast(apack, self.a_ty.as_pointer())
        self.tile = b.bitcast(_aligned_alloca(b, ir.ArrayType(I32, mr * nb), "tile"), I32.as_pointer())
        self._zero(self.apack, mc * self.kcb, self.a_ty)
        self._zero(self.tile, mr * nb, I32)
        # the generic variant accumulates pair sums, two lanes per column (see _dot_generic)
        self.acc_ty = ir.VectorType(I32, var.lanes * (2 if var.name in _PAIRED else 1))
        self.accs = [[b.alloca(self.acc_ty, name=f"acc{r}_{v}") for v in range(var.vectors)] for r in range(mr)]
        self.counters = {name: b.alloca(I64, name=name) for name in ("kb", "jc", "i0", "jr", "ir", "g", "r", "t", "j")}

    def _zero(self, ptr, count, ty):
        b = self.b
        with CountedLoop(b, b.alloca(I64), _c(0), _c(count), name="zero") as i:
            b.store(ir.Constant(ty, 0), b.gep(ptr, [i]), align=ty.width // 8)

    # -- the loop nest -----------------------------------------------------------------------
    def emit(self):
        b, var, c = self.b, self.var, self.counters
        with CountedLoop(b, c["kb"], _c(0), _c(self.n_kblocks), name="kblock") as kb:
            g0 = b.mul(kb, _c(self.kc))
            glen = _min(b, _c(self.kc), b.sub(_c(self.groups), g0))
            kbytes = _min(b, _c(self.kcb), b.sub(_c(self.k.k), b.mul(g0, _c(4))))
            first = b.icmp_signed("==", kb, _c(0))
            last = b.icmp_signed("==", kb, _c(self.n_kblocks - 1))
            with CountedLoop(b, c["jc"], self.col_lo, self.col_hi, self.nc_tiles, name="nblock") as jc:
                jc_end = _min(b, b.add(jc, _c(self.nc_tiles)), self.col_hi)
                with CountedLoop(b, c["i0"], self.start, self.stop, self.mc, name="rowblock") as i0:
                    mrows = _min(b, _c(self.mc), b.sub(self.stop, i0))
                    self._pack_rows(i0, mrows, g0, kbytes)
                    with CountedLoop(b, c["jr"], jc, jc_end, name="coltile") as jr:
                        col0 = b.mul(jr, _c(var.cols))
                        cols = _min(b, _c(var.cols), b.sub(_c(self.k.n), col0))
                        with CountedLoop(b, c["ir"], _c(0), mrows, var.rows, name="rowtile") as ir_:
                            row0 = b.add(i0, ir_)
                            rows = _min(b, _c(var.rows), b.sub(mrows, ir_))
                            self._init_accs(first, row0, rows, col0, cols)
                            self._micro(g0, glen, col0, ir_)
                            self._store_accs()
                            with b.if_else(last) as (then, otherwise):
                                with then:
                                    self._epilogue(row0, rows, col0, cols)
                                with otherwise:
                                    self._copy_tile(row0, rows, col0, cols, to_out=True)
        b.ret_void()

    def _pack_rows(self, i0, rows, g0, kbytes):
        """``apack[r, t] = x[i0 + r, 4 * g0 + t] ^ 0x80`` for the tile's rows and this K block's bytes."""
        b, c = self.b, self.counters
        with CountedLoop(b, c["r"], _c(0), rows, name="pack.r") as r:
            src = b.gep(self.x, [b.add(b.mul(b.add(i0, r), self.x_rs), b.mul(g0, _c(4)))])
            dst = b.gep(self.apack, [b.mul(r, _c(self.kcb))])
            with CountedLoop(b, c["t"], _c(0), kbytes, name="pack.t") as t:
                byte = b.xor(b.load(b.gep(src, [t]), align=1), _c(ACTIVATION_SHIFT, I8))
                if self.a_ty != I8:
                    byte = b.zext(byte, self.a_ty)
                b.store(byte, b.gep(dst, [t]), align=self.a_ty.width // 8)

    def _init_accs(self, first, i0, rows, col0, cols):
        b = self.b
        if self.n_kblocks > 1:
            with b.if_then(b.not_(first)):
                self._copy_tile(i0, rows, col0, cols, to_out=False)
        zero = ir.Constant(self.acc_ty, [0] * self.acc_ty.count)
        for r, row in enumerate(self.accs):
            for v, slot in enumerate(row):
                if self.n_kblocks > 1:
                    loaded = b.load(self._tile_vec(r, v), align=self.var.lanes * 4)
                    if self.acc_ty != self.vec:  # the partial sum goes in one lane of each pair
                        loaded = b.shuffle_vector(loaded, ir.Constant(self.vec, [0] * self.var.lanes), ir.Constant(
                            ir.VectorType(I32, self.acc_ty.count), [j // 2 if j % 2 == 0 else self.var.lanes for j in range(self.acc_ty.count)]))
                    b.store(b.select(first, zero, loaded), slot)
                else:
                    b.store(zero, slot)

    def _tile_vec(self, r, v):
        offset = r * self.var.cols + v * self.var.lanes
        return self.b.bitcast(self.b.gep(self.tile, [_c(offset)]), self.vec.as_pointer())

    def _store_accs(self):
        b = self.b
        for r, row in enumerate(self.accs):
            for v, slot in enumerate(row):
                acc = b.load(slot)
                if self.acc_ty != self.vec:
                    acc = _finish_generic(b, acc, self.var.lanes)
                b.store(acc, self._tile_vec(r, v), align=self.var.lanes * 4)

    def _micro(self, g0, glen, col0, row_in_block):
        """The register-blocked inner loop over this K block's groups of 4."""
        b, var = self.b, self.var
        group_bytes = PANEL * 4
        panel_bytes = self.groups * group_bytes
        # vector v of the tile: columns col0 + v * lanes .. in panel (col0 + v * lanes) / PANEL
        wbases = []
        for v in range(var.vectors):
            col = b.add(col0, _c(v * var.lanes))
            at = b.add(b.mul(b.udiv(col, _c(PANEL)), _c(panel_bytes)), b.mul(b.urem(col, _c(PANEL)), _c(4)))
            wbases.append(b.gep(self.w, [b.add(at, b.mul(g0, _c(group_bytes)))]))
        abase = b.gep(self.apack, [b.mul(row_in_block, _c(self.kcb))])
        with CountedLoop(b, self.counters["g"], _c(0), glen, name="k4") as g:
            step = b.mul(g, _c(group_bytes))
            if var.prefetch:
                for v in range(0, var.vectors, max(1, PANEL // var.lanes)):
                    self._prefetch(b.gep(wbases[v], [b.add(step, _c(var.prefetch))]))
            weights = [
                b.load(b.bitcast(b.gep(wbases[v], [step]), self.vec.as_pointer()), align=1)
                for v in range(var.vectors)
            ]
            for r in range(var.rows):
                quad_ty = ir.IntType(self.a_ty.width * 4)
                at = b.gep(abase, [b.add(_c(r * self.kcb), b.mul(g, _c(4)))])
                quad = b.load(b.bitcast(at, quad_ty.as_pointer()), align=quad_ty.width // 8)
                a = b.bitcast(_broadcast(b, quad, var.lanes * 32 // quad_ty.width), self.vec)
                for v in range(var.vectors):
                    slot = self.accs[r][v]
                    b.store(self.dot(b, b.load(slot), a, weights[v], var.lanes), slot)

    def _prefetch(self, ptr):
        b = self.b
        fn = _declare(b.module, "llvm.prefetch.p0", ir.VoidType(), [ir.PointerType(I8), I32, I32, I32])
        b.call(fn, [b.bitcast(ptr, ir.PointerType(I8)), _c(0, I32), _c(3, I32), _c(1, I32)])

    def _copy_tile(self, i0, rows, col0, cols, to_out):
        """Partial sums between K blocks: the valid part of the tile to ``out`` (int32 bits) or back."""
        b, c = self.b, self.counters
        with CountedLoop(b, c["r"], _c(0), rows, name="part.r") as r:
            out_row = b.gep(self.out_bits, [b.add(b.mul(b.add(i0, r), self.out_rs), col0)])
            tile_row = b.gep(self.tile, [b.mul(r, _c(self.var.cols))])
            with CountedLoop(b, c["j"], _c(0), cols, name="part.j") as j:
                src, dst = (b.gep(tile_row, [j]), b.gep(out_row, [j]))
                if not to_out:
                    src, dst = dst, src
                b.store(b.load(src, align=4), dst, align=4)

    def _epilogue(self, i0, rows, col0, cols):
        """``out = acc - comp`` (int32), or ``float32(acc - comp) * sx * sw (+ bias)`` in that order, no FMA."""
        b, c, kernel = self.b, self.counters, self.k
        with CountedLoop(b, c["r"], _c(0), rows, name="epi.r") as r:
            row = b.add(i0, r)
            out_row = b.gep(self.out, [b.add(b.mul(row, self.out_rs), col0)])
            tile_row = b.gep(self.tile, [b.mul(r, _c(self.var.cols))])
            if self.sx is not None:
                sx_stride = kernel.sx.strides[0]
                sx = b.load(self.sx if sx_stride == 0 else b.gep(self.sx, [b.mul(row, self.num(sx_stride))]), align=4)
            with CountedLoop(b, c["j"], _c(0), cols, name="epi.j") as j:
                col = b.add(col0, j)
                acc = b.sub(b.load(b.gep(tile_row, [j]), align=4), b.load(b.gep(self.comp, [col]), align=4))
                if self.sx is None:
                    b.store(acc, b.gep(out_row, [j]), align=4)
                else:
                    y = b.fmul(b.sitofp(acc, F32), sx)
                    y = b.fmul(y, self._column(self.sw, kernel.sw, col))
                    if self.bias is not None:
                        y = b.fadd(y, self._column(self.bias, kernel.bias, col))
                    if kernel.post:
                        y = self._post(y, row, col)
                    b.store(y, b.gep(out_row, [j]), align=4)

    def _post(self, y, row, col):
        """The kernel's ``post`` program on the value ``y`` of element ``(row, col)``."""
        b, kernel = self.b, self.k
        values = {("load", 0): (y, "float32")}
        for k, (access, base) in enumerate(zip(kernel.post_loads, self.post_ptrs), 1):
            dtype = self.post_dtypes[k - 1]
            index = b.add(b.mul(row, self.num(access.strides[0])), b.mul(col, self.num(access.strides[1])))
            raw = b.load(b.gep(base, [index]), align=np.dtype(dtype).itemsize)
            values[("load", k)] = (so.from_memory(b, raw, dtype), dtype)

        def ref(r):
            if r[0] == "const":
                return so.constant(r[1], r[2]), r[2]
            return values[r]

        so.emit_program(b, kernel.post, values, ref)
        return ref(kernel.post_result)[0]

    def _column(self, base, access, col):
        b = self.b
        stride = access.strides[0]
        if stride == 0:
            return b.load(base, align=4)
        if stride == 1:
            return b.load(b.gep(base, [col]), align=4)
        return b.load(b.gep(base, [b.mul(col, self.num(stride))]), align=4)
