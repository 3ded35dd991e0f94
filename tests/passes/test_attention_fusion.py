"""The attention-fusion pass fires on the forms users write, and the fused graph computes what the plain one does."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import symexpr as se
from symexpr import attention
from symexpr.ops.attention import Attention
from symexpr.ops.nnet import Softmax

B, H, D = 2, 3, 8


def _ops(f):
    return [n.op for n in f.fgraph.toposort()]


def _check_fused(inputs, out, args, backends=("numpy", "llvm"), rtol=3e-5, atol=3e-6, passes=None):
    want = se.function(inputs, out, backend="numpy", passes="fast_compile")(*args)
    for backend in backends:
        f = se.function(inputs, out, backend=backend, passes=passes)
        ops = _ops(f)
        assert any(isinstance(op, Attention) for op in ops), ops
        assert not any(isinstance(op, Softmax) for op in ops), ops
        np.testing.assert_allclose(f(*args), want, rtol=rtol, atol=atol)
    return f


def _qkv(shape_q=(B, H, None, D), shape_kv=None):
    shape_kv = shape_kv or shape_q
    return se.tensor("q", "float32", shape_q), se.tensor("k", "float32", shape_kv), se.tensor("v", "float32", shape_kv)


def _data(rng, *shapes):
    return [rng.standard_normal(s, dtype=np.float32) for s in shapes]


FORMS = {
    "softmax op, scale on scores": lambda q, k, v: se.softmax(q @ se.swapaxes(k, -1, -2) * 0.35, axis=-1) @ v,
    "scale divides the scores": lambda q, k, v: se.softmax((q @ se.swapaxes(k, -1, -2)) / 2.8, axis=-1) @ v,
    "scale on q": lambda q, k, v: se.softmax((q * 0.35) @ se.transpose(k, (0, 1, 3, 2)), axis=-1) @ v,
    "scale on k": lambda q, k, v: se.softmax(q @ (se.swapaxes(k, 2, 3) * 0.35), axis=-1) @ v,
    "scales everywhere": lambda q, k, v: se.softmax((q * 0.5) @ (se.swapaxes(k, -1, -2) / 2.0) * 1.4, axis=-1) @ v,
}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_scale_and_transpose_forms(form):
    q, k, v = _qkv()
    rng = np.random.default_rng(0)
    _check_fused([q, k, v], FORMS[form](q, k, v), _data(rng, (B, H, 11, D), (B, H, 11, D), (B, H, 11, D)))


def test_hand_written_softmax_and_dot_t():
    q, k, v = (se.tensor(n, "float32", (None, D)) for n in "qkv")  # 2-D, k transposed by .T
    s = q @ k.T * 0.3
    e = se.exp(s - se.max(s, axis=-1, keepdims=True))
    out = (e / se.sum(e, axis=-1, keepdims=True)) @ v
    rng = np.random.default_rng(1)
    _check_fused([q, k, v], out, _data(rng, (9, D), (13, D), (13, D)))


def test_padding_mask_and_mask_before_scale():
    q, k, v = _qkv()
    pad = se.tensor("pad", "float32", (B, None))  # 1 for tokens, 0 for padding
    bias = se.expand_dims((1.0 - pad) * -1e9, (1, 2))
    out = se.softmax((q @ se.swapaxes(k, -1, -2) + bias) * 0.3 + bias, axis=-1) @ v
    rng = np.random.default_rng(2)
    p = np.ones((B, 10), np.float32)
    p[1, 7:] = 0
    _check_fused([q, k, v, pad], out, _data(rng, (B, H, 10, D), (B, H, 10, D), (B, H, 10, D)) + [p])


def test_causal_mask_from_aranges_and_a_constant_mask():
    q, k, v = _qkv((B, H, 12, D))
    i = se.arange(12)
    causal = se.where(se.expand_dims(i, 0) <= se.expand_dims(i, 1), 0.0, -np.inf).astype("float32")
    const = np.random.default_rng(3).standard_normal((12, 12)).astype(np.float32)
    out = se.softmax(q @ se.swapaxes(k, -1, -2) * 0.3 + causal + const, axis=-1) @ v
    rng = np.random.default_rng(4)
    _check_fused([q, k, v], out, _data(rng, (B, H, 12, D), (B, H, 12, D), (B, H, 12, D)))


def test_blhd_layout_through_reshape_and_transpose():
    x = se.tensor("x", "float32", (None, None, 3 * H * D))  # (B, L, 3 * H * D), one projection
    b, length = x.shape[0], x.shape[1]
    qkv = se.reshape(x, (b, length, 3, H, D))
    q, k, v = (se.transpose(qkv[:, :, j], (0, 2, 1, 3)) for j in range(3))
    out = se.softmax(q @ se.swapaxes(k, -1, -2) * 0.35, axis=-1) @ v
    out = se.reshape(se.transpose(out, (0, 2, 1, 3)), (b, length, H * D))
    rng = np.random.default_rng(5)
    _check_fused([x], out, _data(rng, (B, 17, 3 * H * D)))


def test_bert_style_k_transposed_in_one_step():
    x = se.tensor("x", "float32", (B, None, H, D))
    q = se.transpose(x, (0, 2, 1, 3))
    k_t = se.transpose(x * 0.5, (0, 2, 3, 1))  # (B, H, D, L) straight from (B, L, H, D)
    out = se.softmax(q @ k_t, axis=-1) @ q
    rng = np.random.default_rng(6)
    _check_fused([x], out, _data(rng, (B, 9, H, D)))


def test_gqa_and_mqa_by_broadcasting():
    rng = np.random.default_rng(7)
    q = se.tensor("q", "float32", (B, 2, 3, None, D))  # (B, KV heads, group, L, d)
    k = se.tensor("k", "float32", (B, 2, 1, None, D))
    v = se.tensor("v", "float32", (B, 2, 1, None, D))
    out = se.softmax(q @ se.swapaxes(k, -1, -2) * 0.3, axis=-1) @ v
    _check_fused([q, k, v], out, _data(rng, (B, 2, 3, 6, D), (B, 2, 1, 20, D), (B, 2, 1, 20, D)))
    q4 = se.tensor("q", "float32", (B, H, None, D))  # MQA: one k/v head for all
    k4, v4 = se.tensor("k", "float32", (B, 1, None, D)), se.tensor("v", "float32", (B, 1, None, D))
    out = se.softmax(q4 @ se.swapaxes(k4, -1, -2) * 0.3, axis=-1) @ v4
    _check_fused([q4, k4, v4], out, _data(rng, (B, H, 5, D), (B, 1, 20, D), (B, 1, 20, D)))


def test_not_fused_where_it_would_change_the_graph():
    q, k, v = _qkv()
    s = q @ se.swapaxes(k, -1, -2)
    wrong_axis = se.softmax(s, axis=-2) @ v
    assert not any(isinstance(op, Attention) for op in _ops(se.function([q, k, v], wrong_axis, backend="numpy")))
    probs = se.softmax(s, axis=-1)  # the probabilities are an output too: computing them anyway, no gain
    f = se.function([q, k, v], [probs @ v, probs], backend="numpy")
    assert not any(isinstance(op, Attention) for op in _ops(f))
    for promoted in (se.softmax(s * np.float64(0.3), axis=-1) @ v, se.softmax(s / np.sqrt(D), axis=-1) @ v):
        # float64 scores (NumPy scalars are strongly typed): the op would compute in q's dtype
        f = se.function([q, k, v], promoted)
        assert not any(isinstance(op, Attention) for op in _ops(f)) and f.outputs[0].dtype == "float64"
    nonlinear = se.softmax(se.tanh(s), axis=-1) @ v
    assert not any(isinstance(op, Attention) for op in _ops(se.function([q, k, v], nonlinear, backend="numpy")))


@settings(max_examples=20, deadline=None)
@given(lq=st.integers(1, 40), lkv=st.integers(1, 70), scale=st.floats(0.05, 2.0), masked=st.booleans(),
       seed=st.integers(0, 2**31))
def test_fused_equals_unfused_on_random_shapes(lq, lkv, scale, masked, seed):
    q, k, v = (se.tensor(n, "float32", (2, None, 5)) for n in "qkv")
    mask = se.tensor("m", "float32", (None, None))
    s = q @ se.swapaxes(k, -1, -2) * scale
    out = se.softmax(s + mask if masked else s, axis=-1) @ v
    rng = np.random.default_rng(seed)
    args = _data(rng, (2, lq, 5), (2, lkv, 5), (2, lkv, 5))
    inputs = [q, k, v]
    if masked:
        inputs.append(mask)
        args.append(np.where(rng.random((lq, lkv)) < 0.2, -np.inf, 0).astype(np.float32))
    want = se.function(inputs, out, backend="numpy", passes="fast_compile")(*args)
    got = se.function(inputs, out, backend="llvm")(*args)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=3e-5, atol=3e-6)


def test_blasst_pass_sets_the_rule_and_counts_tiles():
    q, k, v = _qkv((1, 2, None, 16))
    out = se.softmax(q @ se.swapaxes(k, -1, -2) * 0.25, axis=-1) @ v
    f = se.function([q, k, v], out, passes=["fast_run", attention.blasst(threshold=1e-3, block_q=16, block_k=16)])
    op = next(op for op in _ops(f) if isinstance(op, Attention))
    assert op.threshold == 1e-3 and op.block_q == 16
    rng = np.random.default_rng(8)
    from support import with_sink

    qa, ka = with_sink(*_data(rng, (1, 2, 64, 16), (1, 2, 256, 16)), strength=20.0)
    va = _data(rng, (1, 2, 256, 16))[0]
    f(qa, ka, va)
    (stats,) = attention.stats(f)
    assert stats["tiles"] == 2 * 4 * 16 and 0 < stats["skipped"] <= stats["tiles"]
    assert stats["sparsity"] == stats["skipped"] / stats["tiles"]


def test_chained_attentions_are_fused_without_duplicating_the_graph():
    """Each attention reads the previous one's output: every replacement must see the graph already rewritten."""
    x = se.tensor("x", "float32", (B, H, None, D))
    w = np.random.default_rng(9).standard_normal((D, D)).astype(np.float32)
    h = x
    for _ in range(3):
        h = se.softmax((h @ w) @ se.swapaxes(h, -1, -2) * 0.3, axis=-1) @ h
    f = _check_fused([x], h, _data(np.random.default_rng(10), (B, H, 7, D)))
    ops = _ops(f)
    assert sum(isinstance(op, Attention) for op in ops) == 3
    assert sum(type(op).__name__ == "MatMul" for op in ops) == 3  # the h @ w, once each


