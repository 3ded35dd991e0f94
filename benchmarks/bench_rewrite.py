"""Rewrite speed: a ~2,000-node graph through the default pipeline, against PyTensor.

Run: ``python benchmarks/bench_rewrite.py [--nodes N]``.  PyTensor (the ``bench``
extra) is measured when installed: its ``function()`` with the default mode's
rewrites, linking to the Python VM so that only graph rewriting is compared.
"""

from __future__ import annotations

import argparse
import time

import symexpr as se


def build(lib, n: int):
    """The same ~n-node graph with ``lib`` = ``symexpr`` or ``pytensor.tensor`` (same function names)."""
    x, y = lib.matrix("x"), lib.matrix("y")
    v = x
    for i in range(n // 4):
        k = i % 4
        if k == 0:
            v = lib.exp(v - y) * 0.5 + 1.0
        elif k == 1:
            v = lib.tanh(v) * y - v / 2.0
        elif k == 2:
            v = lib.log(1 + v * v) + 0
        else:
            v = v.T.T * 1.0 + lib.sigmoid(y)
    return [x, y], v


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=2000)
    args = parser.parse_args()
    inputs, out = build(se, args.nodes)
    n = len(se.FunctionGraph(inputs, [out]).toposort())
    start = time.perf_counter()
    f = se.function(inputs, out, passes="fast_run")
    ours = time.perf_counter() - start
    print(f"symexpr  fast_run: {n} nodes -> {len(f.fgraph.toposort())} in {ours:.3f} s "
          f"({ours / n * 1e3:.3f} ms/node, {len(f.rewrite_log)} rewrites)")
    try:
        import pytensor
    except ImportError:
        print("pytensor: not installed (pip install -e '.[bench]')")
        return
    import pytensor.tensor as pt

    p_inputs, p_out = build(pt, args.nodes)
    start = time.perf_counter()
    try:
        pytensor.function(p_inputs, p_out, mode=pytensor.compile.mode.Mode(linker="py", optimizer="fast_run"))
    except RecursionError:
        print(f"pytensor fast_run: RecursionError at {n} nodes")
        return
    theirs = time.perf_counter() - start
    print(f"pytensor fast_run: {theirs:.3f} s ({theirs / n * 1e3:.3f} ms/node)")
    print(f"ratio pytensor / symexpr: {theirs / ours:.1f}x")


if __name__ == "__main__":
    main()
