"""The backend-neutral kernel IR.

A compiled graph becomes a :class:`Plan`: a list of buffers and a list of
steps.  A step is a :class:`LoopKernel` (a loop nest that code generators
render: LLVM now, CUDA C later), a :class:`GemmKernel` (a call into a matrix
multiply routine), a :class:`QGemmKernel` (an int8 contraction with an int32
accumulator and a fused dequantizing epilogue, which each code generator
implements natively), an :class:`AttentionKernel` (tiled online-softmax
attention with block skipping) and its :class:`AttentionMergeKernel` (the
log-sum-exp merge of split keys), or a :class:`HostStep` (an op the backend
runs with NumPy).

All extents, offsets and strides are concrete integers, counted in elements:
a plan is built for the shapes and strides of one call's inputs.  Code
generators compile its template (:mod:`symexpr.kernel.template`), in which
those integers are run-time parameters, so that one compiled module serves
every geometry with the same structure.

A :class:`LoopKernel` iterates over its ``outer`` index space (parallel: any
subrange of the first outer dimension may run on its own thread) and, at each
outer point, runs its :class:`Phase` s in order.  A phase loops over its own
``inner`` index space, loads through strided :class:`Access` es, evaluates a
scalar ``program`` (SSA :class:`Instr` s over symexpr scalar ops), folds values
into :class:`Accumulator` s and stores values.  Later phases read the final
value of earlier phases' accumulators, which is how a reduction's epilogue and
a softmax's normalisation are written.

Operand references inside a program:

``("load", k)``
    the value loaded by the phase's ``k``-th access at the current point
``("tmp", j)``
    the result of instruction ``j`` of the same program
``("const", value, dtype)``
    a literal
``("size", value, dtype)``
    an integer computed from the input shapes (an element count), converted to
    ``dtype``; a plan template makes it a run-time parameter
``("acc", p, k)``
    the final value of accumulator ``k`` of phase ``p`` (an earlier phase)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from symexpr.kernel.int8_pack import PANEL

#: Accumulator kinds and the NumPy reduction each one matches.
ACCUMULATOR_KINDS = ("sum", "prod", "max", "min")


@dataclass(frozen=True)
class Buffer:
    """A memory region a plan reads or writes.

    ``kind`` is ``"input"``, ``"output"``, ``"const"`` or ``"temp"``; ``index``
    is the position among the inputs, outputs or constants, or for a temp its
    byte offset in the per-call arena.
    """

    kind: str
    index: int
    dtype: str
    size: int

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class Access:
    """``buffer[offset + sum(i_d * strides[d])]`` over a kernel's loop dimensions."""

    buffer: int
    offset: int
    strides: tuple


@dataclass(frozen=True)
class Instr:
    """One scalar instruction: ``op(*args)`` giving a value of ``dtype``."""

    op: object
    args: tuple
    dtype: str


@dataclass(frozen=True)
class Accumulator:
    """Folds ``value`` over a phase's inner space with ``kind``, starting at ``init`` (the identity when None)."""

    kind: str
    dtype: str
    value: tuple
    init: object = None

    def identity(self):
        """The starting value: ``init``, else the identity of ``kind`` for ``dtype`` (a Python scalar)."""
        if self.init is not None:
            return self.init
        if self.kind == "sum":
            return 0
        if self.kind == "prod":
            return 1
        if self.dtype == "bool":
            return self.kind == "min"
        if self.dtype.startswith("float"):
            return float("-inf") if self.kind == "max" else float("inf")
        info = np.iinfo(self.dtype)
        return int(info.min if self.kind == "max" else info.max)


@dataclass(frozen=True)
class Phase:
    """One pass over ``inner`` at each outer point.

    Access strides list the kernel's outer dimensions first, then ``inner``.
    ``stores`` pairs an access with the reference of the value it writes.
    """

    inner: tuple
    loads: tuple
    program: tuple
    accumulators: tuple = ()
    stores: tuple = ()


@dataclass(frozen=True)
class LoopKernel:
    """A parallel loop nest over ``outer`` whose body runs ``phases`` in order."""

    name: str
    outer: tuple
    phases: tuple

    @property
    def work(self) -> int:
        """Roughly how many scalar iterations the kernel runs (for threading decisions)."""
        n = math.prod(map(int, self.outer))
        return n * sum(math.prod(map(int, p.inner)) for p in self.phases)


