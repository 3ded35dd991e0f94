"""NumPy's scalar semantics, lowered once for every renderer into primitives.

:func:`lower_program` turns a kernel program of symexpr scalar ops
(:class:`~symexpr.kernel.ir.Instr` s) into :class:`~symexpr.kernel.prims.Prim` s
with NumPy's rules dtype for dtype: each ufunc computes in NumPy's loop dtype
(``np.add`` of int8 and float32 in float32), float -> integer casts behave
like x86's truncating conversions (a value out of range, or NaN, gives the
conversion's "integer indefinite", the minimum of int32 or int64, then wraps
to the target: what NumPy's C casts give on x86 for signed targets; for
unsigned ones C leaves it undefined and NumPy's results vary), integer division by zero gives 0 and
``MIN // -1`` wraps, ``maximum``/``minimum`` propagate NaN and break ties as
NumPy does, float16 results are rounded once per op, and the math functions
come from :mod:`symexpr.kernel.mathfns`.  Code generators render the result
(LLVM IR, CUDA C) one primitive at a time.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from symexpr.kernel import mathfns
from symexpr.kernel.prims import PrimBuilder, const, is_float, is_signed, is_unsigned, prune, register_dtype

__all__ = ["Lowered", "UnsupportedScalar", "cast", "lower_program", "supported", "ufunc_loop"]


class UnsupportedScalar(Exception):
    """There is no lowering of this scalar op for these dtypes (the op runs on the host)."""


@dataclass(frozen=True)
class Lowered:
    """A lowered program: ``prims``, and per instruction of the source program the reference of its result."""

    prims: tuple
    results: tuple


def lower_program(program, dtype_of, caps=frozenset()) -> Lowered:
    """Lower kernel-IR ``program`` into primitives.

    Parameters
    ----------
    program : sequence of Instr
        Scalar instructions; ``("tmp", j)`` refers to instruction ``j``.
    dtype_of : callable
        The dtype of an operand reference that is neither a literal nor a
        ``tmp`` (loads, accumulators, sizes), as the kernel IR gives it
        (float16 allowed).
    caps : frozenset of str
        The renderer's native optional primitives (:data:`symexpr.kernel.prims.OPTIONAL`).

    Returns
    -------
    Lowered
        Its primitives refer to the program's external references as given;
        ``results[j]`` is the reference of instruction ``j``'s value (a
        primitive's ``("tmp", i)``, a literal or an external reference).

    Raises
    ------
    UnsupportedScalar
        If an instruction has no lowering for its dtypes.
    """
    externals: dict = {}
    normal = []
    for ins in program:
        args = []
        for ref in ins.args:
            if ref[0] not in ("tmp", "const"):
                ref = externals.setdefault(ref, ("ext", len(externals)))
            args.append(ref)
        normal.append((ins.op, tuple(args), ins.dtype))
    ext_dtypes = tuple(dtype_of(ref) for ref in externals)
    # literals by their repr too: -0.0 == 0.0 (and hashes alike), but they lower differently
    literals = tuple(repr(ref[1]) for ins in program for ref in ins.args if ref[0] == "const")
    lowered = _lower_normalised(tuple(normal), ext_dtypes, frozenset(caps), literals)
    if not externals:
        return lowered
    back = {v: k for k, v in externals.items()}
    swap = lambda r: back.get(r, r) if r[0] == "ext" else r  # noqa: E731
    prims = tuple(p.__class__(p.op, tuple(swap(a) for a in p.args), p.dtype, p.src) for p in lowered.prims)
    return Lowered(prims, tuple(swap(r) for r in lowered.results))


@functools.lru_cache(maxsize=8192)
def _lower_normalised(normal: tuple, ext_dtypes: tuple, caps: frozenset, literals: tuple) -> Lowered:
    b = PrimBuilder(lambda ref: register_dtype(ext_dtypes[ref[1]]), caps)
    results: list = []
    sems: list = []

    def resolve(ref):
        """(primitive reference, semantic dtype) of a source operand."""
        if ref[0] == "tmp":
            return results[ref[1]], sems[ref[1]]
        if ref[0] == "const":
            value, dtype = ref[1], ref[2]
            if dtype == "float16":
                return const(float(np.float16(value)), "float32"), dtype
            return const(value, dtype), dtype
        return ref, ext_dtypes[ref[1]]

    for op, args, dtype in normal:
        resolved = [resolve(a) for a in args]
        results.append(lower_scalar(b, op, [r for r, _ in resolved], [d for _, d in resolved], dtype))
        sems.append(dtype)
    return Lowered(*prune(b.prims, results))


def lower_scalar(b: PrimBuilder, op, args, arg_dtypes, out_dtype):
    """Emit ``op(*args)`` (references of semantic ``arg_dtypes``) at ``b``, returning an ``out_dtype`` value."""
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
        emitter = _UFUNCS.get(name)
        if emitter is None:
            raise UnsupportedScalar(name)
        vals = [cast(b, a, d, work) for a, d in zip(args, arg_dtypes)]
        result = emitter(b, vals, work)
        result_dtype = loop_out
    else:
        emitter = _OTHERS.get(name)
        if emitter is None:
            raise UnsupportedScalar(name)
        result, result_dtype = emitter(b, op, args, arg_dtypes, out_dtype)
    if result_dtype == "float16" and out_dtype == "float16":
        return b.round_half(result)
    return cast(b, result, result_dtype, out_dtype)


@functools.lru_cache(maxsize=4096)
def ufunc_loop(ufunc, in_dtypes: tuple) -> tuple:
    """NumPy's inner-loop dtypes for ``ufunc`` on these input dtypes: ``(inputs, output)``."""
    resolved = ufunc.resolve_dtypes(tuple(np.dtype(d) for d in in_dtypes) + (None,) * ufunc.nout)
    return tuple(d.name for d in resolved[: ufunc.nin]), resolved[-1].name


