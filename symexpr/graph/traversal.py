"""Iterative graph traversals (no recursion, so 100,000-node chains are fine)."""

from __future__ import annotations

from collections.abc import Iterable

from symexpr.graph.basic import Apply, Variable


def toposort(outputs: Iterable[Variable]) -> list[Apply]:
    """Apply nodes needed for ``outputs``, each after the nodes it depends on.

    The order is deterministic: a depth-first post-order visiting inputs left to right.
    """
    order: list[Apply] = []
    done: set[int] = set()
    for out in outputs:
        if out.owner is None or id(out.owner) in done:
            continue
        stack = [(out.owner, 0)]
        on_stack = {id(out.owner)}
        while stack:
            node, next_input = stack[-1]
            inputs = node.inputs
            while next_input < len(inputs):
                owner = inputs[next_input].owner
                next_input += 1
                if owner is not None and id(owner) not in done:
                    if id(owner) in on_stack:
                        raise ValueError("the graph has a cycle")
                    stack[-1] = (node, next_input)
                    stack.append((owner, 0))
                    on_stack.add(id(owner))
                    break
            else:
                stack.pop()
                on_stack.discard(id(node))
                done.add(id(node))
                order.append(node)
    return order


def graph_inputs(outputs: Iterable[Variable]) -> list[Variable]:
    """The ownerless variables (inputs and constants) the outputs depend on, in first-use order."""
    outputs = list(outputs)
    seen: set[int] = set()
    found: list[Variable] = []

    def visit(var):
        if var.owner is None and id(var) not in seen:
            seen.add(id(var))
            found.append(var)

    for node in toposort(outputs):
        for var in node.inputs:
            visit(var)
    for out in outputs:
        visit(out)
    return found


def ancestors(outputs: Iterable[Variable]) -> set[int]:
    """``id`` of every variable ``outputs`` depend on, the outputs included."""
    seen: set[int] = set()
    stack = list(outputs)
    while stack:
        var = stack.pop()
        if id(var) in seen:
            continue
        seen.add(id(var))
        if var.owner is not None:
            stack.extend(var.owner.inputs)
    return seen
