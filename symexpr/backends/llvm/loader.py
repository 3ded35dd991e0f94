"""Linking compiled object code into the process, after checking every symbol it needs can be bound."""

from __future__ import annotations

import ctypes

import llvmlite.binding as llvm

from symexpr.backends.llvm import target

_ENTRY = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.py_object, ctypes.c_int64, ctypes.c_int64)


class LoadedModule:
    """An object file linked into the process, with its entry points as ctypes functions."""

    def __init__(self, object_code: bytes, n_segments: int):
        target._initialised()
        self._machine = target.create_target_machine()
        self._engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), self._machine)
        self._engine.add_object_file(llvm.ObjectFileRef.from_data(object_code))
        self._engine.finalize_object()
        self.entries = []
        for k in range(n_segments):
            address = self._engine.get_function_address(f"symexpr_seg{k}")
            if not address:
                raise RuntimeError(f"symexpr bug: entry point symexpr_seg{k} missing from the compiled module")
            self.entries.append(_ENTRY(address))
