"""The llvmlite CPU backend: kernel-IR plans compiled to native code, one LLVM module per plan structure.

Each call's input geometry gets a kernel-IR plan; the plan's template (its
structure, with every size a run-time parameter) is compiled once into one
LLVM module that serves every geometry with that structure.  Modules are
cached on disk as object code plus JSON metadata (see
:mod:`symexpr.backends.llvm.cache`).
"""

from __future__ import annotations

import functools
import hashlib
import operator
import os

import numpy as np

from symexpr._version import __version__
from symexpr.backends.llvm import forksafe, loader, runtime, scalar_ops, target
from symexpr.backends.llvm.runtime import get_num_threads, set_num_threads
from symexpr.kernel import lowerings  # noqa: F401  (registers the op lowerings)
from symexpr.kernel.ir import GemmKernel, LoopKernel
from symexpr.kernel.lower import build_plan
from symexpr.kernel.template import parametrise
from symexpr.ops.matmul import MatMul

__all__ = ["LLVMBackend", "LLVMFunction", "get_num_threads", "set_num_threads"]


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
    package = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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


def _schedule(plan):
    """Group steps: runs of loop kernels form one native segment; GEMMs and host steps stand alone.

    Returns ``(segments, schedule, work)``: each segment a list of step indices;
    the schedule ``("native", segment)`` or ``("host", step)`` items in order;
    and each item's work (scalar iterations; 0 where BLAS or the host threads itself).
    """
    segments, schedule, work = [], [], []
    current = []

    def flush():
        if current:
            segments.append(list(current))
            schedule.append(("native", len(segments) - 1))
            work.append(sum(plan.steps[i].work for i in current))
            current.clear()

    for i, step in enumerate(plan.steps):
        if isinstance(step, LoopKernel):
            current.append(i)
        elif isinstance(step, GemmKernel):
            flush()
            segments.append([i])
            schedule.append(("native", len(segments) - 1))
            work.append(0)  # BLAS runs its own threads
        else:
            flush()
            schedule.append(("host", step))
            work.append(0)
    flush()
    return segments, schedule, work


def _supports(blas: bool):
    """What this backend compiles: scalar ops per ``scalar_ops``; GEMMs only when a BLAS is bound."""

    def supports(op, arg_dtypes):
        if isinstance(op, MatMul):
            return blas
        return scalar_ops.supported(op, arg_dtypes)

    return supports


class _Module:
    """The compiled code of one plan template: every geometry whose plan has this structure runs it."""

    def __init__(self, fgraph, template, segments, blas, cache):
        self.template = template
        self.segments = [[template.steps[i] for i in seg] for seg in segments]
        self._ir = None
        key = None
        object_code = None
        if cache is not None:
            from symexpr.backends.llvm.cache import make_key

            key = make_key(
                {
                    "graph": graph_key(fgraph),
                    "template": template.key(),
                    "target": target.fingerprint(),
                    "blas": blas,
                    "codegen": source_hash(),
                    "symexpr": _version(),
                }
            )
            entry = cache.load(key)
            if entry is not None and entry.metadata.get("segments") == len(self.segments):
                object_code = entry.object_code
        self.cache_hit = object_code is not None
        if object_code is None:
            object_code, _ = target.compile_ir(self.source)
            if cache is not None:
                cache.store(key, object_code, {"segments": len(self.segments), "steps": len(template.steps)})
        self.loaded = loader.LoadedModule(object_code, len(self.segments)) if self.segments else None

    @property
    def source(self) -> str:
        if self._ir is None:
            from symexpr.backends.llvm.codegen import generate_module

            self._ir = generate_module(self.template, self.segments, "symexpr", _triple(), target.object_layout())
        return self._ir


class _Specialisation:
    """One input geometry: its plan, and the module of the plan's template with this geometry's parameters."""

    def __init__(self, plan, module, schedule, work, params, fgraph):
        self.plan = plan
        self.module = module
        self.executable = runtime.Executable(fgraph, plan, schedule, module.loaded, work, params)

    @property
    def source(self) -> str:
        return self.module.source

    @property
    def cache_hit(self) -> bool:
        """Whether this geometry's module came from the disk cache rather than LLVM."""
        return self.module.cache_hit


def _triple():
    import llvmlite.binding as llvm

    return llvm.get_process_triple()


def _version():
    return __version__


def _cache():
    from symexpr.backends.llvm.cache import cache_enabled, default_cache_dir

    return _shared_cache(str(default_cache_dir())) if cache_enabled() else None


@functools.lru_cache(maxsize=8)
def _shared_cache(directory):
    from symexpr.backends.llvm.cache import CompileCache

    return CompileCache(directory)


#: Geometries whose run method a function keeps (the least recently added go first).
MAX_GEOMETRIES = 256
#: The size given to dimensions unknown at ``function()`` time when the first module is compiled then.
PROBE_SIZE = 8


