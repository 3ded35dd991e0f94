"""Sparse attention (BLASST): the skipping pass, its statistics and threshold calibration.

::

    from symexpr import attention
    f = se.function(inputs, out, passes=["fast_run", attention.blasst(threshold_scale_factor=sf)])
    attention.stats(f)    # one dict per attention op: tiles, skipped, sparsity (last call)
    sf = attention.calibrate(inputs, out, batches, target_sparsity=0.7)   # per phase

``fast_run`` already fuses attention (dense); :func:`blasst` turns skipping
on.  See docs/blasst.md for the rule and the paper.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

import numpy as np

from symexpr.attention.synthetic import decoder_like_qkv
from symexpr.compile.function import function
from symexpr.ops.attention import DEFAULT_BLOCK_K, DEFAULT_BLOCK_Q, Attention, fused_attention
from symexpr.passes.attention import COUNTS, KEY_LENGTHS, QUERY_LENGTHS, Blasst, fuse_attention

__all__ = [
    "Attention",
    "Blasst",
    "Calibration",
    "DEFAULT_THRESHOLDS",
    "blasst",
    "calibrate",
    "decoder_like_qkv",
    "fuse_attention",
    "fused_attention",
    "stats",
]

#: The lambdas :func:`calibrate` tries by default (NVIDIA Model-Optimizer's list).
DEFAULT_THRESHOLDS = (1e-4, 1e-3, 5e-3, 1e-2, 3e-2, 5e-2, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)


def blasst(threshold_scale_factor=None, threshold=None, block_q=None, block_k=None) -> Blasst:
    """The BLASST pass: fuse attention and skip key tiles by ``lambda``.

    Parameters
    ----------
    threshold_scale_factor : float or dict, optional
        ``lambda = threshold_scale_factor / Lkv`` (TensorRT-LLM's convention),
        or ``{"prefill": sf, "decode": sf}``.  Skipping is off where ``lambda >= 1``.
    threshold : float, optional
        ``lambda`` itself (FlashInfer's convention).  Neither: dense.
    block_q, block_k : int, optional
        Tile sizes (default 128 query rows x 64 keys); skip decisions, and so calibrated factors, depend on them.
    """
    return Blasst(threshold_scale_factor, threshold, block_q, block_k)


def stats(f) -> list:
    """Per attention op of ``f``, what its last call skipped: ``{'tiles', 'skipped', 'sparsity', 'lq', 'lkv'}``.

    ``tiles`` counts the key tiles visited (a causal mask's tiles wholly
    above the diagonal are not), ``skipped`` those the rule skipped.

    Raises
    ------
    ValueError
        If ``f`` was not compiled with :func:`blasst`, or has not been called.
    """
    side = getattr(f, "side_outputs", None) or {}
    if COUNTS not in side:
        raise ValueError("attention.stats: no statistics: compile with passes=[..., attention.blasst(...)] and call the function once")
    out = []
    for counts, lq, lkv in zip(side[COUNTS], side[QUERY_LENGTHS], side[KEY_LENGTHS]):
        counts = np.asarray(counts)
        tiles, skipped = int(counts[..., 0].sum()), int(counts[..., 1].sum())
        out.append({"tiles": tiles, "skipped": skipped, "sparsity": skipped / tiles if tiles else 0.0,
                    "lq": int(lq), "lkv": int(lkv)})
    return out


@dataclass
class Calibration:
    """What :func:`calibrate` measured and fitted.

    ``scale_factor`` maps each phase seen (``"prefill"``, ``"decode"``) to
    the ``sf`` giving ``target_sparsity`` by the fit ``sf = a * exp(b * S)``
    (``fits[phase] = (a, b)``); ``samples`` lists every measurement as
    ``(phase, lambda, lkv, sparsity, relative output error)``.
    """

    target_sparsity: float
    block_q: int
    block_k: int
    scale_factor: dict = field(default_factory=dict)
    fits: dict = field(default_factory=dict)
    samples: list = field(default_factory=list)

    def plot(self, path) -> None:
        """Save sparsity and output error against lambda, one line per context length (needs matplotlib)."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as exc:
            raise ImportError("Calibration.plot needs matplotlib: pip install 'symexpr[plot]'") from exc
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for phase in sorted({s[0] for s in self.samples}):
            for lkv in sorted({s[2] for s in self.samples if s[0] == phase}):
                rows = sorted((s[1], s[3], s[4]) for s in self.samples if s[0] == phase and s[2] == lkv)
                lam = [r[0] for r in rows]
                axes[0].plot(lam, [r[1] for r in rows], marker="o", label=f"{phase} L={lkv}")
                axes[1].plot(lam, [max(r[2], 1e-9) for r in rows], marker="o", label=f"{phase} L={lkv}")
        for ax, label in zip(axes, ("sparsity (skipped / visited tiles)", "relative output error")):
            ax.set_xscale("log")
            ax.set_xlabel("lambda")
            ax.set_ylabel(label)
            ax.grid(True, alpha=0.3)
        axes[1].set_yscale("log")
        axes[0].legend(fontsize=7)
        factors = ", ".join(f"{phase} {sf:.3g}" for phase, sf in sorted(self.scale_factor.items())) or "no fit"
        fig.suptitle(f"BLASST calibration (tiles {self.block_q}x{self.block_k}, target sparsity "
                     f"{self.target_sparsity:g}): sf {factors}")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)


def calibrate(inputs, outputs, batches, target_sparsity: float = 0.7, thresholds=DEFAULT_THRESHOLDS,
              block_q: int | None = None, block_k: int | None = None, backend: str | None = None,
              plot=None, progress=None) -> Calibration:
    """Sweep lambda on ``batches`` and fit the threshold scale factor giving ``target_sparsity``, per phase.

    For each lambda in ``thresholds`` the graph is compiled with
    ``blasst(threshold=lambda)`` and run on every batch; each attention op
    gives a sparsity ``S`` at its key length ``L``, and so a sample
    ``sf = lambda * L``.  Per phase (decode: a query length of 1; prefill:
    longer), ``log sf = log a + b * S`` is fitted by least squares over the
    samples with ``0 < S < 1`` (NVIDIA Model-Optimizer's form), and
    ``sf = a * exp(b * target_sparsity)``.  Of the samples of one context
    length, only those whose sparsity rose with lambda count (a short context
    saturates at the few tiles it has).

    Parameters
    ----------
    inputs, outputs
        The graph, as for :func:`symexpr.function`.
    batches : iterable of tuple
        Argument tuples (iterated once; kept in memory for the sweep).
    target_sparsity : float
        In (0, 1).
    thresholds : sequence of float
        The lambdas tried.
    block_q, block_k : int, optional
        Tile sizes; the factor is only valid for these.
    backend : str, optional
    plot : str or path, optional
        Save :meth:`Calibration.plot` there.
    progress : bool, optional
        Print a progress line to stderr (default: when stderr is a terminal).

    Returns
    -------
    Calibration
        ``.scale_factor`` is the dict to give :func:`blasst`.
    """
    if not 0 < target_sparsity < 1:
        raise ValueError(f"attention.calibrate: target_sparsity must be in (0, 1), got {target_sparsity!r}")
    batches = list(batches)
    for args in batches:
        if not isinstance(args, (tuple, list)):
            raise TypeError(f"attention.calibrate: each batch must be a tuple of arguments, got {type(args).__name__}")
    batches = [tuple(b) for b in batches]
    if not batches:
        raise ValueError("attention.calibrate: batches is empty; give at least one argument tuple")
    single = not isinstance(outputs, (list, tuple))
    dense = function(inputs, outputs, backend=backend)
    references = [dense(*args) for args in batches]
    bq = block_q or DEFAULT_BLOCK_Q
    bk = block_k or DEFAULT_BLOCK_K
    result = Calibration(float(target_sparsity), bq, bk)
    show = sys.stderr.isatty() if progress is None else bool(progress)
    for n, lam in enumerate(thresholds, start=1):
        f = function(inputs, outputs, backend=backend, passes=["fast_run", blasst(threshold=lam, block_q=bq, block_k=bk)])
        for args, ref in zip(batches, references):
            got = f(*args)
            error = _relative_error([got] if single else got, [ref] if single else ref)
            for op_stats in stats(f):
                if op_stats["tiles"]:
                    phase = "decode" if op_stats["lq"] == 1 else "prefill"
                    result.samples.append((phase, float(lam), op_stats["lkv"], op_stats["sparsity"], error))
        if show:
            print(f"\rattention.calibrate: lambda {n}/{len(thresholds)}", end="", file=sys.stderr, flush=True)
    if show:
        print(file=sys.stderr, flush=True)
    for phase in sorted({s[0] for s in result.samples}):
        points = [(s[3], math.log(s[1] * s[2])) for s in _rising(result.samples, phase) if 0 < s[3] < 1]
        if len({p[0] for p in points}) < 2:
            continue  # nothing between "never" and "always": no fit for this phase
        sparsity, log_sf = np.array(points).T
        b, log_a = np.polyfit(sparsity, log_sf, 1)
        result.fits[phase] = (float(math.exp(log_a)), float(b))
        result.scale_factor[phase] = float(math.exp(log_a + b * target_sparsity))
    if plot is not None:
        result.plot(plot)
    return result


def _rising(samples, phase):
    """The samples of ``phase`` whose sparsity exceeds every smaller lambda's at the same (op, length).

    A short context saturates (its few key tiles are all skipped, or the ones
    left cannot be): larger lambdas then add points at one sparsity that
    would drag the fit towards factors far too large.
    """
    best: dict = {}
    kept = []
    for s in sorted((s for s in samples if s[0] == phase), key=lambda s: s[1]):
        key = s[2]
        if s[3] > best.get(key, -1.0):
            best[key] = s[3]
            kept.append(s)
    return kept


def _relative_error(got, want) -> float:
    num = sum(float(np.sum((np.asarray(g, np.float64) - np.asarray(w, np.float64)) ** 2)) for g, w in zip(got, want))
    den = sum(float(np.sum(np.asarray(w, np.float64) ** 2)) for w in want)
    return math.sqrt(num / den) if den else math.sqrt(num)
