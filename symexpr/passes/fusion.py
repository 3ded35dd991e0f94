"""Elementwise fusion: maximal groups of elementwise nodes become one :class:`Fused` op.

A node joins its consumer's group when every use of its output is inside
the group (so nothing is computed twice and the group stays convex).  0-d
constants become literals of the inner program.  A sum/prod/max/min whose
input is such a group (used only there) becomes a :class:`FusedReduce`:
one loop nest, e.g. ``sum(exp(x - m))``.
"""

from __future__ import annotations

from symexpr.graph.basic import Apply, Constant, Variable
from symexpr.graph.fgraph import FunctionGraph, RewriteRecord
from symexpr.ops import scalar as ps
from symexpr.ops.elemwise import Elemwise
from symexpr.ops.fused import Fused, FusedReduce
from symexpr.ops.reduction import Reduce

_FUSABLE_REDUCTIONS = ("sum", "prod", "max", "min")

#: Most elementwise nodes one Fused op absorbs.  A longer chain becomes several Fused
#: ops: a compiled kernel's optimisation time grows faster than linearly in its size,
#: and 512 nodes already do far more arithmetic per element than the memory traffic
#: a split adds.
MAX_FUSED_NODES = 512


def _is_elemwise(node) -> bool:
    return node is not None and isinstance(node.op, (Elemwise, Fused))


def _collect_group(root: Apply, clients: dict, outputs: set, taken: set) -> list[Apply]:
    """Elemwise nodes above ``root`` whose outputs are used only inside the group (at most MAX_FUSED_NODES)."""
    group = [root]
    members = {id(root)}
    frontier = [root]
    while frontier and len(group) < MAX_FUSED_NODES:
        node = frontier.pop()
        for var in node.inputs:
            producer = var.owner
            if not _is_elemwise(producer) or id(producer) in members or id(producer) in taken or id(var) in outputs:
                continue
            if len(group) < MAX_FUSED_NODES and all(c != "output" and id(c) in members for c, _ in clients.get(var, [])):
                group.append(producer)
                members.add(id(producer))
                frontier.append(producer)
    return group


def program_of(op):
    """The scalar program an elementwise op computes: a Fused op's own, one instruction for an Elemwise, else None."""
    if isinstance(op, Fused):
        return op.program
    if isinstance(op, Elemwise):
        return ((op.scalar_op, tuple(("in", i) for i in range(op.scalar_op.nin))),)
    return None


def _program(root: Apply, group: list[Apply]):
    """(program, external inputs) for a group, instructions in dependency order."""
    members = {id(n) for n in group}
    order: list[Apply] = []
    placed: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, ready = stack.pop()
        if ready:
            if id(node) not in placed:
                placed.add(id(node))
                order.append(node)
            continue
        if id(node) in placed:
            continue
        stack.append((node, True))
        for var in reversed(node.inputs):
            if var.owner is not None and id(var.owner) in members and id(var.owner) not in placed:
                stack.append((var.owner, False))
    inputs: list[Variable] = []
    input_index: dict[int, int] = {}
    position: dict[int, int] = {}
    program = []
    for node in order:
        base = len(program)
        for scalar_op, args in program_of(node.op):
            new_args = []
            for a in args:
                if a[0] == "tmp":
                    new_args.append(("tmp", base + a[1]))
                elif a[0] == "const":
                    new_args.append(a)
                else:
                    new_args.append(_operand(node.inputs[a[1]], members, position, inputs, input_index))
            program.append((scalar_op, tuple(new_args)))
        position[id(node.outputs[0])] = len(program) - 1
    return tuple(program), inputs


def _operand(var, members, position, inputs, input_index):
    if var.owner is not None and id(var.owner) in members:
        return ("tmp", position[id(var)])
    if isinstance(var, Constant) and var.ndim == 0:
        return ("const", var.data.item(), var.dtype)
    if id(var) not in input_index:
        input_index[id(var)] = len(inputs)
        inputs.append(var)
    return ("in", input_index[id(var)])


def elementwise_expression(var: Variable, fgraph: FunctionGraph):
    """``(program, inputs)``: the elementwise expression computing ``var``, for an op that absorbs it.

    The group is ``var``'s elementwise producer and the elementwise nodes above
    it used only inside the group (as :func:`fuse_elemwise` collects them);
    a ``var`` with another producer is the program ``identity(i0)`` on itself.
    """
    if not _is_elemwise(var.owner):
        return ((ps.identity, (("in", 0),)),), [var]
    outputs = {id(v) for v in fgraph.outputs}
    group = _collect_group(var.owner, fgraph.clients, outputs, set())
    return _program(var.owner, group)


def fuse_elemwise(fgraph: FunctionGraph) -> None:
    """Replace each maximal elementwise group of two or more nodes by one Fused node."""
    clients = fgraph.clients
    outputs = {id(v) for v in fgraph.outputs}
    order = fgraph.toposort()
    taken: set[int] = set()
    groups: dict[int, list[Apply]] = {}
    for node in reversed(order):  # consumers first, so each group grows upward from its root
        if id(node) in taken or not isinstance(node.op, Elemwise):
            continue
        group = _collect_group(node, clients, outputs, taken)
        taken.update(id(n) for n in group)
        if len(group) >= 2:
            groups[id(node)] = group
    if not groups:
        return
    def make(root, group):
        program, inputs = _program(root, group)
        return Fused(program), inputs

    _rebuild(fgraph, order, groups, "fuse_elemwise", "fuse_elemwise", make)