def supported(op, arg_dtypes) -> bool:
    """Whether :func:`lower_scalar` lowers ``op`` on operands of ``arg_dtypes``."""
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


# -- casts ---------------------------------------------------------------------
def cast(b: PrimBuilder, x, src: str, dst: str):
    """Convert ``x`` from semantic dtype ``src`` to ``dst`` like ``ndarray.astype`` (unsafe casting)."""
    if src == dst:
        return x
    if dst == "bool":
        return b.emit("ne", (x, const(0, register_dtype(src))))
    reg = register_dtype(dst)
    if src == "bool":
        return b.convert(x, reg)
    if is_float(src) and is_float(dst):
        if register_dtype(src) == reg:
            return b.round_half(x) if dst == "float16" else x
        if dst == "float16":  # float64 -> float16 rounds once, directly
            return b.round_half(x)
        return b.convert(x, reg)
    if is_float(dst):
        if dst == "float16":
            # integer -> float16 rounds once: through float64, which holds every integer below float16's overflow
            return b.round_half(b.convert(x, "float64"))
        return b.convert(x, reg)
    if is_float(src):
        return _float_to_int(b, x, dst)
    return b.convert(x, reg)


def _float_to_int(b: PrimBuilder, x, dst: str):
    """x86's truncating conversion (out of range or NaN gives the minimum), then wrap to ``dst``.

    NumPy's C casts compile to ``cvttss2si``/``cvttsd2si``: 8-, 16- and 32-bit
    targets convert through int32, 32-bit unsigned and 64-bit through int64.
    """
    width = 32 if np.dtype(dst).itemsize < 4 or dst == "int32" else 64
    wide = f"int{width}"
    fdt = b.dtype(x)
    limit = float(2 ** (width - 1))
    in_range = b.emit("and", (b.emit("ge", (x, const(-limit, fdt))), b.emit("lt", (x, const(limit, fdt)))))
    safe = b.select(in_range, x, const(0.0, fdt))
    result = b.select(in_range, b.convert(safe, wide), const(-(1 << (width - 1)), wide))
    if dst == "uint64":
        # [2**63, 2**64) converts exactly as unsigned.
        high = b.emit("and", (b.emit("ge", (x, const(limit, fdt))), b.emit("lt", (x, const(2.0 * limit, fdt)))))
        safe_hi = b.select(high, x, const(0.0, fdt))
        result = b.select(high, b.bitcast(b.convert(safe_hi, "uint64"), wide), result)
    return b.convert(result, dst)


# -- ufuncs (operands already in the loop dtype ``work``) ---------------------------------
def _arith(prim, bool_prim=None):
    def emit(b, vals, work):
        if work == "bool":
            if bool_prim is None:
                raise UnsupportedScalar(f"bool {prim}")
            return b.emit(bool_prim, vals)
        return b.emit(prim, vals)

    return emit


def _true_div(b, vals, work):
    return b.emit("fdiv", vals)


