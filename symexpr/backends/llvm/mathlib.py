"""Vectorisable math functions emitted as LLVM IR.

Each function is straight-line scalar IR (fma, selects, bit operations), so
the loop vectoriser turns a kernel's loop into SIMD code. NaN, the
infinities and signed zeros follow NumPy. The measured maximum errors are in
``MAX_ULP`` and in docs/math-accuracy.md.

Two exceptions still call the C library (scalar, not vectorised): ``pow``
for both dtypes and ``erf`` for float64.
"""

from __future__ import annotations

import math

from llvmlite import ir

F32 = ir.FloatType()
F64 = ir.DoubleType()
I32 = ir.IntType(32)
I64 = ir.IntType(64)

MATH_FUNCTIONS = frozenset({"exp", "log", "log1p", "expm1", "sin", "cos", "tanh", "sigmoid", "erf", "pow"})

#: Measured maximum error in ulp against a float64 (float32) or long double (float64) reference,
#: over the ranges in docs/math-accuracy.md, by (function, dtype).
MAX_ULP = {
    ("exp", "float32"): 1, ("exp", "float64"): 1,
    ("log", "float32"): 1, ("log", "float64"): 1,
    ("log1p", "float32"): 3, ("log1p", "float64"): 2,
    ("expm1", "float32"): 2, ("expm1", "float64"): 2,
    ("sin", "float32"): 2, ("sin", "float64"): 2,
    ("cos", "float32"): 2, ("cos", "float64"): 2,
    ("tanh", "float32"): 3, ("tanh", "float64"): 3,
    ("sigmoid", "float32"): 3, ("sigmoid", "float64"): 2,
    ("erf", "float32"): 1, ("erf", "float64"): 1,
}


def _intr(b, name, ty, args):
    suffix = "f32" if ty == F32 else "f64"
    full = f"llvm.{name}.{suffix}"
    fn = b.module.globals.get(full)
    if fn is None:
        fn = ir.Function(b.module, ir.FunctionType(ty, [ty] * len(args)), full)
    return b.call(fn, args)


def _extern(b, name, ty, nargs):
    fn = b.module.globals.get(name)
    if fn is None:
        fn = ir.Function(b.module, ir.FunctionType(ty, [ty] * nargs), name)
    return fn


class _M:
    """Small helpers bound to a builder and a float type."""

    def __init__(self, b, ty):
        self.b, self.ty = b, ty
        self.f64 = ty == F64
        self.ity = I64 if self.f64 else I32

    def c(self, v):
        return ir.Constant(self.ty, float(v))

    def fma(self, a, x, c):
        return _intr(self.b, "fma", self.ty, [a, x, c])

    def poly(self, x, coeffs):
        """sum coeffs[i] * x**i by Horner with fma."""
        acc = self.c(coeffs[-1])
        for k in reversed(coeffs[:-1]):
            acc = self.fma(acc, x, self.c(k))
        return acc

    def rint(self, x):
        return _intr(self.b, "rint", self.ty, [x])

    def fabs(self, x):
        return _intr(self.b, "fabs", self.ty, [x])

    def copysign(self, x, s):
        return _intr(self.b, "copysign", self.ty, [x, s])

    def isnan(self, x):
        return self.b.fcmp_unordered("uno", x, x)

    def lt(self, a, v):
        return self.b.fcmp_ordered("<", a, self.c(v) if isinstance(v, (int, float)) else v)

    def gt(self, a, v):
        return self.b.fcmp_ordered(">", a, self.c(v) if isinstance(v, (int, float)) else v)

    def sel(self, cond, a, b):
        return self.b.select(cond, a, b)

    def pow2i(self, n_int):
        """2**n as a float for an integer n in the normal exponent range."""
        b = self.b
        bias, shift = (1023, 52) if self.f64 else (127, 23)
        bits = b.shl(b.add(n_int, ir.Constant(self.ity, bias)), ir.Constant(self.ity, shift))
        return b.bitcast(bits, self.ty)