@dataclass(frozen=True)
class GemmKernel:
    """``c[b] = a[b] @ b[b]`` for each batch index ``b`` (row-major views given by their accesses).

    ``a`` strides are over ``batch + (m, k)``, ``b`` over ``batch + (k, n)``
    and ``c`` over ``batch + (m, n)``; ``c`` is contiguous in its last dimension.
    """

    name: str
    dtype: str
    batch: tuple
    m: int
    n: int
    k: int
    a: Access
    b: Access
    c: Access

    @property
    def work(self) -> int:
        return math.prod(map(int, self.batch)) * self.m * self.n * self.k


#: :class:`QGemmKernel` epilogues: the raw int32 accumulator, or ``float32(acc) * sx * sw (+ bias)``.
QGEMM_EPILOGUES = ("int32", "scaled")


@dataclass(frozen=True)
class QGemmKernel:
    """``out[i, j] = epilogue(sum_k x[i, k] * w[k, j])``: int8 operands, an exact int32 accumulator.

    ``x`` is int8 with strides over ``(m, k)`` (the ``k`` stride is 1).  The
    weight is a constant, packed once by :mod:`symexpr.kernel.int8_pack`:
    ``w`` is the packed int8 buffer ``[n_pad / 16][ceil(k / 4)][16][4]``
    (panels of 16 columns, each contiguous down K) and ``comp``
    the int32 compensation ``128 * colsum(w)`` (``n_pad`` entries), which a
    kernel that multiplies ``x + 128`` (unsigned bytes) subtracts; both
    accesses have no strides.  ``out`` has strides over ``(m, n)`` (the ``n``
    stride is 1).

    With ``epilogue == "scaled"`` the result is float32
    ``(float32(acc) * sx[i]) * sw[j] (+ bias[j])``, in that order and without
    contraction into FMAs; ``sx`` has strides over ``(m,)`` (0: one scale per
    tensor), ``sw`` and ``bias`` over ``(n,)`` (0: one value).  With
    ``"int32"`` it is the accumulator itself and ``sx``, ``sw``, ``bias`` are
    None.  ``weight_bits`` (8: ``|w| <= 127``, 7: ``|w| <= 63``) tells a code
    generator which instructions multiply exactly.  ``k`` and ``n`` come from
    the constant weight; ``m`` is the only size that changes between calls.

    ``post`` (scaled only) is a program of :class:`Instr` s applied to that
    float32 value before it is stored: ``("load", 0)`` is the value,
    ``("load", k)`` the element ``(i, j)`` of ``post_loads[k - 1]`` (strides
    over ``(m, n)``), and ``post_result`` the reference stored (float32).
    """

    name: str
    m: int
    n: int
    k: int
    n_pad: int
    x: Access
    w: Access
    comp: Access
    out: Access
    epilogue: str
    weight_bits: int
    sx: Access = None
    sw: Access = None
    bias: Access = None
    post: tuple = ()
    post_loads: tuple = ()
    post_result: tuple = None

    @property
    def work(self) -> int:
        """Multiply-adds (for threading decisions)."""
        return int(self.m) * int(self.n) * int(self.k)

    #: The roles :meth:`accesses` lists that the kernel writes.
    OUTPUTS = ("out",)

    def accesses(self) -> tuple:
        """``(role, access)`` of every operand present, in a fixed order (``post_loads`` as ``post0``, ...)."""
        roles = ("x", "w", "comp", "out", "sx", "sw", "bias")
        present = tuple((r, getattr(self, r)) for r in roles if getattr(self, r) is not None)
        return present + tuple((f"post{k}", a) for k, a in enumerate(self.post_loads))


