"""The host target: LLVM initialisation, CPU name and features, optimisation and code emission.

llvmlite may report a CPU it does not know as ``generic``, and a target machine
made from the name alone then emits no AVX-512; the host feature string is
therefore always passed explicitly.
"""

from __future__ import annotations

import ctypes
import functools
import sys

import llvmlite
import llvmlite.binding as llvm


@functools.lru_cache(maxsize=None)
def _initialised() -> bool:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    return True


@functools.lru_cache(maxsize=None)
def host_cpu() -> tuple[str, str]:
    """``(cpu_name, feature_string)`` of the machine we run on."""
    _initialised()
    features = llvm.get_host_cpu_features().flatten()
    if "+avx512f" in features.split(","):
        # LLVM tunes many AVX-512 CPUs to 256-bit vectors; our loops are long and want 512.
        features += ",-prefer-256-bit"
    return llvm.get_host_cpu_name(), features


def host_has(feature: str) -> bool:
    """Whether the host CPU has ``feature`` (LLVM's name, e.g. ``"avx512f"``)."""
    return f"+{feature}" in host_cpu()[1].split(",")


def create_target_machine(opt: int = 3):
    """A fresh target machine for the host (an MCJIT engine takes ownership of one)."""
    _initialised()
    cpu, features = host_cpu()
    target = llvm.Target.from_triple(llvm.get_process_triple())
    return target.create_target_machine(cpu=cpu, features=features, opt=opt, reloc="default", codemodel="jitdefault")


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


def compile_ir(ir_text: str) -> tuple[bytes, str]:
    """Parse, verify, optimise and emit ``ir_text``: returns ``(object_code, optimised_ir)``."""
    _initialised()
    module = llvm.parse_assembly(ir_text)
    module.verify()
    machine = create_target_machine()
    optimise(module, machine)
    return machine.emit_object(module), str(module)


def assembly_of(ir_text: str) -> str:
    """Host assembly for optimised ``ir_text``."""
    _initialised()
    module = llvm.parse_assembly(ir_text)
    return create_target_machine().emit_assembly(module)


def fingerprint() -> dict:
    """What compiled code depends on besides the graph: part of every cache key."""
    cpu, features = host_cpu()
    return {
        "cpu": cpu,
        "features": features,
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
