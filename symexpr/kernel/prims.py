"""Primitive scalar operations: the closed set every kernel renderer implements.

Kernel programs are written in symexpr's scalar ops (``add`` with NumPy's type
rules, ``floor_div``, ``exp``, ``gelu``, ...).  :mod:`symexpr.kernel.semantics`
lowers them, once for all backends, into the primitives below: NumPy's
semantics (casts, integer division, NaN-aware min/max, float16 rounding) and
the math library (:mod:`symexpr.kernel.mathfns`) become straight-line code a
renderer maps one to one onto its target (LLVM IR, CUDA C).

A lowered program is a tuple of :class:`Prim` s.  Operand references are those
of the kernel IR (``("load", k)``, ``("const", value, dtype)``, ...), plus
``("tmp", j)``: the result of primitive ``j`` of the same lowered program.

Register dtypes are ``bool``, the integer dtypes, ``float32`` and ``float64``.
A float16 value is a float32 register already rounded to half precision
(NumPy's own float16 loops compute in float32 and round each result); its
16 bits are a ``uint16``.

The primitives (``x`` and ``y`` of one dtype unless stated; integer
arithmetic wraps; shifts take amounts below the width):

``add sub mul``
    numeric add, subtract, multiply (not bool)
``fdiv frem``
    float division and C's ``fmod``
``idiv irem``
    integer division truncating toward zero and its remainder, signed or not
    by the dtype; the divisor is never 0, nor -1 with the minimum dividend
``and or xor not``
    bitwise on integers, logical on bool
``shl lshr ashr``
    shifts: left, logical right, arithmetic right (the sign bit copied, whatever
    the dtype's signedness)
``fneg fabs sqrt floor ceil rint copysign fma``
    float operations: ``rint`` rounds half to even, ``fma(a, b, c) = a*b + c``
    rounded once
``lt le gt ge eq``
    comparisons giving bool: ordered for floats (false with a NaN), signed or
    unsigned by the operands' dtype for integers
``ne``
    not equal; true when either float is NaN
``one uno``
    floats only: ordered not-equal; either is NaN
``select``
    ``select(c, x, y)``: ``x`` where bool ``c`` is true, else ``y``
``convert``
    value conversion to the primitive's dtype: bool -> 0/1, integer widths
    (truncate, or extend by the source's signedness), integer -> float
    (rounded to nearest), float32 <-> float64, float -> integer (truncated
    toward zero; only for values in range: callers guard)
``bitcast``
    the same bits as another dtype of the same width
``f16_bits``
    float32 or float64 -> uint16 bits of the nearest float16 (ties to even)
``f16_value``
    uint16 bits -> their float16 value as float32 (exact)

A renderer says which optional primitives it has natively
(:data:`OPTIONAL`); :class:`PrimBuilder` expands the others into integer and
float code that rounds the same way (the per-renderer legalisation step).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Primitive name -> number of operands.
PRIMITIVES: dict[str, int] = {
    **dict.fromkeys(("add", "sub", "mul", "fdiv", "frem", "idiv", "irem", "and", "or", "xor"), 2),
    **dict.fromkeys(("shl", "lshr", "ashr", "copysign"), 2),
    **dict.fromkeys(("not", "fneg", "fabs", "sqrt", "floor", "ceil", "rint"), 1),
    **dict.fromkeys(("lt", "le", "gt", "ge", "eq", "ne", "one", "uno"), 2),
    "fma": 3,
    "select": 3,
    **dict.fromkeys(("convert", "bitcast", "f16_bits", "f16_value"), 1),
}

#: Comparison primitives (their result is bool).
COMPARISONS = frozenset(("lt", "le", "gt", "ge", "eq", "ne", "one", "uno"))

#: Capabilities a renderer may declare; without one, :class:`PrimBuilder` emits an expansion.
#: ``f16_from_f32`` / ``f16_from_f64``: native ``f16_bits`` from float32 / float64;
#: ``f16_to_f32``: native ``f16_value``; ``rint``: a native round-half-to-even.
OPTIONAL = frozenset(("f16_from_f32", "f16_from_f64", "f16_to_f32", "rint"))

REGISTER_DTYPES = frozenset(
    ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64")
)


def is_float(dtype: str) -> bool:
    return dtype.startswith("float")


def is_signed(dtype: str) -> bool:
    return dtype.startswith("int")


def is_unsigned(dtype: str) -> bool:
    return dtype.startswith("uint")


def register_dtype(dtype: str) -> str:
    """The register dtype a value of ``dtype`` is computed in (float16 in float32)."""
    return "float32" if dtype == "float16" else dtype


def bits_dtype(dtype: str) -> str:
    """The unsigned integer dtype as wide as float ``dtype``."""
    return {"float32": "uint32", "float64": "uint64", "float16": "uint16"}[dtype]


@dataclass(frozen=True)
class Prim:
    """``op(*args)`` giving a ``dtype`` register value; ``src`` is the dtype of ``args[0]``."""

    op: str
    args: tuple
    dtype: str
    src: str


def const(value, dtype: str) -> tuple:
    """A literal operand reference of register dtype ``dtype`` (the value as that dtype holds it)."""
    if dtype == "bool":
        return ("const", bool(value), dtype)
    if is_float(dtype):
        return ("const", float(np.asarray(value, dtype=dtype)), dtype)
    return ("const", int(np.asarray(value).astype(dtype)), dtype)


class PrimBuilder:
    """Appends :class:`Prim` s to a lowered program; each method returns the result's reference.

    Parameters
    ----------
    dtype_of : callable
        Register dtype of an operand reference that is not a literal or one of
        this builder's results (a load, an accumulator, a size).
    caps : frozenset of str
        The renderer's native optional primitives (:data:`OPTIONAL`).
    """

    def __init__(self, dtype_of, caps=frozenset()):
        self.prims: list[Prim] = []
        self.caps = frozenset(caps)
        self._dtype_of = dtype_of
        self._memo: dict = {}
        #: Results already rounded to float16 precision.
        self._half_values: set = set()

    def dtype(self, ref) -> str:
        if ref[0] == "const":
            return ref[2]
        if ref[0] == "tmp":
            return self.prims[ref[1]].dtype
        return self._dtype_of(ref)

    def emit(self, op: str, args, dtype: str | None = None) -> tuple:
        """Append ``op(*args)``; ``dtype`` defaults to bool for comparisons, else the last operand's."""
        args = tuple(args)
        if len(args) != PRIMITIVES[op]:
            raise ValueError(f"primitive {op} takes {PRIMITIVES[op]} operand(s), got {len(args)}")
        if dtype is None:
            dtype = "bool" if op in COMPARISONS else self.dtype(args[-1])
        if op == "convert" and dtype == "bool" and self.dtype(args[0]) != "bool":
            raise ValueError("convert to bool is not a primitive: compare with zero (ne) instead")
        key = (op, tuple(("const", repr(a[1]), a[2]) if a[0] == "const" else a for a in args), dtype)
        found = self._memo.get(key)
        if found is not None:
            return found
        folded = self._fold(op, args, dtype)
        if folded is not None:
            return folded
        self.prims.append(Prim(op, args, dtype, self.dtype(args[0])))
        ref = ("tmp", len(self.prims) - 1)
        self._memo[key] = ref
        return ref

    def _fold(self, op, args, dtype):
        """Literal results of bit casts of literals (the math library's constants)."""
        if op == "bitcast" and args[0][0] == "const":
            value = np.asarray(args[0][1], dtype=args[0][2]).view(dtype)
            return const(value, dtype)
        return None

    # -- conveniences --------------------------------------------------------------------
    def convert(self, x, dtype: str) -> tuple:
        return x if self.dtype(x) == dtype else self.emit("convert", (x,), dtype)

    def bitcast(self, x, dtype: str) -> tuple:
        return self.emit("bitcast", (x,), dtype)

    def select(self, cond, a, b) -> tuple:
        return self.emit("select", (cond, a, b))

    # -- legalised primitives --------------------------------------------------------------
    def f16_bits(self, x) -> tuple:
        """uint16 bits of the float16 nearest to float32/float64 ``x`` (ties to even), rounding once."""
        wide = self.dtype(x) == "float64"
        if ("f16_from_f64" if wide else "f16_from_f32") in self.caps:
            return self.emit("f16_bits", (x,), "uint16")
        return _float_to_half(self, x)

    def f16_value(self, bits) -> tuple:
        """float32 value of the float16 with uint16 ``bits``."""
        if "f16_to_f32" in self.caps:
            return self.emit("f16_value", (bits,), "float32")
        return _half_to_float(self, bits)

    def round_half(self, x) -> tuple:
        """float32 ``x`` rounded to float16 precision (a value rounded already is returned as is)."""
        if x in self._half_values:
            return x
        rounded = self.f16_value(self.f16_bits(x))
        self._half_values.add(rounded)
        return rounded

    def rint(self, x) -> tuple:
        """Round half to even."""
        if "rint" in self.caps:
            return self.emit("rint", (x,))
        return _roundeven_by_addition(self, x)


