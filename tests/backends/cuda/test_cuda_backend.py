"""The cuda backend: every kernel the test graphs generate compiles to cubin for each checked architecture.

NVRTC needs no GPU, so these run everywhere NVRTC is installed (the ``cuda``
extra; CI installs it).  Compiling to cubin, not PTX, makes NVRTC check
everything the assembler would.  Any warning fails the test: unused values
or narrowing conversions in generated code are symexpr bugs.  Tests marked
``gpu`` run the kernels against the NumPy reference and are skipped without
a CUDA device.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from support import KERNEL_GRAPHS, assert_kernel_graph_matches_numpy

import symexpr as se
from symexpr.backends.cuda import nvrtc, runtime

pytestmark = pytest.mark.skipif(not nvrtc.available(), reason="NVRTC is not installed (pip install 'symexpr[cuda]')")
needs_gpu = pytest.mark.skipif(not runtime.device_available(), reason="no CUDA device")

#: Graphs whose kernels are all CUDA kernels today (attention still runs on the host).
GRAPHS = {name: spec for name, spec in KERNEL_GRAPHS.items() if not name.startswith("attention")}


def _compile(build, dtype, arch="sm_80"):
    inputs, outputs = build(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # host-step warnings: asserted on their own below
        f = se.function(inputs, outputs, backend="cuda")
    return f, inputs


@pytest.fixture(scope="module")
def cubins():
    """``(graph, arch) -> (source, cubin, log)`` for every graph and checked architecture.

    Compiled up front on a thread per core (NVRTC releases the GIL), then
    checked one test per pair.
    """
    sources = {graph: _compile(*GRAPHS[graph])[0].source for graph in GRAPHS}
    pairs = [(graph, arch) for graph in GRAPHS for arch in nvrtc.CHECKED_ARCHS]

    def one(pair):
        try:
            return pair, (sources[pair[0]], *nvrtc.compile_cubin(sources[pair[0]], pair[1]))
        except nvrtc.CUDACompileError as exc:
            return pair, (sources[pair[0]], None, str(exc))

    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        return dict(pool.map(one, pairs))


@pytest.mark.parametrize("arch", nvrtc.CHECKED_ARCHS)
@pytest.mark.parametrize("graph", list(GRAPHS))
def test_every_kernel_compiles_to_cubin_without_warnings(cubins, graph, arch):
    source, cubin, log = cubins[(graph, arch)]
    assert '__global__' in source
    assert cubin is not None, log
    assert cubin[:4] == b"\x7fELF", "NVRTC did not produce a cubin"
    assert log == "", f"{graph} on {arch}: NVRTC warnings\n{log}"


def test_source_is_cuda_c_rendered_from_the_shared_lowering():
    x = se.tensor("x", "float32", (None, None))
    f = se.function([x], [se.exp(x) + 1, se.softmax(x, axis=-1)], backend="cuda")
    src = f.source
    assert 'extern "C" __global__' in src and "__shfl_down_sync" in src
    assert "llvm." not in src and "expf" not in src  # the math library is the shared one, not libdevice's
    assert "fmaf(" in src


def test_compiles_for_a_forced_architecture(monkeypatch):
    monkeypatch.setenv("SYMEXPR_CUDA_ARCH", "sm_90a")
    x = se.vector("x", dtype="float32")
    f = se.function([x], se.tanh(x) * 2, backend="cuda")
    assert f._compiled.arch == "sm_90a"
    monkeypatch.setenv("SYMEXPR_CUDA_ARCH", "hopper")
    with pytest.raises(ValueError, match="SYMEXPR_CUDA_ARCH"):
        se.function([x], se.tanh(x), backend="cuda")


def test_literal_corner_cases_compile_without_warnings():
    """A negated negative literal (``--2.0f`` would be a decrement), division by a zero literal, a comparison
    of an unsigned value with 0: none may be an error or a warning, even with no rewrites to fold them."""
    x, u = se.vector("x", dtype="float32"), se.vector("u", dtype="uint32")
    d = se.vector("d", dtype="float64")
    outs = [-se.constant(np.float32(-2.0)) * x, -se.constant(-0.0) * d, x / 0.0, se.minimum(u, np.uint32(0)),
            se.maximum(u, np.uint32(0))]
    for passes in ("none", None):
        source = se.function([x, u, d], outs, backend="cuda", passes=passes).source
        for arch in nvrtc.CHECKED_ARCHS:
            cubin, log = nvrtc.compile_cubin(source, arch)
            assert log == "", log


def test_nvrtc_errors_carry_the_log():
    with pytest.raises(nvrtc.CUDACompileError, match="could not compile"):
        nvrtc.compile_cubin('extern "C" __global__ void k() { undefined_thing(); }')


def test_host_fallback_is_named_in_a_warning():
    a, b = se.matrix("a", dtype="int32"), se.matrix("b", dtype="int32")
    with pytest.warns(UserWarning, match="(?i)backend 'cuda': matmul.* runs on the host"):
        se.function([a, b], a @ b + 1, backend="cuda")


@pytest.mark.skipif(runtime.device_available(), reason="a CUDA device is present")
def test_calling_without_a_device_is_a_clear_error():
    x = se.vector("x", dtype="float32")
    f = se.function([x], x * 2, backend="cuda")
    with pytest.raises(runtime.NoDeviceError, match="no CUDA device is available"):
        f(np.ones(4, dtype=np.float32))


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("graph", list(GRAPHS))
def test_kernels_match_numpy_on_the_gpu(graph):
    import cupy

    build, dtype = GRAPHS[graph]
    f, inputs = _compile(build, dtype)
    assert_kernel_graph_matches_numpy(f, build, dtype, inputs, graph, to_host=cupy.asnumpy)


# -- the kernels run on the CPU (see emulator.py) -----------------------------------------------
import emulator  # noqa: E402

#: Graphs run in the emulation: every scalar op on the dtypes that take different code paths
#: (float16 conversions, float64, signed and unsigned integers, bool), every reduction, the nn ops.
EMULATED = ["scalar-float16", "scalar-float32", "scalar-float64", "scalar-int8", "scalar-uint64", "scalar-bool",
            "reduce-float32", "reduce-int32", "reduce-bool", "nn-float32", "nn-float16", "qlinear-epilogue"]


@pytest.fixture(scope="module")
def emulated_builds():
    """Compile the emulated graphs' C++ up front, a thread per core (the tests then find it built)."""
    modules = [_compile(*GRAPHS[graph])[0]._compiled._latest().module for graph in EMULATED]
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        list(pool.map(emulator.build, modules))


