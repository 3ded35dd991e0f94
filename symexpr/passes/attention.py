"""Attention fusion: ``softmax(q @ k^T * scale + mask) @ v`` becomes one :class:`~symexpr.ops.attention.Attention`.

The pattern is matched after ``stabilize`` (which turns a hand-written
``exp(s - max(s)) / sum(exp(s - max(s)))`` into ``Softmax``) and before
elementwise fusion, on the forms users write:

* ``k`` transposed by ``.T``, ``transpose`` or ``swapaxes`` (any transpose
  swapping the last two axes), or any other ``(..., d, Lkv)`` operand (then
  swapped back);
* scalar constant scales on ``q``, on ``k`` or on the scores, multiplied or
  divided, in any number, and additive terms (the mask: padding, causal,
  constants; several are summed), in any order around the scale;
* a causal mask ``where(j <= i, 0, -inf)`` built from two ``arange`` s (or
  ``j > i`` with the values swapped, or a constant holding that pattern)
  becomes the op's structural ``causal="top_left"``, when its lengths are
  provably q's and k's (followed back through reshapes, transposes and
  slices); other masks are read as they are;
* any leading layout: batched and multi-head (B, H, L, d), a (B, L, H, d)
  layout reached through reshape/transpose (a strided view), and GQA/MQA
  k/v heads shared by broadcasting.

The softmax must be over the last axis and read by nothing else.
:class:`Blasst` sets the skip threshold of every fused attention op.
"""

from __future__ import annotations

import numbers

import numpy as np

from symexpr.graph.basic import Constant
from symexpr.graph.fgraph import FunctionGraph
from symexpr.ops import elemwise as ew
from symexpr.ops import shape as shape_ops
from symexpr.ops.attention import ATTENTION_DTYPES, DEFAULT_BLOCK_K, DEFAULT_BLOCK_Q, Attention, causal_visible
from symexpr.ops.creation import ARange
from symexpr.ops.elemwise import Elemwise
from symexpr.ops.indexing import Subtensor
from symexpr.ops.matmul import MatMul
from symexpr.ops.nnet import Softmax
from symexpr.ops.sizes import ShapeOf


#: Names of the side outputs :class:`Blasst` adds (see ``FunctionGraph.add_side_outputs``).
COUNTS = "attention_counts"
QUERY_LENGTHS = "attention_query_lengths"
KEY_LENGTHS = "attention_key_lengths"


def _scalar_constant(var):
    """The value of a constant holding one number (any rank of size-1 dims), else None."""
    if isinstance(var, Constant) and np.size(var.data) == 1 and np.issubdtype(np.asarray(var.data).dtype, np.number):
        value = float(np.asarray(var.data).reshape(()))
        return value if np.isfinite(value) and value != 0 else None
    return None


def _binary(var, name):
    node = var.owner
    if node is not None and isinstance(node.op, Elemwise) and node.op.scalar_op.name == name and len(node.inputs) == 2:
        return node.inputs
    return None


def _peel_scale(var):
    """``(x, c)`` with ``var == x * c`` for a product of scalar constants (c = 1 when there is none)."""
    scale = 1.0
    while True:
        found = None
        for name in ("mul", "true_div"):
            pair = _binary(var, name)
            if pair is None:
                continue
            a, b = pair
            cb, ca = _scalar_constant(b), _scalar_constant(a)
            if cb is not None and _same_shape(a, var):
                found = (a, cb if name == "mul" else 1.0 / cb)
            elif ca is not None and name == "mul" and _same_shape(b, var):
                found = (b, ca)
            if found:
                break
        if found is None:
            return var, scale
        var, factor = found
        scale *= factor


def _same_shape(a, b) -> bool:
    return a.ndim == b.ndim and a.dtype == b.dtype


#: Adds, subtractions and scalings :func:`_linear_form` looks through (a long chain is not attention).
MAX_FORM_DEPTH = 32


def _linear_form(var, depth: int = 0, memo=None):
    """``(alpha, qk, terms)``: ``var == alpha * qk + sum(beta * term)``, qk the one MatMul it holds, or None.

    ``memo`` (by variable) keeps a graph that reuses subexpressions (``s + s``) from
    being explored once per path.
    """
    memo = {} if memo is None else memo
    if id(var) not in memo:
        memo[id(var)] = None if depth > MAX_FORM_DEPTH else _linear_form_of(var, depth, memo)
    return memo[id(var)]


