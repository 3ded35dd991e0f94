"""The code-generation target: LLVM initialisation, CPU name and features, optimisation and code emission.

By default code is generated for the host CPU.  ``SYMEXPR_CPU`` forces a named
target (one of :data:`NAMED_TARGETS`, e.g. ``x86-64-v2``), so that code paths
for an older CPU can be exercised on a newer one; a named target the host
cannot run is refused with a clear error.

Code generation decides from the target's features (never from the host's)
which instructions it may use, e.g. whether float16 conversions are native
(F16C, AVX512-FP16) or emitted in software.

llvmlite may report a CPU it does not know as ``generic``, and a target machine
made from the name alone then emits no AVX-512; the host feature string is
therefore always passed explicitly.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import os
import sys

import llvmlite
import llvmlite.binding as llvm

#: The environment variable that forces the code-generation target.
CPU_ENV = "SYMEXPR_CPU"

_V1 = ("sse", "sse2")
_V2 = _V1 + ("sse3", "ssse3", "sse4.1", "sse4.2", "popcnt", "cx16", "sahf")
_V3 = _V2 + ("avx", "avx2", "bmi", "bmi2", "f16c", "fma", "lzcnt", "movbe", "xsave")
_V4 = _V3 + ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")
_ICELAKE = _V4 + ("avx512vnni", "avx512vbmi", "avx512vbmi2", "avx512ifma", "avx512bitalg", "avx512vpopcntdq",
                  "gfni", "vaes", "vpclmulqdq", "pclmul", "aes", "adx", "rdseed")
_ZNVER3 = _V3 + ("sse4a", "pclmul", "aes", "adx", "rdseed", "sha", "vaes", "vpclmulqdq", "clzero")

#: The named targets symexpr knows, each with the instruction-set features it implies
#: (those that matter to generated code; LLVM's CPU model implies more).
NAMED_TARGETS: dict[str, frozenset] = {
    "x86-64": frozenset(_V1),
    "x86-64-v2": frozenset(_V2),
    "x86-64-v3": frozenset(_V3),
    "x86-64-v4": frozenset(_V4),
    "haswell": frozenset(_V3 + ("pclmul", "aes")),
    "skylake-avx512": frozenset(_V4 + ("pclmul", "aes", "adx", "rdseed")),
    "icelake-server": frozenset(_ICELAKE),
    "sapphirerapids": frozenset(_ICELAKE + ("avx512bf16", "avx512fp16", "avxvnni", "amx-tile", "amx-int8",
                                            "amx-bf16")),
    "alderlake": frozenset(_V3 + ("pclmul", "aes", "adx", "rdseed", "sha", "gfni", "vaes", "vpclmulqdq", "avxvnni")),
    "znver3": frozenset(_ZNVER3),
    "znver4": frozenset(_ZNVER3 + _ICELAKE + ("avx512bf16",)),
}


@dataclasses.dataclass(frozen=True)
class CPUTarget:
    """A CPU to generate code for.

    ``cpu`` and ``features`` go to LLVM's target machine; ``feature_set`` is
    what code generation may rely on.
    """

    name: str
    cpu: str
    features: str
    feature_set: frozenset

    def has(self, feature: str) -> bool:
        """Whether code for this target may use ``feature`` (LLVM's name, e.g. ``"f16c"``)."""
        return feature in self.feature_set


@functools.lru_cache(maxsize=None)
def _initialised() -> bool:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    return True


@functools.lru_cache(maxsize=None)
def _host_features() -> dict:
    _initialised()
    return dict(llvm.get_host_cpu_features())


def _feature_string(features: dict, avx512: bool) -> str:
    parts = [("+" if on else "-") + name for name, on in sorted(features.items())]
    if avx512:
        # LLVM tunes many AVX-512 CPUs to 256-bit vectors; our loops are long and want 512.
        parts.append("-prefer-256-bit")
    return ",".join(parts)


@functools.lru_cache(maxsize=None)
def host_target() -> CPUTarget:
    """The machine we run on, with every feature it has."""
    features = _host_features()
    flat = _feature_string(features, bool(features.get("avx512f")))
    return CPUTarget("host", llvm.get_host_cpu_name(), flat, frozenset(f for f, on in features.items() if on))


def named_target(name: str, runnable: bool = True) -> CPUTarget:
    """The target ``name`` (a key of :data:`NAMED_TARGETS`).

    With ``runnable`` (the default) every feature the host lacks is switched
    off explicitly, so the code can never use an instruction this machine
    does not have (LLVM's CPU model may imply features beyond the table), and
    a target that needs a feature the host lacks raises ``ValueError``.
    Without it, the code is exactly what LLVM emits for that CPU (for
    inspection only: it may not run here).
    """
    if name not in NAMED_TARGETS:
        raise ValueError(f"unknown CPU target {name!r}; expected 'host' or one of {', '.join(NAMED_TARGETS)}")
    wanted = NAMED_TARGETS[name]
    disabled = {}
    if runnable:
        missing = _missing(name)
        if missing:
            raise ValueError(
                f"CPU target {name!r} needs {', '.join(missing)}, which this CPU ({llvm.get_host_cpu_name()}) lacks"
            )
        disabled = {f: False for f, on in _host_features().items() if not on}
    return CPUTarget(name, name, _feature_string(disabled, "avx512f" in wanted), wanted)


def _missing(name: str) -> list[str]:
    host = _host_features()
    return sorted(f for f in NAMED_TARGETS[name] if not host.get(f))


def can_run(name: str) -> bool:
    """Whether the host has every feature the named target implies."""
    return not _missing(name)


def active_target() -> CPUTarget:
    """The target code is generated for now: ``$SYMEXPR_CPU`` if set (re-read on each call), else the host."""
    name = os.environ.get(CPU_ENV, "").strip()
    if not name or name == "host":
        return host_target()
    try:
        return _named_runnable(name)
    except ValueError as exc:
        raise ValueError(f"{CPU_ENV}={name}: {exc}") from None


@functools.lru_cache(maxsize=None)
def _named_runnable(name: str) -> CPUTarget:
    return named_target(name, runnable=True)


def host_cpu() -> tuple[str, str]:
    """``(cpu_name, feature_string)`` of the active target."""
    t = active_target()
    return t.cpu, t.features


def host_has(feature: str) -> bool:
    """Whether the active target has ``feature`` (LLVM's name, e.g. ``"avx512f"``)."""
    return active_target().has(feature)


def create_target_machine(opt: int = 3, cpu_target: CPUTarget | None = None):
    """A fresh target machine for ``cpu_target`` (default: the active target)."""
    _initialised()
    t = cpu_target or active_target()
    machine = llvm.Target.from_triple(llvm.get_process_triple())
    return machine.create_target_machine(cpu=t.cpu, features=t.features, opt=opt, reloc="default", codemodel="jitdefault")


def optimise(module_ref, target_machine, speed: int = 3) -> None:
    """Run LLVM's standard ``-O<speed>`` pipeline, with loop and SLP vectorisation, in place."""
    try:
        pto = llvm.create_pipeline_tuning_options(speed_level=speed, size_level=0)
    except TypeError:  # llvmlite >= 0.48 dropped size_level
        pto = llvm.create_pipeline_tuning_options(speed_level=speed)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pto.loop_unrolling = True
    builder = llvm.create_pass_builder(target_machine, pto)
    builder.getModulePassManager().run(module_ref, builder)


def compile_ir(ir_text: str, cpu_target: CPUTarget | None = None, optimised_ir: bool = False):
    """Parse, verify, optimise and emit ``ir_text``: returns the object code.

    With ``optimised_ir`` it returns ``(object_code, optimised_ir_text)``
    (printing a large module's IR costs a few percent of its compile).
    """
    _initialised()
    module = llvm.parse_assembly(ir_text)
    module.verify()
    machine = create_target_machine(cpu_target=cpu_target)
    optimise(module, machine)
    code = machine.emit_object(module)
    return (code, str(module)) if optimised_ir else code


def assembly_of(ir_text: str, cpu_target: CPUTarget | None = None) -> str:
    """Assembly for optimised ``ir_text`` on ``cpu_target`` (default: the active target)."""
    _initialised()
    module = llvm.parse_assembly(ir_text)
    return create_target_machine(cpu_target=cpu_target).emit_assembly(module)


def fingerprint() -> dict:
    """What compiled code depends on besides the graph: part of every cache key."""
    t = active_target()
    return {
        "target": t.name,
        "cpu": t.cpu,
        "features": t.features,
        "llvm": ".".join(map(str, llvm.llvm_version_info)),
        "llvmlite": llvmlite.__version__,
        "python": f"{sys.implementation.name}-{sys.version_info[0]}.{sys.version_info[1]}",
        "object_layout": list(object_layout()),
    }


@functools.lru_cache(maxsize=None)
def object_layout() -> tuple[int, int]:
    """Byte offsets ``(tuple items, ndarray data)`` in this interpreter.

    Compiled entry points receive a Python tuple of arrays and read each
    array's data pointer straight from the object (a ctypes call with one
    ``py_object`` costs about 0.3 us, against about 3 us for
    ``ndarray.ctypes.data``).  The offsets are checked here against values
    read the slow, documented way, so an interpreter with another layout
    fails loudly instead of reading garbage.
    """
    import numpy as np

    items = tuple.__basicsize__
    data = object.__basicsize__
    probe = np.arange(6, dtype=np.float64).reshape(2, 3)[:, ::2]
    pair = (probe, probe)
    read = ctypes.c_void_p.from_address
    ok = (
        read(id(pair) + items).value == id(probe)
        and read(id(probe) + data).value == probe.ctypes.data
        if ctypes.sizeof(ctypes.c_void_p) == 8
        else False
    )
    if not ok:
        raise RuntimeError(
            "symexpr's llvm backend cannot find the data pointer of a numpy array in this interpreter "
            f"({sys.implementation.name} {sys.version.split()[0]}); use backend='numpy'"
        )
    return items, data
