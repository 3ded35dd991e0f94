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
from support import KERNEL_GRAPHS, N_ODD as N, assert_kernel_graph_matches_numpy

import symexpr as se
from symexpr.backends.llvm import loader, target

#: The x86-64 micro-architecture levels and the server CPUs this project has been seen on.
TARGETS = ["x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4", "znver3", "znver4", "skylake-avx512", "sapphirerapids"]

GRAPHS = KERNEL_GRAPHS


@pytest.fixture(autouse=True)
def _no_disk_cache(monkeypatch):
    monkeypatch.setenv("SYMEXPR_CACHE", "0")


def _compile_for(monkeypatch, name, runnable, build, dtype):
    cpu = target.named_target(name, runnable=runnable)
    monkeypatch.setattr(target, "active_target", lambda: cpu)
    inputs, outputs = build(dtype)
    return se.function(inputs, outputs, backend="llvm"), inputs


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
    assert_kernel_graph_matches_numpy(f, build, dtype, inputs, name)


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