def _linear_form_of(var, depth, memo):
    pair = None
    for name, sign in (("add", 1.0), ("sub", -1.0)):
        pair = _binary(var, name)
        if pair is not None:
            a, b = pair
            left, right = _linear_form(a, depth + 1, memo), _linear_form(b, depth + 1, memo)
            if left is not None and right is None:
                return left[0], left[1], left[2] + [(sign, b)]
            if right is not None and left is None and sign > 0:
                return right[0], right[1], right[2] + [(1.0, a)]
            return None
    for name in ("mul", "true_div"):
        pair = _binary(var, name)
        if pair is None:
            continue
        a, b = pair
        c = _scalar_constant(b)
        inner = a
        if c is None and name == "mul":
            c, inner = _scalar_constant(a), b
        if c is None:
            return None
        c = c if name == "mul" else 1.0 / c
        form = _linear_form(inner, depth + 1, memo)
        if form is None:
            return None
        return form[0] * c, form[1], [(beta * c, t) for beta, t in form[2]]
    if var.owner is not None and isinstance(var.owner.op, MatMul):
        return 1.0, var, []
    return None


def _swap_last(var):
    axes = tuple(range(var.ndim - 2)) + (var.ndim - 1, var.ndim - 2)
    return shape_ops.transpose(var, axes)


def _unswapped(kt):
    """``k`` with ``kt == swapaxes(k, -1, -2)``: one transpose (or none) of what ``kt`` transposes."""
    node = kt.owner
    if node is not None and isinstance(node.op, shape_ops.Transpose):
        n = kt.ndim
        axes = node.op.axes[:-2] + (node.op.axes[-1], node.op.axes[-2])
        if axes == tuple(range(n)):
            return node.inputs[0]
        return shape_ops.transpose(node.inputs[0], axes)
    return _swap_last(kt)


def _mask_fits(mask, scores) -> bool:
    """Whether ``mask`` broadcast against the scores leaves the scores' shape as it is."""
    if mask.ndim > scores.ndim:
        return False
    for m, s in zip(reversed(mask.type.shape), reversed(scores.type.shape)):
        if m == 1 or (m is not None and m == s) or (m is None and s is None):
            continue
        return False
    return True


# -- causal masks ---------------------------------------------------------------------------------
def _dim_source(var, axis: int, depth: int = 0):
    """What decides the size of ``var``'s dimension ``axis``, followed back through views.

    Two equal results mean equal sizes at run time: ``("static", n)``, or the
    dimension of an input or of a node that is not a view.  Unequal results
    prove nothing.
    """
    axis %= max(var.ndim, 1)
    n = var.type.shape[axis]
    if n is not None:
        return ("static", int(n))
    node = var.owner
    if node is None or depth > 64:
        return ("dim", id(var), axis)
    op = node.op
    if isinstance(op, shape_ops.Transpose):
        return _dim_source(node.inputs[0], op.axes[axis], depth + 1)
    if isinstance(op, shape_ops.Reshape) and op.shape[axis] is None:
        k = sum(1 for e in op.shape[:axis] if e is None)  # the size inputs follow x, one per None
        return _size_source(node.inputs[1 + k], depth + 1)
    if isinstance(op, Subtensor):
        source, out_axis = 0, 0
        for entry in op.idx:
            if entry[0] == "newaxis":
                out_axis += 1
                continue
            if entry[0] == "slice":
                if out_axis == axis:
                    full = entry[1] is None and entry[2] is None and entry[3] in (None, 1)
                    return _dim_source(node.inputs[0], source, depth + 1) if full else ("dim", id(var), axis)
                out_axis += 1
            source += 1
        return _dim_source(node.inputs[0], source + axis - out_axis, depth + 1)
    return ("dim", id(var), axis)


def _size_source(size, depth: int = 0):
    """:func:`_dim_source` of the dimension a 0-d int64 size expression reads, or the expression itself."""
    if isinstance(size, Constant):
        return ("static", int(np.asarray(size.data)))
    if size.owner is not None and isinstance(size.owner.op, ShapeOf):
        return _dim_source(size.owner.inputs[0], size.owner.op.axis, depth + 1)
    return ("size", id(size))


