"""The shared lowering of scalar ops into primitives, checked without any code generator.

Every scalar op on every dtype is lowered (with all optional primitives
native, and with none: the expansions a renderer without them gets) and run
by the primitives' reference interpreter, then compared with NumPy: exactly
(bits, NaN, signed zero) for everything but the math functions, within their
documented ulp bounds for those.  A renderer that implements each primitive
as :mod:`symexpr.kernel.prims` defines it therefore computes NumPy's results.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import ALL_DTYPES, FLOAT_DTYPES

from symexpr.kernel import mathfns, semantics
from symexpr.kernel.ir import Instr
from symexpr.kernel.prims import OPTIONAL, PRIMITIVES, PrimBuilder, interpret
from symexpr.ops import scalar as ps

CAPS = {"native": OPTIONAL, "expanded": frozenset()}

#: Math functions whose results are approximations (compared within MAX_ULP, float16 within one half-ulp more).
APPROXIMATE = {"exp", "log", "log1p", "expm1", "sin", "cos", "tanh", "sigmoid", "erf", "pow", "gelu", "silu"}


def _ops():
    ops = [v for v in vars(ps).values() if isinstance(v, ps.ScalarOp)]
    return sorted(set(ops), key=repr)


def _values(dtype):
    if dtype == "bool":
        return [False, True]
    if dtype.startswith("float"):
        info = np.finfo(dtype)
        vals = [0.0, -0.0, 1.0, -1.0, 0.5, -1.5, 2.5, 3.0, -7.25, 0.1, float(info.max), float(info.tiny),
                float(info.tiny) / 4, 1e4, -65504.0, 65520.0, float("nan"), float("inf"), float("-inf")]
        with np.errstate(over="ignore"):
            return [v for v in np.asarray(vals, dtype=dtype)]
    info = np.iinfo(dtype)
    vals = {0, 1, 2, 3, 7, 100, info.max, info.min, info.max - 1}
    if info.min < 0:
        vals |= {-1, -2, -3, -7, info.min + 1}
    return sorted(np.asarray(v, dtype=dtype)[()] for v in vals)


def _program(op, dtypes):
    out = op.out_dtype(*dtypes)
    return [Instr(op, tuple(("load", k) for k in range(len(dtypes))), out)], out


def _run(op, dtypes, caps, args):
    program, out = _program(op, dtypes)
    lowered = semantics.lower_program(program, lambda r: dtypes[r[1]], caps)
    env = {("load", k): np.asarray(a, dtype=dtypes[k] if dtypes[k] != "float16" else "float32")
           for k, a in enumerate(args)}
    # float16 operands live in float32 registers
    for k, d in enumerate(dtypes):
        if d == "float16":
            env[("load", k)] = np.asarray(np.float16(args[k]), dtype=np.float32)
    results = interpret(lowered.prims, env)
    ref = lowered.results[0]
    if ref[0] == "tmp":
        value = results[ref[1]]
    elif ref[0] == "const":
        value = np.asarray(ref[1], dtype=ref[2])[()]
    else:
        value = env[ref][()]
    return np.asarray(value).astype(out) if out == "float16" else np.asarray(value, dtype=out)


def _expected(op, dtypes, args):
    with np.errstate(all="ignore"):
        return np.asarray(op.impl(*[np.asarray([a], dtype=d) for a, d in zip(args, dtypes)]))[0]


def _ulps(got, want, dtype):
    if np.isnan(want) or np.isnan(got):
        return 0.0 if np.isnan(want) and np.isnan(got) else np.inf
    if np.isinf(want) or np.isinf(got):
        return 0.0 if got == want else np.inf
    with np.errstate(over="ignore"):
        spacing = np.spacing(np.abs(np.asarray(want, dtype=dtype)).astype(dtype))
    return float(abs(np.float64(got) - np.float64(want)) / np.float64(spacing))


def _out_of_range_cast(op, dtypes, args):
    """A float -> integer cast of a value the integer cannot hold: undefined in C, NumPy's result varies."""
    if op.name != "cast" or not dtypes[0].startswith("float") or op.dtype.startswith(("float", "bool")):
        return False
    value = float(args[0])
    info = np.iinfo(op.dtype)
    return not (np.isfinite(value) and info.min <= np.trunc(value) <= info.max)


