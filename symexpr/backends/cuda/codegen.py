"""CUDA C for the loop kernels of a plan template.

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
from symexpr.kernel.ir import LoopKernel
from symexpr.kernel.prims import PrimBuilder, is_float, prune, register_dtype
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
        for line in render.render_prims(prims, names, lambda r: args[r[1]]):
            self.emit(line, depth)
        if result[0] == "tmp":
            return names[result[1]]
        if result[0] == "const":
            return literal(result[1], result[2])
        return args[result[1]]

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
        used = [line for name, line in loads if re.search(rf"\b{name}\b", text)]
        self.lines[start:] = used + rest

    def _body(self, p, phase, index, depth) -> None:
        values = {}
        self._load_lines = []
        for k, access in enumerate(phase.loads):
            dtype = self.dtype(access.buffer)
            raw = self.address(access, index)
            name = self.fresh("ld")
            if dtype == "float16":
                expr = f"se_f16_value({raw})"
            elif dtype == "bool":
                expr = f"({raw} != 0)"
            else:
                expr = raw
            self._load_lines.append((name, "    " * depth + f"const {c_type(dtype)} {name} = {expr};"))
            values[("load", k)] = (name, dtype)

        def operand(ref):
            if ref[0] == "acc":
                return f"acc{ref[1]}_{ref[2]}", self.kernel.phases[ref[1]].accumulators[ref[2]].dtype
            if ref[0] == "size":
                return self.cast(_num(ref[1]), "int64", ref[2], depth), ref[2]
            return values[ref]

        seen: dict = {}

        def dtype_of(ref):
            seen[ref] = operand(ref)
            return seen[ref][1]

        lowered = semantics.lower_program(phase.program, dtype_of, render.CAPABILITIES)
        names = [self.fresh() for _ in lowered.prims]
        for line in render.render_prims(lowered.prims, names, lambda r: seen[r][0]):
            self.emit(line, depth)

        def value(ref):
            """(C expression, dtype) of a reference in the phase's accumulators or stores."""
            if ref[0] == "tmp":
                result = lowered.results[ref[1]]
                dtype = phase.program[ref[1]].dtype
                if result[0] == "tmp":
                    return names[result[1]], dtype
                if result[0] == "const":
                    return literal(result[1], result[2]), dtype
                return seen[result][0], dtype
            if ref[0] == "const":
                return literal(ref[1] if ref[2] != "float16" else float(np.float16(ref[1])), register_dtype(ref[2])), ref[2]
            found = seen.get(ref)
            return found if found is not None else operand(ref)

        for k, acc in enumerate(phase.accumulators):
            expr, vdtype = value(acc.value)
            expr = self.cast(expr, vdtype, acc.dtype, depth)
            var = f"acc{p}_{k}"
            self.emit(f"{var} = {_combine(acc.kind, acc.dtype, var, expr)};", depth)
        for access, ref in phase.stores:
            expr, vdtype = value(ref)
            dtype = self.dtype(access.buffer)
            expr = self.cast(expr, vdtype, dtype, depth)
            if dtype == "float16":
                expr = f"se_f16_bits({expr})"
            elif dtype == "bool":
                expr = f"(unsigned char){expr}"
            self.emit(f"{self.address(access, index)} = {expr};", depth)

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
        writer = _KernelWriter(template, kernel, name)
        parts.append(writer.write())
        infos.append(KernelInfo(name, tuple(writer.buffers), writer.params, writer.mapping,
                                tuple(kernel.outer), tuple(kernel.phases[0].inner) if kernel.phases else ()))
    return "\n\n".join(parts) + "\n", infos
