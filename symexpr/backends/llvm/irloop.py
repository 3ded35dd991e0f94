"""A counted loop for llvmlite builders, shared by the loop-kernel and int8 GEMM code generators."""

from __future__ import annotations

from llvmlite import ir

I64 = ir.IntType(64)


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
