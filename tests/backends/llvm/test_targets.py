"""Code for every CPU target: no call the loader cannot bind, and right answers wherever the host can run it.

LLVM lowers some operations to calls of runtime functions, and which ones
depends on the CPU (float16 conversions without F16C, ``roundevenf`` without
SSE4.1, ``__truncdfhf2`` without AVX512-FP16).  Nothing in a Python process
defines compiler-rt's helpers, so such a call would jump to address 0.  These
tests compile every scalar op for every dtype, every cast pair, the
reductions, the nn ops and matmul for a list of CPU targets, whatever machine
runs them, and check each object's undefined symbols against the set the
loader binds.  Code for a target the host can run is also run and compared
with the NumPy reference.
"""

from __future__ import annotations

import numpy as np
import pytest
from support import ALL_DTYPES, FLOAT_DTYPES

import symexpr as se
from symexpr.backends.llvm import loader, target
from symexpr.testing.asserts import default_tolerances

#: The x86-64 micro-architecture levels and the server CPUs this project has been seen on.
TARGETS = ["x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4", "znver3", "znver4", "skylake-avx512", "sapphirerapids"]

UNARY = [
    "neg", "abs", "sign", "floor", "ceil", "round", "sqrt", "rsqrt", "exp", "log", "log1p", "expm1", "sin", "cos",
    "tanh", "sigmoid", "erf", "relu", "silu", "isnan", "isinf", "isfinite", "invert", "gelu",
]
BINARY = [
    "add", "sub", "mul", "true_div", "floor_div", "mod", "power", "maximum", "minimum", "bitwise_and",
    "bitwise_or", "bitwise_xor", "less", "less_equal", "greater", "greater_equal", "equal", "not_equal",
]
N = 37  # not a multiple of any vector width: exercises the vectorised body and the remainder loop


def _try(fn, *args):
    try:
        return fn(*args)
    except (TypeError, ValueError):
        return None  # not defined for this dtype (NumPy has no such loop)


def _scalar_graph(dtype):
    """Every unary and binary op and every cast from ``dtype``, as one graph with many outputs."""
    a = se.tensor("a", dtype, (N,))
    b = se.tensor("b", dtype, (N,))
    outs = [_try(getattr(se, name), a) for name in UNARY]
    outs += [_try(getattr(se, name), a, b) for name in BINARY]
    outs += [se.cast(a, d) for d in ALL_DTYPES if d != dtype]
    outs += [se.where(a > b, a, b), se.clip(a, b, a)]
    if dtype in FLOAT_DTYPES:
        outs += [se.gelu(a, approximate="tanh"), a ** 0.5, a ** 2]
    return [a, b], [o for o in outs if o is not None]


def _reduction_graph(dtype):
    x = se.tensor("x", dtype, (5, N))
    outs = []
    for name in ("sum", "prod", "max", "min", "mean", "argmax", "argmin"):
        for axis in (None, 0, 1):
            outs.append(_try(lambda: getattr(se, name)(x, axis=axis)))
    return [x], [o for o in outs if o is not None]


def _nn_graph(dtype):
    x = se.tensor("x", dtype, (5, N))
    g = se.tensor("g", dtype, (N,))
    w = se.tensor("w", dtype, (N, 6))
    outs = [
        se.softmax(x, axis=-1), se.log_softmax(x, axis=-1), se.logsumexp(x, axis=-1),
        se.layer_norm(x, g, g), se.rms_norm(x, g), x @ w,
    ]
    return [x, g, w], outs


def _attention_graph(dtype):
    """The fused attention kernel: masked, causal, decode-sized and skipping, with its tile counts."""
    from symexpr.ops.attention import Attention

    q, q1 = se.tensor("q", dtype, (2, 19, 16)), se.tensor("q1", dtype, (2, 1, 16))
    k, v = se.tensor("k", dtype, (2, N, 16)), se.tensor("v", dtype, (2, N, 12))
    m = se.tensor("m", dtype, (19, N))
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


