"""Branch-free math functions written in primitives, shared by every renderer.

:func:`emit_math` emits one scalar math function as straight-line
primitives (:mod:`symexpr.kernel.prims`): float arithmetic, ``fma``,
comparisons and ``select``, and integer manipulation of the representation.
There are no library calls, branches or loops, and nothing that relaxes IEEE
semantics, so a renderer's loop over ``f(in[i])`` vectorises (LLVM's loop
vectoriser turns it into AVX2/AVX-512 code) and keeps NumPy's NaN / infinity
/ signed-zero semantics, on the CPU and the GPU alike.

Algorithms (float32 works natively in float32 except for the sin/cos argument
reduction and ``pow``, which work in float64):

``exp``
    ``x = n*ln2 + r`` (Cody-Waite, two-part ln2 with ``fma``; for float64 ``r``
    is kept as a double-word), ``|r| <= ln2/2``, ``expm1(r)`` by a minimax
    polynomial, result ``fma(p, 2^n1, 2^n1) * 2^n2`` with ``n = n1 + n2`` so
    that results near the overflow threshold and subnormal results are formed
    with a single rounding.
``expm1``
    the same reduction, ``p = expm1(r)`` as a double-word, then
    ``2^n*p + (2^n - 1)`` by ``fma``.
``log``, ``log1p``
    ``x = 2^k*m``, ``m`` in ``[sqrt(1/2), sqrt(2))``, ``f = m - 1`` (exact);
    ``log1p(f)`` by a polynomial in ``f`` (float32) or fdlibm's form in
    ``s = f/(2+f)`` (float64).  ``log1p`` forms ``u = 1 + x`` and adds the
    rounding error of that sum back as ``err/u``.
``sin``, ``cos``
    ``q = rint(x*2/pi)``, ``r = x - q*pi/2`` in float64 with a three-part
    ``pi/2`` and ``fma`` (Cody-Waite; two parts suffice for float32), minimax
    polynomials for ``sin`` and ``cos`` on ``[-pi/4, pi/4]``, quadrant by
    ``select`` and a sign flip.  Accurate for ``|x| < TRIG_ACCURATE_RANGE``;
    beyond, results are finite and in [-1, 1] but not accurate (no
    Payne-Hanek reduction).
``tanh``
    ``t = expm1(2|x|)``, ``copysign(t/(t+2), x)`` with one correction step for
    the roundings of ``t + 2`` and of the quotient: relative accuracy near 0.
``sigmoid``
    ``e = exp(-|x|)``; ``1/(1+e)`` for ``x >= 0`` and ``e/(1+e)`` for
    ``x < 0`` (corrected like tanh), so large ``|x|`` give 1 or the
    (possibly subnormal) ``exp(x)``, never NaN.
``erf``
    ``|x| < 1``: ``x*P(x^2)``; ``1 <= |x|``: ``1 - exp(-x^2)*H(|x|)`` with a
    minimax ``H ~ erfc(x)*exp(x^2)`` on ``[1, 4]`` (float32) / ``[1, 6]``
    (float64), beyond which erf is 1 in the working type.
``pow``
    ``exp(y*log|x|)``: float64 computes ``log|x|`` (relative error < 2^-63)
    and ``y*log|x|`` as double-words; float32 works in float64 and rounds
    once.  The C99 Annex F special cases are applied by ``select``.

All polynomial coefficients are minimax fits (Remez exchange, mpmath at 50
digits) rounded to the working type; the measured accuracy is in
``docs/math-accuracy.md`` and :data:`MAX_ULP`.
"""

from __future__ import annotations

from symexpr.kernel.prims import PrimBuilder, const

__all__ = ["MATH_FUNCTIONS", "MAX_ULP", "TRIG_ACCURATE_RANGE", "emit_math", "exp_nonpositive"]

MATH_FUNCTIONS: frozenset[str] = frozenset(
    {"exp", "log", "log1p", "expm1", "sin", "cos", "tanh", "sigmoid", "erf", "pow"}
)

#: Maximum error in ulp by (function, dtype): ``|result - exact| / spacing(exact rounded to dtype)``.
#: Asserted by tests/backends/llvm/test_mathlib.py; docs/math-accuracy.md has the measured maxima
#: (float32: exhaustive over all inputs) and the input ranges (sin/cos: TRIG_ACCURATE_RANGE).
MAX_ULP: dict[tuple[str, str], float] = {
    ("exp", "float32"): 1.5,
    ("exp", "float64"): 1.5,
    ("log", "float32"): 1.0,
    ("log", "float64"): 1.5,
    ("log1p", "float32"): 1.5,
    ("log1p", "float64"): 1.5,
    ("expm1", "float32"): 1.5,
    ("expm1", "float64"): 2.0,
    ("sin", "float32"): 2.0,
    ("sin", "float64"): 2.0,
    ("cos", "float32"): 2.0,
    ("cos", "float64"): 2.0,
    ("tanh", "float32"): 2.0,
    ("tanh", "float64"): 2.5,
    ("sigmoid", "float32"): 2.0,
    ("sigmoid", "float64"): 2.0,
    ("erf", "float32"): 1.5,
    ("erf", "float64"): 2.0,
    ("pow", "float32"): 1.0,
    ("pow", "float64"): 2.0,
}

