"""softmax, log_softmax, logsumexp, layer_norm, rms_norm against float64 references, and their decompositions.

The references below are written from the definitions in ``symexpr/ops/nnet.py``:

* softmax(x) = exp(x - m) / sum(exp(x - m)), log_softmax(x) = x - m - log(sum(exp(x - m))) and
  logsumexp(x) = log(sum(exp(x - m))) + m, where the shift ``m`` is the maximum over the axes,
  replaced by 0 where it is not finite (as ``scipy.special.logsumexp`` does).  So an all -inf row
  gives NaN for softmax/log_softmax and -inf for logsumexp, and NaN anywhere in a row gives NaN.
* layer_norm(x) = (x - mean) / sqrt(var + eps) * weight + bias over the last axis, biased variance.
* rms_norm(x) = x / sqrt(mean(x**2) + eps) * weight over the last axis.
* The result dtype is the one ``np.exp`` gives for the (promoted) input dtype; float16 is computed
  in float32 and rounded once.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from support import ALL_DTYPES, assert_matches_numpy, dtypes, finite_arrays, hyp, shapes, symbolic_like

import symexpr as se

pytestmark = [
    pytest.mark.filterwarnings("ignore:Mean of empty slice:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),
]

COMPOSITES = (se.Softmax, se.LogSoftmax, se.LogSumExp, se.LayerNorm, se.RMSNorm)


# -- references -------------------------------------------------------------------


def exp_dtype(*dtypes_) -> np.dtype:
    """The float dtype ``np.exp`` gives for the promoted input dtypes."""
    return np.exp(np.zeros(1, dtype=np.result_type(*[np.dtype(d) for d in dtypes_]))).dtype


def work_eps(out_dtype) -> float:
    """Machine epsilon of the precision the reference computes ``out_dtype`` in (float16 -> float32)."""
    return float(np.finfo(np.promote_types(out_dtype, np.float32)).eps)


def norm_axes(axis, ndim) -> tuple:
    if axis is None:
        return tuple(range(ndim))
    items = axis if isinstance(axis, tuple) else (axis,)
    return tuple(sorted(a % ndim for a in items))


def ref_max(x: np.ndarray, axes: tuple) -> np.ndarray:
    """The maximum over ``axes`` (kept); -inf where the axes are empty."""
    return np.max(x, axis=axes, keepdims=True, initial=-INF)


def ref_shift(x: np.ndarray, axes: tuple) -> np.ndarray:
    """scipy's logsumexp shift: the maximum over ``axes`` (kept), 0 where it is not finite."""
    m = ref_max(x, axes)
    return np.where(np.isfinite(m), m, 0.0)


def ref_softmax(x, axis):
    x = np.asarray(x, dtype=np.float64)
    axes = norm_axes(axis, x.ndim)
    with np.errstate(all="ignore"):
        e = np.exp(x - ref_max(x, axes))
        return e / np.sum(e, axis=axes, keepdims=True)


def ref_log_softmax(x, axis):
    x = np.asarray(x, dtype=np.float64)
    axes = norm_axes(axis, x.ndim)
    with np.errstate(all="ignore"):
        shifted = x - ref_max(x, axes)
        return shifted - np.log(np.sum(np.exp(shifted), axis=axes, keepdims=True))


def ref_logsumexp(x, axis, keepdims):
    x = np.asarray(x, dtype=np.float64)
    axes = norm_axes(axis, x.ndim)
    m = ref_shift(x, axes)
    with np.errstate(all="ignore"):
        out = np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axes)


def ref_layer_norm(x, weight, bias, eps):
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(all="ignore"):
        mu = np.mean(x, axis=-1, keepdims=True) if x.shape[-1] else np.zeros(x.shape[:-1] + (1,))
        centered = x - mu
        var = np.mean(centered**2, axis=-1, keepdims=True) if x.shape[-1] else np.zeros(x.shape[:-1] + (1,))
        y = centered / np.sqrt(var + eps)
        if weight is not None:
            y = y * weight.astype(np.float64)
        if bias is not None:
            y = y + bias.astype(np.float64)
    return y


