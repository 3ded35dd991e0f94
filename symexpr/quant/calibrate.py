"""Calibration: run a graph on sample batches and record what each linear site's activation holds."""

from __future__ import annotations

import sys

import numpy as np

from symexpr.compile.function import function
from symexpr.passes.linear_sites import (
    ActivationStats,
    CalibrationStats,
    distinct_weights,
    linear_sites,
    sites_by_activation,
)
from symexpr.ops import shape as shape_ops


def calibrate(inputs, outputs, batches, backend: str | None = None, samples: int = 512, progress=None, seed: int = 0):
    """Run the graph on ``batches`` and record, for every ``x @ W`` with a constant ``W``, ``max |x|`` per channel.

    Parameters
    ----------
    inputs, outputs
        The graph, as given to :func:`symexpr.function`.
    batches : iterable of tuple
        Argument tuples for the graph's inputs (one array per input); iterated once.
    backend : str, optional
        The backend that runs the calibration graph (default: the default backend).
    samples : int
        Rows of each activation kept (drawn uniformly over every row seen) for ``alpha="auto"``.
    progress : bool, optional
        Print a progress line to stderr (default: when stderr is a terminal).
    seed : int
        Seed of the row sampling.

    Returns
    -------
    CalibrationStats
        Statistics keyed by each site's weight fingerprint, the key the
        smoothing and W8A8 passes look them up by after ``fast_run``.
    """
    # The rewritten graph (the passes know no backend), without a native compile of the whole model:
    # only the probe below runs.
    fgraph = function(inputs, outputs, backend="numpy").fgraph
    distinct_weights(fgraph)
    groups = sites_by_activation(linear_sites(fgraph))
    stats = CalibrationStats()
    if not groups:
        return stats
    rows_of = [shape_ops.reshape(g[0].x, (-1, g[0].x.shape[-1])) for g in groups]
    probe = function(list(fgraph.inputs), rows_of, backend=backend)
    rng = np.random.default_rng(seed)
    show = sys.stderr.isatty() if progress is None else bool(progress)
    per_group = [None] * len(groups)
    try:
        total = len(batches)
    except TypeError:
        total = None
    for count, args in enumerate(batches, start=1):
        if not isinstance(args, (tuple, list)):
            raise TypeError(f"calibrate: each batch must be a tuple of arguments, got {type(args).__name__}")
        values = probe(*args)
        for i, rows in enumerate(values):
            per_group[i] = _update(per_group[i], np.asarray(rows, np.float32), samples, rng)
        stats.batches = count
        if show:
            of = f"/{total}" if total is not None else ""
            print(f"\rcalibrate: batch {count}{of}", end="", file=sys.stderr, flush=True)
    if show:
        print(file=sys.stderr, flush=True)
    if stats.batches == 0:
        raise ValueError("calibrate: batches is empty; give at least one argument tuple")
    for group, seen in zip(groups, per_group):
        for site in group:
            stats.sites[site.key] = seen
    return stats


def _update(seen: ActivationStats | None, rows: np.ndarray, samples: int, rng) -> ActivationStats:
    """Fold a batch's rows into ``seen``: channel maxima, row count and a uniform reservoir of rows."""
    # fmax ignores NaN (a NaN activation says nothing about the channel's range); every batch alike.
    batch_max = np.fmax.reduce(np.abs(rows), axis=0) if rows.shape[0] else np.zeros(rows.shape[1], np.float32)
    batch_max = np.nan_to_num(batch_max, nan=0.0)
    if seen is None:
        seen = ActivationStats(batch_max.astype(np.float32), 0, np.zeros((0, rows.shape[1]), np.float32))
    else:
        seen.channel_max = np.fmax(seen.channel_max, batch_max).astype(np.float32)
    rows = rows[np.all(np.isfinite(rows), axis=1)]  # samples feed alpha="auto": finite rows only
    # Reservoir sampling (algorithm R, vectorised per batch): row t (0-based, over all rows) replaces a
    # random slot with probability samples / (t + 1) once the reservoir is full.
    keep = seen.samples
    start = seen.rows
    take = max(0, min(samples - keep.shape[0], rows.shape[0]))
    if take:
        keep = np.concatenate([keep, rows[:take]])
    t = start + np.arange(take, rows.shape[0])
    if t.size and samples:
        slots = (rng.random(t.size) * (t + 1)).astype(np.int64)
        chosen = slots < samples
        if np.any(chosen):
            keep = keep.copy()
            keep[slots[chosen]] = rows[take:][chosen]
    seen.samples = keep
    seen.rows = start + rows.shape[0]
    return seen
