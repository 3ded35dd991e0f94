"""``report(f)``: what the quantization passes did to a compiled function, one line per int8 matmul."""

from __future__ import annotations

import numpy as np


def report(f) -> str:
    """A table of ``f``'s quantized matmuls: shape, scheme, where smoothing went, and scale ranges.

    Parameters
    ----------
    f : symexpr.Function
        Compiled with the :func:`~symexpr.quant.w8a8` pass (directly or through :func:`~symexpr.quant.quantize`).
    """
    notes = getattr(f, "fgraph", None)
    notes = {} if notes is None else notes.annotations.get("quant", {})
    sites = notes.get("sites", {})
    if not sites:
        return "no quantized matmuls (compile with quant.w8a8 or quant.quantize)"
    header = ["#", "K x N", "scheme", "smoothing", "alpha", "s range", "weight scales", "activation scale"]
    rows = []
    for i, info in enumerate(sites.values()):
        sm = info["smoothing"]
        if sm is None or sm["alpha"] is None:
            smoothing, alpha, s_range = "none" if sm is None else sm["where"], "-", "-"
        else:
            s = np.asarray(sm["s"])
            smoothing, alpha, s_range = sm["where"], f"{sm['alpha']:.2f}", f"{s.min():.3g}..{s.max():.3g}"
        lo, hi = info["weight_scale"]
        act = "dynamic" if info["activation_scale"] is None else f"{info['activation_scale']:.3g} (static)"
        k, n = info["shape"]
        rows.append([str(i), f"{k} x {n}", info["scheme"], smoothing, alpha, s_range, f"{lo:.3g}..{hi:.3g}", act])
    widths = [max(len(h), *(len(r[c]) for r in rows)) for c, h in enumerate(header)]

    def line(cells):
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])