@pytest.mark.skipif(emulator.compiler() is None, reason="no C++ compiler for the CPU emulation")
@pytest.mark.parametrize("graph", EMULATED)
def test_kernels_match_numpy_in_the_cpu_emulation(monkeypatch, emulated_builds, graph):
    emulator.emulate(monkeypatch)
    build, dtype = GRAPHS[graph]
    f, inputs = _compile(build, dtype)
    assert_kernel_graph_matches_numpy(f, build, dtype, inputs, graph)


@pytest.mark.skipif(emulator.compiler() is None, reason="no C++ compiler for the CPU emulation")
def test_host_steps_and_outputs_in_the_cpu_emulation(monkeypatch):
    """The runtime around the kernels: a host step between kernels, one value returned twice, symbolic shapes."""
    emulator.emulate(monkeypatch)
    a, b = se.matrix("a", dtype="float32"), se.matrix("b", dtype="float32")
    h = se.exp(a) @ b  # exp on the device, the matmul through cuBLAS, argmax on the host, softmax on the device
    s = se.softmax(h, axis=-1) + se.cast(se.argmax(h, axis=-1), "float32")[:, None]
    with pytest.warns(UserWarning, match="runs on the host"):
        f = se.function([a, b], [s, h, s], backend="cuda")
    kinds = {kind for kind, _ in f._compiled._latest().executable.schedule}
    assert kinds == {"native", "gemm", "host"}, kinds
    rng = np.random.default_rng(3)
    for shape in ((3, 5, 4), (7, 2, 9)):
        av = rng.standard_normal(shape[:2]).astype(np.float32)
        bv = rng.standard_normal(shape[1:]).astype(np.float32)
        got = f(av, bv)
        want_h = np.exp(av) @ bv
        want_s = np.exp(want_h - want_h.max(-1, keepdims=True))
        want_s /= want_s.sum(-1, keepdims=True)
        want_s += want_h.argmax(-1)[:, None]
        np.testing.assert_allclose(got[1], want_h, rtol=1e-5)
        np.testing.assert_allclose(got[0], want_s, rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(got[0], got[2])
        assert got[0] is not got[2]
    assert f._compiled.compilations == 1


@pytest.mark.skipif(emulator.compiler() is None, reason="no C++ compiler for the CPU emulation")
@pytest.mark.parametrize("k", [1, 7, 64, 130])
def test_int8_gemm_is_exact_in_the_cpu_emulation(monkeypatch, k):
    """int32 results equal NumPy's integer matmul bit for bit (8-bit weights, K not a multiple of 4, strided rows),
    and the scaled epilogue with a bias matches the reference's order of roundings."""
    from symexpr.ops import quant as Q

    emulator.emulate(monkeypatch)
    rng = np.random.default_rng(k)
    w = rng.integers(-127, 128, (k, 37)).astype(np.int8)
    sw = rng.uniform(0.01, 0.1, 37).astype(np.float32)
    bias = rng.standard_normal(37).astype(np.float32)
    xq, sx = se.tensor("xq", "int8", (None, None)), se.tensor("sx", "float32", (None, 1))
    outs = [Q.qlinear(xq, w), Q.qlinear(xq, w, sx, sw, bias)]
    f = se.function([xq, sx], outs, backend="cuda")
    ref = se.function([xq, sx], outs, backend="numpy")
    for m in (1, 5, 33):
        x = rng.integers(-128, 128, (m, 2 * k)).astype(np.int8)[:, ::2]  # a row stride of 2k bytes
        s = rng.uniform(0.01, 0.1, (m, 1)).astype(np.float32)
        got, want = f(x, s), ref(x, s)
        np.testing.assert_array_equal(got[0], x.astype(np.int32) @ w.astype(np.int32))
        np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.skipif(emulator.compiler() is None, reason="no C++ compiler for the CPU emulation")
def test_float16_conversions_keep_numpy_bits_in_the_cpu_emulation(monkeypatch):
    """Every float16 and a sweep of float32 values, NaN payloads and signs included, round-trip as NumPy's do."""
    emulator.emulate(monkeypatch)
    h, s = se.vector("h", dtype="float16"), se.vector("s", dtype="float32")
    f = se.function([h, s], [se.cast(h, "float32"), se.cast(s, "float16")], backend="cuda")
    every_half = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    rng = np.random.default_rng(5)
    with np.errstate(invalid="ignore"):
        singles = np.concatenate([rng.integers(0, 1 << 32, 1 << 16, dtype=np.uint64).astype(np.uint32).view(np.float32),
                                  every_half.astype(np.float32) * np.float32(1 + 2.0**-11)])  # near ties
    with np.errstate(all="ignore"):
        wide, narrow = f(every_half, singles)
        want_wide, want_narrow = every_half.astype(np.float32), singles.astype(np.float16)
    # NaNs stay NaNs of the same sign and, where NumPy's is quiet, of the same payload (a signalling NaN comes
    # out quiet, as F16C's conversions make it; NumPy keeps it signalling)
    for got, want, quiet in ((wide, want_wide, 0x00400000), (narrow, want_narrow, 0x0200)):
        bits, want_bits = got.view(f"uint{8 * got.itemsize}"), want.view(f"uint{8 * want.itemsize}")
        nan = np.isnan(want)
        np.testing.assert_array_equal(bits[~nan], want_bits[~nan])
        assert np.isnan(got[nan]).all() and (np.signbit(got[nan]) == np.signbit(want[nan])).all()
        quiet_nan = nan & ((want_bits & quiet) != 0)
        np.testing.assert_array_equal(bits[quiet_nan], want_bits[quiet_nan])


@pytest.mark.skipif(emulator.compiler() is None, reason="no C++ compiler for the CPU emulation")
def test_device_arrays_are_taken_by_cuda_and_refused_by_cpu_backends(monkeypatch):
    emulator.emulate(monkeypatch)
    x = se.vector("x", dtype="float32")
    value = np.arange(5, dtype=np.float32)
    device = emulator.DeviceArrayLike(value)
    f = se.function([x], x * 2, backend="cuda")
    np.testing.assert_array_equal(f(device), value * 2)
    with pytest.raises(TypeError, match="argument 'x' .*expected dtype float32, got float64"):
        f(emulator.DeviceArrayLike(value.astype(np.float64)))
    with pytest.raises(ValueError, match="argument 'x' .*expected 1 dimension"):
        f(emulator.DeviceArrayLike(value.reshape(1, 5)))
    for backend in ("llvm", "numpy"):
        g = se.function([x], x * 2, backend=backend)
        with pytest.raises(TypeError, match="argument 'x' .*got a GPU array .*runs on the CPU"):
            g(device)
