"""Tokenising sentences with a Hugging Face ``tokenizer.json`` into padded (B, L) int64 arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class SentenceTokenizer:
    """Wraps ``tokenizers.Tokenizer``: truncation to ``max_length``, padding to the longest sentence of each batch.

    Parameters
    ----------
    path : Path
        A ``tokenizer.json`` file.
    max_length : int
        Tokens per sentence after truncation, special tokens included.
    lower_case : bool
        Lower-case each sentence first (sentence-transformers' ``do_lower_case``).
    """

    def __init__(self, path: Path, max_length: int, lower_case: bool = False):
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise ModuleNotFoundError(
                "symexpr.models needs the 'tokenizers' package to read tokenizer.json: pip install -e '.[models]'"
            ) from None
        self._tok = Tokenizer.from_file(str(path))
        self.max_length = int(max_length)
        self.lower_case = lower_case
        padding = self._tok.padding or {}
        pad_id = padding.get("pad_id", 0)
        pad_token = padding.get("pad_token", "[PAD]")
        self._tok.no_padding()
        self._tok.enable_padding(pad_id=pad_id, pad_token=pad_token)
        self._tok.enable_truncation(max_length=self.max_length)

    def __call__(self, sentences: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(input_ids, attention_mask)``, both int64 (len(sentences), longest length)."""
        if self.lower_case:
            sentences = [s.lower() for s in sentences]
        encodings = self._tok.encode_batch(list(sentences))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        return ids.reshape(len(encodings), -1), mask.reshape(len(encodings), -1)
