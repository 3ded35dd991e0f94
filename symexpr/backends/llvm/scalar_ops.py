"""LLVM IR for symexpr's scalar ops, with NumPy's semantics dtype for dtype.

Values live in *register types*: ``i1`` for bool, ``iN`` for integers, ``float``
for float16 and float32, ``double`` for float64.  A float16 value is kept in
a ``float`` already rounded to half precision, which is how NumPy's own
float16 loops compute (in float32, rounding each result).

Every op is emitted as straight-line code (selects, no branches or libm
calls), so LLVM's loop vectoriser can turn a kernel's loop into SIMD code.
Integer division guards the cases that trap in hardware: division by zero
gives 0 and ``MIN // -1`` wraps, as in NumPy.
"""

from __future__ import annotations

import functools

import numpy as np
from llvmlite import ir

from symexpr.backends.llvm import target

I1 = ir.IntType(1)
I8 = ir.IntType(8)
I16 = ir.IntType(16)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
F16 = ir.HalfType()
F32 = ir.FloatType()
F64 = ir.DoubleType()


class UnsupportedScalar(Exception):
    """The LLVM backend has no code for this scalar op with these dtypes."""


def is_float(dtype: str) -> bool:
    return dtype.startswith("float")


def is_signed(dtype: str) -> bool:
    return dtype.startswith("int")


def is_unsigned(dtype: str) -> bool:
    return dtype.startswith("uint")


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


def from_memory(builder, value, dtype):
    if dtype == "bool":
        return builder.icmp_unsigned("!=", value, ir.Constant(I8, 0))
    if dtype == "float16":
        return half_to_float(builder, value)
    return value


def to_memory(builder, value, dtype):
    if dtype == "bool":
        return builder.zext(value, I8)
    if dtype == "float16":
        return float_to_half(builder, value)
    return value


def round_half(builder, value, dtype):
    """Round a float32 register value to float16 precision when ``dtype`` is float16."""
    if dtype == "float16":
        return half_to_float(builder, float_to_half(builder, value))
    return value


# -- float16 conversions ---------------------------------------------------------
# Native only where the target has the instructions (F16C: float <-> half;
# AVX512-FP16: double -> half); otherwise integer code that rounds to nearest
# even exactly once, so no conversion ever becomes a compiler-rt call.
def cpu_target(builder):
    """The :class:`~symexpr.backends.llvm.target.CPUTarget` the module being built is for."""
    found = getattr(builder.module, "cpu_target", None)
    return found if found is not None else target.active_target()


def _bits(builder, value, width):
    return builder.bitcast(value, ir.IntType(width))


def _ult(builder, a, c):
    return builder.icmp_unsigned("<", a, ir.Constant(a.type, c))


def _uge(builder, a, c):
    return builder.icmp_unsigned(">=", a, ir.Constant(a.type, c))


def half_to_float(builder, bits):
    """float32 register value of the float16 whose bits are the i16 ``bits`` (exact)."""
    t = cpu_target(builder)
    if t.has("f16c") or t.has("avx512fp16"):
        return builder.fpext(builder.bitcast(bits, F16), F32)
    c = lambda v: ir.Constant(I32, v)  # noqa: E731
    u = builder.zext(bits, I32)
    sign = builder.shl(builder.and_(u, c(0x8000)), c(16))
    em = builder.and_(u, c(0x7FFF))
    shifted = builder.shl(em, c(13))
    normal = builder.add(shifted, c((127 - 15) << 23))
    nan_quiet = builder.select(builder.icmp_unsigned(">", em, c(0x7C00)), c(0x00400000), c(0))
    special = builder.or_(builder.or_(shifted, c(0x7F800000)), nan_quiet)
    tiny = builder.bitcast(builder.fmul(builder.uitofp(em, F32), ir.Constant(F32, 2.0**-24)), I32)
    mag = builder.select(_ult(builder, em, 0x400), tiny, builder.select(_uge(builder, em, 0x7C00), special, normal))
    return builder.bitcast(builder.or_(mag, sign), F32)


