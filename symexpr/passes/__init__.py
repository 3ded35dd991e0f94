"""Graph passes and the pass registry used by ``function(..., passes=...)``.

A pass is a callable ``pass_(fgraph) -> None`` that rewrites a
:class:`~symexpr.graph.fgraph.FunctionGraph` in place.  ``passes=`` accepts
``None`` (the default pipeline), ``"none"``, a registered name, a pass, or a
list of those; ``"-name"`` in a list removes a pass.

The rewrite engine and the standard optimisation pipeline (CSE, constant
folding, canonicalisation, fusion) are a separate piece of work; today the
default pipeline is empty and the registry holds ``decompose``.
"""

from __future__ import annotations

from collections.abc import Callable

from symexpr.passes.decompose import decompose

_PASSES: dict[str, Callable] = {}
DEFAULT_PIPELINE: list[str] = []


def register_pass(name: str, pass_: Callable) -> None:
    """Register ``pass_`` under ``name`` for use in ``passes=[...]``."""
    if not callable(pass_):
        raise TypeError(f"register_pass: pass must be callable, got {type(pass_).__name__}")
    _PASSES[name] = pass_


def resolve_passes(passes) -> list[Callable]:
    """The list of pass callables that a ``passes=`` argument names."""
    if passes is None:
        passes = list(DEFAULT_PIPELINE)
    elif passes == "none":
        return []
    elif isinstance(passes, str) or callable(passes):
        passes = [passes]
    elif not isinstance(passes, (list, tuple)):
        raise TypeError(f"passes: expected None, 'none', a pass name, a callable or a list of them, got {type(passes).__name__}")
    if all(isinstance(p, str) and p.startswith("-") for p in passes):
        passes = list(DEFAULT_PIPELINE) + list(passes)  # only exclusions: remove from the default
    chosen: list[Callable] = []
    excluded: set = set()
    for item in passes:
        if isinstance(item, str) and item.startswith("-"):
            if item[1:] not in _PASSES:
                raise ValueError(f"passes: unknown pass {item[1:]!r} (registered: {', '.join(sorted(_PASSES))})")
            excluded.add(_PASSES[item[1:]])
        elif isinstance(item, str):
            if item == "none":
                continue
            if item not in _PASSES:
                raise ValueError(f"passes: unknown pass {item!r} (registered: {', '.join(sorted(_PASSES))})")
            chosen.append(_PASSES[item])
        elif callable(item):
            chosen.append(item)
        else:
            raise TypeError(f"passes: each entry must be a pass name or a callable, got {item!r}")
    return [p for p in chosen if p not in excluded]


register_pass("decompose", decompose)

__all__ = ["register_pass", "resolve_passes", "decompose", "DEFAULT_PIPELINE"]