# -- exp ---------------------------------------------------------------------------
_EXP_TAYLOR_32 = [1.0 / math.factorial(k) for k in range(8)]
_EXP_TAYLOR_64 = [1.0 / math.factorial(k) for k in range(14)]


def _exp(m: _M, x):
    b = m.b
    if m.f64:
        hi, lo, limit_hi, limit_lo = 0.6931471805599453, 2.3190468138462996e-17, 709.8, -745.2
        ln2_hi, ln2_lo = 6.93147180369123816490e-01, 1.90821492927058770002e-10
        coeffs = _EXP_TAYLOR_64
    else:
        limit_hi, limit_lo = 88.8, -104.0
        ln2_hi, ln2_lo = 0.693145751953125, 1.428606765330187e-06
        coeffs = _EXP_TAYLOR_32
    xc = m.sel(m.gt(x, limit_hi), m.c(limit_hi), m.sel(m.lt(x, limit_lo), m.c(limit_lo), x))
    n = m.rint(b.fmul(xc, m.c(1.4426950408889634)))
    r = m.fma(n, m.c(-ln2_hi), xc)
    r = m.fma(n, m.c(-ln2_lo), r)
    p = m.poly(r, coeffs)
    ni = b.fptosi(n, m.ity)
    half = b.ashr(ni, ir.Constant(m.ity, 1))
    rest = b.sub(ni, half)
    y = b.fmul(b.fmul(p, m.pow2i(half)), m.pow2i(rest))
    y = m.sel(m.gt(x, limit_hi), m.c(float("inf")), y)
    y = m.sel(m.lt(x, limit_lo), m.c(0.0), y)
    return m.sel(m.isnan(x), x, y)


# -- log ---------------------------------------------------------------------------
def _log_parts(m: _M, x):
    """``(k, f)`` with ``x = 2**k * (1 + f)`` and ``1 + f`` in [sqrt(1/2), sqrt(2)) (positive normal or subnormal x)."""
    b = m.b
    if m.f64:
        mant_bits, bias, mask, tiny, scale_k = 52, 1023, (1 << 52) - 1, 2.2250738585072014e-308, 54
    else:
        mant_bits, bias, mask, tiny, scale_k = 23, 127, (1 << 23) - 1, 1.1754943508222875e-38, 25
    sub = m.lt(x, tiny)
    xs = m.sel(sub, b.fmul(x, m.c(2.0**scale_k)), x)
    bits = b.bitcast(xs, m.ity)
    e = b.sub(b.lshr(bits, ir.Constant(m.ity, mant_bits)), ir.Constant(m.ity, bias))
    mant = b.or_(b.and_(bits, ir.Constant(m.ity, mask)), ir.Constant(m.ity, bias << mant_bits))
    mf = b.bitcast(mant, m.ty)  # in [1, 2)
    big = m.gt(mf, 1.4142135623730951)
    mf = m.sel(big, b.fmul(mf, m.c(0.5)), mf)
    e = b.add(e, b.zext(big, m.ity))
    e = b.sub(e, b.select(sub, ir.Constant(m.ity, scale_k), ir.Constant(m.ity, 0)))
    return b.sitofp(e, m.ty), b.fsub(mf, m.c(1.0))


def _log1p_core(m: _M, f):
    """log(1 + f) for f in [sqrt(1/2) - 1, sqrt(2) - 1]: 2 atanh(s), s = f / (2 + f)."""
    b = m.b
    s = b.fdiv(f, b.fadd(m.c(2.0), f))
    s2 = b.fmul(s, s)
    n_terms = 12 if m.f64 else 6
    coeffs = [1.0 / (2 * k + 1) for k in range(n_terms)]
    # log(1+f) = f - f*f/2 + s*(f*f/2 + R) keeps the leading terms exact.
    hf = b.fmul(m.c(0.5), b.fmul(f, f))
    r = b.fmul(s2, m.poly(s2, [2.0 * c for c in coeffs[1:]] or [0.0]))  # 2(s2/3 + s2^2/5 + ...)
    return b.fsub(f, b.fsub(hf, b.fmul(s, b.fadd(hf, r))))