def float_to_half(builder, value):
    """i16 bits of the float16 nearest (ties to even) to the float or double register ``value``."""
    wide = value.type == F64
    t = cpu_target(builder)
    if t.has("avx512fp16") or (not wide and t.has("f16c")):
        return builder.bitcast(builder.fptrunc(value, F16), I16)
    width, mbits, bias = (64, 52, 1023) if wide else (32, 23, 127)
    ity = ir.IntType(width)
    c = lambda v: ir.Constant(ity, v)  # noqa: E731
    shift = mbits - 10
    x = builder.bitcast(value, ity)
    sign = builder.and_(x, c(1 << (width - 1)))
    a = builder.xor(x, sign)
    exp_all = ((1 << (width - 1 - mbits)) - 1) << mbits  # the infinity bit pattern
    nan_bits = builder.or_(c(0x7E00), builder.and_(builder.lshr(a, c(shift)), c(0x3FF)))
    big = builder.select(builder.icmp_unsigned(">", a, c(exp_all)), nan_bits, c(0x7C00))
    # below 2**-14: add 2**(mbits-24), whose last place is float16's smallest subnormal, and read the count
    magic = (bias + mbits - 24) << mbits
    summed = builder.fadd(builder.bitcast(a, value.type), builder.bitcast(c(magic), value.type))
    small = builder.sub(builder.bitcast(summed, ity), c(magic))
    odd = builder.and_(builder.lshr(a, c(shift)), c(1))
    rebiased = builder.add(builder.add(a, c(((15 - bias) << mbits) + (1 << (shift - 1)) - 1)), odd)
    normal = builder.lshr(rebiased, c(shift))
    mag = builder.select(
        _uge(builder, a, (bias + 16) << mbits), big, builder.select(_ult(builder, a, (bias - 14) << mbits), small, normal)
    )
    out = builder.or_(mag, builder.lshr(sign, c(width - 16)))
    return builder.trunc(out, I16)


def constant(value, dtype) -> ir.Constant:
    ty = register_type(dtype)
    if dtype == "bool":
        return ir.Constant(I1, int(bool(value)))
    if is_float(dtype):
        v = float(np.asarray(value, dtype=dtype))
        return ir.Constant(ty, v)
    v = int(value)
    bits = ty.width
    return ir.Constant(ty, v & ((1 << bits) - 1) if v < 0 else v)


def _intrinsic(builder, name, ty, args):
    module = builder.module
    suffix = _suffix(ty)
    full = f"llvm.{name}.{suffix}"
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


# -- casts ---------------------------------------------------------------------
def cast(builder, value, src: str, dst: str):
    """Convert a register value from ``src`` to ``dst`` like ``ndarray.astype`` (unsafe casting)."""
    if src == dst:
        return value
    if dst == "bool":
        if is_float(src):
            return builder.fcmp_unordered("!=", value, ir.Constant(value.type, 0.0))
        return builder.icmp_unsigned("!=", value, ir.Constant(value.type, 0))
    dst_ty = register_type(dst)
    if src == "bool":
        return builder.uitofp(value, dst_ty) if is_float(dst) else builder.zext(value, dst_ty)
    if is_float(src) and is_float(dst):
        src_ty = register_type(src)
        if src_ty == dst_ty:
            return round_half(builder, value, dst)
        if dst == "float16":  # float64 -> float16 rounds once, directly
            return half_to_float(builder, float_to_half(builder, value))
        return builder.fpext(value, dst_ty) if dst_ty == F64 else builder.fptrunc(value, dst_ty)
    if is_float(dst):
        if dst == "float16":
            # integer -> float16 rounds once: through double, which holds every integer below float16's overflow
            wide = builder.sitofp(value, F64) if is_signed(src) else builder.uitofp(value, F64)
            return half_to_float(builder, float_to_half(builder, wide))
        return builder.sitofp(value, dst_ty) if is_signed(src) else builder.uitofp(value, dst_ty)
    if is_float(src):
        return _float_to_int(builder, value, dst)
    src_w, dst_w = value.type.width, dst_ty.width
    if dst_w < src_w:
        return builder.trunc(value, dst_ty)
    if dst_w > src_w:
        return builder.sext(value, dst_ty) if is_signed(src) else builder.zext(value, dst_ty)
    return value


