"""The cuda backend: every kernel the test graphs generate compiles to cubin for each checked architecture.

NVRTC needs no GPU, so these run everywhere NVRTC is installed (the ``cuda``
extra; CI installs it).  Compiling to cubin, not PTX, makes NVRTC check
everything the assembler would.  Any warning fails the test: unused values
or narrowing conversions in generated code are symexpr bugs.  Tests marked
``gpu`` run the kernels against the NumPy reference and are skipped without
a CUDA device.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from support import KERNEL_GRAPHS, kernel_graph_inputs

import symexpr as se
from symexpr.backends.cuda import nvrtc, runtime
from symexpr.testing.asserts import default_tolerances

pytestmark = pytest.mark.skipif(not nvrtc.available(), reason="NVRTC is not installed (pip install 'symexpr[cuda]')")
needs_gpu = pytest.mark.skipif(not runtime.device_available(), reason="no CUDA device")

#: Graphs whose kernels are all CUDA kernels today (attention and int8 GEMMs still run on the host).
GRAPHS = {name: spec for name, spec in KERNEL_GRAPHS.items() if not name.startswith(("attention", "qlinear"))}


def _compile(build, dtype, arch="sm_80"):
    inputs, outputs = build(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # host-step warnings: asserted on their own below
        f = se.function(inputs, outputs, backend="cuda")
    return f, inputs


@pytest.mark.parametrize("arch", nvrtc.CHECKED_ARCHS)
@pytest.mark.parametrize("graph", list(GRAPHS))
def test_every_kernel_compiles_to_cubin_without_warnings(graph, arch):
    build, dtype = GRAPHS[graph]
    f, _ = _compile(build, dtype)
    source = f.source
    assert '__global__' in source
    cubin, log = nvrtc.compile_cubin(source, arch)
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


def test_nvrtc_errors_carry_the_log():
    with pytest.raises(nvrtc.CUDACompileError, match="could not compile"):
        nvrtc.compile_cubin('extern "C" __global__ void k() { undefined_thing(); }')


def test_host_fallback_is_named_in_a_warning():
    a, b = se.matrix("a", dtype="float32"), se.matrix("b", dtype="float32")
    with pytest.warns(UserWarning, match="(?i)backend 'cuda': matmul.* runs on the host"):
        se.function([a, b], se.exp(a @ b), backend="cuda")


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
    ref = se.function(*build(dtype), backend="numpy", passes="none")
    args = kernel_graph_inputs(inputs, np.random.default_rng(7))
    with np.errstate(all="ignore"):
        got, want = f(*args), ref(*args)
    for i, (g, w) in enumerate(zip(got, want)):
        g = cupy.asnumpy(g)
        assert g.dtype == w.dtype and g.shape == w.shape, f"output {i}"
        if w.dtype.kind == "f":
            rtol, atol = default_tolerances(w.dtype, w)
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, equal_nan=True, err_msg=f"output {i}")
        else:
            np.testing.assert_array_equal(g, w, err_msg=f"output {i}")


# -- the kernels run on the CPU (see emulator.py) -----------------------------------------------
import emulator  # noqa: E402

#: Graphs run in the emulation: every scalar op on the dtypes that take different code paths
#: (float16 conversions, float64, signed and unsigned integers, bool), every reduction, the nn ops.
EMULATED = ["scalar-float16", "scalar-float32", "scalar-float64", "scalar-int8", "scalar-uint16", "scalar-int64",
            "scalar-uint64", "scalar-bool", "reduce-float32", "reduce-int32", "reduce-uint8", "reduce-bool",
            "nn-float32", "nn-float16", "nn-float64"]


@pytest.mark.skipif(emulator.compiler() is None, reason="no C++ compiler for the CPU emulation")
@pytest.mark.parametrize("graph", EMULATED)
def test_kernels_match_numpy_in_the_cpu_emulation(graph):
    build, dtype = GRAPHS[graph]
    inputs, outputs = build(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = emulator.emulated_function(inputs, outputs)
    ref = se.function(*build(dtype), backend="numpy", passes="none")
    args = kernel_graph_inputs(inputs, np.random.default_rng(7))
    with np.errstate(all="ignore"):
        got, want = f(*args), ref(*args)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.dtype == w.dtype and g.shape == w.shape, f"output {i}"
        if w.dtype.kind == "f":
            rtol, atol = default_tolerances(w.dtype, w)
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, equal_nan=True, err_msg=f"{graph} output {i}")
        else:
            np.testing.assert_array_equal(g, w, err_msg=f"{graph} output {i}")
