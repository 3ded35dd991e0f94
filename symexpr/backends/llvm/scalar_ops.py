"""The LLVM renderer of scalar code: register types, constants and the primitives.

NumPy's semantics and the math functions are lowered once, for every
backend, into primitives (:mod:`symexpr.kernel.semantics`,
:mod:`symexpr.kernel.mathfns`); this module maps each primitive onto LLVM IR
(:func:`render`) and says which optional primitives the target CPU has
natively (:func:`capabilities`: F16C / AVX512-FP16 conversions, SSE4.1's
rounding), so that nothing becomes a compiler-rt or libm call the loader
cannot bind.

Values live in *register types*: ``i1`` for bool, ``iN`` for integers, ``float``
for float16 and float32, ``double`` for float64.  A float16 value is kept in
a ``float`` already rounded to half precision; in memory it is its 16 bits.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir

from symexpr.backends.llvm import target
from symexpr.kernel import mathfns, semantics
from symexpr.kernel.prims import COMPARISONS, PrimBuilder, is_float, is_signed, register_dtype, resolve
from symexpr.kernel.semantics import UnsupportedScalar, lower_program

__all__ = [
    "UnsupportedScalar", "capabilities", "cast", "constant", "emit_exp_nonpositive", "emit_math", "emit_program",
    "from_memory", "memory_type", "register_type", "render", "supported", "to_memory",
]

I1 = ir.IntType(1)
I8 = ir.IntType(8)
I16 = ir.IntType(16)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
F16 = ir.HalfType()
F32 = ir.FloatType()
F64 = ir.DoubleType()

#: Whether the LLVM backend lowers a scalar op on these operand dtypes.
supported = semantics.supported


def register_type(dtype: str) -> ir.Type:
    """The IR type a value of ``dtype`` is computed in."""
    if dtype == "bool":
        return I1
    if dtype in ("float16", "float32"):
        return F32
    if dtype == "float64":
        return F64
    return ir.IntType(np.dtype(dtype).itemsize * 8)


def memory_type(dtype: str) -> ir.Type:
    """The IR type a value of ``dtype`` is stored as (float16 as its 16 bits)."""
    if dtype == "bool":
        return I8
    if dtype == "float16":
        return I16
    return register_type(dtype)


def constant(value, dtype) -> ir.Constant:
    ty = register_type(dtype)
    if dtype == "bool":
        return ir.Constant(I1, int(bool(value)))
    if is_float(dtype):
        return ir.Constant(ty, float(np.asarray(value, dtype=dtype)))
    v = int(value)
    return ir.Constant(ty, v & ((1 << ty.width) - 1) if v < 0 else v)


def cpu_target(builder):
    """The :class:`~symexpr.backends.llvm.target.CPUTarget` the module being built is for."""
    found = getattr(builder.module, "cpu_target", None)
    return found if found is not None else target.active_target()


def capabilities(cpu) -> frozenset:
    """The optional primitives (:data:`symexpr.kernel.prims.OPTIONAL`) ``cpu`` runs natively."""
    caps = set()
    if cpu.has("f16c") or cpu.has("avx512fp16"):
        caps |= {"f16_from_f32", "f16_to_f32"}
    if cpu.has("avx512fp16"):
        caps.add("f16_from_f64")
    if cpu.has("sse4.1"):
        caps.add("rint")  # roundss; without it LLVM would call libm's roundevenf
    return frozenset(caps)


def _intrinsic(builder, name, ty, args):
    module = builder.module
    full = f"llvm.{name}.{_suffix(ty)}"
    fn = module.globals.get(full)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(ty, [a.type for a in args]), full)
    return builder.call(fn, args)


def _suffix(ty) -> str:
    if ty == F32:
        return "f32"
    if ty == F64:
        return "f64"
    if ty == F16:
        return "f16"
    return f"i{ty.width}"


# -- primitives -----------------------------------------------------------------------
_FLOAT_CMP = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "one": "!="}
_INT_CMP = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}
_INTRINSICS = {"fabs": "fabs", "sqrt": "sqrt", "floor": "floor", "ceil": "ceil", "rint": "roundeven",
               "copysign": "copysign", "fma": "fma"}


def _render_one(b, p, a):
    op, dt = p.op, p.dtype
    if op in ("add", "sub", "mul"):
        return getattr(b, ("f" if is_float(dt) else "") + op)(*a)
    if op == "fdiv":
        return b.fdiv(*a)
    if op == "frem":
        return b.frem(*a)
    if op == "idiv":
        return (b.sdiv if is_signed(dt) else b.udiv)(*a)
    if op == "irem":
        return (b.srem if is_signed(dt) else b.urem)(*a)
    if op in ("and", "or"):
        return getattr(b, op + "_")(*a)
    if op in ("xor", "shl", "lshr", "ashr"):
        return getattr(b, op)(*a)
    if op == "not":
        return b.not_(a[0])
    if op == "fneg":
        return b.fneg(a[0])
    if op in _INTRINSICS:
        return _intrinsic(b, _INTRINSICS[op], a[0].type, list(a))
    if op in COMPARISONS:
        if is_float(p.src):
            if op == "ne":
                return b.fcmp_unordered("!=", *a)
            if op == "uno":
                return b.fcmp_unordered("uno", *a)
            return b.fcmp_ordered(_FLOAT_CMP[op], *a)
        return (b.icmp_signed if is_signed(p.src) else b.icmp_unsigned)(_INT_CMP[op], *a)
    if op == "select":
        return b.select(*a)
    if op == "convert":
        return _convert(b, a[0], p.src, dt)
    if op == "bitcast":
        return b.bitcast(a[0], register_type(dt))
    if op == "f16_bits":
        return b.bitcast(b.fptrunc(a[0], F16), I16)
    if op == "f16_value":
        return b.fpext(b.bitcast(a[0], F16), F32)
    raise ValueError(f"the LLVM renderer has no primitive {op!r}")


def _convert(b, x, src, dst):
    ty = register_type(dst)
    if src == "bool":
        return b.uitofp(x, ty) if is_float(dst) else b.zext(x, ty)
    if is_float(src) and is_float(dst):
        return b.fpext(x, ty) if ty == F64 else b.fptrunc(x, ty)
    if is_float(dst):
        return (b.sitofp if is_signed(src) else b.uitofp)(x, ty)
    if is_float(src):
        return (b.fptosi if is_signed(dst) else b.fptoui)(x, ty)
    if ty.width < x.type.width:
        return b.trunc(x, ty)
    if ty.width > x.type.width:
        return (b.sext if is_signed(src) else b.zext)(x, ty)
    return x


def render(builder, prims, external) -> list:
    """Emit ``prims`` at ``builder``; ``external(ref)`` gives the IR value of a non-local reference.

    Returns the IR value of each primitive.
    """
    out: list = []
    for p in prims:
        out.append(_render_one(builder, p, [resolve(r, out, constant, external) for r in p.args]))
    return out


def emit_program(builder, program, values, ref) -> None:
    """Emit kernel-IR ``program`` (:class:`~symexpr.kernel.ir.Instr` s): ``values[("tmp", j)]`` gets each result.

    ``ref(r)`` gives ``(value, dtype)`` of an operand reference that is not a
    ``tmp`` or a literal (a load, an accumulator, a size).
    """
    seen: dict = {}

    def dtype_of(r):
        seen[r] = ref(r)
        return seen[r][1]

    lowered = lower_program(program, dtype_of, capabilities(cpu_target(builder)))
    external = lambda r: seen[r][0]  # noqa: E731
    out = render(builder, lowered.prims, external)
    for j, (ins, result) in enumerate(zip(program, lowered.results)):
        values[("tmp", j)] = (resolve(result, out, constant, external), ins.dtype)


def _dtype_of_value(value) -> str:
    ty = value.type
    if ty == F32:
        return "float32"
    if ty == F64:
        return "float64"
    return "bool" if ty.width == 1 else f"int{ty.width}"


def _snippet(builder, build, args, dtypes):
    """Emit the primitives ``build(prim_builder, refs)`` makes from IR values ``args`` of register ``dtypes``."""
    refs = [("arg", i) for i in range(len(args))]
    pb = PrimBuilder(lambda r: dtypes[r[1]], capabilities(cpu_target(builder)))
    result = build(pb, refs)
    external = lambda r: args[r[1]]  # noqa: E731
    return resolve(result, render(builder, pb.prims, external), constant, external)


def cast(builder, value, src: str, dst: str):
    """Convert a register value from ``src`` to ``dst`` like ``ndarray.astype`` (unsafe casting)."""
    if src == dst:
        return value
    return _snippet(builder, lambda pb, r: semantics.cast(pb, r[0], src, dst), [value], [register_dtype(src)])


def from_memory(builder, value, dtype):
    """The register value of ``dtype`` loaded as ``value`` (its memory type)."""
    if dtype == "bool":
        return builder.icmp_unsigned("!=", value, ir.Constant(I8, 0))
    if dtype == "float16":
        return _snippet(builder, lambda pb, r: pb.f16_value(r[0]), [value], ["uint16"])
    return value


def to_memory(builder, value, dtype):
    """The memory representation of register value ``value`` of ``dtype``."""
    if dtype == "bool":
        return builder.zext(value, I8)
    if dtype == "float16":
        return _snippet(builder, lambda pb, r: pb.f16_bits(r[0]), [value], [_dtype_of_value(value)])
    return value


def emit_math(builder, name, args):
    """Inline ``name(*args)`` (:data:`symexpr.kernel.mathfns.MATH_FUNCTIONS`) on float or double IR values."""
    for a in args:
        if a.type not in (F32, F64):
            raise ValueError(f"{name}: arguments must all be float or all double, got {[str(v.type) for v in args]}")
    return _snippet(builder, lambda pb, r: mathfns.emit_math(pb, name, r), list(args), [_dtype_of_value(a) for a in args])


def emit_exp_nonpositive(builder, x):
    """``exp(x)`` for ``x <= 0`` (see :func:`symexpr.kernel.mathfns.exp_nonpositive`)."""
    return _snippet(builder, lambda pb, r: mathfns.exp_nonpositive(pb, r[0]), [x], [_dtype_of_value(x)])
