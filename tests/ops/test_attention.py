"""The fused Attention op: its NumPy reference (the tiled skip rule) and its build-time checks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import symexpr as se
from symexpr.ops.attention import Attention, attention_reference, causal_visible, fused_attention, key_splits

from support import plain_attention, with_sink


def skip_rule(q, k, v, mask, scale, causal, lam, bq, bk, items=None):
    """The BLASST rule, written plainly (one query tile at a time): (out, visited, skipped) per tile.

    A query tile's key tiles are cut into ``key_splits`` contiguous splits, each with its own running
    state and a first tile that is never skipped, merged by their log-sum-exp at the end.  ``items``
    is the call's number of query tiles over all its heads (default: this one head's).
    """
    q, k, v = (np.asarray(a, np.float32) for a in (q, k, v))
    lq, lkv = q.shape[0], k.shape[0]
    s_all = (q @ k.T) * np.float32(scale)
    if mask is not None:
        s_all = s_all + mask
    shift = (lkv - lq if causal == "bottom_right" else 0) if causal else None
    if causal:
        s_all = np.where(causal_visible(lq, lkv, causal), s_all, -np.inf)
    splits = key_splits(-(-lq // bq) if items is None else items, -(-lkv // bk))
    out = np.zeros((lq, v.shape[1]), np.float32)
    tiles = []
    with np.errstate(all="ignore"):
        for r0 in range(0, lq, bq):
            rows = slice(r0, min(r0 + bq, lq))
            last = min(r0 + bq, lq) - 1 + shift if causal else lkv - 1
            n_tiles = min(max(0, -(-(last + 1) // bk)), -(-lkv // bk))
            per = max(-(-n_tiles // splits), 1)
            states = []
            skipped = 0
            for start in range(0, max(n_tiles, 1), per):
                m = np.full(rows.stop - r0, -np.inf, np.float32)
                l = np.zeros_like(m)
                o = np.zeros((rows.stop - r0, v.shape[1]), np.float32)
                for j in range(start, min(start + per, n_tiles)):
                    cols = slice(j * bk, min((j + 1) * bk, lkv))
                    s = s_all[rows, cols]
                    tmax = np.fmax.reduce(s, axis=1)
                    if lam is not None and j > start and np.all(np.exp(tmax - m) < lam):
                        skipped += 1
                        continue
                    m_new = np.fmax(m, tmax)
                    m_use = np.where(m_new == -np.inf, 0, m_new)
                    p = np.exp(s - m_use[:, None])
                    alpha = np.exp(m - m_use)
                    l = l * alpha + p.sum(axis=1)
                    o = o * alpha[:, None] + p @ v[cols]
                    m = m_new
                states.append((m, l, o))
            top = np.fmax.reduce([m for m, _, _ in states], axis=0)
            top = np.where(top == -np.inf, 0, top)
            total = sum(np.exp(m - top) * l for m, l, _ in states)
            merged = sum(np.exp(m - top)[:, None] * o for m, _, o in states)
            out[rows] = merged / total[:, None] if lkv else merged
            tiles.append((n_tiles, skipped))
    return out, np.array(tiles, np.int64)


def _inputs(rng, lead, lq, lkv, d, dv, spread=1.0):
    q = rng.standard_normal(lead + (lq, d)).astype(np.float32) * np.float32(spread)
    k = rng.standard_normal(lead + (lkv, d)).astype(np.float32)
    v = rng.standard_normal(lead + (lkv, dv)).astype(np.float32)
    return q, k, v


@settings(max_examples=40, deadline=None)
@given(lq=st.integers(1, 40), lkv=st.integers(0, 40), d=st.integers(1, 9),
       causal=st.sampled_from([False, "bottom_right", "top_left"]),
       masked=st.booleans(), bq=st.integers(1, 9), bk=st.integers(1, 9), seed=st.integers(0, 2**31))
def test_dense_reference_equals_plain_attention(lq, lkv, d, causal, masked, bq, bk, seed):
    rng = np.random.default_rng(seed)
    q, k, v = _inputs(rng, (2,), lq, lkv, d, 3)
    mask = np.where(rng.random((lq, lkv)) < 0.3, -np.inf, rng.standard_normal((lq, lkv))).astype(np.float32) if masked else None
    got, counts = attention_reference(q, k, v, mask, 0.7, causal, None, bq, bk)
    want = plain_attention(q, k, v, mask, 0.7, causal)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
    assert counts.shape == (2, -(-lq // bq), 2) and not counts[..., 1].any()


@settings(max_examples=40, deadline=None)
@given(lq=st.integers(1, 30), lkv=st.integers(1, 60), causal=st.sampled_from([False, "bottom_right", "top_left"]),
       bq=st.integers(1, 8),
       bk=st.integers(1, 8), lam=st.sampled_from([0.0, 1e-3, 0.05, 0.3]), seed=st.integers(0, 2**31))
def test_vectorised_reference_follows_the_skip_rule(lq, lkv, causal, bq, bk, lam, seed):
    rng = np.random.default_rng(seed)
    q, k, v = _inputs(rng, (), lq, lkv, 4, 3, spread=3.0)
    got, counts = attention_reference(q, k, v, None, 0.5, causal, np.float32(lam), bq, bk)
    want, tiles = skip_rule(q, k, v, None, 0.5, causal, np.float32(lam), bq, bk)
    np.testing.assert_array_equal(counts, tiles)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_skipping_bounds_the_error_and_lambda_zero_is_dense():
    rng = np.random.default_rng(0)
    q, k, v = _inputs(rng, (3,), 64, 256, 16, 16)
    q, k = with_sink(q, k)
    dense = plain_attention(q, k, v, None, 0.25, False)
    exact, counts = attention_reference(q, k, v, None, 0.25, False, np.float32(0.0), 16, 16)
    assert counts[..., 1].sum() == 0
    np.testing.assert_allclose(exact, dense, rtol=1e-5, atol=1e-6)
    sparse, counts = attention_reference(q, k, v, None, 0.25, False, np.float32(1e-3), 16, 16)
    assert counts[..., 1].sum() > 0
    # each skipped key's weight is below lambda: the error is at most about lambda * Lkv * max|v|
    assert np.max(np.abs(sparse - dense)) < 1e-3 * 256 * np.max(np.abs(v))


def test_fully_masked_rows_are_nan_and_no_keys_give_zeros():
    rng = np.random.default_rng(1)
    q, k, v = _inputs(rng, (), 3, 5, 4, 2)
    mask = np.zeros((3, 5), np.float32)
    mask[1] = -np.inf
    out, _ = attention_reference(q, k, v, mask, 1.0, False, None, 2, 2)
    assert np.isnan(out[1]).all() and np.isfinite(out[[0, 2]]).all()
    # causal with more queries than keys: the first queries see no key at all
    q, k, v = _inputs(rng, (), 6, 2, 4, 2)
    out, _ = attention_reference(q, k, v, None, 1.0, True, None, 4, 4)
    assert np.isnan(out[:4]).all() and np.isfinite(out[4:]).all()
    q, k, v = _inputs(rng, (), 3, 0, 4, 2)
    out, counts = attention_reference(q, k, v, None, 1.0, False, None, 2, 2)
    assert out.shape == (3, 2) and not out.any() and not counts.any()


def test_op_attributes_and_lambda():
    op = Attention(0.5, scale_factor=100.0, block_q=32, block_k=16)
    assert op.skip_lambda(1000) == np.float32(0.1)
    assert op.skip_lambda(100) is None  # lambda >= 1: skipping is off
    assert Attention(0.5, threshold=0.01).skip_lambda(7) == np.float32(0.01)
    assert Attention(0.5).skip_lambda(10) is None
    assert "sf=100" in op.display_name() and "tiles=32x16" in op.display_name()
    for bad in (dict(threshold=-1.0), dict(scale_factor=float("nan")), dict(block_q=0), dict(threshold=0.1, scale_factor=1.0),
                dict(causal="sideways")):
        with pytest.raises(ValueError):
            Attention(0.5, **bad)


def test_build_time_errors_name_the_operands():
    q = se.tensor("q", "float32", (2, 5, 8))
    with pytest.raises(ValueError, match="q and k disagree on d"):
        fused_attention(q, se.tensor("k", "float32", (2, 7, 4)), se.tensor("v", "float32", (2, 7, 3)))
    with pytest.raises(ValueError, match="k and v disagree on Lkv"):
        fused_attention(q, se.tensor("k", "float32", (2, 7, 8)), se.tensor("v", "float32", (2, 6, 3)))
    with pytest.raises(TypeError, match="v is float64 but q is float32"):
        fused_attention(q, se.tensor("k", "float32", (2, 7, 8)), se.tensor("v", "float64", (2, 7, 3)))
    with pytest.raises(ValueError, match="leading dims"):
        fused_attention(q, se.tensor("k", "float32", (3, 7, 8)), se.tensor("v", "float32", (3, 7, 3)))
    with pytest.raises(ValueError, match="mask"):
        fused_attention(q, se.tensor("k", "float32", (2, 7, 8)), se.tensor("v", "float32", (2, 7, 3)),
                        mask=se.tensor("m", "float32", (5, 6)))
    with pytest.raises(ValueError, match="scale is needed"):
        fused_attention(se.tensor("q", "float32", (2, 5, None)), se.tensor("k", "float32", (2, 7, None)),
                        se.tensor("v", "float32", (2, 7, 3)))


def test_call_time_shape_errors_are_clear():
    q, k, v = (se.tensor(n, "float32", (None, None)) for n in "qkv")
    f = se.function([q, k, v], fused_attention(q, k, v, scale=1.0), backend="numpy")
    with pytest.raises(ValueError, match="q has d=4 but k has d=3"):
        f(np.ones((2, 4), np.float32), np.ones((5, 3), np.float32), np.ones((5, 2), np.float32))


def test_counts_output_type_leaves_the_tiles_unknown():
    """Passes change tile sizes (blasst(block_q=...)): the counts' type must not depend on them."""
    q = se.tensor("q", "float32", (None, 100, 8))
    out, counts = Attention(1.0, block_q=64)(q, q, q)
    assert out.type.shape == (None, 100, 8) and counts.type.shape == (None, None, 2) and counts.dtype == "int64"
    f = se.function([q], counts, backend="numpy")
    assert f(np.ones((3, 100, 8), np.float32)).shape == (3, 2, 2)


