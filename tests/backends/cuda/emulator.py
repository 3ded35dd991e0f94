"""Run the cuda backend's generated kernels on the CPU: the CUDA C compiled as C++ with a thread shim.

No GPU is attached to the development and CI machines, so the kernels the
cuda backend renders are compiled by g++ with a small header that gives CUDA's
execution model a CPU meaning: each block of a launch runs as ``BLOCK_THREADS``
``std::thread`` s (two warps), ``__syncthreads()`` is a block barrier,
``__shfl_down_sync`` exchanges values through a per-warp buffer between two
warp barriers, ``__shared__`` variables are statics (blocks run one after
another), and ``__dp4a`` and the bit casts are plain C++.  Grids are capped at
a few blocks so that the grid-stride loops run more than once.  :func:`emulate`
puts a NumPy-backed stand-in for CuPy in place, so that the backend's own
runtime (buffers, launches, host steps, outputs) runs as on a device.

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
import sys
import tempfile
import types

import numpy as np

from symexpr.backends.cuda import CUDAModule, nvrtc, runtime
from symexpr.backends.cuda.render import MEMORY_TYPES

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
inline int __dp4a(int a, int b, int c) {
    for (int q = 0; q < 4; ++q) c += (int)(signed char)(a >> (8 * q)) * (int)(signed char)(b >> (8 * q));
    return c;
}
template <typename To, typename From> inline To se_bits(From x) { To y; std::memcpy(&y, &x, sizeof(To)); return y; }
inline int __float_as_int(float x) { return se_bits<int>(x); }
inline unsigned __float_as_uint(float x) { return se_bits<unsigned>(x); }
inline float __int_as_float(int x) { return se_bits<float>(x); }
inline float __uint_as_float(unsigned x) { return se_bits<float>(x); }
inline long long __double_as_longlong(double x) { return se_bits<long long>(x); }
inline double __longlong_as_double(long long x) { return se_bits<double>(x); }
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
        # -O0: compiles fastest (the emulated sizes are tiny); -ffp-contract=off: no fused multiply-add
        # the kernel did not ask for (as --fmad=false on the GPU)
        cmd = [compiler(), "-std=c++20", "-O0", "-shared", "-fPIC", "-pthread", "-ffp-contract=off",
               "-fno-fast-math", "-w", src, "-o", lib]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"g++ could not compile the emulated kernels:\n{done.stderr[-4000:]}")
        _LIBRARIES[key] = ctypes.CDLL(lib)
    return _LIBRARIES[key]


class FakeDeviceArray(np.ndarray):
    """Host memory standing in for a CuPy array: ``set`` copies a host array in, as CuPy's does."""

    def set(self, host) -> None:
        self[...] = host


class DeviceArrayLike:
    """An argument that looks like a GPU array to symexpr (``__cuda_array_interface__``), not like an ndarray."""

    def __init__(self, array):
        self.array = np.ascontiguousarray(array).view(FakeDeviceArray)
        self.dtype, self.shape, self.ndim, self.strides = array.dtype, array.shape, array.ndim, self.array.strides
        self.__cuda_array_interface__ = {"shape": self.shape, "typestr": self.dtype.str, "version": 3,
                                         "data": (self.array.ctypes.data, False)}


class FakeCupy(types.ModuleType):
    """The part of CuPy the cuda backend's runtime uses, over NumPy."""

    ndarray = FakeDeviceArray

    def __init__(self):
        super().__init__("cupy")

    @staticmethod
    def empty(shape, dtype=float):
        return np.empty(shape, dtype).view(FakeDeviceArray)

    @staticmethod
    def zeros(shape, dtype=float):
        return np.zeros(shape, dtype).view(FakeDeviceArray)

    @staticmethod
    def asarray(a):
        if isinstance(a, DeviceArrayLike):
            return a.array
        if isinstance(a, FakeDeviceArray):
            return a  # already on the "device": used in place, as CuPy does
        return np.array(a).view(FakeDeviceArray)  # a host -> device copy

    @staticmethod
    def asnumpy(a):
        return np.array(a)

    @staticmethod
    def matmul(a, b):
        return np.matmul(a, b).view(FakeDeviceArray)

    lib = types.SimpleNamespace(stride_tricks=types.SimpleNamespace(as_strided=np.lib.stride_tricks.as_strided))


class EmulatedKernel:
    """Launches one generated kernel in the emulation; called like a CuPy kernel ``(grid, block, args)``."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, grid, block, args):
        fn = getattr(build(self.module), f"launch_{self.name}")
        values = [ctypes.c_void_p(a.ctypes.data) if isinstance(a, np.ndarray) else ctypes.c_longlong(int(a)) for a in args]
        fn(ctypes.c_uint(min(grid[0], MAX_BLOCKS)), ctypes.c_uint(BLOCK_THREADS), *values)


class EmulatedLoaded:
    """What :meth:`CUDAModule.loaded` gives on a device, with the kernels run by :class:`EmulatedKernel`."""

    def __init__(self, module):
        self.infos = module.infos
        self.kernels = [EmulatedKernel(module, info.name) for info in module.infos]


def emulate(monkeypatch) -> None:
    """Make ``backend="cuda"`` functions run here: a fake CuPy, a "device", and kernels in the emulation."""
    nvrtc.available()  # load the real NVRTC (through the real CuPy) before CuPy is replaced
    fake = FakeCupy()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setitem(sys.modules, "cupy.lib", fake.lib)
    monkeypatch.setitem(sys.modules, "cupy.lib.stride_tricks", fake.lib.stride_tricks)
    monkeypatch.setenv("SYMEXPR_CUDA_ARCH", "sm_80")
    monkeypatch.setattr(runtime, "device_available", lambda: True)
    monkeypatch.setattr(CUDAModule, "loaded", lambda self: EmulatedLoaded(self))
