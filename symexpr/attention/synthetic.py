"""Synthetic attention inputs with the structure decoder models show, for tests, calibration and benchmarks.

Real decoder attention is far from uniform: most heads put a large weight on
the first token (an *attention sink*) and on a local window of recent tokens,
and a few *retrieval heads* attend sharply to a handful of distant tokens.
:func:`decoder_like_qkv` builds q, k and v whose scaled scores
``q . k / sqrt(d)`` are, by construction, Gaussian noise plus those three
ingredients, each given in score units.  It is a stand-in: sparsities and
errors measured on it are indicative, not a model's.
"""

from __future__ import annotations

import numpy as np


def decoder_like_qkv(batch: int = 1, heads: int = 12, lq: int = 1024, lkv: int | None = None, d: int = 64,
                     seed: int = 0, noise: float = 1.0, sink: float = 10.0, local: float = 8.0, window: int = 64,
                     retrieval_heads: int = 2, retrieval: float = 10.0, retrieval_keys: int = 4):
    """``(q, k, v)`` float32 of shapes (batch, heads, lq, d), (batch, heads, lkv, d), (batch, heads, lkv, d).

    The head dim is split: half carries independent noise (scores of
    standard deviation ``noise``), one dim the sink, the rest a positional
    code.  Scores (with the scale ``1 / sqrt(d)``) are then about
    ``noise * N(0, 1) + sink * [j == 0] + local * w(i - j)`` for the local
    heads, with ``w`` a bump of width about ``window`` (1 at distance 0),
    and ``+ retrieval`` at ``retrieval_keys`` random keys, for every query,
    in the last ``retrieval_heads`` heads (which have no local window).

    Parameters
    ----------
    batch, heads, lq, d : int
        Sizes (``d >= 8``); ``lkv`` defaults to ``lq``.  Query ``i`` sits at
        position ``lkv - lq + i`` (causal attention's bottom-right alignment).
    seed : int
    noise, sink, local, retrieval : float
        Strengths in score units.
    window, retrieval_heads, retrieval_keys : int
    """
    if d < 8:
        raise ValueError(f"decoder_like_qkv: d must be at least 8, got {d}")
    lkv = lq if lkv is None else int(lkv)
    rng = np.random.default_rng(seed)
    root = np.sqrt(np.sqrt(float(d)))  # a factor on each side: q . k / sqrt(d) gets the product of the two
    n_noise = d // 2
    q = np.zeros((batch, heads, lq, d), np.float32)
    k = np.zeros((batch, heads, lkv, d), np.float32)
    v = rng.standard_normal((batch, heads, lkv, d), dtype=np.float32)
    # noise: n_noise dims of N(0, a^2) give a score std of a^2 * sqrt(n_noise) / sqrt(d)
    a = np.sqrt(noise * np.sqrt(d) / np.sqrt(n_noise)) if noise > 0 else 0.0
    q[..., :n_noise] = rng.standard_normal((batch, heads, lq, n_noise)) * a
    k[..., :n_noise] = rng.standard_normal((batch, heads, lkv, n_noise)) * a
    # sink: one dim, sqrt(sink) * root on each side
    if lkv and sink:
        q[..., n_noise] = np.sqrt(sink) * root
        k[..., 0, n_noise] = np.sqrt(sink) * root
    local_heads = heads - min(retrieval_heads, heads)
    rest = d - n_noise - 1
    half = rest // 2
    if local and half and local_heads:
        # sum over `half` frequencies of cos(w_m (i - j)), scaled to `local` at distance 0
        freqs = rng.uniform(0.0, np.pi / (2 * max(window, 1)), half)
        amp = np.sqrt(local / half) * root
        pos_q = np.arange(lkv - lq, lkv)[:, None] * freqs
        pos_k = np.arange(lkv)[:, None] * freqs
        sl = slice(n_noise + 1, n_noise + 1 + 2 * half)
        q[:, :local_heads, :, sl] = np.concatenate([np.cos(pos_q), np.sin(pos_q)], axis=-1) * amp
        k[:, :local_heads, :, sl] = np.concatenate([np.cos(pos_k), np.sin(pos_k)], axis=-1) * amp
    if retrieval and lkv and local_heads < heads and rest:
        # the retrieval heads use the positional dims for one shared direction instead
        col = n_noise + 1
        q[:, local_heads:, :, col] = np.sqrt(retrieval) * root
        for h in range(local_heads, heads):
            keys = rng.choice(lkv, size=min(retrieval_keys, lkv), replace=False)
            k[:, h, keys, col] = np.sqrt(retrieval) * root
    return q, k, v