GRAPHS = {f"scalar-{d}": (_scalar_graph, d) for d in ALL_DTYPES}
GRAPHS["attention-float32"] = (_attention_graph, "float32")
GRAPHS["attention-float16"] = (_attention_graph, "float16")
GRAPHS["qlinear-epilogue"] = (_qlinear_graph, "float32")
GRAPHS.update({f"reduce-{d}": (_reduction_graph, d) for d in ALL_DTYPES})
GRAPHS.update({f"nn-{d}": (_nn_graph, d) for d in FLOAT_DTYPES})


@pytest.fixture(autouse=True)
def _no_disk_cache(monkeypatch):
    monkeypatch.setenv("SYMEXPR_CACHE", "0")


def _compile_for(monkeypatch, name, runnable, build, dtype):
    cpu = target.named_target(name, runnable=runnable)
    monkeypatch.setattr(target, "active_target", lambda: cpu)
    inputs, outputs = build(dtype)
    return se.function(inputs, outputs, backend="llvm"), inputs


def _inputs(inputs, rng):
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


@pytest.mark.parametrize("graph", list(GRAPHS))
@pytest.mark.parametrize("name", TARGETS)
def test_target(monkeypatch, name, graph):
    """The code LLVM emits for ``name`` calls only what the loader binds (loading checks the object), and
    where the host can run it (it has every feature the target implies), it agrees with the NumPy reference."""
    seen = []
    real = loader.undefined_symbols
    monkeypatch.setattr(loader, "undefined_symbols", lambda code: seen.append(real(code)) or seen[-1])
    build, dtype = GRAPHS[graph]
    runnable = target.can_run(name)
    f, inputs = _compile_for(monkeypatch, name, runnable, build, dtype)
    assert seen and seen[0] is not None, "no ELF object was checked"
    assert seen[0] <= loader.BOUND_SYMBOLS, f"{name}: unbound {sorted(seen[0] - loader.BOUND_SYMBOLS)}"
    if not runnable:
        return
    ref = se.function(*build(dtype), backend="numpy", passes="none")
    args = _inputs(inputs, np.random.default_rng(7))
    with np.errstate(all="ignore"):
        got, want = f(*args), ref(*args)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.dtype == w.dtype and g.shape == w.shape, f"output {i}"
        if w.dtype.kind == "f":
            rtol, atol = default_tolerances(w.dtype, w)
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, equal_nan=True, err_msg=f"{name} output {i}")
        else:
            np.testing.assert_array_equal(g, w, err_msg=f"{name} output {i}")


def test_forced_target_from_environment(monkeypatch):
    """SYMEXPR_CPU picks the target; code for it uses only its features."""
    monkeypatch.setenv("SYMEXPR_CPU", "x86-64")
    t = target.active_target()
    assert t.name == "x86-64" and not t.has("f16c") and not t.has("sse4.1")
    x = se.tensor("x", "float64", (N,))
    f = se.function([x], [se.cast(x, "float16"), se.round(x)], backend="llvm")
    assert "vcvtps2ph" not in f.assembly() and "roundsd" not in f.assembly()
    v = np.linspace(-70000, 70000, N)
    h, r = f(v)
    np.testing.assert_array_equal(h, v.astype("float16"))
    np.testing.assert_array_equal(r, np.round(v))


def test_forced_target_errors(monkeypatch):
    monkeypatch.setenv("SYMEXPR_CPU", "pentium-pro")
    with pytest.raises(ValueError, match="SYMEXPR_CPU=pentium-pro: unknown CPU target"):
        target.active_target()
    missing = next((n for n in TARGETS if not target.can_run(n)), None)
    if missing is not None:
        monkeypatch.setenv("SYMEXPR_CPU", missing)
        with pytest.raises(ValueError, match="lacks"):
            target.active_target()


def test_cache_key_depends_on_target(monkeypatch):
    monkeypatch.setenv("SYMEXPR_CPU", "x86-64")
    base = target.fingerprint()
    monkeypatch.setenv("SYMEXPR_CPU", "x86-64-v2")
    assert target.fingerprint() != base


