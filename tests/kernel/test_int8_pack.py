"""The packed int8 weight layout of the int8 GEMM step, its compensation, and the once-per-constant cache."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import symexpr as se
from symexpr.kernel import int8_pack


@pytest.mark.parametrize("k, n", [(1, 1), (4, 64), (5, 3), (300, 100), (7, 65), (9, 130)])
def test_layout(k, n):
    rng = np.random.default_rng(k * n)
    w = rng.integers(-128, 127, size=(k, n), endpoint=True).astype(np.int8)
    p = int8_pack.pack_weight(w)
    groups = -(-k // 4)
    panel = int8_pack.PANEL
    assert p.data.shape == (p.n_pad // panel, groups, panel, 4) and p.data.dtype == np.int8
    assert p.n_pad % int8_pack.N_ALIGN == 0 and p.n_pad - n < int8_pack.N_ALIGN
    assert int8_pack.N_ALIGN % panel == 0 and panel * 4 == 64  # one group of a panel: one cache line
    for g, j, b in [(0, 0, 0), (groups - 1, n - 1, (k - 1) % 4), (groups // 2, n // 2, 1 % min(k, 4))]:
        if 4 * g + b < k:
            assert p.data[j // panel, g, j % panel, b] == w[4 * g + b, j]
    # byte offset of w[kk, j] in the flat buffer: a panel's groups are contiguous
    flat_bytes = p.data.reshape(-1)
    for kk, j in [(0, 0), (k - 1, n - 1), (k // 2, n // 2)]:
        at = (j // panel) * groups * panel * 4 + (kk // 4) * panel * 4 + (j % panel) * 4 + kk % 4
        assert flat_bytes[at] == w[kk, j]
    flat = p.data.transpose(1, 3, 0, 2).reshape(groups * 4, p.n_pad)
    assert not flat[k:].any() and not flat[:, n:].any()  # zero padding
    np.testing.assert_array_equal(int8_pack.unpack_weight(p), w)
    np.testing.assert_array_equal(p.comp[:n], 128 * w.astype(np.int64).sum(axis=0))
    assert not p.comp[n:].any() and p.comp.dtype == np.int32
    for a in (p.data, p.comp):
        assert a.ctypes.data % int8_pack.DATA_ALIGN == 0 and not a.flags.writeable


def test_extreme_compensation_wraps_like_int32():
    w = np.full((65536, 2), -128, np.int8)
    assert int8_pack.pack_weight(w).comp[0] == -(2**30)
    w = np.full((1 << 17, 1), 127, np.int8)  # 128 * 127 * 2^17 > 2^31: kept modulo 2^32, as the accumulators are
    assert int8_pack.pack_weight(w).comp[0] == np.int64(128 * 127 * (1 << 17)).astype(np.int32)


def test_rejects_other_inputs():
    with pytest.raises(ValueError):
        int8_pack.pack_weight(np.zeros((3, 3), np.int16))
    with pytest.raises(ValueError):
        int8_pack.pack_weight(np.zeros(3, np.int8))


def test_packed_once_per_constant_and_dropped_with_it():
    c = se.constant(np.arange(24, dtype=np.int8).reshape(6, 4), name="w_pack_test")
    before = int8_pack.PACK_STATS["packs"]
    first = int8_pack.packed_weight(c)
    assert int8_pack.packed_weight(c) is first
    assert int8_pack.PACK_STATS["packs"] - before == 1
    key = id(c)
    del c, first
    gc.collect()
    assert key not in int8_pack._cache
