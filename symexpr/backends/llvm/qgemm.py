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

Loop nest of one thread (rows ``[start, stop)``)::

    for each K block of KC groups of 4:              (literal count; K is a literal)
      for each N block of NC columns:
        for each tile of MR rows:
          pack the tile's activation bytes of this K block, xor 0x80 (stack buffer)
          for each column block of NB = NV * lanes columns in the N block:
            MR x NV vector accumulators <- 0, or the int32 partial sums kept in ``out``
            for each group of 4 in the K block:
              broadcast 4 activation bytes per row; load NV weight vectors; MR x NV dot products
            last K block: epilogue to ``out``; else: partial sums to ``out`` (as int32 bits)

The tile edges (rows past ``stop``, columns past N) are computed on the packed
buffers (stale activation rows, zero weight padding) and never stored: the
accumulators go through a small stack tile from which the epilogue stores the
valid part.  Columns past N are neither read from ``sw``/``bias`` nor written.
"""

from __future__ import annotations

from dataclasses import dataclass

from llvmlite import ir

from symexpr.backends.llvm import scalar_ops as so
from symexpr.backends.llvm.irloop import CountedLoop
from symexpr.backends.llvm.scalar_ops import F32, I1, I8, I16, I32, I64
from symexpr.kernel.int8_pack import ACTIVATION_SHIFT, N_ALIGN



@dataclass(frozen=True)
class Variant:
    """One way to compute the kernel: its dot product and register blocking.

    ``lanes`` int32 lanes per vector, ``rows`` (MR) x ``vectors`` (NV) vector
    accumulators; ``kc`` groups of 4 per K block; ``nc`` columns per N block.
    """

    name: str
    lanes: int
    rows: int
    vectors: int
    kc: int = 256
    nc: int = 256

    @property
    def cols(self) -> int:
        """Columns per micro-tile (NB)."""
        return self.lanes * self.vectors


#: The variants, by name (tile shapes tuned on the machines the docs name).
VARIANTS = {
    "avx512-vnni": Variant("avx512-vnni", 16, 4, 4, kc=256, nc=256),
    "avx-vnni": Variant("avx-vnni", 8, 6, 2, kc=256, nc=256),
    "avx2-maddubs": Variant("avx2-maddubs", 8, 4, 2, kc=256, nc=256),
    "avx2-madd16": Variant("avx2-madd16", 8, 6, 1, kc=256, nc=256),
    "generic-avx2": Variant("generic", 8, 4, 2, kc=256, nc=256),
    "generic": Variant("generic", 4, 4, 2, kc=256, nc=256),
}


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


def rows_per_tile(cpu_target, kernel) -> int:
    """MR of the variant generated for ``kernel``: threads split the rows in multiples of it."""
    return choose_variant(cpu_target, kernel.weight_bits).rows


# -- small IR helpers ------------------------------------------------------------------------
def _c(value, ty=I64) -> ir.Constant:
    return ir.Constant(ty, int(value))


def _min(b, x, y):
    return b.select(b.icmp_signed("<", x, y), x, y)


def _declare(module, name, ret, args):
    fn = module.globals.get(name)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(ret, args), name)
    return fn


def _aligned_alloca(b, ty, name):
    slot = b.alloca(ty, name=name)
    slot.align = 64
    return slot


def _broadcast(b, scalar, lanes):
    vec = b.insert_element(ir.Constant(ir.VectorType(scalar.type, lanes), None), scalar, _c(0, I32))
    return b.shuffle_vector(vec, ir.Constant(ir.VectorType(scalar.type, lanes), None),
                            ir.Constant(ir.VectorType(I32, lanes), [0] * lanes))


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
    """Emit the function of ``kernel`` in ``gen``'s module: ``(buffers..., params, start, stop)``, rows ``[start, stop)``.

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
    start, stop = fn.args[len(buffers) + 1], fn.args[len(buffers) + 2]
    _Emitter(gen, kernel, var, b, args, start, stop).emit()
    return fn