def resolve(ref, values, literal, external):
    """A renderer's value of an operand of a lowered program.

    ``values[j]`` for ``("tmp", j)``, ``literal(value, dtype)`` for a literal,
    ``external(ref)`` for anything else (a load, an accumulator, an argument).
    """
    kind = ref[0]
    if kind == "tmp":
        return values[ref[1]]
    if kind == "const":
        return literal(ref[1], ref[2])
    return external(ref)


def prune(prims, results) -> tuple:
    """``(prims, results)`` without the primitives no result depends on, renumbered."""
    live = [False] * len(prims)
    stack = [r[1] for r in results if r[0] == "tmp"]
    while stack:
        j = stack.pop()
        if live[j]:
            continue
        live[j] = True
        stack.extend(a[1] for a in prims[j].args if a[0] == "tmp")
    if all(live):
        return tuple(prims), tuple(results)
    number, kept = {}, []
    for j, p in enumerate(prims):
        if live[j]:
            number[j] = len(kept)
            kept.append(p.__class__(p.op, tuple(("tmp", number[a[1]]) if a[0] == "tmp" else a for a in p.args), p.dtype, p.src))
    return tuple(kept), tuple(("tmp", number[r[1]]) if r[0] == "tmp" else r for r in results)


def _half_to_float(b: PrimBuilder, bits) -> tuple:
    """Integer code for ``f16_value`` (exact)."""
    c = lambda v: const(v, "uint32")  # noqa: E731
    u = b.convert(bits, "uint32")
    sign = b.emit("shl", (b.emit("and", (u, c(0x8000))), c(16)))
    em = b.emit("and", (u, c(0x7FFF)))
    shifted = b.emit("shl", (em, c(13)))
    normal = b.emit("add", (shifted, c((127 - 15) << 23)))
    nan_quiet = b.select(b.emit("gt", (em, c(0x7C00))), c(0x00400000), c(0))
    special = b.emit("or", (b.emit("or", (shifted, c(0x7F800000))), nan_quiet))
    tiny = b.bitcast(b.emit("mul", (b.convert(em, "float32"), const(2.0**-24, "float32"))), "uint32")
    mag = b.select(b.emit("lt", (em, c(0x400))), tiny, b.select(b.emit("ge", (em, c(0x7C00))), special, normal))
    return b.bitcast(b.emit("or", (mag, sign)), "float32")


