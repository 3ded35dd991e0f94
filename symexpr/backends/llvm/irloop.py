"""A counted loop and small IR helpers for llvmlite builders, shared by the code generators."""

from __future__ import annotations

from llvmlite import ir

I64 = ir.IntType(64)
I32 = ir.IntType(32)


def const(value, ty=I64) -> ir.Constant:
    """An integer constant (i64 unless ``ty`` says otherwise)."""
    return ir.Constant(ty, int(value))


def imin(b, x, y):
    """The smaller of two signed integers."""
    return b.select(b.icmp_signed("<", x, y), x, y)


def declare(module, name, ret, args):
    """The function ``name`` of ``module`` (an intrinsic, usually), declared on first use."""
    fn = module.globals.get(name)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(ret, args), name)
    return fn


def aligned_alloca(b, ty, name, size=None):
    """A stack slot of ``ty`` (``size`` of them, a run-time count, when given) aligned to 64 bytes."""
    slot = b.alloca(ty, size=size, name=name)
    slot.align = 64
    return slot


def splat(b, scalar, lanes):
    """A vector of ``lanes`` copies of ``scalar``."""
    vec = b.insert_element(ir.Constant(ir.VectorType(scalar.type, lanes), None), scalar, const(0, I32))
    return b.shuffle_vector(vec, ir.Constant(ir.VectorType(scalar.type, lanes), None),
                            ir.Constant(ir.VectorType(I32, lanes), [0] * lanes))


class CountedLoop:
    """``for i in range(start, stop, step)`` (``step`` a positive int), the counter in an alloca.

    Used as ``with CountedLoop(b, counter, start, stop) as i:``; the body is
    emitted inside the ``with`` and the builder is left at the loop's exit.
    mem2reg turns the counter into a phi.
    """

    def __init__(self, builder, counter, start, stop, step: int = 1, name: str = "loop"):
        self.b, self.counter, self.start, self.stop, self.step, self.name = builder, counter, start, stop, step, name

    def __enter__(self):
        b = self.b
        b.store(self.start, self.counter)
        self.head = b.append_basic_block(f"{self.name}.head")
        self.body = b.append_basic_block(f"{self.name}.body")
        self.exit = b.append_basic_block(f"{self.name}.exit")
        b.branch(self.head)
        b.position_at_end(self.head)
        i = b.load(self.counter)
        b.cbranch(b.icmp_signed("<", i, self.stop), self.body, self.exit)
        b.position_at_end(self.body)
        return b.load(self.counter)

    def __exit__(self, *exc):
        if exc[0] is not None:
            return False
        b = self.b
        b.store(b.add(b.load(self.counter), ir.Constant(I64, int(self.step))), self.counter)
        b.branch(self.head)
        b.position_at_end(self.exit)
        return False