class LLVMFunction:
    """The callable the llvm backend returns: dispatches each call to the code for its input geometry.

    A call's geometry (shapes and strides) gets a plan, built in Python; the
    plan's template (its structure, sizes taken out) picks the compiled
    module, compiled when that structure is first seen.  Compilation happens
    at ``function()`` time for a probe geometry, and again only for a new
    structure: a new layout class (a view instead of a contiguous array, a
    size-1 dimension where there was none), never for new sizes alone.
    """

    returns_fresh = True

    def __init__(self, fgraph):
        self.fgraph = fgraph
        #: The specialisation of each recent geometry, by the call-time key.
        self._variants: dict = {}
        #: Its run method, by the same key: the whole dispatch of a call.
        self._runs: dict = {}
        #: Compiled modules by template key.
        self._modules: dict = {}
        #: How many modules this function compiled or loaded from the cache.
        self.compilations = 0
        self._lock = forksafe.owned_lock(self)
        self._last = None
        self._itemsizes = [np.dtype(v.dtype).itemsize for v in fgraph.inputs]
        self._blas = runtime.bind_blas()
        self._compile_probe()

    def _compile_probe(self):
        """Compile at ``function()`` time: for the static shapes, with :data:`PROBE_SIZE` for unknown dims.

        A probe that the graph's shape checks reject compiles nothing; the first call does.
        """
        shapes = [tuple(PROBE_SIZE if d is None else d for d in v.type.shape) for v in self.fgraph.inputs]
        geometry = tuple((s, _c_strides(s)) for s in shapes)
        static = all(None not in v.type.shape for v in self.fgraph.inputs)
        try:
            self._specialise(geometry, remember=static)
        except (ValueError, IndexError):
            if static:
                raise

    def __call__(self, args):
        # ((shape, byte strides), ...): the same key _specialise files a specialisation under.
        if len(args) == 1:
            a = args[0]
            key = ((a.shape, a.strides),)
        else:
            key = tuple(map(_geometry_of, args))
        run = self._runs.get(key)
        if run is None:
            return self._dispatch_slow(key, args)
        return run(args)

    def _dispatch_slow(self, key, args):
        """A call whose key has no run method yet: plan it, and compile if its structure is new."""
        aligned = [all(s % n == 0 for s in a.strides) for a, n in zip(args, self._itemsizes)]
        # Byte strides that are not whole elements cannot be addressed: copy those inputs to C order.
        args = [a if ok else np.array(a, order="C") for a, ok in zip(args, aligned)]
        geometry = tuple((a.shape, tuple(s // n for s in a.strides)) for a, n in zip(args, self._itemsizes))
        variant = self._specialise(geometry, remember=all(aligned))
        return variant.executable.run(args)

    def _specialise(self, geometry, remember=True):
        geometry = tuple((tuple(s), tuple(st)) for s, st in geometry)
        byte_key = tuple((s, tuple(x * n for x in st)) for (s, st), n in zip(geometry, self._itemsizes))
        variant = self._variants.get(byte_key)
        if variant is None:
            plan = build_plan(self.fgraph, geometry, _supports(self._blas))
            segments, schedule, work = _schedule(plan)
            template = parametrise(plan)
            with self._lock:
                module = self._modules.get(template.key())
                if module is None:
                    module = _Module(self.fgraph, template, segments, self._blas, _cache())
                    self._modules[template.key()] = module
                    self.compilations += 1
            variant = _Specialisation(plan, module, schedule, work, template.params, self.fgraph)
            if remember:
                if len(self._variants) >= MAX_GEOMETRIES:
                    oldest = next(iter(self._variants))
                    self._variants.pop(oldest, None)
                    self._runs.pop(oldest, None)
                self._variants[byte_key] = variant
                self._runs[byte_key] = variant.executable.run
        self._last = variant
        return variant

    # -- inspection ---------------------------------------------------------------------
    def _latest(self):
        if self._last is None:
            raise RuntimeError(
                "this function has not been compiled yet: its input shapes are only known at call time; call it once first"
            )
        return self._last

    @property
    def source(self) -> str:
        """LLVM IR of the module the most recent call ran (before optimisation)."""
        return self._latest().source

    def assembly(self) -> str:
        """Host assembly of the module the most recent call ran (after ``-O3``)."""
        _, optimised = target.compile_ir(self.source)
        return target.assembly_of(optimised)

    @property
    def plan(self):
        """The kernel-IR plan of the most recent call's geometry."""
        return self._latest().plan


_geometry_of = operator.attrgetter("shape", "strides")


def _c_strides(shape):
    from symexpr.kernel.lower import contiguous_strides

    return contiguous_strides(shape)


class LLVMBackend:
    """Compiles graphs to native code with llvmlite."""

    name = "llvm"

    def compile(self, fgraph):
        return LLVMFunction(fgraph)
