"""The CUDA backend: kernel-IR plans rendered to CUDA C, compiled with NVRTC, run through CuPy.

``function(..., backend="cuda")`` plans the graph like the llvm backend (the
same lowering, the same shape dispatch: one module per plan structure) and
renders its loop kernels (fused elementwise work, reductions, softmax,
layer_norm) to CUDA C from the shared primitive lowering.  Compiling needs
only NVRTC, so it happens at ``function()`` time on any machine, and
``f.source`` shows the CUDA C; calling needs a CUDA device (CuPy arrays in,
used in place, or NumPy arrays, copied to the device; CuPy arrays out).

Float matrix products run through cuBLAS (``cupy.matmul``), int8 GEMMs
(``QLinear``, with their fused epilogues) as ``__dp4a`` kernels.  Not yet on
the GPU: fused attention runs as a host step (NumPy on copies), named in a
warning at ``function()`` time.
The GPU path has been compiled (cubin for sm_80 and sm_90a) but not run on
a device; see docs/cuda-backend.md.
"""

from __future__ import annotations

import warnings

from symexpr.backends.cuda import codegen, nvrtc, runtime
from symexpr.kernel import lower_quant, lowerings  # noqa: F401  (registers the op lowerings)
from symexpr.kernel.ir import GemmKernel, HostStep, LoopKernel, QGemmKernel
from symexpr.kernel.semantics import supported as scalar_supported
from symexpr.ops.attention import Attention
from symexpr.ops.matmul import MatMul
from symexpr.ops.quant import QLinear
from symexpr.runtime.dispatch import ShapeDispatcher

__all__ = ["CUDABackend", "CUDAFunction", "CUDAModule"]


class CUDAModule:
    """The CUDA C and cubin of one plan template's loop kernels."""

    def __init__(self, template, segments, arch: str):
        self.template = template
        self.arch = arch
        self.source, self.infos = codegen.generate_module(template, [seg[0] for seg in segments])
        self.cubin, self.log = nvrtc.compile_cubin(self.source, arch) if self.infos else (b"", "")
        self.cache_hit = False
        self._loaded = None

    def loaded(self):
        """The module on the current device (loaded on first use)."""
        if self._loaded is None:
            self._loaded = runtime.LoadedModule(self.cubin, self.infos)
        return self._loaded


class _Loaded:
    """The executable's view of a module: loaded lazily, at the first call on a device."""

    def __init__(self, module: CUDAModule):
        self._module = module

    @property
    def infos(self):
        return self._module.infos

    @property
    def kernels(self):
        return self._module.loaded().kernels


class CUDAFunction(ShapeDispatcher):
    """The callable the cuda backend returns (see :class:`~symexpr.runtime.dispatch.ShapeDispatcher`)."""

    returns_fresh = True
    #: Arguments may be CuPy arrays (used in place) as well as NumPy arrays (copied to the device).
    accepts_device_arrays = True

    def __init__(self, fgraph, arch: str | None = None):
        self.arch = arch or nvrtc.arch_from_env() or runtime.device_arch() or nvrtc.DEFAULT_ARCH
        self._warned: set = set()
        super().__init__(fgraph)

    def supports(self, op, arg_dtypes) -> bool:
        """Scalar ops per the shared lowering; float matmuls through cuBLAS; int8 GEMMs; attention not yet."""
        if isinstance(op, MatMul):
            return True  # float GEMMs run as cuBLAS calls (cupy.matmul); the lowering sends the rest to the host
        if isinstance(op, QLinear):
            return True  # int8 GEMMs with __dp4a (see codegen._QGemmWriter)
        if isinstance(op, Attention):
            return False
        return scalar_supported(op, arg_dtypes)

    def schedule(self, plan):
        segments, schedule = [], []
        for i, step in enumerate(plan.steps):
            if isinstance(step, (LoopKernel, QGemmKernel)):
                segments.append([i])
                schedule.append(("native", len(segments) - 1))
            elif isinstance(step, GemmKernel):
                schedule.append(("gemm", step))
            else:
                schedule.append(("host", step))
        self._warn_host_steps(plan)
        return segments, schedule, [0] * len(schedule)

    def _warn_host_steps(self, plan) -> None:
        for step in plan.steps:
            if isinstance(step, HostStep):
                name = step.node.op.display_name() if hasattr(step.node.op, "display_name") else type(step.node.op).__name__
                if name not in self._warned:
                    self._warned.add(name)
                    warnings.warn(
                        f"backend 'cuda': {name} has no CUDA kernel yet and runs on the host (NumPy, with copies)",
                        stacklevel=6,
                    )

    def compile_module(self, template, segments):
        return CUDAModule(template, segments, self.arch)

    def executable(self, plan, module, schedule, work, params):
        return runtime.CUDAExecutable(self.fgraph, plan, schedule, _Loaded(module), params)

    def __call__(self, args):
        runtime.require_device("calling the function")
        import cupy

        return super().__call__([cupy.asarray(a) for a in args])

    @property
    def source(self) -> str:
        """CUDA C of the module the most recent geometry compiled (the probe's after ``function()``)."""
        return self._latest().source


class CUDABackend:
    """Compiles graphs to CUDA kernels through NVRTC (run through CuPy)."""

    name = "cuda"

    def compile(self, fgraph):
        return CUDAFunction(fgraph)