#: ``|x|`` up to which sin and cos meet :data:`MAX_ULP`.
TRIG_ACCURATE_RANGE: dict[str, float] = {"float32": 1e15, "float64": 1e14}

# --------------------------------------------------------------------------------------
# Coefficients (minimax, rounded to the working type; lowest degree first)
# --------------------------------------------------------------------------------------

# fmt: off
# expm1(r) = r + r^2 * P(r),  |r| <= ln2/2
_EXPM1_P = {
    "float32": (0.4999999701976776, 0.16666537523269653, 0.041667740792036057, 0.008367318660020828,
                0.00138378597330302),
    "float64": (0.5, 0.16666666666666677, 0.041666666666666685, 0.008333333333321829, 0.001388888888889632,
                0.0001984126988637097, 2.4801587253612667e-05, 2.7557243028461457e-06, 2.755737421768411e-07,
                2.5109735601705957e-08, 2.0873509291429847e-09),
}
# float32: log1p(f) = f - f^2/2 + f^3 * P(f),  f in [sqrt(1/2)-1, sqrt(2)-1]
_LOG1P_F32 = (0.3333333134651184, -0.2500082552433014, 0.20001235604286194, -0.1662314385175705,
              0.14201366901397705, -0.13162003457546234, 0.12765437364578247, -0.07634401321411133)
# float64: log1p(f) = 2s + s^3 * Q(s^2),  s = f/(2+f)
_LOG_S_F64 = (0.6666666666666735, 0.39999999999409136, 0.2857142874377956, 0.2222219841503737,
              0.18183573297992528, 0.1531380266908546, 0.14798605537439913)
# float64 double-word log: log1p(f) = 2s + 2s^3/3 + s^5 * Q5(s^2)
_LOG_S5_F64 = (0.39999999999999974, 0.2857142857144705, 0.22222222217067567, 0.18181818927558926,
               0.15384552985757918, 0.13336466112827206, 0.11671816085149432, 0.12013884768124174)
# float32 pow, evaluated in float64 to ~2^-43 (enough for a float32 result, no division):
# log1p(f) = f - f^2/2 + f^3 * P(f), and expm1(r) = r + r^2 * P(r)
_POW32_LOG = (0.3333333330638651, -0.25000000301915987, 0.20000004820891049, -0.1666663752815832,
              0.1428540680713862, -0.12500916218051966, 0.11120492895473524, -0.09990642858567302,
              0.08944776353792594, -0.0828204471164752, 0.087661447917084, -0.08614183878978027,
              0.043995059833019004)
_POW32_EXPM1 = (0.49999999999659317, 0.16666666667274327, 0.041666666965563745, 0.008333333092361955,
                0.0013888810560481533, 0.00019841541157238182, 2.4881107955070364e-05, 2.7492810077988854e-06)
