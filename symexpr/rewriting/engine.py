"""Rules and the equilibrium driver that applies them to a graph.

A :class:`Rule` is a pattern and a builder: when the pattern matches a
variable, the builder makes its replacement from the bindings.  A
:class:`RuleSet` indexes rules by the op at the pattern's root, and
:func:`rewrite_to_fixpoint` applies a rule set bottom-up, sweep after sweep,
until no rule fires.  A rule pair that undoes each other is reported instead
of looping forever.
"""

from __future__ import annotations

from collections.abc import Callable

from symexpr.graph.basic import Constant, Variable
from symexpr.graph.fgraph import FunctionGraph, RewriteRecord
from symexpr.graph.text import infix_text
from symexpr.graph.traversal import graph_inputs
from symexpr.ops.elemwise import Elemwise
from symexpr.rewriting.pattern import Pat, dispatch_keys, pattern_keys, root_may_match


class RewriteLoopError(RuntimeError):
    """Rules that keep undoing each other's work."""


class RewriteError(RuntimeError):
    """A rule raised an exception: a bug in the rule (a rule declines by returning ``None``).

    The message names the rule and the node it was applied to; the exception the
    rule raised is chained as ``__cause__``.
    """


class Rule:
    """``pattern -> replacement``.

    Parameters
    ----------
    name : str
        Unique name, used in logs and in ``passes=["-name"]`` exclusions.
    pattern : Pat
        What the rule matches.
    build : callable
        ``build(**bindings) -> Variable or None``; ``None`` means "does not apply".
        The bindings also include ``node_out``, the matched variable.
    doc : str, optional
        One line: what the rule does and when it is sound.

    Whatever ``build`` returns must have the matched variable's dtype, rank and
    runtime shape; the driver checks dtype, rank and static shape.
    """

    def __init__(self, name: str, pattern: Pat, build: Callable, doc: str = ""):
        self.name = name
        self.pattern = pattern
        self.build = build
        self.doc = doc

    def __repr__(self):
        return f"Rule({self.name}: {self.pattern!r})"

    def apply(self, var: Variable) -> Variable | None:
        """The replacement for ``var``, or ``None`` if the rule does not apply.

        Raises
        ------
        RewriteError
            If the pattern (a ``where`` predicate) or the builder raises: a rule
            declines by returning ``None``, so an exception is a bug in the rule.
        TypeError
            If the builder returns something other than a Variable or ``None``, or
            a Variable of another type than ``var``.
        """
        pattern = self.pattern
        try:
            if isinstance(pattern, Pat) and not pattern.may_match(var):
                return None
        except Exception as exc:
            raise self._error(var, exc, "its pattern") from exc
        matches = pattern.matches(var, {})
        while True:
            try:
                bindings = next(matches, None)
            except Exception as exc:
                raise self._error(var, exc, "its pattern") from exc
            if bindings is None:
                return None
            try:
                out = self.build(node_out=var, **bindings)
            except Exception as exc:
                raise self._error(var, exc, "its builder") from exc
            if out is not None and out is not var:
                if not isinstance(out, Variable):
                    raise TypeError(f"rule {self.name}: the builder returned a {type(out).__name__}, not a Variable or None")
                if not _same_type(var, out):
                    raise TypeError(
                        f"rule {self.name}: the replacement has type {out.type}, the matched variable {var.type} "
                        "(dtype, rank and every known dimension must be kept)"
                    )
                return out

    def _error(self, var: Variable, exc: Exception, where: str) -> RewriteError:
        return RewriteError(
            f"rule {self.name}: {where} raised {type(exc).__name__}: {exc}\n"
            f"  applied to: {_node_text(var)} ({var.type})\n"
            "  (a rule that does not apply must return None; an exception is a bug in the rule)"
        )

    def __call__(self, fgraph: FunctionGraph) -> None:
        """Use a single rule as a pass."""
        rewrite_to_fixpoint(fgraph, RuleSet([self]), pass_name=self.name)


def _node_text(var: Variable, limit: int = 200) -> str:
    """``var`` as one line of infix text (``repr`` if printing fails), cut to ``limit`` characters."""
    try:
        text = infix_text([var]).replace("\n", "; ")
    except Exception:  # only an error message is being formatted: never hide the rule's own error
        text = repr(var)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _same_type(old: Variable, new: Variable) -> bool:
    """Same dtype and rank, and every dimension ``old`` knows statically ``new`` knows equally."""
    return (
        old.dtype == new.dtype
        and old.ndim == new.ndim
        and all(o is None or o == n for o, n in zip(old.type.shape, new.type.shape))
    )


def rule(name: str, pattern: Pat, doc: str = ""):
    """Decorator form: ``@rule("mul_one", Pat(ps.mul, [X, ONE]))`` over the builder."""

    def wrap(build: Callable) -> Rule:
        return Rule(name, pattern, build, doc or (build.__doc__ or "").strip())

    return wrap


