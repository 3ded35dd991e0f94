"""The rewrite engine: declarative patterns, rules and the equilibrium driver."""

from symexpr.graph.fgraph import RewriteRecord
from symexpr.rewriting.engine import RewriteError, RewriteLoopError, Rule, RuleSet, rewrite_to_fixpoint, rule
from symexpr.rewriting.pattern import Pat

__all__ = ["Pat", "Rule", "RuleSet", "RewriteError", "RewriteLoopError", "RewriteRecord", "rewrite_to_fixpoint", "rule"]
