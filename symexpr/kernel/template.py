"""Plan templates: a plan's structure with its sizes taken out, so that one compiled module runs every shape.

:func:`parametrise` turns a plan, lowered for one input geometry, into a
:class:`Template`: the same steps with every extent, stride, offset, arena
offset and shape-derived literal replaced by a :class:`Param` (a slot in a
run-time int64 vector), and that vector for this geometry.  Code generators
compile the template; the driver passes the vector at each call.

What stays in the template, and so decides when code is compiled again, is
the plan's *structure*: its steps and programs, which loop dimensions merged,
and the innermost strides that are 0 (broadcast) or 1 (contiguous), which
code generators specialise on (vector loads, BLAS transposition flags).  Inputs
of the same ranks and layout class (C-contiguous, broadcast dims) give the
same template at every size, 1 included where the dimension does not
broadcast (a stride over a dimension of extent 1 is a parameter whatever its
value); a differently strided view gives another.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from symexpr.kernel.ir import Access, AttentionKernel, AttentionMergeKernel, Buffer, GemmKernel, HostStep, Instr, LoopKernel, Phase, QGemmKernel

#: Strides kept as literals: code generators specialise on them.
LITERAL_STRIDES = (0, 1)


@dataclass(frozen=True)
class Param:
    """Entry ``index`` of the run-time parameter vector (an int64)."""

    index: int

    def __repr__(self):
        return f"p{self.index}"


@dataclass
class Template:
    """A plan with its sizes as :class:`Param` s.

    ``buffers`` keep kind, dtype and the slot index of inputs, outputs and
    constants; a temp's arena offset is a ``Param`` and sizes are dropped.
    ``steps`` are the plan's steps (host steps stand for their position only:
    the driver runs the plan's own).  ``params`` holds this geometry's values.
    """

    buffers: list
    steps: list
    n_constants: int
    params: np.ndarray

    def key(self) -> str:
        """A hash of the structure: equal keys compile to the same code (computed once: a template is not changed)."""
        found = self.__dict__.get("_key")
        if found is None:
            text = repr((self.buffers, [_step_key(s) for s in self.steps], self.n_constants))
            found = self.__dict__["_key"] = hashlib.sha256(text.encode()).hexdigest()
        return found


def _step_key(step):
    return ("host", step.outputs) if isinstance(step, HostStep) else step


class _Builder:
    def __init__(self):
        self.values: list[int] = []
        #: ``(buffer, value) -> Param`` within the current step (see :meth:`shared`).
        self._shared: dict = {}

    def param(self, value) -> Param:
        self.values.append(int(value))
        return Param(len(self.values) - 1)

    def shared(self, buffer, value) -> Param:
        """One param for equal strides and offsets of one buffer within a step.

        A kernel that reads and writes one buffer in place does it through equal
        strides; as one param (one SSA value) LLVM sees that the addresses are
        the same, as it did with literals, and vectorises without a
        dependence check.
        """
        key = (buffer, int(value))
        found = self._shared.get(key)
        if found is None:
            found = self._shared[key] = self.param(value)
        return found

    def size(self, value):
        return self.param(value)

    def stride(self, value):
        return int(value) if value in LITERAL_STRIDES else self.param(value)

    def access(self, a: Access, extents=None) -> Access:
        """``a`` with its sizes as params.

        Over a loop nest's ``extents``, only the innermost stride (the loop code
        generators vectorise) stays a literal 0 or 1: an outer loop gains
        nothing from a literal stride.  An innermost dim of extent 1 gets the
        stride 1 whatever its value, which is never used (its index is always
        0): a dimension that is 1 in one call and larger in the next then
        compiles to the same code, as long as it does not broadcast.
        """
        if extents is None:
            strides = tuple(self.stride(s) for s in a.strides)
        else:
            last = len(extents) - 1

            def one(k, s, n):
                if k != last:
                    return self.shared(a.buffer, s)
                if n == 1:
                    return 1
                return int(s) if s in LITERAL_STRIDES else self.shared(a.buffer, s)

            strides = tuple(one(k, s, n) for k, (s, n) in enumerate(zip(a.strides, extents)))
        offset = 0 if a.offset == 0 else self.shared(("offset", a.buffer), a.offset)
        return Access(a.buffer, offset, strides)

    def ref(self, ref):
        if ref[0] == "size":
            return ("size", self.param(ref[1]), ref[2])
        return ref

    def phase(self, p: Phase, outer: tuple) -> Phase:
        extents = tuple(outer) + tuple(p.inner)
        program = tuple(Instr(i.op, tuple(self.ref(r) for r in i.args), i.dtype) for i in p.program)
        return Phase(
            tuple(self.size(d) for d in p.inner),
            tuple(self.access(a, extents) for a in p.loads),
            program,
            p.accumulators,
            tuple((self.access(a, extents), self.ref(r)) for a, r in p.stores),
        )

    def step(self, step):
        self._shared = {}
        if isinstance(step, LoopKernel):
            outer = tuple(self.size(d) for d in step.outer)
            return LoopKernel(step.name, outer, tuple(self.phase(p, step.outer) for p in step.phases))
        if isinstance(step, GemmKernel):
            return GemmKernel(
                step.name,
                step.dtype,
                tuple(self.size(d) for d in step.batch),
                self.size(step.m),
                self.size(step.n),
                self.size(step.k),
                self.access(step.a),
                self.access(step.b),
                self.access(step.c),
            )
        if isinstance(step, QGemmKernel):
            # K and N (and so the packed weight's geometry) come from the constant weight: literals.
            opt = lambda a: None if a is None else self.access(a)  # noqa: E731
            return QGemmKernel(
                step.name,
                self.size(step.m),
                step.n,
                step.k,
                step.n_pad,
                self.access(step.x),
                step.w,
                step.comp,
                self.access(step.out),
                step.epilogue,
                step.weight_bits,
                opt(step.sx),
                opt(step.sw),
                opt(step.bias),
                step.post,
                tuple(self.access(a) for a in step.post_loads),
                step.post_result,
            )
        if isinstance(step, AttentionKernel):
            # scale, rule and tile sizes shape the code: literals; sizes, offsets and strides are params.
            return AttentionKernel(
                step.name,
                tuple(self.size(d) for d in step.lead),
                self.size(step.lq),
                self.size(step.lkv),
                self.size(step.d),
                self.size(step.dv),
                *(None if a is None else self.access(a) for a in (step.q, step.k, step.v, step.out, step.counts, step.mask)),
                step.scale,
                step.causal,
                step.mode,
                step.threshold,
                step.block_q,
                step.block_k,
                step.decode_threshold,
                self.size(step.splits),
                None if step.partial is None else self.access(step.partial),
            )
        if isinstance(step, AttentionMergeKernel):
            return AttentionMergeKernel(
                step.name,
                tuple(self.size(d) for d in step.lead),
                self.size(step.lq),
                self.size(step.dv),
                step.block_q,
                self.size(step.splits),
                *(self.access(a) for a in (step.partial, step.out, step.counts)),
            )
        return step


def parametrise(plan) -> Template:
    """The :class:`Template` of ``plan`` (a plan whose temps are placed)."""
    b = _Builder()
    buffers = [
        Buffer(buf.kind, b.param(buf.index) if buf.kind == "temp" else buf.index, buf.dtype, 0) for buf in plan.buffers
    ]
    steps = [b.step(s) for s in plan.steps]
    return Template(buffers, steps, len(plan.constants), np.asarray(b.values, dtype=np.int64))
