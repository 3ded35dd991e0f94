from symexpr.compile.function import Function, function

__all__ = ["Function", "function"]
