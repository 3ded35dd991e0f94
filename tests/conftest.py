import os

import pytest
from hypothesis import HealthCheck, settings

# "ci" is deterministic so a red run can be reproduced; "dev" explores more.
settings.register_profile(
    "ci", derandomize=True, deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

#: Backends the suite runs against; the numpy reference is always first.  Where a CUDA device
#: is present the cuda backend joins by default.
def _default_backends() -> str:
    from symexpr.backends.cuda.runtime import device_available

    return "numpy,llvm,cuda" if device_available() else "numpy,llvm"


TEST_BACKENDS = [b for b in (os.environ.get("SYMEXPR_TEST_BACKENDS") or _default_backends()).split(",") if b]

if os.environ.get("SYMEXPR_CUDA_EMULATE") == "1":
    # Bug hunting without a GPU: backend "cuda" runs its kernels in the CPU emulation
    # (tests/backends/cuda/emulator.py) for the whole session.  Slow: g++ per compiled graph.
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "backends", "cuda"))
    import emulator

    emulator.emulate(pytest.MonkeyPatch())


@pytest.fixture(params=TEST_BACKENDS)
def backend(request):
    """Name of a backend to compile with; tests using it run once per backend."""
    return request.param