def _float_to_int(builder, value, dst):
    """x86's truncating conversion (out of range or NaN gives the minimum), then wrap to ``dst``.

    NumPy's C casts compile to ``cvttss2si``/``cvttsd2si``: 8-, 16- and 32-bit
    targets convert through int32, 32-bit unsigned and 64-bit through int64.
    """
    dst_ty = register_type(dst)
    width = 32 if dst_ty.width < 32 or dst == "int32" else 64
    wide = ir.IntType(width)
    limit = float(2 ** (width - 1))
    in_range = builder.and_(
        builder.fcmp_ordered(">=", value, ir.Constant(value.type, -limit)),
        builder.fcmp_ordered("<", value, ir.Constant(value.type, limit)),
    )
    safe = builder.select(in_range, value, ir.Constant(value.type, 0.0))
    converted = builder.fptosi(safe, wide)
    result = builder.select(in_range, converted, ir.Constant(wide, 1 << (width - 1)))
    if dst == "uint64":
        # [2**63, 2**64) converts exactly as unsigned.
        high = builder.and_(
            builder.fcmp_ordered(">=", value, ir.Constant(value.type, limit)),
            builder.fcmp_ordered("<", value, ir.Constant(value.type, 2.0 * limit)),
        )
        safe_hi = builder.select(high, value, ir.Constant(value.type, 0.0))
        result = builder.select(high, builder.fptoui(safe_hi, wide), result)
    if dst_ty.width < width:
        return builder.trunc(result, dst_ty)
    return result


# -- loop dtypes ---------------------------------------------------------------
@functools.lru_cache(maxsize=4096)
def ufunc_loop(ufunc, in_dtypes: tuple) -> tuple:
    """NumPy's inner-loop dtypes for ``ufunc`` on these input dtypes: ``(inputs, output)``."""
    resolved = ufunc.resolve_dtypes(tuple(np.dtype(d) for d in in_dtypes) + (None,) * ufunc.nout)
    return tuple(d.name for d in resolved[: ufunc.nin]), resolved[-1].name


# -- the ops ---------------------------------------------------------------------
def supported(op, arg_dtypes) -> bool:
    """Whether :func:`emit_scalar` has code for ``op`` on operands of ``arg_dtypes``."""
    ufunc = getattr(op, "ufunc", None)
    if not isinstance(ufunc, np.ufunc):
        return op.name in _OTHERS
    if op.name not in _UFUNCS:
        return False
    try:
        loop_in, _ = ufunc_loop(ufunc, tuple(arg_dtypes))
    except TypeError:
        return False
    if len(set(loop_in)) != 1:
        return False
    work = loop_in[0]
    if op.name == "pow" or op.name in _FLOAT_ONLY:
        return is_float(work)
    return True


def emit_scalar(builder, op, args, arg_dtypes, out_dtype):
    """IR for ``op(*args)`` (register values of ``arg_dtypes``), returning a value of ``out_dtype``."""
    name = op.name
    ufunc = getattr(op, "ufunc", None)
    if isinstance(ufunc, np.ufunc):
        try:
            loop_in, loop_out = ufunc_loop(ufunc, tuple(arg_dtypes))
        except TypeError as exc:
            raise UnsupportedScalar(f"{name}{tuple(arg_dtypes)}: {exc}") from None
        if len(set(loop_in)) != 1:
            raise UnsupportedScalar(f"{name} with mixed loop dtypes {loop_in}")
        work = loop_in[0]
        vals = [cast(builder, a, d, work) for a, d in zip(args, arg_dtypes)]
        emitter = _UFUNCS.get(name)
        if emitter is None:
            raise UnsupportedScalar(name)
        result = emitter(builder, vals, work)
        result_dtype = loop_out
    else:
        emitter = _OTHERS.get(name)
        if emitter is None:
            raise UnsupportedScalar(name)
        result, result_dtype = emitter(builder, op, args, arg_dtypes, out_dtype)
    if result_dtype == "float16" and out_dtype == "float16":
        return round_half(builder, result, "float16")
    return cast(builder, result, result_dtype, out_dtype)


def emit_program(builder, program, values, ref) -> None:
    """Emit kernel-IR ``program`` (:class:`~symexpr.kernel.ir.Instr` s): ``values[("tmp", j)]`` gets each result.

    ``ref(r)`` gives ``(value, dtype)`` of an operand reference (it may look in ``values``).
    """
    for j, ins in enumerate(program):
        args = [ref(a) for a in ins.args]
        values[("tmp", j)] = (emit_scalar(builder, ins.op, [a for a, _ in args], [d for _, d in args], ins.dtype), ins.dtype)


def emit_math(builder, name, args):
    from symexpr.backends.llvm.mathlib import emit_math as emit

    return emit(builder, name, args)


def _fconst(ty, v):
    return ir.Constant(ty, v)


def _isnan(builder, x):
    return builder.fcmp_unordered("uno", x, x)