def _check(op, dtypes, args, caps_name):
    got = _run(op, dtypes, CAPS[caps_name], args)
    want = _expected(op, dtypes, args)
    assert got.dtype == want.dtype, f"{op}{dtypes}: dtype {got.dtype}, NumPy {want.dtype}"
    if _out_of_range_cast(op, dtypes, args):
        return
    if op.name in APPROXIMATE and want.dtype.kind == "f":
        base = max(mathfns.MAX_ULP.values())
        bound = base + (1.0 if want.dtype == np.float16 else 0.0)
        if op.name in ("sin", "cos") and abs(float(args[0])) > mathfns.TRIG_ACCURATE_RANGE.get(str(want.dtype), 1e4):
            assert np.isnan(got) == np.isnan(want) and (np.isnan(got) or abs(got) <= 1), f"{op}{args}: {got}"
            return
        if op.name in ("gelu", "silu"):
            # several rounded steps, and 1 + tanh / x * sigmoid cancel in the tails: bound by the input's scale
            eps = float(np.finfo(want.dtype).eps)
            scale = max(1.0, abs(float(args[0]))) if np.isfinite(float(args[0])) else 1.0
            assert np.isnan(got) == np.isnan(want), f"{op}{tuple(args)}: {got!r} vs {want!r}"
            assert np.isnan(got) or got == want or abs(float(got) - float(want)) <= 8 * eps * scale, (
                f"{op}{tuple(args)} {caps_name}: {got!r} vs {want!r}")
            return
        if op.name == "pow":
            bound = 4.0 + bound  # exp(y*log x) near overflow
        err = _ulps(got, want, str(want.dtype))
        assert err <= bound or abs(float(got) - float(want)) < 1e-300, f"{op}{tuple(args)} {caps_name}: {got!r} vs {want!r} ({err} ulp)"
        return
    same = got.tobytes() == want.tobytes() or (want.dtype.kind == "f" and np.isnan(got) and np.isnan(want))
    assert same, f"{op}{tuple(args)} {caps_name}: got {got!r}, NumPy {want!r}"


def _cases():
    for op in _ops():
        for dtype in ALL_DTYPES:
            dtypes = ("bool", dtype, dtype) if op.name == "where" else (dtype,) * op.nin
            if semantics.supported(op, dtypes):
                yield op, dtypes


CASES = list(_cases())


@pytest.mark.parametrize("caps_name", sorted(CAPS))
@pytest.mark.parametrize("op,dtypes", CASES, ids=[f"{op}-{d[-1]}" for op, d in CASES])
def test_every_op_and_dtype_on_special_values(op, dtypes, caps_name):
    values = [_values(d) for d in dtypes]
    if len(dtypes) == 3:  # clip and where: a diagonal sample instead of the cube
        combos = [(values[0][i % len(values[0])], values[1][i % len(values[1])], values[2][(3 * i) % len(values[2])])
                  for i in range(len(values[1]) * 2)]
    else:
        combos = list(itertools.product(*values))
    for args in combos:
        _check(op, dtypes, args, caps_name)


@pytest.mark.parametrize("src", ALL_DTYPES)
def test_every_cast_pair(src):
    for dst in ALL_DTYPES:
        op = ps.Cast(dst)
        for caps_name in CAPS:
            for value in _values(src):
                _check(op, (src,), (value,), caps_name)


@settings(max_examples=300, deadline=None)
@given(
    op=st.sampled_from([op for op, d in CASES if len(d) <= 2]),
    data=st.data(),
    caps_name=st.sampled_from(sorted(CAPS)),
)
def test_random_operands(op, data, caps_name):
    dtype = data.draw(st.sampled_from([d[0] for o, d in CASES if o == op]))
    dtypes = (dtype,) * op.nin
    from hypothesis.extra import numpy as hnp

    args = [data.draw(hnp.from_dtype(np.dtype(dtype))) for _ in dtypes]
    _check(op, dtypes, args, caps_name)


def test_float16_arithmetic_rounds_once_per_op():
    # 2049 * 1 in float16 is 2048 (ties to even); float32 would keep 2049
    got = _run(ps.add, ("float16", "float16"), frozenset(), (np.float16(2048), np.float16(1)))
    assert got == np.float16(2048) + np.float16(1)


def test_lowering_uses_only_primitives_and_is_cached():
    program, _ = _program(ps.exp, ("float32",))
    a = semantics.lower_program(program, lambda r: "float32")
    hits = semantics._lower_normalised.cache_info().hits
    b = semantics.lower_program(program, lambda r: "float32")
    assert semantics._lower_normalised.cache_info().hits == hits + 1 and a == b
    assert {p.op for p in a.prims} <= set(PRIMITIVES)
    assert all(p.dtype in ("bool", "int32", "float32") for p in a.prims)


def test_negative_zero_literals_are_not_merged_with_positive_zero():
    x = ("load", 0)
    a = semantics.lower_program([Instr(ps.add, (x, ("const", -0.0, "float32")), "float32")], lambda r: "float32")
    b = semantics.lower_program([Instr(ps.add, (x, ("const", 0.0, "float32")), "float32")], lambda r: "float32")
    env = {x: np.asarray(-0.0, dtype=np.float32)}
    assert np.signbit(interpret(a.prims, env)[-1]) and not np.signbit(interpret(b.prims, env)[-1])


def test_renderer_without_native_float16_gets_integer_code():
    b = PrimBuilder(lambda r: "float32", frozenset())
    b.round_half(("load", 0))
    assert "f16_bits" not in {p.op for p in b.prims} and "f16_value" not in {p.op for p in b.prims}
    native = PrimBuilder(lambda r: "float32", OPTIONAL)
    native.round_half(("load", 0))
    assert [p.op for p in native.prims] == ["f16_bits", "f16_value"]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_unsupported_ops_are_refused(dtype):
    assert not semantics.supported(ps.bitwise_and, (dtype, dtype))
    with pytest.raises(semantics.UnsupportedScalar):
        semantics.lower_program(
            [Instr(ps.power, (("load", 0), ("load", 0)), "int32")], lambda r: "int32"
        )
