"""Running compiled CUDA modules through CuPy: devices, device arrays, launches and host steps.

Nothing here runs at ``function()`` time: compiling needs only NVRTC, so a
machine without a GPU renders and compile-checks every kernel and raises
:class:`NoDeviceError` when called.
"""

from __future__ import annotations

import functools

import numpy as np

from symexpr.backends.cuda.codegen import BLOCK
from symexpr.runtime.executable import Executable

#: Blocks a grid-stride kernel launches at most (each block loops over the rest).
MAX_BLOCKS = 1 << 16


class NoDeviceError(RuntimeError):
    """A cuda-backend function was called where no CUDA device (or no CuPy) is available."""


@functools.lru_cache(maxsize=1)
def _device_count() -> int:
    try:
        import cupy

        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # noqa: BLE001 - no CuPy, no driver, no device: all mean "none here"
        return 0


def device_available() -> bool:
    """Whether a CUDA device can run kernels in this process."""
    return _device_count() > 0


def device_arch() -> str | None:
    """``sm_XY`` of the current device (``sm_90a`` for compute capability 9.0), or None without one."""
    if not device_available():
        return None
    import cupy

    major, minor = cupy.cuda.Device().compute_capability[0], cupy.cuda.Device().compute_capability[1:]
    arch = f"sm_{major}{minor}"
    return arch + "a" if arch == "sm_90" else arch


def require_device(what: str) -> None:
    if not device_available():
        raise NoDeviceError(
            f"{what}: backend 'cuda' compiled this function (see f.source) but no CUDA device is available "
            "here (CuPy found none); run it on a machine with a GPU, or use backend='llvm'"
        )


class LoadedModule:
    """A cubin loaded on the current device, with one launchable function per kernel."""

    def __init__(self, cubin: bytes, infos):
        from cupy.cuda import function

        self.infos = infos
        self._module = function.Module()
        self._module.load(cubin)
        self.kernels = [self._module.get_function(info.name) for info in infos]


def _grid(info, params) -> int:
    value = lambda e: int(params[e.index]) if hasattr(e, "index") else int(e)  # noqa: E731
    outer = int(np.prod([value(e) for e in info.outer], dtype=np.int64)) if info.outer else 1
    if info.mapping == "rows":
        return max(1, min(outer, MAX_BLOCKS))
    inner = int(np.prod([value(e) for e in info.inner], dtype=np.int64)) if info.inner else 1
    return max(1, min((outer * inner + BLOCK - 1) // BLOCK, MAX_BLOCKS))


class CUDAExecutable:
    """One call geometry's plan on the device: outputs, arena, kernel launches and host steps.

    Host steps (ops without a CUDA kernel yet) run as on the CPU backend, on
    host copies of the arguments, outputs and arena, which are copied back.
    """

    def __init__(self, fgraph, plan, schedule, module, params):
        self.plan = plan
        self.module = module
        self.params = params
        self.schedule = schedule
        self._device_constants = None
        # The CPU driver runs the host steps (on host copies; see run()).
        self._cpu = Executable(fgraph, plan, [], None, [], params, None)
        self.n_outputs = self._cpu.n_outputs
        self.out_slots = self._cpu.out_slots

    def _buffers(self, args, outs, arena):
        import cupy

        if self._device_constants is None:
            self._device_constants = [cupy.asarray(np.ascontiguousarray(c)) for c in self.plan.constants]
        arrays = []
        for spec in self.plan.buffers:
            if spec.kind == "input":
                arrays.append(args[spec.index])
            elif spec.kind == "output":
                arrays.append(outs[spec.index])
            elif spec.kind == "const":
                arrays.append(self._device_constants[spec.index])
            else:
                arrays.append(arena[spec.index : spec.index + spec.nbytes].view(spec.dtype))
        return arrays

    def run(self, args):
        import cupy

        require_device("calling the function")
        outs = [cupy.empty(*self._cpu.output_shapes[i]) for i in range(self.n_outputs)]
        arena = cupy.zeros(max(self.plan.arena_bytes, 1), dtype=np.uint8)
        buffers = self._buffers(args, outs, arena)
        native = 0
        for kind, item in self.schedule:
            if kind == "native":
                info, kernel = self.module.infos[native], self.module.kernels[native]
                native += 1
                kargs = [buffers[b] for b in info.buffers] + [np.int64(self.params[i]) for i in info.params]
                kernel((_grid(info, self.params),), (BLOCK,), tuple(kargs))
            elif kind == "gemm":
                _gemm(item, buffers)
            else:
                host_args = [cupy.asnumpy(a) for a in args]
                host_outs = [cupy.asnumpy(o) for o in outs]
                host_arena = cupy.asnumpy(arena)
                self._cpu._host(item, host_args, host_outs, host_arena)
                for out, host in zip(outs, host_outs):
                    out.set(host)
                arena.set(host_arena)
        return [outs[i] for i in self.out_slots]


def _strided(flat, access, shape):
    from cupy.lib.stride_tricks import as_strided

    itemsize = flat.dtype.itemsize
    return as_strided(flat[access.offset :], shape=shape, strides=tuple(int(s) * itemsize for s in access.strides))


def _gemm(step, buffers) -> None:
    """A :class:`~symexpr.kernel.ir.GemmKernel` (concrete sizes) as one batched cuBLAS call."""
    import cupy

    batch = tuple(int(b) for b in step.batch)
    m, n, k = int(step.m), int(step.n), int(step.k)
    a = _strided(buffers[step.a.buffer].reshape(-1), step.a, batch + (m, k))
    b = _strided(buffers[step.b.buffer].reshape(-1), step.b, batch + (k, n))
    c = _strided(buffers[step.c.buffer].reshape(-1), step.c, batch + (m, n))
    c[...] = cupy.matmul(a, b)