def _arith(float_op, int_op, bool_op=None):
    def emit(builder, vals, work):
        a, b = vals
        if work == "bool":
            if bool_op is None:
                raise UnsupportedScalar(f"bool {float_op}")
            return getattr(builder, bool_op)(a, b)
        if is_float(work):
            return getattr(builder, float_op)(a, b)
        return getattr(builder, int_op)(a, b)

    return emit


def _true_div(builder, vals, work):
    return builder.fdiv(*vals)


def _int_div_parts(builder, a, b, signed):
    """Quotient and remainder with NumPy's floor semantics and no trapping divisions."""
    ty = a.type
    zero, one = ir.Constant(ty, 0), ir.Constant(ty, 1)
    b_zero = builder.icmp_unsigned("==", b, zero)
    if not signed:
        safe = builder.select(b_zero, one, b)
        q = builder.select(b_zero, zero, builder.udiv(a, safe))
        r = builder.select(b_zero, zero, builder.urem(a, safe))
        return q, r
    minus_one = builder.icmp_signed("==", b, ir.Constant(ty, -1))
    safe = builder.select(builder.or_(b_zero, minus_one), one, b)
    q = builder.sdiv(a, safe)
    r = builder.srem(a, safe)
    q = builder.select(minus_one, builder.sub(zero, a), q)  # MIN // -1 wraps to MIN
    # floor: when the remainder is non-zero and has the other sign than b, step down.
    adjust = builder.and_(builder.icmp_signed("!=", r, zero), builder.icmp_signed("!=", builder.icmp_signed("<", r, zero), builder.icmp_signed("<", b, zero)))
    q = builder.select(adjust, builder.sub(q, one), q)
    r = builder.select(adjust, builder.add(r, safe), r)
    q = builder.select(b_zero, zero, q)
    r = builder.select(builder.or_(b_zero, minus_one), zero, r)
    return q, r


def _float_divmod(builder, a, b):
    """NumPy's ``npy_divmod`` for floats: returns ``(floordiv, mod)``."""
    ty = a.type
    zero = _fconst(ty, 0.0)
    mod = builder.frem(a, b)
    b_zero = builder.fcmp_ordered("==", b, zero)
    div = builder.fdiv(builder.fsub(a, mod), b)
    nonzero_mod = builder.fcmp_unordered("!=", mod, zero)
    flip = builder.and_(nonzero_mod, builder.xor(builder.fcmp_ordered("<", b, zero), builder.fcmp_ordered("<", mod, zero)))
    mod_adj = builder.select(flip, builder.fadd(mod, b), mod)
    div = builder.select(flip, builder.fsub(div, _fconst(ty, 1.0)), div)
    mod_final = builder.select(nonzero_mod, mod_adj, _intrinsic(builder, "copysign", ty, [zero, b]))
    floordiv = _intrinsic(builder, "floor", ty, [div])
    bump = builder.fcmp_ordered(">", builder.fsub(div, floordiv), _fconst(ty, 0.5))
    floordiv = builder.select(bump, builder.fadd(floordiv, _fconst(ty, 1.0)), floordiv)
    div_nonzero = builder.fcmp_unordered("!=", div, zero)
    floordiv = builder.select(div_nonzero, floordiv, _intrinsic(builder, "copysign", ty, [zero, builder.fdiv(a, b)]))
    floordiv = builder.select(b_zero, builder.fdiv(a, b), floordiv)
    mod_final = builder.select(b_zero, mod, mod_final)
    return floordiv, mod_final


def _floor_div(builder, vals, work):
    a, b = vals
    if is_float(work):
        return _float_divmod(builder, a, b)[0]
    return _int_div_parts(builder, a, b, is_signed(work))[0]


def _mod(builder, vals, work):
    a, b = vals
    if is_float(work):
        return _float_divmod(builder, a, b)[1]
    return _int_div_parts(builder, a, b, is_signed(work))[1]


def _power(builder, vals, work):
    if not is_float(work):
        raise UnsupportedScalar("integer power")  # NumPy raises on negative exponents; the host handles it
    return emit_math(builder, "pow", list(vals))


