"""CPU speed of the llvm backend against NumPy, numexpr and PyTensor, multi- and single-threaded.

Run: ``python benchmarks/bench_cpu.py [--quick] [--markdown]``.

One run prints a header describing the machine, then the same table twice --
with every library's default thread count (all cores) and single-threaded --
then the compile-time comparison.  Each table row gives symexpr's time, each
peer's time and the ratio peer / symexpr (``> 1`` means symexpr is faster).

* Rows: a transcendental fused expression, a pure arithmetic chain against the
  memory floor, softmax, layer_norm, three matmuls, an MLP block (tanh GELU in
  every library, so that all compute the same thing) and per-call overhead.
* Timing: one warm-up call, then the best (min) of N repeats with
  ``time.perf_counter`` (calls too short to time alone are looped, as
  ``timeit`` does), N chosen to spend ~0.4 s per library and row.
* Every result is checked against NumPy before it is timed; a wrong one is
  marked ``MISMATCH``.  A library that is not installed shows ``n/a``, a library
  without the operation ``-``; a failing symexpr row shows ``error`` and the
  message, and the rest of the run goes on.
* Threads: each table is measured in its own child process.  The single-thread
  child starts with ``OPENBLAS_NUM_THREADS=SYMEXPR_NUM_THREADS=NUMEXPR_NUM_THREADS=
  OMP_NUM_THREADS=1`` (OpenBLAS reads its thread count when it loads, so only the
  environment of a fresh process pins it reliably) and also calls
  ``symexpr.backends.llvm.set_num_threads(1)`` and ``numexpr.set_num_threads(1)``.
* PyTensor functions are compiled with ``mode="NUMBA"`` (falling back to the
  default mode, and saying so, if Numba fails on a graph).
* Memory floor (arithmetic row): ``x * y ...`` reads two 4n-byte inputs and writes one,
  12n bytes in all; ``np.copyto`` of 1.5n float32 reads 6n and writes 6n bytes, the
  same traffic, into a preallocated array (single-threaded memcpy).  NumPy's ``x + y``
  (same traffic, into a fresh output array) is shown beside it.
* Same arithmetic everywhere: children run PyTensor with ``floatX=float32`` (else it
  makes Python float constants float64 and computes in double), and numexpr gets
  ``0.5`` as a float32 variable (it reads a float literal as a double).
* Compile time: a ~100-node elementwise/reduction graph over a (256, 256) input,
  compiled in fresh child processes: cold (empty compile cache) and warm (a new
  process reusing the cache directory), for symexpr and for PyTensor.

The peers come from the ``bench`` extra: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if (ROOT / "symexpr").is_dir() and str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # benchmark this checkout even when it is not pip-installed

MARK = "@@bench@@ "  # prefix of the JSON lines a child section writes to stdout
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "SYMEXPR_NUM_THREADS", "NUMEXPR_NUM_THREADS", "OMP_NUM_THREADS",
               "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
PEERS = [("numpy", "NumPy"), ("numexpr", "numexpr"), ("pytensor", "PyTensor")]

SIZES = {
    "default": {"n": 10_000_000, "rows": 4096, "cols": 1024, "square": (1024, 2048), "rect": (4096, 384, 1536),
                "mlp": (4096, 384, 1536), "budget": 0.4, "compile_nodes": 100, "se_compiles": 3, "pt_compiles": 1,
                "chain_nodes": 20_000},
    "quick": {"n": 1_000_000, "rows": 512, "cols": 1024, "square": (256, 512), "rect": (512, 384, 1536),
              "mlp": (512, 384, 1536), "budget": 0.05, "compile_nodes": 100, "se_compiles": 1, "pt_compiles": 1,
              "chain_nodes": 2_000},
}


# ---------------------------------------------------------------------------------------------
# timing and checking
# ---------------------------------------------------------------------------------------------
def bench(fn, budget: float) -> float:
    """Seconds per call: warm up once, then the best of N timed repeats (looping calls shorter than 1 ms)."""
    fn()
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    number = 1 if once >= 1e-3 else int(1e-3 / once) + 1
    repeats = max(3, min(2000, int(budget / (once * number))))
    best = float("inf")
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(number):
                fn()
            best = min(best, time.perf_counter() - start)
    finally:
        if enabled:
            gc.enable()
    return best / number


def check(got, ref, rtol: float, atol_rel: float, dtype=True) -> str | None:
    """None when ``got`` matches ``ref`` (atol relative to max |ref|), else a short description."""
    import numpy as np

    got = np.asarray(got)
    if got.shape != ref.shape:
        return f"shape {got.shape} != {ref.shape}"
    if dtype and got.dtype != ref.dtype:
        return f"dtype {got.dtype} != {ref.dtype}"
    scale = float(np.max(np.abs(ref))) if ref.size else 1.0
    atol = atol_rel * max(scale, 1e-30)
    if not np.allclose(got, ref, rtol=rtol, atol=atol, equal_nan=True):
        err = np.abs(got.astype("float64") - ref.astype("float64"))
        return f"max abs err {float(np.nanmax(err)):.3g} (scale {scale:.3g})"
    return None


def one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


# ---------------------------------------------------------------------------------------------
# optional peers
# ---------------------------------------------------------------------------------------------
def import_numexpr():
    try:
        import numexpr

        return numexpr
    except ImportError:
        return None


def import_pytensor():
    try:
        import pytensor
        import pytensor.tensor as pt

        return pytensor, pt
    except ImportError:
        return None


def pt_compile(inputs, output, args, notes: list):
    """A PyTensor function in NUMBA mode (default mode if Numba fails), already called once."""
    import pytensor

    try:
        f = pytensor.function(inputs, output, mode="NUMBA")
        f(*args)
    except Exception as exc:  # noqa: BLE001
        notes.append(f"PyTensor NUMBA failed ({one_line(exc)[:80]}), default mode used")
        f = pytensor.function(inputs, output)
        f(*args)
    return f


# ---------------------------------------------------------------------------------------------
# the rows
# ---------------------------------------------------------------------------------------------
def gelu_tanh_np(h):
    import numpy as np

    return 0.5 * h * (1 + np.tanh(0.7978845608028654 * (h + 0.044715 * (h * h * h))))


def gelu_tanh_pt(pt, h):
    return 0.5 * h * (1 + pt.tanh(0.7978845608028654 * (h + 0.044715 * (h * h * h))))


def make_rows(size: dict):
    """(name, unit, builder) for every row; builder() returns the row's spec (see run_row)."""
    import numpy as np

    import symexpr as se

    rng = np.random.default_rng(0)
    ne = import_numexpr()
    ptmod = import_pytensor()
    pt = ptmod[1] if ptmod else None

    def f32(*shape, scale=1.0):
        a = rng.standard_normal(shape, dtype=np.float32)
        if scale != 1.0:
            a *= np.float32(scale)
        return a

    def se_fn(inputs, output):
        return se.function(inputs, output, backend="llvm")

    rows = []

    def two_vector_row(expr, ne_text, tol, ne_locals=None, extra=None):
        """A row for ``expr(m, x, y)`` over two n-element float32 vectors; ``m`` is numpy, symexpr or pytensor.tensor."""

        def row():
            n = size["n"]
            x, y = f32(n), f32(n)
            spec = {"ref": lambda: expr(np, x, y), "tol": tol, **(extra(x, y) if extra else {})}

            def symexpr_():
                sx, sy = se.tensor("x", "float32", (n,)), se.tensor("y", "float32", (n,))
                f = se_fn([sx, sy], expr(se, sx, sy))
                return lambda: f(x, y)

            def numexpr_():
                local_dict = {"x": x, "y": y, **(ne_locals or {})}
                return lambda: ne.evaluate(ne_text, local_dict=local_dict)

            def pytensor_(notes):
                px, py = pt.tensor("x", dtype="float32", shape=(n,)), pt.tensor("y", dtype="float32", shape=(n,))
                f = pt_compile([px, py], expr(pt, px, py), (x, y), notes)
                return lambda: f(x, y)

            spec.update(symexpr=symexpr_, numpy=spec["ref"], numexpr=numexpr_ if ne else None,
                        pytensor=pytensor_ if pt else None)
            return spec

        return row

    # 1. transcendental fused expression ---------------------------------------------------
    fused = two_vector_row(lambda m, x, y: m.exp(-x * x / 2) * m.sin(y) + 3 * x * y, "exp(-x*x/2)*sin(y)+3*x*y",
                           (1e-4, 1e-5))
    rows.append((f"exp(-x*x/2)*sin(y)+3*x*y, {size['n'] // 10**6}M f32", "ms", fused))

    # 2. arithmetic chain against the memory floor --------------------------------------------
    def memory_floor(x, y):
        # The expression reads 2 inputs and writes 1 output: 3 * n * 4 bytes of traffic.  Copying
        # 1.5 * n float32 (reading 6n bytes, writing 6n bytes) moves the same 12n bytes, so NumPy's
        # single-threaded copy into a preallocated array is the floor.  (The floor allocates nothing;
        # symexpr reuses its previous output array once the caller has dropped it, as the timing loop does.)
        n = x.size
        src = f32(n + n // 2)
        dst = np.empty_like(src)
        # NumPy's x + y moves the same bytes into a fresh output: the floor plus the cost of a new
        # output array (page faults), shown next to it.
        return {"floor": lambda: np.copyto(dst, src), "floor_fresh": lambda: np.add(x, y)}

    # numexpr reads a literal 0.5 as a double and would compute in float64: pass it as float32
    arith = two_vector_row(lambda m, x, y: (x * y + 3 * x - y * 0.5) * x + 2, "(x*y + 3*x - y*half)*x + 2",
                           (1e-5, 1e-6), ne_locals={"half": np.float32(0.5)}, extra=memory_floor)
    rows.append((f"(x*y+3*x-y*0.5)*x+2, {size['n'] // 10**6}M f32", "ms", arith))

    # 3. softmax ------------------------------------------------------------------------------
    def softmax():
        r, c = size["rows"], size["cols"]
        x = f32(r, c, scale=3.0)

        def ref():
            e = np.exp(x - x.max(-1, keepdims=True))
            return e / e.sum(-1, keepdims=True)

        def symexpr_():
            sx = se.tensor("x", "float32", (r, c))
            f = se_fn([sx], se.softmax(sx, axis=-1))
            return lambda: f(x)

        def pytensor_(notes):
            px = pt.tensor("x", dtype="float32", shape=(r, c))
            f = pt_compile([px], pt.special.softmax(px, axis=-1), (x,), notes)
            return lambda: f(x)

        return {"ref": ref, "tol": (1e-4, 1e-6), "symexpr": symexpr_, "numpy": ref, "numexpr": "-",
                "pytensor": pytensor_ if pt else None}

    rows.append((f"softmax ({size['rows']}, {size['cols']}) f32, last axis", "ms", softmax))

    # 4. layer_norm ---------------------------------------------------------------------------
    def layer_norm():
        r, c, eps = size["rows"], size["cols"], 1e-5
        x, w, b = f32(r, c, scale=2.0), f32(c), f32(c)

        def ref():
            mu = x.mean(-1, keepdims=True)
            d = x - mu
            var = (d * d).mean(-1, keepdims=True)
            return d / np.sqrt(var + eps) * w + b

        def symexpr_():
            sx, sw, sb = se.tensor("x", "float32", (r, c)), se.tensor("w", "float32", (c,)), se.tensor("b", "float32", (c,))
            f = se_fn([sx, sw, sb], se.layer_norm(sx, sw, sb, eps=eps))
            return lambda: f(x, w, b)

        def pytensor_(notes):
            px = pt.tensor("x", dtype="float32", shape=(r, c))
            pw, pb = pt.tensor("w", dtype="float32", shape=(c,)), pt.tensor("b", dtype="float32", shape=(c,))
            mu = px.mean(axis=-1, keepdims=True)
            d = px - mu
            var = (d * d).mean(axis=-1, keepdims=True)
            f = pt_compile([px, pw, pb], d / pt.sqrt(var + eps) * pw + pb, (x, w, b), notes)
            return lambda: f(x, w, b)

        return {"ref": ref, "tol": (1e-4, 1e-5), "symexpr": symexpr_, "numpy": ref, "numexpr": "-",
                "pytensor": pytensor_ if pt else None}

    rows.append((f"layer_norm ({size['rows']}, {size['cols']}) f32, w+b", "ms", layer_norm))

    # 5. matmul -------------------------------------------------------------------------------
    def matmul_row(m, k, n):
        def make():
            a, b = f32(m, k), f32(k, n)

            def symexpr_():
                sa, sb = se.tensor("a", "float32", (m, k)), se.tensor("b", "float32", (k, n))
                f = se_fn([sa, sb], se.matmul(sa, sb))
                return lambda: f(a, b)

            def pytensor_(notes):
                pa, pb = pt.tensor("a", dtype="float32", shape=(m, k)), pt.tensor("b", dtype="float32", shape=(k, n))
                f = pt_compile([pa, pb], pa @ pb, (a, b), notes)
                return lambda: f(a, b)

            return {"ref": lambda: a @ b, "tol": (1e-3, 1e-4), "symexpr": symexpr_, "numpy": lambda: a @ b,
                    "numexpr": "-", "pytensor": pytensor_ if pt else None}

        return make

    for s in size["square"]:
        rows.append((f"matmul {s}x{s} @ {s}x{s} f32", "ms", matmul_row(s, s, s)))
    m, k, n = size["rect"]
    rows.append((f"matmul ({m}, {k}) @ ({k}, {n}) f32", "ms", matmul_row(m, k, n)))

    # 6. MLP block ----------------------------------------------------------------------------
    def mlp():
        m, d, h = size["mlp"]
        x = f32(m, d)
        w1, b1 = f32(d, h, scale=d**-0.5), f32(h, scale=0.1)
        w2, b2 = f32(h, d, scale=h**-0.5), f32(d, scale=0.1)
        args = (x, w1, b1, w2, b2)

        def ref():
            return gelu_tanh_np(x @ w1 + b1) @ w2 + b2

        def symexpr_():
            sx = se.tensor("x", "float32", (m, d))
            sw1, sb1 = se.tensor("w1", "float32", (d, h)), se.tensor("b1", "float32", (h,))
            sw2, sb2 = se.tensor("w2", "float32", (h, d)), se.tensor("b2", "float32", (d,))
            f = se_fn([sx, sw1, sb1, sw2, sb2], se.gelu(sx @ sw1 + sb1, approximate="tanh") @ sw2 + sb2)
            return lambda: f(*args)

        def pytensor_(notes):
            px = pt.tensor("x", dtype="float32", shape=(m, d))
            pw1, pb1 = pt.tensor("w1", dtype="float32", shape=(d, h)), pt.tensor("b1", dtype="float32", shape=(h,))
            pw2, pb2 = pt.tensor("w2", dtype="float32", shape=(h, d)), pt.tensor("b2", dtype="float32", shape=(d,))
            out = gelu_tanh_pt(pt, px @ pw1 + pb1) @ pw2 + pb2
            f = pt_compile([px, pw1, pb1, pw2, pb2], out, args, notes)
            return lambda: f(*args)

        return {"ref": ref, "tol": (1e-3, 1e-4), "symexpr": symexpr_, "numpy": ref, "numexpr": "-",
                "pytensor": pytensor_ if pt else None}

    m, d, h = size["mlp"]
    rows.append((f"MLP gelu_tanh(x@W1+b1)@W2+b2, x ({m}, {d}), hidden {h}", "ms", mlp))

    # 7. call overhead ------------------------------------------------------------------------
    def overhead():
        x, y = f32(3), f32(3)

        def symexpr_():
            sx, sy = se.tensor("x", "float32", (3,)), se.tensor("y", "float32", (3,))
            f = se_fn([sx, sy], sx * sy + 1)
            return lambda: f(x, y)

        def numexpr_():
            return lambda: ne.evaluate("x*y+1", local_dict={"x": x, "y": y})

        def pytensor_(notes):
            px, py = pt.tensor("x", dtype="float32", shape=(3,)), pt.tensor("y", dtype="float32", shape=(3,))
            f = pt_compile([px, py], px * py + 1, (x, y), notes)
            return lambda: f(x, y)

        return {"ref": lambda: x * y + 1, "tol": (1e-6, 1e-7), "symexpr": symexpr_, "numpy": lambda: x * y + 1,
                "numexpr": numexpr_ if ne else None, "pytensor": pytensor_ if pt else None}

    rows.append(("call overhead: x*y+1 on 3 f32", "us", overhead))
    return rows


def run_row(name: str, unit: str, make, budget: float) -> dict:
    """Check and time every library on one row; never raises."""
    result = {"name": name, "unit": unit, "times": {}, "status": {}, "notes": []}
    try:
        spec = make()
        ref = spec["ref"]()
    except Exception as exc:  # noqa: BLE001
        result["notes"].append(f"setup error: {one_line(exc)}")
        return result
    rtol, atol_rel = spec["tol"]
    for key in ("symexpr", "numpy", "numexpr", "pytensor", "floor", "floor_fresh"):
        if key not in spec:
            continue
        entry = spec[key]
        if entry is None:
            result["status"][key] = "n/a"
            continue
        if entry == "-":
            result["status"][key] = "-"
            continue
        try:
            if key in ("numpy", "floor", "floor_fresh"):
                call = entry
            elif key == "pytensor":
                call = entry(result["notes"])
            else:
                call = entry()
            if not key.startswith("floor"):
                bad = check(call(), ref, rtol, atol_rel)
                if bad:
                    result["notes"].append(f"{key} MISMATCH: {bad}")
                    result["status"][key] = "MISMATCH"
            result["times"][key] = bench(call, budget)
            result["status"].setdefault(key, "ok")
        except Exception as exc:  # noqa: BLE001
            result["status"][key] = "error"
            result["notes"].append(f"{key} error: {one_line(exc)}")
    if "floor" in result["times"] and "symexpr" in result["times"]:
        ratio = result["times"]["symexpr"] / result["times"]["floor"]
        result["notes"].append(
            f"memory floor (np.copyto of 1.5x one input = same bytes moved) {fmt_time(result['times']['floor'], unit)}"
            f" {unit}; symexpr/floor {ratio:.2f} (target <= 1.3: {'met' if ratio <= 1.3 else 'MISSED'})"
        )
        if "floor_fresh" in result["times"]:
            fresh = result["times"]["floor_fresh"]
            result["notes"].append(
                f"NumPy x+y (same bytes, fresh output) {fmt_time(fresh, unit)} {unit};"
                f" symexpr/(x+y) {result['times']['symexpr'] / fresh:.2f}"
            )
    return result


def thread_report() -> dict:
    import ctypes

    import numpy as np

    from symexpr.backends.llvm import get_num_threads

    out = {"symexpr": get_num_threads()}
    ne = import_numexpr()
    if ne is not None:
        out["numexpr"] = ne.get_num_threads() if hasattr(ne, "get_num_threads") else getattr(ne, "nthreads", "?")
    for lib in _openblas_libs(np):
        for fn in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_", "openblas_get_num_threads"):
            try:
                out["OpenBLAS"] = int(getattr(ctypes.CDLL(lib), fn)())
                return out
            except (OSError, AttributeError):
                continue
    return out


def _openblas_libs(np):
    import glob

    root = os.path.dirname(os.path.dirname(np.__file__))
    return glob.glob(os.path.join(root, "numpy.libs", "*openblas*")) + glob.glob(os.path.join(root, "numpy", ".dylibs", "*openblas*"))


def section_rows(size: dict, single: bool) -> None:
    """Child process: time every row, one JSON line per row on stdout."""
    from symexpr.backends.llvm import set_num_threads

    if single:
        set_num_threads(1)
        ne = import_numexpr()
        if ne is not None:
            ne.set_num_threads(1)
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(1)
        except ImportError:
            pass  # OPENBLAS_NUM_THREADS=1 in this process's environment does it
    emit({"threads": thread_report()})
    for name, unit, make in make_rows(size):
        print(f"  {'1 thread' if single else 'default threads'}: {name} ...", file=sys.stderr, flush=True)
        emit({"row": run_row(name, unit, make, size["budget"])})


def emit(obj) -> None:
    print(MARK + json.dumps(obj), flush=True)


# ---------------------------------------------------------------------------------------------
# compile time
# ---------------------------------------------------------------------------------------------
def build_compile_graph(lib, nodes: int):
    """The same chain of ~``nodes`` ops (exp/sin/mul/add/sub/div/sum) with lib = symexpr or pytensor.tensor."""
    x = lib.tensor("x", dtype="float32", shape=(256, 256))
    v = x
    count, i = 0, 0
    while count < nodes:
        k = i % 5
        if k == 0:
            v, c = lib.exp(-(v * v)), 3            # mul, neg, exp
        elif k == 1:
            v, c = lib.sin(v) + x, 2               # sin, add
        elif k == 2:
            v, c = v * 0.5 + 1.0, 2                # mul, add
        elif k == 3:
            v, c = v - v.sum(axis=1, keepdims=True) / 256.0, 3   # sum, div, sub
        else:
            v, c = v + v.sum(axis=0) * 1e-3, 3     # sum, mul, add (broadcast over rows)
        count += c
        i += 1
    return x, v  # a (256, 256) output: well conditioned to check (a final total would mostly cancel)


def section_compile_se(nodes: int) -> None:
    """Child process: time symexpr's compile of the compile-graph (cache dir comes from the environment)."""
    import importlib.util

    import numpy as np

    import symexpr as se

    x, out = build_compile_graph(se, nodes)
    n_nodes = len(se.FunctionGraph([x], [out]).toposort())
    result = {"nodes": n_nodes, "cache_module": importlib.util.find_spec("symexpr.runtime.cache") is not None}
    try:
        # Importing the backend (llvmlite's shared library) is a once-per-process cost, timed apart,
        # as PyTensor's imports are outside its timings.
        start = time.perf_counter()
        se.backends.get_backend("llvm")
        result["import_s"] = time.perf_counter() - start
        start = time.perf_counter()
        f = se.function([x], out, backend="llvm")
        result["function_s"] = time.perf_counter() - start
        a = np.random.default_rng(1).standard_normal((256, 256), dtype=np.float32)
        start = time.perf_counter()
        got = f(a)
        result["first_call_s"] = time.perf_counter() - start
        try:
            result["cache_hit"] = bool(f._compiled._latest().cache_hit)
        except AttributeError:
            pass
        ref = se.function([x], out, backend="numpy")(a)
        bad = check(got, np.asarray(ref), 1e-3, 1e-4)
        if bad:
            result["mismatch"] = bad
    except Exception as exc:  # noqa: BLE001
        result["error"] = one_line(exc)
    emit(result)


def build_chain(lib, nodes: int):
    """A chain of ``nodes`` ops on a vector of unknown length: ``v + 0.5`` and ``sin(v) * 0.999`` in turn."""
    x = lib.tensor("x", dtype="float32", shape=(None,))
    v = x
    for i in range(nodes // 2):
        v = lib.sin(v) * 0.999 if i % 2 else v + 0.5
    return x, v


def section_compile_chain(nodes: int) -> None:
    """Child process: symexpr's cold compile of a ``nodes``-op chain (cache dir from the environment)."""
    import resource

    import numpy as np

    import symexpr as se

    se.backends.get_backend("llvm")
    x, out = build_chain(se, nodes)
    result = {"nodes": nodes}
    try:
        start = time.perf_counter()
        f = se.function([x], out, backend="llvm")
        result["function_s"] = time.perf_counter() - start
        a = np.linspace(0, 1, 1000, dtype=np.float32)
        bad = check(f(a), np.asarray(se.function([x], out, backend="numpy")(a)), 1e-3, 1e-4)
        if bad:
            result["mismatch"] = bad
        result["peak_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    except Exception as exc:  # noqa: BLE001
        result["error"] = one_line(exc)
    emit(result)


def measure_chain(nodes: int) -> str:
    """One line: the cold compile of a ``nodes``-op chain in a fresh process."""
    cache_dir = tempfile.mkdtemp(prefix="symexpr-bench-chain-")
    try:
        env = child_env({**{k: v for k, v in os.environ.items() if k != "SYMEXPR_CACHE"}, "SYMEXPR_CACHE_DIR": cache_dir})
        objs, err = run_child(["--section", "compile-chain", "--nodes", str(nodes)], env)
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    r = (objs + [{}])[0]
    if err or "error" in r or "function_s" not in r:
        return f"{nodes}-op chain: failed ({err or r.get('error', 'no result')})"
    goal = "met" if r["function_s"] < 10 else "MISSED"
    line = f"{nodes}-op chain (add/mul/sin, vector of unknown length), cold function(): {fmt_s(r['function_s'])}"
    line += f", peak memory {r['peak_gb']:.2f} GB; target < 10 s: {goal}"
    return line + (f"; MISMATCH: {r['mismatch']}" if "mismatch" in r else "")


def section_compile_pt(nodes: int) -> None:
    """Child process: time PyTensor's compile (NUMBA mode) of the compile-graph; compiledir from PYTENSOR_FLAGS."""
    import numpy as np

    result = {}
    try:
        import pytensor
        import pytensor.tensor as pt
    except ImportError:
        emit({"missing": True})
        return
    x, out = build_compile_graph(pt, nodes)
    a = np.random.default_rng(1).standard_normal((256, 256), dtype=np.float32)
    for mode in ("NUMBA", None):
        try:
            start = time.perf_counter()
            if str(out.dtype) != "float32":
                result["dtype"] = str(out.dtype)
            f = pytensor.function([x], out, mode=mode) if mode else pytensor.function([x], out)
            result["function_s"] = time.perf_counter() - start
            start = time.perf_counter()
            f(a)
            result["first_call_s"] = time.perf_counter() - start
            result["mode"] = mode or str(pytensor.config.mode)
            break
        except Exception as exc:  # noqa: BLE001
            result["error"] = one_line(exc)
    else:
        emit(result)
        return
    result.pop("error", None)
    emit(result)


def run_child(args: list, env: dict, timeout: float = 900) -> tuple[list, str | None]:
    """Run this script with ``args`` and ``env``; the JSON objects it emitted, and an error line if it failed."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    try:
        proc = subprocess.run(cmd, check=False, env=env, stdout=subprocess.PIPE, stderr=None, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return [], f"child timed out after {timeout:.0f} s"
    objs = [json.loads(line[len(MARK):]) for line in proc.stdout.splitlines() if line.startswith(MARK)]
    err = None if proc.returncode == 0 else f"child process exited with code {proc.returncode}"
    return objs, err


def measure_compile(size: dict) -> dict:
    nodes = size["compile_nodes"]
    base = child_env({k: v for k, v in os.environ.items() if k not in ("SYMEXPR_CACHE",)})
    res: dict = {"se": {}, "pt": {}}

    def best(runs, key):
        values = [r[key] for r in runs if key in r]
        return min(values) if values else None

    # symexpr: each cold run in a fresh cache dir, then warm runs (new processes) reusing the last one.
    cold, warm, errors = [], [], []
    cache_dir = None
    for _ in range(size["se_compiles"]):
        if cache_dir:
            shutil.rmtree(cache_dir, ignore_errors=True)
        cache_dir = tempfile.mkdtemp(prefix="symexpr-bench-cache-")
        objs, err = run_child(["--section", "compile-se", "--nodes", str(nodes)], {**base, "SYMEXPR_CACHE_DIR": cache_dir})
        cold += objs
        errors += [err] if err else []
    for _ in range(size["se_compiles"]):
        objs, err = run_child(["--section", "compile-se", "--nodes", str(nodes)], {**base, "SYMEXPR_CACHE_DIR": cache_dir})
        warm += objs
        errors += [err] if err else []
    shutil.rmtree(cache_dir, ignore_errors=True)
    info = (cold + warm + [{}])[0]
    res["se"] = {
        "nodes": info.get("nodes"),
        "cache_module": info.get("cache_module", False),
        "cold": best(cold, "function_s"), "cold_first": best(cold, "first_call_s"),
        "warm": best(warm, "function_s"), "warm_first": best(warm, "first_call_s"),
        "import": best(cold + warm, "import_s"),
        "warm_hits": [r.get("cache_hit") for r in warm],
        "errors": sorted({r["error"] for r in cold + warm if "error" in r} | set(errors)),
        "mismatch": sorted({r["mismatch"] for r in cold + warm if "mismatch" in r}),
    }

    # PyTensor: cold in a fresh base_compiledir (and Numba cache dir), warm in new processes reusing them.
    cold, warm, errors = [], [], []
    pt_dir = None
    for _ in range(size["pt_compiles"]):
        if pt_dir:
            shutil.rmtree(pt_dir, ignore_errors=True)
        pt_dir = tempfile.mkdtemp(prefix="pytensor-bench-")
        env = pt_env(base, pt_dir)
        objs, err = run_child(["--section", "compile-pt", "--nodes", str(nodes)], env)
        cold += objs
        errors += [err] if err else []
    for _ in range(size["pt_compiles"]):
        objs, err = run_child(["--section", "compile-pt", "--nodes", str(nodes)], pt_env(base, pt_dir))
        warm += objs
        errors += [err] if err else []
    shutil.rmtree(pt_dir, ignore_errors=True)
    res["pt"] = {
        "missing": any(r.get("missing") for r in cold),
        "mode": next((r["mode"] for r in cold + warm if "mode" in r), None),
        "dtypes": sorted({r["dtype"] for r in cold + warm if "dtype" in r}),
        "cold": best(cold, "function_s"), "cold_first": best(cold, "first_call_s"),
        "warm": best(warm, "function_s"), "warm_first": best(warm, "first_call_s"),
        "import": best(cold + warm, "import_s"),
        "errors": sorted({r["error"] for r in cold + warm if "error" in r and "function_s" not in r} | set(errors)),
    }
    return res


def with_pytensor_flags(env: dict, *flags: str) -> dict:
    old = env.get("PYTENSOR_FLAGS", "")
    return {**env, "PYTENSOR_FLAGS": ",".join(f for f in (old, *flags) if f)}


def child_env(env: dict) -> dict:
    """floatX=float32, so that PyTensor keeps Python float constants (0.5, 1e-5, sqrt(2/pi)) in float32, as the others do."""
    return with_pytensor_flags(env, "floatX=float32")


def pt_env(base: dict, directory: str) -> dict:
    flags = base.get("PYTENSOR_FLAGS", "")
    # PyTensor keeps both its compiledir and its Numba cache (base_compiledir/numba) under base_compiledir.
    flags = ",".join(f for f in (flags, f"base_compiledir={directory}") if f)
    return {**base, "PYTENSOR_FLAGS": flags, "NUMBA_CACHE_DIR": f"{directory}/numba-own"}


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------
def fmt_time(seconds, unit: str) -> str:
    if seconds is None:
        return "n/a"
    value = seconds * (1e6 if unit == "us" else 1e3)
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def fmt_s(seconds) -> str:
    if seconds is None:
        return "n/a"
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def machine_header() -> list[str]:
    import numpy as np

    lines = []
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        model = platform.processor() or "unknown"
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    lines.append(f"CPU: {model}, {cores} cores available (sched_getaffinity), {platform.system()} {platform.machine()}")
    try:
        import llvmlite
        import llvmlite.binding as llvm

        host = llvm.get_host_cpu_name()
        lines.append(f"llvmlite {llvmlite.__version__}, LLVM {'.'.join(map(str, llvm.llvm_version_info))}, host CPU '{host}'")
    except Exception as exc:  # noqa: BLE001
        lines.append(f"llvmlite: {one_line(exc)}")
    blas = "unknown BLAS"
    try:
        cfg = np.show_config(mode="dicts")
        info = cfg["Build Dependencies"]["blas"]
        blas = f"{info.get('name')} {info.get('version')}"
        conf = info.get("openblas configuration")
        if conf:
            blas += f" ({conf})"
    except Exception as exc:  # noqa: BLE001
        blas = f"unknown BLAS ({one_line(exc)})"
    lines.append(f"Python {platform.python_version()}, NumPy {np.__version__} with {blas}")
    try:
        import symexpr

        lines.append(f"symexpr {symexpr.__version__} ({Path(symexpr.__file__).parent})")
    except Exception as exc:  # noqa: BLE001
        lines.append(f"symexpr: {one_line(exc)}")
    peers = []
    ne = import_numexpr()
    peers.append(f"numexpr {ne.__version__}" if ne else "numexpr not installed")
    ptmod = import_pytensor()
    if ptmod:
        try:
            import numba

            nb = f", Numba {numba.__version__}"
        except ImportError:
            nb = ", Numba not installed"
        peers.append(f"PyTensor {ptmod[0].__version__} (mode NUMBA{nb})")
    else:
        peers.append("PyTensor not installed")
    try:
        import threadpoolctl  # noqa: F401

        peers.append("threadpoolctl present")
    except ImportError:
        peers.append("threadpoolctl absent (single-thread run pins BLAS with OPENBLAS_NUM_THREADS=1)")
    lines.append("Peers: " + ", ".join(peers))
    return lines


def render_table(header: list[str], rows: list[list[str]], markdown: bool, right: set) -> list[str]:
    if markdown:
        esc = [[c.replace("|", "\\|") for c in r] for r in rows]
        out = ["| " + " | ".join(header) + " |",
               "|" + "|".join("---:" if i in right else "---" for i in range(len(header))) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in esc]
        return out
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i]) for i in range(len(header))]
    widths[-1] = len(header[-1])  # notes column: no padding

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return [line(header), line(["-" * w for w in widths[:-1]] + ["-" * len(header[-1])])] + [line(r) for r in rows]


def time_cell(row: dict, key: str) -> str:
    status = row["status"].get(key)
    if status is None:
        return "-"
    if status in ("n/a", "-", "error"):
        return status
    cell = fmt_time(row["times"].get(key), row["unit"])
    return cell + (" MISMATCH" if status == "MISMATCH" else "")


def ratio_cell(row: dict, key: str) -> str:
    se_t, peer_t = row["times"].get("symexpr"), row["times"].get(key)
    if se_t is None or peer_t is None:
        return "n/a" if row["status"].get(key) not in ("-",) else "-"
    return f"{peer_t / se_t:.2f}x"


def print_rows_table(title: str, threads: dict | None, rows: list[dict], error: str | None, markdown: bool) -> None:
    print()
    print(f"### {title}" if markdown else title)
    if threads:
        print(("threads: " + ", ".join(f"{k} {v}" for k, v in threads.items())) + ("\n" if markdown else ""))
    header = ["benchmark", "unit", "symexpr"]
    for _, label in PEERS:
        header += [label, f"{label}/se"]
    header.append("notes")
    right = set(range(2, len(header) - 1))
    cells = []
    for row in rows:
        r = [row["name"], row["unit"].replace("us", "µs"), time_cell(row, "symexpr")]
        for key, _ in PEERS:
            r += [time_cell(row, key), ratio_cell(row, key)]
        r.append("; ".join(row["notes"]))
        cells.append(r)
    for line in render_table(header, cells, markdown, right):
        print(line)
    if error:
        print(f"({error}; rows after the last one shown are missing)")


def print_compile_table(res: dict, markdown: bool) -> None:
    se_r, pt_r = res["se"], res["pt"]
    print()
    title = f"Compile time: {se_r.get('nodes') or '~100'}-node elementwise/reduction graph on a (256, 256) f32 input"
    print(f"### {title}" if markdown else title)
    print("(each run in a fresh process; cold = empty compile cache, warm = a new process reusing the cache dir;"
          " function() is what se.function/pytensor.function take, + 1st call adds the first call, where"
          " PyTensor's Numba JIT compiles)" + ("\n" if markdown else ""))
    header = ["compiler", "cold function()", "cold + 1st call", "warm function()", "warm + 1st call", "notes"]
    rows = []

    notes = []
    if se_r["errors"]:
        notes += [f"error: {e}" for e in se_r["errors"]]
    if se_r["mismatch"]:
        notes += [f"MISMATCH: {m}" for m in se_r["mismatch"]]
    cold_total = None if se_r["cold"] is None or se_r["cold_first"] is None else se_r["cold"] + se_r["cold_first"]
    if se_r["cold"] is not None:
        notes.append(f"cold target < 0.3 s: {'met' if se_r['cold'] < 0.3 else 'MISSED'}")
    if not se_r["cache_module"]:
        warm_fn = warm_total = "n/a (cache missing)"
    else:
        warm_fn = fmt_s(se_r["warm"])
        warm_total = fmt_s(None if se_r["warm"] is None or se_r["warm_first"] is None else se_r["warm"] + se_r["warm_first"])
        if se_r["warm"] is not None:
            notes.append(f"warm target < 20 ms: {'met' if se_r['warm'] < 0.02 else 'MISSED'}")
        if se_r.get("import") is not None:
            notes.append(f"importing the llvm backend once per process: {fmt_s(se_r['import'])}, not included")
        hits = se_r["warm_hits"]
        if hits and not all(hits):
            notes.append(f"warm runs cache hits: {hits}")
    rows.append(["symexpr (llvm)", fmt_s(se_r["cold"]), fmt_s(cold_total), warm_fn, warm_total, "; ".join(notes)])

    if pt_r.get("missing"):
        rows.append(["PyTensor", "n/a", "n/a", "n/a", "n/a", "not installed"])
    else:
        def tot(a, b):
            return None if a is None or b is None else a + b

        notes = [f"mode {pt_r['mode']}"] if pt_r.get("mode") else []
        notes += [f"computes in {d}" for d in pt_r.get("dtypes", [])]
        notes += [f"error: {e}" for e in pt_r["errors"]]
        rows.append(["PyTensor", fmt_s(pt_r["cold"]), fmt_s(tot(pt_r["cold"], pt_r["cold_first"])),
                     fmt_s(pt_r["warm"]), fmt_s(tot(pt_r["warm"], pt_r["warm_first"])), "; ".join(notes)])
    for line in render_table(header, rows, markdown, set(range(1, 5))):
        print(line)


def run_rows_section(args, single: bool) -> tuple[dict | None, list, str | None]:
    env = child_env({k: v for k, v in os.environ.items() if k not in THREAD_VARS})
    if single:
        env.update({k: "1" for k in THREAD_VARS})
    cmd = ["--section", "rows-1" if single else "rows"] + (["--quick"] if args.quick else [])
    objs, err = run_child(cmd, env, timeout=1800)
    threads = next((o["threads"] for o in objs if "threads" in o), None)
    rows = [o["row"] for o in objs if "row" in o]
    return threads, rows, err


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and short timings (a smoke test, < 60 s)")
    parser.add_argument("--markdown", action="store_true", help="print the tables as GitHub markdown")
    parser.add_argument("--section", help=argparse.SUPPRESS)
    parser.add_argument("--nodes", type=int, default=100, help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = SIZES["quick" if args.quick else "default"]

    if args.section in ("rows", "rows-1"):
        section_rows(size, single=args.section == "rows-1")
        return
    if args.section == "compile-se":
        section_compile_se(args.nodes)
        return
    if args.section == "compile-chain":
        section_compile_chain(args.nodes)
        return
    if args.section == "compile-pt":
        section_compile_pt(args.nodes)
        return

    started = time.perf_counter()
    md = args.markdown
    title = "symexpr llvm backend vs NumPy / numexpr / PyTensor on CPU" + (" (--quick sizes)" if args.quick else "")
    print(f"## {title}" if md else title)
    print()
    for line in machine_header():
        print(f"- {line}" if md else line)
    print()
    print("Times are the best of N runs after one warm-up (ms, or µs per call); peer/se = peer time / symexpr time,"
          " > 1 means symexpr is faster. Each result is checked against NumPy first.")
    sys.stdout.flush()

    for single in (False, True):
        threads, rows, err = run_rows_section(args, single)
        title = "Single thread" if single else "Multi-threaded (each library's default thread count)"
        print_rows_table(title, threads, rows, err, md)
        sys.stdout.flush()

    print("  compile time ...", file=sys.stderr, flush=True)
    print_compile_table(measure_compile(size), md)
    print()
    print(measure_chain(size["chain_nodes"]))
    print()
    print(f"(total benchmark time {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
