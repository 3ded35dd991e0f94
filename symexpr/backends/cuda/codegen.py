"""CUDA C for the loop kernels and int8 GEMMs of a plan template.

Each :class:`~symexpr.kernel.ir.LoopKernel` becomes one ``__global__``
function taking a typed pointer per buffer it touches and, by value, the
``long long`` run-time parameters (:class:`~symexpr.kernel.template.Param`)
it uses: one compiled module runs every geometry with the template's
structure, as on the CPU.

Two mappings onto the GPU:

``flat``
    a kernel of one phase without accumulators (fused elementwise work): a
    grid-stride loop over every point of ``outer x inner``, one point per
    thread per iteration, consecutive threads on the innermost dimension.
``rows``
    any other kernel (reductions, softmax, layer_norm): a block per outer
    point (grid-stride over them); in each phase the block's threads stride
    over the inner points, each folding its own partial accumulators, which a
    warp-shuffle and shared-memory tree combines at the end of the phase so
    that every thread sees the final value; ``__syncthreads()`` between
    phases orders a phase's stores before the next phase's loads.

Scalar code comes from the shared lowering (:mod:`symexpr.kernel.semantics`)
rendered by :mod:`symexpr.backends.cuda.render`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from symexpr.backends.cuda import render
from symexpr.backends.cuda.render import C_TYPES, MEMORY_TYPES, c_type, literal
from symexpr.kernel import semantics
from symexpr.kernel.ir import LoopKernel, QGemmKernel
from symexpr.kernel.prims import PrimBuilder, is_float, prune, register_dtype, resolve
from symexpr.kernel.template import Param

#: Threads per block of every kernel (a multiple of the warp size).
BLOCK = 256


@dataclass(frozen=True)
class KernelInfo:
    """How to launch one generated kernel: its name, buffers (plan indices), params and mapping."""

    name: str
    buffers: tuple
    params: tuple
    mapping: str
    outer: tuple
    inner: tuple


def _params_of(value, found: dict) -> None:
    if isinstance(value, Param):
        found[value.index] = value
    elif isinstance(value, tuple):
        for v in value:
            _params_of(v, found)
    elif hasattr(value, "__dataclass_fields__"):
        for name in value.__dataclass_fields__:
            _params_of(getattr(value, name), found)


def _num(value) -> str:
    return f"p{value.index}" if isinstance(value, Param) else f"{int(value)}LL"


class _KernelWriter:
    def __init__(self, template, kernel: LoopKernel, name: str):
        self.template = template
        self.kernel = kernel
        self.name = name
        self.lines: list[str] = []
        self.counter = 0
        self.buffers = []
        stored = set()
        for phase in kernel.phases:
            for access in list(phase.loads) + [a for a, _ in phase.stores]:
                if access.buffer not in self.buffers:
                    self.buffers.append(access.buffer)
            stored |= {a.buffer for a, _ in phase.stores}
        self.stored = stored
        found: dict = {}
        _params_of(kernel, found)
        self.params = tuple(sorted(found))
        single = len(kernel.phases) == 1 and not kernel.phases[0].accumulators
        self.mapping = "flat" if single else "rows"

    def fresh(self, stem="t") -> str:
        self.counter += 1
        return f"{stem}{self.counter}"

    def emit(self, line: str, depth: int) -> None:
        self.lines.append("    " * depth + line)

    def dtype(self, buffer) -> str:
        return self.template.buffers[buffer].dtype

    # -- scalar code ------------------------------------------------------------------------
    def snippet(self, build, args, dtypes, depth) -> str:
        """Emit the primitives ``build(prim_builder, refs)`` makes on C expressions ``args``; returns the result."""
        refs = [("arg", i) for i in range(len(args))]
        pb = PrimBuilder(lambda r: dtypes[r[1]], render.CAPABILITIES)
        prims, (result,) = prune(pb.prims, [build(pb, refs)])
        names = [self.fresh() for _ in prims]
        external = lambda r: args[r[1]]  # noqa: E731
        for line in render.render_prims(prims, names, external):
            self.emit(line, depth)
        return resolve(result, names, literal, external)

    def cast(self, expr, src, dst, depth) -> str:
        if src == dst:
            return expr
        return self.snippet(lambda pb, r: semantics.cast(pb, r[0], src, dst), [expr], [register_dtype(src)], depth)

    def address(self, access, index) -> str:
        terms = [] if access.offset == 0 else [_num(access.offset)]
        for i, stride in zip(index, access.strides):
            if isinstance(stride, Param):
                terms.append(f"{i} * {_num(stride)}")
            elif stride == 1:
                terms.append(i)
            elif stride:
                terms.append(f"{i} * {int(stride)}LL")
        return f"b{access.buffer}[{' + '.join(terms) or '0'}]"

    def body(self, p, phase, index, depth) -> None:
        """Emit one point of ``phase``; loads no value depends on are left out (NVRTC warns of unused ones)."""
        start = len(self.lines)
        self._body(p, phase, index, depth)
        loads, rest = self._load_lines, self.lines[start:]
        text = "\n".join(rest)
        used = ["    " * depth + line for name, line in loads if re.search(rf"\b{name}\b", text)]
        self.lines[start:] = used + rest

    def load(self, access, index) -> tuple:
        """``(name, dtype)`` of the register value at ``access``; its line goes in with :meth:`body`'s loads."""
        dtype = self.dtype(access.buffer)
        raw = self.address(access, index)
        name = self.fresh("ld")
        if dtype == "float16":
            expr = f"se_f16_value({raw})"
        elif dtype == "bool":
            expr = f"({raw} != 0)"
        else:
            expr = raw
        self._load_lines.append((name, f"const {c_type(dtype)} {name} = {expr};"))
        return name, dtype

    def store(self, access, index, expr, vdtype, depth) -> None:
        dtype = self.dtype(access.buffer)
        expr = self.cast(expr, vdtype, dtype, depth)
        if dtype == "float16":
            expr = f"se_f16_bits({expr})"
        elif dtype == "bool":
            expr = f"(unsigned char){expr}"
        self.emit(f"{self.address(access, index)} = {expr};", depth)

    def program(self, program, operand, depth):
        """Emit kernel-IR ``program``; ``operand(ref)`` gives ``(C expression, dtype)`` of its external references.

        Returns ``value(ref)``: ``(C expression, dtype)`` of any reference (a
        result ``("tmp", j)``, a literal, or an external one).
        """
        seen: dict = {}

        def dtype_of(ref):
            seen[ref] = operand(ref)
            return seen[ref][1]

        lowered = semantics.lower_program(program, dtype_of, render.CAPABILITIES)
        names = [self.fresh() for _ in lowered.prims]
        external = lambda r: seen[r][0]  # noqa: E731
        for line in render.render_prims(lowered.prims, names, external):
            self.emit(line, depth)

        def value(ref):
            if ref[0] == "tmp":
                return resolve(lowered.results[ref[1]], names, literal, external), program[ref[1]].dtype
            if ref[0] == "const":
                return literal(ref[1] if ref[2] != "float16" else float(np.float16(ref[1])), register_dtype(ref[2])), ref[2]
            found = seen.get(ref)
            return found if found is not None else operand(ref)

        return value

    def _body(self, p, phase, index, depth) -> None:
        self._load_lines = []
        values = {("load", k): self.load(access, index) for k, access in enumerate(phase.loads)}

        def operand(ref):
            if ref[0] == "acc":
                return f"acc{ref[1]}_{ref[2]}", self.kernel.phases[ref[1]].accumulators[ref[2]].dtype
            if ref[0] == "size":
                return self.cast(_num(ref[1]), "int64", ref[2], depth), ref[2]
            return values[ref]

        value = self.program(phase.program, operand, depth)
        for k, acc in enumerate(phase.accumulators):
            expr, vdtype = value(acc.value)
            expr = self.cast(expr, vdtype, acc.dtype, depth)
            var = f"acc{p}_{k}"
            self.emit(f"{var} = {_combine(acc.kind, acc.dtype, var, expr)};", depth)
        for access, ref in phase.stores:
            self.store(access, index, *value(ref), depth)

    # -- loops ---------------------------------------------------------------------------
    def decompose(self, flat: str, extents, stem: str, depth) -> list[str]:
        """Emit the row-major coordinates of linear index ``flat`` over ``extents``; returns their names."""
        names = [f"{stem}{d}" for d in range(len(extents))]
        if not extents:
            return names
        rest = self.fresh("r")
        self.emit(f"long long {rest} = {flat};", depth)
        for d in range(len(extents) - 1, 0, -1):
            self.emit(f"const long long {names[d]} = {rest} % {_num(extents[d])}; {rest} /= {_num(extents[d])};", depth)
        self.emit(f"const long long {names[0]} = {rest};", depth)
        return names

    def write(self) -> str:
        kernel = self.kernel
        args = []
        for buf in self.buffers:
            const = "" if buf in self.stored else "const "
            args.append(f"{const}{MEMORY_TYPES[self.dtype(buf)]}* __restrict__ b{buf}")
        args += [f"const long long p{i}" for i in self.params]
        self.emit(f'extern "C" __global__ void __launch_bounds__({BLOCK}) {self.name}({", ".join(args)}) {{', 0)
        outer = list(kernel.outer)
        if self.mapping == "flat":
            phase = kernel.phases[0]
            extents = outer + list(phase.inner)
            total = " * ".join(_num(e) for e in extents) or "1LL"
            self.emit(f"const long long n = {total};", 1)
            self.emit("for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < n; "
                      "t += (long long)gridDim.x * blockDim.x) {", 1)
            index = self.decompose("t", extents, "i", 2)
            self.body(0, phase, index, 2)
            self.emit("}", 1)
        else:
            self.write_rows(outer)
        self.emit("}", 0)
        return "\n".join(self.lines)

    def write_rows(self, outer) -> None:
        kernel = self.kernel
        for p, phase in enumerate(kernel.phases):
            for k, acc in enumerate(phase.accumulators):
                self.emit(f"__shared__ {_reduce_type(acc.dtype)} red{p}_{k}[{BLOCK // 32}];", 1)
        n_outer = " * ".join(_num(e) for e in outer) or "1LL"
        self.emit(f"const long long n_outer = {n_outer};", 1)
        self.emit("for (long long o = blockIdx.x; o < n_outer; o += gridDim.x) {", 1)
        oindex = self.decompose("o", outer, "o", 2)
        for p, phase in enumerate(kernel.phases):
            for k, acc in enumerate(phase.accumulators):
                self.emit(f"{c_type(acc.dtype)} acc{p}_{k} = {literal(acc.identity(), register_dtype(acc.dtype))};", 2)
            n_inner = " * ".join(_num(e) for e in phase.inner) or "1LL"
            self.emit(f"for (long long t = threadIdx.x; t < {n_inner}; t += blockDim.x) {{", 2)
            iindex = self.decompose("t", list(phase.inner), f"j{p}_", 3)
            self.body(p, phase, oindex + iindex, 3)
            self.emit("}", 2)
            for k, acc in enumerate(phase.accumulators):
                self.block_reduce(p, k, acc, 2)
            self.emit("__syncthreads();", 2)
        self.emit("}", 1)

    def block_reduce(self, p, k, acc, depth) -> None:
        """Combine every thread's ``acc{p}_{k}``; afterwards each thread holds the block's result."""
        var, red = f"acc{p}_{k}", f"red{p}_{k}"
        rt = _reduce_type(acc.dtype)
        v = self.fresh("v")
        combine = lambda a, b: _combine(acc.kind, acc.dtype if rt == c_type(acc.dtype) else "int32", a, b)  # noqa: E731
        shuffle = (f"for (int off = 16; off > 0; off >>= 1) {{ const {rt} other = __shfl_down_sync(0xffffffffu, {v}, off); "
                   f"{v} = {combine(v, 'other')}; }}")
        identity = literal(acc.identity(), register_dtype(acc.dtype))
        self.emit(f"{{ {rt} {v} = ({rt}){var};", depth)
        self.emit(shuffle, depth + 1)
        self.emit(f"if ((threadIdx.x & 31) == 0) {red}[threadIdx.x >> 5] = {v};", depth + 1)
        self.emit("__syncthreads();", depth + 1)
        self.emit(f"if (threadIdx.x < 32) {{ {v} = threadIdx.x < (blockDim.x >> 5) ? {red}[threadIdx.x] : ({rt}){identity};", depth + 1)
        self.emit(shuffle, depth + 2)
        self.emit(f"if (threadIdx.x == 0) {red}[0] = {v}; }}", depth + 2)
        self.emit("__syncthreads();", depth + 1)
        self.emit(f"{var} = ({c_type(acc.dtype)}){red}[0];", depth + 1)
        self.emit("__syncthreads(); }", depth + 1)


