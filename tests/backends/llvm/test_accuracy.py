"""Float32 reductions are as accurate as NumPy's pairwise summation, on long rows and whole arrays.

Errors are measured in units in the last place (ulp) of the float32 result,
against the sum computed in float64.  NumPy's pairwise sum has errors of
about 0.2-0.8 ulp on these sizes; a plain running sum over 10**6 elements is
several ulp off.
"""

from __future__ import annotations

import numpy as np
import pytest

import symexpr as se


@pytest.fixture(autouse=True, params=["host", "x86-64", "x86-64-v3"])
def cpu(request, monkeypatch):
    """Each test runs for the host and for narrower vector units (the block geometry depends on them)."""
    from symexpr.backends.llvm import target

    monkeypatch.setenv("SYMEXPR_CACHE", "0")
    if request.param != "host":
        if not target.can_run(request.param):
            pytest.skip(f"this CPU cannot run code for {request.param}")
        monkeypatch.setenv("SYMEXPR_CPU", request.param)
    return request.param


def _ulp_error(got, exact):
    got = np.asarray(got, dtype=np.float64)
    return np.abs(got - exact) / np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)


def _data(rng, shape):
    # mostly [0, 1), with rare large values: cancellation-free but with a wide dynamic range
    a = rng.random(shape, dtype=np.float32)
    a += (rng.random(shape, dtype=np.float32) < 1e-3) * np.float32(1000)
    return a


@pytest.mark.parametrize("n", [10**6, 4 * 10**6])
def test_full_sum_and_mean(n):
    x = se.vector("x", dtype="float32")
    f = se.function([x], [se.sum(x), se.mean(x)], backend="llvm")
    rng = np.random.default_rng(n)
    ours, theirs = [], []
    for _ in range(6):
        a = _data(rng, n)
        exact = a.astype(np.float64).sum()
        s, m = f(a)
        ours += [_ulp_error(s, exact), _ulp_error(m, exact / n)]
        theirs += [_ulp_error(a.sum(), exact), _ulp_error(a.mean(), exact / n)]
    ours, theirs = np.array(ours), np.array(theirs)
    assert ours.max() <= max(1.0, 1.5 * theirs.max()), (ours, theirs)
    assert ours.mean() <= theirs.mean() + 0.25, (ours.mean(), theirs.mean())


@pytest.mark.parametrize("width", [1000, 8192, 65536])
def test_row_sums(width):
    x = se.matrix("x", dtype="float32")
    f = se.function([x], se.sum(x, axis=1), backend="llvm")
    a = _data(np.random.default_rng(width), (64, width))
    exact = a.astype(np.float64).sum(axis=1)
    ours, theirs = _ulp_error(f(a), exact), _ulp_error(a.sum(axis=1), exact)
    assert ours.max() <= max(1.0, 1.5 * theirs.max()), (ours.max(), theirs.max())
    assert ours.mean() <= theirs.mean() + 0.25, (ours.mean(), theirs.mean())


def _softmax64(a):
    e = np.exp(a.astype(np.float64) - a.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _layer_norm64(a):
    a = a.astype(np.float64)
    mu = a.mean(axis=-1, keepdims=True)
    return (a - mu) / np.sqrt(((a - mu) ** 2).mean(axis=-1, keepdims=True) + 1e-5)


@pytest.mark.parametrize("op", ["softmax", "layer_norm"])
def test_wide_row_normalisations(op):
    """On 65,536-wide rows the error is no worse than NumPy's own float32 computation's."""
    x = se.matrix("x", dtype="float32")
    out = se.softmax(x, axis=-1) if op == "softmax" else se.layer_norm(x, None, None, eps=1e-5)
    f = se.function([x], out, backend="llvm")
    a = (np.random.default_rng(3).standard_normal((8, 65536)) * 4).astype(np.float32)
    if op == "softmax":
        exact = _softmax64(a)
        e = np.exp(a - a.max(axis=-1, keepdims=True))
        numpy32 = e / e.sum(axis=-1, keepdims=True)
    else:
        exact = _layer_norm64(a)
        mu = a.mean(axis=-1, keepdims=True)
        numpy32 = (a - mu) / np.sqrt(((a - mu) ** 2).mean(axis=-1, keepdims=True) + np.float32(1e-5))
    ours = np.abs(f(a) - exact).max() / np.abs(exact).max()
    theirs = np.abs(numpy32 - exact).max() / np.abs(exact).max()
    assert ours <= 1.5 * theirs + 2 * np.finfo(np.float32).eps, (ours, theirs)


def test_strided_row_sums():
    """A strided inner loop is not vectorised; its sum must not become one long float32 chain."""
    x = se.matrix("x", dtype="float32")
    f = se.function([x], se.sum(x, axis=1), backend="llvm")
    a = _data(np.random.default_rng(5), (16, 2 * 8192))[:, ::2]
    exact = a.astype(np.float64).sum(axis=1)
    ours, theirs = _ulp_error(f(a), exact), _ulp_error(a.sum(axis=1), exact)
    assert ours.max() <= max(1.0, 1.5 * theirs.max()), (ours.max(), theirs.max())
