"""The packed int8 weight of a :class:`~symexpr.kernel.ir.QGemmKernel`: layout, packing, and the per-constant cache.

Layout.  A (K, N) int8 weight ``w`` becomes an int8 array of shape
``(n_pad / PANEL, G, PANEL, 4)`` with ``G = ceil(K / 4)`` and
:data:`PANEL` ``= 16``::

    packed[p, g, c, b] = w[4 * g + b, PANEL * p + c]    (0 where 4 * g + b >= K or PANEL * p + c >= N)

Each column's four consecutive ``k`` values are four adjacent bytes: one
int32 lane holds what a 4-way byte dot product (x86 ``vpdpbusd``, the
``vpmaddubsw`` + ``vpmaddwd`` pair, CUDA ``__dp4a``) multiplies with four
activation bytes.  One group of 4 ``k`` of a panel's 16 columns is 64 bytes
(one cache line), and a panel's groups follow each other: a column block of
16 columns (or of a divisor of 16: 4, 8) reads one contiguous stream of
``64 * G`` bytes as it walks down K, and a block of several panels (32, 64
columns) reads one stream per panel.  A vector of ``V <= 16`` int32 lanes
loaded at ``packed[p, g, c]`` (``c`` a multiple of ``V``) is ``V`` adjacent
columns.  (The earlier ``[G][n_pad][4]`` layout put each group of a column
block ``4 * n_pad`` bytes from the previous one, a new page every group for
large N.)  ``K`` is zero-padded to a multiple of 4, so a kernel may multiply
any activation bytes with the padding; ``N`` is zero-padded to a multiple of
:data:`N_ALIGN`, so a kernel may read whole column blocks of up to
:data:`N_ALIGN` columns (it must not store the padded columns).

Compensation.  The x86 instructions multiply *unsigned* activation bytes by
signed weight bytes.  A kernel feeds ``u = x + 128`` (``x ^ 0x80``) and
subtracts ``comp[j] = 128 * sum_k w[k, j]`` (int32, ``n_pad`` entries, 0 on the
padding) from each accumulator: ``sum u * w - comp = sum x * w`` exactly.

The weight is a graph constant, and plans are rebuilt for every new input
geometry: :func:`packed_weight` packs each constant once and keeps the result
for as long as the constant lives.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import numpy as np

#: ``n_pad`` is a multiple of this (the widest column block a kernel reads: 4 vectors of 16 int32 lanes).
N_ALIGN = 64
#: Columns per panel: a panel's groups of 4 ``k`` are contiguous, 64 bytes (a cache line) each.
PANEL = 16
#: The shift that turns int8 activations into the unsigned bytes the x86 instructions take.
ACTIVATION_SHIFT = 128
#: Byte alignment of the packed arrays' data.
DATA_ALIGN = 64


@dataclass(frozen=True)
class PackedWeight:
    """A packed (K, N) int8 weight: ``data`` int8 ``(n_pad / PANEL, ceil(K/4), PANEL, 4)``; ``comp`` int32."""

    k: int
    n: int
    n_pad: int
    data: np.ndarray
    comp: np.ndarray


def _aligned_empty(shape, dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.zeros(nbytes + DATA_ALIGN, dtype=np.uint8)
    start = (-raw.ctypes.data) % DATA_ALIGN
    return raw[start : start + nbytes].view(dtype).reshape(shape)


def pack_weight(w) -> PackedWeight:
    """Pack a (K, N) int8 weight (see the module docstring for the layout).

    Parameters
    ----------
    w : array_like
        int8 matrix of shape (K, N).

    Returns
    -------
    PackedWeight
        Read-only arrays, 64-byte aligned.
    """
    w = np.asarray(w)
    if w.ndim != 2 or w.dtype != np.int8:
        raise ValueError(f"pack_weight: expected an int8 (K, N) matrix, got {w.dtype} {w.shape}")
    k, n = w.shape
    groups = -(-k // 4)
    n_pad = -(-n // N_ALIGN) * N_ALIGN
    data = _aligned_empty((n_pad // PANEL, groups, PANEL, 4), np.int8)
    padded = np.zeros((groups * 4, n_pad), dtype=np.int8)
    padded[:k, :n] = w
    # padded[4g + b, PANEL p + c] -> data[p, g, c, b]
    data[...] = padded.reshape(groups, 4, n_pad // PANEL, PANEL).transpose(2, 0, 3, 1)
    comp = _aligned_empty((n_pad,), np.int32)
    comp[:n] = (ACTIVATION_SHIFT * w.sum(axis=0, dtype=np.int64)).astype(np.int32)  # modulo 2^32, like the sums
    comp[n:] = 0
    data.flags.writeable = False
    comp.flags.writeable = False
    return PackedWeight(int(k), int(n), int(n_pad), data, comp)


def unpack_weight(packed: PackedWeight) -> np.ndarray:
    """The (K, N) int8 weight ``packed`` was made from (the inverse of :func:`pack_weight`)."""
    groups = packed.data.shape[1]
    full = packed.data.transpose(1, 3, 0, 2).reshape(groups * 4, packed.n_pad)
    return np.ascontiguousarray(full[: packed.k, : packed.n])


#: ``id(constant) -> (weak reference to it, PackedWeight)``.  Keyed by id: a variable's ``==``
#: builds a graph node, so it cannot key a WeakKeyDictionary; a finalizer drops the entry.
_cache: dict = {}
_cache_lock = threading.Lock()


def packed_weight(constant) -> PackedWeight:
    """The packed form of a graph constant's (K, N) int8 data, packed on first use and kept while it lives.

    Parameters
    ----------
    constant : Constant
        The weight constant (any object with ``data`` that a weak reference can point to).
    """
    key = id(constant)
    with _cache_lock:
        entry = _cache.get(key)
    if entry is not None and entry[0]() is constant:
        return entry[1]
    packed = pack_weight(constant.data)
    with _cache_lock:
        entry = _cache.get(key)
        if entry is not None and entry[0]() is constant:
            return entry[1]
        PACK_STATS["packs"] += 1
        _cache[key] = (weakref.ref(constant), packed)
    weakref.finalize(constant, _forget, key, _cache[key][0])
    return packed


def _forget(key, ref) -> None:
    with _cache_lock:
        entry = _cache.get(key)
        if entry is not None and entry[0] is ref:
            del _cache[key]


#: ``packs``: how many times :func:`packed_weight` packed a weight (a cache miss).
PACK_STATS = {"packs": 0}
