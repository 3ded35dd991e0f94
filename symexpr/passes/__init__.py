"""Graph passes, the pass registry and ``passes=`` resolution.

The standard pipeline, in order::

    merge -> canonicalize -> stabilize -> specialize -> fuse_attention -> fuse_elemwise -> fuse_reductions
    -> fuse_qlinear_epilogues -> cleanup

``function()`` runs ``"fast_run"`` (all of them) by default; ``"fast_compile"``
runs only ``merge`` and ``cleanup``.  See :func:`resolve_passes` for what
``passes=`` accepts.  Rules are added to a rule pass with :func:`register_rule`,
whole passes with :func:`register_pass`.
"""

from __future__ import annotations

from symexpr.passes import canonicalize as _canonicalize
from symexpr.passes import specialize as _specialize
from symexpr.passes import stabilize as _stabilize
from symexpr.passes.attention import fuse_attention
from symexpr.passes.cleanup import constant_folding, merge_constants
from symexpr.passes.decompose import decompose
from symexpr.passes.fusion import fuse_elemwise, fuse_reductions
from symexpr.passes.qlinear_epilogue import fuse_qlinear_epilogues
from symexpr.passes.registry import (
    PRESETS,
    GraphPass,
    RewritePass,
    all_rules,
    get_pass,
    register_pass,
    register_rule,
    registered_passes,
    resolve_passes,
)

register_pass(GraphPass("merge", merge_constants, ("fast_run", "fast_compile", "merge"), 0.0))
register_pass(RewritePass("canonicalize", [*_canonicalize.RULES, constant_folding], ("fast_run", "canonicalize"), 1.0,
                          "arithmetic identities and normal forms (exact)"))
register_pass(RewritePass("stabilize", _stabilize.RULES, ("fast_run", "stabilize"), 1.5,
                          "numerically stable forms and recognition of composites"))
register_pass(RewritePass("specialize", _specialize.RULES, ("fast_run", "specialize"), 2.0, "cheaper equivalent forms"))
register_pass(GraphPass("fuse_attention", fuse_attention, ("fast_run", "attention"), 45.0,
                        "softmax(q @ k^T * scale + mask) @ v into one fused Attention op"))
register_pass(GraphPass("fuse_elemwise", fuse_elemwise, ("fast_run", "fusion"), 49.0, "fuse elementwise groups into Fused ops"))
register_pass(GraphPass("fuse_reductions", fuse_reductions, ("fast_run", "fusion"), 49.5,
                        "fuse a reduction with its elementwise producer"))
register_pass(GraphPass("fuse_qlinear_epilogues", fuse_qlinear_epilogues, ("fast_run", "fusion"), 49.7,
                        "elementwise work on an int8 linear's result into its kernel's epilogue"))
register_pass(RewritePass("cleanup", [constant_folding], ("fast_run", "fast_compile", "cleanup"), 100.0,
                          "constant folding after the other passes"))
register_pass(GraphPass("decompose", decompose, ("decompose",), 200.0, "expand composite ops into primitives"))

__all__ = [
    "PRESETS",
    "GraphPass",
    "RewritePass",
    "all_rules",
    "decompose",
    "get_pass",
    "register_pass",
    "register_rule",
    "registered_passes",
    "resolve_passes",
]
