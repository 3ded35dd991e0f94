"""BERT weights from ``model.safetensors``, checked against the config and laid out for the graph."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from symexpr.models.config import BertConfig, UnsupportedModelError

_PREFIXES = ("bert.", "model.", "0.auto_model.")


def load_safetensors(path: Path) -> dict[str, np.ndarray]:
    """All tensors of a safetensors file, with a ``bert.``-style prefix removed and LayerNorm gamma/beta renamed."""
    try:
        from safetensors.numpy import load_file
    except ImportError:
        raise ModuleNotFoundError(
            "symexpr.models needs the 'safetensors' package to read model.safetensors: pip install -e '.[models]'"
        ) from None
    raw = load_file(str(path))
    out = {}
    for name, value in raw.items():
        for prefix in _PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix):]
                break
        name = name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        out[name] = value
    return out


class _Reader:
    def __init__(self, tensors: dict, source: str):
        self.tensors = tensors
        self.source = source

    def get(self, name: str, shape: tuple) -> np.ndarray:
        if name not in self.tensors:
            raise UnsupportedModelError(f"{self.source}: missing tensor {name!r}")
        value = self.tensors[name]
        if value.shape != shape:
            raise UnsupportedModelError(f"{self.source}: tensor {name!r} has shape {value.shape}, expected {shape}")
        if value.dtype.kind != "f":
            raise UnsupportedModelError(
                f"{self.source}: tensor {name!r} has dtype {value.dtype}, expected a float dtype"
            )
        return np.asarray(value, dtype=np.float32)

    def linear(self, prefix: str, n_in: int, n_out: int, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """``(W.T, b)`` of a ``torch.nn.Linear`` (weight stored ``(out, in)``), both times ``scale``."""
        w = self.get(f"{prefix}.weight", (n_out, n_in))
        b = self.get(f"{prefix}.bias", (n_out,))
        return np.ascontiguousarray(w.T * np.float32(scale)), b * np.float32(scale)

    def norm(self, prefix: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        return self.get(f"{prefix}.weight", (n,)), self.get(f"{prefix}.bias", (n,))


def bert_params(tensors: dict[str, np.ndarray], config: BertConfig, source: str = "model.safetensors") -> dict:
    """The float32 arrays the graph uses, as a dict of plain arrays.

    Linear weights are transposed to ``(in, out)``; the query projection is multiplied by
    ``1 / sqrt(head_dim)`` (the attention scale) and joined with the key and value projections
    into one ``(D, 3 D)`` matrix ``qkv``; the token-type row 0 is added to the position table
    (every token has type 0).
    """
    r = _Reader(tensors, source)
    d, ff = config.hidden_size, config.intermediate_size
    pos = r.get("embeddings.position_embeddings.weight", (config.max_position_embeddings, d))
    types = r.get("embeddings.token_type_embeddings.weight", (config.type_vocab_size, d))
    params = {
        "word": r.get("embeddings.word_embeddings.weight", (config.vocab_size, d)),
        "position": pos + types[0],
        "embed_norm": r.norm("embeddings.LayerNorm", d),
        "layers": [],
    }
    scale = 1.0 / math.sqrt(config.head_dim)
    for i in range(config.num_hidden_layers):
        p = f"encoder.layer.{i}"
        params["layers"].append({
            "qkv": _concat(r.linear(f"{p}.attention.self.query", d, d, scale),
                           r.linear(f"{p}.attention.self.key", d, d),
                           r.linear(f"{p}.attention.self.value", d, d)),
            "attn_out": r.linear(f"{p}.attention.output.dense", d, d),
            "attn_norm": r.norm(f"{p}.attention.output.LayerNorm", d),
            "inter": r.linear(f"{p}.intermediate.dense", d, ff),
            "out": r.linear(f"{p}.output.dense", ff, d),
            "out_norm": r.norm(f"{p}.output.LayerNorm", d),
        })
    return params


def _concat(*linears: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([w for w, _ in linears], axis=1), np.concatenate([b for _, b in linears])
