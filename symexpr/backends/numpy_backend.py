"""The NumPy reference backend: evaluates a graph op by op with each op's ``perform``.

It is the oracle that every other backend and every rewrite is tested against.
"""

from __future__ import annotations

import warnings

import numpy as np

from symexpr.graph.basic import Constant
from symexpr.graph.fgraph import FunctionGraph
from symexpr.graph.type import format_shape
from symexpr.ops.messages import node_error


class NumpyBackend:
    """Interprets the graph with NumPy."""

    name = "numpy"

    def compile(self, fgraph: FunctionGraph):
        order = fgraph.toposort()
        slot: dict[int, int] = {}
        preset: dict[int, np.ndarray] = {}

        def slot_of(var):
            if id(var) not in slot:
                slot[id(var)] = len(slot)
                if isinstance(var, Constant):
                    preset[slot[id(var)]] = var.data
            return slot[id(var)]

        input_slots = [slot_of(v) for v in fgraph.inputs]
        steps = []
        for node in order:
            steps.append((node, [slot_of(v) for v in node.inputs], [slot_of(v) for v in node.outputs]))
        output_slots = [slot_of(v) for v in fgraph.outputs]

        # Free each intermediate after its last use, so peak memory stays low.
        last_use: dict[int, int] = {}
        for step, (_, ins, _) in enumerate(steps):
            for s in ins:
                last_use[s] = step
        keep = set(output_slots) | set(preset) | set(input_slots)
        frees = [[] for _ in steps]
        for s, step in last_use.items():
            if s not in keep:
                frees[step].append(s)
        n_slots = len(slot)
        plan = [(node, ins, outs, tuple(f)) for (node, ins, outs), f in zip(steps, frees)]

        def run(args: list) -> list:
            # NaN and Inf propagate silently, as in the compiled backends.
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore", RuntimeWarning)
                return execute(args)

        def execute(args: list) -> list:
            storage = [None] * n_slots
            for s, value in preset.items():
                storage[s] = value
            for s, value in zip(input_slots, args):
                storage[s] = value
            for node, ins, outs, free in plan:
                values = [storage[s] for s in ins]
                try:
                    results = node.op.perform(node, values)
                except Exception as exc:
                    raise node_error(node, values, exc) from exc
                for s, var, value in zip(outs, node.outputs, results):
                    value = np.asarray(value)
                    if value.dtype.name != var.dtype or value.ndim != var.ndim:
                        raise AssertionError(
                            f"symexpr bug: {node.op.display_name()} returned {value.dtype}{format_shape(value.shape)} "
                            f"for an output declared {var.type}"
                        )
                    storage[s] = value
                for s in free:
                    storage[s] = None
            return [storage[s] for s in output_slots]

        return run
