"""Linking compiled object code into the process, after checking every symbol it needs can be bound.

LLVM lowers some operations to calls of runtime functions (``fmod`` for
``frem``, ``memcpy`` for a copy loop, ``floorf`` on CPUs without SSE4.1, and
compiler-rt helpers such as ``__truncdfhf2`` that nothing in a Python process
defines).  MCJIT resolves a symbol it cannot find to address 0, so a call to
it jumps to 0 and kills the process.  Every object file is therefore read
before it is linked: each undefined symbol must be one the loader binds
(:data:`BOUND_SYMBOLS`) and must resolve, or loading raises
:class:`UnboundSymbolError` naming it.
"""

from __future__ import annotations

import ctypes
import struct

import llvmlite.binding as llvm

from symexpr.backends.llvm import target
from symexpr.backends.llvm.codegen import GEMM_SYMBOLS

_ENTRY = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.py_object, ctypes.c_int64, ctypes.c_int64)

#: The C library functions compiled code may call (each resolved in this process at load time).
LIBC_SYMBOLS = frozenset(
    {
        "memcpy", "memmove", "memset",
        "fmod", "fmodf", "fma", "fmaf",
        "floor", "floorf", "ceil", "ceilf", "trunc", "truncf",
        "sched_yield",
    }
)

#: Every undefined symbol a compiled object may have: the C library set and symexpr's BLAS entry points.
BOUND_SYMBOLS = LIBC_SYMBOLS | frozenset(GEMM_SYMBOLS.values())


class UnboundSymbolError(RuntimeError):
    """Compiled code calls a function the loader does not bind (a symexpr bug, caught before anything runs)."""


def undefined_symbols(object_code: bytes) -> set[str]:
    """Names of the undefined symbols of a 64-bit little-endian ELF object file.

    Returns ``None`` for any other object format (the caller cannot check it).
    """
    if object_code[:4] != b"\x7fELF" or object_code[4] != 2 or object_code[5] != 1:
        return None
    (shoff,) = struct.unpack_from("<Q", object_code, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", object_code, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", object_code, shoff + i * shentsize) for i in range(shnum)]
    names = set()
    for _name, kind, _flags, _addr, offset, size, link, _info, _align, entsize in sections:
        if kind != 2:  # SHT_SYMTAB
            continue
        strtab_offset = sections[link][4]
        for pos in range(offset + entsize, offset + size, entsize):  # entry 0 is the null symbol
            st_name, st_info, _other, st_shndx = struct.unpack_from("<IBBH", object_code, pos)
            if st_shndx == 0 and st_name and (st_info & 0xF) != 4:  # SHN_UNDEF, not STT_FILE
                end = object_code.index(b"\0", strtab_offset + st_name)
                names.add(object_code[strtab_offset + st_name : end].decode())
    return names


def check_symbols(object_code: bytes) -> None:
    """Raise :class:`UnboundSymbolError` if the object needs a symbol that is not bound in this process."""
    needed = undefined_symbols(object_code)
    if needed is None:
        return
    unknown = sorted(needed - BOUND_SYMBOLS)
    if unknown:
        raise UnboundSymbolError(
            f"symexpr bug: compiled code calls {', '.join(unknown)}, which the loader does not bind "
            f"(target {target.active_target().name}); please report it with the graph"
        )
    missing = sorted(name for name in needed if not llvm.address_of_symbol(name))
    if missing:
        raise UnboundSymbolError(
            f"compiled code calls {', '.join(missing)}, which this process does not define "
            "(the C library's math functions, or NumPy's bundled OpenBLAS for matmul)"
        )


class LoadedModule:
    """An object file linked into the process, with its entry points as ctypes functions."""

    def __init__(self, object_code: bytes, n_segments: int):
        target._initialised()
        self._machine = target.create_target_machine()
        # Creating an engine makes the process's own symbols searchable, which check_symbols relies on.
        self._engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), self._machine)
        check_symbols(object_code)
        self._engine.add_object_file(llvm.ObjectFileRef.from_data(object_code))
        self._engine.finalize_object()
        self.entries = []
        for k in range(n_segments):
            address = self._engine.get_function_address(f"symexpr_seg{k}")
            if not address:
                raise RuntimeError(f"symexpr bug: entry point symexpr_seg{k} missing from the compiled module")
            self.entries.append(_ENTRY(address))