def _causal(n_q, n_k, form="le"):
    i, j = se.arange(n_q), se.arange(n_k)
    jj, ii = se.expand_dims(j, 0), se.expand_dims(i, 1)
    if form == "le":
        return se.where(jj <= ii, 0.0, -np.inf).astype("float32")
    if form == "gt":
        return se.where(jj > ii, -np.inf, 0.0).astype("float32")
    return se.where(ii >= jj, np.float32(0), np.float32(-np.inf))


@pytest.mark.parametrize("form", ["le", "gt", "ge"])
def test_causal_mask_from_aranges_becomes_structural(form):
    """The (B, L, H, d) self-attention of one projection: q's and k's lengths are provably x's."""
    x = se.tensor("x", "float32", (1, None, 3 * H * D))
    length = x.shape[1]
    qkv = se.reshape(x, (1, length, 3, H, D))
    q, k, v = (se.transpose(qkv[:, :, j], (0, 2, 1, 3)) for j in range(3))
    mask = _causal(q.shape[2], k.shape[2], form)
    out = se.softmax(q @ se.swapaxes(k, -1, -2) * 0.35 + mask, axis=-1) @ v
    rng = np.random.default_rng(11)
    f = _check_fused([x], out, _data(rng, (1, 70, 3 * H * D)))
    op = next(op for op in _ops(f) if isinstance(op, Attention))
    assert op.causal == "top_left" and not op.has_mask


