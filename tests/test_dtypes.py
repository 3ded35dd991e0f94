"""symexpr.dtypes: the supported element types and NumPy 2 (NEP 50) promotion."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from support import ALL_DTYPES

import symexpr as se
from symexpr import dtypes as sd

EXPECTED_SUPPORTED = [
    "bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float16", "float32", "float64",
]


def _unsupported_spellings():
    out = ["complex64", np.complex64, np.dtype("complex128"), complex, "U", "U5", "S3", np.str_, object, "O",
           "datetime64[s]", "timedelta64[ns]", "V8", "foo", "int128"]
    if hasattr(np, "float128"):
        out += ["float128", np.float128]
    if np.dtype(np.longdouble) != np.dtype(np.float64):
        out += [np.longdouble]
    return out


def test_supported_dtypes_are_exactly_the_documented_set():
    assert list(sd.SUPPORTED_DTYPES) == EXPECTED_SUPPORTED
    assert ALL_DTYPES == EXPECTED_SUPPORTED
    assert sd.FLOAT_DTYPES == {"float16", "float32", "float64"}
    assert sd.INT_DTYPES == {d for d in EXPECTED_SUPPORTED if d[0] in "iu"}
    for d in EXPECTED_SUPPORTED:
        assert sd.is_float(d) == (np.dtype(d).kind == "f")
        assert sd.is_int(d) == (np.dtype(d).kind in "iu")


@pytest.mark.parametrize("name", EXPECTED_SUPPORTED)
def test_canonical_dtype_accepts_every_spelling(name):
    dt = np.dtype(name)
    for spelling in [name, dt, dt.type, dt.str, dt.char, np.dtype(name).newbyteorder("=")]:
        got = sd.canonical_dtype(spelling)
        assert got == name and isinstance(got, str), (spelling, got)


def test_canonical_dtype_python_types():
    assert sd.canonical_dtype(bool) == "bool"
    assert sd.canonical_dtype(int) == np.dtype(int).name == "int64"
    assert sd.canonical_dtype(float) == "float64"
    assert sd.canonical_dtype("float") == "float64"
    assert sd.canonical_dtype("f4") == "float32"
    assert sd.canonical_dtype("u1") == "uint8"
    assert sd.canonical_dtype("?") == "bool"


@pytest.mark.parametrize("bad", _unsupported_spellings(), ids=repr)
def test_canonical_dtype_rejects_unsupported_with_supported_list(bad):
    with pytest.raises(TypeError) as info:
        sd.canonical_dtype(bad, what="mything")
    msg = str(info.value)
    assert "mything" in msg
    for name in EXPECTED_SUPPORTED:
        assert name in msg, f"{name} missing from: {msg}"


@pytest.mark.parametrize("bad", ["complex64", "float128", "U", object, "datetime64[ms]"])
def test_tensor_with_unsupported_dtype_raises_type_error(bad):
    if bad == "float128" and not hasattr(np, "float128"):
        pytest.skip("no float128 here")
    with pytest.raises(TypeError, match="float32"):
        se.tensor("x", dtype=bad, shape=(2,))
    with pytest.raises(TypeError):
        se.vector("x", dtype=bad)
    with pytest.raises(TypeError):
        se.matrix("x", dtype=bad)
    with pytest.raises(TypeError):
        se.scalar("x", dtype=bad)


def test_tensor_with_supported_dtypes_canonicalises():
    for name in EXPECTED_SUPPORTED:
        dt = np.dtype(name)
        for spelling in (name, dt, dt.type):
            assert se.tensor("x", dtype=spelling, shape=(None,)).dtype == name


def test_constants_with_unsupported_dtypes_raise_type_error():
    for value in [np.array([1j]), np.array(["a"]), np.array([object()], dtype=object), 1j]:
        with pytest.raises(TypeError):
            se.constant(value)


@pytest.mark.parametrize("a", EXPECTED_SUPPORTED)
def test_promote_matches_numpy_for_all_pairs(a):
    for b in EXPECTED_SUPPORTED:
        want = np.result_type(np.dtype(a), np.dtype(b)).name
        got = sd.promote(a, b)
        assert got == want, (a, b, got, want)
        # cross-check with an operation on actual arrays
        assert np.concatenate([np.zeros((1,), a), np.zeros((1,), b)]).dtype.name == got
        assert np.maximum(np.zeros((1,), a), np.zeros((1,), b)).dtype.name == got
        assert sd.promote(b, a) == got


@given(st.lists(st.sampled_from(EXPECTED_SUPPORTED), min_size=1, max_size=5))
def test_promote_many_matches_numpy(names):
    assert sd.promote(*names) == np.result_type(*[np.dtype(n) for n in names]).name


@pytest.mark.parametrize("name", EXPECTED_SUPPORTED)
def test_float_result_matches_numpy_exp(name):
    want = np.exp(np.ones((1,), dtype=name)).dtype.name
    assert sd.float_result(name) == want
    assert np.sqrt(np.ones((1,), dtype=name)).dtype.name == want
    expected = {"bool": "float16", "int8": "float16", "uint8": "float16", "int16": "float32", "uint16": "float32"}
    assert want == expected.get(name, name if name.startswith("float") else "float64")


PY_SCALARS = st.one_of(
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.sampled_from([0, 1, -1, 127, 128, 255, 256, -129, 2**63 - 1, 2**63, -(2**63)]),
    st.floats(width=64),
)


@given(st.sampled_from(EXPECTED_SUPPORTED), PY_SCALARS)
def test_weak_scalar_dtype_matches_numpy_operations(name, value):
    """The dtype a Python scalar takes next to ``name`` is the dtype NumPy gives ``array OP scalar``."""
    x = np.zeros((1,), dtype=name)
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = np.maximum(x, value).dtype.name
    except OverflowError:
        assume(False)
    assert sd.weak_scalar_dtype(name, value) == want
    assert sd.weak_scalar_dtype(name, value) == np.result_type(np.dtype(name), value).name


def test_weak_scalar_dtype_examples():
    assert sd.weak_scalar_dtype("float32", 2.5) == "float32"
    assert sd.weak_scalar_dtype("float16", 2) == "float16"
    assert sd.weak_scalar_dtype("int8", 2) == "int8"
    assert sd.weak_scalar_dtype("int8", 2.5) == "float64"
    assert sd.weak_scalar_dtype("uint8", True) == "uint8"
    assert sd.weak_scalar_dtype("bool", True) == "bool"
    assert sd.weak_scalar_dtype("bool", 1) == "int64"
    assert sd.weak_scalar_dtype("bool", 1.0) == "float64"
    assert sd.weak_scalar_dtype("uint64", 1.0) == "float64"


@given(PY_SCALARS)
def test_default_scalar_dtype_matches_numpy(value):
    arr = np.asarray(value)
    if arr.dtype.name in EXPECTED_SUPPORTED:
        assert sd.default_scalar_dtype(value) == arr.dtype.name
    else:
        with pytest.raises(TypeError):
            sd.default_scalar_dtype(value)


def test_default_scalar_dtype_examples():
    assert sd.default_scalar_dtype(True) == "bool"
    assert sd.default_scalar_dtype(1) == "int64"
    assert sd.default_scalar_dtype(2**63) == "uint64"
    assert sd.default_scalar_dtype(1.5) == "float64"
    with pytest.raises(TypeError):
        sd.default_scalar_dtype(2**64)
    with pytest.raises(TypeError):
        sd.default_scalar_dtype(1j)


def test_is_python_scalar():
    for value in [True, False, 0, -5, 2**70, 1.5, float("nan")]:
        assert sd.is_python_scalar(value)
    # NumPy scalars are strong, even np.float64 which subclasses float
    strong = [np.float64(1.5), np.float32(1), np.int64(3), np.bool_(True), np.uint8(1), np.array(1.0)]
    for value in strong + [1j, "1", None]:
        assert not sd.is_python_scalar(value), value
