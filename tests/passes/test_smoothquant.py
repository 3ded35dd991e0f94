"""SmoothQuant smoothing: an exact rewrite (outputs change only within rounding), folded only where exact."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import symexpr as se
from symexpr import quant
from symexpr.passes.smoothquant import _homogeneous, smoothing_scales
from symexpr.ops import scalar as ps
from symexpr.testing import GraphCase, assert_rewrite_preserves

K = 12


def _block(h, rng, kind, shared):
    """One block on ``h`` (..., K): a norm or a linear chain whose output feeds one or two linears."""
    if kind in ("layer_norm", "layer_norm_residual"):
        x = se.layer_norm(h, rng.uniform(0.5, 2, K).astype(np.float32), rng.standard_normal(K).astype(np.float32))
    elif kind == "rms_norm":
        x = se.rms_norm(h, rng.uniform(0.5, 2, K).astype(np.float32))
    elif kind == "relu":
        x = se.maximum(h @ rng.standard_normal((K, K)).astype(np.float32) + rng.standard_normal(K).astype(np.float32), 0)
    else:  # gelu: not homogeneous, so an explicit multiply
        x = se.gelu(h @ rng.standard_normal((K, K)).astype(np.float32))
    y = x @ rng.standard_normal((K, K)).astype(np.float32)
    if shared:
        y = y + x @ rng.standard_normal((K, K)).astype(np.float32)
    if kind == "layer_norm_residual":  # post-LN: the norm's output is also the residual stream
        y = y + x
    return y


KINDS = ["layer_norm", "layer_norm_residual", "rms_norm", "relu", "gelu"]


@st.composite
def smoothing_cases(draw):
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=3))
    shared = draw(st.lists(st.booleans(), min_size=len(kinds), max_size=len(kinds)))
    seed = draw(st.integers(0, 2**31))
    alpha = draw(st.sampled_from([0.0, 0.3, 0.5, 0.8, 1.0, "auto"]))
    return kinds, shared, seed, alpha


def _network(kinds, shared, seed):
    rng = np.random.default_rng(seed)
    x = se.tensor("x", "float32", (None, None, K))
    h = x
    for kind, sh in zip(kinds, shared):
        h = _block(h, rng, kind, sh)
    return x, h, rng


def _data(rng, rows=6):
    a = rng.standard_normal((2, rows, K)).astype(np.float32)
    a[..., 1] *= 40  # an outlier channel, as in transformers
    return a


@settings(max_examples=25, deadline=None)
@given(smoothing_cases())
def test_smoothing_alone_preserves_outputs(case):
    kinds, shared, seed, alpha = case
    x, out, rng = _network(kinds, shared, seed)
    stats = quant.calibrate([x], out, [(_data(rng),) for _ in range(3)], progress=False)
    graph = GraphCase((x,), (out,), (_data(rng),))
    assert_rewrite_preserves(["fast_run", quant.smooth(stats, alpha, sites="all")], graph, rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize(
    "kind, where",
    [
        ("layer_norm", "folded into LayerNorm"),
        ("rms_norm", "folded into RMSNorm"),
        ("relu", "folded into Fused{maximum(i0 + i1, 0.0)}"),
        ("layer_norm_residual", "explicit x * (1/s)"),
        ("gelu", "explicit x * (1/s)"),
    ],
)
def test_folding_happens_only_where_exact(kind, where):
    x, out, rng = _network([kind], [True], 7)
    stats = quant.calibrate([x], out, [(_data(rng),)], progress=False)
    f = se.function([x], out, passes=["fast_run", quant.smooth(stats, 0.5, sites="all")])
    smoothed = f.fgraph.annotations["quant"]["smoothed"]
    last = [v for v in smoothed.values() if not v["where"].startswith("none")]
    assert last and last[-1]["where"].startswith(where)
    a = _data(rng)
    np.testing.assert_allclose(f(a), se.function([x], out)(a), rtol=1e-4, atol=1e-4)


def test_shared_consumers_get_one_scale():
    x, out, rng = _network(["layer_norm"], [True], 3)
    stats = quant.calibrate([x], out, [(_data(rng),)], progress=False)
    f = se.function([x], out, passes=["fast_run", quant.smooth(stats, 0.5)])
    entries = list(f.fgraph.annotations["quant"]["smoothed"].values())
    assert len(entries) == 2
    np.testing.assert_array_equal(entries[0]["s"], entries[1]["s"])


def test_post_ln_residual_is_never_folded_into_the_norm():
    """Folding 1/s into a post-LN norm would also scale the residual stream: the pass must keep it explicit."""
    x, out, rng = _network(["layer_norm_residual"], [False], 11)
    stats = quant.calibrate([x], out, [(_data(rng),)], progress=False)
    f = se.function([x], out, passes=["fast_run", quant.smooth(stats, 0.5)])
    a = _data(rng)
    ref = se.function([x], out)(a)
    got = f(a)
    cos = np.sum(got * ref) / np.linalg.norm(got) / np.linalg.norm(ref)
    assert cos > 0.999999


def test_smoothing_scales_formula_and_clamp():
    act = np.array([4.0, 0.0, 100.0], np.float32)
    w = np.array([1.0, 2.0, 0.0], np.float32)
    s = smoothing_scales(act, w, 0.5)
    np.testing.assert_allclose(s[0], 2.0)
    assert s[1] == np.float32(np.sqrt(1e-5) / np.sqrt(2.0))
    assert s[2] == np.float32(np.sqrt(100.0) / np.sqrt(1e-5))  # an all-zero weight row counts as 1e-5
    assert smoothing_scales([1e9], [1e-9], 1.0)[0] == np.float32(1e5)  # clamped above


def test_homogeneity_check():
    inp = ("in", 0)
    assert _homogeneous(((ps.add, (inp, ("in", 1))), (ps.maximum, (("tmp", 0), ("const", 0.0, "float32")))))
    assert not _homogeneous(((ps.exp, (inp,)),))
    assert not _homogeneous(((ps.add, (inp, ("const", 1.0, "float32"))),))
    assert not _homogeneous(((ps.mul, (inp, ("in", 1))),))


def test_default_smooths_only_norm_outputs():
    """The paper's choice: a LayerNorm's output is smoothed, a GELU's is not, unless sites="all"."""
    rng = np.random.default_rng(5)
    x = se.tensor("x", "float32", (None, None, K))
    g = rng.uniform(0.5, 2, K).astype(np.float32)
    h = se.layer_norm(x, g, np.zeros(K, np.float32)).reshape((-1, K))  # a reshape keeping the channel axis
    out = se.gelu(h @ rng.standard_normal((K, K)).astype(np.float32)) @ rng.standard_normal((K, 4)).astype(np.float32)
    stats = quant.calibrate([x], out, [(_data(rng),)], progress=False)
    default = se.function([x], out, passes=["fast_run", quant.smooth(stats, 0.5)])
    wheres = [v["where"] for v in default.fgraph.annotations["quant"]["smoothed"].values()]
    assert len(wheres) == 2 and wheres.count("none (not a norm's output)") == 1, wheres
    assert [v["alpha"] for v in default.fgraph.annotations["quant"]["smoothed"].values()].count(0.5) == 1
    every = se.function([x], out, passes=["fast_run", quant.smooth(stats, 0.5, sites="all")])
    assert all(v["alpha"] == 0.5 for v in every.fgraph.annotations["quant"]["smoothed"].values())
    a = _data(rng)
    for f in (default, every):
        np.testing.assert_allclose(f(a), se.function([x], out)(a), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="sites must be one of"):
        quant.smooth(stats, 0.5, sites="some")


