"""The on-disk compile cache: layout, keys, corruption, concurrency, environment, failures."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
import re
import sys
import time
import traceback
import warnings

import pytest

from symexpr.runtime import cache as cache_mod
from symexpr.runtime.cache import (
    FORMAT_VERSION,
    CacheEntry,
    CompileCache,
    cache_enabled,
    default_cache_dir,
    make_key,
)

MB = 1 << 20


@pytest.fixture(autouse=True)
def _private_default_dir(tmp_path, monkeypatch):
    """Never let a test reach the real user cache, even through the default directory."""
    monkeypatch.setenv("SYMEXPR_CACHE_DIR", str(tmp_path / "default-cache"))
    monkeypatch.delenv("SYMEXPR_CACHE", raising=False)


def _payload(seed: str, size: int = MB) -> bytes:
    return random.Random(seed).randbytes(size)


def _entry_files(cache: CompileCache, key: str):
    shard = cache.directory / f"v{FORMAT_VERSION}" / key[:2]
    return shard / f"{key}.json", shard / f"{key}.o"


BASE_PARTS = {
    "graph": "0f" * 32,
    "geometry": [[[3, 4], [32, 8]], [[4], [8]]],
    "dtypes": ["float32", "int64"],
    "target": {"cpu": "skylake-avx512", "features": "+avx2,+avx512f,-prefer-256-bit", "llvm": "15.0.7"},
    "codegen": 1,
    "symexpr": "0.1.0",
}


# -- round trip ------------------------------------------------------------------------------------


def test_store_load_round_trip_and_counters(tmp_path):
    cache = CompileCache(tmp_path / "c")
    key = make_key(BASE_PARTS)
    assert cache.load(key) is None
    assert cache.stats == {"hits": 0, "misses": 1, "corrupt": 0, "stores": 0, "store_errors": 0}

    code = _payload("round-trip", 4096) + b"\x00\xff"
    meta = {"segments": 3, "steps": 7, "names": ["a", "b"], "nested": {"x": None, "y": 1.5, "z": True}}
    cache.store(key, code, meta)
    entry = cache.load(key)
    assert isinstance(entry, CacheEntry)
    assert entry.object_code == code
    assert entry.metadata == meta
    assert cache.load(key) == entry
    assert cache.stats == {"hits": 2, "misses": 1, "corrupt": 0, "stores": 1, "store_errors": 0}

    # Layout and record.
    json_path, obj_path = _entry_files(cache, key)
    assert obj_path.read_bytes() == code
    record = json.loads(json_path.read_text())
    assert record == {
        "format": FORMAT_VERSION,
        "key": key,
        "object_sha256": hashlib.sha256(code).hexdigest(),
        "object_size": len(code),
        "metadata": meta,
    }
    assert not [p for p in json_path.parent.iterdir() if p.name.startswith(".tmp-")]

    # A second cache object on the same directory sees it too.
    other = CompileCache(str(tmp_path / "c"))
    assert other.load(key).object_code == code


def test_store_replaces_and_accepts_bytes_like(tmp_path):
    cache = CompileCache(tmp_path)
    key = make_key({"k": 1})
    cache.store(key, b"old", {"v": 1})
    cache.store(key, bytearray(b"newer"), {"v": 2})
    entry = cache.load(key)
    assert entry.object_code == b"newer" and type(entry.object_code) is bytes
    assert entry.metadata == {"v": 2}
    cache.store(key, memoryview(b""), {})
    assert cache.load(key) == CacheEntry(b"", {})


def test_store_rejects_bad_metadata_before_writing(tmp_path):
    cache = CompileCache(tmp_path / "c")
    key = make_key({"k": 1})
    with pytest.raises(TypeError, match=r"metadata\['info'\]\[1\].*set"):
        cache.store(key, b"code", {"info": [1, {2}]})
    with pytest.raises(TypeError, match="metadata must be a dict"):
        cache.store(key, b"code", [1, 2])
    with pytest.raises(TypeError, match="bytes-like"):
        cache.store(key, "not bytes", {})
    assert not (tmp_path / "c").exists()
    assert cache.stats["stores"] == cache.stats["store_errors"] == 0


@pytest.mark.parametrize("key", ["", "a", "../evil", "ab/cd", ".tmp-x", "a b", "k" * 201, 123, None])
def test_bad_keys_are_refused(tmp_path, key):
    cache = CompileCache(tmp_path / "c")
    with pytest.raises(ValueError, match="bad key"):
        cache.store(key, b"x", {})
    with pytest.raises(ValueError, match="bad key"):
        cache.load(key)
    assert not (tmp_path / "c").exists()


# -- make_key --------------------------------------------------------------------------------------


def test_make_key_is_sha256_of_canonical_json():
    parts = {"b": [1, 2.5, None, True], "a": {"y": "é", "x": -0}}
    expected = hashlib.sha256(b'{"a":{"x":0,"y":"\\u00e9"},"b":[1,2.5,null,true]}').hexdigest()
    assert make_key(parts) == expected
    assert len(expected) == 64


def test_make_key_stable_across_dict_ordering():
    shuffled = {k: BASE_PARTS[k] for k in reversed(list(BASE_PARTS))}
    shuffled["target"] = {k: BASE_PARTS["target"][k] for k in reversed(list(BASE_PARTS["target"]))}
    assert list(shuffled) != list(BASE_PARTS)
    assert make_key(shuffled) == make_key(BASE_PARTS)
    assert make_key(json.loads(json.dumps(BASE_PARTS))) == make_key(BASE_PARTS)


def _changed(path, value):
    parts = json.loads(json.dumps(BASE_PARTS))
    *outer, last = path
    node = parts
    for p in outer:
        node = node[p]
    node[last] = value
    return parts


@pytest.mark.parametrize(
    "path, value",
    [
        (("dtypes", 0), "float64"),  # a dtype
        (("geometry", 0, 0, 1), 5),  # a shape
        (("geometry", 0, 1, 0), 16),  # a stride
        (("target", "cpu"), "znver4"),  # cpu name
        (("target", "features"), "+avx2,-avx512f,-prefer-256-bit"),  # features string
        (("target", "llvm"), "16.0.0"),  # a version
        (("symexpr",), "0.1.1"),  # a version
        (("codegen",), 2),
        (("codegen",), 1.0),  # int vs float
        (("codegen",), True),  # int vs bool
        (("codegen",), "1"),  # int vs str
        (("codegen",), None),
        (("dtypes",), ["int64", "float32"]),  # list order matters
        (("graph",), "0F" * 32),  # case matters
    ],
)
def test_make_key_changes_with_every_part(path, value):
    assert make_key(_changed(path, value)) != make_key(BASE_PARTS)


def test_make_key_changes_with_added_or_removed_part():
    base = make_key(BASE_PARTS)
    assert make_key({**BASE_PARTS, "extra": None}) != base
    assert make_key({k: v for k, v in BASE_PARTS.items() if k != "codegen"}) != base


@pytest.mark.parametrize(
    "bad, where",
    [
        (("geometry",), (3, 4)),  # tuple
        (("target", "cpu"), b"skylake"),  # bytes
        (("dtypes", 1), object()),
        (("geometry", 0), {1, 2}),  # set
        (("target", "opts"), {1: "O3"}),  # non-str dict key
    ],
)
def test_make_key_type_error_names_the_part(bad, where):
    import numpy as np

    parts = _changed(bad, where)
    label = "".join(f"[{p!r}]" for p in bad)
    with pytest.raises(TypeError, match=re.escape(f"make_key: parts{label} ")):
        make_key(parts)
    with pytest.raises(TypeError, match=r"parts\['n'\].*int64"):
        make_key({"n": np.int64(3)})


def test_make_key_refuses_non_dict_and_cycles():
    with pytest.raises(TypeError, match="must be a dict"):
        make_key([1, 2])
    loop = {"a": []}
    loop["a"].append(loop)
    with pytest.raises(TypeError, match="circular"):
        make_key(loop)


# -- corruption ------------------------------------------------------------------------------------


def _truncate_object(json_path, obj_path):
    obj_path.write_bytes(obj_path.read_bytes()[:-100])


def _flip_byte(json_path, obj_path):
    data = bytearray(obj_path.read_bytes())
    data[len(data) // 2] ^= 0x01
    obj_path.write_bytes(bytes(data))


def _garbage_json(json_path, obj_path):
    json_path.write_bytes(b'{"format": 1, "key": \x00\xff garbage')


def _empty_json(json_path, obj_path):
    json_path.write_bytes(b"")


def _json_not_object(json_path, obj_path):
    json_path.write_text("[1, 2, 3]")


def _edit_record(**changes):
    def corrupt(json_path, obj_path):
        record = json.loads(json_path.read_text())
        record.update(changes)
        json_path.write_text(json.dumps(record))

    corrupt.__name__ = "_record_" + "_".join(changes)
    return corrupt


def _missing_object(json_path, obj_path):
    obj_path.unlink()


def _object_replaced_by_directory(json_path, obj_path):
    obj_path.unlink()
    obj_path.mkdir()


@pytest.mark.parametrize(
    "corrupt",
    [
        _truncate_object,
        _flip_byte,
        _garbage_json,
        _empty_json,
        _json_not_object,
        _edit_record(format=FORMAT_VERSION + 1),
        _edit_record(format=True),
        _edit_record(key="ab" * 32),
        _edit_record(object_size=12),
        _edit_record(object_sha256="00" * 32),
        _edit_record(metadata=None),
        _missing_object,
    ],
    ids=lambda f: f.__name__.strip("_"),
)
def test_corrupt_entry_is_a_miss_removed_and_rebuilt(tmp_path, corrupt):
    cache = CompileCache(tmp_path)
    key = make_key({"corrupt": corrupt.__name__})
    code = _payload(corrupt.__name__, 64 * 1024)
    cache.store(key, code, {"segments": 2})
    json_path, obj_path = _entry_files(cache, key)
    corrupt(json_path, obj_path)

    assert cache.load(key) is None
    assert cache.stats["corrupt"] == 1
    assert cache.stats["hits"] == 0
    assert not json_path.exists() and not obj_path.exists()
    assert cache.load(key) is None  # now a plain miss
    assert cache.stats["corrupt"] == 1 and cache.stats["misses"] == 1

    cache.store(key, code, {"segments": 2})
    assert cache.load(key) == CacheEntry(code, {"segments": 2})


def test_unreadable_object_is_a_miss_not_deleted(tmp_path):
    cache = CompileCache(tmp_path)
    key = make_key({"k": "dir"})
    cache.store(key, b"code", {})
    json_path, obj_path = _entry_files(cache, key)
    _object_replaced_by_directory(json_path, obj_path)
    assert cache.load(key) is None
    assert json_path.exists()  # not proven damaged; a store repairs it
    assert cache.stats["corrupt"] == 0 and cache.stats["misses"] == 1


def test_temporary_files_are_ignored_and_old_ones_cleared(tmp_path):
    cache = CompileCache(tmp_path)
    keys = [make_key({"i": i}) for i in range(5)]
    for i, key in enumerate(keys):
        cache.store(key, f"code {i}".encode(), {"i": i})
    shard = _entry_files(cache, keys[0])[0].parent
    old_tmp = shard / ".tmp-old"
    new_tmp = shard / ".tmp-new"
    old_tmp.write_bytes(b"partial")
    new_tmp.write_bytes(b"partial")
    hour_ago = time.time() - 2 * 3600
    os.utime(old_tmp, (hour_ago, hour_ago))
    orphan = shard / f"{'ff' * 32}.o"  # an object whose store never committed
    orphan.write_bytes(b"orphan")

    assert cache.load(keys[0]).metadata == {"i": 0}
    assert cache.clear() == 5
    assert not old_tmp.exists() and new_tmp.exists() and not orphan.exists()
    assert all(cache.load(k) is None for k in keys)
    assert cache.clear() == 0
    cache.store(keys[1], b"again", {})
    assert cache.load(keys[1]).object_code == b"again"


def test_clear_on_missing_directory(tmp_path):
    assert CompileCache(tmp_path / "nothing-here").clear() == 0


# -- concurrency -----------------------------------------------------------------------------------


def _report(queue, name, body):
    try:
        result = body()
    except BaseException:  # noqa: BLE001  (shipped to the parent, which fails the test)
        result = {"error": traceback.format_exc()}
    result["name"] = name
    queue.put(result)


def _storer(directory, index, shared_key, iterations, barrier, queue):
    """Store then load the shared key and this process's own key, over and over."""

    def body():
        cache = CompileCache(directory)
        own_key = make_key({"process": index})
        payloads = {shared_key: _payload("shared"), own_key: _payload(f"own-{index}")}
        metas = {shared_key: {"who": "shared"}, own_key: {"who": index}}
        torn, hits, nones = [], 0, 0
        barrier.wait(timeout=120)
        for i in range(iterations):
            key = shared_key if i % 3 else own_key
            cache.store(key, payloads[key], metas[key])
            entry = cache.load(key)
            if entry is None:
                nones += 1
            elif entry.object_code != payloads[key] or entry.metadata != metas[key]:
                torn.append(f"iteration {i}: {len(entry.object_code)} bytes, metadata {entry.metadata}")
            else:
                hits += 1
        return {"torn": torn[:5], "hits": hits, "nones": nones, "stats": dict(cache.stats)}

    _report(queue, f"storer {index}", body)


