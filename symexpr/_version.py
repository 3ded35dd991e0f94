"""The package version, importable from any layer (``symexpr.__version__`` re-exports it)."""

__version__ = "0.1.0"
