"""The CUDA C renderer of scalar code: C types, literals and the primitives.

NumPy's semantics and the math functions are lowered once, for every
backend, into primitives (:mod:`symexpr.kernel.semantics`); this module
writes each primitive as one CUDA C statement.  The code needs no CUDA
headers: math through NVRTC's built-in device functions (``fmaf``,
``sqrtf``, ...), float16 conversions in integer code (PTX's ``cvt.rn.f16.f32``
would lose a NaN's sign and payload), bit casts through ``__float_as_int`` and
friends.  Kernels are compiled with
``--fmad=false`` so that no multiply and add are contracted behind the
lowering's back (the math library's error-free transformations rely on
each rounding), and integer arithmetic is done in unsigned types, where C
defines wrap-around.
"""

from __future__ import annotations

import math

import numpy as np

from symexpr.kernel.prims import COMPARISONS, PrimBuilder, is_float, resolve

#: Optional primitives (:data:`symexpr.kernel.prims.OPTIONAL`) the CUDA renderer has as one call:
#: ``rintf``, and float32 <-> float16 through the device helpers of :data:`PRELUDE` (the shared
#: integer expansions, which keep NumPy's NaNs).  float64 -> float16 is expanded inline (it rounds once).
CAPABILITIES = frozenset(("f16_from_f32", "f16_to_f32", "rint"))

C_TYPES = {
    "bool": "bool",
    "int8": "signed char",
    "uint8": "unsigned char",
    "int16": "short",
    "uint16": "unsigned short",
    "int32": "int",
    "uint32": "unsigned int",
    "int64": "long long",
    "uint64": "unsigned long long",
    "float32": "float",
    "float64": "double",
}
#: How each dtype is stored in memory (float16 as its bits, bool as a byte).
MEMORY_TYPES = {**C_TYPES, "float16": "unsigned short", "bool": "unsigned char"}


def c_type(dtype: str) -> str:
    """The C type a register value of ``dtype`` has (float16 computes in float)."""
    return "float" if dtype == "float16" else C_TYPES[dtype]


def _wrap_type(dtype: str) -> str:
    """The unsigned type integer arithmetic of ``dtype`` is done in (C defines its overflow)."""
    return "unsigned long long" if np.dtype(dtype).itemsize == 8 else "unsigned int"


def literal(value, dtype: str) -> str:
    """A C expression of exactly ``value`` as register dtype ``dtype``."""
    if dtype == "bool":
        return "true" if value else "false"
    if dtype == "float32":
        v = np.float32(value)
        if not np.isfinite(v):
            return f"__int_as_float({int(v.view(np.int32))})"
        return f"{float(v)!r}f" if v != 0 or not math.copysign(1, v) < 0 else "-0.0f"
    if dtype == "float64":
        v = float(value)
        if not math.isfinite(v):
            return f"__longlong_as_double({int(np.float64(v).view(np.int64))}LL)"
        return repr(v)
    v = int(np.asarray(value).astype(dtype))
    if dtype in ("int64", "uint64"):
        return f"(({C_TYPES[dtype]}){v & 0xFFFFFFFFFFFFFFFF:#x}ULL)"
    return f"(({C_TYPES[dtype]}){v})" if v >= 0 else f"(({C_TYPES[dtype]})({v}))"


_ARITH = {"add": "+", "sub": "-", "mul": "*"}
_BITWISE = {"and": "&", "or": "|", "xor": "^"}
_CMP = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}
_FLOAT_FUNCTIONS = {"fabs": "fabs", "sqrt": "sqrt", "floor": "floor", "ceil": "ceil", "rint": "rint",
                    "copysign": "copysign", "fma": "fma", "frem": "fmod"}
_BITCASTS = {
    ("float32", "int32"): "__float_as_int", ("float32", "uint32"): "__float_as_uint",
    ("int32", "float32"): "__int_as_float", ("uint32", "float32"): "__uint_as_float",
    ("float64", "int64"): "__double_as_longlong", ("int64", "float64"): "__longlong_as_double",
}


