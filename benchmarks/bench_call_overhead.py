"""Per-call overhead: ``f(x)`` for ``f = function([x], x + 1)`` on a tiny float32 vector.

Run: ``python benchmarks/bench_call_overhead.py [--n 10] [--repeats 7] [--loops 20000]``.

Prints microseconds per call (best of ``--repeats`` timings of ``--loops`` calls
each) measured two ways: wall time (``time.perf_counter``) and the calling
thread's CPU time (``time.thread_time``).  Everything here runs on the calling
thread, so on an idle machine the two agree; on a shared one the CPU time leaves
out the time the process waited for a core and is the steadier figure.  Rows:

* ``numpy``: ``x + 1`` evaluated eagerly (the floor for anything that returns a
  fresh array);
* ``symexpr``: the llvm backend, for an input of unknown length (``se.vector``)
  and of static length (``se.tensor(shape=(n,))``);
* ``pytensor``: when installed (the ``bench`` extra), in its default C/VM mode
  (``Mode(linker="cvm")``) and in NUMBA mode, each only when it compiles here.

Then the ratio symexpr / peer (``< 1`` means symexpr has less overhead), on CPU time.
The machine is often shared: repeat the run and take the minima.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if (ROOT / "symexpr").is_dir() and str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # benchmark this checkout even when it is not pip-installed


def per_call_us(fn, arg, repeats: int, loops: int, clock) -> float:
    """Best time per call in microseconds by ``clock``."""
    fn(arg)
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        for _ in range(loops):
            fn(arg)
        best = min(best, clock() - start)
    return best / loops * 1e6


def measure(fns: dict, arg, repeats: int, loops: int) -> dict:
    """``{label: (wall us, cpu us)}``, the rows interleaved so that a burst of load hits them all."""
    best = {label: [float("inf"), float("inf")] for label in fns}
    for _ in range(repeats):
        for label, fn in fns.items():
            best[label][0] = min(best[label][0], per_call_us(fn, arg, 1, loops, time.perf_counter))
            best[label][1] = min(best[label][1], per_call_us(fn, arg, 1, loops, time.thread_time))
    return best


def symexpr_rows(n):
    import symexpr as se

    rows = {}
    x = se.vector("x", dtype="float32")
    rows["symexpr (vector)"] = se.function([x], x + 1)
    xs = se.tensor("x", dtype="float32", shape=(n,))
    rows["symexpr (static shape)"] = se.function([xs], xs + 1)
    return rows


def pytensor_rows():
    try:
        import pytensor
        import pytensor.tensor as pt
        from pytensor.compile.mode import Mode
    except Exception as exc:  # not installed, or a broken install
        return {}, [f"pytensor not available ({type(exc).__name__}: {str(exc)[:80]})"]
    rows, notes = {}, []
    x = pt.vector("x", dtype="float32")
    for label, mode in (("pytensor (C, cvm)", Mode(linker="cvm", optimizer="fast_run")), ("pytensor (NUMBA)", "NUMBA")):
        try:
            rows[label] = pytensor.function([x], x + np.float32(1), mode=mode)
            rows[label](np.ones(3, np.float32))
        except Exception as exc:
            rows.pop(label, None)
            notes.append(f"{label} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}")
    notes.insert(0, f"pytensor {pytensor.__version__}")
    return rows, notes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10, help="elements in the input vector")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--loops", type=int, default=20000)
    args = parser.parse_args()
    a = np.ones(args.n, np.float32)

    fns = {"numpy (x + 1)": lambda v: v + np.float32(1)}
    fns.update(symexpr_rows(args.n))
    pt_rows, notes = pytensor_rows()
    fns.update(pt_rows)
    for f in fns.values():
        np.testing.assert_allclose(f(a), a + 1)
    timed = measure(fns, a, args.repeats, args.loops)
    results = {label: cpu for label, (wall, cpu) in timed.items()}

    print(f"per-call time, x + 1 on {args.n} float32 (best of {args.repeats} x {args.loops} calls)")
    print(f"  {'':<26} {'wall':>8}    {'cpu':>8}")
    for label, (wall, cpu) in timed.items():
        print(f"  {label:<26} {wall:8.2f} us {cpu:8.2f} us")
    print("ratios symexpr / peer on CPU time (< 1: symexpr has less overhead)")
    for se_label in (k for k in results if k.startswith("symexpr")):
        for peer in (k for k in results if not k.startswith("symexpr")):
            print(f"  {se_label:<24} / {peer:<20} {results[se_label] / results[peer]:6.2f}")
    for note in notes:
        print("note:", note)


if __name__ == "__main__":
    main()