# -- the loader's check --------------------------------------------------------------------------
def _object_calling(symbol):
    from llvmlite import ir

    m = ir.Module("m")
    m.triple = target.llvm.get_process_triple()
    callee = ir.Function(m, ir.FunctionType(ir.VoidType(), []), symbol)
    fn = ir.Function(m, ir.FunctionType(ir.IntType(32), [ir.IntType(8).as_pointer(), ir.IntType(64), ir.IntType(64)]),
                     "symexpr_seg0")
    b = ir.IRBuilder(fn.append_basic_block())
    b.call(callee, [])
    b.ret(ir.Constant(ir.IntType(32), 0))
    return target.compile_ir(str(m))


def test_undefined_symbols_reads_the_object():
    assert loader.undefined_symbols(_object_calling("__truncdfhf2")) == {"__truncdfhf2"}
    assert loader.undefined_symbols(b"MZ not an ELF file") is None


def test_loader_refuses_an_unbound_symbol_before_running():
    with pytest.raises(loader.UnboundSymbolError, match="__truncdfhf2"):
        loader.LoadedModule(_object_calling("__truncdfhf2"), 1)


def test_loader_accepts_bound_libc_symbols():
    assert loader.LoadedModule(_object_calling("sched_yield"), 1).entries


# -- float16 conversions, exhaustively, in software and natively ------------------------------------
@pytest.mark.parametrize("name", ["x86-64", "host"])
def test_half_conversions_exhaustive(monkeypatch, name):
    """Every float16 value converts exactly; float32/float64 round once, to nearest even, like NumPy."""
    if name != "host":
        monkeypatch.setenv("SYMEXPR_CPU", name)
    h = se.tensor("h", "float16", (None,))
    s = se.tensor("s", "float32", (None,))
    d = se.tensor("d", "float64", (None,))
    i = se.tensor("i", "int64", (None,))
    f = se.function([h, s, d, i], [se.cast(h, "float32"), se.cast(s, "float16"), se.cast(d, "float16"),
                                  se.cast(i, "float16"), h + h], backend="llvm")
    with np.errstate(all="ignore"):
        halves, singles, doubles, ints = _conversion_cases()
    n = max(len(halves), len(singles), len(doubles), len(ints))
    pad = lambda a: np.resize(a, n)  # noqa: E731
    with np.errstate(all="ignore"):
        out = f(pad(halves), pad(singles), pad(doubles), pad(ints))
        want = [pad(halves).astype(np.float32), pad(singles).astype(np.float16), pad(doubles).astype(np.float16),
                pad(ints).astype(np.float16), pad(halves) + pad(halves)]
    for k, (g, w) in enumerate(zip(out, want)):
        nan = np.isnan(w)
        assert np.array_equal(np.isnan(g), nan), f"output {k}: NaN placement"
        gb, wb = g[~nan], w[~nan]
        bits = {2: np.uint16, 4: np.uint32}[g.itemsize]
        bad = np.flatnonzero(gb.view(bits) != wb.view(bits))
        assert bad.size == 0, f"output {k}: {bad.size} values differ, e.g. got {gb[bad[:3]]} want {wb[bad[:3]]}"


def _conversion_cases():
    halves = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    rng = np.random.default_rng(1)
    # every half, the midpoints between neighbours (ties), and random bit patterns over the whole range
    mids = (halves.astype(np.float64)[:-1] + np.diff(halves.astype(np.float64)) / 2)
    mids = mids[np.isfinite(mids)]
    singles = np.concatenate([halves.astype(np.float32), mids.astype(np.float32),
                              rng.integers(0, 1 << 32, 1 << 20, dtype=np.uint64).astype(np.uint32).view(np.float32)])
    doubles = np.concatenate([mids, np.nextafter(mids, np.inf), np.nextafter(mids, -np.inf), singles.astype(np.float64),
                              rng.integers(0, 1 << 63, 1 << 20, dtype=np.uint64).view(np.float64)])
    ints = np.concatenate([np.arange(-70000, 70000, 3), rng.integers(-(1 << 62), 1 << 62, 4096)])
    return halves, singles, doubles, ints
