"""Shared test helpers: compare a graph against NumPy, and hypothesis strategies."""

from __future__ import annotations

import signal
from contextlib import contextmanager

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import symexpr as se
from symexpr.ops.attention import causal_visible

ALL_DTYPES = list(se.dtypes.SUPPORTED_DTYPES)
FLOAT_DTYPES = ["float16", "float32", "float64"]
INT_DTYPES = ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"]


def symbolic_like(array: np.ndarray, name: str, known: bool = False) -> se.Variable:
    """An input variable for ``array``: static dims when ``known``, else all None."""
    shape = array.shape if known else (None,) * array.ndim
    return se.tensor(name, dtype=array.dtype, shape=shape)


def assert_matches_numpy(out, inputs, expected, backend="numpy", rtol=None, atol=0.0):
    """Compile ``out`` from ``inputs`` (list of (variable, array)) and compare with ``expected``.

    Checks: the inferred dtype equals NumPy's exactly, the static shape agrees
    with the actual shape, ``infer_shape`` gives the actual shape, and the
    values equal (exactly unless ``rtol`` is given), NaN where NumPy has NaN.
    """
    expected = np.asarray(expected)
    variables = [v for v, _ in inputs]
    arrays = [a for _, a in inputs]
    assert out.dtype == expected.dtype.name, f"inferred dtype {out.dtype}, numpy gives {expected.dtype}"
    assert out.ndim == expected.ndim, f"inferred rank {out.ndim}, numpy gives {expected.ndim}"
    for got_dim, want_dim in zip(out.type.shape, expected.shape):
        assert got_dim is None or got_dim == want_dim, f"static shape {out.type.shape} vs numpy {expected.shape}"
    if out.owner is not None and not out.owner.op.size_positions(out.owner):
        shapes = _concrete_input_shapes(out, dict(zip(map(id, variables), arrays)))
        if shapes is not None:
            inferred = out.owner.op.infer_shape(out.owner, shapes)[out.index]
            assert tuple(inferred) == expected.shape, f"infer_shape {inferred} vs numpy {expected.shape}"
    f = se.function(variables, out, backend=backend)
    got = f(*arrays)
    assert isinstance(got, np.ndarray)
    assert got.dtype == expected.dtype, f"result dtype {got.dtype}, numpy gives {expected.dtype}"
    assert got.shape == expected.shape, f"result shape {got.shape}, numpy gives {expected.shape}"
    if rtol is None and atol == 0.0 and backend != "numpy" and expected.dtype.kind == "f":
        # Compiled backends reassociate sums and use their own math functions: a few ulp apart.
        from symexpr.testing.asserts import default_tolerances

        rtol, atol = default_tolerances(expected.dtype, expected)
    if rtol is None and atol == 0.0:
        np.testing.assert_array_equal(got, expected)
    else:
        np.testing.assert_allclose(got, expected, rtol=rtol or 0.0, atol=atol, equal_nan=True)
    return got


def _concrete_input_shapes(out, values):
    shapes = []
    for var in out.owner.inputs:
        if id(var) in values:
            shapes.append(values[id(var)].shape)
        elif isinstance(var, se.Constant):
            shapes.append(var.data.shape)
        else:
            return None
    return shapes


def dtypes(choices=ALL_DTYPES):
    return st.sampled_from(choices)


def arrays(dtype, shape, elements=None):
    """Arrays of ``dtype``/``shape``; floats include NaN, +-inf and -0.0 unless ``elements`` says."""
    if elements is None and np.dtype(dtype).kind == "f":
        elements = st.floats(width=np.dtype(dtype).itemsize * 8, allow_nan=True, allow_infinity=True)
    return hnp.arrays(np.dtype(dtype), shape, elements=elements)


def finite_arrays(dtype, shape, min_value=-100, max_value=100):
    kind = np.dtype(dtype).kind
    if kind == "f":
        el = st.floats(min_value, max_value, width=np.dtype(dtype).itemsize * 8, allow_subnormal=False)
    elif kind == "b":
        el = st.booleans()
    else:
        info = np.iinfo(dtype)
        el = st.integers(max(info.min, min_value), min(info.max, max_value))
    return hnp.arrays(np.dtype(dtype), shape, elements=el)


def shapes(min_dims=0, max_dims=3, min_side=0, max_side=4):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=4):
    return hnp.mutually_broadcastable_shapes(num_shapes=num_shapes, min_dims=min_dims, max_dims=max_dims, max_side=max_side)