# sin(r) = r + r^3 * S(r^2),  cos(r) = 1 - r^2/2 + r^4 * C(r^2),  |r| <= pi/4
_SIN_S = {
    "float32": (-0.1666666716337204, 0.008333379402756691, -0.00019853064441122115, 2.8325100629444933e-06),
    "float64": (-0.1666666666666663, 0.00833333333332184, -0.00019841269829358533, 2.7557313538517965e-06,
                -2.5050734390068044e-08, 1.5895433345763761e-10),
}
_COS_C = {
    "float32": (0.0416666679084301, -0.0013888980029150844, 2.482200761733111e-05, -2.8878449143121543e-07),
    "float64": (0.041666666666666595, -0.0013888888888873307, 2.4801587288965223e-05, -2.755731420307571e-07,
                2.0875703138873092e-09, -1.135861696344045e-11),
}
# erf(x) = x * (C0 + P(x^2)),  |x| <= 1;  C0 = 2/sqrt(pi) rounded, P(0) = its rounding error
_ERF_SMALL = {
    "float32": (1.128379225730896,
                (-6.00041545339991e-08, -0.3761262595653534, 0.11283586174249649, -0.026853837072849274,
                 0.005188347771763802, -0.0008010162855498493, 7.853153510950506e-05)),
    "float64": (1.1283791670955126,
                (7.094139045322057e-18, -0.3761263890318352, 0.11283791670944285, -0.026866170643129166,
                 0.005223977606260632, -0.0008548325935748624, 0.00012055293756605253, -1.4924715519821801e-05,
                 1.6447168638372762e-06, -1.6206579581568184e-07, 1.3712060823404219e-08,
                 -7.781370235075101e-10)),
}
# erfc(x) = exp(-x^2) * H(x - centre),  1 <= x <= clamp
_ERFC_H = {
    "float32": (2.5, 4.0,
                (0.21080760657787323, -0.07434218376874924, 0.024914605543017387, -0.00813233945518732,
                 0.0023024005349725485, -0.0006611145799979568, 0.0005434153717942536, 0.0002251299301860854,
                 0.00010685797315090895)),
    "float64": (3.5, 6.0,
                (0.1552936556091711, -0.0413235778274915, 0.010661133208241472, -0.0026730745276328945,
                 0.0006526858262584417, -0.00015546956299012244, 3.618272629526149e-05, -8.23404353496799e-06,
                 1.8409429803247574e-06, -4.0332153596260127e-07, 7.958403025247664e-08, -2.3698802230251212e-08,
                 3.4331305205592907e-09, 2.1282021106540656e-09, 2.56335138680774e-09, 6.691712434359146e-10,
                 -1.916847984322605e-10, -2.636716169859915e-10, -1.1238881661040717e-10, -2.6813750368044474e-11,
                 -3.554909444003406e-12, -2.141059706533266e-13)),
}

# Constants per type.
_K = {
    "float32": {
        "log2e": 1.4426950216293335, "ln2_hi": 0.6931471824645996, "ln2_lo": -1.9046542121259336e-09,
        "ln2_hi_short": 0.693359375, "ln2_lo_short": -2.12194440e-4,
        "exp_hi": 89.0, "exp_lo": -104.0, "expm1_lo": -30.0, "tanh_clamp": 10.0,
    },
    "float64": {
        "log2e": 1.4426950408889634, "ln2_hi": 0.6931471805599453, "ln2_lo": 2.3190468138462996e-17,
        "ln2_hi_short": 0.6931471803691238, "ln2_lo_short": 1.9082149292705877e-10,
        "two_over_pi": 0.6366197723675814,
        "pio2": (1.5707963267948966, 6.123233995736766e-17, -1.4973849048591698e-33),
        "exp_hi": 710.0, "exp_lo": -746.0, "expm1_lo": -40.0, "tanh_clamp": 20.0,
    },
}
# fmt: on


# --------------------------------------------------------------------------------------
# A tiny IR-emission helper bound to one builder and one float type
# --------------------------------------------------------------------------------------


class _Emitter:
    """Emits primitives for float arithmetic of one dtype (float32 or float64); ``idt`` is the same-width int."""

    def __init__(self, builder: PrimBuilder, dtype: str):
        self.b = builder
        self.dtype = dtype
        self.f64 = dtype == "float64"
        self.idt = "int64" if self.f64 else "int32"
        self.mant = 52 if self.f64 else 23
        self.bias = 1023 if self.f64 else 127
        self.k = _K[self.dtype]

    def _op(self, name, *args):
        return self.b.emit(name, args)

    # constants
    def c(self, v):
        return const(float(v), self.dtype)

    def i(self, v):
        return const(int(v), self.idt)

    # float arithmetic
    def add(self, a, b):
        return self._op("add", a, b)

    def sub(self, a, b):
        return self._op("sub", a, b)

    def mul(self, a, b):
        return self._op("mul", a, b)

    def div(self, a, b):
        return self._op("fdiv", a, b)

    def fma(self, a, b, c):
        return self._op("fma", a, b, c)

    def fabs(self, a):
        return self._op("fabs", a)

    def floor(self, a):
        return self._op("floor", a)

    def copysign(self, mag, sign):
        return self._op("copysign", mag, sign)

    def horner(self, x, coeffs):
        acc = self.c(coeffs[-1])
        for cf in reversed(coeffs[:-1]):
            acc = self.fma(acc, x, self.c(cf))
        return acc

    # comparisons (ordered: false when either side is NaN)
    def lt(self, a, b):
        return self._op("lt", a, b)

    def gt(self, a, b):
        return self._op("gt", a, b)

    def eq(self, a, b):
        return self._op("eq", a, b)

    def ne(self, a, b):
        return self._op("one", a, b)

    def isnan(self, a, b=None):
        return self._op("uno", a, a if b is None else b)

    def cmp(self, name, a, b):
        """Comparison primitive ``name`` (integers: signed by their dtype; bools: as 0/1)."""
        return self._op(name, a, b)

    def sel(self, cond, a, b):
        return self._op("select", cond, a, b)

    def clamp_hi(self, x, hi):
        """``min(x, hi)`` keeping NaN."""
        return self.sel(self.gt(x, self.c(hi)), self.c(hi), x)

    def clamp_lo(self, x, lo):
        return self.sel(self.lt(x, self.c(lo)), self.c(lo), x)

    # integers and bools (signed integers of the float's width; bools from comparisons)
    def iadd(self, a, b):
        return self._op("add", a, b)

    def isub(self, a, b):
        return self._op("sub", a, b)

    def and_(self, a, b):
        return self._op("and", a, b)

    def or_(self, a, b):
        return self._op("or", a, b)

    def xor(self, a, b):
        return self._op("xor", a, b)

    def not_(self, a):
        return self._op("not", a)

    def shl(self, a, b):
        return self._op("shl", a, b)

    def ashr(self, a, b):
        return self._op("ashr", a, b)

    # representation
    def bits(self, x):
        return self.b.bitcast(x, self.idt)

    def from_bits(self, i):
        return self.b.bitcast(i, self.dtype)

    def pow2(self, n):
        """``2.0**n`` for an integer ``n`` in the normal exponent range."""
        return self.from_bits(self.shl(self.iadd(n, self.i(self.bias)), self.i(self.mant)))

    def two_sum(self, a, b):
        s = self.add(a, b)
        bb = self.sub(s, a)
        err = self.add(self.sub(a, self.sub(s, bb)), self.sub(b, bb))
        return s, err

    def fast_two_sum(self, a, b):
        """``a + b`` as a double-word; needs ``|a| >= |b|`` (or ``a == 0``)."""
        s = self.add(a, b)
        return s, self.sub(b, self.sub(s, a))