class _QGemmWriter(_KernelWriter):
    """An int8 contraction (:class:`~symexpr.kernel.ir.QGemmKernel`) with ``__dp4a``: a thread per output element.

    The packed weight's layout (``[n_pad / 16][ceil(k / 4)][16][4]``) gives
    each column's four K values of a group as one 32-bit word, and a warp's
    consecutive columns consecutive words.  ``__dp4a`` multiplies signed bytes
    exactly, so the accumulator needs no ``+128`` compensation.  The epilogue
    is the CPU kernel's: ``float(acc) * sx[i] * sw[j] (+ bias[j])`` in that
    order (no contraction), then the ``post`` program.
    """

    def __init__(self, template, kernel, name: str):
        self.template, self.kernel, self.name = template, kernel, name
        self.lines, self.counter = [], 0
        self.buffers = list(dict.fromkeys(a.buffer for role, a in kernel.accesses() if role != "comp"))
        self.stored = {kernel.out.buffer}
        found: dict = {}
        _params_of(tuple(a for role, a in kernel.accesses() if role != "comp") + (kernel.m, kernel.n, kernel.k), found)
        self.params = tuple(sorted(found))
        self.mapping = "flat"

    def write(self) -> str:
        q = self.kernel
        args = [f"{'' if buf in self.stored else 'const '}{MEMORY_TYPES[self.dtype(buf)]}* __restrict__ b{buf}"
                for buf in self.buffers]
        args += [f"const long long p{i}" for i in self.params]
        self.emit(f'extern "C" __global__ void __launch_bounds__({BLOCK}) {self.name}({", ".join(args)}) {{', 0)
        n, k = _num(q.n), _num(q.k)
        self.emit(f"const long long n = {n}, k = {k}, groups = (k + 3) / 4;", 1)
        self.emit(f"const int* __restrict__ w = (const int*)(b{q.w.buffer}{' + ' + _num(q.w.offset) if q.w.offset else ''});", 1)
        self.emit(f"for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < {_num(q.m)} * n; "
                  "t += (long long)gridDim.x * blockDim.x) {", 1)
        self.emit("const long long i = t / n, j = t % n;", 2)
        x_row = self.address(q.x, ["i", "0"]).replace("[", " + ", 1).rstrip("]")
        self.emit(f"const signed char* __restrict__ x = {x_row};", 2)
        self.emit("const int* __restrict__ wj = w + (j / 16) * groups * 16 + (j % 16);", 2)
        self.emit("int acc = 0;", 2)
        self.emit("for (long long g = 0; g < groups; ++g) {", 2)
        self.emit("unsigned x4 = 0;", 3)
        self.emit("for (int b = 0; b < 4; ++b) if (4 * g + b < k) x4 |= (unsigned)(unsigned char)x[4 * g + b] << (8 * b);", 3)
        self.emit("acc = __dp4a((int)x4, wj[g * 16], acc);", 3)
        self.emit("}", 2)
        if q.epilogue == "int32":
            self.emit(f"{self.address(q.out, ['i', 'j'])} = acc;", 2)
        else:
            self._load_lines = []
            sx, _ = self.load(q.sx, ["i"])
            sw, _ = self.load(q.sw, ["j"])
            for _, line in self._load_lines:
                self.emit(line, 2)
            self.emit(f"float y = (float)acc * {sx};", 2)
            self.emit(f"y = y * {sw};", 2)
            if q.bias is not None:
                self._load_lines = []
                bias, _ = self.load(q.bias, ["j"])
                self.emit(self._load_lines[0][1], 2)
                self.emit(f"y = y + {bias};", 2)
            result = ("y", "float32")
            if q.post:
                self._load_lines = []
                values = {("load", 0): ("y", "float32")}
                for number, access in enumerate(q.post_loads, 1):
                    values[("load", number)] = self.load(access, ["i", "j"])
                for _, line in self._load_lines:
                    self.emit(line, 2)
                result = self.program(q.post, values.__getitem__, 2)(q.post_result)
            self.store(q.out, ["i", "j"], *result, 2)
        self.emit("}", 1)
        self.emit("}", 0)
        return "\n".join(self.lines)


