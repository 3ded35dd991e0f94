"""symexpr.quant: calibration, W8A8 insertion against a NumPy fake-quant reference, quantize() and report()."""

from __future__ import annotations

import numpy as np
import pytest

import symexpr as se
from symexpr import quant
from symexpr.ops.quant import QLinear, absmax_scale, quantize_values, quantize_weight


def _mlp(seed=0, k=16, hidden=24, n=8):
    rng = np.random.default_rng(seed)
    x = se.tensor("x", "float32", (None, None, k))
    w1 = rng.standard_normal((k, hidden)).astype(np.float32)
    b1 = rng.standard_normal(hidden).astype(np.float32)
    w2 = rng.standard_normal((hidden, n)).astype(np.float32)
    h = se.gelu(x @ w1 + b1)
    return x, h @ w2, (w1, b1, w2), rng


def _batch(rng, rows=5, k=16):
    a = rng.standard_normal((3, rows, k)).astype(np.float32)
    a[..., 2] *= 25
    return (a,)


def test_calibrate_records_channel_maxima_and_samples():
    x, out, (w1, b1, w2), rng = _mlp()
    batches = [_batch(rng) for _ in range(4)]
    stats = quant.calibrate([x], out, batches, samples=7, progress=False)
    assert stats.batches == 4 and len(stats) == 2
    first = next(iter(stats.sites.values()))
    want = np.max(np.abs(np.concatenate([b[0].reshape(-1, 16) for b in batches])), axis=0)
    np.testing.assert_array_equal(first.channel_max, want)
    assert first.rows == 4 * 15 and first.samples.shape == (7, 16)
    assert first.tensor_max == float(want.max())


def test_calibrate_errors():
    x, out, _, rng = _mlp()
    with pytest.raises(ValueError, match="batches is empty"):
        quant.calibrate([x], out, [], progress=False)
    with pytest.raises(TypeError, match="each batch must be a tuple of arguments"):
        quant.calibrate([x], out, [np.zeros((1, 1, 16), np.float32)], progress=False)


def _reference(a, weights, scheme):
    """Independent NumPy W8A8 of the MLP: quantize activations and weights, integer matmul, dequantize."""
    w1, b1, w2 = weights

    def linear(x, w):
        if scheme.activations == "per_token":
            sx = absmax_scale(np.max(np.abs(x), axis=-1, keepdims=True))
        else:
            sx = absmax_scale(np.max(np.abs(x)))
        wq, sw = quantize_weight(w, scheme.weights, scheme.weight_bits)
        acc = quantize_values(x, sx).astype(np.int32) @ wq.astype(np.int32)
        return (acc.astype(np.float32) * sx) * sw

    h = se.function([xx := se.tensor("h", "float32", (None, None, 24))], se.gelu(xx))(linear(a, w1) + b1)
    return linear(h, w2)


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("scheme", ["per_channel_per_token", "O1", "O2"])
@pytest.mark.parametrize("bits", [8, 7])
def test_w8a8_matches_an_independent_numpy_reference(backend, scheme, bits):
    x, out, weights, rng = _mlp(1)
    scheme = quant.resolve_scheme(scheme, bits)
    f = se.function([x], out, backend=backend, passes=["fast_run", quant.W8A8(None, scheme)])
    assert sum(isinstance(n.op, QLinear) for n in f.fgraph.toposort()) == 2
    a = _batch(rng)[0]
    np.testing.assert_allclose(f(a), _reference(a, weights, scheme), rtol=1e-5, atol=1e-4)
    fp32 = se.function([x], out)(a)
    assert np.linalg.norm(f(a) - fp32) / np.linalg.norm(fp32) < (0.05 if bits == 8 else 0.1)


def test_static_scheme_needs_stats_and_uses_calibrated_scales():
    x, out, _, rng = _mlp(2)
    with pytest.raises(ValueError, match="static activation scales .* need calibration statistics"):
        se.function([x], out, passes=["fast_run", quant.w8a8(None, "per_tensor", "per_tensor", static=True)])
    stats = quant.calibrate([x], out, [_batch(rng)], progress=False)
    f = se.function([x], out, passes=["fast_run", quant.w8a8(stats, "per_tensor", "per_tensor", static=True)])
    sites = f.fgraph.annotations["quant"]["sites"]
    first = next(iter(stats.sites.values()))
    assert next(iter(sites.values()))["activation_scale"] == pytest.approx(float(absmax_scale(first.tensor_max)))


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_numpy_and_llvm_agree_exactly_on_the_quantized_graph(backend):
    x, out, _, rng = _mlp(3)
    batches = [_batch(rng) for _ in range(2)]
    f = quant.quantize([x], out, batches, alpha=0.5, backend=backend, progress=False)
    g = quant.quantize([x], out, batches, alpha=0.5, backend="numpy", progress=False)
    a = _batch(rng)[0]
    np.testing.assert_allclose(f(a), g(a), rtol=2e-6, atol=1e-5)


