"""The BERT encoder and mean pooling as a symexpr graph, for any batch size and sequence length."""

from __future__ import annotations

import numpy as np

import symexpr as se
from symexpr.models.config import ACTIVATIONS, BertConfig

#: Added to the attention scores of padding keys (as in Hugging Face's BERT).
MASK_BIAS = float(np.finfo(np.float32).min)


def _const(array: np.ndarray, name: str) -> se.Variable:
    return se.constant(np.ascontiguousarray(array, dtype=np.float32), name=name)


def _dense(x, wb, name: str):
    w, b = wb
    return x @ _const(w, f"{name}.W") + _const(b, f"{name}.b")


def _layer_norm(x, wb, eps: float, name: str):
    return se.layer_norm(x, _const(wb[0], f"{name}.g"), _const(wb[1], f"{name}.b"), eps=eps)


def _activation(x, hidden_act: str):
    kind = ACTIVATIONS[hidden_act]
    return se.relu(x) if kind == "relu" else se.gelu(x, approximate=kind)


def _attention(x, batch, length, key_bias, layer: dict, config: BertConfig, name: str):
    """Multi-head self-attention of the token rows ``x`` (B*L, D).

    ``key_bias`` (B, 1, 1, L) is 0 for tokens and :data:`MASK_BIAS` for padding.
    """
    heads, head_dim = config.num_attention_heads, config.head_dim
    qkv = se.reshape(_dense(x, layer["qkv"], f"{name}.qkv"), (batch, length, 3, heads, head_dim))
    q = se.transpose(qkv[:, :, 0], (0, 2, 1, 3))
    k_t = se.transpose(qkv[:, :, 1], (0, 2, 3, 1))
    v = se.transpose(qkv[:, :, 2], (0, 2, 1, 3))
    probs = se.softmax(q @ k_t + key_bias, axis=-1)
    context = se.reshape(se.transpose(probs @ v, (0, 2, 1, 3)), (-1, config.hidden_size))
    return _dense(context, layer["attn_out"], f"{name}.attn_out")


def bert_encoder(params: dict, config: BertConfig, input_ids, attention_mask):
    """Last hidden states (B, L, D) float32 of a post-LN BERT encoder.

    Parameters
    ----------
    params : dict
        Arrays from :func:`symexpr.models.weights.bert_params`.
    config : BertConfig
    input_ids : Variable
        int64 (B, L) token ids, each in ``[0, vocab_size)``.
    attention_mask : Variable
        (B, L), 1 for tokens and 0 for padding (any numeric dtype).

    Returns
    -------
    Variable
        float32 (B, L, hidden_size).
    """
    batch, length = input_ids.shape
    d, eps = config.hidden_size, config.layer_norm_eps
    mask = se.cast(attention_mask, "float32")
    key_bias = se.expand_dims((1.0 - mask) * MASK_BIAS, (1, 2))
    words = se.take(_const(params["word"], "word_embeddings"), input_ids, axis=0)
    positions = _const(params["position"], "position_embeddings")[:length]
    # The dense layers see all tokens as the rows of one (B*L, D) matrix: one GEMM each.
    x = se.reshape(_layer_norm(words + positions, params["embed_norm"], eps, "embeddings.norm"), (-1, d))
    for i, layer in enumerate(params["layers"]):
        name = f"layer{i}"
        attended = _attention(x, batch, length, key_bias, layer, config, name)
        x = _layer_norm(x + attended, layer["attn_norm"], eps, f"{name}.attn_norm")
        hidden = _activation(_dense(x, layer["inter"], f"{name}.inter"), config.hidden_act)
        x = _layer_norm(x + _dense(hidden, layer["out"], f"{name}.out"), layer["out_norm"], eps, f"{name}.out_norm")
    return se.reshape(x, (batch, length, d))


def mean_pool(hidden, attention_mask, normalize: bool = False):
    """Average of ``hidden`` (B, L, D) over the tokens where ``attention_mask`` (B, L) is 1; optionally L2-normalised.

    Follows sentence-transformers: the token count is clamped at 1e-9 and the norm at 1e-12.
    """
    mask = se.cast(attention_mask, "float32")
    summed = se.sum(hidden * se.expand_dims(mask, 2), axis=1)
    pooled = summed / se.maximum(se.sum(mask, axis=1, keepdims=True), 1e-9)
    if normalize:
        norm = se.sqrt(se.sum(pooled * pooled, axis=1, keepdims=True))
        pooled = pooled / se.maximum(norm, 1e-12)
    return pooled


def sentence_embedding(params: dict, config: BertConfig, input_ids, attention_mask, normalize: bool = False):
    """Mean-pooled BERT sentence embeddings (B, hidden_size) float32; see :func:`bert_encoder` for the arguments."""
    hidden = bert_encoder(params, config, input_ids, attention_mask)
    return mean_pool(hidden, attention_mask, normalize)
