"""Run the cuda backend's generated kernels on the CPU: the CUDA C compiled as C++ with a thread shim.

No GPU is attached to the development and CI machines, so the kernels the
cuda backend renders are compiled by g++ with a small header that gives CUDA's
execution model a CPU meaning: each block of a launch runs as ``BLOCK_THREADS``
``std::thread`` s (two warps), ``__syncthreads()`` is a block barrier,
``__shfl_down_sync`` exchanges values through a per-warp buffer between two
warp barriers, ``__shared__`` variables are statics (blocks run one after
another), and the float16 conversions use ``_Float16``.  Grids are capped at
a few blocks so that the grid-stride loops run more than once.

This checks what the kernels compute (indexing, phases, block reductions,
casts, the rendering of every primitive) against the NumPy reference; it does
not check anything about a real GPU (memory model, occupancy, speed).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile

import numpy as np

from symexpr.backends.cuda import CUDAFunction
from symexpr.backends.cuda.render import MEMORY_TYPES
from symexpr.runtime.executable import Executable

#: Threads per emulated block: two warps, so the cross-warp step of block reductions runs.
BLOCK_THREADS = 64
#: Blocks per emulated launch at most.
MAX_BLOCKS = 3

SHIM = r"""
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>
using std::signbit;
#define SYMEXPR_CUDA_EMULATION 1
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(n)
#define __shared__ static
struct se_dim3 { unsigned x, y, z; };
static thread_local se_dim3 threadIdx, blockIdx;
static se_dim3 blockDim, gridDim;
static std::barrier<>* se_block_barrier;
static std::barrier<>* se_warp_barrier[32];
alignas(16) static unsigned char se_exchange[32][32][16];
inline void __syncthreads() { se_block_barrier->arrive_and_wait(); }
template <typename T> T __shfl_down_sync(unsigned, T v, int off) {
    unsigned warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    std::memcpy(se_exchange[warp][lane], &v, sizeof(T));
    se_warp_barrier[warp]->arrive_and_wait();
    T r = v;
    if (lane + off < 32) std::memcpy(&r, se_exchange[warp][lane + off], sizeof(T));
    se_warp_barrier[warp]->arrive_and_wait();
    return r;
}
template <typename To, typename From> inline To se_bits(From x) { To y; std::memcpy(&y, &x, sizeof(To)); return y; }
inline int __float_as_int(float x) { return se_bits<int>(x); }
inline unsigned __float_as_uint(float x) { return se_bits<unsigned>(x); }
inline float __int_as_float(int x) { return se_bits<float>(x); }
inline float __uint_as_float(unsigned x) { return se_bits<float>(x); }
inline long long __double_as_longlong(double x) { return se_bits<long long>(x); }
inline double __longlong_as_double(long long x) { return se_bits<double>(x); }
inline unsigned short se_f16_bits(float x) { return se_bits<unsigned short>((_Float16)x); }
inline float se_f16_value(unsigned short h) { return (float)se_bits<_Float16>(h); }
template <typename F> void se_launch(unsigned grid, unsigned block, F body) {
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    for (unsigned b = 0; b < grid; ++b) {
        std::barrier<> block_barrier(block);
        std::vector<std::barrier<>*> warps;
        for (unsigned w = 0; w < (block + 31) / 32; ++w) warps.push_back(new std::barrier<>(32));
        se_block_barrier = &block_barrier;
        for (unsigned w = 0; w < warps.size(); ++w) se_warp_barrier[w] = warps[w];
        std::vector<std::thread> threads;
        for (unsigned t = 0; t < block; ++t)
            threads.emplace_back([=] { blockIdx = {b, 0, 0}; threadIdx = {t, 0, 0}; body(); });
        for (auto& th : threads) th.join();
        for (auto* w : warps) delete w;
    }
}
"""


def compiler() -> str | None:
    """The C++ compiler the emulation uses, or None."""
    return shutil.which(os.environ.get("CXX", "g++"))


def _launcher(info, template) -> str:
    args, call = [], []
    for buf in info.buffers:
        args.append(f"void* b{buf}")
        call.append(f"({MEMORY_TYPES[template.buffers[buf].dtype]}*)b{buf}")
    for i in info.params:
        args.append(f"long long p{i}")
        call.append(f"p{i}")
    params = ", ".join(["unsigned grid", "unsigned block"] + args)
    return (f'extern "C" void launch_{info.name}({params}) {{\n'
            f"    se_launch(grid, block, [=] {{ {info.name}({', '.join(call)}); }});\n}}\n")


_LIBRARIES: dict = {}


def build(module) -> ctypes.CDLL:
    """Compile ``module`` (a :class:`~symexpr.backends.cuda.CUDAModule`) with launchers into a shared library."""
    source = SHIM + module.source + "\n" + "".join(_launcher(info, module.template) for info in module.infos)
    key = hashlib.sha256(source.encode()).hexdigest()
    if key not in _LIBRARIES:
        folder = tempfile.mkdtemp(prefix="symexpr_cuda_emu_")
        src, lib = os.path.join(folder, "k.cpp"), os.path.join(folder, "k.so")
        with open(src, "w") as handle:
            handle.write(source)
        # -ffp-contract=off: no fused multiply-add the kernel did not ask for (as --fmad=false on the GPU)
        cmd = [compiler(), "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", "-ffp-contract=off",
               "-fno-fast-math", "-w", src, "-o", lib]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"g++ could not compile the emulated kernels:\n{done.stderr[-4000:]}")
        _LIBRARIES[key] = ctypes.CDLL(lib)
    return _LIBRARIES[key]


class _Module:
    def __init__(self, entries):
        self.entries = entries


class EmulatedFunction(CUDAFunction):
    """A cuda-backend function whose kernels run on the CPU through :func:`build` (NumPy arrays in and out)."""

    def executable(self, plan, module, schedule, work, params):
        lib = build(module) if module.infos else None
        n_in = sum(b.kind == "input" for b in plan.buffers)
        n_out = sum(b.kind == "output" for b in plan.buffers)
        entries = []
        for info in module.infos:
            entries.append(self._entry(lib, info, plan, params, n_in, n_out))
        return Executable(self.fgraph, plan, schedule, _Module(entries), work, params, _launch, self.arenas)

    @staticmethod
    def _entry(lib, info, plan, params, n_in, n_out):
        fn = getattr(lib, f"launch_{info.name}")

        def run(arrays):
            arena = arrays[-3]
            pointers = []
            for buf in info.buffers:
                spec = plan.buffers[buf]
                if spec.kind == "input":
                    pointers.append(arrays[spec.index].ctypes.data)
                elif spec.kind == "output":
                    pointers.append(arrays[n_in + spec.index].ctypes.data)
                elif spec.kind == "const":
                    pointers.append(arrays[n_in + n_out + spec.index].ctypes.data)
                else:
                    pointers.append(arena.ctypes.data + spec.index)
            values = [int(params[i]) for i in info.params]
            grid = min(_blocks(info, params), MAX_BLOCKS)
            fn(ctypes.c_uint(grid), ctypes.c_uint(BLOCK_THREADS), *[ctypes.c_void_p(p) for p in pointers],
               *[ctypes.c_longlong(v) for v in values])

        return run

    def __call__(self, args):
        return super(CUDAFunction, self).__call__(args)  # no device: run the emulated executable


def _blocks(info, params) -> int:
    value = lambda e: int(params[e.index]) if hasattr(e, "index") else int(e)  # noqa: E731
    outer = int(np.prod([value(e) for e in info.outer])) if info.outer else 1
    if info.mapping == "rows":
        return max(outer, 1)
    inner = int(np.prod([value(e) for e in info.inner])) if info.inner else 1
    return max((outer * inner + BLOCK_THREADS - 1) // BLOCK_THREADS, 1)


def _launch(entry, arrays, work, sync):
    entry(arrays)


def emulated_function(inputs, outputs):
    """Like ``se.function(inputs, outputs, backend="cuda")``, running the kernels on the CPU."""
    from symexpr.compile.function import Function
    from symexpr.graph.fgraph import FunctionGraph
    from symexpr.passes import resolve_passes

    single = not isinstance(outputs, (list, tuple))
    outs = [outputs] if single else list(outputs)
    fgraph = FunctionGraph(inputs, outs)
    for pass_ in resolve_passes(None):
        pass_(fgraph)
    return Function(inputs, outs, fgraph, "cuda-emulated", EmulatedFunction(fgraph), single)
