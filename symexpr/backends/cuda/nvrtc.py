"""CUDA C to cubin with NVRTC, with or without a GPU.

NVRTC compiles for an explicit architecture without asking a device, so
every machine (CI included) can check that generated kernels compile.  The
library comes with CuPy's ``cupy.cuda.nvrtc`` and the ``nvidia-cuda-nvrtc``
wheel (the ``cuda`` extra).  Kernels compile to cubin, not PTX: PTX would
defer errors such as an instruction the architecture lacks to the driver.
"""

from __future__ import annotations

import functools
import os
import re

#: The architecture kernels compile for when no GPU says which (``SYMEXPR_CUDA_ARCH`` overrides).
DEFAULT_ARCH = "sm_80"
#: Architectures CI compile-checks every kernel for (A100-class and H100-class).
CHECKED_ARCHS = ("sm_80", "sm_90a")
#: Options of every compile: no contraction of a*b+c into fma (the lowering decides each
#: rounding), IEEE division and square root, no flush of subnormals to zero.  Two diagnostics
#: are about code that is right as generated: #39 "division by zero" (``x / 0.0`` is inf or NaN,
#: as NumPy gives) and #186 "pointless comparison of unsigned integer with zero" (``minimum(u, 0)``).
OPTIONS = ("--fmad=false", "--prec-div=true", "--prec-sqrt=true", "--ftz=false", "-std=c++17",
           "-diag-suppress=39,186")


class CUDACompileError(RuntimeError):
    """NVRTC refused generated code (a symexpr bug), or is not installed."""


def arch_from_env() -> str | None:
    value = os.environ.get("SYMEXPR_CUDA_ARCH")
    if value and not re.fullmatch(r"sm_\d+a?", value):
        raise ValueError(f"SYMEXPR_CUDA_ARCH must look like sm_80 or sm_90a, got {value!r}")
    return value or None


@functools.lru_cache(maxsize=1)
def _nvrtc():
    try:
        from cupy.cuda import nvrtc
    except Exception as exc:  # noqa: BLE001 - ImportError, or CuPy failing to find its libraries
        raise CUDACompileError(
            f"the cuda backend needs CuPy and NVRTC: pip install 'symexpr[cuda]' ({type(exc).__name__}: {exc})"
        ) from None
    try:
        nvrtc.getVersion()
    except Exception as exc:  # noqa: BLE001
        raise CUDACompileError(f"NVRTC is not loadable: pip install nvidia-cuda-nvrtc ({exc})") from None
    return nvrtc


def available() -> bool:
    """Whether NVRTC can be loaded here."""
    try:
        _nvrtc()
    except CUDACompileError:
        return False
    return True


def compile_cubin(source: str, arch: str = DEFAULT_ARCH, name: str = "symexpr.cu") -> tuple[bytes, str]:
    """Compile ``source`` for ``arch``: returns ``(cubin, log)``; the log holds any warnings.

    Raises
    ------
    CUDACompileError
        With NVRTC's log, if the source does not compile.
    """
    nvrtc = _nvrtc()
    program = nvrtc.createProgram(source, name, [], [])
    try:
        try:
            nvrtc.compileProgram(program, [f"-arch={arch}", *OPTIONS])
        except nvrtc.NVRTCError as exc:
            log = nvrtc.getProgramLog(program)
            raise CUDACompileError(f"NVRTC could not compile generated code for {arch}: {exc}\n{log}") from None
        log = nvrtc.getProgramLog(program).strip("\x00").strip()
        return nvrtc.getCUBIN(program), log
    finally:
        nvrtc.destroyProgram(program)