# --------------------------------------------------------------------------------------
# exp / expm1 cores
# --------------------------------------------------------------------------------------


def _exp_reduce(m: _Emitter, x, x_lo=None):
    """``x (+ x_lo) = n*ln2 + r``: returns ``(r, r_lo, n_int)``; ``|x| < 2^(mant-1)`` or NaN.

    For float64 ``r + r_lo`` is a double-word (``x - n*ln2_hi`` is exact with
    ``fma``); for float32 ``r_lo`` is None.
    """
    k = m.k
    shifter = 1.5 * 2.0**m.mant
    t = m.fma(x, m.c(k["log2e"]), m.c(shifter))
    nf = m.sub(t, m.c(shifter))
    n = m.isub(m.bits(t), m.bits(m.c(shifter)))
    r = m.fma(nf, m.c(-k["ln2_hi"]), x)
    if not m.f64:
        return m.fma(nf, m.c(-k["ln2_lo"]), r), None, n
    delta = m.mul(nf, m.c(-k["ln2_lo"]))
    if x_lo is not None:
        delta = m.add(delta, x_lo)
    rr, rr_lo = m.fast_two_sum(r, delta)
    return rr, rr_lo, n


def _expm1_poly(m: _Emitter, r, r_lo=None, coeffs=None):
    """``exp(r + r_lo) - 1`` for ``|r| <= ln2/2``."""
    r2 = m.mul(r, r)
    p = m.fma(r2, m.horner(r, coeffs or _EXPM1_P[m.dtype]), r)
    if r_lo is not None:
        # (1 + p) * (1 + r_lo) - 1 = p + r_lo * (1 + p)
        p = m.add(p, m.fma(r_lo, p, r_lo))
    return p


def _exp_core(m: _Emitter, x, x_lo=None, wide=True, coeffs=None):
    """``exp(x + x_lo)``; ``wide``: x may reach the overflow/subnormal ranges (clamped here)."""
    if wide:
        hi_ovf = m.gt(x, m.c(m.k["exp_hi"]))
        lo_unf = m.lt(x, m.c(m.k["exp_lo"]))
        x = m.sel(hi_ovf, m.c(m.k["exp_hi"]), m.sel(lo_unf, m.c(m.k["exp_lo"]), x))
        if x_lo is not None:
            x_lo = m.sel(m.or_(hi_ovf, lo_unf), m.c(0.0), x_lo)
    r, r_lo, n = _exp_reduce(m, x, x_lo)
    p = _expm1_poly(m, r, r_lo, coeffs)
    if not wide:
        s = m.pow2(n)
        return m.fma(p, s, s)
    # 2^n as 2^n1 * 2^n2 so both factors are normal; the second product rounds once
    n1 = m.ashr(n, m.i(1))
    n2 = m.isub(n, n1)
    s1 = m.pow2(n1)
    return m.mul(m.fma(p, s1, s1), m.pow2(n2))


