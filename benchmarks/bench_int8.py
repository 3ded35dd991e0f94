"""int8 linear layers: symexpr's int8 GEMM step against PyTorch's dynamic quantization and symexpr's own fp32.

Run: ``python benchmarks/bench_int8.py [--quick] [--markdown] [--weight-bits 7|8]``.

Needs torch (``torch.ao.quantization.quantize_dynamic``, FBGEMM/x86 engine).

Every row computes ``y = x @ W + b`` with fp32 ``x`` (M, K) in and fp32 ``y`` (M, N) out:

* symexpr int8: ``quantize_activation(x)`` (per token, in the graph) then ``qlinear`` with a
  constant per-channel int8 weight (``quantize_weight``, ``--weight-bits``, 7 by default: the
  AVX2 path without VNNI needs 7-bit weights to use ``vpmaddubsw`` exactly) and a bias;
* torch int8: ``quantize_dynamic`` of an ``nn.Linear`` holding the same W and b
  (per-tensor int8 weight, 7-bit activations with ``reduce_range``), under ``inference_mode``;
* symexpr fp32: ``x @ W + b`` (OpenBLAS SGEMM plus the bias).

One run prints a header describing the machine, then the table twice: with every library's
default thread count (all cores) and single-threaded (``se.set_num_threads(1)``,
``torch.set_num_threads(1)`` and ``OPENBLAS_NUM_THREADS=SYMEXPR_NUM_THREADS=OMP_NUM_THREADS=
MKL_NUM_THREADS=1`` in the child process's environment).  Each row gives the ms per call, GOP/s
(``2 M K N / time``) and the ratios torch int8 / symexpr int8 and symexpr fp32 / symexpr int8
(``> 1``: symexpr int8 is faster).  Results are checked first: each int8 output against the fp32
product (relative error of the whole output, ``|y - y32| / |y32|``), and symexpr fp32 against NumPy.
Timing: one warm-up call, then the best (min) of N repeats, N chosen to spend ~``budget`` seconds
per library and row.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if (ROOT / "symexpr").is_dir() and str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_minilm import MARK, bench, emit  # noqa: E402  (the timing rule and child protocol of every bench)

THREAD_VARS = ("OPENBLAS_NUM_THREADS", "SYMEXPR_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
SHAPES = [(512, 768, 3072), (2048, 4096, 4096), (4096, 384, 1536)]
QUICK_SHAPES = [(128, 768, 3072), (256, 1024, 1024), (512, 384, 1536)]
SIZES = {"default": {"budget": 2.0, "shapes": SHAPES}, "quick": {"budget": 0.3, "shapes": QUICK_SHAPES}}
#: Largest relative error (of the whole output) an int8 result may have against fp32 and pass the check.
INT8_TOLERANCE = 0.05


def rel_error(y, ref) -> float:
    import numpy as np

    return float(np.linalg.norm((y - ref).ravel()) / max(np.linalg.norm(ref.ravel()), 1e-30))


# ---------------------------------------------------------------------------------------------
# one child: one thread setting, every shape
# ---------------------------------------------------------------------------------------------
def child(threads: str, size: str, weight_bits: int) -> None:
    import numpy as np

    import symexpr as se
    from symexpr.ops.quant import qlinear, quantize_activation, quantize_weight

    if threads == "1":
        se.set_num_threads(1)
    try:
        import torch

        if threads == "1":
            torch.set_num_threads(1)
        torch.backends.quantized.engine = "x86" if "x86" in torch.backends.quantized.supported_engines else "fbgemm"
    except ImportError:
        torch = None
    budget = SIZES[size]["budget"]
    for m, k, n in SIZES[size]["shapes"]:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((m, k)).astype(np.float32)
        w = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
        b = rng.standard_normal(n).astype(np.float32) * 0.1
        ref = x.astype(np.float64) @ w.astype(np.float64) + b
        row = {"shape": [m, k, n]}

        xs = se.tensor("x", "float32", (None, k))
        wq, sw = quantize_weight(w, "per_channel", bits=weight_bits)
        xq, sx = quantize_activation(xs, "per_token")
        f8 = se.function([xs], [qlinear(xq, se.constant(wq), sx, se.constant(sw), se.constant(b), weight_bits=weight_bits)])
        f32 = se.function([xs], [xs @ se.constant(w) + se.constant(b)])
        (y8,) = f8(x)
        (y32,) = f32(x)
        row["se_int8_err"] = rel_error(y8, ref)
        row["se_fp32_ok"] = bool(np.allclose(y32, ref, rtol=1e-3, atol=1e-3))
        row["se_int8_ms"] = bench(lambda: f8(x), budget) * 1e3
        row["se_fp32_ms"] = bench(lambda: f32(x), budget) * 1e3
        row["se_int8_step"] = "qgemm" if "qgemm" in f8._compiled.plan.text() else "host"

        if torch is not None:
            lin = torch.nn.Linear(k, n)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(w.T.copy()))
                lin.bias.copy_(torch.from_numpy(b))
            qmod = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8)
            xt = torch.from_numpy(x)
            with torch.inference_mode():
                yt = qmod(xt).numpy()
                row["torch_int8_err"] = rel_error(yt, ref)
                row["torch_int8_ms"] = bench(lambda: qmod(xt), budget) * 1e3
        emit(row)


# ---------------------------------------------------------------------------------------------
# the parent: header, children, tables
# ---------------------------------------------------------------------------------------------
def header(weight_bits: int) -> str:
    import numpy as np

    import symexpr as se
    from symexpr.backends.llvm import qgemm, target

    cpu = target.active_target()
    lines = [
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {load_text()}",
        f"symexpr {se.__version__}, NumPy {np.__version__}, target {cpu.name} ({cpu.cpu}), "
        f"int8 variant {qgemm.choose_variant(cpu, weight_bits).name} (weight_bits={weight_bits}), "
        f"symexpr threads {se.backends.llvm.get_num_threads()}",
    ]
    try:
        import torch

        lines.append(f"torch {torch.__version__}, quantized engines {torch.backends.quantized.supported_engines}")
    except ImportError:
        lines.append("torch: not installed (torch columns n/a)")
    return "\n".join(lines)


def load_text() -> str:
    """The 1-minute load average (another job on the machine makes every number here worse)."""
    try:
        return f"load average {os.getloadavg()[0]:.2f}"
    except OSError:
        return "load average n/a"


def run_child(threads: str, size: str, weight_bits: int) -> list:
    env = dict(os.environ)
    if threads == "1":
        env.update({v: "1" for v in THREAD_VARS})
    cmd = [sys.executable, __file__, "--child", threads, "--size", size, "--weight-bits", str(weight_bits)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    rows = [json.loads(line[len(MARK):]) for line in proc.stdout.splitlines() if line.startswith(MARK)]
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
    return rows


def table(rows, markdown: bool) -> str:
    cols = ["M x K x N", "se int8 ms", "GOP/s", "torch int8 ms", "GOP/s", "se fp32 ms", "GOP/s",
            "torch/se8", "fp32/se8", "check"]
    out = []
    for r in rows:
        m, k, n = r["shape"]
        ops = 2 * m * k * n
        gops = lambda ms: f"{ops / (ms * 1e-3) / 1e9:.0f}" if ms else "n/a"  # noqa: E731
        t8, t32, tt = r["se_int8_ms"], r["se_fp32_ms"], r.get("torch_int8_ms")
        checks = [f"se8 err {r['se_int8_err']:.3f}"]
        ok = r["se_int8_err"] < INT8_TOLERANCE and r["se_fp32_ok"] and r["se_int8_step"] == "qgemm"
        if tt is not None:
            checks.append(f"torch8 err {r['torch_int8_err']:.3f}")
        if not ok:
            checks.append("MISMATCH")
        out.append([f"{m} x {k} x {n}", f"{t8:.2f}", gops(t8), f"{tt:.2f}" if tt else "n/a", gops(tt),
                    f"{t32:.2f}", gops(t32), f"{tt / t8:.2f}" if tt else "n/a", f"{t32 / t8:.2f}", ", ".join(checks)])
    if markdown:
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(r) + " |" for r in out]
        return "\n".join(lines)
    widths = [max(len(c), *(len(r[i]) for r in out)) for i, c in enumerate(cols)]
    fmt = lambda r: "  ".join(v.rjust(w) for v, w in zip(r, widths))  # noqa: E731
    return "\n".join([fmt(cols)] + [fmt(r) for r in out])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller shapes, shorter timing")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    parser.add_argument("--weight-bits", type=int, default=7, choices=(7, 8))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--size", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = args.size or ("quick" if args.quick else "default")
    if args.child:
        child(args.child, size, args.weight_bits)
        return
    print(header(args.weight_bits))
    for threads, title in (("all", "default threads (all cores)"), ("1", "single thread")):
        print(f"\n## {title}\n")
        print(table(run_child(threads, size, args.weight_bits), args.markdown))
    print(f"\nafter the runs: {load_text()}")


if __name__ == "__main__":
    main()