def _arange_length(var):
    """The size source of ``arange(0, n, 1)`` under an ``expand_dims``, and the axis the arange runs along."""
    node = var.owner
    if node is None or not isinstance(node.op, shape_ops.ExpandDims) or var.ndim != 2:
        return None
    inner = node.inputs[0]
    if inner.owner is None or not isinstance(inner.owner.op, ARange):
        return None
    op = inner.owner.op
    if op.start != 0 or op.step != 1:
        return None
    length = _size_source(inner.owner.inputs[0]) if op.stop is None else ("static", int(op.stop))
    along = 1 if tuple(node.op.axes) == (0,) else 0 if tuple(node.op.axes) == (1,) else None
    return None if along is None else (length, along)


def _is_top_left_causal(term, q, k) -> bool:
    """Whether ``term`` is ``where(j <= i, 0, -inf)`` over (Lq, Lkv): key ``j`` hidden from query ``i > ...``.

    Either a constant equal to that pattern for q's and k's static lengths,
    or ``where`` of a comparison of two ``arange(n)``, one along each axis,
    whose lengths are provably q's and k's.
    """
    lq, lkv = _dim_source(q, -2), _dim_source(k, -2)
    if isinstance(term, Constant):
        data = np.asarray(term.data)
        if lq[0] != "static" or lkv[0] != "static" or data.ndim < 2 or data.shape[-2:] != (lq[1], lkv[1]):
            return False
        if any(n != 1 for n in data.shape[:-2]):
            return False
        want = np.where(causal_visible(lq[1], lkv[1], "top_left"), 0.0, -np.inf)
        return bool(np.array_equal(data.reshape(want.shape), want))
    node = term.owner
    if node is not None and isinstance(node.op, Elemwise) and node.op.scalar_op.name == "cast":
        term, node = node.inputs[0], node.inputs[0].owner
    if node is None or not isinstance(node.op, Elemwise) or node.op.scalar_op.name != "where":
        return False
    cond, a, b = node.inputs
    va, vb = (np.asarray(x.data) if isinstance(x, Constant) and np.size(x.data) == 1 else None for x in (a, b))
    if va is None or vb is None:
        return False
    va, vb = float(va.reshape(())), float(vb.reshape(())),
    if (va, vb) == (0.0, -np.inf):
        visible_when = {"le": "j<=i", "ge": "i>=j"}
    elif (va, vb) == (-np.inf, 0.0):
        visible_when = {"gt": "j<=i", "lt": "i>=j"}
    else:
        return False
    if cond.owner is None or not isinstance(cond.owner.op, Elemwise):
        return False
    name = cond.owner.op.scalar_op.name
    if name not in visible_when:
        return False
    left, right = (_arange_length(x) for x in cond.owner.inputs)
    if left is None or right is None:
        return False
    # "j<=i": the left operand runs along keys (axis 1) and the right along queries (axis 0); "i>=j" the reverse
    keys, queries = (left, right) if visible_when[name] == "j<=i" else (right, left)
    return keys[1] == 1 and queries[1] == 0 and keys[0] == lkv and queries[0] == lq


def match_attention(node, clients):
    """The :class:`Attention` output replacing ``node`` (a ``MatMul(softmax(scores), v)``), or None."""
    if not isinstance(node.op, MatMul):
        return None
    p, v = node.inputs
    sm = p.owner
    if sm is None or not isinstance(sm.op, Softmax) or tuple(sm.op.axis) != (p.ndim - 1,) or p.ndim < 2 or v.ndim < 2:
        return None
    if len(clients.get(p, ())) != 1:
        return None
    form = _linear_form(sm.inputs[0])
    if form is None:
        return None
    alpha, qk, terms = form
    a, kt = qk.owner.inputs
    if a.ndim < 2 or kt.ndim < 2 or qk.ndim != sm.inputs[0].ndim:
        return None
    q, cq = _peel_scale(a)
    kt, ck = _peel_scale(kt)
    k = _unswapped(kt)
    scale = alpha * cq * ck
    dtype = q.dtype
    # one dtype throughout: a float64 scale (np.sqrt's result) promotes float32 scores, and the op would not
    if dtype not in ATTENTION_DTYPES or any(x.dtype != dtype for x in (k, v, sm.inputs[0], node.outputs[0])):
        return None
    mask, causal = None, False
    for beta, term in terms:
        if term.dtype != dtype or not _mask_fits(term, qk):
            return None
        if not causal and beta > 0 and _is_top_left_causal(term, q, k):
            causal = "top_left"  # hidden keys structurally: the kernel never visits their tiles
            continue
        term = term if beta == 1.0 else ew.mul(term, Constant(np.asarray(beta, dtype)))
        mask = term if mask is None else ew.add(mask, term)
    if not isinstance(scale, numbers.Real) or not np.isfinite(scale):
        return None
    op = Attention(scale, causal=causal, has_mask=mask is not None)
    try:
        out = op(q, k, v, *(() if mask is None else (mask,)))[0]
    except (TypeError, ValueError):
        return None
    return out if node.outputs[0].type.is_compatible(out.type) else None