def _rewriter(directory, index, key, variants, iterations, barrier, done, queue):
    """Store ``key`` again and again, cycling through ``variants`` (names of payloads)."""

    def body():
        cache = CompileCache(directory)
        payloads = {v: _payload(v) for v in variants}
        barrier.wait(timeout=120)
        try:
            for i in range(iterations):
                v = variants[(i + index) % len(variants)]
                cache.store(key, payloads[v], {"variant": v})
        finally:
            done.release()
        return {"stats": dict(cache.stats)}

    _report(queue, f"rewriter {index}", body)


def _reader(directory, key, variants, n_writers, barrier, done, queue):
    """Load ``key`` in a tight loop until every writer is done; check each result is whole."""

    def body():
        cache = CompileCache(directory)
        payloads = {v: _payload(v) for v in variants}
        torn, hits, nones, loads = [], 0, 0, 0
        barrier.wait(timeout=120)
        finished = 0
        while finished < n_writers:
            if done.acquire(block=False):
                finished += 1
            entry = cache.load(key)
            loads += 1
            if entry is None:
                nones += 1
            elif entry.object_code != payloads.get(entry.metadata.get("variant")):
                torn.append(f"load {loads}: {len(entry.object_code)} bytes, metadata {entry.metadata}")
            else:
                hits += 1
        return {"torn": torn[:5], "hits": hits, "nones": nones, "loads": loads, "stats": dict(cache.stats)}

    _report(queue, "reader", body)


