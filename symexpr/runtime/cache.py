"""On-disk compile cache: native object code plus JSON metadata, keyed by a hash.

A compiling backend (the llvm backend) compiles one module per plan structure.  Compiling is
slow next to loading an object file, so each result is kept on disk and found
again by a key that hashes everything the code depends on (see
:func:`make_key`).  Nothing here uses pickle: an entry is raw object code and a
JSON record, and loading one executes no Python.

Location
--------
``$SYMEXPR_CACHE_DIR`` when set and non-empty, else the platform cache
directory (:func:`default_cache_dir`):

- Linux and other POSIX systems: ``$XDG_CACHE_HOME/symexpr`` (when that is an
  absolute path), else ``~/.cache/symexpr``;
- macOS: ``~/Library/Caches/symexpr``;
- Windows: ``%LOCALAPPDATA%\\symexpr\\Cache`` (``~\\AppData\\Local`` when
  ``LOCALAPPDATA`` is unset).

``SYMEXPR_CACHE=0`` (or ``off``, ``false``, ``no``; any case) turns the cache
off: :func:`cache_enabled` then returns False and the backend makes no
:class:`CompileCache`.

Layout
------
::

    <directory>/v<FORMAT_VERSION>/<key[:2]>/<key>.o      object code
    <directory>/v<FORMAT_VERSION>/<key[:2]>/<key>.json   commit record

The record is ``{"format": FORMAT_VERSION, "key": key, "object_sha256": ...,
"object_size": ..., "metadata": {...}}``.  Bumping :data:`FORMAT_VERSION`
moves to a fresh ``v<N>`` directory; older ones are never read (nor removed).
Files named ``.tmp-*`` are writes in progress (or left by a crashed writer);
:meth:`CompileCache.load` never looks at them and :meth:`CompileCache.clear`
removes those older than an hour.

Atomicity
---------
Each file is written to a temporary file in its final directory
(``tempfile.mkstemp(prefix=".tmp-")``) and then renamed over its final name
with :func:`os.replace`.  A rename within one directory is atomic: any
process opening the name sees either the old complete file or the new complete
file, never a partial one, and an open file keeps its content when the name is
replaced under it.  The object is written first and the JSON second, so the
JSON is the commit record: an entry exists only when its JSON exists *and* the
object beside it has the size and SHA-256 the JSON records.  A reader checks
both every time, so it returns either object code that matches the metadata it
returns, or None.

No lock is needed: writers of one key write the same bytes (the key hashes
everything the code depends on), so whichever rename lands last leaves the
same entry, and a reader holding an open file is unaffected by a rename.  If
two writers did store *different* objects under one key, a reader could pair
one writer's JSON with the other's object; the hash check turns that into a
mismatch, and the reader re-reads (a writer between its two renames finishes
within microseconds) before it concludes anything.  Only a mismatch that stays
put between two reads counts as corruption.

The files are not ``fsync``-ed: that costs milliseconds per store, and a
power loss that leaves a file empty or short is caught by the size and hash
check on the next load, which then rebuilds the entry.

Corruption
----------
A JSON file that cannot be parsed or has the wrong format number, key or
fields, or an object that is missing or whose size or SHA-256 differs from the
record, makes :meth:`CompileCache.load` count the entry in
``stats["corrupt"]``, delete both files (best effort; errors are ignored) and
return None, so the caller compiles again and stores a good entry.

Failures
--------
The cache never fails a compile.  :meth:`CompileCache.store` catches
:class:`OSError` (read-only or missing directory, disk full, permissions),
counts it in ``stats["store_errors"]``, warns once per :class:`CompileCache`
with a :class:`RuntimeWarning` naming the directory and the error, and
returns.  :meth:`CompileCache.load` treats a directory or file it cannot read
as a miss.  Errors that are the caller's bug (a key that is not a plain file
name, metadata that is not JSON) are raised.

Trust
-----
Object code from the cache is executed.  The hash detects corruption, not
tampering: anyone who can write to the cache directory can run code in every
process that uses it.  Files are created with mode 0600 (``mkstemp``'s
default), so a cache directory is meant for one user.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass

from symexpr.runtime import forksafe

__all__ = ["FORMAT_VERSION", "CacheEntry", "CompileCache", "cache_enabled", "default_cache_dir", "make_key"]

#: Version of the on-disk layout and record; entries live under ``v<FORMAT_VERSION>``.
FORMAT_VERSION = 1

#: Temporary files start with this; they are never entries.
_TMP_PREFIX = ".tmp-"

#: ``clear()`` removes temporary files older than this many seconds.
_TMP_MAX_AGE = 3600.0

#: Values of ``$SYMEXPR_CACHE`` that turn the cache off.
_OFF_VALUES = frozenset({"0", "off", "false", "no"})

#: A key is used as a file name: letters, digits, ``_`` and ``-`` only, no leading dot.
_KEY_RE = re.compile(r"[0-9A-Za-z_-]{2,200}")

#: Reads of a changing entry before ``load`` gives up and reports a miss.
_LOAD_ATTEMPTS = 3

#: Seconds to wait before re-reading an entry that did not verify.
_RETRY_DELAY = 0.002

_JSON_SCALARS = (str, int, float, bool, type(None))


def default_cache_dir() -> pathlib.Path:
    """The directory the compile cache uses when none is given.

    Returns
    -------
    pathlib.Path
        ``$SYMEXPR_CACHE_DIR`` when set and non-empty (``~`` expanded).
        Otherwise the platform cache directory followed by ``symexpr``:
        ``$XDG_CACHE_HOME`` (when absolute) or ``~/.cache`` on Linux and
        other systems, ``~/Library/Caches`` on macOS, and on Windows
        ``%LOCALAPPDATA%`` (or ``~\\AppData\\Local``) followed by
        ``symexpr\\Cache``.  The directory is not created.

    Raises
    ------
    RuntimeError
        If the location depends on the home directory and that cannot be
        determined (see :meth:`pathlib.Path.home`).
    """
    override = os.environ.get("SYMEXPR_CACHE_DIR", "")
    if override:
        return pathlib.Path(override).expanduser()
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA", "")
        base = pathlib.Path(local) if local else pathlib.Path.home() / "AppData" / "Local"
        return base / "symexpr" / "Cache"
    if sys.platform == "darwin":
        return pathlib.Path.home() / "Library" / "Caches" / "symexpr"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG base-directory spec says relative paths are invalid and must be ignored.
    base = pathlib.Path(xdg) if xdg and os.path.isabs(xdg) else pathlib.Path.home() / ".cache"
    return base / "symexpr"


def cache_enabled() -> bool:
    """Whether the compile cache is on.

    Returns
    -------
    bool
        False when ``$SYMEXPR_CACHE`` is ``0``, ``off``, ``false`` or ``no``
        (any case, surrounding blanks ignored); True otherwise, including
        when it is unset.
    """
    return os.environ.get("SYMEXPR_CACHE", "").strip().lower() not in _OFF_VALUES


def _check_json(value, path: str, what: str, _active: set | None = None) -> None:
    """Raise TypeError unless ``value`` is built only from JSON types (naming where it is not)."""
    if isinstance(value, _JSON_SCALARS):
        return
    if not isinstance(value, (list, dict)):
        raise TypeError(
            f"{what}: {path} is a {type(value).__name__} ({value!r:.60}), which is not JSON; "
            "use only str, int, float, bool, None, list and dict with str keys"
        )
    active = set() if _active is None else _active
    if id(value) in active:
        raise TypeError(f"{what}: {path} contains itself (a circular reference)")
    active.add(id(value))
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, f"{path}[{i}]", what, active)
    else:
        for name, item in value.items():
            if not isinstance(name, str):
                raise TypeError(
                    f"{what}: {path} has a {type(name).__name__} key {name!r:.60}; JSON object keys must be str"
                )
            _check_json(item, f"{path}[{name!r}]", what, active)
    active.discard(id(value))


def make_key(parts: dict) -> str:
    """Hash the parts compiled code depends on into a cache key.

    Parameters
    ----------
    parts : dict
        Named parts (graph hash, geometry, target fingerprint, versions...),
        built only from ``str``, ``int``, ``float``, ``bool``, ``None``,
        ``list`` and ``dict`` with ``str`` keys.  Tuples are refused rather
        than silently turned into lists.

    Returns
    -------
    str
        The SHA-256 hex digest (64 characters) of the canonical JSON of
        ``parts`` (sorted keys, no whitespace): independent of dict order,
        different whenever any part changes (``1``, ``1.0`` and ``True``
        differ).

    Raises
    ------
    TypeError
        If ``parts`` is not a dict or holds a value that is not JSON; the
        message names the offending part, e.g. ``parts['geometry'][0]``.
    """
    if not isinstance(parts, dict):
        raise TypeError(f"make_key: parts must be a dict, not {type(parts).__name__}")
    _check_json(parts, "parts", "make_key")
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    """One cache entry: object code and the metadata stored with it.

    Attributes
    ----------
    object_code : bytes
        The native object file, verified against its recorded size and SHA-256.
    metadata : dict
        The JSON metadata given to :meth:`CompileCache.store`.
    """

    object_code: bytes
    metadata: dict


def _identity(st: os.stat_result | None):
    """What tells one version of a file from another (a replace gives a new inode)."""
    if st is None:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _unlink_quietly(path: pathlib.Path) -> bool:
    try:
        os.unlink(path)
    except OSError:
        return False
    return True


def _replace(src: str, dst: pathlib.Path) -> None:
    """``os.replace``; on Windows, retried briefly while a reader holds ``dst`` open."""
    for attempt in range(5):
        try:
            os.replace(src, dst)
            return
        except PermissionError:
            if os.name != "nt" or attempt == 4:
                raise
            time.sleep(0.01 * 2**attempt)


def _write_atomic(directory: pathlib.Path, name: str, data: bytes) -> None:
    """Write ``data`` to ``directory/name`` through a temporary file and a rename."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=_TMP_PREFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        _replace(tmp, directory / name)
    except BaseException:
        _unlink_quietly(pathlib.Path(tmp))
        raise


