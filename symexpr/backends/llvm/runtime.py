"""Running compiled plans: JIT loading, the per-call driver, threads and BLAS binding."""

from __future__ import annotations

import concurrent.futures
import ctypes
import glob
import os
import sys
import threading

import llvmlite.binding as llvm
import numpy as np

from symexpr.backends.llvm import target
from symexpr.backends.llvm.codegen import GEMM_SYMBOLS
from symexpr.graph.basic import Constant
from symexpr.kernel.ir import HostStep


#: Segments doing less work than this (scalar iterations) run on the calling thread only.
PARALLEL_THRESHOLD = 1 << 16

_num_threads = None
_pool = None
_pool_lock = threading.Lock()


def _default_threads() -> int:
    env = os.environ.get("SYMEXPR_NUM_THREADS", "").strip()
    if env:
        try:
            value = int(env)
        except ValueError:
            raise ValueError(f"SYMEXPR_NUM_THREADS: expected a positive integer, got {env!r}") from None
        if value < 1:
            raise ValueError(f"SYMEXPR_NUM_THREADS: expected a positive integer, got {env!r}")
        return value
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def get_num_threads() -> int:
    """How many threads compiled kernels split large loops across."""
    global _num_threads
    if _num_threads is None:
        _num_threads = _default_threads()
    return _num_threads


def set_num_threads(n: int) -> None:
    """Use ``n`` threads for large loops (1 disables threading). Default: every core, or ``$SYMEXPR_NUM_THREADS``."""
    global _num_threads
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive int, got {n!r}")
    _num_threads = n


def _executor(workers: int):
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers < workers:
            _pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="symexpr")
        return _pool


# -- BLAS ---------------------------------------------------------------------------
_blas_bound = None
_blas_lib: list = []  # keeps the loaded library alive while compiled code points into it


def bind_blas() -> bool:
    """Point the GEMM symbols compiled code calls at NumPy's bundled OpenBLAS; False if none is found."""
    global _blas_bound
    if _blas_bound is not None:
        return _blas_bound
    _blas_bound = False
    libs = []
    import numpy

    root = os.path.dirname(os.path.dirname(numpy.__file__))
    for pattern in ("numpy.libs/*openblas*", "numpy/.dylibs/*openblas*", "numpy.libs/*blas*"):
        libs += glob.glob(os.path.join(root, pattern))
    candidates = [
        ("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_"),
        ("cblas_sgemm64_", "cblas_dgemm64_"),
    ]
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for s_name, d_name in candidates:
            try:
                s_fn, d_fn = getattr(lib, s_name), getattr(lib, d_name)
            except AttributeError:
                continue
            llvm.add_symbol(GEMM_SYMBOLS["float32"], ctypes.cast(s_fn, ctypes.c_void_p).value)
            llvm.add_symbol(GEMM_SYMBOLS["float64"], ctypes.cast(d_fn, ctypes.c_void_p).value)
            _blas_bound = True
            _blas_lib[:] = [lib]
            return True
    return False



