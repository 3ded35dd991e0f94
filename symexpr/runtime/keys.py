"""Process-independent keys of compiled code: the graph's structure and the compiler's own source."""

from __future__ import annotations

import functools
import hashlib
import os

import numpy as np


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


def graph_key(fgraph) -> str:
    """A process-independent structural hash of ``fgraph`` (ops, props, wiring, constant bytes)."""
    numbers: dict[int, int] = {}
    lines = []
    for i, var in enumerate(fgraph.inputs):
        numbers[id(var)] = len(numbers)
        lines.append(f"in {var.type}")
    for node in fgraph.toposort():
        args = []
        for v in node.inputs:
            if id(v) not in numbers:
                numbers[id(v)] = len(numbers)
                lines.append(f"const {v.type} {hashlib.sha256(np.asarray(v.data).tobytes()).hexdigest()}")
            args.append(str(numbers[id(v)]))
        op = node.op
        props = tuple((p, getattr(op, p)) for p in getattr(op, "__props__", ()))
        lines.append(f"{type(op).__module__}.{type(op).__qualname__}{props!r}({','.join(args)})")
        for v in node.outputs:
            numbers[id(v)] = len(numbers)
    lines.append("out " + ",".join(str(numbers[id(v)]) if id(v) in numbers else f"c{v.type}" for v in fgraph.outputs))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()