class CompileCache:
    """An on-disk cache of compiled object code with JSON metadata.

    Safe to share between threads and processes (see the module docstring).

    Parameters
    ----------
    directory : str or os.PathLike, optional
        Root directory of the cache; created on the first store.  Defaults to
        :func:`default_cache_dir`.

    Attributes
    ----------
    directory : pathlib.Path or None
        The root directory (absolute, ``~`` expanded).  None only when no
        directory was given and the default could not be determined (no home
        directory); the cache then stores nothing and every load misses.
    stats : dict
        Counters ``"hits"``, ``"misses"``, ``"corrupt"`` (entries found
        damaged and deleted), ``"stores"`` and ``"store_errors"``.
    """

    def __init__(self, directory: str | os.PathLike | None = None):
        self.stats = {"hits": 0, "misses": 0, "corrupt": 0, "stores": 0, "store_errors": 0}
        self._lock = forksafe.owned_lock(self)
        self._warned = False
        if directory is None:
            try:
                directory = default_cache_dir()
            except RuntimeError as exc:
                self.directory = None
                self._warn(f"symexpr: no compile cache directory ({exc}); compiled code will not be cached")
                return
        self.directory = pathlib.Path(os.fspath(directory)).expanduser().absolute()

    def __repr__(self) -> str:
        return f"CompileCache({str(self.directory)!r})"

    # -- paths ---------------------------------------------------------------

    @property
    def _root(self) -> pathlib.Path:
        return self.directory / f"v{FORMAT_VERSION}"

    @staticmethod
    def _check_key(key) -> None:
        if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
            raise ValueError(
                f"CompileCache: bad key {key!r:.80}; a key is 2 to 200 letters, digits, '_' or '-' "
                "(make_key gives 64 hex digits)"
            )

    def _paths(self, key: str) -> tuple[pathlib.Path, pathlib.Path]:
        shard = self._root / key[:2]
        return shard / f"{key}.json", shard / f"{key}.o"

    # -- bookkeeping ---------------------------------------------------------

    def _count(self, name: str) -> None:
        with self._lock:
            self.stats[name] += 1

    def _warn(self, message: str) -> None:
        with self._lock:
            if self._warned:
                return
            self._warned = True
        warnings.warn(message, RuntimeWarning, stacklevel=3)

    # -- load ----------------------------------------------------------------

    def load(self, key: str) -> CacheEntry | None:
        """Look up an entry.

        Parameters
        ----------
        key : str
            The entry's key, normally from :func:`make_key`.

        Returns
        -------
        CacheEntry or None
            The entry, its object verified against the recorded size and
            SHA-256; None on a miss, on an unreadable cache, and on a corrupt
            entry (which is then deleted and counted in ``stats["corrupt"]``).

        Raises
        ------
        ValueError
            If ``key`` is not a valid key (letters, digits, ``_``, ``-``).
        """
        self._check_key(key)
        if self.directory is None:
            self._count("misses")
            return None
        json_path, obj_path = self._paths(key)
        previous = None
        for attempt in range(_LOAD_ATTEMPTS):
            outcome, value = self._read(key, json_path, obj_path)
            if outcome == "hit":
                self._count("hits")
                return value
            if outcome == "miss":
                self._count("misses")
                return None
            # The entry did not verify.  Corrupt if nothing moved since the last read;
            # if a file changed, a writer may be between its two renames: read again.
            if attempt > 0 and value == previous:
                break
            previous = value
            if attempt < _LOAD_ATTEMPTS - 1:
                time.sleep(_RETRY_DELAY)
        else:
            # Changing under us each time: someone is rewriting it; leave it to them.
            self._count("misses")
            return None
        self._count("corrupt")
        _unlink_quietly(json_path)  # the commit record first
        _unlink_quietly(obj_path)
        return None

    def _read(self, key, json_path, obj_path):
        """One read of an entry: ``("hit", entry)``, ``("miss", None)`` or ``("bad", file identities)``."""
        try:
            with open(json_path, "rb") as f:
                json_id = _identity(os.fstat(f.fileno()))
                raw = f.read()
        except OSError:  # missing, or a directory we cannot read: a miss, not corruption
            return "miss", None
        try:
            record = json.loads(raw)
        except (ValueError, RecursionError):
            record = None
        if not (
            isinstance(record, dict)
            and type(record.get("format")) is int
            and record["format"] == FORMAT_VERSION
            and record.get("key") == key
            and isinstance(record.get("object_sha256"), str)
            and type(record.get("object_size")) is int
            and isinstance(record.get("metadata"), dict)
        ):
            return "bad", (json_id, None)
        try:
            with open(obj_path, "rb") as f:
                st = os.fstat(f.fileno())
                obj_id = _identity(st)
                data = f.read() if st.st_size == record["object_size"] else None
        except FileNotFoundError:
            return "bad", (json_id, None)
        except OSError:  # unreadable, not proven damaged: leave it alone
            return "miss", None
        if (
            data is None
            or len(data) != record["object_size"]
            or hashlib.sha256(data).hexdigest() != record["object_sha256"]
        ):
            return "bad", (json_id, obj_id)
        return "hit", CacheEntry(object_code=data, metadata=record["metadata"])

    # -- store ---------------------------------------------------------------

    def store(self, key: str, object_code: bytes, metadata: dict) -> None:
        """Store an entry, replacing any entry with the same key.

        Failures to write (read-only or unusable directory, disk full,
        permissions) never raise: they are counted in
        ``stats["store_errors"]`` and reported by one :class:`RuntimeWarning`
        per cache object.

        Parameters
        ----------
        key : str
            The entry's key, normally from :func:`make_key`.
        object_code : bytes
            The object file (any bytes-like object).
        metadata : dict
            Data returned with the entry; only ``str``, ``int``, ``float``,
            ``bool``, ``None``, ``list`` and ``dict`` with ``str`` keys, so it
            loads back equal.

        Raises
        ------
        ValueError
            If ``key`` is not a valid key.
        TypeError
            If ``object_code`` is not bytes-like or ``metadata`` is not a dict
            of JSON values (the message names the offending item); raised
            before anything is written.
        """
        self._check_key(key)
        try:
            data = bytes(memoryview(object_code))
        except TypeError:
            raise TypeError(
                f"CompileCache.store: object_code must be bytes-like, not {type(object_code).__name__}"
            ) from None
        if not isinstance(metadata, dict):
            raise TypeError(f"CompileCache.store: metadata must be a dict, not {type(metadata).__name__}")
        _check_json(metadata, "metadata", "CompileCache.store")
        record = {
            "format": FORMAT_VERSION,
            "key": key,
            "object_sha256": hashlib.sha256(data).hexdigest(),
            "object_size": len(data),
            "metadata": metadata,
        }
        # Deterministic bytes: identical concurrent stores write identical files.
        text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")
        if self.directory is None:
            self._count("store_errors")
            return
        json_path, obj_path = self._paths(key)
        shard = obj_path.parent
        try:
            shard.mkdir(parents=True, exist_ok=True)
            _write_atomic(shard, obj_path.name, data)  # the object first ...
            _write_atomic(shard, json_path.name, text)  # ... then the record that commits it
        except OSError as exc:
            self._count("store_errors")
            self._warn(
                f"symexpr: cannot write to the compile cache in {self.directory} "
                f"({type(exc).__name__}: {exc}); compiled code will not be cached. "
                "Set SYMEXPR_CACHE_DIR to a writable directory, or SYMEXPR_CACHE=0 to turn the cache off."
            )
            return
        self._count("stores")

    # -- clear ---------------------------------------------------------------

    def clear(self) -> int:
        """Remove every entry of this format version.

        Also removes object files without a record and temporary files
        (``.tmp-*``) older than an hour; younger temporary files may belong to
        a store in progress and are kept.  Directories are kept.  Errors on
        single files are ignored.

        Returns
        -------
        int
            How many entries (records) were removed.
        """
        if self.directory is None:
            return 0
        removed = 0
        now = time.time()
        try:
            shards = [e for e in os.scandir(self._root) if e.is_dir(follow_symlinks=False)]
        except OSError:
            return 0
        for shard in shards:
            try:
                names = [e for e in os.scandir(shard.path) if e.is_file(follow_symlinks=False)]
            except OSError:
                continue
            # Records first, so no entry is ever visible without its object.
            names.sort(key=lambda e: not e.name.endswith(".json"))
            for entry in names:
                name = entry.name
                if name.startswith(_TMP_PREFIX):
                    try:
                        old = now - entry.stat(follow_symlinks=False).st_mtime > _TMP_MAX_AGE
                    except OSError:
                        continue
                    if old:
                        _unlink_quietly(pathlib.Path(entry.path))
                elif name.endswith(".json"):
                    removed += _unlink_quietly(pathlib.Path(entry.path))
                elif name.endswith(".o"):
                    _unlink_quietly(pathlib.Path(entry.path))
        return removed
