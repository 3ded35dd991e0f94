"""Threads of the llvm backend: fork safety, the worker pool, the default count (cgroup quotas) and BLAS's count."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from support import num_threads

import symexpr as se
from symexpr.backends.llvm import get_num_threads, runtime, set_num_threads

threadpoolctl = pytest.importorskip("threadpoolctl")

#: Elements of the test input: far above the parallel threshold, so calls use the pool.
BIG = 1 << 18




@pytest.fixture(scope="module")
def pooled():
    """A function whose calls with a ``BIG`` input use the worker pool, and that input."""
    x = se.vector("x", dtype="float64")
    f = se.function([x], se.exp(x * 0.5) + se.sum(x))  # two kernels in one segment: a barrier
    a = np.linspace(-1.0, 1.0, BIG)
    assert BIG >= runtime.PARALLEL_THRESHOLD
    return f, a, np.exp(a * 0.5) + a.sum()


def _skip_without_fork():
    if not hasattr(os, "fork") or "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("needs fork()")


def _in_forked_child(target, timeout=60):
    """Run ``target(conn)`` in a fork()ed child; return what it sends, failing (not hanging) on a timeout."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=target, args=(child,), daemon=True)
    proc.start()
    child.close()
    try:
        if not parent.poll(timeout):
            pytest.fail(f"the forked child sent nothing within {timeout} s (a call hung)")
        return parent.recv()
    finally:
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()


# -- 1. fork -------------------------------------------------------------------------------------


def test_call_in_forked_child_after_a_pooled_call(pooled):
    _skip_without_fork()
    f, a, expected = pooled
    with num_threads(2):
        np.testing.assert_allclose(f(a), expected)  # the pool now has a worker thread
        assert runtime._pool is not None

        def child(conn):
            try:
                conn.send(("ok", float(np.max(np.abs(f(a) - expected))), runtime._pool is not None))
            except BaseException as exc:  # noqa: BLE001 - sent to the parent
                conn.send(("error", repr(exc), None))

        status, detail, had_pool = _in_forked_child(child)
    assert status == "ok", detail
    assert detail < 1e-9
    assert had_pool, "the child made its own pool and used it"


def test_forked_child_gets_free_pool_locks(pooled):
    """A fork while another thread holds the pool leaves the child a lock no thread of its own will release."""
    _skip_without_fork()
    f, a, expected = pooled
    with num_threads(2):
        f(a)
        assert runtime._parallel_busy.acquire(blocking=False)  # as if a call were running in another thread
        try:

            def child(conn):
                conn.send((runtime._parallel_busy.locked(), runtime._pool_lock.locked(), runtime._pool is None))

            busy, pool_lock, no_pool = _in_forked_child(child)
        finally:
            runtime._parallel_busy.release()
    assert not busy and not pool_lock and no_pool


def test_forked_child_can_specialise_while_the_parent_was_compiling():
    """A fork while another thread holds a function's specialisation lock (compiling) or a cache's lock."""
    _skip_without_fork()
    from symexpr.backends.llvm import _shared_cache
    from symexpr.runtime.cache import cache_enabled, default_cache_dir

    x = se.vector("x")
    f = se.function([x], x * 3 - 1, backend="llvm")
    f(np.ones(4, np.float32))
    locks = [f._compiled._lock]
    if cache_enabled():
        locks.append(_shared_cache(str(default_cache_dir()))._lock)
    for lock in locks:
        assert lock.acquire(blocking=False)
    try:

        def child(conn):
            conn.send(f(np.arange(7, dtype=np.float32)).tolist())  # a new length: a new specialisation

        got = _in_forked_child(child)
    finally:
        for lock in locks:
            lock.release()
    assert got == (np.arange(7) * 3 - 1).tolist()


# -- 4. the pool that a larger one replaces is shut down -----------------------------------------


def test_replaced_pool_is_shut_down(pooled):
    f, a, expected = pooled
    with num_threads(2):
        f(a)
    old = runtime._pool
    assert old is not None
    workers = max(old._max_workers + 2, 3)
    with num_threads(workers + 1):
        np.testing.assert_allclose(f(a), expected)
    assert runtime._pool is not old and runtime._pool._max_workers >= workers
    assert old._shutdown
    for thread in list(old._threads):
        thread.join(timeout=30)
        assert not thread.is_alive(), "the old pool's worker is still running"
    with num_threads(2):
        np.testing.assert_allclose(f(a), expected)  # the new pool serves smaller counts


# -- 2. the default count respects cgroup CPU quotas ---------------------------------------------


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [
        ("150000 100000\n", 2),  # 1.5 CPUs: rounded up
        ("100000 100000\n", 1),
        ("50000 100000\n", 1),
        ("400000 100000\n", 4),
        ("max 100000\n", None),
        ("garbage\n", None),
        ("", None),
    ],
)
def test_cgroup_v2_quota(tmp_path, cpu_max, expected):
    _write(tmp_path / "proc_cgroup", "0::/\n")
    _write(tmp_path / "cg" / "cpu.max", cpu_max)
    assert runtime.cgroup_cpu_limit(tmp_path / "cg", tmp_path / "proc_cgroup") == expected


