"""The llvm attention kernel against the NumPy reference of the same tiled rule: outputs and tile counts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import symexpr as se
from symexpr.ops.attention import Attention, attention_reference, key_splits

from support import num_threads, plain_attention, with_sink


def _compile(op, lead_q, lead_kv, d, dv, mask_shape=None):
    q = se.tensor("q", "float32", lead_q + (None, d))
    k = se.tensor("k", "float32", lead_kv + (None, d))
    v = se.tensor("v", "float32", lead_kv + (None, dv))
    inputs = [q, k, v]
    if mask_shape is not None:
        inputs.append(se.tensor("mask", "float32", mask_shape))
    out, counts = op(*inputs)
    return se.function(inputs, [out, counts], backend="llvm", passes="fast_compile")


def _check(f, op, args, rtol=3e-5, atol=3e-6):
    got, counts = f(*args)
    mask = args[3] if len(args) > 3 else None
    want, want_counts = attention_reference(*args[:3], mask, op.scale, op.causal, op.skip_lambda(args[1].shape[-2], args[0].shape[-2]),
                                            op.block_q, op.block_k)
    np.testing.assert_array_equal(counts, want_counts)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    return got, counts


@settings(max_examples=30, deadline=None)
@given(lq=st.integers(1, 70), lkv=st.integers(0, 90), d=st.integers(1, 20), dv=st.integers(1, 20),
       causal=st.sampled_from([False, "bottom_right", "top_left"]), mask_kind=st.sampled_from(["none", "full", "padding"]),
       tiles=st.sampled_from([(64, 64), (16, 8), (5, 7), (1, 1)]), gqa=st.booleans(), seed=st.integers(0, 2**31))
def test_dense_kernel_matches_the_reference(lq, lkv, d, dv, causal, mask_kind, tiles, gqa, seed):
    rng = np.random.default_rng(seed)
    lead_q, lead_kv = (2, 3), ((2, 1) if gqa else (2, 3))  # GQA: k/v heads broadcast over the query heads
    op = Attention(0.37, causal=causal, block_q=tiles[0], block_k=tiles[1], has_mask=mask_kind != "none")
    mask_shape = {"none": None, "full": (lq, lkv), "padding": (2, 1, 1, lkv)}[mask_kind]
    f = _compile(op, lead_q, lead_kv, d, dv, mask_shape)
    args = [rng.standard_normal(lead_q + (lq, d), dtype=np.float32), rng.standard_normal(lead_kv + (lkv, d), dtype=np.float32),
            rng.standard_normal(lead_kv + (lkv, dv), dtype=np.float32)]
    if mask_shape is not None:
        args.append(np.where(rng.random(mask_shape) < 0.25, -np.inf, rng.standard_normal(mask_shape)).astype(np.float32))
    got, _ = _check(f, op, args)
    if lkv:
        want = plain_attention(*args[:3], args[3] if mask_shape else None, op.scale, causal)
        np.testing.assert_allclose(got, want, rtol=5e-5, atol=5e-6)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("rule", [dict(threshold=1e-3), dict(threshold=0.0), dict(scale_factor=2.0), dict(scale_factor=1e4)])
def test_skipping_kernel_skips_the_tiles_the_rule_picks(threads, causal, rule):
    rng = np.random.default_rng(7)
    q = rng.standard_normal((2, 3, 150, 16), dtype=np.float32)
    k = rng.standard_normal((2, 3, 300, 16), dtype=np.float32)
    v = rng.standard_normal((2, 3, 300, 12), dtype=np.float32)
    q, k = with_sink(q, k, strength=20.0)
    op = Attention(0.25, causal=causal, block_q=32, block_k=16, **rule)
    f = _compile(op, (2, 3), (2, 3), 16, 12)
    with num_threads(threads):
        _, counts = _check(f, op, [q, k, v], rtol=1e-4, atol=1e-5)
    skipped = counts[..., 1].sum()
    if rule.get("threshold") == 0.0 or rule.get("scale_factor") == 1e4:  # lambda 0, or lambda >= 1: nothing skipped
        assert skipped == 0
    else:
        assert skipped > counts[..., 0].sum() // 3


def test_strided_layouts_are_read_in_place_or_copied():
    """(B, L, H, d) reached by a transpose, a q whose head dim is not contiguous, a broadcast mask."""
    rng = np.random.default_rng(3)
    x = se.tensor("x", "float32", (None, None, 4, 8))  # (B, L, H, d)
    qh = se.transpose(x, (0, 2, 1, 3))  # (B, H, L, d): a strided view
    kt = se.tensor("kt", "float32", (None, 4, 8, None))  # k given as (B, H, d, L): its head dim is strided
    v = se.tensor("v", "float32", (None, 4, None, 8))
    op = Attention(0.3, block_q=8, block_k=8)
    out, _ = op(qh, se.swapaxes(kt, -1, -2), v)
    f = se.function([x, kt, v], out, backend="llvm", passes="fast_compile")
    a = rng.standard_normal((2, 19, 4, 8), dtype=np.float32)
    b = rng.standard_normal((2, 4, 8, 23), dtype=np.float32)
    c = rng.standard_normal((2, 4, 23, 8), dtype=np.float32)
    want = plain_attention(np.transpose(a, (0, 2, 1, 3)), np.swapaxes(b, -1, -2), c, None, 0.3, False)
    np.testing.assert_allclose(f(a, b, c), want, rtol=3e-5, atol=3e-6)


def test_one_compile_serves_every_length():
    q, k, v = (se.tensor(n, "float32", (None, None, 16)) for n in "qkv")
    op = Attention(0.25, causal=True, block_q=16, block_k=16)
    f = se.function([q, k, v], op(q, k, v)[0], backend="llvm")
    rng = np.random.default_rng(5)
    for lq, lkv in [(1, 1), (5, 300), (40, 40), (17, 33), (1, 1000)]:
        args = [rng.standard_normal((3, n, 16), dtype=np.float32) for n in (lq, lkv, lkv)]
        np.testing.assert_allclose(f(*args), plain_attention(*args, None, 0.25, True), rtol=3e-5, atol=3e-6)
    assert f._compiled.compilations == 1


def test_nan_and_inf_propagate_as_softmax_defines():
    q, k, v = (se.tensor(n, "float32", (None, 4)) for n in "qkv")
    m = se.tensor("m", "float32", (None, None))
    op = Attention(1.0, block_q=2, block_k=2, has_mask=True)
    f = se.function([q, k, v, m], op(q, k, v, m)[0], backend="llvm")
    rng = np.random.default_rng(2)
    a = [rng.standard_normal((4, 4), dtype=np.float32) for _ in range(3)]
    mask = np.zeros((4, 4), np.float32)
    mask[0, 3] = np.nan
    mask[1, 2] = np.inf
    mask[2] = -np.inf
    got = f(*a, mask)
    want = plain_attention(*a, mask, 1.0, False)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert np.isnan(got[:3]).all() and np.isfinite(got[3]).all()


def test_tiles_too_large_for_the_stack_run_on_the_host():
    """Huge tiles (or head dims) would overflow a thread's stack in the kernel: the host computes them."""
    from symexpr.kernel.lowerings import ATTENTION_STACK_BYTES, attention_stack_bytes

    assert attention_stack_bytes(128, 64, 256, 256) <= ATTENTION_STACK_BYTES < attention_stack_bytes(128, 64, 512, 512)
    q, k, v = (se.tensor(n, "float32", (None, 16)) for n in "qkv")
    op = Attention(0.25, block_q=2048, block_k=2048)
    f = se.function([q, k, v], op(q, k, v)[0], backend="llvm")
    args = [np.random.default_rng(1).standard_normal((8, 16), dtype=np.float32) for _ in range(3)]
    np.testing.assert_allclose(f(*args), plain_attention(*args, None, 0.25, False), rtol=3e-5, atol=3e-6)
    assert "attention" not in f._compiled.plan.text()