def _expm1_core(m: _Emitter, x):
    """``expm1(x)`` for ``expm1_lo <= x <= exp_hi`` (or NaN); sign of zero not kept."""
    r, r_lo, n = _exp_reduce(m, x)
    # p = expm1(r) as p_hi + p_lo: r + t with t = r^2 P(r) (|t| < |r|), so that 2^n * p
    # below does not double p's rounding error when it nearly cancels against 2^n - 1
    t = m.mul(m.mul(r, r), m.horner(r, _EXPM1_P[m.dtype]))
    p_hi, p_lo = m.fast_two_sum(r, t)
    if r_lo is not None:
        p_lo = m.add(p_lo, m.fma(r_lo, p_hi, r_lo))
    # 2^n*(1+p) - 1 = (2^n*p_hi + (2^n - 1)) + (2^n*p_lo + rounding error of 2^n - 1),
    # with 2^n split when n = bias + 1
    nc = m.sel(m.cmp("gt", n, m.i(m.bias)), m.i(m.bias), n)
    s = m.pow2(nc)
    sm1 = m.sub(s, m.c(1.0))
    sm1_lo = m.sub(m.sub(s, sm1), m.c(1.0))  # exact: -1 once 2^n - 1 rounds to 2^n
    res = m.add(m.fma(s, p_hi, sm1), m.fma(s, p_lo, sm1_lo))
    return m.mul(res, m.pow2(m.isub(n, nc)))


def _exp(m, x):
    return _exp_core(m, x)


def _expm1(m, x):
    xc = m.clamp_lo(m.clamp_hi(x, m.k["exp_hi"]), m.k["expm1_lo"])
    res = _expm1_core(m, xc)
    return m.sel(m.eq(x, m.c(0.0)), x, res)  # expm1(-0.0) = -0.0


# --------------------------------------------------------------------------------------
# log / log1p
# --------------------------------------------------------------------------------------


def _log_reduce(m: _Emitter, u, subnormal=True):
    """``u = 2^k * m`` with ``m`` in ``[sqrt(1/2), sqrt(2))``: returns ``(k as float, f = m - 1, k int)``."""
    scale_bits = m.mant + 2
    tiny = None
    if subnormal:
        tiny = m.lt(u, m.from_bits(m.i(1 << m.mant)))  # below the smallest normal
        u = m.sel(tiny, m.mul(u, m.c(2.0**scale_bits)), u)
    sqrt_half_bits = 0x3FE6A09E667F3BCD if m.f64 else 0x3F3504F3
    one_bits = 0x3FF0000000000000 if m.f64 else 0x3F800000
    ix = m.iadd(m.bits(u), m.i(one_bits - sqrt_half_bits))
    k = m.isub(m.ashr(ix, m.i(m.mant)), m.i(m.bias))
    if subnormal:
        k = m.isub(k, m.sel(tiny, m.i(scale_bits), m.i(0)))
    mbits = m.iadd(m.and_(ix, m.i((1 << m.mant) - 1)), m.i(sqrt_half_bits))
    f = m.sub(m.from_bits(mbits), m.c(1.0))
    return m.b.convert(k, m.dtype), f, k


def _log1p_kernel(m: _Emitter, kf, f, extra=None):
    """``k*ln2 + log1p(f) + extra`` for ``f`` in about ``[sqrt(1/2)-1, sqrt(2)-1]``, ``extra`` tiny."""
    k = m.k
    lo_k = m.mul(kf, m.c(k["ln2_lo_short"]))
    if extra is not None:
        lo_k = m.add(lo_k, extra)
    if not m.f64:
        f2 = m.mul(f, f)
        f2_lo = m.fma(f, f, m.sub(m.c(-0.0), f2))  # f^2 = f2 + f2_lo exactly
        t = m.fma(f, m.horner(f, _LOG1P_F32), m.c(-0.5))
        lo = m.fma(f2_lo, t, m.fma(f2, t, lo_k))
        return m.fma(kf, m.c(k["ln2_hi_short"]), m.add(f, lo))
    # fdlibm's form: log1p(f) = f - (hfsq - s*(hfsq + R)),  R = z*Q(z), z = s^2
    s = m.div(f, m.add(m.c(2.0), f))
    z = m.mul(s, s)
    r = m.mul(z, m.horner(z, _LOG_S_F64))
    hfsq = m.mul(m.mul(m.c(0.5), f), f)
    inner = m.sub(hfsq, m.fma(s, m.add(hfsq, r), lo_k))
    return m.fma(kf, m.c(k["ln2_hi_short"]), m.sub(f, inner))


