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

from symexpr.backends.llvm.codegen import GEMM_SYMBOLS
from symexpr.graph.basic import Constant
from symexpr.kernel.ir import HostStep


#: Segments doing less work than this (scalar iterations) run on the calling thread only.
PARALLEL_THRESHOLD = 1 << 16

#: Where :func:`cgroup_cpu_limit` looks by default (module attributes, so tests can point them elsewhere).
CGROUP_ROOT = "/sys/fs/cgroup"
SELF_CGROUP = "/proc/self/cgroup"

_num_threads = None
_num_threads_set = False  # by set_num_threads
_pool = None
_pool_lock = threading.Lock()


# -- how many threads ----------------------------------------------------------------------
def _read(path) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def _quota_cpus(quota: str, period: str) -> int | None:
    """``ceil(quota / period)``, or None for "no limit" (``max``, ``-1``) and anything unreadable."""
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None  # "max" (v2), or a malformed file
    if q <= 0 or p <= 0:
        return None  # -1 is "no limit" in v1
    return max(1, -(-q // p))


def _cgroup_dirs(mount: str, path: str) -> list[str]:
    """``mount/path`` and each of its ancestors up to ``mount`` (a parent's quota limits its children too)."""
    parts = [p for p in path.strip().split("/") if p and p != "."]
    if ".." in parts:  # a cgroup outside our namespace's root: only the mount itself is ours to read
        parts = []
    return [os.path.join(mount, *parts[:k]) for k in range(len(parts), -1, -1)]


def cgroup_cpu_limit(root: str | None = None, self_cgroup: str | None = None) -> int | None:
    """The CPU quota of this process's cgroup in whole CPUs (rounded up), or None if it has none.

    Reads cgroup v2 (``cpu.max``: ``"<quota> <period>"`` or ``"max <period>"``)
    and cgroup v1 (``cpu.cfs_quota_us`` and ``cpu.cfs_period_us``, ``-1`` for no
    quota) in this process's cgroup (from ``/proc/self/cgroup``) and every
    ancestor up to the mount point; the smallest quota wins.  ``root`` (default
    :data:`CGROUP_ROOT`) and ``self_cgroup`` (default :data:`SELF_CGROUP`) are the
    paths read, so that tests can point them at fake files.
    """
    root = CGROUP_ROOT if root is None else os.fspath(root)
    self_cgroup = SELF_CGROUP if self_cgroup is None else os.fspath(self_cgroup)
    v2_path, v1_path = "/", "/"
    for line in (_read(self_cgroup) or "").splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        if fields[0] == "0" and fields[1] == "":
            v2_path = fields[2]
        elif "cpu" in fields[1].split(","):
            v1_path = fields[2]
    limits = []
    for d in _cgroup_dirs(root, v2_path):
        text = _read(os.path.join(d, "cpu.max"))
        if text is not None and len(text.split()) == 2:
            limits.append(_quota_cpus(*text.split()))
    mounts = ["cpu", "cpu,cpuacct", "cpuacct,cpu"]
    for mount in dict.fromkeys(os.path.join(root, m) for m in mounts):
        for d in _cgroup_dirs(mount, v1_path):
            quota = _read(os.path.join(d, "cpu.cfs_quota_us"))
            period = _read(os.path.join(d, "cpu.cfs_period_us"))
            if quota is not None and period is not None:
                limits.append(_quota_cpus(quota.strip(), period.strip()))
    limits = [n for n in limits if n is not None]
    return min(limits) if limits else None


def available_cpus() -> int:
    """The CPUs this process may use: its affinity mask, capped by its cgroup's CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    quota = cgroup_cpu_limit()
    return max(1, min(n, quota) if quota is not None else n)


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
    return available_cpus()


def get_num_threads() -> int:
    """How many threads compiled kernels (and the BLAS they call) use."""
    global _num_threads
    if _num_threads is None:
        _num_threads = _default_threads()
    return _num_threads


def set_num_threads(n: int) -> None:
    """Use ``n`` threads for large loops and for BLAS (1 disables threading in both).

    The default is ``$SYMEXPR_NUM_THREADS``, else :func:`available_cpus` (the
    affinity mask capped by the cgroup CPU quota).  The same ``n`` limits the
    OpenBLAS that matmul calls (NumPy's bundled one), through threadpoolctl:
    symexpr's pool and BLAS never compute at the same time within a call (a
    GEMM is a step of its own, run on the calling thread while the pool's
    workers sleep), so each gets all ``n`` rather than a share.  NumPy's own
    matmul uses that OpenBLAS too, so this limits it as well.
    """
    global _num_threads, _num_threads_set
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive int, got {n!r}")
    _num_threads = n
    _num_threads_set = True
    if _blas_bound is None:
        bind_blas()  # binding limits the library to get_num_threads(), now n
    elif _blas_bound:
        _limit_blas_threads(n)


def _threads_chosen() -> bool:
    """Whether the user chose the thread count (``set_num_threads`` or ``$SYMEXPR_NUM_THREADS``).

    Only then does binding BLAS limit it: otherwise OpenBLAS keeps its own
    default, which honours ``OPENBLAS_NUM_THREADS`` and is all CPUs, like ours.
    """
    return _num_threads_set or bool(os.environ.get("SYMEXPR_NUM_THREADS", "").strip())


def _executor(workers: int):
    """The worker pool, grown (a new pool; the old one shut down) when a call needs more workers.

    Called only by the caller holding ``_parallel_busy``, so nobody else is using the old pool.
    """
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers < workers:
            old = _pool
            _pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="symexpr")
            if old is not None:
                old.shutdown(wait=False)  # its idle workers exit; nothing is queued on it
        return _pool


def _after_fork_in_child() -> None:
    """A fork()ed child has the pool object but none of its threads, and maybe a lock held by a thread it lacks."""
    global _pool, _pool_lock, _parallel_busy
    _pool = None  # its workers do not exist here; submitting to it would wait forever
    _pool_lock = threading.Lock()
    _parallel_busy = threading.Lock()


# -- BLAS ---------------------------------------------------------------------------
_blas_bound = None
_blas_lib: list = []  # keeps the loaded library alive while compiled code points into it
_blas_controllers = None


def bind_blas() -> bool:
    """Point the GEMM symbols compiled code calls at NumPy's bundled OpenBLAS; False if none is found.

    Binding also limits that library to :func:`get_num_threads` threads when the user chose that
    count (see :func:`set_num_threads`); otherwise OpenBLAS keeps its own default.
    """
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
            if _threads_chosen():
                _limit_blas_threads(get_num_threads())
            return True
    return False


def _blas_thread_controllers() -> list:
    """threadpoolctl's controllers of the bound library (matched by file); [] if it does not see it."""
    global _blas_controllers
    if _blas_controllers is None:
        found = []
        if _blas_lib:
            try:
                import threadpoolctl

                path = os.path.realpath(_blas_lib[0]._name)
                found = [
                    lc
                    for lc in threadpoolctl.ThreadpoolController().lib_controllers
                    if os.path.realpath(getattr(lc, "filepath", None) or "") == path
                ]
            except Exception:  # noqa: BLE001 - threadpoolctl missing or failing: BLAS keeps its own count
                found = []
        _blas_controllers = found
    return _blas_controllers


def _limit_blas_threads(n: int) -> None:
    """Limit the bound BLAS to ``n`` threads (process-wide: OpenBLAS has one pool)."""
    for lc in _blas_thread_controllers():
        lc.set_num_threads(n)
        # threadpoolctl >= 3.8 makes the thread that sets an OpenBLAS limit its "controlling
        # thread" and ignores the other threads' limits while it lives.  symexpr sets a
        # process-wide count and must not keep that role: a later set_num_threads may come
        # from another thread.
        clear = getattr(type(lc), "clear_controlling_thread", None)
        if clear is not None:
            clear()


# -- the per-call driver ------------------------------------------------------------------
class Executable:
    """A plan with its loaded code (a :class:`~symexpr.backends.llvm.loader.LoadedModule` or None):
    ``run(arrays)`` returns the output arrays."""

    def __init__(self, fgraph, plan, schedule, module, segment_work, params):
        self.fgraph = fgraph
        self.plan = plan
        self.module = module
        #: The plan's sizes, in the order its template numbers them (the last argument of every segment).
        self.params = params
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
        # Computed once: for a small function, run() is most of the per-call cost.
        self._out_specs = [self.output_shapes[i] for i in range(n_out)]
        self._slots_in_order = self.out_slots == list(range(n_out))
        #: The barrier counters.  Each parallel segment run zeroes them under the pool lock, and a
        #: segment run on one thread never touches them, so concurrent calls can share the array.
        self._sync = np.zeros(max(self.n_segments, 1), dtype=np.int64)
        fast = self._single_segment_runner()
        if fast is not None:
            self.run = fast  # shadows the general method below

    def _single_segment_runner(self):
        """:meth:`run` for the commonest plan, one native segment and one output, with no per-call loops.

        None for any other plan.  The steps are those of the general :meth:`run`.
        """
        if len(self.schedule) != 1 or self.schedule[0][0] != "native" or self.out_slots != [0]:
            return None  # (out_slots [0, 0]: one buffer returned twice, the general run's job)
        _, entry, work = self.schedule[0]
        big = work >= PARALLEL_THRESHOLD
        (spares,), (spec,) = self._spares, self._out_specs
        constants, sync, arenas, arena_bytes, params = self.constants, self._sync, self._arenas, self.arena_bytes, self.params

        def run(args):
            out = _reuse_or_new(spares, spec)
            if arena_bytes:
                try:
                    arena = arenas.pop()
                except IndexError:
                    arena = _aligned_bytes(arena_bytes)
            else:
                arena = _EMPTY
            arrays = (*args, out, *constants, arena, sync, params)
            threads = _num_threads or get_num_threads()
            if big and threads > 1:
                _run_parallel(entry, arrays, threads, sync)
            else:
                entry(arrays, 0, 1)
            if arena_bytes and not arenas:
                arenas.append(arena)
            if not spares:
                spares.append(out)
            return [out]

        return run

    def run(self, args):
        outs = [_reuse_or_new(spares, spec) for spares, spec in zip(self._spares, self._out_specs)]
        arena_bytes = self.arena_bytes
        if arena_bytes:
            try:
                arena = self._arenas.pop()
            except IndexError:
                arena = _aligned_bytes(arena_bytes)
        else:
            arena = _EMPTY
        try:
            sync = self._sync
            arrays = (*args, *outs, *self.constants, arena, sync, self.params)
            threads = _num_threads or get_num_threads()
            for kind, item, work in self.schedule:
                if kind == "native":
                    if threads > 1 and work >= PARALLEL_THRESHOLD:
                        _run_parallel(item, arrays, threads, sync)
                    else:
                        item(arrays, 0, 1)
                else:
                    self._host(item, args, outs, arena)
        finally:
            if arena_bytes and not self._arenas:
                self._arenas.append(arena)
        for spares, out in zip(self._spares, outs):
            if not spares:
                spares.append(out)
        if self._slots_in_order:
            return outs
        return [outs[i] for i in self.out_slots]

    # -- host steps -----------------------------------------------------------------
    def _buffer_array(self, buf, args, outs, arena):
        spec = self.plan.buffers[buf]
        if spec.kind == "output":
            return outs[spec.index].reshape(-1)
        if spec.kind == "temp":
            nbytes = spec.nbytes
            return arena[spec.index : spec.index + nbytes].view(spec.dtype)
        raise AssertionError(f"symexpr bug: host step writes to a {spec.kind} buffer")

    def _leaf(self, var, args, outs, arena):
        """The value of a variable that needs no evaluation, or ``_COMPUTE`` when its node must run."""
        if isinstance(var, Constant):
            return var.data
        if id(var) in self._input_index:
            return args[self._input_index[id(var)]]
        if id(var) in self.plan.allocated:
            flat = self._buffer_array(self.plan.allocated[id(var)], args, outs, arena)
            shape = self.plan.views[id(var)].shape
            return flat[: int(np.prod(shape, dtype=np.int64))].reshape(shape)
        return _COMPUTE

    def _value(self, var, args, outs, arena, cache):
        """The value of ``var``: a constant, an input, a planned buffer, or its node run on its inputs' values.

        Iterative (an explicit stack): a chain of thousands of views feeding a
        host step needs no Python recursion.
        """
        if id(var) in cache:
            return cache[id(var)]
        stack = [var]
        while stack:
            top = stack[-1]
            if id(top) in cache:
                stack.pop()
                continue
            value = self._leaf(top, args, outs, arena)
            if value is not _COMPUTE:
                cache[id(top)] = value
                stack.pop()
                continue
            node = top.owner
            missing = [v for v in node.inputs if id(v) not in cache]
            if missing:
                stack.extend(reversed(missing))  # evaluated first, in input order
                continue
            inputs = [cache[id(v)] for v in node.inputs]
            cache[id(top)] = node.op.perform(node, inputs)[node.outputs.index(top)]
            stack.pop()
        return cache[id(var)]

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


_COMPUTE = object()  # _leaf's "not a leaf" marker
_EMPTY = np.zeros(64, dtype=np.uint8)


def _reuse_or_new(spares: list, spec) -> np.ndarray:
    """The previous call's output array if nothing else refers to it any more, else a fresh one.

    Reusing it skips the page faults (and the kernel's zeroing) of fresh memory,
    which cost as much as the kernel itself for a large elementwise output.
    Nothing can observe the reuse: the caller dropped every reference, views included.
    """
    try:
        spare = spares.pop()  # atomic: concurrent calls never get the same array
    except IndexError:
        return np.empty(*spec)
    return spare if sys.getrefcount(spare) == _SOLE_REFCOUNT else np.empty(*spec)


def _sole_refcount() -> int:
    """What :func:`_reuse_or_new` sees for an array no one else refers to.

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


def _run_parallel(entry, arrays, threads, sync):
    """Run a segment on ``threads`` threads; the caller's thread alone if another call holds the pool.

    A segment's spin barriers need all of its tasks running at once, so two calls
    must never share the workers: the second caller (from another Python thread)
    does its work single-threaded instead of waiting.  ``sync`` (the barrier
    counters, an item of ``arrays``) is zeroed here, under the pool lock.
    """
    busy = _parallel_busy
    if not busy.acquire(blocking=False):
        entry(arrays, 0, 1)
        return
    try:
        sync.fill(0)
        pool = _executor(threads - 1)
        futures = [pool.submit(entry, arrays, t, threads) for t in range(1, threads)]
        entry(arrays, 0, threads)
        for f in futures:
            f.result()
    finally:
        busy.release()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
