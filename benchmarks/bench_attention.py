"""Fused attention and BLASST against PyTorch's scaled_dot_product_attention (CPU, float32).

Run: ``python benchmarks/bench_attention.py [--markdown] [--quick]`` (torch from ``pip install -e '.[bench]'``).

* Prefill: B=1, H=12, d=64, L in {1024, 2048, 4096, 8192} (``--quick``: 1024, 2048), causal
  and not.  symexpr compiles the plain graph ``softmax(q @ k^T * scale [+ causal mask]) @ v``
  (the causal mask ``where(j <= i, 0, -inf)`` from two aranges; ``fast_run`` fuses it all);
  torch runs ``scaled_dot_product_attention`` (``is_causal``).
* Decode: one query per head against L_kv in {4096, 16384, 32768} cached keys.
* BLASST: on synthetic decoder-like inputs (:func:`symexpr.attention.decoder_like_qkv`: an
  attention sink, local windows, two retrieval heads), the threshold scale factor ``sf`` is
  searched so that about 70% of the visited key tiles are skipped; the row gives the sparsity,
  the output's relative error against dense, and the speed against our dense kernel and SDPA.
* Each configuration runs in a child process, once on one thread and once on all threads;
  times are the best of repeated calls (bench_minilm's rule).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_minilm import bench, emit, fmt_ms, import_torch, machine_header, one_line, render_table, run_child  # noqa: E402

HEADS, HEAD_DIM = 12, 64
PREFILL = (1024, 2048, 4096, 8192)
DECODE = (4096, 16384, 32768)
TARGET_SPARSITY = 0.7


def _graph(se, causal: bool, lq_static=None):
    q = se.tensor("q", "float32", (1, HEADS, lq_static, HEAD_DIM))
    k = se.tensor("k", "float32", (1, HEADS, None, HEAD_DIM))
    v = se.tensor("v", "float32", (1, HEADS, None, HEAD_DIM))
    scores = q @ se.swapaxes(k, -1, -2) * (1 / math.sqrt(HEAD_DIM))
    if causal:  # torch.tril's mask, written with aranges: fast_run makes it the op's structural causal flag
        i, j = se.arange(q.shape[2]), se.arange(k.shape[2])
        scores = scores + se.where(se.expand_dims(j, 0) <= se.expand_dims(i, 1), 0.0, -math.inf).astype("float32")
    return [q, k, v], se.softmax(scores, axis=-1) @ v


def _sparse_function(se, attention, inputs, out, args, lkv, budget):
    """The BLASST function whose sf gives about TARGET_SPARSITY on ``args`` (bisection on log sf), with its stats."""
    lo, hi = math.log(1e-3), math.log(lkv * 0.999)
    best = None
    for _ in range(10):
        mid = (lo + hi) / 2
        f = se.function(inputs, out, passes=["fast_run", attention.blasst(threshold_scale_factor=math.exp(mid))])
        f(*args)
        sparsity = sum(s["skipped"] for s in attention.stats(f)) / max(1, sum(s["tiles"] for s in attention.stats(f)))
        if best is None or abs(sparsity - TARGET_SPARSITY) < abs(best[2] - TARGET_SPARSITY):
            best = (f, math.exp(mid), sparsity)
        if abs(sparsity - TARGET_SPARSITY) < 0.03:
            break
        lo, hi = (mid, hi) if sparsity < TARGET_SPARSITY else (lo, mid)
    return best


def section(kind: str, length: int, causal: bool, single: bool, budget: float) -> None:
    import numpy as np

    import symexpr as se
    from symexpr import attention

    torch = import_torch(single)
    lq = length if kind == "prefill" else 1
    inputs, out = _graph(se, causal, 1 if kind == "decode" else None)
    rng = np.random.default_rng(0)
    dense_args = [rng.standard_normal((1, HEADS, n, HEAD_DIM), dtype=np.float32) for n in (lq, length, length)]
    row = {"kind": kind, "length": length, "causal": causal, "times": {}, "notes": [],
           "threads": se.get_num_threads()}
    try:
        f = se.function(inputs, out)
        ours = f(*dense_args)
        row["times"]["dense"] = bench(lambda: f(*dense_args), budget)
    except Exception as exc:  # noqa: BLE001
        row["notes"].append(f"symexpr: {one_line(exc)}")
        ours = None
    if torch is not None:
        tq = [torch.from_numpy(a) for a in dense_args]
        sdpa = torch.nn.functional.scaled_dot_product_attention
        try:
            with torch.no_grad():
                theirs = sdpa(*tq, is_causal=causal and kind == "prefill").numpy()
                row["times"]["sdpa"] = bench(lambda: sdpa(*tq, is_causal=causal and kind == "prefill"), budget)
            if ours is not None:
                row["max_abs_vs_sdpa"] = float(np.max(np.abs(ours - theirs)))
        except Exception as exc:  # noqa: BLE001
            row["notes"].append(f"torch: {one_line(exc)}")
    try:
        q, k, v = attention.decoder_like_qkv(1, HEADS, lq, length, HEAD_DIM, seed=1)
        synthetic = [q, k, v]
        dense = f(*synthetic)
        row["times"]["dense_synthetic"] = bench(lambda: f(*synthetic), budget)
        g, sf, sparsity = _sparse_function(se, attention, inputs, out, synthetic, length, budget)
        got = g(*synthetic)
        row["sf"], row["sparsity"] = sf, sparsity
        row["rel_error"] = float(np.linalg.norm(got - dense) / np.linalg.norm(dense))
        row["times"]["blasst"] = bench(lambda: g(*synthetic), budget)
    except Exception as exc:  # noqa: BLE001
        row["notes"].append(f"blasst: {one_line(exc)}")
    emit({"row": row})


def _flops(kind, length, causal):
    lq = length if kind == "prefill" else 1
    full = 4 * HEADS * lq * length * HEAD_DIM
    return full / 2 if causal and kind == "prefill" else full


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--quick", action="store_true", help="L up to 2048 and decode up to 16k only")
    parser.add_argument("--section", nargs=4, metavar=("KIND", "LENGTH", "CAUSAL", "SINGLE"), help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.section:
        kind, length, causal, single = args.section
        section(kind, int(length), causal == "1", single == "1", args.budget)
        return
    import os

    prefill = PREFILL[:2] if args.quick else PREFILL
    decode = DECODE[:2] if args.quick else DECODE
    configs = [("prefill", n, c) for n in prefill for c in (False, True)] + [("decode", n, False) for n in decode]
    for line in machine_header():
        print(line if not args.markdown else f"{line}  ")
    for single in (True, False):
        rows = []
        for kind, length, causal in configs:
            print(f"  {'1 thread' if single else 'all threads'}: {kind} L={length}{' causal' if causal else ''} ...",
                  file=sys.stderr, flush=True)
            objs, err = run_child(["--section", kind, str(length), "1" if causal else "0", "1" if single else "0",
                                   "--budget", str(args.budget)], dict(os.environ), timeout=3600, script=__file__)
            found = [o["row"] for o in objs if "row" in o]
            if not found:
                rows.append([f"{kind} L={length}", err or "no result"] + [""] * 8)
                continue
            r = found[0]
            t = r["times"]
            gflops = _flops(kind, length, causal)
            rows.append([
                f"{kind} L={length}{' causal' if causal else ''}",
                fmt_ms(t.get("dense")), fmt_ms(t.get("sdpa")),
                f"{t['sdpa'] / t['dense']:.2f}x" if "dense" in t and "sdpa" in t else "n/a",
                f"{gflops / t['dense'] / 1e9:.0f}" if "dense" in t else "n/a",
                f"{r['sparsity']:.0%} (sf {r['sf']:.3g})" if "sparsity" in r else "n/a",
                f"{r['rel_error']:.1e}" if "rel_error" in r else "n/a",
                fmt_ms(t.get("blasst")),
                f"{t['dense_synthetic'] / t['blasst']:.2f}x" if "blasst" in t else "n/a",
                f"{t['sdpa'] / t['blasst']:.2f}x" if "blasst" in t and "sdpa" in t else "n/a",
            ] + ([f"threads {r['threads']}; " + "; ".join(r["notes"])] if r["notes"] else [f"threads {r['threads']}"]))
        header = ["case", "fused ms", "SDPA ms", "fused vs SDPA", "fused GFLOP/s", "BLASST sparsity", "rel. error",
                  "BLASST ms", "vs our dense", "vs SDPA", "notes"]
        print()
        print(("#### " if args.markdown else "") + ("One thread" if single else "All threads"))
        print()
        for line in render_table(header, rows, args.markdown, set(range(1, 10))):
            print(line)


if __name__ == "__main__":
    main()