def test_lambda_just_below_one_rounds_as_the_op_does():
    op = Attention(0.5, threshold=1 - 1e-9, block_q=8, block_k=8)  # rounds to 1.0f: nothing is skipped
    f = _compile(op, (1,), (1,), 8, 4)
    rng = np.random.default_rng(4)
    _, counts = _check(f, op, [rng.standard_normal((1, 16, 8), dtype=np.float32),
                               rng.standard_normal((1, 64, 8), dtype=np.float32),
                               rng.standard_normal((1, 64, 4), dtype=np.float32)])
    assert not counts[..., 1].any()


@pytest.mark.parametrize("lq", [1, 40])
def test_decode_factor_is_chosen_at_run_time(lq):
    rng = np.random.default_rng(6)
    op = Attention(0.25, scale_factor=0.0, decode_scale_factor=50.0, block_q=16, block_k=16)
    f = _compile(op, (2,), (2,), 16, 8)
    q = rng.standard_normal((2, lq, 16), dtype=np.float32)
    k = rng.standard_normal((2, 500, 16), dtype=np.float32)
    q, k = with_sink(q, k, strength=20.0)
    _, counts = _check(f, op, [q, k, rng.standard_normal((2, 500, 8), dtype=np.float32)], rtol=1e-4, atol=1e-5)
    assert (counts[..., 1].sum() > 0) == (lq == 1)  # prefill's factor 0 skips nothing


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("rule", [dict(), dict(threshold=0.02)])
def test_split_keys_merge_as_the_reference_does(threads, causal, rule):
    """Few work items over many key tiles: each tile's keys are split, every split's first tile is kept."""
    rng = np.random.default_rng(11)
    lq, lkv = 40, 700
    op = Attention(0.25, causal=causal, block_q=16, block_k=16, has_mask=True, **rule)
    assert key_splits(3, -(-lkv // 16)) == 3  # (one head x 3 query tiles) x 3 splits
    f = _compile(op, (1,), (1,), 16, 8, (lq, lkv))
    q = rng.standard_normal((1, lq, 16), dtype=np.float32)
    k = rng.standard_normal((1, lkv, 16), dtype=np.float32)
    q, k = with_sink(q, k, strength=20.0)
    v = rng.standard_normal((1, lkv, 8), dtype=np.float32)
    mask = np.zeros((lq, lkv), np.float32)
    mask[3] = -np.inf  # a fully masked row: NaN, as softmax gives
    mask[5, :400] = -np.inf  # a row whose first splits see no key
    mask[7, 100:] = -np.inf  # a row whose last splits see no key
    mask[9, 150] = np.nan
    with num_threads(threads):
        got, counts = _check(f, op, [q, k, v, mask], rtol=1e-4, atol=1e-5)
    assert np.isnan(got[0, [3, 9]]).all() and np.isfinite(np.delete(got[0], [3, 9], axis=0)).all()
    if not rule:
        np.testing.assert_allclose(got, plain_attention(q, k, v, mask, 0.25, causal), rtol=5e-5, atol=5e-6)
    else:
        # splits never skip their first tile: at least one visited tile per split is kept
        assert 0 < counts[..., 1].sum() <= (counts[..., 0] - 3).clip(0).sum()


def test_one_sequence_decode_splits_the_long_context():
    """MQA decode of one sequence: one work item without splitting; 8 splits of the keys with it."""
    rng = np.random.default_rng(12)
    op = Attention(0.125, block_k=64)
    f = _compile(op, (1, 8), (1, 1), 64, 64)
    q = rng.standard_normal((1, 8, 1, 64), dtype=np.float32)
    k = rng.standard_normal((1, 1, 5000, 64), dtype=np.float32)
    v = rng.standard_normal((1, 1, 5000, 64), dtype=np.float32)
    assert key_splits(1, -(-5000 // 64)) == 8
    got, counts = _check(f, op, [q, k, v])
    np.testing.assert_allclose(got, plain_attention(q, k, v, None, 0.125, False), rtol=5e-5, atol=5e-6)
    assert counts[0, 0, 0, 0] == 79 and counts[..., 1].sum() == 0
    assert "splits=8" in f._compiled.plan.text()


@pytest.mark.parametrize("layout", ["gqa", "mqa"])
@pytest.mark.parametrize("rule", [dict(), dict(threshold=0.02), dict(scale_factor=1.0, decode_scale_factor=6.0)])
def test_gqa_decode_groups_the_heads_into_tile_rows(layout, rule):
    """One query per head, k and v shared by a group: the group's heads are the rows (and vote together)."""
    rng = np.random.default_rng(8)
    if layout == "gqa":
        lead_q, lead_kv = (2, 2, 3), (2, 2, 1)  # (B, KV heads, group)
    else:
        lead_q, lead_kv = (2, 5), (2, 1)  # MQA: every head shares one k/v
    op = Attention(0.25, block_q=2, block_k=16, **rule)
    f = _compile(op, lead_q, lead_kv, 16, 8)
    q = rng.standard_normal(lead_q + (1, 16), dtype=np.float32)
    k = rng.standard_normal(lead_kv + (300, 16), dtype=np.float32)
    q, k = with_sink(q, k, strength=20.0)
    v = rng.standard_normal(lead_kv + (300, 8), dtype=np.float32)
    got, counts = _check(f, op, [q, k, v], rtol=1e-4, atol=1e-5)
    if not rule:
        np.testing.assert_allclose(got, plain_attention(q, k, v, None, 0.25, False), rtol=3e-5, atol=3e-6)
    group = lead_q[-1]
    tiles = -(-group // 2)
    assert (counts[..., 0] > 0).sum() == np.prod(lead_q[:-1]) * tiles  # one report per tile, at its first head
    if rule:
        assert counts[..., 1].sum() > 0
    assert "lead=(2,)" in f._compiled.plan.text() or "lead=(2, 2)" in f._compiled.plan.text()


@pytest.mark.parametrize("rule", [dict(), dict(threshold=0.02)])
def test_float16_operands_compute_in_float32_as_the_op_does(rule):
    """float16 q, k, v and mask (GQA-broadcast k/v) run in the kernel, converted once each; one rounding at the end."""
    rng = np.random.default_rng(13)
    q = se.tensor("q", "float16", (2, 3, None, 16))
    k = se.tensor("k", "float16", (2, 1, None, 16))
    v = se.tensor("v", "float16", (2, 1, None, 8))
    m = se.tensor("m", "float16", (None, None))
    op = Attention(0.25, causal=True, block_q=8, block_k=8, has_mask=True, **rule)
    out, counts = op(q, k, v, m)
    f = se.function([q, k, v, m], [out, counts], backend="llvm", passes="fast_compile")
    ref = se.function([q, k, v, m], [out, counts], backend="numpy")
    qa = rng.standard_normal((2, 3, 37, 16)).astype(np.float16)
    ka = rng.standard_normal((2, 1, 50, 16)).astype(np.float16)
    qa, ka = with_sink(qa, ka, strength=8.0)
    args = [qa.astype(np.float16), ka.astype(np.float16), rng.standard_normal((2, 1, 50, 8)).astype(np.float16),
            np.where(rng.random((37, 50)) < 0.2, -np.inf, 0.0).astype(np.float16)]
    got, got_counts = f(*args)
    want, want_counts = ref(*args)
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got_counts, want_counts)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=2e-3, atol=2e-3)
    assert "attention k" in f._compiled.plan.text()  # the kernel, not the host
