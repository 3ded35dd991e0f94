"""The rewrite engine: declarative patterns, rules and the equilibrium driver."""

from symexpr.graph.fgraph import RewriteRecord
from symexpr.rewriting.engine import Rule, RuleSet, RewriteLoopError, rewrite_to_fixpoint, rule
from symexpr.rewriting.pattern import Pat

__all__ = ["Pat", "Rule", "RuleSet", "RewriteLoopError", "RewriteRecord", "rewrite_to_fixpoint", "rule"]