def test_quantize_and_report():
    x, out, _, rng = _mlp(4)
    batches = [_batch(rng) for _ in range(2)]
    f = quant.quantize([x], out, batches, scheme="O1", alpha="auto", progress=False)
    text = quant.report(f)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["#", "K", "x"] and len(lines) == 4
    assert "W8 per_tensor / A8 per_token dynamic" in text
    assert "16 x 24" in text and "24 x 8" in text
    assert quant.report(se.function([x], out)).startswith("no quantized matmuls")
    with pytest.raises(ValueError, match="scheme must be one of"):
        quant.quantize([x], out, batches, scheme="O4", progress=False)


def test_quantized_function_serves_every_shape():
    x, out, _, rng = _mlp(5)
    f = quant.quantize([x], out, [_batch(rng)], progress=False)
    for rows in (1, 4, 33):
        a = _batch(rng, rows)[0]
        ref = se.function([x], out)(a)
        assert f(a).shape == ref.shape
    assert f._compiled.compilations == 1


def test_tied_weights_keep_separate_statistics():
    """Two activations read through one weight: each site gets its own statistics and static scale."""
    rng = np.random.default_rng(6)
    a = se.tensor("a", "float32", (None, 8))
    b = se.tensor("b", "float32", (None, 8))
    w = rng.standard_normal((8, 4)).astype(np.float32)
    outs = [a @ w, b @ w]
    batch = (rng.standard_normal((6, 8)).astype(np.float32), 100 * rng.standard_normal((6, 8)).astype(np.float32))
    stats = quant.calibrate([a, b], outs, [batch], progress=False)
    assert len(stats) == 2
    f = se.function([a, b], outs, passes=["fast_run", quant.w8a8(stats, "per_tensor", "per_tensor", static=True)])
    assert len(f.fgraph.annotations["quant"]["sites"]) == 2
    for got, x in zip(f(*batch), batch):
        assert np.linalg.norm(got - x @ w) / np.linalg.norm(x @ w) < 0.03


def test_nan_in_calibration_is_ignored():
    x, out, _, rng = _mlp(7)
    (a,) = _batch(rng)
    a[0, 0, 3] = np.nan
    stats = quant.calibrate([x], out, [(a,)], progress=False)
    assert all(np.all(np.isfinite(s.channel_max)) for s in stats.sites.values())
    f = se.function([x], out, passes=["fast_run", quant.smooth(stats, "auto"), quant.w8a8(stats)])
    (clean,) = _batch(rng)
    assert np.all(np.isfinite(f(clean)))


def test_float16_smoothing_stays_finite():
    rng = np.random.default_rng(8)
    x = se.tensor("x", "float16", (None, 8))
    w = rng.standard_normal((8, 4)).astype(np.float16)
    w[3] = 0
    a = (rng.standard_normal((5, 8)) * 50).astype(np.float16)
    stats = quant.calibrate([x], x @ w, [(a,)], progress=False)
    for alpha in (0.0, 0.5, 1.0):
        got = se.function([x], x @ w, passes=["fast_run", quant.smooth(stats, alpha)])(a)
        np.testing.assert_allclose(got.astype(np.float32), (a @ w).astype(np.float32), rtol=2e-2, atol=0.5)


def test_empty_weights_are_left_alone():
    x = se.tensor("x", "float32", (None, 0))
    f = se.function([x], x @ np.zeros((0, 4), np.float32), passes=["fast_run", quant.w8a8()])
    np.testing.assert_array_equal(f(np.zeros((3, 0), np.float32)), np.zeros((3, 4), np.float32))


def test_per_token_quantizer_is_one_row_kernel_absorbing_cheap_producers():
    from symexpr.ops.quant import QuantizeRows

    rng = np.random.default_rng(9)
    x = se.tensor("x", "float32", (None, 16))
    w1, w2 = rng.standard_normal((16, 24)).astype(np.float32), rng.standard_normal((24, 8)).astype(np.float32)
    b1 = rng.standard_normal(24).astype(np.float32)
    out = se.maximum(x @ w1 + b1, 0) @ w2  # relu: cheap, absorbed; the first site reads the input itself
    f = se.function([x], out, passes=["fast_run", quant.w8a8()])
    names = [n.op.display_name() for n in f.fgraph.toposort() if isinstance(n.op, QuantizeRows)]
    assert names == ["QuantizeRows{identity(i0)}", "QuantizeRows{maximum(i0 + i1, 0.0)}"]
    gelu = se.gelu(x @ w1 + b1) @ w2  # gelu: too dear to evaluate twice, so stored and read
    g = se.function([x], gelu, passes=["fast_run", quant.w8a8()])
    names = [n.op.display_name() for n in g.fgraph.toposort() if isinstance(n.op, QuantizeRows)]
    assert names[-1] == "QuantizeRows{identity(i0)}"
    a = rng.standard_normal((5, 16)).astype(np.float32)
    np.testing.assert_allclose(f(a), se.function([x], out, backend="numpy", passes=["fast_run", quant.w8a8()])(a),
                               rtol=1e-5, atol=1e-5)