class RuleSet:
    """Rules indexed by the op at their pattern's root."""

    def __init__(self, rules=()):
        self.rules: list[Rule] = []
        self._index: dict = {}
        self._any: list[Rule] = []
        self._candidates: dict = {}
        for r in rules:
            self.add(r)

    def add(self, r: Rule) -> None:
        if any(existing.name == r.name for existing in self.rules):
            raise ValueError(f"RuleSet: a rule named {r.name!r} is already registered")
        self.rules.append(r)
        self._candidates.clear()
        keys = pattern_keys(r.pattern)
        if keys is None:
            self._any.append(r)
        else:
            for k in keys:
                self._index.setdefault(k, []).append(r)

    def without(self, names) -> "RuleSet":
        names = set(names)
        return RuleSet(r for r in self.rules if r.name not in names)

    def for_op(self, op) -> list[Rule]:
        """The rules indexed under ``op``'s dispatch keys, most specific key first, then those for any op."""
        found = []
        for k in dispatch_keys(op):
            found.extend(self._index.get(k, ()))
        return found + self._any

    def candidates(self, op) -> tuple[Rule, ...]:
        """The rules the driver tries on a node of ``op``.

        Parameters
        ----------
        op : Op
            The node's op.

        Returns
        -------
        tuple of Rule
            :meth:`for_op` less the rules whose pattern cannot match at its
            root's op check (see :func:`~symexpr.rewriting.pattern.root_may_match`),
            in the same order.  Cached by the op's class and, for an Elemwise,
            its scalar op: all that the index and that check look at.
        """
        key = (type(op), op.scalar_op) if isinstance(op, Elemwise) else type(op)
        found = self._candidates.get(key)
        if found is None:
            found = self._candidates[key] = tuple(r for r in self.for_op(op) if root_may_match(r.pattern, op))
        return found

    def __iter__(self):
        return iter(self.rules)

    def __len__(self):
        return len(self.rules)


def rewrite_to_fixpoint(
    fgraph: FunctionGraph, rules: RuleSet, pass_name: str = "rewrite", max_sweeps: int = 64, max_local: int = 64
) -> int:
    """Apply ``rules`` bottom-up until none fires; return the number of changes.

    Each sweep visits every node once in dependency order, rebuilt on its
    already-rewritten inputs, and applies rules to it until none fires.  New
    nodes a replacement creates are visited by the next sweep.  A variable on
    which no rule fired is not tried again by later sweeps: a rule's outcome
    may depend only on the (immutable) subgraph it is applied to.

    Raises
    ------
    RewriteLoopError
        If rules bring a node or the whole graph back to an earlier state.
    """
    total = 0
    seen_states: dict[tuple, int] = {}
    keepalive = []  # ids in seen_states stay valid while their objects live
    log: list[RewriteRecord] = []
    settled: set[Variable] = set()  # variables on which every rule was tried and none fired
    for sweep in range(max_sweeps):
        memo: dict[int, Variable] = {}  # id(variable of the graph) -> its replacement, for those replaced
        fired: list[RewriteRecord] = []
        for node in fgraph.toposort():
            node_inputs = node.inputs
            if memo and not memo.keys().isdisjoint(map(id, node_inputs)):
                outputs = node.op.make_node(*[memo.get(id(v), v) for v in node_inputs]).outputs
                for old, new in zip(node.outputs, outputs):
                    memo[id(old)] = new
            else:
                outputs = node.outputs
            if len(outputs) != 1 or outputs[0] in settled:
                continue
            var = _rewrite_node(outputs[0], rules, pass_name, fired, max_local, settled)
            if var is not node.outputs[0]:
                memo[id(node.outputs[0])] = var
            else:  # rewritten back to the graph's own variable
                memo.pop(id(var), None)
        if not fired:
            break
        new_outputs = [memo.get(id(v), v) for v in fgraph.outputs]
        _check_sources(fgraph, new_outputs, fired, pass_name)
        log.extend(fired)
        total += len(fired)
        state = tuple(map(id, new_outputs))
        if state in seen_states:
            names = sorted({r.rule for r in log[seen_states[state]:]})
            raise RewriteLoopError(
                f"{pass_name}: rules {', '.join(names)} undo each other: the graph came back to an earlier state"
            )
        seen_states[state] = len(log)
        keepalive.append(new_outputs)
        fgraph.set_outputs(new_outputs)
    else:
        raise RewriteLoopError(f"{pass_name}: no fixed point after {max_sweeps} sweeps")
    fgraph.history.extend(log)
    return total


def _check_sources(fgraph, outputs, fired, pass_name):
    allowed = {id(v) for v in fgraph.inputs}
    for var in graph_inputs(outputs):
        if id(var) not in allowed and not isinstance(var, Constant):
            rules = ", ".join(dict.fromkeys(r.rule for r in fired))
            raise ValueError(
                f"{pass_name}: a replacement made by rule(s) {rules} uses {var!r}, which is not an input of the graph"
            )


def _rewrite_node(var: Variable, rules: RuleSet, pass_name: str, fired: list, max_local: int, settled: set) -> Variable:
    """``var`` rewritten until no rule fires (added to ``settled``), each change appended to ``fired``."""
    trail = [var]
    for _ in range(max_local):
        if var.owner is None or var in settled:
            return var
        for r in rules.candidates(var.owner.op):
            try:
                new = r.apply(var)
            except RewriteError as exc:
                exc.add_note(f"in pass {pass_name}")
                raise
            if new is not None:
                break
        else:
            settled.add(var)
            return var
        fired.append(RewriteRecord(pass_name, r.name, var, new))
        if any(new is t for t in trail):
            names = [rec.rule for rec in fired[-len(trail):]]
            raise RewriteLoopError(
                f"{pass_name}: rules {', '.join(dict.fromkeys(names))} undo each other on {RewriteRecord(pass_name, r.name, var, new)}"
            )
        trail.append(new)
        var = new
    raise RewriteLoopError(f"{pass_name}: more than {max_local} rewrites of one node; last rule {r.name}")