def _float_to_half(b: PrimBuilder, value) -> tuple:
    """Integer code for ``f16_bits``: rounds to nearest even exactly once, from float32 or float64."""
    fdt = b.dtype(value)
    wide = fdt == "float64"
    width, mbits, bias = (64, 52, 1023) if wide else (32, 23, 127)
    udt = "uint64" if wide else "uint32"
    c = lambda v: const(v, udt)  # noqa: E731
    shift = mbits - 10
    x = b.bitcast(value, udt)
    sign = b.emit("and", (x, c(1 << (width - 1))))
    a = b.emit("xor", (x, sign))
    exp_all = ((1 << (width - 1 - mbits)) - 1) << mbits  # the infinity bit pattern
    nan_bits = b.emit("or", (c(0x7E00), b.emit("and", (b.emit("lshr", (a, c(shift))), c(0x3FF)))))
    big = b.select(b.emit("gt", (a, c(exp_all))), nan_bits, c(0x7C00))
    # below 2**-14: add 2**(mbits-24), whose last place is float16's smallest subnormal, and read the count
    magic = (bias + mbits - 24) << mbits
    summed = b.emit("add", (b.bitcast(a, fdt), b.bitcast(c(magic), fdt)))
    small = b.emit("sub", (b.bitcast(summed, udt), c(magic)))
    odd = b.emit("and", (b.emit("lshr", (a, c(shift))), c(1)))
    rebiased = b.emit("add", (b.emit("add", (a, c(((15 - bias) << mbits) + (1 << (shift - 1)) - 1))), odd))
    normal = b.emit("lshr", (rebiased, c(shift)))
    mag = b.select(
        b.emit("ge", (a, c((bias + 16) << mbits))), big, b.select(b.emit("lt", (a, c((bias - 14) << mbits))), small, normal)
    )
    out = b.emit("or", (mag, b.emit("lshr", (sign, c(width - 16)))))
    return b.convert(out, "uint16")


def _roundeven_by_addition(b: PrimBuilder, x) -> tuple:
    """Round half to even without a rounding instruction (x86 before SSE4.1).

    Below 2**p (p = mantissa bits), adding and subtracting 2**p rounds to an
    integer in the default rounding mode, which is to nearest even; larger
    magnitudes (and NaN, inf) are integers already.
    """
    dt = b.dtype(x)
    big = const(2.0**52 if dt == "float64" else 2.0**23, dt)
    ax = b.emit("fabs", (x,))
    rounded = b.emit("sub", (b.emit("add", (ax, big)), big))
    signed = b.emit("copysign", (rounded, x))
    return b.select(b.emit("lt", (ax, big)), signed, x)