def ref_rms_norm(x, weight, eps):
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(all="ignore"):
        ms = np.mean(x * x, axis=-1, keepdims=True) if x.shape[-1] else np.zeros(x.shape[:-1] + (1,))
        y = x / np.sqrt(ms + eps)
        if weight is not None:
            y = y * weight.astype(np.float64)
    return y


# -- tolerances ---------------------------------------------------------------------
# Each returns (rtol, atol) for a result of ``out_dtype`` computed in a precision with machine
# epsilon ``eps_w`` (the reference: float32 for float16; a decomposition: the output dtype).


def _tiny(out_dtype) -> float:
    return 2 * float(np.finfo(out_dtype).smallest_subnormal)


def softmax_tol(out_dtype, eps_w):
    return 2 * float(np.finfo(out_dtype).eps) + 16 * eps_w, 16 * eps_w + _tiny(out_dtype)


def logsumexp_tol(x, axis, out_dtype, eps_w):
    x = np.asarray(x, dtype=np.float64)
    m = ref_shift(x, norm_axes(axis, x.ndim))
    scale = float(np.max(np.abs(m))) if m.size else 0.0
    n = max(1, math.prod(x.shape[a] for a in norm_axes(axis, x.ndim)))
    return 2 * float(np.finfo(out_dtype).eps) + 16 * eps_w, 16 * eps_w * (1 + scale + math.log(n)) + _tiny(out_dtype)


