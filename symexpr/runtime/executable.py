"""The backend-neutral per-call driver: outputs, the arena, native segments and host steps.

An :class:`Executable` runs one call geometry's plan with a compiled module:
it allocates (or reuses) the outputs and the arena of intermediates, passes
the plan's parameter vector to the native segments through the backend's
``launch``, and runs host steps with NumPy.
"""

from __future__ import annotations

import sys

import numpy as np

from symexpr.graph.basic import Constant
from symexpr.kernel.ir import HostStep
from symexpr.ops.messages import node_error


class Executable:
    """A plan with its compiled code: ``run(arrays)`` returns the output arrays.

    Parameters
    ----------
    fgraph : FunctionGraph
    plan : Plan
        The plan of this call geometry (host steps run from it).
    schedule : list
        ``("native", segment)`` and ``("host", step)`` items in order.
    module
        The compiled code: ``module.entries[segment]`` is a native entry point,
        or None when the schedule has no native item.
    segment_work : list of int
        Each schedule item's work (scalar iterations).
    params : numpy.ndarray
        The plan template's parameter vector for this geometry.
    launch : callable
        ``launch(entry, arrays, work, sync)`` runs one native segment (the
        backend decides how: threads, streams).
    arenas : list, optional
        Free arenas, shared by the executables of one function (its geometries):
        a call takes one at least as large as its plan needs, or allocates one,
        and puts it back, so a function that sees many shapes keeps one arena
        (two under concurrent calls), not one per shape.

    Native code receives one tuple: the inputs, the outputs, the constants,
    the per-call arena, a small int64 array of counters segments may
    synchronise on, and ``params``.
    """

    def __init__(self, fgraph, plan, schedule, module, segment_work, params, launch, arenas=None):
        self.fgraph = fgraph
        self._launch = launch
        self.plan = plan
        self.module = module
        #: The plan's sizes, in the order its template numbers them (the last argument of every segment).
        self.params = params
        self.constants = tuple(plan.constants)
        self._input_index = {id(v): i for i, v in enumerate(fgraph.inputs)}
        self.out_slots = [plan.buffers[b].index for b, _, _ in plan.outputs]
        n_out = sum(b.kind == "output" for b in plan.buffers)
        self.n_outputs = n_out
        self.output_shapes = {}
        for buf, shape, dtype in plan.outputs:
            self.output_shapes[plan.buffers[buf].index] = (shape, np.dtype(dtype))
        self.arena_bytes = plan.arena_bytes
        self.n_segments = sum(1 for kind, _ in schedule if kind == "native")
        self.schedule = [
            (kind, module.entries[item] if kind == "native" else item, work) for (kind, item), work in zip(schedule, segment_work)
        ]
        #: The last output array of each slot and a free arena, reused when no one else holds them.
        self._spares = [[] for _ in range(n_out)]
        self._arenas = [] if arenas is None else arenas
        # Computed once: for a small function, run() is most of the per-call cost.
        self._out_specs = [self.output_shapes[i] for i in range(n_out)]
        self._slots_in_order = self.out_slots == list(range(n_out))
        #: The barrier counters.  Each parallel segment run zeroes them under the pool lock, and a
        #: segment run on one thread never touches them, so concurrent calls can share the array.
        self._sync = np.zeros(max(self.n_segments, 1), dtype=np.int64)
        fast = self._single_segment_runner()
        if fast is not None:
            self.run = fast  # shadows the general method below

    def _single_segment_runner(self):
        """:meth:`run` for the commonest plan, one native segment and one output, with no per-call loops.

        None for any other plan.  The steps are those of the general :meth:`run`.
        """
        if len(self.schedule) != 1 or self.schedule[0][0] != "native" or self.out_slots != [0]:
            return None  # (out_slots [0, 0]: one buffer returned twice, the general run's job)
        _, entry, work = self.schedule[0]
        launch = self._launch
        (spares,), (spec,) = self._spares, self._out_specs
        constants, sync, arenas, arena_bytes, params = self.constants, self._sync, self._arenas, self.arena_bytes, self.params

        def run(args):
            out = _reuse_or_new(spares, spec)
            arena = _take_arena(arenas, arena_bytes) if arena_bytes else _EMPTY
            launch(entry, (*args, out, *constants, arena, sync, params), work, sync)
            if arena_bytes and not arenas:
                arenas.append(arena)
            if not spares:
                spares.append(out)
            return [out]

        return run

    def release_spares(self) -> None:
        """Drop the output arrays kept for reuse (the next call allocates, and keeps one again)."""
        for spares in self._spares:
            spares.clear()

    def run(self, args):
        outs = [_reuse_or_new(spares, spec) for spares, spec in zip(self._spares, self._out_specs)]
        arena_bytes = self.arena_bytes
        arena = _take_arena(self._arenas, arena_bytes) if arena_bytes else _EMPTY
        try:
            sync = self._sync
            arrays = (*args, *outs, *self.constants, arena, sync, self.params)
            for kind, item, work in self.schedule:
                if kind == "native":
                    self._launch(item, arrays, work, sync)
                else:
                    self._host(item, args, outs, arena)
        finally:
            if arena_bytes and not self._arenas:
                self._arenas.append(arena)
        for spares, out in zip(self._spares, outs):
            if not spares:
                spares.append(out)
        if self._slots_in_order:
            return outs
        return [outs[i] for i in self.out_slots]

    # -- host steps -----------------------------------------------------------------
    def _buffer_array(self, buf, args, outs, arena):
        spec = self.plan.buffers[buf]
        if spec.kind == "output":
            return outs[spec.index].reshape(-1)
        if spec.kind == "temp":
            nbytes = spec.nbytes
            return arena[spec.index : spec.index + nbytes].view(spec.dtype)
        raise AssertionError(f"symexpr bug: host step writes to a {spec.kind} buffer")

    def _leaf(self, var, args, outs, arena):
        """The value of a variable that needs no evaluation, or ``_COMPUTE`` when its node must run."""
        if isinstance(var, Constant):
            return var.data
        if id(var) in self._input_index:
            return args[self._input_index[id(var)]]
        if id(var) in self.plan.allocated:
            flat = self._buffer_array(self.plan.allocated[id(var)], args, outs, arena)
            shape = self.plan.views[id(var)].shape
            return flat[: int(np.prod(shape, dtype=np.int64))].reshape(shape)
        return _COMPUTE

    def _value(self, var, args, outs, arena, cache):
        """The value of ``var``: a constant, an input, a planned buffer, or its node run on its inputs' values.

        Iterative (an explicit stack): a chain of thousands of views feeding a
        host step needs no Python recursion.
        """
        if id(var) in cache:
            return cache[id(var)]
        stack = [var]
        while stack:
            top = stack[-1]
            if id(top) in cache:
                stack.pop()
                continue
            value = self._leaf(top, args, outs, arena)
            if value is not _COMPUTE:
                cache[id(top)] = value
                stack.pop()
                continue
            node = top.owner
            missing = [v for v in node.inputs if id(v) not in cache]
            if missing:
                stack.extend(reversed(missing))  # evaluated first, in input order
                continue
            inputs = [cache[id(v)] for v in node.inputs]
            cache[id(top)] = node.op.perform(node, inputs)[node.outputs.index(top)]
            stack.pop()
        return cache[id(var)]

    def _host(self, step: HostStep, args, outs, arena):
        node = step.node
        cache = {}
        inputs = [self._value(v, args, outs, arena, cache) for v in node.inputs]
        try:
            with np.errstate(all="ignore"):
                results = node.op.perform(node, inputs)
        except Exception as exc:
            raise node_error(node, inputs, exc) from exc
        for var, result in zip(node.outputs, results):
            dest = self._value(var, args, outs, arena, {})
            np.copyto(dest, np.asarray(result), casting="unsafe")