def _log(m: _M, x):
    b = m.b
    k, f = _log_parts(m, x)
    ln2_hi, ln2_lo = (6.93147180369123816490e-01, 1.90821492927058770002e-10) if m.f64 else (0.693145751953125, 1.428606765330187e-06)
    y = b.fadd(m.fma(k, m.c(ln2_lo), _log1p_core(m, f)), b.fmul(k, m.c(ln2_hi)))
    y = m.sel(b.fcmp_ordered("==", x, m.c(0.0)), m.c(float("-inf")), y)
    y = m.sel(m.lt(x, 0.0), m.c(float("nan")), y)
    y = m.sel(b.fcmp_ordered("==", x, m.c(float("inf"))), x, y)
    return m.sel(m.isnan(x), x, y)


def _log1p(m: _M, x):
    b = m.b
    u = b.fadd(m.c(1.0), x)
    d = b.fsub(u, m.c(1.0))
    lu = _log(m, u)
    # log(u) * x / (u - 1) corrects the rounding of 1 + x.
    y = b.fmul(lu, b.fdiv(x, d))
    y = m.sel(b.fcmp_ordered("==", d, m.c(0.0)), x, y)
    y = m.sel(b.fcmp_ordered("==", x, m.c(float("inf"))), x, y)
    y = m.sel(b.fcmp_ordered("==", u, m.c(0.0)), m.c(float("-inf")), y)
    y = m.sel(m.lt(u, 0.0), m.c(float("nan")), y)
    return m.sel(m.isnan(x), x, y)


def _expm1(m: _M, x):
    b = m.b
    n = 18 if m.f64 else 10
    small = m.poly(x, [1.0 / math.factorial(k + 1) for k in range(n)])
    near = b.fmul(x, small)
    far = b.fsub(_exp(m, x), m.c(1.0))
    return m.sel(m.lt(m.fabs(x), 0.5), near, far)


# -- sin / cos ----------------------------------------------------------------------------
_SIN_64 = [(-1) ** k / math.factorial(2 * k + 1) for k in range(10)]
_COS_64 = [(-1) ** k / math.factorial(2 * k) for k in range(11)]
_SIN_32 = [(-1) ** k / math.factorial(2 * k + 1) for k in range(6)]
_COS_32 = [(-1) ** k / math.factorial(2 * k) for k in range(7)]


def _reduce_half_pi(m: _M, x):
    """``(r, q)`` with ``x = q * pi/2 + r``, ``|r| <= pi/4`` (float64 reduction, also for float32)."""
    b = m.b
    xd = b.fpext(x, F64) if not m.f64 else x
    d = _M(b, F64)
    n = d.rint(b.fmul(xd, d.c(0.6366197723675814)))
    # pi/2 split into three doubles; each fma computes n * part exactly before rounding once.
    r = d.fma(n, d.c(-1.5707963267948966), xd)
    r = d.fma(n, d.c(-6.123233995736766e-17), r)
    r = d.fma(n, d.c(1.4973849048591698e-33), r)
    q = b.fptosi(d.sel(d.lt(d.fabs(n), 9.0e18), n, d.c(0.0)), I64)
    # Beyond this the three-part constant no longer reduces exactly: keep the result bounded.
    r = d.sel(d.lt(d.fabs(xd), 1.0e15), r, d.c(0.0))
    if not m.f64:
        r = b.fptrunc(r, F32)
    return r, q


def _sincos(m: _M, x, want_cos: bool):
    b = m.b
    r, q = _reduce_half_pi(m, x)
    r2 = b.fmul(r, r)
    s = b.fmul(r, m.poly(r2, _SIN_64 if m.f64 else _SIN_32))
    c = m.poly(r2, _COS_64 if m.f64 else _COS_32)
    if want_cos:
        q = b.add(q, ir.Constant(I64, 1))
    swap = b.trunc(b.and_(q, ir.Constant(I64, 1)), ir.IntType(1))
    negate = b.trunc(b.lshr(b.and_(q, ir.Constant(I64, 2)), ir.Constant(I64, 1)), ir.IntType(1))
    y = m.sel(swap, c, s)
    y = m.sel(negate, b.fneg(y), y)
    return m.sel(b.fcmp_ordered("==", m.fabs(x), m.c(float("inf"))), m.c(float("nan")), m.sel(m.isnan(x), x, y))


