"""INT8 ops: the activation quantizer on every backend, weight quantization, and QLinear's reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import symexpr as se
from symexpr.ops import quant as Q

BACKENDS = ["numpy", "llvm"]


def _rows(draw_shape, seed, spread=10.0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(draw_shape).astype(np.float32)
    return x * np.float32(spread) ** rng.uniform(-1, 1, draw_shape[-1]).astype(np.float32)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=15, deadline=None)
@given(rows=st.integers(1, 9), k=st.integers(1, 40), lead=st.integers(1, 3), seed=st.integers(0, 2**31))
def test_per_token_quantizer_matches_the_numpy_definition(backend, rows, k, lead, seed):
    x = se.tensor("x", "float32", (None, None, k))
    xq, scale = Q.quantize_activation(x, "per_token")
    a = _rows((lead, rows, k), seed)
    got_q, got_s = se.function([x], [xq, scale], backend=backend)(a)
    want_s = Q.absmax_scale(np.max(np.abs(a), axis=-1, keepdims=True))
    np.testing.assert_array_equal(got_s, want_s)
    np.testing.assert_array_equal(got_q, Q.quantize_values(a, want_s))
    assert got_q.dtype == np.int8 and np.max(np.abs(got_q.astype(np.int16))) == 127


@pytest.mark.parametrize("backend", BACKENDS)
def test_per_tensor_and_static_quantizers(backend):
    x = se.tensor("x", "float32", (None, 8))
    a = _rows((5, 8), 3)
    q, s = se.function([x], list(Q.quantize_activation(x, "per_tensor")), backend=backend)(a)
    assert s.shape == ()
    np.testing.assert_array_equal(s, Q.absmax_scale(np.max(np.abs(a))))
    np.testing.assert_array_equal(q, Q.quantize_values(a, s))
    # A static scale too small for the data saturates at +-127 (never wraps).
    q, s = se.function([x], list(Q.quantize_activation(x, scale=np.float32(0.01))), backend=backend)(a)
    np.testing.assert_array_equal(q, np.clip(np.round(a / np.float32(0.01)), -127, 127).astype(np.int8))
    assert q.min() == -127 and q.max() == 127


@pytest.mark.parametrize("backend", BACKENDS)
def test_quantizer_rounds_half_to_even_and_zeroes_nan(backend):
    x = se.tensor("x", "float32", (None, 4))
    a = np.array([[2.5, -2.5, 0.5, 127.0], [np.nan, 1.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0]], np.float32)
    q, s = se.function([x], list(Q.quantize_activation(x, scale=np.float32(1.0))), backend=backend)(a)
    np.testing.assert_array_equal(q[0], [2, -2, 0, 127])
    assert q[1, 0] == 0
    q, s = se.function([x], list(Q.quantize_activation(x)), backend=backend)(a)
    assert np.isnan(s[1, 0]) and s[2, 0] == np.float32(Q.SCALE_FLOOR / 127)
    np.testing.assert_array_equal(q[2], 0)


def test_quantize_weight_ranges():
    w = np.random.default_rng(0).standard_normal((16, 5)).astype(np.float32)
    wq, sw = Q.quantize_weight(w)
    assert sw.shape == (5,) and np.all(np.max(np.abs(wq), axis=0) == 127)
    wq7, sw7 = Q.quantize_weight(w, "per_tensor", bits=7)
    assert sw7.shape == () and np.max(np.abs(wq7)) == 63
    np.testing.assert_allclose(wq7 * sw7, w, atol=float(sw7) / 2 + 1e-7)
    with pytest.raises(ValueError, match="granularity must be one of"):
        Q.quantize_weight(w, "per_row")
    with pytest.raises(ValueError, match="bits must be one of"):
        Q.quantize_weight(w, bits=4)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bits", [8, 7])
def test_qlinear_is_the_exact_integer_product(backend, bits):
    rng = np.random.default_rng(bits)
    q = Q.qmax(bits)
    xq = se.tensor("xq", "int8", (None, None, 37))
    wq = rng.integers(-q, q + 1, (37, 11)).astype(np.int8)
    a = rng.integers(-128, 128, (2, 5, 37)).astype(np.int8)
    acc = se.function([xq], Q.qlinear(xq, wq, weight_bits=bits), backend=backend)(a)
    np.testing.assert_array_equal(acc, a.astype(np.int32) @ wq.astype(np.int32))
    sx = rng.uniform(0.01, 1, (2, 5, 1)).astype(np.float32)
    sw = rng.uniform(0.01, 1, 11).astype(np.float32)
    bias = rng.standard_normal(11).astype(np.float32)
    s = se.tensor("sx", "float32", (None, None, 1))
    y = se.function([xq, s], Q.qlinear(xq, wq, s, sw, bias, weight_bits=bits), backend=backend)(a, sx)
    np.testing.assert_array_equal(y, (acc.astype(np.float32) * sx) * sw + bias)


def test_qlinear_build_errors_name_the_argument():
    xq = se.tensor("xq", "int8", (None, 8))
    with pytest.raises(TypeError, match="xq must be int8, got float32"):
        Q.qlinear(se.tensor("x", "float32", (None, 8)), np.zeros((8, 3), np.int8))
    with pytest.raises(ValueError, match="xq has K=8 columns but wq has 9 rows"):
        Q.qlinear(xq, np.zeros((9, 3), np.int8))
    with pytest.raises(ValueError, match=r"outside \[-63, 63\]"):
        Q.qlinear(xq, np.full((8, 3), 100, np.int8), weight_bits=7)
    with pytest.raises(TypeError, match="give both sx and sw"):
        Q.qlinear(xq, np.zeros((8, 3), np.int8), sx=np.float32(1))
    with pytest.raises(ValueError, match="weight_bits must be one of"):
        Q.QLinear(weight_bits=4)
    with pytest.raises(TypeError, match="x must be a float tensor"):
        Q.quantize_activation(xq)


def test_qlinear_prints_readably():
    xq = se.tensor("xq", "int8", (None, 8))
    y = Q.qlinear(xq, np.zeros((8, 3), np.int8), np.float32(0.5), np.ones(3, np.float32), np.zeros(3, np.float32))
    assert y.owner.op.display_name() == "QLinear{w8, scaled, bias}"
    assert "qlinear8(xq" in se.pprint(y)


@pytest.mark.parametrize("backend", BACKENDS)
def test_quantizer_with_a_smoothing_multiplier(backend):
    x = se.tensor("x", "float32", (None, 6))
    c = np.array([0.5, 2.0, 1.0, 0.25, 3.0, 1.5], np.float32)
    a = _rows((7, 6), 9)
    q, s = se.function([x], list(Q.quantize_activation(x, multiplier=c)), backend=backend)(a)
    want_s = Q.absmax_scale(np.max(np.abs(a) * c, axis=-1, keepdims=True))
    np.testing.assert_array_equal(s, want_s)
    with np.errstate(all="ignore"):
        want_q = np.clip(np.round(a * (c / want_s)), -127, 127).astype(np.int8)
    np.testing.assert_array_equal(q, want_q)
    # Within one level of quantizing the stored product.
    assert np.max(np.abs(q.astype(np.int16) - Q.quantize_values(a * c, want_s))) <= 1
    with pytest.raises(ValueError, match="multiplier must be positive"):
        Q.quantize_activation(x, multiplier=-c)
    with pytest.raises(ValueError, match="multiplier must be a vector of x's last dimension 6"):
        Q.quantize_activation(x, multiplier=c[:3])


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=10, deadline=None)
@given(rows=st.integers(1, 7), k=st.integers(1, 70), seed=st.integers(0, 2**31))
def test_quantize_rows_equals_the_composite_quantizer(backend, rows, k, seed):
    from symexpr.ops import scalar as ps

    x = se.tensor("x", "float32", (None, None, k))
    bias = se.tensor("b", "float32", (k,))
    program = ((ps.add, (("in", 0), ("in", 1))), (ps.maximum, (("tmp", 0), ("const", 0.0, "float32"))))
    xq, scale = Q.quantize_rows(program, [x, bias])
    assert xq.owner.op.display_name() == "QuantizeRows{maximum(i0 + i1, 0.0)}"
    a = _rows((2, rows, k), seed)
    a[0, 0, 0] = np.nan
    bv = np.random.default_rng(seed).standard_normal(k).astype(np.float32)
    got_q, got_s = se.function([x, bias], [xq, scale], backend=backend)(a, bv)
    want_q, want_s = se.function([x, bias], list(Q.quantize_activation(se.maximum(x + bias, 0))), backend="numpy")(a, bv)
    np.testing.assert_array_equal(got_s, want_s)
    np.testing.assert_array_equal(got_q, want_q)
    assert np.isnan(got_s[0, 0, 0]) and np.all(got_q[0, 0] == 0)


def test_quantize_rows_errors():
    from symexpr.ops import scalar as ps

    ident = ((ps.identity, (("in", 0),)),)
    with pytest.raises(TypeError, match="the expression must be float, got int32"):
        Q.quantize_rows(ident, [se.tensor("i", "int32", (None, 4))])
    with pytest.raises(ValueError, match="at least one dimension"):
        Q.quantize_rows(ident, [se.scalar("s")])
    x = se.tensor("x", "float32", (None, None))
    for backend in BACKENDS:
        with pytest.raises(ValueError, match="rows of length 0"):
            se.function([x], list(Q.quantize_rows(ident, [x])), backend=backend)(np.zeros((2, 0), np.float32))