@dataclass(frozen=True)
class AttentionKernel:
    """Fused attention, tile by tile with an online softmax (see :mod:`symexpr.ops.attention`).

    For every point of the leading space ``lead`` (batch, heads) and every
    query tile of ``block_q`` rows::

        out[..., i, :] = softmax_j(scale * q[..., i, :] . k[..., j, :] + mask[..., i, j]) @ v

    visiting key tiles of ``block_k`` keys in order and skipping a tile by the
    BLASST rule when ``mode`` is ``"lambda"`` (``threshold`` is lambda) or
    ``"scale_factor"`` (lambda is ``threshold / lkv``, or ``decode_threshold / lkv``
    when that is given and ``lq == 1``); ``"dense"`` skips nothing.  ``counts`` receives ``(visited, skipped)`` key tiles per query
    tile (int64, strides over ``lead + (tiles, 2)``).  ``q``, ``k``, ``v`` and
    ``out`` have strides over ``lead + (rows, columns)`` with a unit last
    stride; ``mask`` (optional) strides over ``lead + (lq, lkv)``.  All float32.
    ``causal`` is False, ``"bottom_right"`` or ``"top_left"`` (see :mod:`symexpr.ops.attention`).
    Like :class:`QGemmKernel`, the kernel splits its work between threads itself.

    With ``splits`` > 1 (a run-time size, :func:`~symexpr.ops.attention.key_splits`)
    each query tile's key tiles are cut into that many contiguous splits, the
    work items are (query tile, split), and each writes its unnormalised rows
    and running max and sum to ``partial`` (float32; strides: work item
    ``(tile, split)``, then row; a row is ``O[0:dv], m, l``; the item's visited
    and skipped counts are the last two floats of its block), not to ``out``
    and ``counts``: the :class:`AttentionMergeKernel` that follows merges them.
    """

    name: str
    lead: tuple
    lq: int
    lkv: int
    d: int
    dv: int
    q: Access
    k: Access
    v: Access
    out: Access
    counts: Access
    mask: Access
    scale: float
    causal: object
    mode: str
    threshold: float
    block_q: int
    block_k: int
    decode_threshold: float = None
    splits: int = 1
    partial: Access = None

    #: The roles :meth:`accesses` lists that the kernel writes.
    OUTPUTS = ("out", "counts", "partial")

    @property
    def work(self) -> int:
        """Multiply-adds of the dense computation (for threading decisions)."""
        points = math.prod(int(n) for n in self.lead) if self.lead else 1
        return points * int(self.lq) * int(self.lkv) * (int(self.d) + int(self.dv))

    def accesses(self) -> tuple:
        """``(role, access)`` of every operand present, in a fixed order."""
        roles = ("q", "k", "v", "mask", "out", "counts", "partial")
        return tuple((r, getattr(self, r)) for r in roles if getattr(self, r) is not None)


@dataclass(frozen=True)
class AttentionMergeKernel:
    """The log-sum-exp merge of an :class:`AttentionKernel`'s key splits (nothing to do when ``splits`` is 1).

    For every work item (query tile of ``block_q`` rows at each point of
    ``lead``) and row: ``M = max_s m_s``, ``w_s = exp(m_s - M)`` (``M`` taken
    as 0 when it is ``-inf``), ``out = sum_s w_s O_s / sum_s w_s l_s``, and the
    item's counts are the sums of its splits'.  ``partial``, ``out`` and
    ``counts`` are the attention kernel's accesses.
    """

    name: str
    lead: tuple
    lq: int
    dv: int
    block_q: int
    splits: int
    partial: Access
    out: Access
    counts: Access

    OUTPUTS = ("out", "counts")

    @property
    def work(self) -> int:
        """Values read (for threading decisions)."""
        points = math.prod(int(n) for n in self.lead) if self.lead else 1
        return points * int(self.lq) * (int(self.dv) + 2) * int(self.splits)

    def accesses(self) -> tuple:
        """``(role, access)`` of every operand, in a fixed order."""
        return (("partial", self.partial), ("out", self.out), ("counts", self.counts))


#: Steps that a code generator implements natively and that split their work between threads
#: themselves (each gets the thread's index and the thread count); each lists its operands
#: with ``accesses()`` and the written ones in ``OUTPUTS``.
SELF_THREADED = (QGemmKernel, AttentionKernel, AttentionMergeKernel)


@dataclass(frozen=True)
class HostStep:
    """Run ``node`` with its NumPy ``perform`` and copy the result into ``outputs``' buffers."""

    node: object
    outputs: tuple

    work = 0


@dataclass
class Plan:
    """Everything a backend needs to run a graph on inputs of known shapes and strides.

    ``steps`` are in execution order.  ``views`` maps ``id(variable)`` to the
    ``(buffer, offset, shape, strides)`` a value lives at (host steps read
    their inputs through it); ``outputs`` lists the output buffers' shapes.
    """

    buffers: list = field(default_factory=list)
    steps: list = field(default_factory=list)
    views: dict = field(default_factory=dict)
    outputs: list = field(default_factory=list)
    constants: list = field(default_factory=list)
    #: ``id(variable) -> buffer`` for values that own a contiguous buffer (not views of another).
    allocated: dict = field(default_factory=dict)
    arena_bytes: int = 0

    def text(self) -> str:
        """A readable listing of the plan, one step per paragraph."""
        lines = []
        for i, b in enumerate(self.buffers):
            lines.append(f"buffer {i}: {b.kind} {b.index} {b.dtype}[{b.size}]")
        for step in self.steps:
            lines.append(format_step(step))
        return "\n".join(lines)