def test_decode_factor_applies_to_single_query_calls():
    op = Attention(0.5, scale_factor=10.0, decode_scale_factor=100.0)
    assert op.skip_lambda(1000, lq=1) == np.float32(0.1) and op.skip_lambda(1000, lq=7) == np.float32(0.01)
    with pytest.raises(ValueError, match="needs scale_factor"):
        Attention(0.5, decode_scale_factor=1.0)


def test_attention_prints_readably():
    q, k, v = (se.tensor(n, "float32", (None, 8)) for n in "qkv")
    assert se.pprint(fused_attention(q, k, v, scale=0.5)) == "attention(q, k, v, scale=0.5)[0]"
    out = fused_attention(q, k, v, scale=0.5, causal=True, scale_factor=3.0, block_q=32, block_k=16)
    assert se.pprint(out) == "attention(q, k, v, scale=0.5, causal='bottom_right', scale_factor=3, tiles=32x16)[0]"


def test_gqa_decode_reference_votes_over_the_group():
    """A decode step with k/v shared by a group: the group's heads are the rows of one query tile."""
    rng = np.random.default_rng(9)
    q = rng.standard_normal((2, 2, 5, 1, 8)).astype(np.float32)  # (B, KV heads, group, 1, d)
    k = rng.standard_normal((2, 2, 1, 200, 8)).astype(np.float32)
    q, k = with_sink(q, k, strength=15.0)
    v = rng.standard_normal((2, 2, 1, 200, 4)).astype(np.float32)
    out, counts = attention_reference(q, k, v, None, 0.5, False, np.float32(0.01), 2, 16)
    assert out.shape == (2, 2, 5, 1, 4) and counts.shape == (2, 2, 5, 1, 2)
    for b in range(2):
        for h in range(2):
            want, tiles = skip_rule(q[b, h, :, 0], k[b, h, 0], v[b, h, 0], None, 0.5, False, np.float32(0.01), 2, 16,
                                    items=2 * 2 * 3)
            np.testing.assert_allclose(out[b, h, :, 0], want, rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(counts[b, h, ::2, 0], tiles)
            assert not counts[b, h, 1::2].any()
    assert counts[..., 1].sum() > 0
