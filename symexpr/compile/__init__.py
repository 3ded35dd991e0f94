from symexpr.compile.function import Function, function
from symexpr.compile.evaluate import evaluate  # also adds Variable.eval

__all__ = ["Function", "evaluate", "function"]
