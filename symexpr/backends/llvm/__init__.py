"""The llvmlite CPU backend: kernel-IR plans compiled to native code, one LLVM module per plan structure.

Each call's input geometry gets a kernel-IR plan; the plan's template (its
structure, with every size a run-time parameter) is compiled once into one
LLVM module that serves every geometry with that structure (the dispatch is
backend-neutral: :mod:`symexpr.runtime.dispatch`).  Modules are cached on
disk as object code plus JSON metadata (see :mod:`symexpr.runtime.cache`).
"""

from __future__ import annotations

import functools

from symexpr._version import __version__
from symexpr.backends.llvm import loader, runtime, scalar_ops, target
from symexpr.backends.llvm.codegen import generate_module
from symexpr.backends.llvm.runtime import get_num_threads, set_num_threads
from symexpr.kernel import lower_quant, lowerings  # noqa: F401  (registers the op lowerings)
from symexpr.kernel.ir import SELF_THREADED, GemmKernel, LoopKernel
from symexpr.ops.matmul import MatMul
from symexpr.ops.attention import Attention
from symexpr.ops.quant import QLinear
from symexpr.runtime.cache import CompileCache, cache_enabled, default_cache_dir, make_key
from symexpr.runtime.dispatch import ShapeDispatcher
from symexpr.runtime.executable import Executable
from symexpr.runtime import keys

__all__ = ["LLVMBackend", "LLVMFunction", "get_num_threads", "set_num_threads"]


def schedule_plan(plan):
    """Group steps: runs of loop kernels and int8 GEMMs form one native segment; GEMMs and host steps stand alone.

    Returns ``(segments, schedule, work)``: each segment a list of step indices;
    the schedule ``("native", segment)`` or ``("host", step)`` items in order;
    and each item's work (scalar iterations; 0 where BLAS or the host threads itself).
    """
    segments, schedule, work = [], [], []
    current = []
    # Batched GEMMs run on the pool (BLAS single-threaded) only when no single GEMM wakes BLAS's own
    # threads anyway: once woken, OpenBLAS's workers poll for ~0.1 s and compete with the pool, so a
    # plan whose other heavy steps are the pool's (int8 linears) keeps BLAS's threads asleep; a plan
    # with fp32 linears lets BLAS thread its attention GEMMs too (faster: concurrent single-threaded
    # calls of small GEMMs did not scale).
    pool_blas = not any(isinstance(s, GemmKernel) and not s.batch for s in plan.steps)

    def flush():
        if current:
            segments.append(list(current))
            schedule.append(("native", len(segments) - 1))
            work.append(sum(plan.steps[i].work for i in current))
            current.clear()

    for i, step in enumerate(plan.steps):
        if isinstance(step, (LoopKernel, *SELF_THREADED)):  # these run on the pool's threads
            current.append(i)
        elif isinstance(step, GemmKernel):
            flush()
            segments.append([i])
            schedule.append(("native", len(segments) - 1))
            # Work > 0: the batch entries run on the pool's threads (see runtime.PoolBlasSegment);
            # 0: the calling thread runs them, BLAS threading each GEMM.
            work.append(step.work if step.batch and pool_blas else 0)
        else:
            flush()
            schedule.append(("host", step))
            work.append(0)
    flush()
    return segments, schedule, work


class LLVMModule:
    """The compiled code of one plan template: every geometry whose plan has this structure runs it."""

    def __init__(self, template, segments, blas, cache):
        self.template = template
        self.segments = [[template.steps[i] for i in seg] for seg in segments]
        self._ir = None
        key = None
        object_code = None
        if cache is not None:
            # The template is all the generated code depends on (constants are
            # buffers, read at run time), so graphs that differ only in their
            # constants' values, or in host steps, share one entry.
            key = make_key(
                {
                    "template": template.key(),
                    "segments": segments,
                    "target": target.fingerprint(),
                    "blas": blas,
                    "codegen": keys.source_hash(),
                    "symexpr": __version__,
                }
            )
            entry = cache.load(key)
            if entry is not None and entry.metadata.get("segments") == len(self.segments):
                object_code = entry.object_code
        self.cache_hit = object_code is not None
        if object_code is None:
            object_code = target.compile_ir(self.source)
            if cache is not None:
                cache.store(key, object_code, {"segments": len(self.segments), "steps": len(template.steps)})
        self.loaded = loader.LoadedModule(object_code, len(self.segments)) if self.segments else None
        for index, steps in enumerate(self.segments):
            if len(steps) == 1 and isinstance(steps[0], GemmKernel) and steps[0].batch:
                self.loaded.entries[index] = runtime.PoolBlasSegment(self.loaded.entries[index])

    @property
    def source(self) -> str:
        """The module's LLVM IR (before optimisation)."""
        if self._ir is None:
            self._ir = generate_module(self.template, self.segments, "symexpr", _triple(), target.object_layout())
        return self._ir


class LLVMFunction(ShapeDispatcher):
    """The callable the llvm backend returns (see :class:`~symexpr.runtime.dispatch.ShapeDispatcher`)."""

    def __init__(self, fgraph):
        self._blas = runtime.bind_blas()
        super().__init__(fgraph)

    def supports(self, op, arg_dtypes) -> bool:
        """Scalar ops per ``scalar_ops``; GEMMs only when a BLAS is bound; int8 GEMMs always."""
        if isinstance(op, MatMul):
            return self._blas
        if isinstance(op, (QLinear, Attention)):
            return True
        return scalar_ops.supported(op, arg_dtypes)

    def schedule(self, plan):
        return schedule_plan(plan)

    def compile_module(self, template, segments):
        return LLVMModule(template, segments, self._blas, _cache())

    def executable(self, plan, module, schedule, work, params):
        return Executable(self.fgraph, plan, schedule, module.loaded, work, params, runtime.launch, self.arenas)

    def assembly(self) -> str:
        """Host assembly of the module the most recent call ran (after ``-O3``)."""
        _, optimised = target.compile_ir(self.source, optimised_ir=True)
        return target.assembly_of(optimised)


def _triple():
    import llvmlite.binding as llvm

    return llvm.get_process_triple()


def _cache():
    return _shared_cache(str(default_cache_dir())) if cache_enabled() else None


@functools.lru_cache(maxsize=8)
def _shared_cache(directory):
    return CompileCache(directory)


class LLVMBackend:
    """Compiles graphs to native code with llvmlite."""

    name = "llvm"

    def compile(self, fgraph):
        return LLVMFunction(fgraph)
