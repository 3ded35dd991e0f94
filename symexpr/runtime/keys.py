"""Process-independent keys of compiled code: the compiler's own source."""

from __future__ import annotations

import functools
import hashlib
import os
import time

#: A file changed this recently (nanoseconds) is keyed on its bytes too: a second edit within
#: the file system's timestamp granularity (up to 2 s) could keep its size and timestamps.
RECENT_NS = 2_000_000_000


def _python_files(package_dir) -> list[tuple[str, str]]:
    """``(relative path, path)`` of every ``.py`` file under ``package_dir``, sorted by relative path.

    Relative paths use ``/``.  ``__pycache__`` and directories whose name
    starts with a dot are skipped, and so are symbolic links to directories
    (as :func:`os.walk` does); unreadable directories are ignored.
    """
    found = []
    pending = [(os.fspath(package_dir), "")]
    while pending:
        folder, prefix = pending.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError:
            continue
        for entry in entries:
            if _is(entry.is_dir):
                if entry.name != "__pycache__" and not entry.name.startswith(".") and not _is(entry.is_symlink):
                    pending.append((entry.path, prefix + entry.name + "/"))
            elif entry.name.endswith(".py"):
                found.append((prefix + entry.name, entry.path))
    found.sort()
    return found


def _is(test) -> bool:
    """``test()``, False if it raises OSError (as :func:`os.walk` treats it)."""
    try:
        return test()
    except OSError:
        return False


def hash_sources(package_dir) -> str:
    """SHA-256 over every ``.py`` file under ``package_dir``: relative path and bytes, in sorted order."""
    digest = hashlib.sha256()
    for rel, path in _python_files(package_dir):
        with open(path, "rb") as fh:
            data = fh.read()
        digest.update(f"{rel}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def stat_sources(package_dir, now_ns: int | None = None) -> str:
    """SHA-256 over what the file system records of every ``.py`` file under ``package_dir``.

    Parameters
    ----------
    package_dir : str or os.PathLike
        The directory to walk (as :func:`hash_sources` does).
    now_ns : int, optional
        The current time in nanoseconds (default: :func:`time.time_ns`).

    Returns
    -------
    str
        The hex digest over each file, in sorted order, of its relative path,
        size, modification and status-change times (nanoseconds) and inode
        number, and for a file changed less than :data:`RECENT_NS` before
        ``now_ns``, its bytes as well.

    Notes
    -----
    Any edit, rename, new file or reinstall changes the hash without reading
    the sources; so does a ``touch`` or ``chmod`` that leaves the bytes alone.
    Like Python's timestamp-based ``.pyc`` check, this trusts the file
    system: an edit that kept a file's size, both times and inode would go
    unnoticed.  The change time cannot be set by tools that restore or
    normalise modification times (``tar``, ``cp -p``, reproducible builds),
    and the bytes of recently changed files cover two edits within one tick
    of a coarse timestamp clock.
    """
    if now_ns is None:
        now_ns = time.time_ns()
    digest = hashlib.sha256()
    for rel, path in _python_files(package_dir):
        st = os.stat(path)
        digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\0".encode())
        if now_ns - max(st.st_mtime_ns, st.st_ctime_ns) < RECENT_NS:
            with open(path, "rb") as fh:
                digest.update(b"\1" + hashlib.sha256(fh.read()).digest())
    return digest.hexdigest()


@functools.lru_cache(maxsize=None)
def source_hash() -> str:
    """The hash of the code generator's source, part of every cache key (computed once per process).

    It covers every ``.py`` file of the symexpr package rather than a list of
    modules that shape generated code (lowering, kernel IR, codegen, scalar
    ops, math library, passes...): a list would go stale, and a stale key serves
    old machine code for a graph the new code compiles differently.  Editing
    any symexpr source (a new version, or a checkout) therefore starts a fresh
    set of cache entries.  It hashes the files' sizes, times and inode numbers
    (:func:`stat_sources`), not their bytes, so it costs one ``stat`` per
    source file on the first compile that uses the cache; reinstalling the
    same sources also starts fresh entries.
    """
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return stat_sources(package)