def _minmax(is_max):
    def emit(builder, vals, work):
        a, b = vals
        if work == "bool":
            return builder.or_(a, b) if is_max else builder.and_(a, b)
        if is_float(work):
            # NumPy breaks ties (+-0) towards the first operand for float16, the second otherwise
            symbol = (">" if is_max else "<") + ("=" if work == "float16" else "")
            better = builder.fcmp_ordered(symbol, a, b)
            return builder.select(builder.or_(better, _isnan(builder, a)), a, b)
        cmp = builder.icmp_signed if is_signed(work) else builder.icmp_unsigned
        return builder.select(cmp(">" if is_max else "<", a, b), a, b)

    return emit


def _compare(symbol):
    def emit(builder, vals, work):
        a, b = vals
        if is_float(work):
            return builder.fcmp_unordered("!=", a, b) if symbol == "!=" else builder.fcmp_ordered(symbol, a, b)
        if is_signed(work):
            return builder.icmp_signed(symbol, a, b)
        return builder.icmp_unsigned(symbol, a, b)

    return emit


def _bitwise(name):
    def emit(builder, vals, work):
        return getattr(builder, name)(*vals)

    return emit


def _neg(builder, vals, work):
    (x,) = vals
    if is_float(work):
        return builder.fneg(x)
    return builder.sub(ir.Constant(x.type, 0), x)


def _invert(builder, vals, work):
    (x,) = vals
    return builder.not_(x)


def _abs(builder, vals, work):
    (x,) = vals
    if work == "bool" or is_unsigned(work):
        return x
    if is_float(work):
        return _intrinsic(builder, "fabs", x.type, [x])
    return builder.select(builder.icmp_signed("<", x, ir.Constant(x.type, 0)), builder.sub(ir.Constant(x.type, 0), x), x)


def _sign(builder, vals, work):
    (x,) = vals
    ty = x.type
    if is_float(work):
        one, zero = _fconst(ty, 1.0), _fconst(ty, 0.0)
        pos = builder.fcmp_ordered(">", x, zero)
        neg = builder.fcmp_ordered("<", x, zero)
        out = builder.select(pos, one, builder.select(neg, _fconst(ty, -1.0), zero))
        return builder.select(_isnan(builder, x), x, out)
    zero = ir.Constant(ty, 0)
    if is_unsigned(work):
        return builder.zext(builder.icmp_unsigned("!=", x, zero), ty)
    pos = builder.zext(builder.icmp_signed(">", x, zero), ty)
    neg = builder.zext(builder.icmp_signed("<", x, zero), ty)
    return builder.sub(pos, neg)


def _float_unary(intrinsic):
    def emit(builder, vals, work):
        (x,) = vals
        if not is_float(work):
            return x  # floor/ceil/round of integers and bools are the identity
        return _intrinsic(builder, intrinsic, x.type, [x])

    return emit


def _math(name):
    def emit(builder, vals, work):
        (x,) = vals
        if not is_float(work):
            raise UnsupportedScalar(f"{name} on {work}")
        if name == "sqrt":
            return _intrinsic(builder, "sqrt", x.type, [x])
        return emit_math(builder, name, [x])

    return emit


def _classify(kind):
    def emit(builder, vals, work):
        (x,) = vals
        if not is_float(work):
            return ir.Constant(I1, 1 if kind == "isfinite" else 0)
        if kind == "isnan":
            return _isnan(builder, x)
        inf = _fconst(x.type, float("inf"))
        absx = _intrinsic(builder, "fabs", x.type, [x])
        if kind == "isinf":
            return builder.fcmp_ordered("==", absx, inf)
        return builder.fcmp_ordered("<", absx, inf)

    return emit


_UFUNCS = {
    "add": _arith("fadd", "add", "or_"),
    "sub": _arith("fsub", "sub"),
    "mul": _arith("fmul", "mul", "and_"),
    "true_div": _true_div,
    "floor_div": _floor_div,
    "mod": _mod,
    "pow": _power,
    "maximum": _minmax(True),
    "minimum": _minmax(False),
    "lt": _compare("<"),
    "le": _compare("<="),
    "gt": _compare(">"),
    "ge": _compare(">="),
    "eq": _compare("=="),
    "neq": _compare("!="),
    "and": _bitwise("and_"),
    "or": _bitwise("or_"),
    "xor": _bitwise("xor"),
    "neg": _neg,
    "invert": _invert,
    "abs": _abs,
    "sign": _sign,
    "floor": _float_unary("floor"),
    "ceil": _float_unary("ceil"),
    "sqrt": _math("sqrt"),
    "isnan": _classify("isnan"),
    "isinf": _classify("isinf"),
    "isfinite": _classify("isfinite"),
}
_FLOAT_ONLY = ("exp", "log", "log1p", "expm1", "sin", "cos", "tanh", "sqrt")
for _name in _FLOAT_ONLY[:-1]:
    _UFUNCS[_name] = _math(_name)


