"""How the llvm backend's native code runs: worker threads, the thread count, and BLAS binding.

The per-call driver itself is backend-neutral (:mod:`symexpr.runtime.executable`);
:func:`launch` is what it calls to run one native segment.
"""

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


_parallel_busy = threading.Lock()


class PoolBlasSegment:
    """A native segment whose threads each call BLAS (a batched GEMM split across the pool).

    :func:`launch` runs it with the BLAS library single-threaded: BLAS's own
    threads would compete with the pool's, and OpenBLAS's idle threads spin
    for a while after each call, taking a core from the pool's next segment
    (measured on MiniLM W8A8: int8 segments after the attention's batched
    matmuls ran at one core's speed with two threads).
    """

    __slots__ = ("entry",)

    def __init__(self, entry):
        self.entry = entry

    def __call__(self, arrays, tid, nthreads):
        return self.entry(arrays, tid, nthreads)


def launch(entry, arrays, work, sync) -> None:
    """Run a native segment: on the pool when it does enough work and threads are allowed, else here."""
    threads = _num_threads or get_num_threads()
    if threads > 1 and work >= PARALLEL_THRESHOLD:
        if type(entry) is PoolBlasSegment:
            with _single_threaded_blas():
                _run_parallel(entry.entry, arrays, threads, sync)
        else:
            _run_parallel(entry, arrays, threads, sync)
    else:
        entry(arrays, 0, 1)


class _single_threaded_blas:
    """Within the block the bound OpenBLAS uses one thread (its own call: no threadpoolctl overhead)."""

    def __enter__(self):
        self.set, get = _blas_thread_functions()
        self.saved = get() if get is not None else None
        if self.set is not None and self.saved != 1:
            self.set(1)

    def __exit__(self, *exc):
        if self.set is not None and self.saved not in (None, 1):
            self.set(self.saved)
        return False


_blas_threads_fns = None


def _blas_thread_functions():
    """``(set, get)`` of the bound OpenBLAS's thread count, ``(None, None)`` where it has none."""
    global _blas_threads_fns
    if _blas_threads_fns is None:
        found = (None, None)
        lib = _blas_lib[0] if _blas_lib else None
        for prefix, suffix in (("scipy_openblas", "64_"), ("openblas", "64_"), ("openblas", "")):
            try:
                set_fn = getattr(lib, f"{prefix}_set_num_threads{suffix}")
                get_fn = getattr(lib, f"{prefix}_get_num_threads{suffix}")
            except AttributeError:
                continue
            set_fn.argtypes, set_fn.restype = [ctypes.c_int], None
            get_fn.argtypes, get_fn.restype = [], ctypes.c_int
            found = (set_fn, get_fn)
            break
        _blas_threads_fns = found
    return _blas_threads_fns


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
