"""Process-independent keys of compiled code: the compiler's own source."""

from __future__ import annotations

import functools
import hashlib
import os


def hash_sources(package_dir) -> str:
    """SHA-256 over every ``.py`` file under ``package_dir``: relative path and bytes, in sorted order."""
    digest = hashlib.sha256()
    files = []
    for folder, dirs, names in os.walk(package_dir):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        files += [os.path.join(folder, n) for n in names if n.endswith(".py")]
    for path in sorted(files, key=lambda p: os.path.relpath(p, package_dir).replace(os.sep, "/")):
        rel = os.path.relpath(path, package_dir).replace(os.sep, "/")
        with open(path, "rb") as fh:
            data = fh.read()
        digest.update(f"{rel}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


@functools.lru_cache(maxsize=None)
def source_hash() -> str:
    """The hash of the code generator's source, part of every cache key (computed once per process).

    It covers every ``.py`` file of the symexpr package rather than a list of
    modules that shape generated code (lowering, kernel IR, codegen, scalar
    ops, math library, passes...): a list would go stale, and a stale key serves
    old machine code for a graph the new code compiles differently.  Editing
    any symexpr source (a new version, or a checkout) therefore starts a fresh
    set of cache entries.  It costs one read of the package's sources (a few
    milliseconds), on the first compile that uses the cache.
    """
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return hash_sources(package)
