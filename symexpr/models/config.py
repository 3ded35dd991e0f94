"""Reading a sentence-transformers model folder: ``config.json``, ``modules.json``, pooling and length settings."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

#: ``hidden_act`` values the encoder layers implement, and the ``se.gelu`` approximation (or ``"relu"``) for each.
ACTIVATIONS = {
    "gelu": "none",
    "gelu_new": "tanh",
    "gelu_pytorch_tanh": "tanh",
    "gelu_fast": "tanh",
    "relu": "relu",
}


class UnsupportedModelError(ValueError):
    """The model folder describes an architecture or setting the loader does not implement."""


@dataclass(frozen=True)
class BertConfig:
    """The ``config.json`` keys the BERT graph uses.

    Attributes
    ----------
    vocab_size, hidden_size, num_hidden_layers, num_attention_heads, intermediate_size : int
        The usual BERT dimensions.
    max_position_embeddings, type_vocab_size : int
        Rows of the position and token-type embedding tables.
    hidden_act : str
        A key of :data:`ACTIVATIONS`.
    layer_norm_eps : float
        Epsilon of every LayerNorm.
    """

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int = 2
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, cfg: dict, source: str = "config.json") -> BertConfig:
        """Validate a parsed ``config.json``; raise :class:`UnsupportedModelError` for what the graph cannot build."""
        model_type = cfg.get("model_type", "bert")
        if model_type != "bert":
            raise UnsupportedModelError(f"{source}: model_type must be 'bert', got {model_type!r}")
        pos_type = cfg.get("position_embedding_type", "absolute")
        if pos_type != "absolute":
            raise UnsupportedModelError(f"{source}: position_embedding_type must be 'absolute', got {pos_type!r}")
        if cfg.get("is_decoder", False) or cfg.get("add_cross_attention", False):
            raise UnsupportedModelError(
                f"{source}: only encoder models are supported (is_decoder or add_cross_attention is set)"
            )
        act = cfg.get("hidden_act", "gelu")
        if act not in ACTIVATIONS:
            raise UnsupportedModelError(f"{source}: hidden_act must be one of {sorted(ACTIVATIONS)}, got {act!r}")
        required = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                    "max_position_embeddings")
        missing = [k for k in required if k not in cfg]
        if missing:
            raise UnsupportedModelError(f"{source}: missing key(s) {', '.join(missing)}")
        sizes = {k: cfg[k] for k in (*required, "type_vocab_size") if k in cfg}
        for key, value in sizes.items():
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise UnsupportedModelError(f"{source}: {key} must be a positive int, got {value!r}")
        if sizes["hidden_size"] % sizes["num_attention_heads"]:
            raise UnsupportedModelError(
                f"{source}: hidden_size ({sizes['hidden_size']}) must be a multiple of num_attention_heads "
                f"({sizes['num_attention_heads']})"
            )
        eps = cfg.get("layer_norm_eps", 1e-12)
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps > 0:
            raise UnsupportedModelError(f"{source}: layer_norm_eps must be a positive number, got {eps!r}")
        return cls(**sizes, hidden_act=act, layer_norm_eps=float(eps))


@dataclass(frozen=True)
class EncoderSettings:
    """What the sentence-transformers files around the BERT weights ask for.

    Attributes
    ----------
    normalize : bool
        Whether ``modules.json`` lists a ``Normalize`` module after pooling.
    max_seq_length : int
        Tokens per sentence after truncation (``[CLS]`` and ``[SEP]`` included).
    do_lower_case : bool
        Lower-case the text before tokenising (sentence_bert_config.json).
    """

    normalize: bool
    max_seq_length: int
    do_lower_case: bool = False


_KNOWN_MODULES = ("Transformer", "Pooling", "Normalize")


def read_json(path: Path) -> dict | list:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


def read_settings(folder: Path, config: BertConfig) -> EncoderSettings:
    """Read ``modules.json``, the pooling config and ``sentence_bert_config.json`` (each optional)."""
    normalize = False
    pooling_dir = folder / "1_Pooling"
    modules_path = folder / "modules.json"
    if modules_path.is_file():
        modules = read_json(modules_path)
        if not isinstance(modules, list):
            raise UnsupportedModelError(f"{modules_path}: expected a list of modules, got {type(modules).__name__}")
        for module in modules:
            kind = str(module.get("type", "")).rsplit(".", 1)[-1]
            if kind not in _KNOWN_MODULES:
                raise UnsupportedModelError(
                    f"{modules_path}: module {module.get('type')!r} is not supported "
                    f"(supported: {', '.join(_KNOWN_MODULES)})"
                )
            if kind == "Normalize":
                normalize = True
            elif kind == "Pooling":
                pooling_dir = folder / module.get("path", "1_Pooling")
    _check_pooling(pooling_dir / "config.json")
    max_len = config.max_position_embeddings
    lower = False
    sbert_path = folder / "sentence_bert_config.json"
    if sbert_path.is_file():
        sbert = read_json(sbert_path)
        value = sbert.get("max_seq_length", max_len)
        if not isinstance(value, int) or isinstance(value, bool) or value < 2:
            raise UnsupportedModelError(f"{sbert_path}: max_seq_length must be an int >= 2, got {value!r}")
        max_len = min(value, max_len)
        lower = bool(sbert.get("do_lower_case", False))
    return EncoderSettings(normalize=normalize, max_seq_length=max_len, do_lower_case=lower)


def _check_pooling(path: Path) -> None:
    if not path.is_file():
        return
    pooling = read_json(path)
    mode = pooling.get("pooling_mode")
    modes = {k[len("pooling_mode_"):] for k, v in pooling.items() if k.startswith("pooling_mode_") and v is True}
    if mode is not None:
        modes.add({"mean": "mean_tokens"}.get(mode, mode))
    if modes != {"mean_tokens"}:
        found = ", ".join(sorted(modes)) or "none"
        raise UnsupportedModelError(f"{path}: only mean pooling (pooling_mode_mean_tokens) is supported, got {found}")
