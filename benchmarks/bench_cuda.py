"""GPU speed of the cuda backend against the device's copy bandwidth, CuPy and cuBLAS.

Run on a machine with a CUDA GPU: ``python benchmarks/bench_cuda.py [--quick]`` (needs the
``cuda`` extra).  Without a device it says so and exits.  Rows (float32 unless named):

* fused elementwise ``exp(-x*x) * sin(y) + tanh(0.5*x)`` and an arithmetic chain, as a
  fraction of the device's copy bandwidth (``cupy.copyto`` of the same bytes): goal >= 80%;
* softmax and layer_norm over rows of 1024 against CuPy's own expressions;
* an int8 linear (``QLinear``, per-token and per-channel scales) against ``cupy.matmul`` in
  float16 (cuBLAS) at (M, K, N) = (4096, 4096, 4096): goal >= 1.3x.

Times are CUDA-event medians after a warm-up; every result is checked against CuPy first.
This script has not yet run on a GPU (none has been available): expect to fix it on first use.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import symexpr as se  # noqa: E402
from symexpr.backends.cuda import runtime  # noqa: E402


def gpu_time(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` by CUDA events, after one warm-up call."""
    import cupy

    fn()
    times = []
    for _ in range(repeats):
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, stop) / 1e3)
    return float(np.median(times))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes")
    args = parser.parse_args()
    if not runtime.device_available():
        print("no CUDA device here: nothing to measure")
        return 0
    import cupy

    from symexpr.ops import quant as Q

    n = 1 << (22 if args.quick else 26)
    reps = 5 if args.quick else 20
    rng = np.random.default_rng(0)
    x_h = rng.standard_normal(n).astype(np.float32)
    y_h = rng.standard_normal(n).astype(np.float32)
    x, y = cupy.asarray(x_h), cupy.asarray(y_h)
    vx, vy = se.vector("x", dtype="float32"), se.vector("y", dtype="float32")
    rows = []

    def compiled_run(f, *arrays):
        run = f._compiled  # the dispatcher: device arrays straight in, no NumPy checks or copies
        return lambda: run(list(arrays))

    copy_out = cupy.empty(n + n // 2, dtype=np.float32)
    copy_src = cupy.empty_like(copy_out)
    t_copy = gpu_time(lambda: cupy.copyto(copy_out, copy_src), reps)  # 12n bytes moved, as 2 reads + 1 write of 4n
    for name, expr in (("elementwise exp/sin/tanh", se.exp(-vx * vx) * se.sin(vy) + se.tanh(vx * 0.5)),
                       ("arithmetic chain", (vx * vy + 0.5) * (vx - vy) / (vy * vy + 1.0))):
        f = se.function([vx, vy], expr, backend="cuda")
        got = f._compiled([x, y])[0]
        want = se.function([vx, vy], expr, backend="numpy")(x_h[:4096], y_h[:4096])
        assert np.allclose(cupy.asnumpy(got[:4096]), want, rtol=1e-5, atol=1e-6), name
        t = gpu_time(compiled_run(f, x, y), reps)
        rows.append((name, t, f"{t_copy / t:.0%} of copy bandwidth"))

    m = se.matrix("m", dtype="float32")
    a = cupy.asarray(rng.standard_normal((16384 if not args.quick else 2048, 1024)).astype(np.float32))
    f = se.function([m], se.softmax(m, axis=-1), backend="cuda")
    t = gpu_time(compiled_run(f, a), reps)

    def cupy_softmax():
        e = cupy.exp(a - a.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    rows.append(("softmax (rows of 1024)", t, f"CuPy/se {gpu_time(cupy_softmax, reps) / t:.2f}x"))
    g = np.ones(1024, np.float32)
    f = se.function([m], se.layer_norm(m, se.constant(g), se.constant(0 * g)), backend="cuda")
    t = gpu_time(compiled_run(f, a), reps)

    def cupy_layer_norm():
        mu = a.mean(axis=-1, keepdims=True)
        return (a - mu) / cupy.sqrt(((a - mu) ** 2).mean(axis=-1, keepdims=True) + 1e-5)

    rows.append(("layer_norm (rows of 1024)", t, f"CuPy/se {gpu_time(cupy_layer_norm, reps) / t:.2f}x"))

    mm, kk, nn = (1024, 1024, 1024) if args.quick else (4096, 4096, 4096)
    w = rng.integers(-127, 128, (kk, nn)).astype(np.int8)
    xq, sx = se.tensor("xq", "int8", (None, kk)), se.tensor("sx", "float32", (None, 1))
    f = se.function([xq, sx], Q.qlinear(xq, w, sx, np.full(nn, 0.01, np.float32)), backend="cuda")
    xq_d = cupy.asarray(rng.integers(-127, 128, (mm, kk)).astype(np.int8))
    sx_d = cupy.full((mm, 1), 0.02, dtype=np.float32)
    t = gpu_time(compiled_run(f, xq_d, sx_d), reps)
    a16, b16 = cupy.asarray(xq_d, dtype=np.float16), cupy.asarray(w, dtype=np.float16)
    t16 = gpu_time(lambda: cupy.matmul(a16, b16), reps)
    rows.append((f"int8 linear {mm}x{kk}x{nn}", t, f"{2 * mm * kk * nn / t / 1e12:.1f} TOP/s, cuBLAS fp16/se {t16 / t:.2f}x"))

    print(f"device: {cupy.cuda.runtime.getDeviceProperties(0)['name'].decode()}")
    for name, t, note in rows:
        print(f"{name:32s} {t * 1e3:9.3f} ms   {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