def layer_norm_tol(x, weight, bias, eps, out_dtype, eps_w):
    """A forward error bound: ``x - mean`` is off by ~eps_w * max|x|, amplified by 1/sqrt(var + eps)."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    if x.size == 0:
        return 0.0, 0.0
    with np.errstate(all="ignore"):
        mu = np.mean(x, axis=-1, keepdims=True)
        s = np.sqrt(np.mean((x - mu) ** 2, axis=-1, keepdims=True) + eps)
        y = np.abs(x - mu) / s
        maxabs = np.max(np.abs(x), axis=-1, keepdims=True)
        err_y = 8 * eps_w * (maxabs / s * (1 + y * n) + y)
    w = 1.0 if weight is None else float(np.max(np.abs(weight.astype(np.float64)), initial=0.0))
    b = 0.0 if bias is None else float(np.max(np.abs(bias.astype(np.float64)), initial=0.0))
    atol = float(np.max(err_y)) * w + 8 * eps_w * (float(np.max(y)) * w + b) + _tiny(out_dtype)
    return 2 * float(np.finfo(out_dtype).eps), atol


def rms_norm_tol(out_dtype, eps_w):
    return 2 * float(np.finfo(out_dtype).eps) + 16 * eps_w, _tiny(out_dtype)


# -- input strategies ---------------------------------------------------------------


def nnet_arrays(dtype, shape, specials: bool, bound: float | None = None):
    """Arrays for softmax-like ops; floats optionally sprinkled with -inf, +inf and NaN.

    With specials the finite values stay within +-10, so that exp of them is finite even in float16
    (a row whose max is +inf is shifted by 0, and its other entries go through exp unshifted).
    """
    if np.dtype(dtype).kind != "f":
        return finite_arrays(dtype, shape)
    if bound is None:
        bound = 10.0 if specials else (1000.0 if dtype == "float16" else 1e4)
    finite = st.floats(-bound, bound, width=np.dtype(dtype).itemsize * 8, allow_subnormal=False)
    if specials:
        finite = st.one_of(finite, st.sampled_from([-np.inf, -np.inf, np.inf, np.nan]))
    return hnp.arrays(np.dtype(dtype), shape, elements=finite)


def param_array(dtype, n, draw):
    return draw(finite_arrays(dtype, (n,), min_value=-4, max_value=4))


# -- softmax, log_softmax, logsumexp ----------------------------------------------


@pytest.mark.parametrize("kind", ["softmax", "log_softmax"])
@hyp()
@given(data=st.data())
def test_softmax_like_matches_reference(backend, kind, data):
    dtype = data.draw(dtypes(), label="dtype")
    shape = data.draw(shapes(min_dims=1, max_dims=3, min_side=0, max_side=4), label="shape")
    specials = data.draw(st.booleans(), label="specials")
    arr = data.draw(nnet_arrays(dtype, shape, specials), label="x")
    ndim = len(shape)
    axis = data.draw(
        st.one_of(st.just("default"), st.none(), st.integers(-ndim, ndim - 1), hnp.valid_tuple_axes(ndim, min_size=1)),
        label="axis",
    )
    x = symbolic_like(arr, "x", data.draw(st.booleans(), label="known"))
    fn = getattr(se, kind)
    out = fn(x) if axis == "default" else fn(x, axis=axis)
    ref_axis = -1 if axis == "default" else axis
    out_dtype = exp_dtype(dtype)
    assert out.dtype == out_dtype.name
    expected = (ref_softmax if kind == "softmax" else ref_log_softmax)(arr, ref_axis)
    rtol, atol = softmax_tol(out_dtype, work_eps(out_dtype))
    if kind == "log_softmax":
        atol *= 1 + math.log(max(2, arr.size))
    assert_matches_numpy(out, [(x, arr)], expected.astype(out_dtype), backend, rtol=rtol, atol=atol)


@hyp()
@given(data=st.data())
def test_logsumexp_matches_reference(backend, data):
    dtype = data.draw(dtypes(), label="dtype")
    shape = data.draw(shapes(min_dims=0, max_dims=3, min_side=0, max_side=4), label="shape")
    specials = data.draw(st.booleans(), label="specials")
    arr = data.draw(nnet_arrays(dtype, shape, specials), label="x")
    ndim = len(shape)
    axis = data.draw(
        st.one_of(
            st.just("default"),
            st.none(),
            st.integers(-ndim, ndim - 1) if ndim else st.nothing(),
            hnp.valid_tuple_axes(ndim),
        ),
        label="axis",
    )
    keepdims = data.draw(st.booleans(), label="keepdims")
    x = symbolic_like(arr, "x", data.draw(st.booleans(), label="known"))
    out = se.logsumexp(x, keepdims=keepdims) if axis == "default" else se.logsumexp(x, axis=axis, keepdims=keepdims)
    ref_axis = None if axis == "default" else axis
    out_dtype = exp_dtype(dtype)
    expected = ref_logsumexp(arr, ref_axis, keepdims)
    rtol, atol = logsumexp_tol(arr, ref_axis, out_dtype, work_eps(out_dtype))
    assert_matches_numpy(out, [(x, arr)], expected.astype(out_dtype), backend, rtol=rtol, atol=atol)


NAN, INF = np.nan, np.inf
SPECIAL_ROWS = np.array(
    [
        [0.0, -INF, 1.0],  # -inf entries get probability 0
        [-INF, -INF, -INF],  # all -inf
        [INF, 0.0, 1.0],  # one +inf
        [INF, INF, 0.0],  # two +inf
        [NAN, 0.0, 1.0],  # NaN
        [NAN, -INF, INF],
        [1000.0, 0.0, -1000.0],  # large spread: stable
        [-1000.0, -1000.0, -1000.0],  # large equal values
    ]
)
L = math.log1p(math.e)  # log(1 + e)
# As scipy.special.softmax and torch.softmax: +inf, NaN or all -inf make the whole row NaN.
SOFTMAX_ROWS = [
    [1 / (1 + math.e), 0.0, math.e / (1 + math.e)],
    [NAN, NAN, NAN],
    [NAN, NAN, NAN],
    [NAN, NAN, NAN],
    [NAN, NAN, NAN],
    [NAN, NAN, NAN],
    [1.0, 0.0, 0.0],
    [1 / 3, 1 / 3, 1 / 3],
]
LOG_SOFTMAX_ROWS = [
    [-L, -INF, 1 - L],
    [NAN, NAN, NAN],
    [NAN, NAN, NAN],
    [NAN, NAN, NAN],
    [NAN, NAN, NAN],
    [NAN, NAN, NAN],
    [0.0, -1000.0, -2000.0],
    [-math.log(3)] * 3,
]
LOGSUMEXP_ROWS = [L, -INF, INF, INF, NAN, NAN, 1000.0, -1000.0 + math.log(3)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_special_rows(dtype, backend):
    arr = SPECIAL_ROWS.astype(dtype)
    x = se.matrix("x", dtype=dtype)
    f = se.function([x], [se.softmax(x), se.log_softmax(x, axis=1), se.logsumexp(x, axis=-1)], backend=backend)
    soft, logsoft, lse = f(arr)
    rtol = 1e-6 if dtype == "float32" else 1e-13
    np.testing.assert_allclose(soft, np.array(SOFTMAX_ROWS, dtype), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(logsoft, np.array(LOG_SOFTMAX_ROWS, dtype), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(lse, np.array(LOGSUMEXP_ROWS, dtype), rtol=rtol, atol=rtol)
    # The reference implementations above agree with the hand-computed rows.
    np.testing.assert_allclose(ref_softmax(SPECIAL_ROWS, -1), SOFTMAX_ROWS, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(ref_log_softmax(SPECIAL_ROWS, -1), LOG_SOFTMAX_ROWS, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(ref_logsumexp(SPECIAL_ROWS, -1, False), LOGSUMEXP_ROWS, rtol=1e-13, atol=1e-13)


def test_special_rows_float16_computed_in_float32(backend):
    x = se.vector("x", dtype="float16")
    arr = np.array([11.0, 0.0, -INF], dtype=np.float16)  # exp(11) overflows float16, not float32
    f = se.function([x], [se.softmax(x), se.logsumexp(x)], backend=backend)
    soft, lse = f(arr)
    assert soft.dtype == np.float16 and lse.dtype == np.float16
    np.testing.assert_allclose(soft, ref_softmax(arr, -1).astype(np.float16), rtol=2e-3, atol=1e-6)
    np.testing.assert_allclose(lse, np.float16(ref_logsumexp(arr, None, False)), rtol=2e-3)
    big = np.array([60000.0, 60000.0], dtype=np.float16)  # the sum 120000 is not a float16
    np.testing.assert_allclose(f(big)[1], np.float16(60000 + math.log(2)), rtol=2e-3)


def test_logsumexp_of_empty_and_0d(backend):
    x = se.tensor("x", dtype="float32", shape=(None, None))
    f = se.function([x], [se.logsumexp(x, axis=1), se.logsumexp(x), se.softmax(x, axis=1)], backend=backend)
    lse_rows, lse_all, soft = f(np.zeros((2, 0), np.float32))
    np.testing.assert_array_equal(lse_rows, [-INF, -INF])
    assert lse_all == -INF and soft.shape == (2, 0)
    s = se.scalar("s", dtype="float64")
    g = se.function([s], se.logsumexp(s), backend=backend)
    for value in [1.5, -INF, INF]:
        assert g(np.float64(value)) == value


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_result_dtypes(dtype):
    x = se.tensor("x", dtype=dtype, shape=(2, 3))
    want = exp_dtype(dtype).name
    for out in [se.softmax(x), se.log_softmax(x, axis=0), se.logsumexp(x), se.layer_norm(x), se.rms_norm(x)]:
        assert out.dtype == want, (out, dtype)
    assert {"bool": "float16", "int8": "float16", "uint8": "float16", "int16": "float32", "uint16": "float32",
            "int32": "float64", "uint32": "float64", "int64": "float64", "uint64": "float64"}.get(dtype, dtype) == want


def test_static_shapes():
    x = se.tensor("x", shape=(None, 3, 4))
    assert se.softmax(x).type.shape == (None, 3, 4)
    assert se.log_softmax(x, axis=(0, 2)).type.shape == (None, 3, 4)
    assert se.logsumexp(x).type.shape == ()
    assert se.logsumexp(x, axis=1).type.shape == (None, 4)
    assert se.logsumexp(x, axis=(0, -1), keepdims=True).type.shape == (1, 3, 1)
    assert se.layer_norm(x, se.vector("w", shape=(4,))).type.shape == (None, 3, 4)
    assert se.rms_norm(x).type.shape == (None, 3, 4)


@pytest.mark.parametrize("fn", [se.softmax, se.log_softmax, se.logsumexp])
def test_softmax_like_axis_errors(fn):
    x = se.tensor("x", shape=(2, 3))
    with pytest.raises(ValueError):
        fn(x, axis=2)
    with pytest.raises(ValueError):
        fn(x, axis=-3)
    with pytest.raises(ValueError):
        fn(x, axis=(0, 0))
    with pytest.raises(TypeError):
        fn(x, axis=1.0)


# -- layer_norm, rms_norm ---------------------------------------------------------


@hyp()
@given(data=st.data())
def test_layer_norm_matches_reference(backend, data):
    dtype = data.draw(dtypes(), label="dtype")
    shape = data.draw(shapes(min_dims=1, max_dims=3, min_side=0, max_side=5), label="shape")
    n = shape[-1]
    arr = data.draw(finite_arrays(dtype, shape, min_value=-100, max_value=100), label="x")
    inputs = [(symbolic_like(arr, "x", data.draw(st.booleans(), label="known_x")), arr)]
    params = {}
    for name in ("weight", "bias"):
        if data.draw(st.booleans(), label=f"with_{name}"):
            p = param_array(data.draw(dtypes(), label=f"{name}_dtype"), n, data.draw)
            var = symbolic_like(p, name, data.draw(st.booleans(), label=f"known_{name}"))
            inputs.append((var, p))
            params[name] = (var, p)
    eps = data.draw(st.sampled_from([None, 1e-5, 1e-3, 0.5]), label="eps")
    kwargs = {name: var for name, (var, _) in params.items()}
    if eps is not None:
        kwargs["eps"] = eps
    out = se.layer_norm(inputs[0][0], **kwargs)

    weight = params.get("weight", (None, None))[1]
    bias = params.get("bias", (None, None))[1]
    out_dtype = exp_dtype(*[a.dtype for _, a in inputs])
    eps_value = 1e-5 if eps is None else eps
    expected = ref_layer_norm(arr, weight, bias, eps_value).astype(out_dtype)
    rtol, atol = layer_norm_tol(arr, weight, bias, eps_value, out_dtype, work_eps(out_dtype))
    assert_matches_numpy(out, inputs, expected, backend, rtol=rtol, atol=atol)


@hyp()
@given(data=st.data())
def test_rms_norm_matches_reference(backend, data):
    dtype = data.draw(dtypes(), label="dtype")
    shape = data.draw(shapes(min_dims=1, max_dims=3, min_side=0, max_side=5), label="shape")
    arr = data.draw(finite_arrays(dtype, shape, min_value=-1000, max_value=1000), label="x")
    inputs = [(symbolic_like(arr, "x", data.draw(st.booleans(), label="known_x")), arr)]
    weight = None
    if data.draw(st.booleans(), label="with_weight"):
        weight = param_array(data.draw(dtypes(), label="weight_dtype"), shape[-1], data.draw)
        inputs.append((symbolic_like(weight, "weight", data.draw(st.booleans(), label="known_w")), weight))
    eps = data.draw(st.sampled_from([None, 1e-6, 1e-3, 0.5]), label="eps")
    kwargs = {} if eps is None else {"eps": eps}
    out = se.rms_norm(inputs[0][0], inputs[1][0] if weight is not None else None, **kwargs)

    out_dtype = exp_dtype(*[a.dtype for _, a in inputs])
    expected = ref_rms_norm(arr, weight, 1e-6 if eps is None else eps).astype(out_dtype)
    rtol, atol = rms_norm_tol(out_dtype, work_eps(out_dtype))
    assert_matches_numpy(out, inputs, expected, backend, rtol=rtol, atol=atol)


@pytest.mark.parametrize(
    "x_dtype, w_dtype, want",
    [
        ("float16", None, "float16"),
        ("float16", "float32", "float32"),
        ("float32", "float16", "float32"),
        ("int8", None, "float16"),
        ("int8", "float32", "float32"),
        ("int16", None, "float32"),
        ("int16", "float16", "float32"),
        ("int64", "float16", "float64"),
        ("bool", "bool", "float16"),
        ("uint8", "int8", "float32"),  # promote -> int16 -> exp gives float32
        ("float32", "float64", "float64"),
    ],
)
def test_norm_dtype_promotion(x_dtype, w_dtype, want, backend):
    x = se.tensor("x", dtype=x_dtype, shape=(2, 3))
    arr = np.array([[1, 0, 1], [0, 1, 1]]).astype(x_dtype)
    w = None if w_dtype is None else se.tensor("w", dtype=w_dtype, shape=(3,))
    warr = None if w_dtype is None else np.array([1, 1, 0]).astype(w_dtype)
    for out in [se.layer_norm(x, w, w), se.rms_norm(x, w)]:
        assert out.dtype == want
        ins = [x] if w is None else [x, w]
        args = [arr] if w is None else [arr, warr]
        got = se.function(ins, out, backend=backend)(*args)
        assert got.dtype == want


def test_layer_norm_known_values(backend):
    x = se.matrix("x", dtype="float64")
    arr = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 5.0, 5.0, 5.0], [NAN, 0.0, 1.0, 2.0]])
    w = np.array([1.0, 2.0, 0.5, -1.0])
    b = np.array([0.0, 1.0, -1.0, 0.5])
    got = se.function([x], se.layer_norm(x, w, b, eps=0.0), backend=backend)(arr)
    z = (np.arange(1.0, 5.0) - 2.5) / math.sqrt(1.25)
    np.testing.assert_allclose(got[0], z * w + b, rtol=1e-14)
    assert np.isnan(got[1]).all()  # zero variance and eps=0: 0/0
    assert np.isnan(got[2]).all()  # NaN poisons the row
    got = se.function([x], se.rms_norm(x, w, eps=0.0), backend=backend)(arr[:1])
    np.testing.assert_allclose(got[0], np.arange(1.0, 5.0) / math.sqrt(7.5) * w, rtol=1e-14)


def test_norm_errors():
    x = se.tensor("x", shape=(2, 4))
    with pytest.raises(ValueError) as info:
        se.layer_norm(x, se.tensor("w", shape=(3,)))
    assert "weight" in str(info.value) and "3" in str(info.value) and "4" in str(info.value)
    with pytest.raises(ValueError) as info:
        se.layer_norm(x, None, se.tensor("b", shape=(5,)))
    assert "bias" in str(info.value) and "5" in str(info.value) and "4" in str(info.value)
    with pytest.raises(ValueError) as info:
        se.rms_norm(x, se.tensor("w", shape=(6,)))
    assert "weight" in str(info.value) and "6" in str(info.value) and "4" in str(info.value)
    with pytest.raises(ValueError):
        se.layer_norm(x, np.ones(3, np.float32))
    with pytest.raises(ValueError):
        se.layer_norm(x, se.tensor("w", shape=(2, 4)))  # not 1-d
    with pytest.raises(ValueError):
        se.rms_norm(x, se.tensor("w", shape=(4, 1)))
    for fn in (se.layer_norm, se.rms_norm):
        with pytest.raises(ValueError):
            fn(se.scalar("s"))
        with pytest.raises(ValueError):
            fn(x, eps=-1e-5)


def test_norm_weight_mismatch_at_runtime_raises_at_call(backend):
    x = se.matrix("x")
    w = se.vector("w")
    f = se.function([x, w], se.layer_norm(x, w), backend=backend)
    assert f(np.ones((2, 4), np.float32), np.ones(4, np.float32)).shape == (2, 4)
    with pytest.raises(ValueError):
        f(np.ones((2, 4), np.float32), np.ones(3, np.float32))
    g = se.function([x, w], se.rms_norm(x, w), backend=backend)
    with pytest.raises(ValueError):
        g(np.ones((2, 4), np.float32), np.ones(3, np.float32))


# -- decompositions ---------------------------------------------------------------

DECOMPOSABLE = ["softmax", "log_softmax", "logsumexp", "layer_norm", "rms_norm"]


def compile_both(ins, out, backend):
    native = se.function(ins, out, backend=backend)
    decomposed = se.function(ins, out, backend=backend, passes=["decompose"])
    leftovers = [node.op for node in decomposed.fgraph.toposort() if isinstance(node.op, COMPOSITES)]
    assert not leftovers, f"composite ops left after decompose: {leftovers}"
    assert any(isinstance(node.op, COMPOSITES) for node in native.fgraph.toposort())
    return native, decomposed


def assert_same(native, decomposed, args, rtol, atol):
    want = native(*args)
    got = decomposed(*args)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)


@pytest.mark.parametrize("kind", DECOMPOSABLE)
@hyp(40)
@given(data=st.data())
def test_decomposition_matches(backend, kind, data):
    dtype = data.draw(dtypes(), label="dtype")
    ndim_min = 0 if kind == "logsumexp" else 1
    shape = data.draw(shapes(min_dims=ndim_min, max_dims=3, min_side=1, max_side=4), label="shape")
    ndim = len(shape)
    known = data.draw(st.booleans(), label="known")
    if kind in ("softmax", "log_softmax", "logsumexp"):
        specials = data.draw(st.booleans(), label="specials")
        bound = 100.0 if dtype == "float16" and not specials else None  # float16 decompositions compute in float16
        arr = data.draw(nnet_arrays(dtype, shape, specials, bound=bound), label="x")
    else:
        arr = data.draw(finite_arrays(dtype, shape, min_value=-100, max_value=100), label="x")
    x = symbolic_like(arr, "x", known)
    ins, args = [x], [arr]
    out_dtype = exp_dtype(dtype)

    if kind in ("softmax", "log_softmax"):
        axis = data.draw(st.one_of(st.integers(-ndim, ndim - 1), hnp.valid_tuple_axes(ndim, min_size=1)), label="axis")
        out = getattr(se, kind)(x, axis=axis)
        r1, a1 = softmax_tol(out_dtype, work_eps(out_dtype))
        r2, a2 = softmax_tol(out_dtype, float(np.finfo(out_dtype).eps))
        if kind == "log_softmax":
            grow = 1 + math.log(max(2, arr.size))
            a1, a2 = a1 * grow, a2 * grow
    elif kind == "logsumexp":
        int_axis = st.integers(-ndim, ndim - 1) if ndim else st.nothing()
        axis = data.draw(st.one_of(st.none(), int_axis, hnp.valid_tuple_axes(ndim)), label="axis")
        keepdims = data.draw(st.booleans(), label="keepdims")
        out = se.logsumexp(x, axis=axis, keepdims=keepdims)
        r1, a1 = logsumexp_tol(arr, axis, out_dtype, work_eps(out_dtype))
        r2, a2 = logsumexp_tol(arr, axis, out_dtype, float(np.finfo(out_dtype).eps))
    else:
        n = shape[-1]
        weight = bias = None
        if data.draw(st.booleans(), label="with_weight"):
            weight = param_array(data.draw(dtypes(), label="w_dtype"), n, data.draw)
        if kind == "layer_norm" and data.draw(st.booleans(), label="with_bias"):
            bias = param_array(data.draw(dtypes(), label="b_dtype"), n, data.draw)
        pvars = []
        for name, p in (("weight", weight), ("bias", bias)):
            if p is not None:
                var = symbolic_like(p, name, known)
                ins.append(var)
                args.append(p)
                pvars.append(var)
        out_dtype = exp_dtype(*[a.dtype for a in args])
        if kind == "layer_norm":
            wv = pvars[0] if weight is not None else None
            bv = pvars[-1] if bias is not None else None
            out = se.layer_norm(x, wv, bv, eps=1e-3)
            r1, a1 = layer_norm_tol(arr, weight, bias, 1e-3, out_dtype, work_eps(out_dtype))
            r2, a2 = layer_norm_tol(arr, weight, bias, 1e-3, out_dtype, float(np.finfo(out_dtype).eps))
        else:
            out = se.rms_norm(x, pvars[0] if weight is not None else None, eps=1e-3)
            r1, a1 = rms_norm_tol(out_dtype, work_eps(out_dtype))
            r2, a2 = rms_norm_tol(out_dtype, float(np.finfo(out_dtype).eps))

    native, decomposed = compile_both(ins, out, backend)
    assert_same(native, decomposed, args, rtol=r1 + r2, atol=a1 + a2)


@pytest.mark.parametrize("with_weight", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_layer_norm_decomposition_variants(with_weight, with_bias, dtype, backend):
    rng = np.random.default_rng(0)
    arr = rng.standard_normal((3, 5)).astype(dtype) * 3 + 1
    x = se.matrix("x", dtype=dtype)
    ins, args = [x], [arr]
    w = b = None
    if with_weight:
        w = se.vector("w", dtype=dtype)
        ins.append(w)
        args.append(rng.standard_normal(5).astype(dtype))
    if with_bias:
        b = se.vector("b", dtype=dtype)
        ins.append(b)
        args.append(rng.standard_normal(5).astype(dtype))
    native, decomposed = compile_both(ins, se.layer_norm(x, w, b), backend)
    tol = 1e-5 if dtype == "float32" else 1e-12
    assert_same(native, decomposed, args, rtol=tol, atol=tol)


@pytest.mark.parametrize("with_weight", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_rms_norm_decomposition_variants(with_weight, dtype, backend):
    rng = np.random.default_rng(0)
    arr = rng.standard_normal((2, 3, 5)).astype(dtype) * 3
    x = se.tensor("x", dtype=dtype, shape=(None, 3, None))
    w = se.vector("w", dtype=dtype) if with_weight else None
    ins, args = ([x, w], [arr, rng.standard_normal(5).astype(dtype)]) if with_weight else ([x], [arr])
    native, decomposed = compile_both(ins, se.rms_norm(x, w), backend)
    tol = 1e-5 if dtype == "float32" else 1e-12
    assert_same(native, decomposed, args, rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", ["softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [-1, 0, (0, 2), None])
def test_softmax_decomposition_variants(kind, axis, backend):
    arr = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32) * 10
    arr[1, 1, :] = -np.inf
    arr[0, 2, 1] = np.inf
    x = se.tensor("x", dtype="float32", shape=(None, 3, 4))
    native, decomposed = compile_both([x], getattr(se, kind)(x, axis=axis), backend)
    assert_same(native, decomposed, [arr], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", [None, 0, -1, (0, 2), ()])
def test_logsumexp_decomposition_variants(keepdims, axis, backend):
    arr = np.random.default_rng(0).standard_normal((2, 3, 4)) * 10
    arr[0, 0, :] = -np.inf
    x = se.tensor("x", dtype="float64", shape=(None, 3, None))
    native, decomposed = compile_both([x], se.logsumexp(x, axis=axis, keepdims=keepdims), backend)
    assert_same(native, decomposed, [arr], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize("static", [False, True])
def test_decomposition_over_an_empty_axis(kind, static, backend):
    """Over an empty axis softmax gives an empty result and logsumexp gives -inf; so must the decomposition."""
    arr = np.zeros((2, 0), np.float32)
    x = se.tensor("x", dtype="float32", shape=arr.shape if static else (None, None))
    out = getattr(se, kind)(x, axis=-1)
    native, decomposed = compile_both([x], out, backend)
    assert_same(native, decomposed, [arr], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["layer_norm", "rms_norm"])
def test_float16_decomposition_does_not_overflow(kind, backend):
    """float16 is computed in float32 and rounded once; squaring |x| > 256 in float16 would overflow."""
    arr = np.array([[-300.0, 300.0], [1000.0, 2000.0]], dtype=np.float16)
    x = se.matrix("x", dtype="float16")
    out = getattr(se, kind)(x)
    native, decomposed = compile_both([x], out, backend)
    want = ref_layer_norm(arr, None, None, 1e-5) if kind == "layer_norm" else ref_rms_norm(arr, None, 1e-6)
    want = want.astype(np.float16)
    np.testing.assert_allclose(native(arr), want, rtol=2e-3, atol=1e-3)
    assert_same(native, decomposed, [arr], rtol=1e-2, atol=1e-2)
