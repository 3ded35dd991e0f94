"""Thread-count sensitivity of the llvm backend: oversubscription and BLAS/symexpr contention.

Run: ``python benchmarks/bench_threads.py [--section oversub|transformer|all] [--quick]``.

Two sections, each printing times and ratios (no pass/fail: the machine is
usually shared, so run it twice and take the minima):

``oversub``
    softmax, layer_norm and softmax over a (2048, 256) float32 matrix (one native
    segment of four kernels separated by three barriers, far above the parallel
    threshold) called with
    ``set_num_threads(n)`` for n = 1, 2, 4, 8, 16, whatever the number of cores.
    More threads than cores is oversubscription: with a pure spin barrier a
    thread waits for one that is not running until the scheduler preempts it.
    Printed: min and median ms per call and their ratios to ``n = cores``
    (the median shows the preemption stalls that a lucky minimum hides).

``transformer``
    One forward of a MiniLM-sized pre-norm block (dim 384, 12 heads, hidden
    1536, 128 tokens; :mod:`symexpr.examples.transformer`), matmuls on the
    bundled OpenBLAS, in a fresh child process per setting:

    * ``default``: no thread settings at all (what a user gets);
    * ``BLAS 1``: symexpr's default count, OpenBLAS limited to one thread with
      threadpoolctl after compiling (the BLAS share of the contention);
    * ``1 thread``: ``SYMEXPR_NUM_THREADS=1`` and ``OPENBLAS_NUM_THREADS=1`` (the
      environment variable too, so that code without the threadpoolctl tie-in
      is measured the same way),

    each with ``cores - 1`` busy-loop processes running (``--no-load`` to skip
    them), the "other core loaded" case of a shared machine.  Printed: ms per
    forward and the ratio default / 1 thread.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if (ROOT / "symexpr").is_dir() and str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # benchmark this checkout even when it is not pip-installed

MARK = "@@bench_threads@@ "
THREAD_VARS = ("SYMEXPR_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def best_ms(f, args, budget_s: float, min_calls: int = 3) -> float:
    """Best single-call time in ms after one warm-up call, over ``budget_s`` seconds (at least ``min_calls`` calls)."""
    f(*args)
    best, calls, start = float("inf"), 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < budget_s:
        t0 = time.perf_counter()
        f(*args)
        best = min(best, time.perf_counter() - t0)
        calls += 1
    return best * 1e3


class BusyLoad:
    """``n`` busy-loop processes for the duration of a ``with`` block."""

    def __init__(self, n: int):
        self.n, self.procs = n, []

    def __enter__(self):
        for _ in range(self.n):
            self.procs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
        time.sleep(0.2)
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()
        return False


# -- oversubscription ------------------------------------------------------------------
def times_ms(f, args, budget_s: float, min_calls: int = 5) -> list[float]:
    """Single-call times in ms after one warm-up call, over ``budget_s`` seconds (at least ``min_calls`` calls)."""
    f(*args)
    out, start = [], time.perf_counter()
    while len(out) < min_calls or time.perf_counter() - start < budget_s:
        t0 = time.perf_counter()
        f(*args)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def oversub_graph():
    """softmax(x) -> * 3 + x -> layer_norm -> softmax over axis 0: one segment of four kernels (three barriers)."""
    import numpy as np

    import symexpr as se

    x = se.matrix("x")
    y = se.softmax(x, axis=-1)
    y = se.layer_norm(y * 3.0 + x, se.constant(np.ones(256, np.float32)), se.constant(np.zeros(256, np.float32)))
    return se.function([x], se.softmax(y, axis=0))


def oversub_reference(a):
    """The same computation in NumPy (float64)."""
    import numpy as np

    def softmax(t, axis):
        e = np.exp(t - t.max(axis, keepdims=True))
        return e / e.sum(axis, keepdims=True)

    t = softmax(a.astype(np.float64), -1) * 3.0 + a
    t = (t - t.mean(-1, keepdims=True)) / np.sqrt(t.var(-1, keepdims=True) + 1e-5)
    return softmax(t, 0)


def oversub(args) -> None:
    import statistics

    import numpy as np

    from symexpr.backends.llvm import get_num_threads, set_num_threads

    f = oversub_graph()
    a = np.random.default_rng(0).standard_normal((2048, 256)).astype(np.float32)
    np.testing.assert_allclose(f(a), oversub_reference(a), rtol=1e-3, atol=1e-6)
    n_cores = cores()
    counts = sorted({1, 2, n_cores, 4, 8, 16})
    previous = get_num_threads()
    stats = {}
    try:
        for n in counts:
            set_num_threads(n)
            t = times_ms(f, (a,), 0.5 if args.quick else 2.0)
            stats[n] = (min(t), statistics.median(t), len(t))
    finally:
        set_num_threads(previous)
    ref = stats[n_cores]
    print(f"softmax/layer_norm/softmax segment, (2048, 256) float32, {n_cores} cores "
          f"(default threads here: {previous})")
    print(f"  threads      min ms   median ms  calls   min/min({n_cores})  median/median({n_cores})")
    for n in counts:
        lo, med, calls = stats[n]
        print(f"  {n:7d} {lo:11.3f} {med:11.3f} {calls:6d} {lo / ref[0]:14.2f} {med / ref[1]:18.2f}")


# -- transformer forward under load ------------------------------------------------------
def transformer_child() -> None:
    import numpy as np

    import symexpr as se
    from symexpr.backends.llvm import get_num_threads
    from symexpr.examples.transformer import BlockConfig, build_block, causal_mask, make_weights

    cfg = BlockConfig(dim=384, heads=12, hidden=1536)
    inputs, out = build_block(cfg, make_weights(cfg))
    f = se.function(inputs, out)
    ids = np.random.default_rng(0).integers(0, cfg.vocab, size=128)
    mask = causal_mask(128)
    f(ids, mask)  # compiles (the input shapes are known at call time only) and binds BLAS
    if os.environ.get("BENCH_BLAS_THREADS"):  # after binding, which sets BLAS to symexpr's count
        from threadpoolctl import threadpool_limits

        threadpool_limits(int(os.environ["BENCH_BLAS_THREADS"]), user_api="blas")
    budget = float(os.environ.get("BENCH_BUDGET_S", "3"))
    with BusyLoad(int(os.environ.get("BENCH_LOAD", "0"))):
        ms = best_ms(f, (ids, mask), budget)
    blas = None
    try:
        from threadpoolctl import threadpool_info

        blas = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
    except ImportError:
        pass
    print(MARK + json.dumps({"ms": ms, "symexpr_threads": get_num_threads(), "blas_threads": blas}))


def transformer(args) -> None:
    load = 0 if args.no_load else max(cores() - 1, 1)
    settings = {
        "default": {},
        "BLAS 1": {"BENCH_BLAS_THREADS": "1"},
        "1 thread": {"SYMEXPR_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
    }
    results = {}
    for label, extra in settings.items():
        env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
        env.update(extra, BENCH_LOAD=str(load), BENCH_BUDGET_S="1.5" if args.quick else "4")
        proc = subprocess.run([sys.executable, __file__, "--child-transformer"], env=env, capture_output=True,
                              text=True, timeout=900)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
        if proc.returncode or not lines:
            print(f"  {label}: failed (rc {proc.returncode}): {proc.stderr.strip()[-300:]}")
            continue
        results[label] = json.loads(lines[-1][len(MARK):])
    print(f"MiniLM-sized block forward (128 tokens), {load} busy-loop process(es) on {cores()} cores")
    for label, r in results.items():
        print(f"  {label:<9} {r['ms']:10.2f} ms   "
              f"(symexpr threads {r['symexpr_threads']}, BLAS threads {r['blas_threads']})")
    if "default" in results and "1 thread" in results:
        print(f"  ratio default / 1 thread: {results['default']['ms'] / results['1 thread']['ms']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--section", choices=["oversub", "transformer", "all"], default="all")
    parser.add_argument("--quick", action="store_true", help="shorter timing budgets")
    parser.add_argument("--no-load", action="store_true", help="transformer: no busy-loop processes")
    parser.add_argument("--child-transformer", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_transformer:
        transformer_child()
        return
    if args.section in ("oversub", "all"):
        oversub(args)
    if args.section in ("transformer", "all"):
        transformer(args)


if __name__ == "__main__":
    main()