def hyp(max_examples: int | None = None):
    """Settings for a property test that uses the ``backend`` fixture; ``max_examples`` scales with the profile."""
    kwargs = {"suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]}
    if max_examples is not None:
        kwargs["max_examples"] = max(1, max_examples * settings().max_examples // 60)
    return settings(**kwargs)


def assert_fresh(got: np.ndarray, *inputs: np.ndarray):
    """``got`` is writeable and shares no memory with any of ``inputs``."""
    for arr in inputs:
        assert not np.shares_memory(got, arr)
    assert got.flags.writeable


def assert_identical(got, want):
    """Same dtype, shape and values; NaN where NumPy has NaN, and the sign of every zero."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype, f"dtype {got.dtype}, NumPy gives {want.dtype}"
    np.testing.assert_array_equal(got, want)
    if want.dtype.kind == "f":
        zeros = want == 0
        np.testing.assert_array_equal(np.signbit(got[zeros]), np.signbit(want[zeros]), err_msg="sign of zero")


@contextmanager
def num_threads(n):
    """Run the block with ``se.set_num_threads(n)``, then restore the previous count."""
    previous = se.get_num_threads()
    se.set_num_threads(n)
    try:
        yield
    finally:
        se.set_num_threads(previous)


def ids(obj):
    """``obj`` with every Variable replaced by its identity, so lists of variables compare with ``==``."""
    if isinstance(obj, se.Variable):
        return ("variable", id(obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(ids(o) for o in obj)
    return obj


@contextmanager
def time_limit(seconds: float, what: str):
    """Fail (instead of running for minutes) if the block takes longer than ``seconds``."""

    def on_alarm(signum, frame):
        raise TimeoutError(f"{what} did not finish within {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class UnaryOp(se.Op):
    """A base class of custom test ops: one input, the same type out (a copy)."""

    __props__ = ("tag",)

    def __init__(self, tag: int = 0):
        self.tag = tag

    def make_node(self, x) -> se.Apply:
        x = se.as_tensor(x)
        return se.Apply(self, [x], [se.TensorType(x.dtype, x.type.shape)])

    def perform(self, node, inputs):
        return [np.array(inputs[0], copy=True)]

    def infer_shape(self, node, input_shapes):
        return [tuple(input_shapes[0])]


class Twin(UnaryOp):
    pass


class Other(UnaryOp):
    pass


def plain_attention(q, k, v, mask, scale, causal):
    """softmax(q k^T * scale + mask) v, written out, with NumPy's NaN rules (the unfused graph's)."""
    s = np.matmul(q, np.swapaxes(k, -1, -2)) * np.float32(scale)
    if mask is not None:
        s = s + mask
    if causal:
        s = np.where(causal_visible(q.shape[-2], k.shape[-2], "bottom_right" if causal is True else causal), s, -np.inf)
    with np.errstate(all="ignore"):
        e = np.exp(s - np.max(s, axis=-1, keepdims=True)) if s.shape[-1] else s
        p = e / np.sum(e, axis=-1, keepdims=True)
    return np.matmul(p, v)


def with_sink(q, k, strength=12.0):
    """An attention sink: key 0 scores far above the others for every query (as in decoder models)."""
    u = np.full(q.shape[-1], 1 / np.sqrt(q.shape[-1]), np.float32)
    q = q + np.float32(strength / 3) * u
    k = k.copy()
    k[..., 0, :] += np.float32(strength) * u
    return q, k


# -- graphs every code generator compiles (tests/backends/llvm/test_targets.py, tests/backends/cuda) --
UNARY = [
    "neg", "abs", "sign", "floor", "ceil", "round", "sqrt", "rsqrt", "exp", "log", "log1p", "expm1", "sin", "cos",
    "tanh", "sigmoid", "erf", "relu", "silu", "isnan", "isinf", "isfinite", "invert", "gelu",
]
BINARY = [
    "add", "sub", "mul", "true_div", "floor_div", "mod", "power", "maximum", "minimum", "bitwise_and",
    "bitwise_or", "bitwise_xor", "less", "less_equal", "greater", "greater_equal", "equal", "not_equal",
]
N_ODD = 37  # not a multiple of any vector width: exercises the vectorised body and the remainder loop


def _try(fn, *args):
    try:
        return fn(*args)
    except (TypeError, ValueError):
        return None  # not defined for this dtype (NumPy has no such loop)


def _scalar_graph(dtype):
    """Every unary and binary op and every cast from ``dtype``, as one graph with many outputs."""
    a = se.tensor("a", dtype, (N_ODD,))
    b = se.tensor("b", dtype, (N_ODD,))
    outs = [_try(getattr(se, name), a) for name in UNARY]
    outs += [_try(getattr(se, name), a, b) for name in BINARY]
    outs += [se.cast(a, d) for d in ALL_DTYPES if d != dtype]
    outs += [se.where(a > b, a, b), se.clip(a, b, a)]
    if dtype in FLOAT_DTYPES:
        outs += [se.gelu(a, approximate="tanh"), a ** 0.5, a ** 2]
    return [a, b], [o for o in outs if o is not None]


def _reduction_graph(dtype):
    x = se.tensor("x", dtype, (5, N_ODD))
    outs = []
    for name in ("sum", "prod", "max", "min", "mean", "argmax", "argmin"):
        for axis in (None, 0, 1):
            outs.append(_try(lambda: getattr(se, name)(x, axis=axis)))
    return [x], [o for o in outs if o is not None]


def _nn_graph(dtype):
    x = se.tensor("x", dtype, (5, N_ODD))
    g = se.tensor("g", dtype, (N_ODD,))
    w = se.tensor("w", dtype, (N_ODD, 6))
    outs = [
        se.softmax(x, axis=-1), se.log_softmax(x, axis=-1), se.logsumexp(x, axis=-1),
        se.layer_norm(x, g, g), se.rms_norm(x, g), x @ w,
    ]
    return [x, g, w], outs


def _attention_graph(dtype):
    """The fused attention kernel: masked, causal, decode-sized and skipping, with its tile counts."""
    from symexpr.ops.attention import Attention

    q, q1 = se.tensor("q", dtype, (2, 19, 16)), se.tensor("q1", dtype, (2, 1, 16))
    k, v = se.tensor("k", dtype, (2, N_ODD, 16)), se.tensor("v", dtype, (2, N_ODD, 12))
    m = se.tensor("m", dtype, (19, N_ODD))
    outs = list(Attention(0.3, has_mask=True, block_q=8, block_k=8)(q, k, v, m))
    outs += list(Attention(0.3, causal="top_left", threshold=0.05, block_q=8, block_k=16)(q, k, v))
    outs += list(Attention(0.3, scale_factor=3.0)(q1, k, v))
    return [q, q1, k, v, m], outs


def _qlinear_graph(dtype):
    """An int8 linear whose epilogue program (bias, GELU, a residual) runs in the kernel."""
    from symexpr.ops import quant as Q

    rng = np.random.default_rng(0)
    xq, sx = se.tensor("xq", "int8", (5, 40)), se.tensor("sx", dtype, (5, 1))
    r = se.tensor("r", dtype, (5, 24))
    y = Q.qlinear(xq, rng.integers(-63, 64, (40, 24)).astype(np.int8), sx, rng.uniform(0.01, 0.1, 24).astype(dtype),
                  weight_bits=7)
    return [xq, sx, r], [se.gelu(y + rng.standard_normal(24).astype(dtype)) * r]


#: Graphs that between them use every scalar op on every dtype, every cast, the reductions, the nn ops,
#: attention and an int8 linear: the kernels a code generator must get right on every target.
KERNEL_GRAPHS = {f"scalar-{d}": (_scalar_graph, d) for d in ALL_DTYPES}
KERNEL_GRAPHS["attention-float32"] = (_attention_graph, "float32")
KERNEL_GRAPHS["attention-float16"] = (_attention_graph, "float16")
KERNEL_GRAPHS["qlinear-epilogue"] = (_qlinear_graph, "float32")
KERNEL_GRAPHS.update({f"reduce-{d}": (_reduction_graph, d) for d in ALL_DTYPES})
KERNEL_GRAPHS.update({f"nn-{d}": (_nn_graph, d) for d in FLOAT_DTYPES})


def kernel_graph_inputs(inputs, rng):
    """Arrays for a kernel graph's inputs: special floats first, exponents ``b`` non-negative."""
    out = []
    for v in inputs:
        shape, dtype = v.type.shape, v.dtype
        if dtype == "bool":
            out.append(rng.random(shape) < 0.5)
        elif dtype.startswith("float"):
            vals = rng.standard_normal(shape) * 3
            vals.flat[:6] = [0.0, -0.0, 2.5, -3.5, 0.5, 1e-6][: vals.size]
            out.append(vals.astype(dtype))
        else:
            info = np.iinfo(dtype)
            low = 0 if v.name == "b" else max(info.min, -100)  # b is an exponent: no negative integer powers
            out.append(rng.integers(low, min(info.max, 100), size=shape, endpoint=True).astype(dtype))
    return out


def assert_kernel_graph_matches_numpy(f, build, dtype, inputs, label, to_host=np.asarray):
    """Run compiled ``f`` of kernel graph ``build(dtype)`` on :func:`kernel_graph_inputs` and compare with NumPy.

    Floats within :func:`~symexpr.testing.asserts.default_tolerances`, NaN where
    NumPy has NaN; everything else exactly.  ``to_host`` turns an output into a
    NumPy array (``cupy.asnumpy`` for device arrays).
    """
    from symexpr.testing.asserts import default_tolerances

    ref = se.function(*build(dtype), backend="numpy", passes="none")
    args = kernel_graph_inputs(inputs, np.random.default_rng(7))
    with np.errstate(all="ignore"):
        got, want = f(*args), ref(*args)
    for i, (g, w) in enumerate(zip(got, want)):
        g = to_host(g)
        assert g.dtype == w.dtype and g.shape == w.shape, f"{label} output {i}"
        if w.dtype.kind == "f":
            rtol, atol = default_tolerances(w.dtype, w)
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, equal_nan=True, err_msg=f"{label} output {i}")
        else:
            np.testing.assert_array_equal(g, w, err_msg=f"{label} output {i}")