def _log(m, x):
    valid = m.and_(m.gt(x, m.c(0.0)), m.lt(x, m.c(float("inf"))))
    u = m.sel(valid, x, m.c(1.0))
    kf, f, _ = _log_reduce(m, u)
    res = _log1p_kernel(m, kf, f)
    # x == 0 -> -inf; x == +inf -> +inf; x < 0 or NaN -> NaN
    special = m.sel(m.eq(x, m.c(0.0)), m.c(float("-inf")), m.sel(m.gt(x, m.c(0.0)), x, m.c(float("nan"))))
    return m.sel(valid, res, special)


def _log1p(m, x):
    valid = m.and_(m.gt(x, m.c(-1.0)), m.lt(x, m.c(float("inf"))))
    xs = m.sel(valid, x, m.c(0.0))
    u, err = m.two_sum(m.c(1.0), xs)  # u + err == 1 + x exactly; u >= 2^-mant
    kf, f, k = _log_reduce(m, u, subnormal=False)
    # log(u + err) = log(u) + d/m with d = err/2^k (the rounding error of 1 + x in m's scale,
    # negligible once k is large) and 1/m ~ 1 - f to the few bits a correction needs
    kc = m.sel(m.cmp("gt", k, m.i(m.mant + 4)), m.i(m.mant + 4), k)
    d = m.mul(err, m.pow2(m.isub(m.i(0), kc)))
    res = _log1p_kernel(m, kf, f, m.fma(m.sub(m.c(-0.0), d), f, d))
    special = m.sel(m.eq(x, m.c(-1.0)), m.c(float("-inf")), m.sel(m.gt(x, m.c(0.0)), x, m.c(float("nan"))))
    res = m.sel(valid, res, special)
    return m.sel(m.eq(x, m.c(0.0)), x, res)  # log1p(-0.0) = -0.0


# --------------------------------------------------------------------------------------
# sin / cos
# --------------------------------------------------------------------------------------


def _sincos(m: _Emitter, x, is_cos):
    # The reduction runs in float64 for both types (for float32 it is then exact far beyond
    # float32's own Cody-Waite range).  q = rint(x*2/pi) by the 1.5*2^52 shifter, whose low
    # bits hold q mod 4 while |x*2/pi| < 2^51.  NaN and +-inf give r = NaN and so NaN.
    red = m if m.f64 else _Emitter(m.b, "float64")
    xr = x if m.f64 else m.b.convert(x, "float64")
    shifter = red.c(1.5 * 2.0**52)
    t = red.fma(xr, red.c(_K["float64"]["two_over_pi"]), shifter)
    q = red.sub(t, shifter)
    qi = red.bits(t)
    if not m.f64:
        qi = m.b.convert(qi, m.idt)
    c1, c2, c3 = _K["float64"]["pio2"]
    r = red.fma(q, red.c(-c1), xr)
    r = red.fma(q, red.c(-c2), r)
    if m.f64:
        r = red.fma(q, red.c(-c3), r)
    else:  # q*(pi/2 - c1 - c2) < 2^-75 is far below float32's needs
        r = m.b.convert(r, m.dtype)
    # |r| <= pi/4 (+ rounding) in the accurate range; beyond it keep the polynomials bounded
    bound = 0.9  # > pi/4 + the rounding of x*2/pi up to |x| ~ 1e15; the polynomials still hold there
    r = m.clamp_lo(m.clamp_hi(r, bound), -bound)
    if is_cos:
        qi = m.iadd(qi, m.i(1))
    r2 = m.mul(r, r)
    sin_r = m.fma(m.mul(r, r2), m.horner(r2, _SIN_S[m.dtype]), r)
    cos_r = m.fma(r2, m.fma(r2, m.horner(r2, _COS_C[m.dtype]), m.c(-0.5)), m.c(1.0))
    odd = m.cmp("ne", m.and_(qi, m.i(1)), m.i(0))
    v = m.sel(odd, cos_r, sin_r)
    sign = m.shl(m.and_(qi, m.i(2)), m.i((64 if m.f64 else 32) - 2))
    v = m.from_bits(m.xor(m.bits(v), sign))
    if not is_cos:
        v = m.sel(m.eq(x, m.c(0.0)), x, v)  # sin(-0.0) = -0.0
    return v


# --------------------------------------------------------------------------------------
# tanh, sigmoid, erf
# --------------------------------------------------------------------------------------


def _tanh(m, x):
    ax = m.clamp_hi(m.fabs(x), m.k["tanh_clamp"])
    t = _expm1_core(m, m.add(ax, ax))
    # q = t / (t + 2), with one correction step for the roundings of t + 2 and of the quotient
    d, d_err = m.two_sum(t, m.c(2.0))
    inv = m.div(m.c(1.0), d)
    q = m.mul(t, inv)
    e = m.fma(m.sub(m.c(-0.0), q), d, t)
    e = m.fma(m.sub(m.c(-0.0), q), d_err, e)
    q = m.fma(e, inv, q)
    return m.copysign(q, x)