def test_cgroup_v2_nested_cgroup_and_its_ancestors(tmp_path):
    _write(tmp_path / "proc_cgroup", "0::/user.slice/app.scope\n")
    root = tmp_path / "cg"
    _write(root / "user.slice" / "app.scope" / "cpu.max", "max 100000\n")
    _write(root / "user.slice" / "cpu.max", "300000 100000\n")  # a parent's quota binds its children
    _write(root / "cpu.max", "max 100000\n")
    assert runtime.cgroup_cpu_limit(root, tmp_path / "proc_cgroup") == 3
    _write(root / "user.slice" / "app.scope" / "cpu.max", "120000 100000\n")
    assert runtime.cgroup_cpu_limit(root, tmp_path / "proc_cgroup") == 2  # the smallest quota wins


@pytest.mark.parametrize("mount", ["cpu", "cpu,cpuacct"])
@pytest.mark.parametrize(("quota", "expected"), [("250000", 3), ("100000", 1), ("-1", None)])
def test_cgroup_v1_quota(tmp_path, mount, quota, expected):
    _write(tmp_path / "proc_cgroup", "4:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc\n")
    d = tmp_path / "cg" / mount
    _write(d / "cpu.cfs_quota_us", quota + "\n")
    _write(d / "cpu.cfs_period_us", "100000\n")
    assert runtime.cgroup_cpu_limit(tmp_path / "cg", tmp_path / "proc_cgroup") == expected


def test_cgroup_without_files_or_proc_entry(tmp_path):
    assert runtime.cgroup_cpu_limit(tmp_path / "none", tmp_path / "missing") is None
    _write(tmp_path / "cg" / "cpu.max", "200000 100000\n")  # found at the mount even without /proc/self/cgroup
    assert runtime.cgroup_cpu_limit(tmp_path / "cg", tmp_path / "missing") == 2


def test_default_thread_count_is_capped_by_the_quota(tmp_path, monkeypatch):
    _write(tmp_path / "proc_cgroup", "0::/\n")
    _write(tmp_path / "cg" / "cpu.max", "150000 100000\n")
    monkeypatch.setattr(runtime, "CGROUP_ROOT", str(tmp_path / "cg"))
    monkeypatch.setattr(runtime, "SELF_CGROUP", str(tmp_path / "proc_cgroup"))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.delenv("SYMEXPR_NUM_THREADS", raising=False)
    assert runtime.available_cpus() == 2
    assert runtime._default_threads() == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert runtime._default_threads() == 1  # the affinity mask is smaller than the quota
    monkeypatch.setenv("SYMEXPR_NUM_THREADS", "5")
    assert runtime._default_threads() == 5  # an explicit count is the user's choice
    monkeypatch.setattr(runtime, "_num_threads", None)
    assert get_num_threads() == 5


# -- 3. one count for symexpr and BLAS -----------------------------------------------------------


def _bound_blas_threads():
    assert runtime.bind_blas(), "no OpenBLAS bound (NumPy without its bundled OpenBLAS?)"
    path = os.path.realpath(runtime._blas_lib[0]._name)
    counts = [i["num_threads"] for i in threadpoolctl.threadpool_info() if os.path.realpath(i["filepath"]) == path]
    assert counts, f"threadpoolctl does not see {path}"
    return counts[0]


def test_set_num_threads_limits_the_bound_blas():
    previous = get_num_threads()
    try:
        set_num_threads(1)
        assert _bound_blas_threads() == 1
        set_num_threads(2)
        assert _bound_blas_threads() == 2
        set_num_threads(1)
        assert _bound_blas_threads() == 1
    finally:
        set_num_threads(previous)
    assert _bound_blas_threads() == previous


def test_set_num_threads_from_another_thread_still_limits_blas():
    """threadpoolctl >= 3.8 lets one thread at a time control OpenBLAS: symexpr never keeps that role."""
    previous = get_num_threads()
    try:
        worker = threading.Thread(target=set_num_threads, args=(1,))
        worker.start()
        worker.join()
        assert _bound_blas_threads() == 1
        holder_started, release = threading.Event(), threading.Event()

        def holder():  # a thread that stays alive after setting the count
            set_num_threads(1)
            holder_started.set()
            release.wait(30)

        t = threading.Thread(target=holder)
        t.start()
        holder_started.wait(30)
        try:
            set_num_threads(2)
            assert _bound_blas_threads() == 2
        finally:
            release.set()
            t.join()
    finally:
        set_num_threads(previous)


_ENV_SCRIPT = """
import os, numpy as np, symexpr as se, threadpoolctl
from symexpr.backends.llvm import runtime
a = se.matrix("a")
f = se.function([a], a @ a)
f(np.ones((8, 8), np.float32))
path = os.path.realpath(runtime._blas_lib[0]._name)
print([i["num_threads"] for i in threadpoolctl.threadpool_info() if os.path.realpath(i["filepath"]) == path])
"""


