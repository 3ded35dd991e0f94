"""Fused attention: ``softmax(q @ swapaxes(k) * scale + mask) @ v`` as one op, with BLASST block skipping.

:class:`Attention` is what the attention-fusion pass puts in place of the
plain graph (and what :func:`fused_attention` builds directly).  It computes
attention tile by tile with an online softmax (FlashAttention), so the
``Lq x Lkv`` score matrix never exists in memory, and it may skip key tiles
whose scores are negligible (BLASST, Yuan et al. 2025, the skip-softmax rule
of NVIDIA's production kernels):

* queries are cut into tiles of ``block_q`` rows, keys into tiles of
  ``block_k``; for a query tile, key tiles are visited in order, keeping per
  row the running max ``m`` (-inf at first), the running sum ``l`` and the
  unnormalised output ``O``;
* with ``S`` the tile's scaled, masked logits, the tile is *skipped* when
  skipping is on, it is not the first tile the query tile visits, and every
  row ``r`` of the query tile has ``exp(rowmax(S_r) - m_r) < lambda``
  (float32): a skipped tile leaves ``m``, ``l`` and ``O`` untouched and its
  ``v`` is never read;
* ``lambda`` is ``threshold`` when given, or ``float32(scale_factor / Lkv)``
  (``decode_scale_factor`` instead for a call whose query length is 1, when
  given); skipping is off when ``lambda >= 1`` (and never skips anything
  when ``lambda == 0``);
* with ``causal="bottom_right"`` (or True), query ``i`` sees key ``j`` when
  ``j <= i + Lkv - Lq`` (as FlashAttention: a decode step's single query sees
  every key); with ``causal="top_left"`` when ``j <= i`` (``torch.tril``, what
  a mask built from two ``arange`` s gives); the two agree when ``Lq == Lkv``.
  Key tiles wholly past a query tile's last visible key are not visited at all.

* a decode step (``Lq == 1``) whose k and v are shared by the heads of
  leading axis -3 (GQA/MQA: k and v have size 1 there, q more) makes those
  heads the rows of its query tiles, as NVIDIA's XQA kernels do: the group's
  heads vote together, and k and v are read once per group.  A tile's counts
  are reported at its first head (the others' are 0).  With Lq == 1 causal
  masking is bottom-right (every key visible) or top-left (key 0 only); the
  top-left case is not grouped.
* when a call has few work items (query tiles of all leading points, fewer
  than :data:`SPLIT_TARGET_ITEMS`) and many key tiles, each query tile's key
  tiles are cut into :func:`key_splits` contiguous splits (flash-decoding):
  every split keeps its own ``m``, ``l`` and ``O``, and the first tile of each
  split is never skipped; the splits merge as a log-sum-exp
  (``out = sum_s exp(m_s - M) O_s / sum_s exp(m_s - M) l_s``, ``M = max_s m_s``).
  The split count depends on the shapes and tile sizes only, never on the
  thread count, so a call's skip decisions are the same everywhere.

A row whose visible logits are all ``-inf`` gives NaN, as :class:`~symexpr.ops.nnet.Softmax`
defines; NaN and ``+inf`` logits give NaN rows likewise.

The second output holds, per query tile, ``(visited, skipped)`` key tiles of
the last evaluation: :func:`symexpr.attention.stats` reads it.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from symexpr.graph.basic import Apply, Op
from symexpr.graph.type import TensorType, format_shape
from symexpr.ops.convert import as_tensor
from symexpr.ops.elemwise import broadcast_static

#: Floating dtypes :class:`Attention` takes (q, k, v and the mask share one).
ATTENTION_DTYPES = ("float16", "float32", "float64")
#: Causal alignments: key j is visible to query i when j <= i + offset, offset Lkv - Lq or 0.
CAUSAL_MODES = ("bottom_right", "top_left")
#: Default tile sizes (query rows x keys), for the CPU kernel.
DEFAULT_BLOCK_Q = 128
DEFAULT_BLOCK_K = 64
#: Below this many work items (query tiles over the leading dims) the key tiles are split (see :func:`key_splits`).
#: Kept small: each split's own running max makes BLASST skip less at a given lambda (decode of 12 heads at
#: 4k keys, split in 3, needed lambda 0.24 instead of 0.003 for 70% sparsity, at 2.7x the error).
SPLIT_TARGET_ITEMS = 8
#: The fewest key tiles a split gets.
MIN_SPLIT_TILES = 4
#: The most splits of one query tile's keys.
MAX_SPLITS = 16


def _causal_mode(causal):
    if causal is True:
        return "bottom_right"
    if causal is False or causal is None:
        return False
    if causal not in CAUSAL_MODES:
        raise ValueError(f"Attention: causal must be a bool or one of {', '.join(map(repr, CAUSAL_MODES))}, got {causal!r}")
    return causal


def key_splits(items: int, key_tiles: int) -> int:
    """How many splits the key tiles of each query tile are cut into (1: not split).

    Parameters
    ----------
    items : int
        Query tiles over all leading points (batch, heads): the work items
        there are without splitting.
    key_tiles : int
        ``ceil(Lkv / block_k)``.

    Returns
    -------
    int
        1 when there are :data:`SPLIT_TARGET_ITEMS` items or more, or fewer
        than ``2 * MIN_SPLIT_TILES`` key tiles; else enough splits to make
        about :data:`SPLIT_TARGET_ITEMS` items, each split at least
        :data:`MIN_SPLIT_TILES` tiles, at most :data:`MAX_SPLITS`.
    """
    if items <= 0 or items >= SPLIT_TARGET_ITEMS or key_tiles < 2 * MIN_SPLIT_TILES:
        return 1
    return max(1, min(-(-SPLIT_TARGET_ITEMS // items), key_tiles // MIN_SPLIT_TILES, MAX_SPLITS))


def call_splits(lead, lq: int, lkv: int, block_q: int, block_k: int) -> int:
    """:func:`key_splits` of a call: ``lead`` its leading dims (after decode grouping), ``lq`` rows, ``lkv`` keys."""
    return key_splits(math.prod(map(int, lead)) * -(-int(lq) // block_q), -(-int(lkv) // block_k))


def causal_offset(causal, lq: int, lkv: int) -> int:
    """``offset`` with key ``j`` visible to query ``i`` when ``j <= i + offset``."""
    return lkv - lq if causal == "bottom_right" else 0


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"Attention: {name} must be a positive integer, got {value!r}")
    return int(value)


def _optional_threshold(name: str, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"Attention: {name} must be None or a finite number >= 0, got {value!r}")
    return float(value)


class Attention(Op):
    """``softmax(q @ swapaxes(k, -1, -2) * scale + mask) @ v``, fused, with optional BLASST skipping.

    Inputs: ``q`` (..., Lq, d), ``k`` (..., Lkv, d), ``v`` (..., Lkv, dv) and,
    when ``has_mask``, an additive ``mask`` broadcastable to (..., Lq, Lkv);
    leading dimensions broadcast (GQA/MQA share k/v heads through a size-1
    axis).  Outputs: the attention (lead..., Lq, dv) and the tile counts
    (lead..., ceil(Lq / block_q), 2) int64 (visited, skipped key tiles per
    query tile).  See the module docstring for the exact semantics.

    Parameters
    ----------
    scale : float
        Multiplies ``q @ k^T`` before the mask is added.
    causal : bool or {"bottom_right", "top_left"}
        Causal masking (in addition to ``mask``); True is ``"bottom_right"``.
    threshold : float, optional
        ``lambda`` itself (FlashInfer's convention).
    scale_factor : float, optional
        ``lambda = scale_factor / Lkv`` (TensorRT-LLM's ``threshold_scale_factor``).
        At most one of ``threshold`` and ``scale_factor``; neither is dense attention.
    decode_scale_factor : float, optional
        With ``scale_factor``: the factor of calls whose query length is 1
        (decode steps), decided at run time.
    block_q, block_k : int
        Tile sizes; skip decisions depend on them.
    has_mask : bool
        Whether a fourth input, the additive mask, is given.
    """

    __props__ = ("scale", "causal", "threshold", "scale_factor", "block_q", "block_k", "has_mask", "decode_scale_factor")

    def __init__(self, scale: float, causal: bool = False, threshold=None, scale_factor=None,
                 block_q: int = DEFAULT_BLOCK_Q, block_k: int = DEFAULT_BLOCK_K, has_mask: bool = False,
                 decode_scale_factor=None):
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(scale):
            raise ValueError(f"Attention: scale must be a finite number, got {scale!r}")
        self.scale = float(scale)
        self.causal = _causal_mode(causal)
        self.threshold = _optional_threshold("threshold", threshold)
        self.scale_factor = _optional_threshold("scale_factor", scale_factor)
        if self.threshold is not None and self.scale_factor is not None:
            raise ValueError("Attention: give threshold or scale_factor, not both")
        self.decode_scale_factor = _optional_threshold("decode_scale_factor", decode_scale_factor)
        if self.decode_scale_factor is not None and self.scale_factor is None:
            raise ValueError("Attention: decode_scale_factor needs scale_factor (0 for dense prefill)")
        self.block_q = _positive_int("block_q", block_q)
        self.block_k = _positive_int("block_k", block_k)
        self.has_mask = bool(has_mask)

    @property
    def skipping(self) -> bool:
        """Whether a threshold is set (skipping may still be off for a given Lkv: see :meth:`skip_lambda`)."""
        return self.threshold is not None or self.scale_factor is not None

    def skip_lambda(self, lkv: int, lq: int = 2):
        """``lambda`` as float32 for ``lkv`` keys and ``lq`` queries, or None when nothing can be skipped."""
        if self.threshold is not None:
            lam = np.float32(self.threshold)
        elif self.scale_factor is not None:
            sf = self.decode_scale_factor if lq == 1 and self.decode_scale_factor is not None else self.scale_factor
            lam = np.float32(sf / max(int(lkv), 1))
        else:
            return None
        return lam if lam < 1 else None

    def display_name(self) -> str:
        parts = [f"scale={self.scale:g}"]
        if self.causal:
            parts.append("causal" if self.causal == "bottom_right" else f"causal={self.causal}")
        if self.has_mask:
            parts.append("mask")
        if self.threshold is not None:
            parts.append(f"lambda={self.threshold:g}")
        if self.scale_factor is not None:
            parts.append(f"sf={self.scale_factor:g}")
        if self.decode_scale_factor is not None:
            parts.append(f"decode sf={self.decode_scale_factor:g}")
        if self.skipping:
            parts.append(f"tiles={self.block_q}x{self.block_k}")
        return f"Attention{{{', '.join(parts)}}}"

    def pprint(self, node, args):
        extra = [f"scale={self.scale:g}"]
        if self.causal:
            extra.append(f"causal={self.causal!r}")
        for name in ("threshold", "scale_factor", "decode_scale_factor"):
            if getattr(self, name) is not None:
                extra.append(f"{name}={getattr(self, name):g}")
        if self.skipping:
            extra.append(f"tiles={self.block_q}x{self.block_k}")
        return f"attention({', '.join(list(args) + extra)})", 100

    def make_node(self, q, k, v, *mask) -> Apply:
        names = ("q", "k", "v") + (("mask",) if self.has_mask else ())
        inputs = [as_tensor(x) for x in (q, k, v, *mask)]
        if len(inputs) != len(names):
            raise TypeError(f"{self.display_name()}: expected inputs ({', '.join(names)}), got {len(inputs)} inputs")
        dtype = inputs[0].dtype
        for name, x in zip(names, inputs):
            if x.dtype not in ATTENTION_DTYPES:
                raise TypeError(f"{self.display_name()}: {name} must be a float tensor ({', '.join(ATTENTION_DTYPES)}), got {x.dtype}")
            if x.dtype != dtype:
                raise TypeError(f"{self.display_name()}: {name} is {x.dtype} but q is {dtype}: give every input one dtype")
        q, k, v = inputs[:3]
        for name, x in zip(names[:3], (q, k, v)):
            if x.ndim < 2:
                raise ValueError(f"{self.display_name()}: {name} must have at least 2 dimensions (..., L, d), got {format_shape(x.type.shape)}")
        qs, ks, vs = q.type.shape, k.type.shape, v.type.shape
        _same("d", qs[-1], ks[-1], "q and k", self, qs, ks)
        _same("Lkv", ks[-2], vs[-2], "k and v", self, ks, vs)
        lead = broadcast_static([qs[:-2], ks[:-2], vs[:-2]], f"{self.display_name()}: the leading dims of q, k and v")
        lq, lkv, dv = qs[-2], ks[-2], vs[-1]
        if self.has_mask:
            m = inputs[3].type.shape
            broadcast_static([m, lead + (lq, lkv)], f"{self.display_name()}: mask {format_shape(m)} against the scores")
            if len(m) > len(lead) + 2:
                raise ValueError(f"{self.display_name()}: mask {format_shape(m)} has more dimensions than the scores")
        # The tiles dim is left unknown: a pass that changes the tile sizes keeps the type.
        return Apply(self, inputs, [TensorType(dtype, lead + (lq, dv)), TensorType("int64", lead + (None, 2))])

    def infer_shape(self, node, input_shapes):
        qs, ks, vs = (tuple(s) for s in input_shapes[:3])
        if qs[-1] != ks[-1]:
            raise ValueError(f"{self.display_name()}: q has d={qs[-1]} but k has d={ks[-1]}")
        if ks[-2] != vs[-2]:
            raise ValueError(f"{self.display_name()}: k has {ks[-2]} keys but v has {vs[-2]}")
        try:
            lead = tuple(np.broadcast_shapes(qs[:-2], ks[:-2], vs[:-2]))
        except ValueError:
            raise ValueError(
                f"{self.display_name()}: the leading dims of q {qs}, k {ks} and v {vs} cannot be broadcast together"
            ) from None
        if self.has_mask:
            try:
                full = np.broadcast_shapes(tuple(input_shapes[3]), lead + (qs[-2], ks[-2]))
            except ValueError:
                full = None
            if full != lead + (qs[-2], ks[-2]):
                raise ValueError(
                    f"{self.display_name()}: mask {tuple(input_shapes[3])} does not broadcast to the scores "
                    f"{lead + (qs[-2], ks[-2])} (a mask that would enlarge the scores, e.g. several rows against one "
                    "query, is not something the fused op computes: compile with passes=['fast_run', '-attention'])"
                )
        return [lead + (qs[-2], vs[-1]), lead + (-(-qs[-2] // self.block_q), 2)]

    def perform(self, node, inputs):
        self.infer_shape(node, [np.shape(x) for x in inputs])  # the shape errors, named
        q, k, v = inputs[:3]
        mask = inputs[3] if self.has_mask else None
        out, counts = attention_reference(
            q, k, v, mask, self.scale, self.causal, self.skip_lambda(k.shape[-2], q.shape[-2]), self.block_q, self.block_k
        )
        return [out.astype(node.outputs[0].dtype), counts]


def _same(what, a, b, pair, op, sa, sb):
    if a is not None and b is not None and a != b:
        raise ValueError(f"{op.display_name()}: {pair} disagree on {what}: {format_shape(sa)} and {format_shape(sb)}")


def causal_visible(lq: int, lkv: int, causal="bottom_right") -> np.ndarray:
    """(Lq, Lkv) bool: query ``i`` sees key ``j`` when ``j <= i + offset`` (see :func:`causal_offset`)."""
    return np.arange(lkv)[None, :] <= np.arange(lq)[:, None] + causal_offset(causal, lq, lkv)


def decode_group_axis(q_shape, k_shape, v_shape, causal) -> bool:
    """Whether a call's heads of axis -3 form the rows of its query tiles (a GQA/MQA decode step)."""
    if len(q_shape) < 3 or q_shape[-2] != 1 or q_shape[-3] <= 1 or causal == "top_left":
        return False
    return all(len(s) < 3 or s[-3] == 1 for s in (k_shape, v_shape))


def attention_reference(q, k, v, mask, scale, causal, lam, block_q, block_k):
    """NumPy: the tiled online-softmax attention with the skip rule; ``(out, counts)``.

    ``lam`` is the float32 ``lambda`` or None (nothing skipped).  Computed in
    float32 (float64 for float64 inputs), vectorised over the leading dims and
    query tiles, one key tile at a time.  A GQA/MQA decode step
    (:func:`decode_group_axis`) runs with the group's heads as the rows.
    """
    q, k, v = np.asarray(q), np.asarray(k), np.asarray(v)
    if decode_group_axis(q.shape, k.shape, v.shape, _causal_mode(causal)):
        lead = tuple(np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2]))
        rows = q[..., 0, :]  # (..., G, d): the heads as query rows
        keys = k[..., 0, :, :] if k.ndim >= 3 else k
        values = v[..., 0, :, :] if v.ndim >= 3 else v
        row_mask = None
        if mask is not None:
            row_mask = np.broadcast_to(np.asarray(mask), lead + (1, k.shape[-2]))[..., 0, :]
        out, tile_counts = _tiled_attention(rows, keys, values, row_mask, scale, False, lam, block_q, block_k)
        counts = np.zeros(lead + (1, 2), np.int64)
        counts[..., ::block_q, 0, :] = tile_counts
        return out[..., None, :], counts
    return _tiled_attention(q, k, v, mask, scale, causal, lam, block_q, block_k)