# -- tanh, sigmoid --------------------------------------------------------------------------
def _tanh(m: _M, x):
    b = m.b
    ax = m.fabs(x)
    t = _expm1(m, b.fmul(m.c(2.0), ax))
    y = b.fdiv(t, b.fadd(t, m.c(2.0)))
    y = m.sel(m.gt(ax, 22.0 if m.f64 else 10.0), m.c(1.0), y)
    y = m.copysign(y, x)
    return m.sel(m.isnan(x), x, y)


def _sigmoid(m: _M, x):
    # As the reference: e = exp(-|x|) never overflows; 1/(1+e) for x >= 0, e/(1+e) below.
    b = m.b
    e = _exp(m, b.fneg(m.fabs(x)))
    d = b.fadd(m.c(1.0), e)
    y = m.sel(b.fcmp_ordered(">=", x, m.c(0.0)), b.fdiv(m.c(1.0), d), b.fdiv(e, d))
    return m.sel(m.isnan(x), x, y)


# -- erf --------------------------------------------------------------------------------
_ERF_TAYLOR = [2.0 / math.sqrt(math.pi) * (-1) ** n / (math.factorial(n) * (2 * n + 1)) for n in range(48)]


def _erf(m: _M, x):
    b = m.b
    if m.f64:
        return b.call(_extern(b, "erf", F64, 1), [x])
    d = _M(b, F64)
    xd = b.fpext(x, F64)
    ax = d.fabs(xd)
    axc = d.sel(d.lt(ax, 3.0), ax, d.c(3.0))
    series = b.fmul(axc, d.poly(b.fmul(axc, axc), _ERF_TAYLOR))
    # erfc(x) ~ exp(-x^2) / (x sqrt(pi)) (1 - 1/(2x^2) + 3/(2x^2)^2 - 15/(2x^2)^3 + 105/(2x^2)^4)
    axt = d.sel(d.lt(ax, 3.0), d.c(3.0), d.sel(d.lt(ax, 10.0), ax, d.c(10.0)))
    inv = b.fdiv(d.c(1.0), b.fmul(d.c(2.0), b.fmul(axt, axt)))
    tail = d.poly(inv, [1.0, -1.0, 3.0, -15.0, 105.0, -945.0])
    erfc = b.fmul(b.fdiv(_exp(d, b.fneg(b.fmul(axt, axt))), b.fmul(axt, d.c(math.sqrt(math.pi)))), tail)
    y = d.sel(d.lt(ax, 3.0), series, b.fsub(d.c(1.0), erfc))
    y = d.copysign(y, xd)
    y = b.fptrunc(y, F32)
    return m.sel(m.isnan(x), x, y)


def _pow(m: _M, x, y):
    b = m.b
    return b.call(_extern(b, "pow" if m.f64 else "powf", m.ty, 2), [x, y])


_EMITTERS = {
    "exp": _exp,
    "log": _log,
    "log1p": _log1p,
    "expm1": _expm1,
    "sin": lambda m, x: _sincos(m, x, False),
    "cos": lambda m, x: _sincos(m, x, True),
    "tanh": _tanh,
    "sigmoid": _sigmoid,
    "erf": _erf,
    "pow": _pow,
}


def emit_math(builder: ir.IRBuilder, name: str, args: list) -> ir.Value:
    """IR computing ``name(*args)`` for float (float32) or double (float64) scalar values.

    Raises
    ------
    ValueError
        If ``name`` is not one of :data:`MATH_FUNCTIONS`.
    """
    if name not in _EMITTERS:
        raise ValueError(f"emit_math: name must be one of {sorted(MATH_FUNCTIONS)}, got {name!r}")
    ty = args[0].type
    if ty not in (F32, F64):
        raise TypeError(f"emit_math: expected float or double operands, got {ty}")
    return _EMITTERS[name](_M(builder, ty), *args)