def test_environment_variable_limits_blas_when_it_is_bound():
    root = os.path.dirname(os.path.dirname(os.path.abspath(se.__file__)))
    env = dict(os.environ, SYMEXPR_NUM_THREADS="1", SYMEXPR_CACHE="0",
               PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        env.pop(var, None)
    proc = subprocess.run([sys.executable, "-c", _ENV_SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[1]"


def test_compiling_leaves_the_users_openblas_setting_alone():
    """Without set_num_threads or SYMEXPR_NUM_THREADS, binding BLAS keeps OPENBLAS_NUM_THREADS's count."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs two CPUs to tell 1 from the default")
    root = os.path.dirname(os.path.dirname(os.path.abspath(se.__file__)))
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", SYMEXPR_CACHE="0",
               PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("SYMEXPR_NUM_THREADS", None)
    proc = subprocess.run([sys.executable, "-c", _ENV_SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[1]"


# -- barriers back off ----------------------------------------------------------------------------
def test_barrier_waits_yield_the_core():
    """A thread waiting at a barrier between kernels spins a bounded number of times, then yields:
    with more threads than cores, the threads it waits for need the core it would hold."""
    from symexpr.backends.llvm import codegen

    x = se.tensor("x", "float32", (512, 512))
    f = se.function([x], [se.exp(x) + 1, se.sum(se.softmax(x, axis=-1) * 2, axis=0)], backend="llvm")
    src = f.source
    assert "symexpr_seg0" in src and "barrier.wait" in src, "expected a segment with a barrier"
    assert "call i32 @\"sched_yield\"()" in src
    assert f", {codegen.SPINS_BEFORE_YIELD}\n" in src  # the spin bound


def test_many_more_threads_than_cores_still_agree():
    x = se.tensor("x", "float32", (512, 512))
    f = se.function([x], [se.exp(x) + 1, se.sum(se.softmax(x, axis=-1) * 2, axis=0)], backend="llvm")
    ref = se.function([x], [se.exp(x) + 1, se.sum(se.softmax(x, axis=-1) * 2, axis=0)], backend="numpy")
    a = np.random.default_rng(0).standard_normal((512, 512)).astype(np.float32)
    before = get_num_threads()
    try:
        set_num_threads(4 * (os.cpu_count() or 1))
        for _ in range(3):
            for got, want in zip(f(a), ref(a)):
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    finally:
        set_num_threads(before)


@pytest.mark.parametrize("batch", [1, 2, 5, 33])
def test_batched_gemm_runs_its_batch_on_the_pool_with_single_threaded_blas(batch):
    """Each pool thread calls BLAS on its share of the batch; BLAS's own thread count is restored after."""
    from symexpr.backends.llvm import schedule_plan

    a = se.tensor("a", "float32", (None, 7, 3))
    b = se.tensor("b", "float32", (None, 3, 40))
    f = se.function([a, b], a @ b)
    rng = np.random.default_rng(batch)
    x = rng.standard_normal((batch, 7, 3)).astype(np.float32)
    y = rng.standard_normal((batch, 3, 40)).astype(np.float32)
    set_fn, get_fn = runtime._blas_thread_functions()
    before = get_fn() if get_fn is not None else None
    with num_threads(2), pytest.MonkeyPatch.context() as m:
        m.setattr(runtime, "PARALLEL_THRESHOLD", 0)
        np.testing.assert_allclose(f(x, y), x @ y, rtol=1e-5, atol=1e-5)
    if get_fn is not None:
        assert get_fn() == before
    compiled = f._compiled
    _, _, work = schedule_plan(compiled.plan)
    if batch > 1 or compiled.plan.steps[0].batch:
        assert isinstance(compiled._latest().executable.schedule[0][1], runtime.PoolBlasSegment)
        assert work[0] > 0


def test_batched_gemm_stays_with_blas_threads_when_a_single_gemm_wakes_them():
    from symexpr.backends.llvm import schedule_plan
    from symexpr.kernel.ir import GemmKernel

    a = se.tensor("a", "float32", (None, 7, 3))
    b = se.tensor("b", "float32", (None, 3, 40))
    x = se.tensor("x", "float32", (None, 40))
    w = np.random.default_rng(0).standard_normal((40, 5)).astype(np.float32)
    f = se.function([a, b, x], [a @ b, x @ w])
    rng = np.random.default_rng(1)
    args = (rng.standard_normal((4, 7, 3)).astype(np.float32), rng.standard_normal((4, 3, 40)).astype(np.float32),
            rng.standard_normal((6, 40)).astype(np.float32))
    got = f(*args)
    np.testing.assert_allclose(got[0], args[0] @ args[1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[1], args[2] @ w, rtol=1e-5, atol=1e-5)
    plan = f._compiled.plan
    segments, schedule, work = schedule_plan(plan)
    seg_work = {item: w for (kind, item), w in zip(schedule, work) if kind == "native"}
    batched = [i for i, seg in enumerate(segments) if isinstance(plan.steps[seg[0]], GemmKernel) and plan.steps[seg[0]].batch]
    assert batched and all(seg_work[i] == 0 for i in batched)