def _int_div_parts(b, x, y, signed):
    """Quotient and remainder with NumPy's floor semantics and no trapping divisions."""
    dt = b.dtype(x)
    zero, one = const(0, dt), const(1, dt)
    y_zero = b.emit("eq", (y, zero))
    if not signed:
        safe = b.select(y_zero, one, y)
        q = b.select(y_zero, zero, b.emit("idiv", (x, safe)))
        r = b.select(y_zero, zero, b.emit("irem", (x, safe)))
        return q, r
    minus_one = b.emit("eq", (y, const(-1, dt)))
    safe = b.select(b.emit("or", (y_zero, minus_one)), one, y)
    q = b.emit("idiv", (x, safe))
    r = b.emit("irem", (x, safe))
    q = b.select(minus_one, b.emit("sub", (zero, x)), q)  # MIN // -1 wraps to MIN
    # floor: when the remainder is non-zero and has the other sign than y, step down.
    adjust = b.emit("and", (b.emit("ne", (r, zero)), b.emit("ne", (b.emit("lt", (r, zero)), b.emit("lt", (y, zero))))))
    q = b.select(adjust, b.emit("sub", (q, one)), q)
    r = b.select(adjust, b.emit("add", (r, safe)), r)
    q = b.select(y_zero, zero, q)
    r = b.select(b.emit("or", (y_zero, minus_one)), zero, r)
    return q, r


def _float_divmod(b, x, y):
    """NumPy's ``npy_divmod`` for floats: returns ``(floordiv, mod)``."""
    dt = b.dtype(x)
    zero, one = const(0.0, dt), const(1.0, dt)
    mod = b.emit("frem", (x, y))
    y_zero = b.emit("eq", (y, zero))
    div = b.emit("fdiv", (b.emit("sub", (x, mod)), y))
    nonzero_mod = b.emit("ne", (mod, zero))
    flip = b.emit("and", (nonzero_mod, b.emit("xor", (b.emit("lt", (y, zero)), b.emit("lt", (mod, zero))))))
    mod_adj = b.select(flip, b.emit("add", (mod, y)), mod)
    div = b.select(flip, b.emit("sub", (div, one)), div)
    mod_final = b.select(nonzero_mod, mod_adj, b.emit("copysign", (zero, y)))
    floordiv = b.emit("floor", (div,))
    bump = b.emit("gt", (b.emit("sub", (div, floordiv)), const(0.5, dt)))
    floordiv = b.select(bump, b.emit("add", (floordiv, one)), floordiv)
    quotient = b.emit("fdiv", (x, y))
    floordiv = b.select(b.emit("ne", (div, zero)), floordiv, b.emit("copysign", (zero, quotient)))
    floordiv = b.select(y_zero, quotient, floordiv)
    mod_final = b.select(y_zero, mod, mod_final)
    return floordiv, mod_final


def _floor_div(b, vals, work):
    if is_float(work):
        return _float_divmod(b, *vals)[0]
    return _int_div_parts(b, *vals, is_signed(work))[0]


def _mod(b, vals, work):
    if is_float(work):
        return _float_divmod(b, *vals)[1]
    return _int_div_parts(b, *vals, is_signed(work))[1]


def _power(b, vals, work):
    if not is_float(work):
        raise UnsupportedScalar("integer power")  # NumPy raises on negative exponents; the host handles it
    return mathfns.emit_math(b, "pow", list(vals))


def _minmax(is_max):
    def emit(b, vals, work):
        x, y = vals
        if work == "bool":
            return b.emit("or" if is_max else "and", vals)
        # NumPy breaks float ties (+-0) towards the first operand for float16, the second otherwise
        name = ("gt" if is_max else "lt") if work != "float16" else ("ge" if is_max else "le")
        better = b.emit(name, (x, y))
        if is_float(work):
            better = b.emit("or", (better, b.emit("uno", (x, x))))
        return b.select(better, x, y)

    return emit


def _compare(name):
    def emit(b, vals, work):
        return b.emit(name, vals)

    return emit


def _bitwise(name):
    def emit(b, vals, work):
        return b.emit(name, vals)

    return emit


def _neg(b, vals, work):
    (x,) = vals
    if is_float(work):
        return b.emit("fneg", (x,))
    return b.emit("sub", (const(0, b.dtype(x)), x))


def _invert(b, vals, work):
    return b.emit("not", vals)


def _abs(b, vals, work):
    (x,) = vals
    if work == "bool" or is_unsigned(work):
        return x
    if is_float(work):
        return b.emit("fabs", (x,))
    zero = const(0, b.dtype(x))
    return b.select(b.emit("lt", (x, zero)), b.emit("sub", (zero, x)), x)