def expression(p, a: list) -> str:
    """The C expression of primitive ``p`` on operand expressions ``a``."""
    op, dt, src = p.op, p.dtype, p.src
    t = c_type(dt)
    if op in _ARITH:
        if is_float(dt):
            return f"{a[0]} {_ARITH[op]} {a[1]}"
        w = _wrap_type(dt)
        return f"({t})(({w}){a[0]} {_ARITH[op]} ({w}){a[1]})"
    if op == "fdiv":
        return f"{a[0]} / {a[1]}"
    if op in ("idiv", "irem"):
        return f"({t})({a[0]} {'/' if op == 'idiv' else '%'} {a[1]})"
    if op in _BITWISE:
        return f"({t})({a[0]} {_BITWISE[op]} {a[1]})"
    if op == "not":
        return f"!{a[0]}" if dt == "bool" else f"({t})(~{a[0]})"
    if op in ("shl", "lshr"):
        w = _wrap_type(dt)
        mask = "" if np.dtype(dt).itemsize >= 4 else f" & {(1 << np.dtype(dt).itemsize * 8) - 1:#x}u"
        if op == "shl":
            return f"({t})(({w}){a[0]} << {a[1]})"
        return f"({t})((({w}){a[0]}{mask}) >> {a[1]})"
    if op == "ashr":  # arithmetic whatever the dtype's signedness: shift the signed type of its width
        signed = c_type(dt.replace("uint", "int"))
        return f"({t})(({signed}){a[0]} >> {a[1]})"
    if op == "fneg":
        return f"-({a[0]})"
    if op in _FLOAT_FUNCTIONS:
        name = _FLOAT_FUNCTIONS[op] + ("f" if dt == "float32" else "")
        return f"{name}({', '.join(a)})"
    if op in COMPARISONS:
        if op == "one":
            return f"({a[0]} < {a[1]} || {a[0]} > {a[1]})"
        if op == "uno":
            return f"({a[0]} != {a[0]} || {a[1]} != {a[1]})"
        return f"{a[0]} {_CMP[op]} {a[1]}"
    if op == "select":
        return f"{a[0]} ? {a[1]} : {a[2]}"
    if op == "convert":
        return f"({t}){a[0]}"
    if op == "bitcast":
        return _bitcast(a[0], src, dt)
    if op == "f16_bits":
        return f"se_f16_bits({a[0]})"
    if op == "f16_value":
        return f"se_f16_value({a[0]})"
    raise ValueError(f"the CUDA renderer has no primitive {op!r}")


def _bitcast(x: str, src: str, dst: str) -> str:
    direct = _BITCASTS.get((src, dst))
    if direct is not None:
        return f"{direct}({x})"
    if is_float(src):  # float -> other-signed int of its width
        signed = "int32" if src == "float32" else "int64"
        return f"({C_TYPES[dst]}){_BITCASTS[(src, signed)]}({x})"
    if is_float(dst):
        signed = "int32" if dst == "float32" else "int64"
        return f"{_BITCASTS[(signed, dst)]}(({C_TYPES[signed]}){x})"
    return f"({C_TYPES[dst]}){x}"  # integers of one width: the same bits




def render_prims(prims, names: list, operand) -> list[str]:
    """C statements for ``prims``: primitive ``j`` defines ``names[j]``; ``operand(ref)`` names other references."""
    return [
        f"const {c_type(p.dtype)} {names[j]} = {expression(p, [resolve(r, names, literal, operand) for r in p.args])};"
        for j, p in enumerate(prims)
    ]


def _f16_helpers() -> str:
    """``se_f16_bits`` / ``se_f16_value``: the shared integer expansions as device functions.

    PTX's ``cvt.rn.f16.f32`` gives a canonical NaN, where NumPy (and x86's
    F16C) keep a NaN's sign and payload; the expansions round exactly as NumPy
    does, NaNs included, at the cost of a dozen integer instructions.
    """
    out = []
    for name, ret, arg, build in (
        ("se_f16_bits", "unsigned short", "float", lambda b: b.f16_bits(("arg", 0))),
        ("se_f16_value", "float", "unsigned short", lambda b: b.f16_value(("arg", 0))),
    ):
        b = PrimBuilder(lambda r, a=arg: "float32" if a == "float" else "uint16")
        result = build(b)
        names = [f"t{j}" for j in range(len(b.prims))]
        body = render_prims(b.prims, names, lambda r: "x")
        out.append(f"__device__ __forceinline__ {ret} {name}({arg} x) {{\n    " + "\n    ".join(body)
                   + f"\n    return {names[result[1]]};\n}}")
    return "\n".join(out)


#: Device helpers every module starts with: float16 conversions and NumPy-like max/min for reductions.
PRELUDE = _f16_helpers() + r"""
template <typename T> __device__ __forceinline__ T se_fmax(T a, T b) {
    if (a != a || b != b) return a + b;
    if (a == b) return signbit(a) ? b : a;
    return a > b ? a : b;
}
template <typename T> __device__ __forceinline__ T se_fmin(T a, T b) {
    if (a != a || b != b) return a + b;
    if (a == b) return signbit(a) ? a : b;
    return a < b ? a : b;
}
"""