def _tiled_attention(q, k, v, mask, scale, causal, lam, block_q, block_k):
    acc = np.float64 if q.dtype == np.float64 else np.float32
    q, k, v = (np.asarray(a, acc) for a in (q, k, v))
    lq, lkv, dv = q.shape[-2], k.shape[-2], v.shape[-1]
    lead = tuple(np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2]))
    q = np.broadcast_to(q, lead + q.shape[-2:])
    k = np.broadcast_to(k, lead + k.shape[-2:])
    v = np.broadcast_to(v, lead + v.shape[-2:])
    nqt = -(-lq // block_q)
    nkt = -(-lkv // block_k)
    splits = call_splits(lead, lq, lkv, block_q, block_k)
    counts = np.zeros(lead + (nqt, 2), np.int64)
    # per split: running max, sum and unnormalised output
    m = np.full((splits,) + lead + (lq,), -np.inf, acc)
    l = np.zeros((splits,) + lead + (lq,), acc)
    o = np.zeros((splits,) + lead + (lq, dv), acc)
    if mask is not None:
        mask = np.broadcast_to(np.asarray(mask, acc), lead + (lq, lkv))
    # the last key each query tile sees (causal), and so how many key tiles it visits
    tile_last_row = np.minimum((np.arange(nqt) + 1) * block_q, lq) - 1
    causal = _causal_mode(causal)
    last_key = tile_last_row + causal_offset(causal, lq, lkv) if causal else np.full(nqt, lkv - 1)
    visits = np.clip(-(-(last_key + 1) // block_k), 0, None) if lkv else np.zeros(nqt, np.int64)
    visits = np.minimum(visits, nkt)
    per = np.maximum(-(-visits // splits), 1)  # key tiles per split, per query tile
    visible = causal_visible(lq, lkv, causal) if causal else None
    pad = nqt * block_q - lq
    rows = np.arange(lq)
    with np.errstate(all="ignore"):
        for j in range(nkt):
            c0, c1 = j * block_k, min((j + 1) * block_k, lkv)
            s = np.matmul(q, np.swapaxes(k[..., c0:c1, :], -1, -2)) * acc(scale)
            if mask is not None:
                s = s + mask[..., c0:c1]
            if causal:
                s = np.where(visible[:, c0:c1], s, -np.inf)
            split = np.repeat(np.minimum(j // per, splits - 1), block_q)[:lq]  # per row: its tile's split
            first = np.repeat(j % per == 0, block_q)[:lq]  # per row: the first tile of its split
            tile_visits = np.repeat(j < visits, block_q)[:lq]  # per row: does its query tile visit this key tile
            m_cur, l_cur, o_cur = m[split, ..., rows], l[split, ..., rows], o[split, ..., rows, :]
            m_cur, l_cur, o_cur = np.moveaxis(m_cur, 0, -1), np.moveaxis(l_cur, 0, -1), np.moveaxis(o_cur, 0, -2)
            tmax = np.fmax.reduce(s, axis=-1)
            if lam is not None:
                row_skips = (np.exp((tmax - m_cur).astype(np.float32)) < lam) & ~first
                per_tile = np.concatenate([row_skips, np.ones(lead + (pad,), bool)], axis=-1)
                tile_skip = np.all(per_tile.reshape(lead + (nqt, block_q)), axis=-1)
            else:
                tile_skip = np.zeros(lead + (nqt,), bool)
            counts[..., 0] += j < visits
            counts[..., 1] += tile_skip & (j < visits)
            active = np.repeat(tile_skip, block_q, axis=-1)[..., :lq] == 0
            active &= tile_visits
            m_new = np.fmax(m_cur, tmax)
            m_use = np.where(m_new == -np.inf, acc(0), m_new)
            p = np.exp(s - m_use[..., None])
            alpha = np.exp(m_cur - m_use)
            l_new = l_cur * alpha + np.sum(p, axis=-1)
            o_new = o_cur * alpha[..., None] + np.matmul(p, v[..., c0:c1, :])
            m[split, ..., rows] = np.moveaxis(np.where(active, m_new, m_cur), -1, 0)
            l[split, ..., rows] = np.moveaxis(np.where(active, l_new, l_cur), -1, 0)
            o[split, ..., rows, :] = np.moveaxis(np.where(active[..., None], o_new, o_cur), -2, 0)
        if not lkv:  # no keys at all: softmax over an empty axis times an empty v is zeros, as the plain graph gives
            return o[0], counts
        if splits == 1:
            return o[0] / l[0][..., None], counts
        return _merge_splits(m, l, o, acc), counts


def _merge_splits(m, l, o, acc):
    """``sum_s w_s o_s / sum_s w_s l_s`` with ``w_s = exp(m_s - max_s m_s)``, split by split in order."""
    top = np.fmax.reduce(m, axis=0)
    top = np.where(top == -np.inf, acc(0), top)
    total = np.zeros_like(l[0])
    out = np.zeros_like(o[0])
    for m_s, l_s, o_s in zip(m, l, o):
        w = np.exp(m_s - top)
        total = total + w * l_s
        out = out + w[..., None] * o_s
    return out / total[..., None]


def fused_attention(q, k, v, mask=None, scale=None, causal=False, threshold=None, scale_factor=None,
                    block_q: int = DEFAULT_BLOCK_Q, block_k: int = DEFAULT_BLOCK_K):
    """``softmax(q @ swapaxes(k, -1, -2) * scale + mask) @ v`` as one :class:`Attention` op.

    Parameters
    ----------
    q, k, v : Variable
        (..., Lq, d), (..., Lkv, d), (..., Lkv, dv); leading dims broadcast.
    mask : Variable, optional
        Additive, broadcastable to (..., Lq, Lkv).
    scale : float, optional
        Default ``1 / sqrt(d)`` (d must then be known when the graph is built).
    causal : bool or {"bottom_right", "top_left"}
        Causal masking; True is ``"bottom_right"`` (see :class:`Attention`).
    threshold, scale_factor : float, optional
        BLASST skipping: ``lambda`` itself, or ``scale_factor / Lkv``.
    block_q, block_k : int
        Tile sizes.

    Returns
    -------
    Variable
        The attention, (lead..., Lq, dv).
    """
    q, k, v = (as_tensor(x) for x in (q, k, v))
    if scale is None:
        d = q.type.shape[-1] if q.ndim else None
        if d is None:
            raise ValueError("fused_attention: scale is needed when q's last dimension is not known at build time")
        scale = 1.0 / math.sqrt(d)
    op = Attention(scale, causal, threshold, scale_factor, block_q, block_k, mask is not None)
    args = (q, k, v) if mask is None else (q, k, v, mask)
    return op(*args)[0]
