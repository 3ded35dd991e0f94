"""The pass database: named passes with tags and positions, presets, and ``passes=`` resolution.

The standard pipeline runs in position order::

    merge (0) -> canonicalize (1) -> stabilize (1.5) -> specialize (2) -> fuse_attention (45)
    -> fuse_elemwise (49) -> fuse_reductions (49.5) -> fuse_qlinear_epilogues (49.7) -> cleanup (100)

``fast_run`` (the default of :func:`symexpr.function`) runs every pass tagged
``fast_run``; ``fast_compile`` only the cheap cleanup passes.
"""

from __future__ import annotations

from collections.abc import Callable

from symexpr.graph.fgraph import FunctionGraph
from symexpr.rewriting.engine import Rule, RuleSet, rewrite_to_fixpoint


class RewritePass:
    """A named set of :class:`~symexpr.rewriting.Rule` applied to a fixed point."""

    def __init__(self, name: str, rules=(), tags=(), position: float = 50.0, doc: str = ""):
        self.name = name
        self.rules = RuleSet(rules)
        self.tags = frozenset(tags)
        self.position = position
        self.doc = doc

    def __repr__(self):
        return f"<RewritePass {self.name}: {len(self.rules)} rules>"

    def __call__(self, fgraph: FunctionGraph, exclude=frozenset()) -> None:
        rules = self.rules.without(exclude) if exclude else self.rules
        rewrite_to_fixpoint(fgraph, rules, pass_name=self.name)


class GraphPass:
    """A named whole-graph pass: ``fn(fgraph)`` rewrites in place."""

    def __init__(self, name: str, fn: Callable, tags=(), position: float = 50.0, doc: str = ""):
        self.name = name
        self.fn = fn
        self.tags = frozenset(tags)
        self.position = position
        self.doc = doc or ((fn.__doc__ or "").strip().splitlines() or [""])[0]

    def __repr__(self):
        return f"<GraphPass {self.name}>"

    def __call__(self, fgraph: FunctionGraph, exclude=frozenset()) -> None:
        self.fn(fgraph)


_PASSES: dict[str, object] = {}
PRESETS = ("fast_run", "fast_compile")


def register_pass(pass_, name: str | None = None, tags=(), position: float | None = None):
    """Register a pass under its name (a RewritePass, a GraphPass, or a plain callable).

    A plain callable ``fn(fgraph)`` is wrapped in a :class:`GraphPass` named
    ``name`` with ``tags`` and ``position``.  Returns the registered pass.
    """
    if isinstance(pass_, (RewritePass, GraphPass)):
        if name is not None and name != pass_.name:
            raise ValueError(f"register_pass: the pass is named {pass_.name!r}, not {name!r}")
    elif callable(pass_):
        if not name:
            raise TypeError("register_pass: give a name for a plain callable pass")
        pass_ = GraphPass(name, pass_, tags, 50.0 if position is None else position)
    else:
        raise TypeError(f"register_pass: expected a pass or a callable, got {type(pass_).__name__}")
    _PASSES[pass_.name] = pass_
    return pass_


def register_rule(rule_: Rule, pass_name: str = "canonicalize") -> Rule:
    """Add a rule to a registered :class:`RewritePass` (e.g. ``"canonicalize"``)."""
    target = _PASSES.get(pass_name)
    if not isinstance(target, RewritePass):
        names = ", ".join(n for n, p in _PASSES.items() if isinstance(p, RewritePass))
        raise ValueError(f"register_rule: expected the name of a rule pass ({names}), got {pass_name!r}")
    target.rules.add(rule_)
    return rule_


def get_pass(name: str):
    return _PASSES[name]


def registered_passes() -> list:
    """Every registered pass, in pipeline order."""
    return sorted(_PASSES.values(), key=lambda p: p.position)


def all_rules() -> list[tuple[str, Rule]]:
    """``(pass name, rule)`` for every rule of every registered rule pass."""
    return [(p.name, r) for p in registered_passes() if isinstance(p, RewritePass) for r in p.rules]


def _by_tag(tag: str) -> list:
    return [p for p in registered_passes() if tag in p.tags]


def resolve_passes(passes) -> list[Callable]:
    """The pass callables a ``passes=`` argument names, in run order.

    ``passes`` is ``None`` (``"fast_run"``), ``"none"``, or a name or a list of
    entries: a preset (``"fast_run"``, ``"fast_compile"``), a pass name, a tag,
    a pass object, a :class:`~symexpr.rewriting.Rule`, or a callable
    ``fn(fgraph)``.  ``"-name"`` removes the passes with that name or tag, or the
    rule with that name, from the others; a list of exclusions only (e.g.
    ``["-fusion"]``) starts from ``"fast_run"``.
    """
    if passes is None:
        passes = ["fast_run"]
    elif isinstance(passes, str) or callable(passes):
        passes = [passes]
    elif not isinstance(passes, (list, tuple)):
        raise TypeError(
            f"passes: expected None, a preset or pass name, a pass, a rule, a callable or a list of them, "
            f"got {type(passes).__name__}"
        )
    passes = list(passes)
    if passes and all(isinstance(p, str) and p.startswith("-") for p in passes):
        passes = ["fast_run"] + passes
    chosen: list = []
    excluded_passes: set[str] = set()
    excluded_rules: set[str] = set()
    rule_names = {r.name for _, r in all_rules()}
    for item in passes:
        if isinstance(item, str) and item.startswith("-"):
            key = item[1:]
            matched = [p for p in registered_passes() if p.name == key or key in p.tags]
            if matched:
                excluded_passes.update(p.name for p in matched)
            elif key in rule_names:
                excluded_rules.add(key)
            else:
                raise ValueError(f"passes: {item!r} names no pass, tag or rule (passes: {', '.join(_PASSES)})")
        elif isinstance(item, str):
            if item == "none":
                continue
            if item in _PASSES:
                chosen.append(_PASSES[item])
            elif _by_tag(item):
                chosen.extend(_by_tag(item))
            else:
                raise ValueError(
                    f"passes: unknown pass or preset {item!r} (presets: {', '.join(PRESETS)}; passes: {', '.join(_PASSES)})"
                )
        elif isinstance(item, Rule):
            chosen.append(item)
        elif callable(item):
            chosen.append(item)
        else:
            raise TypeError(f"passes: each entry must be a name, a pass, a rule or a callable, got {item!r}")
    out, seen = [], set()
    for p in chosen:
        if id(p) in seen or getattr(p, "name", None) in excluded_passes:
            continue
        seen.add(id(p))
        if isinstance(p, (RewritePass, GraphPass)):
            out.append(_bind_exclusions(p, frozenset(excluded_rules)))
        else:
            out.append(p)
    return out


def _bind_exclusions(p, excluded: frozenset):
    if not excluded or not isinstance(p, RewritePass):
        return p

    def run(fgraph):
        p(fgraph, exclude=excluded)

    run.name = p.name
    return run