def interpret(prims, env: dict):
    """Evaluate a lowered program with NumPy scalars: ``env`` maps external references to values.

    The reference semantics of every primitive, used by the tests to check
    lowerings without a code generator.  Returns the list of results.
    """
    out: list = []

    def val(ref):
        if ref[0] == "const":
            return np.asarray(ref[1], dtype=ref[2])[()]
        if ref[0] == "tmp":
            return out[ref[1]]
        return np.asarray(env[ref], dtype=env[ref].dtype)[()]

    with np.errstate(all="ignore"):
        for p in prims:
            out.append(_interpret_one(p, [val(a) for a in p.args]))
    return out


def _interpret_one(p: Prim, a):
    dt = np.dtype(p.dtype)
    op = p.op
    if op in ("add", "sub", "mul"):
        f = {"add": np.add, "sub": np.subtract, "mul": np.multiply}[op]
        return dt.type(f(a[0], a[1], dtype=dt))
    if op == "fdiv":
        return dt.type(np.true_divide(a[0], a[1], dtype=dt))
    if op == "frem":
        return dt.type(np.fmod(a[0], a[1], dtype=dt))
    if op in ("idiv", "irem"):
        x, y = int(a[0]), int(a[1])
        q = abs(x) // abs(y) * (1 if (x < 0) == (y < 0) else -1)
        return np.asarray(q if op == "idiv" else x - q * y).astype(dt)[()]
    if op in ("and", "or", "xor"):
        f = {"and": np.bitwise_and, "or": np.bitwise_or, "xor": np.bitwise_xor}[op]
        return dt.type(f(a[0], a[1]))
    if op == "not":
        return dt.type(np.logical_not(a[0]) if p.dtype == "bool" else np.invert(a[0]))
    if op in ("shl", "lshr", "ashr"):
        width = dt.itemsize * 8
        x, s = int(a[0]), int(a[1])
        if op == "shl":
            return np.asarray((x << s) & ((1 << width) - 1)).astype(np.dtype(f"uint{width}")).view(dt)[()]
        if op == "lshr":
            return np.asarray((x & ((1 << width) - 1)) >> s).astype(np.dtype(f"uint{width}")).view(dt)[()]
        signed = x - (1 << width) if x >= 1 << (width - 1) else x
        return np.asarray(signed >> s).astype(np.dtype(f"int{width}")).view(dt)[()]
    if op in ("fneg", "fabs", "sqrt", "floor", "ceil", "rint"):
        f = {"fneg": np.negative, "fabs": np.fabs, "sqrt": np.sqrt, "floor": np.floor, "ceil": np.ceil, "rint": np.rint}
        return dt.type(f[op](a[0]))
    if op == "copysign":
        return dt.type(np.copysign(a[0], a[1]))
    if op == "fma":
        return dt.type(_exact_fma(*a))
    if op in COMPARISONS:
        x, y = a
        if op == "uno":
            return np.bool_(np.isnan(x) or np.isnan(y))
        if op == "one":
            return np.bool_(x < y or x > y)
        f = {"lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal, "eq": np.equal,
             "ne": np.not_equal}[op]
        return np.bool_(f(x, y))
    if op == "select":
        return a[1] if a[0] else a[2]
    if op == "convert":
        x = a[0]
        if is_float(p.src) and not is_float(p.dtype):
            return np.asarray(np.trunc(x)).astype(dt)[()]
        return np.asarray(x).astype(dt)[()]
    if op == "bitcast":
        return np.asarray(a[0]).view(dt)[()]
    if op == "f16_bits":
        return np.asarray(a[0]).astype(np.float16).view(np.uint16)[()]
    if op == "f16_value":
        return np.asarray(a[0]).view(np.float16).astype(np.float32)[()]
    raise ValueError(f"unknown primitive {op!r}")


def _exact_fma(x, y, z) -> float:
    """``x*y + z`` rounded once to float64 (to float32 through float64: close enough for tests)."""
    from fractions import Fraction

    if not all(np.isfinite(v) for v in (x, y, z)):
        return float(x) * float(y) + float(z)
    exact = Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z))
    if exact == 0:
        return float(x) * float(y) + float(z)  # the sign of a zero result
    try:
        return float(exact)
    except OverflowError:
        return float("inf") if exact > 0 else float("-inf")
