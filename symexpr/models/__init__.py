"""Pretrained models as symexpr graphs: BERT sentence encoders from sentence-transformers folders.

>>> from symexpr import models
>>> enc = models.load_sentence_encoder(models.minilm_path())   # doctest: +SKIP
>>> enc.encode(["a sentence", "another"]).shape                # doctest: +SKIP
(2, 384)
"""

from symexpr.models.bert import bert_encoder, mean_pool, sentence_embedding
from symexpr.models.config import BertConfig, EncoderSettings, UnsupportedModelError
from symexpr.models.encoder import ModelFolder, SentenceEncoder, load_sentence_encoder, minilm_path, read_model_folder
from symexpr.models.tokenize import SentenceTokenizer
from symexpr.models.weights import bert_params, load_safetensors

__all__ = [
    "BertConfig",
    "EncoderSettings",
    "ModelFolder",
    "SentenceEncoder",
    "SentenceTokenizer",
    "UnsupportedModelError",
    "bert_encoder",
    "bert_params",
    "load_safetensors",
    "load_sentence_encoder",
    "mean_pool",
    "minilm_path",
    "read_model_folder",
    "sentence_embedding",
]