# -- non-ufunc scalar ops ----------------------------------------------------------
def _float_function(builder, op, args, arg_dtypes, out_dtype):
    (x,) = args
    work = out_dtype
    x = cast(builder, x, arg_dtypes[0], work)
    ty = x.type
    params = dict(op.params)
    if op.name == "sigmoid":
        return emit_math(builder, "sigmoid", [x]), work
    if op.name == "erf":
        return emit_math(builder, "erf", [x]), work
    if op.name == "rsqrt":
        return builder.fdiv(_fconst(ty, 1.0), _intrinsic(builder, "sqrt", ty, [x])), work
    if op.name == "silu":
        return builder.fmul(x, emit_math(builder, "sigmoid", [x])), work
    if op.name == "gelu":
        half = _fconst(ty, 0.5)
        if params.get("approximate") == "tanh":
            inner = builder.fmul(_fconst(ty, 0.7978845608028654), builder.fadd(x, builder.fmul(_fconst(ty, 0.044715), builder.fmul(builder.fmul(x, x), x))))
            t = emit_math(builder, "tanh", [inner])
        else:
            t = emit_math(builder, "erf", [builder.fmul(x, _fconst(ty, 0.7071067811865476))])
        return builder.fmul(builder.fmul(half, x), builder.fadd(_fconst(ty, 1.0), t)), work
    raise UnsupportedScalar(op.name)


def _cast_op(builder, op, args, arg_dtypes, out_dtype):
    return cast(builder, args[0], arg_dtypes[0], out_dtype), out_dtype


def _identity(builder, op, args, arg_dtypes, out_dtype):
    return args[0], arg_dtypes[0]


def _relu(builder, op, args, arg_dtypes, out_dtype):
    (x,) = args
    dtype = arg_dtypes[0]
    zero = constant(0, dtype)
    return _minmax(True)(builder, [x, zero], dtype), dtype


def _clip(builder, op, args, arg_dtypes, out_dtype):
    vals = [cast(builder, a, d, out_dtype) for a, d in zip(args, arg_dtypes)]
    x, lo, hi = vals
    lower = _minmax(True)(builder, [x, lo], out_dtype)
    return _minmax(False)(builder, [lower, hi], out_dtype), out_dtype


def _where(builder, op, args, arg_dtypes, out_dtype):
    cond, a, b = args
    cond = cast(builder, cond, arg_dtypes[0], "bool")
    a = cast(builder, a, arg_dtypes[1], out_dtype)
    b = cast(builder, b, arg_dtypes[2], out_dtype)
    return builder.select(cond, a, b), out_dtype


def _round(builder, op, args, arg_dtypes, out_dtype):
    # np.round (not a ufunc): half to even for floats, the value itself for integers.
    x = cast(builder, args[0], arg_dtypes[0], out_dtype)
    if not is_float(out_dtype) or cpu_target(builder).has("sse4.1"):
        return _float_unary("roundeven")(builder, [x], out_dtype), out_dtype
    return _roundeven_by_addition(builder, x), out_dtype


def _roundeven_by_addition(builder, x):
    """Round half to even without SSE4.1's ``roundps`` (LLVM would call libm's ``roundevenf``).

    Below 2**p (p = mantissa bits), adding and subtracting 2**p rounds to an
    integer in the default rounding mode, which is to nearest even; larger
    magnitudes (and NaN, inf) are integers already.
    """
    ty = x.type
    big = _fconst(ty, 2.0**52 if ty == F64 else 2.0**23)
    ax = _intrinsic(builder, "fabs", ty, [x])
    rounded = builder.fsub(builder.fadd(ax, big), big)
    signed = _intrinsic(builder, "copysign", ty, [rounded, x])
    return builder.select(builder.fcmp_ordered("<", ax, big), signed, x)


_OTHERS = {
    "round": _round,
    "sigmoid": _float_function,
    "erf": _float_function,
    "rsqrt": _float_function,
    "silu": _float_function,
    "gelu": _float_function,
    "cast": _cast_op,
    "identity": _identity,
    "relu": _relu,
    "clip": _clip,
    "where": _where,
}

__all__ = ["emit_scalar", "cast", "register_type", "memory_type", "from_memory", "to_memory", "constant"]