def _reduce_type(dtype: str) -> str:
    """The C type a block reduction shuffles: 4- and 8-byte types as themselves, narrower ones as int."""
    if dtype == "float16":
        return "float"
    return C_TYPES[dtype] if np.dtype(dtype).itemsize >= 4 else "int"


def _combine(kind: str, dtype: str, a: str, b: str) -> str:
    """C expression folding ``b`` into accumulator value ``a`` of ``dtype`` (NumPy's NaN rules for max/min)."""
    if is_float(dtype):
        if kind == "sum":
            return f"{a} + {b}"
        if kind == "prod":
            return f"{a} * {b}"
        return f"se_f{kind}({a}, {b})"
    if dtype == "bool":
        return f"{a} | {b}" if kind in ("sum", "max") else f"{a} & {b}"
    t = c_type(dtype)
    if kind in ("sum", "prod"):
        w = "unsigned long long" if np.dtype(dtype).itemsize == 8 else "unsigned int"
        return f"({t})(({w}){a} {'+' if kind == 'sum' else '*'} ({w}){b})"
    return f"({a} {'>' if kind == 'max' else '<'} {b} ? {a} : {b})"


def generate_module(template, steps) -> tuple[str, list[KernelInfo]]:
    """CUDA C of the loop kernels ``steps`` (indices into ``template.steps``) and how to launch each."""
    parts = [render.PRELUDE]
    infos = []
    for n, i in enumerate(steps):
        kernel = template.steps[i]
        name = f"k{n}_{kernel.name.split('_', 1)[-1]}"
        if isinstance(kernel, QGemmKernel):
            writer = _QGemmWriter(template, kernel, name)
            outer, inner = (kernel.m, kernel.n), ()
        else:
            writer = _KernelWriter(template, kernel, name)
            outer, inner = tuple(kernel.outer), tuple(kernel.phases[0].inner) if kernel.phases else ()
        parts.append(writer.write())
        infos.append(KernelInfo(name, tuple(writer.buffers), writer.params, writer.mapping, outer, inner))
    return "\n\n".join(parts) + "\n", infos