# -- the per-call driver ------------------------------------------------------------------
class Executable:
    """A plan with its loaded code: ``run(arrays)`` returns the output arrays."""

    def __init__(self, fgraph, plan, schedule, module: LoadedModule | None, segment_work):
        self.fgraph = fgraph
        self.plan = plan
        self.module = module
        self.constants = tuple(plan.constants)
        self._input_index = {id(v): i for i, v in enumerate(fgraph.inputs)}
        self.out_slots = [plan.buffers[b].index for b, _, _ in plan.outputs]
        n_out = sum(b.kind == "output" for b in plan.buffers)
        self.n_outputs = n_out
        self.output_shapes = {}
        for buf, shape, dtype in plan.outputs:
            self.output_shapes[plan.buffers[buf].index] = (shape, np.dtype(dtype))
        self.arena_bytes = plan.arena_bytes
        self.n_segments = sum(1 for kind, _ in schedule if kind == "native")
        self.schedule = [
            (kind, module.entries[item] if kind == "native" else item, work) for (kind, item), work in zip(schedule, segment_work)
        ]
        #: The last output array of each slot and a free arena, reused when no one else holds them.
        self._spares = [[] for _ in range(n_out)]
        self._arenas = []

    def run(self, args):
        outs = [self._output(i) for i in range(self.n_outputs)]
        try:
            arena = self._arenas.pop()
        except IndexError:
            arena = _aligned_bytes(self.arena_bytes) if self.arena_bytes else _EMPTY
        try:
            sync = np.zeros(max(self.n_segments, 1), dtype=np.int64)
            arrays = (*args, *outs, *self.constants, arena, sync)
            threads = get_num_threads()
            for kind, item, work in self.schedule:
                if kind == "native":
                    if threads > 1 and work >= PARALLEL_THRESHOLD:
                        _run_parallel(item, arrays, threads)
                    else:
                        item(arrays, 0, 1)
                else:
                    self._host(item, args, outs, arena)
        finally:
            if not self._arenas:
                self._arenas.append(arena)
        for i, out in enumerate(outs):
            spares = self._spares[i]
            if not spares:
                spares.append(out)
        return [outs[i] for i in self.out_slots]

    def _output(self, i):
        """A fresh output array, or the previous call's if nothing else refers to it any more.

        Reusing it skips the page faults (and the kernel's zeroing) of fresh memory,
        which cost as much as the kernel itself for a large elementwise output.
        Nothing can observe the reuse: the caller dropped every reference, views included.
        """
        try:
            spare = self._spares[i].pop()  # atomic: concurrent calls never get the same array
        except IndexError:
            return np.empty(*self.output_shapes[i])
        return spare if sys.getrefcount(spare) == _SOLE_REFCOUNT else np.empty(*self.output_shapes[i])

    # -- host steps -----------------------------------------------------------------
    def _buffer_array(self, buf, args, outs, arena):
        spec = self.plan.buffers[buf]
        if spec.kind == "output":
            return outs[spec.index].reshape(-1)
        if spec.kind == "temp":
            nbytes = spec.nbytes
            return arena[spec.index : spec.index + nbytes].view(spec.dtype)
        raise AssertionError(f"symexpr bug: host step writes to a {spec.kind} buffer")

    def _value(self, var, args, outs, arena, cache):
        if id(var) in cache:
            return cache[id(var)]
        if isinstance(var, Constant):
            value = var.data
        elif id(var) in self._input_index:
            value = args[self._input_index[id(var)]]
        elif id(var) in self.plan.allocated:
            flat = self._buffer_array(self.plan.allocated[id(var)], args, outs, arena)
            shape = self.plan.views[id(var)].shape
            value = flat[: int(np.prod(shape, dtype=np.int64))].reshape(shape)
        else:
            node = var.owner
            inputs = [self._value(v, args, outs, arena, cache) for v in node.inputs]
            value = node.op.perform(node, inputs)[node.outputs.index(var)]
        cache[id(var)] = value
        return value

    def _host(self, step: HostStep, args, outs, arena):
        from symexpr.backends.numpy_backend import node_error

        node = step.node
        cache = {}
        inputs = [self._value(v, args, outs, arena, cache) for v in node.inputs]
        try:
            with np.errstate(all="ignore"):
                results = node.op.perform(node, inputs)
        except Exception as exc:
            raise node_error(node, inputs, exc) from exc
        for var, result in zip(node.outputs, results):
            dest = self._value(var, args, outs, arena, {})
            np.copyto(dest, np.asarray(result), casting="unsafe")


_EMPTY = np.zeros(64, dtype=np.uint8)


def _sole_refcount() -> int:
    """What ``Executable._output`` sees for an array no one else refers to.

    Measured with the same code shape rather than assumed, since interpreters
    differ in whether a local variable and a call argument hold references.
    """
    spares = [np.empty(1)]
    spare = spares.pop()
    return sys.getrefcount(spare)


_SOLE_REFCOUNT = _sole_refcount()


def _aligned_bytes(nbytes: int) -> np.ndarray:
    raw = np.empty(nbytes + 64, dtype=np.uint8)
    start = (-raw.ctypes.data) % 64
    return raw[start : start + nbytes]


_parallel_busy = threading.Lock()


def _run_parallel(entry, arrays, threads):
    """Run a segment on ``threads`` threads; the caller's thread alone if another call holds the pool.

    A segment's spin barriers need all of its tasks running at once, so two calls
    must never share the workers: the second caller (from another Python thread)
    does its work single-threaded instead of waiting.
    """
    if not _parallel_busy.acquire(blocking=False):
        entry(arrays, 0, 1)
        return
    try:
        pool = _executor(threads - 1)
        futures = [pool.submit(entry, arrays, t, threads) for t in range(1, threads)]
        entry(arrays, 0, threads)
        for f in futures:
            f.result()
    finally:
        _parallel_busy.release()