def format_ref(ref) -> str:
    if ref[0] == "const":
        return f"{ref[1]!r}:{ref[2]}"
    if ref[0] == "size":
        return f"size({ref[1]!r}):{ref[2]}"
    if ref[0] == "acc":
        return f"acc{ref[1]}.{ref[2]}"
    return f"{'l' if ref[0] == 'load' else 't'}{ref[1]}"


def format_step(step) -> str:
    """Text of one plan step."""
    if isinstance(step, HostStep):
        return f"host {step.node.op.display_name()} -> buffers {list(step.outputs)}"
    if isinstance(step, GemmKernel):
        return f"gemm {step.name} {step.dtype} batch={step.batch} m={step.m} n={step.n} k={step.k} a={step.a} b={step.b} c={step.c}"
    if isinstance(step, QGemmKernel):
        return format_qgemm(step)
    if isinstance(step, (AttentionKernel, AttentionMergeKernel)):
        return format_attention(step)
    lines = [f"kernel {step.name} outer={step.outer}"]
    for p, phase in enumerate(step.phases):
        lines.append(f"  phase {p} inner={phase.inner}")
        for k, acc in enumerate(phase.loads):
            lines.append(f"    l{k} = buf{acc.buffer}[{acc.offset} + i . {acc.strides}]")
        for j, ins in enumerate(phase.program):
            lines.append(f"    t{j} = {ins.op!r}({', '.join(format_ref(a) for a in ins.args)}) : {ins.dtype}")
        for k, acc in enumerate(phase.accumulators):
            lines.append(f"    acc{p}.{k} {acc.kind}= {format_ref(acc.value)} : {acc.dtype}")
        for access, ref in phase.stores:
            lines.append(f"    buf{access.buffer}[{access.offset} + i . {access.strides}] = {format_ref(ref)}")
    return "\n".join(lines)


def _format_access(a) -> str:
    return f"buf{a.buffer}[{a.offset} + i . {a.strides}]"


def format_qgemm(step) -> str:
    """Text of a :class:`QGemmKernel`: sizes, operands and the epilogue, one line each."""
    groups = -(-int(step.k) // 4)
    lines = [
        f"qgemm {step.name} int8 x int8 -> int32, w{step.weight_bits}: m={step.m} n={step.n} k={step.k}",
        f"  x = {_format_access(step.x)}  (int8, over (m, k))",
        f"  w = buf{step.w.buffer}  (packed int8 [{int(step.n_pad) // PANEL}][{groups}][{PANEL}][4])",
        f"  comp = buf{step.comp.buffer}  (int32 [{step.n_pad}]: 128 * colsum(w))",
    ]
    if step.epilogue == "scaled":
        epi = "float32(acc) * sx[i] * sw[j]" + (" + bias[j]" if step.bias is not None else "")
        lines.append(f"  sx = {_format_access(step.sx)}  sw = {_format_access(step.sw)}"
                     + (f"  bias = {_format_access(step.bias)}" if step.bias is not None else ""))
    else:
        epi = "acc (int32)"
    if step.post:
        lines.append(f"  l0 = {epi}")
        for k, access in enumerate(step.post_loads, 1):
            lines.append(f"  l{k} = {_format_access(access)}  (over (m, n))")
        for j, ins in enumerate(step.post):
            lines.append(f"  t{j} = {ins.op!r}({', '.join(format_ref(a) for a in ins.args)}) : {ins.dtype}")
        epi = format_ref(step.post_result)
    lines.append(f"  {_format_access(step.out)} = {epi}")
    return "\n".join(lines)


def format_attention(step) -> str:
    """Text of an :class:`AttentionKernel` or its merge: sizes, rule and operands, one line each."""
    if isinstance(step, AttentionMergeKernel):
        lines = [f"attention merge {step.name} lead={step.lead} lq={step.lq} dv={step.dv} rows={step.block_q} splits={step.splits}"]
        lines += [f"  {role} = {_format_access(access)}" for role, access in step.accesses()]
        return "\n".join(lines)
    rule = {"dense": "dense", "lambda": f"skip: lambda = {step.threshold:g}",
            "scale_factor": f"skip: lambda = {step.threshold:g} / lkv"
            + (f" (lq == 1: {step.decode_threshold:g} / lkv)" if step.decode_threshold is not None else "")}[step.mode]
    lines = [
        f"attention {step.name} lead={step.lead} lq={step.lq} lkv={step.lkv} d={step.d} dv={step.dv} "
        f"scale={step.scale:g}{' causal ' + step.causal if step.causal else ''} tiles={step.block_q}x{step.block_k} "
        f"splits={step.splits} {rule}",
    ]
    for role, access in step.accesses():
        lines.append(f"  {role} = {_format_access(access)}")
    return "\n".join(lines)
