"""A small pre-norm transformer block, as a symexpr graph and as plain NumPy.

The graph covers the ops the later passes target: an embedding lookup
(``take``), ``layer_norm``, projections (``@``), multi-head attention
``softmax(Q K^T * scale + mask) V``, ``gelu`` and ``rms_norm``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import symexpr as se


@dataclass(frozen=True)
class BlockConfig:
    vocab: int = 256
    dim: int = 64
    heads: int = 4
    hidden: int = 256


def make_weights(cfg: BlockConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 weights for one block."""
    rng = np.random.default_rng(seed)

    def mat(rows, cols):
        return (rng.standard_normal((rows, cols)) / math.sqrt(rows)).astype(np.float32)

    def vec(n, mean=0.0):
        return (mean + 0.1 * rng.standard_normal(n)).astype(np.float32)

    return {
        "embed": rng.standard_normal((cfg.vocab, cfg.dim)).astype(np.float32),
        "ln1_w": vec(cfg.dim, 1.0),
        "ln1_b": vec(cfg.dim),
        "wq": mat(cfg.dim, cfg.dim),
        "wk": mat(cfg.dim, cfg.dim),
        "wv": mat(cfg.dim, cfg.dim),
        "wo": mat(cfg.dim, cfg.dim),
        "ln2_w": vec(cfg.dim, 1.0),
        "ln2_b": vec(cfg.dim),
        "w1": mat(cfg.dim, cfg.hidden),
        "b1": vec(cfg.hidden),
        "w2": mat(cfg.hidden, cfg.dim),
        "norm_w": vec(cfg.dim, 1.0),
    }


def build_block(cfg: BlockConfig, weights: dict[str, np.ndarray]):
    """The symbolic block: inputs ``(token_ids, mask)``, output ``(tokens, dim)``."""
    w = {name: se.constant(value, name=name) for name, value in weights.items()}
    ids = se.vector("token_ids", dtype="int64")
    mask = se.matrix("mask", dtype="float32")
    head_dim = cfg.dim // cfg.heads

    x = se.take(w["embed"], ids, axis=0)
    h = se.layer_norm(x, w["ln1_w"], w["ln1_b"])

    def heads(t):
        return t.reshape(-1, cfg.heads, head_dim).transpose(1, 0, 2)

    q, k, v = heads(h @ w["wq"]), heads(h @ w["wk"]), heads(h @ w["wv"])
    scores = q @ k.transpose(0, 2, 1) * (1.0 / math.sqrt(head_dim)) + mask
    attn = (se.softmax(scores, axis=-1) @ v).transpose(1, 0, 2).reshape(-1, cfg.dim)
    x = x + attn @ w["wo"]
    h = se.layer_norm(x, w["ln2_w"], w["ln2_b"])
    x = x + se.gelu(h @ w["w1"] + w["b1"]) @ w["w2"]
    out = se.rms_norm(x, w["norm_w"])
    out.name = "block_out"
    return [ids, mask], out


def causal_mask(tokens: int) -> np.ndarray:
    """0 on and below the diagonal, -inf above."""
    return np.triu(np.full((tokens, tokens), -np.inf, dtype=np.float32), k=1)


def reference_block(cfg: BlockConfig, weights: dict[str, np.ndarray], ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The same block written directly in NumPy (float64 accumulation)."""
    w = {k: v.astype(np.float64) for k, v in weights.items()}
    head_dim = cfg.dim // cfg.heads

    def layer_norm(t, g, b, eps=1e-5):
        mu = t.mean(-1, keepdims=True)
        return (t - mu) / np.sqrt(t.var(-1, keepdims=True) + eps) * g + b

    def softmax(t):
        e = np.exp(t - t.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    def heads(t):
        return t.reshape(-1, cfg.heads, head_dim).transpose(1, 0, 2)

    from math import erf

    x = w["embed"][ids]
    h = layer_norm(x, w["ln1_w"], w["ln1_b"])
    q, k, v = heads(h @ w["wq"]), heads(h @ w["wk"]), heads(h @ w["wv"])
    scores = q @ k.transpose(0, 2, 1) / math.sqrt(head_dim) + mask
    attn = (softmax(scores) @ v).transpose(1, 0, 2).reshape(-1, cfg.dim)
    x = x + attn @ w["wo"]
    h = layer_norm(x, w["ln2_w"], w["ln2_b"]) @ w["w1"] + w["b1"]
    gelu = 0.5 * h * (1 + np.vectorize(erf)(h / math.sqrt(2)))
    x = x + gelu @ w["w2"]
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-6) * w["norm_w"]