_COMPUTE = object()  # _leaf's "not a leaf" marker
_EMPTY = np.zeros(64, dtype=np.uint8)


def _reuse_or_new(spares: list, spec) -> np.ndarray:
    """The previous call's output array if nothing else refers to it any more, else a fresh one.

    Reusing it skips the page faults (and the kernel's zeroing) of fresh memory,
    which cost as much as the kernel itself for a large elementwise output.
    Nothing can observe the reuse: the caller dropped every reference, views included.
    """
    try:
        spare = spares.pop()  # atomic: concurrent calls never get the same array
    except IndexError:
        return np.empty(*spec)
    return spare if sys.getrefcount(spare) == _SOLE_REFCOUNT else np.empty(*spec)


def _sole_refcount() -> int:
    """What :func:`_reuse_or_new` sees for an array no one else refers to.

    Measured with the same code shape rather than assumed, since interpreters
    differ in whether a local variable and a call argument hold references.
    """
    spares = [np.empty(1)]
    spare = spares.pop()
    return sys.getrefcount(spare)


_SOLE_REFCOUNT = _sole_refcount()


def _take_arena(arenas: list, nbytes: int) -> np.ndarray:
    """A free arena of at least ``nbytes`` from ``arenas`` (dropping a smaller one), else a new one."""
    try:
        arena = arenas.pop()  # atomic: concurrent calls never get the same arena
    except IndexError:
        return _aligned_bytes(nbytes)
    return arena if arena.nbytes >= nbytes else _aligned_bytes(nbytes)


def _aligned_bytes(nbytes: int) -> np.ndarray:
    raw = np.empty(nbytes + 64, dtype=np.uint8)
    start = (-raw.ctypes.data) % 64
    return raw[start : start + nbytes]
