"""Command line: ``python -m symexpr demo`` and ``python -m symexpr info``."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def demo(args) -> int:
    import symexpr as se
    from symexpr.examples.transformer import BlockConfig, build_block, causal_mask, make_weights, reference_block

    cfg = BlockConfig(dim=args.dim, heads=args.heads, hidden=4 * args.dim)
    weights = make_weights(cfg, seed=args.seed)
    inputs, out = build_block(cfg, weights)
    n_nodes = len(se.FunctionGraph(inputs, [out]).toposort())

    print(f"symexpr {se.__version__}: a pre-norm transformer block "
          f"(dim={cfg.dim}, heads={cfg.heads}, hidden={cfg.hidden}), {n_nodes} graph nodes\n")
    print("== the graph (debugprint) ==")
    se.debugprint(out)
    print("\n== the same graph as math (pprint) ==")
    print(se.pprint(out))

    start = time.perf_counter()
    f = se.function(inputs, out, backend=args.backend)
    compile_s = time.perf_counter() - start

    rng = np.random.default_rng(args.seed)
    ids = rng.integers(0, cfg.vocab, size=args.tokens)
    mask = causal_mask(args.tokens)
    start = time.perf_counter()
    result = f(ids, mask)
    first_s = time.perf_counter() - start
    call_ms = _call_ms(f, (ids, mask), args.repeat)
    reference_ms = None
    if args.backend != "numpy":
        reference_ms = _call_ms(se.function(inputs, out, backend="numpy"), (ids, mask), args.repeat)

    expected = reference_block(cfg, weights, ids, mask)
    err = float(np.max(np.abs(result - expected)))
    ok = err < 1e-3 and result.dtype == np.float32 and result.shape == expected.shape
    print(f"\n== compiled with backend={args.backend!r}: rewrites {compile_s * 1e3:.1f} ms, "
          f"first call {first_s * 1e3:.1f} ms (native code for this input shape, or the cache) ==")
    print(f"fast_run: {n_nodes} nodes -> {len(f.fgraph.toposort())} after {len(f.rewrite_log)} rewrites "
          f"(recognised, fused; print them with se.debugprint(f, rewrites=True))")
    se.debugprint(f)
    print(f"input: {args.tokens} token ids, causal mask {mask.shape}")
    print(f"output: {result.dtype} {result.shape}, first row {np.array2string(result[0, :4], precision=4)} ...")
    print(f"one call: {call_ms:.3f} ms" + (f" (the numpy reference backend: {reference_ms:.3f} ms, "
                                            f"{reference_ms / call_ms:.1f}x slower)" if reference_ms else ""))
    print(f"max |symexpr - numpy reference (float64)| = {err:.2e}: {'OK' if ok else 'MISMATCH'}")
    return 0 if ok else 1


def _call_ms(f, args, repeat) -> float:
    """Best of three timings of ``repeat`` calls, per call in milliseconds."""
    f(*args)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeat):
            f(*args)
        best = min(best, (time.perf_counter() - start) / repeat)
    return best * 1e3


def info(args) -> int:
    import symexpr as se

    print(f"symexpr {se.__version__}")
    print(f"numpy {np.__version__}")
    print(f"backends: {', '.join(se.available_backends())}")
    print(f"dtypes: {', '.join(se.dtypes.SUPPORTED_DTYPES)}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m symexpr", description="symexpr command line")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="build, print, compile and check a transformer block")
    p.add_argument("--backend", default="llvm")
    p.add_argument("--tokens", type=int, default=16)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=demo)
    p = sub.add_parser("info", help="versions and registered backends")
    p.set_defaults(run=info)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