def _sigmoid(m, x):
    e = _exp_core(m, m.sub(m.c(-0.0), m.fabs(x)))
    num = m.sel(m.lt(x, m.c(0.0)), e, m.c(1.0))
    # num / (1 + e), with one correction step for the roundings of 1 + e and of the quotient
    d, d_err = m.fast_two_sum(m.c(1.0), e)
    inv = m.div(m.c(1.0), d)
    q = m.mul(num, inv)
    r = m.fma(m.sub(m.c(-0.0), q), d, num)
    r = m.fma(m.sub(m.c(-0.0), q), d_err, r)
    return m.fma(r, inv, q)


def _erf(m, x):
    ax = m.fabs(x)
    c0, p = _ERF_SMALL[m.dtype]
    x2 = m.mul(ax, ax)
    small = m.fma(ax, m.c(c0), m.mul(ax, m.horner(x2, p)))
    centre, top, h = _ERFC_H[m.dtype]
    axc = m.clamp_hi(ax, top)
    e = _exp_core(m, m.mul(m.sub(m.c(-0.0), axc), axc), wide=False)
    hv = m.horner(m.sub(axc, m.c(centre)), h)
    big = m.fma(m.sub(m.c(-0.0), e), hv, m.c(1.0))
    return m.copysign(m.sel(m.lt(ax, m.c(1.0)), small, big), x)


# --------------------------------------------------------------------------------------
# pow
# --------------------------------------------------------------------------------------


def _log_dd(m: _Emitter, u):
    """``log(u)`` as a float64 double-word, relative error about 2^-68; ``u`` positive finite."""
    k = m.k
    kf, f, _ = _log_reduce(m, u)
    d, d_lo = m.fast_two_sum(m.c(2.0), f)
    inv = m.div(m.c(1.0), d)
    s = m.mul(f, inv)
    e = m.fma(m.sub(m.c(-0.0), s), d, f)
    e = m.fma(m.sub(m.c(-0.0), s), d_lo, e)
    s_lo = m.mul(e, inv)  # s + s_lo = f / (2 + f)
    # s^2 and s^3 as double-words
    p = m.mul(s, s)
    pe = m.fma(s, s, m.sub(m.c(-0.0), p))
    c3 = m.mul(p, s)
    c3e = m.fma(p, s, m.sub(m.c(-0.0), c3))
    c3e = m.fma(pe, s, c3e)
    c3e = m.fma(m.mul(m.c(3.0), p), s_lo, c3e)  # (s + s_lo)^3 ~ s^3 + 3 s^2 s_lo
    # (2/3) (c3 + c3e)
    tt_hi, tt_lo = 0.6666666666666666, 3.700743415417188e-17
    t_hi = m.mul(c3, m.c(tt_hi))
    t_lo = m.fma(c3, m.c(tt_hi), m.sub(m.c(-0.0), t_hi))
    t_lo = m.fma(c3e, m.c(tt_hi), m.fma(c3, m.c(tt_lo), t_lo))
    # s^5 Q5(s^2), tiny
    b5 = m.mul(m.mul(c3, p), m.horner(p, _LOG_S5_F64))
    b5 = m.fma(m.mul(m.mul(p, p), m.c(2.0)), s_lo, b5)  # d(0.4 s^5) = 2 s^4 ds
    a_hi = m.add(s, s)
    h, h_lo = m.fast_two_sum(a_hi, t_hi)
    lo = m.add(h_lo, m.add(m.add(m.add(s_lo, s_lo), t_lo), b5))
    # + k*ln2 (k*ln2_hi_short exact)
    kh = m.mul(kf, m.c(k["ln2_hi_short"]))
    l_hi, l_lo = m.fast_two_sum(kh, h)
    l_lo = m.add(l_lo, m.fma(kf, m.c(k["ln2_lo_short"]), lo))
    return m.fast_two_sum(l_hi, l_lo)


def _pow_core_f64(m: _Emitter, ax, y):
    """``exp(y * log(ax))`` for float64 ``ax`` positive finite and finite ``y``."""
    l_hi, l_lo = _log_dd(m, ax)
    z = m.mul(y, l_hi)
    z_lo = m.fma(y, l_hi, m.sub(m.c(-0.0), z))
    z_lo = m.fma(y, l_lo, z_lo)
    return _exp_core(m, z, z_lo)