def fuse_attention(fgraph: FunctionGraph) -> None:
    """Replace every ``softmax(q @ k^T * scale + mask) @ v`` by one fused :class:`Attention` op.

    One match at a time: a replacement is built from the graph as it is, so a
    later attention (which reads an earlier one's output) must be matched
    after the earlier one was replaced, or it would keep the old subgraph alive.
    """
    while True:
        clients = fgraph.clients
        for node in fgraph.toposort():
            out = match_attention(node, clients)
            if out is not None:
                fgraph.replace_all({node.outputs[0]: out}, reason="fuse_attention", pass_name="fuse_attention")
                break
        else:
            return


class Blasst:
    """Set BLASST block skipping on every fused attention op (fusing plain attention first).

    Parameters
    ----------
    threshold_scale_factor : float or dict, optional
        ``lambda = threshold_scale_factor / Lkv`` (skipping is off when that is >= 1).
        A dict ``{"prefill": sf, "decode": sf}`` gives each phase its own,
        chosen at run time (a call whose query length is 1 is a decode
        step); a phase the dict leaves out is dense.
    threshold : float, optional
        ``lambda`` itself.  Neither: dense attention.
    block_q, block_k : int, optional
        Tile sizes (default: the op's, 128 query rows x 64 keys); skip decisions depend on them.
    """

    name = "blasst"

    def __init__(self, threshold_scale_factor=None, threshold=None, block_q=None, block_k=None):
        if threshold_scale_factor is not None and threshold is not None:
            raise ValueError("blasst: give threshold_scale_factor or threshold, not both")
        if isinstance(threshold_scale_factor, dict):
            unknown = set(threshold_scale_factor) - {"prefill", "decode"}
            if unknown:
                raise ValueError(f"blasst: threshold_scale_factor keys must be 'prefill' and 'decode', got {sorted(unknown)}")
        self.threshold_scale_factor = threshold_scale_factor
        self.threshold = threshold
        self.block_q = block_q
        self.block_k = block_k
        # the op's factors: a dict's phase left out is dense (a factor of 0: lambda 0 skips nothing)
        self._factor, self._decode_factor = threshold_scale_factor, None
        if isinstance(threshold_scale_factor, dict):
            self._factor = float(threshold_scale_factor.get("prefill", 0.0))
            self._decode_factor = float(threshold_scale_factor.get("decode", 0.0))
        # validates the numbers now rather than when the pass runs
        Attention(1.0, threshold=threshold, scale_factor=self._factor, block_q=block_q or DEFAULT_BLOCK_Q,
                  block_k=block_k or DEFAULT_BLOCK_K, decode_scale_factor=self._decode_factor)

    def __repr__(self):
        return f"Blasst(threshold_scale_factor={self.threshold_scale_factor!r}, threshold={self.threshold!r})"

    def _rule(self, node) -> Attention:
        op = node.op
        return Attention(op.scale, op.causal, self.threshold, self._factor, self.block_q or op.block_q,
                         self.block_k or op.block_k, op.has_mask, self._decode_factor)

    def __call__(self, fgraph: FunctionGraph) -> None:
        fuse_attention(fgraph)
        while True:  # one node at a time, for the reason fuse_attention gives
            node = next((n for n in fgraph.toposort() if isinstance(n.op, Attention) and self._rule(n) != n.op), None)
            if node is None:
                break
            rebuilt = self._rule(node).make_node(*node.inputs)
            fgraph.replace_all(dict(zip(node.outputs, rebuilt.outputs)), reason="blasst", pass_name="blasst")
        # every call's tile counts and key lengths, for symexpr.attention.stats and calibration
        nodes = [n for n in fgraph.toposort() if isinstance(n.op, Attention)]
        fgraph.add_side_outputs(COUNTS, [n.outputs[1] for n in nodes])
        fgraph.add_side_outputs(QUERY_LENGTHS, [n.inputs[0].shape[-2] for n in nodes])
        fgraph.add_side_outputs(KEY_LENGTHS, [n.inputs[1].shape[-2] for n in nodes])
        fgraph.annotations["attention"] = [n.op for n in nodes]