def test_alpha_dict_none_leaves_an_activation_unsmoothed():
    x, out, rng = _network(["layer_norm"], [True], 3)
    stats = quant.calibrate([x], out, [(_data(rng),)], progress=False)
    key = next(iter(stats.sites))
    f = se.function([x], out, passes=["fast_run", quant.smooth(stats, {key: None})])
    notes = f.fgraph.annotations["quant"]["smoothed"]
    assert all(v["alpha"] is None and v["where"] == "none" for v in notes.values())


def test_alpha_is_checked():
    for bad in (1.5, True, "half", {"k": 2.0}):
        with pytest.raises(ValueError, match="alpha must be a number in"):
            quant.smooth(quant.CalibrationStats(), alpha=bad)
    quant.smooth(quant.CalibrationStats(), alpha=np.float32(0.5))


def test_relu_op_folds():
    rng = np.random.default_rng(12)
    x = se.tensor("x", "float32", (None, K))
    out = se.relu(x @ rng.standard_normal((K, K)).astype(np.float32)) @ rng.standard_normal((K, 4)).astype(np.float32)
    stats = quant.calibrate([x], out, [(_data(rng)[0],)], progress=False)
    f = se.function([x], out, passes=["fast_run", quant.smooth(stats, 0.5, sites="all")])
    wheres = [v["where"] for v in f.fgraph.annotations["quant"]["smoothed"].values()]
    assert any(w.startswith("folded into") and "elu" in w.lower() for w in wheres), wheres
    a = _data(rng)[0]
    np.testing.assert_allclose(f(a), se.function([x], out)(a), rtol=1e-4, atol=1e-4)