def _pow_core_f32(m: _Emitter, ax, y):
    """``exp(y * log(ax))`` for float32 ``ax`` positive finite and finite ``y``, via float64."""
    md = _Emitter(m.b, "float64")
    kf, f, _ = _log_reduce(md, m.b.convert(ax, "float64"), subnormal=False)  # float32 values are normal in float64
    t = md.fma(f, md.horner(f, _POW32_LOG), md.c(-0.5))
    log = md.fma(kf, md.c(_K["float64"]["ln2_hi"]), md.fma(md.mul(f, f), t, f))
    z = md.mul(m.b.convert(y, "float64"), log)  # exact product of a float32 and ~2^-43 relative error
    return m.b.convert(_exp_core(md, z, coeffs=_POW32_EXPM1), m.dtype)


def _pow_generic(m: _Emitter, x, y, core):
    inf = m.c(float("inf"))
    one = m.c(1.0)
    ax = m.fabs(x)
    y_finite = m.lt(m.fabs(y), inf)
    y_int = m.and_(m.eq(m.floor(y), y), y_finite)
    hy = m.mul(y, m.c(0.5))
    y_odd = m.and_(y_int, m.ne(m.floor(hy), hy))
    x_signbit = m.cmp("lt", m.bits(x), m.i(0))
    ok = m.and_(m.and_(m.gt(ax, m.c(0.0)), m.lt(ax, inf)), y_finite)
    mag = core(m, m.sel(ok, ax, one), m.sel(ok, y, m.c(0.0)))
    # |x| in {0, inf} or |y| == inf: 0 or inf by the sign of y*log|x|; 1 when |x| == 1
    to_inf = m.cmp("eq", m.gt(ax, one), m.gt(y, m.c(0.0)))
    mag_special = m.sel(m.eq(ax, one), one, m.sel(to_inf, inf, m.c(0.0)))
    mag = m.sel(ok, mag, mag_special)
    res = m.sel(m.and_(x_signbit, y_odd), m.sub(m.c(-0.0), mag), mag)
    # finite x < 0 with finite non-integer y, or NaN anywhere -> NaN
    neg_nonint = m.and_(
        m.and_(m.lt(x, m.c(0.0)), m.gt(x, m.c(float("-inf")))),
        m.and_(y_finite, m.not_(y_int)),
    )
    res = m.sel(m.or_(neg_nonint, m.isnan(x, y)), m.c(float("nan")), res)
    # pow(x, +-0) = 1 and pow(1, y) = 1, even for NaN
    return m.sel(m.or_(m.eq(y, m.c(0.0)), m.eq(x, one)), one, res)


def _pow(m, x, y):
    return _pow_generic(m, x, y, _pow_core_f64 if m.f64 else _pow_core_f32)


# --------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------

_UNARY = {
    "exp": _exp,
    "log": _log,
    "log1p": _log1p,
    "expm1": _expm1,
    "sin": lambda m, x: _sincos(m, x, False),
    "cos": lambda m, x: _sincos(m, x, True),
    "tanh": _tanh,
    "sigmoid": _sigmoid,
    "erf": _erf,
}


def exp_nonpositive(builder: PrimBuilder, x) -> tuple:
    """``exp(x)`` for ``x <= 0``, ``-inf`` or NaN (a softmax's ``exp(s - max)``), cheaper than ``exp``.

    The same reduction and polynomial as ``exp`` (so the same error for
    normal results), without the overflow and subnormal handling: results
    below the smallest normal float (``x`` below about -87.3 for float32) are
    0, ``-inf`` gives 0 and NaN stays NaN.  ``x > 0`` is outside its contract.
    """
    m = _Emitter(builder, builder.dtype(x))
    lo = -87.33654475 if not m.f64 else -708.39641853
    tiny = m.lt(x, m.c(lo))
    value = _exp_core(m, m.sel(tiny, m.c(0.0), x), wide=False)
    return m.sel(tiny, m.c(0.0), value)


def emit_math(builder: PrimBuilder, name: str, args) -> tuple:
    """Emit the primitives of ``name(*args)`` and return the result's reference.

    ``args`` are references to float32 or float64 values of one dtype (two
    for ``pow``); the result has the same dtype.  Raises ValueError for an
    unknown name, a wrong number of arguments or a non-float dtype.
    """
    if name not in MATH_FUNCTIONS:
        raise ValueError(f"unknown math function {name!r}; known: {sorted(MATH_FUNCTIONS)}")
    args = list(args)
    nargs = 2 if name == "pow" else 1
    if len(args) != nargs:
        raise ValueError(f"{name} takes {nargs} argument(s), got {len(args)}")
    dtypes = [builder.dtype(a) for a in args]
    if dtypes[0] not in ("float32", "float64") or any(d != dtypes[0] for d in dtypes):
        raise ValueError(f"{name}: arguments must all be float32 or all float64, got {dtypes}")
    m = _Emitter(builder, dtypes[0])
    if name == "pow":
        return _pow(m, args[0], args[1])
    return _UNARY[name](m, args[0])