def _rebuild(fgraph, order, groups, pass_name, rule, make):
    """Rebuild the graph in dependency order, replacing each group root by ``make(root, group)``.

    The other members of a group are not rebuilt: only their group uses them.
    """
    memo: dict[int, Variable] = {}
    roots = set(groups)
    absorbed = {id(n) for group in groups.values() for n in group} - roots
    for node in order:
        if id(node) in roots:
            op, inputs = make(node, groups[id(node)])
            new = op(*[memo.get(id(v), v) for v in inputs])
            fgraph.history.append(RewriteRecord(pass_name, rule, node.outputs[0], new))
            memo[id(node.outputs[0])] = new
        elif id(node) not in absorbed:
            inputs = [memo.get(id(v), v) for v in node.inputs]
            if any(a is not b for a, b in zip(inputs, node.inputs)):
                for old, new in zip(node.outputs, node.op.make_node(*inputs).outputs):
                    memo[id(old)] = new
    fgraph.set_outputs([memo.get(id(v), v) for v in fgraph.outputs])


def fuse_reductions(fgraph: FunctionGraph) -> None:
    """A sum/prod/max/min of an elementwise node used only there becomes one FusedReduce.

    Then an elementwise node that is the only use of a reduction's result, with
    the result's shape, becomes the FusedReduce's epilogue (one loop nest).
    """
    clients = fgraph.clients
    outputs = {id(v) for v in fgraph.outputs}
    order = fgraph.toposort()
    groups: dict[int, list[Apply]] = {}
    for node in order:
        op = node.op
        if not isinstance(op, Reduce) or op.kind not in _FUSABLE_REDUCTIONS or op.initial is not None:
            continue
        (src,) = node.inputs
        if _is_elemwise(src.owner) and id(src) not in outputs and len(clients.get(src, [])) == 1:
            groups[id(node)] = [src.owner]

    def make(root, group):
        program, inputs = _program(group[0], group)
        return FusedReduce(program, root.op.kind, root.op.axis, root.op.keepdims, len(inputs)), inputs

    if groups:
        _rebuild(fgraph, order, groups, "fuse_reductions", "fuse_reduction", make)
    _fuse_epilogues(fgraph)


def _reduction_without_epilogue(op) -> bool:
    if isinstance(op, FusedReduce):
        return not op.epilogue
    return isinstance(op, Reduce) and op.kind in _FUSABLE_REDUCTIONS and op.initial is None


def _fits_into(var: Variable, shape: tuple) -> bool:
    """``var`` broadcasts into ``shape`` without enlarging it, whatever the runtime sizes."""
    if var.ndim > len(shape):
        return False
    return all(d == 1 or (d is not None and d == s) for d, s in zip(var.type.shape[::-1], shape[::-1]))


def _fuse_epilogues(fgraph: FunctionGraph) -> None:
    """An elementwise node used only on a FusedReduce's result (same shape) becomes its epilogue."""
    clients = fgraph.clients
    outputs = {id(v) for v in fgraph.outputs}
    order = fgraph.toposort()
    groups: dict[int, list[Apply]] = {}
    for node in order:
        if not _is_elemwise(node):
            continue
        reduced = [v for v in node.inputs if v.owner is not None and _reduction_without_epilogue(v.owner.op)]
        if len(reduced) != 1:
            continue
        (r,) = reduced
        if id(r) in outputs or len(clients.get(r, [])) != 1 or node.outputs[0].type.shape != r.type.shape:
            continue
        if all(v is r or _fits_into(v, r.type.shape) for v in node.inputs):
            groups[id(node)] = [node]
    if not groups:
        return

    def make(root, group):
        r = next(v for v in root.inputs if v.owner is not None and _reduction_without_epilogue(v.owner.op))
        program, inputs = _program(root, group)
        position = next(i for i, v in enumerate(inputs) if v is r)
        # Program inputs are distinct variables; number the extras in order (by identity: == builds a node).
        extras = [v for v in inputs if v is not r]
        others = [i for i, v in enumerate(inputs) if v is not r]
        renumber = {position: 0, **{i: 1 + k for k, i in enumerate(others)}}
        epilogue = tuple(
            (op, tuple(("in", renumber[a[1]]) if a[0] == "in" else a for a in args)) for op, args in program
        )
        body_op = r.owner.op
        program = body_op.program if isinstance(body_op, FusedReduce) else ((ps.identity, (("in", 0),)),)
        op = FusedReduce(program, body_op.kind, body_op.axis, body_op.keepdims, len(r.owner.inputs), epilogue)
        return op, list(r.owner.inputs) + extras

    _rebuild(fgraph, order, groups, "fuse_reductions", "fuse_epilogue", make)