def test_causal_mask_of_unproven_lengths_stays_a_mask():
    q, k, v = _qkv()
    other = se.tensor("positions", "float32", (None,))  # its length is not provably q's or k's
    n = other.shape[0]
    out = se.softmax(q @ se.swapaxes(k, -1, -2) + _causal(n, n), axis=-1) @ v
    rng = np.random.default_rng(12)
    f = _check_fused([q, k, v, other], out, _data(rng, (B, H, 6, D), (B, H, 6, D), (B, H, 6, D), (6,)))
    op = next(op for op in _ops(f) if isinstance(op, Attention))
    assert not op.causal and op.has_mask


def test_static_causal_constant_becomes_structural():
    q, k, v = _qkv((B, H, 9, D))
    tril = np.where(np.tril(np.ones((9, 9), bool)), 0.0, -np.inf).astype(np.float32)
    out = se.softmax(q @ se.swapaxes(k, -1, -2) * 0.3 + tril, axis=-1) @ v
    rng = np.random.default_rng(13)
    f = _check_fused([q, k, v], out, _data(rng, (B, H, 9, D), (B, H, 9, D), (B, H, 9, D)))
    op = next(op for op in _ops(f) if isinstance(op, Attention))
    assert op.causal == "top_left" and not op.has_mask


def test_long_or_self_reusing_score_expressions_are_explored_quickly():
    """``s + s`` forty times over (a DAG of 2**40 paths) and a 5,000-term chain: no blow-up, no recursion error."""
    q, k, v = _qkv()
    s = q @ se.swapaxes(k, -1, -2)
    doubled = s
    for _ in range(40):
        doubled = doubled + doubled
    chain = s
    for i in range(5000):
        chain = chain + np.float32(i % 3)
    for scores in (doubled * np.float32(2.0**-40), chain):
        f = se.function([q, k, v], se.softmax(scores, axis=-1) @ v, backend="numpy")
        assert f(*_data(np.random.default_rng(14), (B, H, 3, D), (B, H, 4, D), (B, H, 4, D))).shape == (B, H, 3, D)