class _Emitter:
    def __init__(self, gen, kernel, var, b, args, start, stop):
        self.gen, self.k, self.var, self.b = gen, kernel, var, b
        self.start, self.stop = start, stop
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
        self.x_rs = self.num(kernel.x.strides[0])
        self.out_rs = self.num(kernel.out.strides[0])
        # stack buffers: the packed activation tile and the accumulator tile (zeroed once: always defined)
        mr, nb = var.rows, var.cols
        self.apack = b.bitcast(_aligned_alloca(b, ir.ArrayType(self.a_ty, mr * self.kcb), "apack"), self.a_ty.as_pointer())
        self.tile = b.bitcast(_aligned_alloca(b, ir.ArrayType(I32, mr * nb), "tile"), I32.as_pointer())
        self._zero(self.apack, mr * self.kcb, self.a_ty)
        self._zero(self.tile, mr * nb, I32)
        # the generic variant accumulates pair sums, two lanes per column (see _dot_generic)
        self.acc_ty = ir.VectorType(I32, var.lanes * (2 if var.name in _PAIRED else 1))
        self.accs = [[b.alloca(self.acc_ty, name=f"acc{r}_{v}") for v in range(var.vectors)] for r in range(mr)]
        self.counters = {name: b.alloca(I64, name=name) for name in ("kb", "jc", "i0", "jr", "g", "r", "t", "j")}

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
            with CountedLoop(b, c["jc"], _c(0), _c(self.ncb), self.nc_tiles, name="nblock") as jc:
                jc_end = _min(b, b.add(jc, _c(self.nc_tiles)), _c(self.ncb))
                with CountedLoop(b, c["i0"], self.start, self.stop, var.rows, name="rowtile") as i0:
                    rows = _min(b, _c(var.rows), b.sub(self.stop, i0))
                    self._pack_rows(i0, rows, g0, kbytes)
                    with CountedLoop(b, c["jr"], jc, jc_end, name="coltile") as jr:
                        col0 = b.mul(jr, _c(var.cols))
                        cols = _min(b, _c(var.cols), b.sub(_c(self.k.n), col0))
                        self._init_accs(first, i0, rows, col0, cols)
                        self._micro(g0, glen, col0)
                        self._store_accs()
                        with b.if_else(last) as (then, otherwise):
                            with then:
                                self._epilogue(i0, rows, col0, cols)
                            with otherwise:
                                self._copy_tile(i0, rows, col0, cols, to_out=True)
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

    def _micro(self, g0, glen, col0):
        """The register-blocked inner loop over this K block's groups of 4."""
        b, var = self.b, self.var
        row_stride = self.k.n_pad * 4
        wbase = b.gep(self.w, [b.add(b.mul(g0, _c(row_stride)), b.mul(col0, _c(4)))])
        with CountedLoop(b, self.counters["g"], _c(0), glen, name="k4") as g:
            wrow = b.gep(wbase, [b.mul(g, _c(row_stride))])
            weights = [
                b.load(b.bitcast(b.gep(wrow, [_c(v * var.lanes * 4)]), self.vec.as_pointer()), align=1)
                for v in range(var.vectors)
            ]
            for r in range(var.rows):
                quad_ty = ir.IntType(self.a_ty.width * 4)
                at = b.gep(self.apack, [b.add(_c(r * self.kcb), b.mul(g, _c(4)))])
                quad = b.load(b.bitcast(at, quad_ty.as_pointer()), align=quad_ty.width // 8)
                a = b.bitcast(_broadcast(b, quad, var.lanes * 32 // quad_ty.width), self.vec)
                for v in range(var.vectors):
                    slot = self.accs[r][v]
                    b.store(self.dot(b, b.load(slot), a, weights[v], var.lanes), slot)

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
                    b.store(y, b.gep(out_row, [j]), align=4)

    def _column(self, base, access, col):
        b = self.b
        stride = access.strides[0]
        if stride == 0:
            return b.load(base, align=4)
        if stride == 1:
            return b.load(b.gep(base, [col]), align=4)
        return b.load(b.gep(base, [b.mul(col, self.num(stride))]), align=4)