def _run_processes(ctx, targets):
    """Start ``(function, args)`` processes (each ends with a queue), collect their reports."""
    queue = targets[0][1][-1]
    procs = [ctx.Process(target=f, args=a, daemon=True) for f, a in targets]
    for p in procs:
        p.start()
    try:
        results = [queue.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():  # pragma: no cover
                p.kill()
    errors = [r["error"] for r in results if "error" in r]
    assert not errors, "\n".join(errors)
    return {r["name"]: r for r in results}


@pytest.mark.parametrize("n_procs", [2, 4])
def test_concurrent_stores_and_loads(tmp_path, n_procs):
    ctx = multiprocessing.get_context("spawn")
    directory = str(tmp_path / "c")
    shared_key = make_key({"shared": True})
    barrier, queue = ctx.Barrier(n_procs), ctx.Queue()
    iterations = 200
    results = _run_processes(
        ctx, [(_storer, (directory, i, shared_key, iterations, barrier, queue)) for i in range(n_procs)]
    )

    for name, r in results.items():
        assert r["torn"] == [], f"{name} read a torn entry: {r['torn']}"
        assert r["stats"]["store_errors"] == 0
        if os.name == "posix":
            # Identical writers never make an entry look damaged, and once stored it never vanishes.
            assert r["stats"]["corrupt"] == 0, (name, r["stats"])
            assert r["nones"] == 0 and r["hits"] == iterations, (name, r)
    cache = CompileCache(directory)
    assert cache.load(shared_key) == CacheEntry(_payload("shared"), {"who": "shared"})
    for i in range(n_procs):
        assert cache.load(make_key({"process": i})) == CacheEntry(_payload(f"own-{i}"), {"who": i})


@pytest.mark.parametrize("variants", [["same"], ["A", "B"]], ids=["identical", "differing"])
def test_reader_while_writers_rewrite(tmp_path, variants):
    """Writers rewrite one entry (with the same bytes, or - which a key should prevent - with
    different bytes) while a reader loads it in a tight loop: every load is whole or None."""
    ctx = multiprocessing.get_context("spawn")
    directory = str(tmp_path / "c")
    key = make_key({"rewritten": variants})
    CompileCache(directory).store(key, _payload(variants[0]), {"variant": variants[0]})
    n_writers = 2
    barrier, done, queue = ctx.Barrier(n_writers + 1), ctx.Semaphore(0), ctx.Queue()
    targets = [(_rewriter, (directory, i, key, variants, 200, barrier, done, queue)) for i in range(n_writers)]
    targets.append((_reader, (directory, key, variants, n_writers, barrier, done, queue)))
    results = _run_processes(ctx, targets)

    reader = results["reader"]
    assert reader["torn"] == [], reader["torn"]
    assert reader["loads"] > 0
    for i in range(n_writers):
        assert results[f"rewriter {i}"]["stats"]["store_errors"] == 0
    cache = CompileCache(directory)
    if len(variants) == 1 and os.name == "posix":
        # The entry exists from the start and is only ever replaced whole: every load hits.
        assert reader["nones"] == 0 and reader["stats"]["corrupt"] == 0, reader
        assert cache.load(key) == CacheEntry(_payload("same"), {"variant": "same"})
    else:
        # Mixed bytes under one key may cost misses (and a rebuild), never a wrong answer.
        entry = cache.load(key)
        assert entry is None or entry.object_code == _payload(entry.metadata["variant"])
        cache.store(key, _payload("A"), {"variant": "A"})
        assert cache.load(key) == CacheEntry(_payload("A"), {"variant": "A"})


# -- environment -----------------------------------------------------------------------------------


def test_cache_dir_override(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMEXPR_CACHE_DIR", str(tmp_path / "override"))
    assert default_cache_dir() == tmp_path / "override"
    cache = CompileCache()
    assert cache.directory == tmp_path / "override"
    cache.store(make_key({"k": 1}), b"x", {})
    assert (tmp_path / "override" / f"v{FORMAT_VERSION}").is_dir()


def test_cache_dir_override_expands_user(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("USERPROFILE", str(tmp_path))
    monkeypatch.setenv("SYMEXPR_CACHE_DIR", os.path.join("~", "mycache"))
    assert default_cache_dir() == tmp_path / "mycache"


def test_relative_directory_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cache = CompileCache("rel")
    assert cache.directory == tmp_path / "rel"


@pytest.mark.parametrize(
    "value, enabled",
    [
        (None, True),
        ("", True),
        ("1", True),
        ("on", True),
        ("yes", True),
        ("0", False),
        ("off", False),
        ("OFF", False),
        ("false", False),
        ("False", False),
        ("no", False),
        (" No ", False),
    ],
)
def test_cache_enabled(monkeypatch, value, enabled):
    if value is None:
        monkeypatch.delenv("SYMEXPR_CACHE", raising=False)
    else:
        monkeypatch.setenv("SYMEXPR_CACHE", value)
    assert cache_enabled() is enabled


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG applies on Linux")
def test_linux_default_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("SYMEXPR_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "symexpr"
    monkeypatch.setenv("SYMEXPR_CACHE_DIR", "")  # empty: not an override
    assert default_cache_dir() == tmp_path / "xdg" / "symexpr"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/xdg")  # invalid per the XDG spec: ignored
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "symexpr"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "symexpr"


@pytest.mark.skipif(os.name != "posix", reason="fakes other platforms through $HOME")
def test_macos_and_windows_default_dirs(tmp_path, monkeypatch):
    monkeypatch.delenv("SYMEXPR_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(cache_mod.sys, "platform", "darwin")
    assert default_cache_dir() == tmp_path / "home" / "Library" / "Caches" / "symexpr"
    monkeypatch.setattr(cache_mod.sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "local"))
    assert default_cache_dir() == tmp_path / "local" / "symexpr" / "Cache"
    monkeypatch.delenv("LOCALAPPDATA")
    assert default_cache_dir() == tmp_path / "home" / "AppData" / "Local" / "symexpr" / "Cache"


def test_no_home_directory_disables_the_cache(monkeypatch):
    monkeypatch.delenv("SYMEXPR_CACHE_DIR")

    def no_home():
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(cache_mod.sys, "platform", "darwin")
    monkeypatch.setattr(cache_mod.pathlib.Path, "home", staticmethod(no_home))
    with pytest.warns(RuntimeWarning, match="no compile cache directory"):
        cache = CompileCache()
    assert cache.directory is None
    key = make_key({"k": 1})
    cache.store(key, b"x", {})
    assert cache.load(key) is None
    assert cache.clear() == 0
    assert cache.stats["store_errors"] == 1 and cache.stats["misses"] == 1


# -- unwritable and unreadable caches --------------------------------------------------------------


def _assert_store_fails_softly(cache, directory_text):
    key = make_key({"k": "unwritable"})
    with pytest.warns(RuntimeWarning, match="cannot write to the compile cache") as record:
        cache.store(key, b"code", {"a": 1})
    with warnings.catch_warnings(record=True) as later:
        warnings.simplefilter("always")
        cache.store(key, b"code", {"a": 1})
        cache.store(make_key({"k": 2}), b"more", {})
    assert len(record) == 1 and later == [], [str(w.message) for w in [*record, *later]]
    assert directory_text in str(record[0].message)
    assert record[0].filename == __file__  # points at the caller of store
    assert cache.stats["store_errors"] == 3 and cache.stats["stores"] == 0
    assert cache.load(key) is None
    assert cache.stats["misses"] == 1 and cache.stats["corrupt"] == 0


def test_cache_under_a_regular_file(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"not a directory")
    cache = CompileCache(blocker / "cache")
    _assert_store_fails_softly(cache, str(blocker / "cache"))
    assert cache.clear() == 0
    assert blocker.read_bytes() == b"not a directory"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_directory(tmp_path):
    directory = tmp_path / "ro"
    directory.mkdir()
    directory.chmod(0o500)
    try:
        _assert_store_fails_softly(CompileCache(directory), str(directory))
    finally:
        directory.chmod(0o700)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores permissions")
def test_unreadable_directory_loads_none(tmp_path):
    cache = CompileCache(tmp_path / "c")
    key = make_key({"k": 1})
    cache.store(key, b"code", {})
    root = tmp_path / "c" / f"v{FORMAT_VERSION}"
    root.chmod(0o000)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert cache.load(key) is None
        assert cache.stats["misses"] == 1 and cache.stats["corrupt"] == 0
    finally:
        root.chmod(0o700)
    assert cache.load(key).object_code == b"code"  # untouched


def test_store_error_mid_write_leaves_no_temporary(tmp_path, monkeypatch):
    cache = CompileCache(tmp_path)
    key = make_key({"k": "disk full"})

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(cache_mod.os, "replace", full)
        with pytest.warns(RuntimeWarning, match="No space left"):
            cache.store(key, b"code", {})
    shard = _entry_files(cache, key)[0].parent
    assert list(shard.iterdir()) == []
    assert cache.load(key) is None


def test_store_interrupted_before_its_commit_leaves_no_entry(tmp_path, monkeypatch):
    """The object is written before the JSON record: a store cut short in between is a plain miss."""
    cache = CompileCache(tmp_path)
    key = make_key({"k": "interrupted"})
    real_replace = os.replace

    def crash_on_record(src, dst):
        if str(dst).endswith(".json"):
            raise OSError(5, "Input/output error")
        real_replace(src, dst)

    with monkeypatch.context() as m:
        m.setattr(cache_mod.os, "replace", crash_on_record)
        with pytest.warns(RuntimeWarning, match="Input/output error"):
            cache.store(key, b"code", {})
    json_path, obj_path = _entry_files(cache, key)
    assert obj_path.exists() and not json_path.exists()
    assert cache.load(key) is None
    assert cache.stats["misses"] == 1 and cache.stats["corrupt"] == 0
    cache.store(key, b"code", {})
    assert cache.load(key) == CacheEntry(b"code", {})


# -- the llvm backend's key covers the code generator's source -------------------------------------


def test_hash_sources_covers_every_python_file(tmp_path):
    from symexpr.runtime import keys as backend

    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "sub" / "b.py").write_text("y = 2\n")
    first = backend.hash_sources(pkg)
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    assert backend.hash_sources(str(pkg)) == first
    # Files that are not Python source, and bytecode caches, do not count.
    (pkg / "notes.txt").write_text("not code")
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__" / "a.cpython-311.py").write_text("cached")
    assert backend.hash_sources(pkg) == first
    (pkg / "sub" / "b.py").write_text("y = 3\n")  # an edit
    edited = backend.hash_sources(pkg)
    assert edited != first
    (pkg / "sub" / "b.py").rename(pkg / "sub" / "c.py")  # same bytes, another module
    assert backend.hash_sources(pkg) not in (first, edited)
    (pkg / "sub" / "c.py").rename(pkg / "sub" / "b.py")
    (pkg / "sub" / "new.py").write_text("")  # a new, empty module
    assert backend.hash_sources(pkg) != edited


def test_stat_sources_covers_every_python_file_without_reading_old_ones(tmp_path, monkeypatch):
    import builtins
    import types

    from symexpr.runtime import keys as backend

    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "sub" / "b.py").write_text("y = 2\n")
    later = time.time_ns() + 10 * backend.RECENT_NS  # every file is old by then
    first = backend.stat_sources(pkg, now_ns=later)
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    assert backend.stat_sources(str(pkg), now_ns=later) == first
    with monkeypatch.context() as m:  # old files are keyed on what the file system records only
        m.setattr(builtins, "open", lambda *a, **k: pytest.fail("stat_sources read an old file"))
        assert backend.stat_sources(pkg, now_ns=later) == first
        m.setattr(backend, "time", types.SimpleNamespace(time_ns=lambda: later))
        assert backend.stat_sources(pkg) == first
    # Files that are not Python source, and bytecode caches, do not count.
    (pkg / "notes.txt").write_text("not code")
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__" / "a.cpython-311.py").write_text("cached")
    assert backend.stat_sources(pkg, now_ns=later) == first
    (pkg / "sub" / "b.py").rename(pkg / "sub" / "c.py")  # same file, another module
    renamed = backend.stat_sources(pkg, now_ns=later)
    assert renamed != first
    (pkg / "sub" / "new.py").write_text("")  # a new, empty module
    assert backend.stat_sources(pkg, now_ns=later) not in (first, renamed)


def test_stat_sources_changes_with_each_recorded_field(tmp_path, monkeypatch):
    """Size, modification time, change time and inode each count (a reinstall keeps size and maybe mtime)."""
    import types

    from symexpr.runtime import keys as backend

    (tmp_path / "a.py").write_text("x = 1\n")
    base = dict(st_size=6, st_mtime_ns=10**18, st_ctime_ns=10**18, st_ino=42)
    record = {}
    monkeypatch.setattr(backend, "os", types.SimpleNamespace(
        scandir=os.scandir, fspath=os.fspath, stat=lambda p: types.SimpleNamespace(**record)))
    later = 10**18 + 10 * backend.RECENT_NS
    record.update(base)
    hashes = {backend.stat_sources(tmp_path, now_ns=later)}
    for field in base:
        record.update(base, **{field: base[field] + 1})
        hashes.add(backend.stat_sources(tmp_path, now_ns=later))
    assert len(hashes) == 1 + len(base)


def test_stat_sources_reads_recently_changed_files(tmp_path, monkeypatch):
    """Two same-size edits within one timestamp tick keep size and times: recent files are keyed on their bytes too."""
    import types

    from symexpr.runtime import keys as backend

    path = tmp_path / "a.py"
    path.write_text("x = 1\n")
    record = os.stat(path)
    # The file system reports the first write's record after the second write, as within one tick.
    monkeypatch.setattr(backend, "os", types.SimpleNamespace(scandir=os.scandir, fspath=os.fspath, stat=lambda p: record))
    recent = max(record.st_mtime_ns, record.st_ctime_ns) + backend.RECENT_NS - 1
    first = backend.stat_sources(tmp_path, now_ns=recent)
    path.write_text("x = 2\n")
    assert backend.stat_sources(tmp_path, now_ns=recent) != first
    old = recent + 1  # the same record, no longer recent: only the record counts
    before = backend.stat_sources(tmp_path, now_ns=old)
    path.write_text("x = 1\n")
    assert backend.stat_sources(tmp_path, now_ns=old) == before


def test_source_hash_is_the_package_stat_hash_computed_once(monkeypatch):
    import types

    import symexpr
    from symexpr.runtime import keys as backend

    assert not hasattr(backend, "CODEGEN_VERSION"), "replaced by the source hash"
    now = time.time_ns()
    monkeypatch.setattr(backend, "time", types.SimpleNamespace(time_ns=lambda: now))  # one clock for both hashes
    backend.source_hash.cache_clear()
    first = backend.source_hash()
    assert first == backend.stat_sources(os.path.dirname(symexpr.__file__), now_ns=now)
    hits = backend.source_hash.cache_info().hits
    assert backend.source_hash() == first
    assert backend.source_hash.cache_info().hits == hits + 1


def test_code_generator_change_misses_the_cache(monkeypatch):
    """Entries compiled by other code generator sources are never served (a stale entry would run old code)."""
    import numpy as np

    import symexpr as se
    from symexpr.runtime import keys as backend

    x = se.tensor("x", "float32", (5,))  # static shape: compiled by function()

    def compile_():
        f = se.function([x], x * 2 + 1, backend="llvm")
        np.testing.assert_array_equal(f(np.arange(5, dtype=np.float32)), np.arange(5) * 2 + 1)
        return f._compiled._latest().cache_hit

    assert compile_() is False
    assert compile_() is True
    with monkeypatch.context() as m:
        m.setattr(backend, "source_hash", lambda: "0" * 64)  # as after an edit of codegen.py
        assert compile_() is False
        assert compile_() is True
    assert compile_() is True  # the first entry is still there for the real sources


def test_graphs_differing_only_in_constant_values_share_one_entry():
    """Constants are buffers read at run time: the object code of ``x @ W + b`` does not depend on W's values."""
    import numpy as np

    import symexpr as se

    rng = np.random.default_rng(0)
    x = se.tensor("x", "float32", (None, 16))
    a = rng.standard_normal((4, 16), dtype=np.float32)
    hits = []
    for seed in (1, 2):
        w = np.random.default_rng(seed).standard_normal((16, 8), dtype=np.float32)
        b = np.random.default_rng(seed + 10).standard_normal(8, dtype=np.float32)
        f = se.function([x], se.tanh(x @ se.constant(w) + se.constant(b)), backend="llvm")
        np.testing.assert_allclose(f(a), np.tanh(a @ w + b), rtol=1e-5, atol=1e-6)
        hits.append(f._compiled._latest().cache_hit)
    assert hits == [False, True]