def _sign(b, vals, work):
    (x,) = vals
    dt = b.dtype(x)
    if is_float(work):
        zero = const(0.0, dt)
        out = b.select(b.emit("gt", (x, zero)), const(1.0, dt), b.select(b.emit("lt", (x, zero)), const(-1.0, dt), zero))
        return b.select(b.emit("uno", (x, x)), x, out)
    zero = const(0, dt)
    if is_unsigned(work):
        return b.convert(b.emit("ne", (x, zero)), dt)
    pos = b.convert(b.emit("gt", (x, zero)), dt)
    neg = b.convert(b.emit("lt", (x, zero)), dt)
    return b.emit("sub", (pos, neg))


def _float_unary(prim):
    def emit(b, vals, work):
        (x,) = vals
        if not is_float(work):
            return x  # floor/ceil of integers and bools are the identity
        return b.emit(prim, (x,))

    return emit


def _math(name):
    def emit(b, vals, work):
        if not is_float(work):
            raise UnsupportedScalar(f"{name} on {work}")
        if name == "sqrt":
            return b.emit("sqrt", vals)
        return mathfns.emit_math(b, name, list(vals))

    return emit


def _classify(kind):
    def emit(b, vals, work):
        (x,) = vals
        if not is_float(work):
            return const(kind == "isfinite", "bool")
        if kind == "isnan":
            return b.emit("uno", (x, x))
        inf = const(float("inf"), b.dtype(x))
        return b.emit("eq" if kind == "isinf" else "lt", (b.emit("fabs", (x,)), inf))

    return emit


_UFUNCS = {
    "add": _arith("add", "or"),
    "sub": _arith("sub"),
    "mul": _arith("mul", "and"),
    "true_div": _true_div,
    "floor_div": _floor_div,
    "mod": _mod,
    "pow": _power,
    "maximum": _minmax(True),
    "minimum": _minmax(False),
    "lt": _compare("lt"),
    "le": _compare("le"),
    "gt": _compare("gt"),
    "ge": _compare("ge"),
    "eq": _compare("eq"),
    "neq": _compare("ne"),
    "and": _bitwise("and"),
    "or": _bitwise("or"),
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
def _float_function(b, op, args, arg_dtypes, out_dtype):
    x = cast(b, args[0], arg_dtypes[0], out_dtype)
    dt = b.dtype(x)
    c = lambda v: const(v, dt)  # noqa: E731
    name = op.name
    if name in ("sigmoid", "erf"):
        return mathfns.emit_math(b, name, [x]), out_dtype
    if name == "rsqrt":
        return b.emit("fdiv", (c(1.0), b.emit("sqrt", (x,)))), out_dtype
    if name == "silu":
        return b.emit("mul", (x, mathfns.emit_math(b, "sigmoid", [x]))), out_dtype
    if name == "gelu":
        if dict(op.params).get("approximate") == "tanh":
            cube = b.emit("mul", (b.emit("mul", (x, x)), x))
            inner = b.emit("mul", (c(0.7978845608028654), b.emit("add", (x, b.emit("mul", (c(0.044715), cube))))))
            t = mathfns.emit_math(b, "tanh", [inner])
        else:
            t = mathfns.emit_math(b, "erf", [b.emit("mul", (x, c(0.7071067811865476)))])
        return b.emit("mul", (b.emit("mul", (c(0.5), x)), b.emit("add", (c(1.0), t)))), out_dtype
    raise UnsupportedScalar(name)


def _cast_op(b, op, args, arg_dtypes, out_dtype):
    return cast(b, args[0], arg_dtypes[0], out_dtype), out_dtype


def _identity(b, op, args, arg_dtypes, out_dtype):
    return args[0], arg_dtypes[0]


def _relu(b, op, args, arg_dtypes, out_dtype):
    dtype = arg_dtypes[0]
    return _minmax(True)(b, [args[0], const(0, register_dtype(dtype))], dtype), dtype


def _clip(b, op, args, arg_dtypes, out_dtype):
    x, lo, hi = (cast(b, a, d, out_dtype) for a, d in zip(args, arg_dtypes))
    lower = _minmax(True)(b, [x, lo], out_dtype)
    return _minmax(False)(b, [lower, hi], out_dtype), out_dtype


def _where(b, op, args, arg_dtypes, out_dtype):
    cond = cast(b, args[0], arg_dtypes[0], "bool")
    x = cast(b, args[1], arg_dtypes[1], out_dtype)
    y = cast(b, args[2], arg_dtypes[2], out_dtype)
    return b.select(cond, x, y), out_dtype


def _round(b, op, args, arg_dtypes, out_dtype):
    # np.round (not a ufunc): half to even for floats, the value itself for integers.
    x = cast(b, args[0], arg_dtypes[0], out_dtype)
    if not is_float(out_dtype):
        return x, out_dtype
    return b.rint(x), out_dtype


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
