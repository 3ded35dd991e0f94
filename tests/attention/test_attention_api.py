"""symexpr.attention: the BLASST pass's statistics, threshold calibration and the synthetic generator."""

from __future__ import annotations

import numpy as np
import pytest

import symexpr as se
from symexpr import attention


def _graph(lq=None):
    q = se.tensor("q", "float32", (1, 4, lq, 32))
    k, v = (se.tensor(n, "float32", (1, 4, None, 32)) for n in "kv")
    return [q, k, v], se.softmax(q @ se.swapaxes(k, -1, -2) * float(1 / np.sqrt(32)), axis=-1) @ v


def test_stats_needs_the_blasst_pass_and_a_call():
    inputs, out = _graph()
    with pytest.raises(ValueError, match="compile with"):
        attention.stats(se.function(inputs, out))
    f = se.function(inputs, out, passes=["fast_run", attention.blasst(threshold=0.01)])
    with pytest.raises(ValueError, match="call the function once"):
        attention.stats(f)
    f(*attention.decoder_like_qkv(1, 4, 100, 300, 32))
    (s,) = attention.stats(f)
    assert s["lq"] == 100 and s["lkv"] == 300 and s["tiles"] == 4 * 1 * 5  # 4 heads x 1 query tile of 128 x 5 key tiles of 64
    assert f.side_outputs and len(f(*attention.decoder_like_qkv(1, 4, 5, 7, 32)).shape) == 4  # the one output


def test_blasst_arguments_are_checked():
    with pytest.raises(ValueError, match="not both"):
        attention.blasst(threshold_scale_factor=1.0, threshold=0.1)
    with pytest.raises(ValueError, match="keys must be"):
        attention.blasst(threshold_scale_factor={"prefil": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        attention.blasst(threshold=-0.5)


def test_calibration_reaches_the_target_sparsity():
    inputs, out = _graph()
    batches = [attention.decoder_like_qkv(1, 4, n, n, 32, seed=n) for n in (256, 512, 1024)]
    cal = attention.calibrate(inputs, out, batches, target_sparsity=0.5, progress=False)
    assert set(cal.scale_factor) == {"prefill"} and (cal.block_q, cal.block_k) == (128, 64)
    assert {s[2] for s in cal.samples} == {256, 512, 1024}
    assert all(0 <= s[3] <= 1 and s[4] >= 0 for s in cal.samples)
    f = se.function(inputs, out, passes=["fast_run", attention.blasst(threshold_scale_factor=cal.scale_factor)])
    f(*batches[-1])  # the long context, which can reach the target
    reached = attention.stats(f)[0]["sparsity"]
    assert abs(reached - 0.5) < 0.2, (cal.scale_factor, reached)
    with pytest.raises(ValueError, match="target_sparsity"):
        attention.calibrate(inputs, out, batches, target_sparsity=1.0)
    with pytest.raises(TypeError, match="each batch must be a tuple"):
        attention.calibrate(inputs, out, [batches[0][0]])
    with pytest.raises(ValueError, match="batches is empty"):
        attention.calibrate(inputs, out, [])


def test_decode_phase_gets_its_own_factor():
    inputs, out = _graph(lq=1)
    batches = [attention.decoder_like_qkv(1, 4, 1, n, 32, seed=n) for n in (1024, 2048)]
    cal = attention.calibrate(inputs, out, batches, target_sparsity=0.5, progress=False)
    assert set(cal.scale_factor) <= {"decode"}
    f = se.function(inputs, out, passes=["fast_run", attention.blasst(threshold_scale_factor={"decode": 5.0})])
    op = next(n.op for n in f.fgraph.toposort() if isinstance(n.op, attention.Attention))
    assert op.decode_scale_factor == 5.0 and op.scale_factor == 0.0  # prefill, not given, is dense


def test_calibration_plot(tmp_path):
    pytest.importorskip("matplotlib")
    inputs, out = _graph()
    cal = attention.calibrate(inputs, out, [attention.decoder_like_qkv(1, 4, 256, 256, 32)], thresholds=(1e-3, 0.1, 0.5),
                              progress=False, plot=tmp_path / "blasst.png")
    assert (tmp_path / "blasst.png").stat().st_size > 1000 and cal.samples


def test_synthetic_inputs_have_a_sink_and_a_local_window():
    q, k, v = attention.decoder_like_qkv(2, 3, 64, 256, 32, seed=3, retrieval_heads=1)
    assert q.shape == (2, 3, 64, 32) and k.shape == v.shape == (2, 3, 256, 32) and q.dtype == np.float32
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(32)
    assert s[:, :, :, 0].mean() > 7  # the sink
    near = np.mean([s[0, 0, i, 192 + i] for i in range(64)])
    assert near > s[0, 0, :, 1:100].mean() + 4  # the local window, in a local head
    with pytest.raises(ValueError, match="at least 8"):
        attention.decoder_like_qkv(d=4)


def test_blasst_changes_tile_sizes_of_statically_shaped_graphs():
    q, k, v = (se.tensor(n, "float32", (2, 100, 16)) for n in "qkv")
    out = se.softmax(q @ se.swapaxes(k, -1, -2) * 0.25, axis=-1) @ v
    f = se.function([q, k, v], out, passes=["fast_run", attention.blasst(threshold=0.05, block_q=16, block_k=32)])
    rng = np.random.default_rng(0)
    f(*(rng.standard_normal((2, 100, 16), dtype=np.float32) for _ in range(3)))
    (s,) = attention.stats(f)
    assert s["tiles"] == 2 * 7 * 4  # 2 heads x ceil(100 / 16) query tiles x ceil(100 / 32) key tiles
