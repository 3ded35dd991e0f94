"""Dispatch by input geometry: plan each call's shapes, compile once per plan structure.

:class:`ShapeDispatcher` is the callable a compiling backend returns from
``compile(fgraph)``.  A call's geometry (shapes and byte strides) finds its
run method in one dict lookup.  A new geometry gets a kernel-IR plan
(:func:`~symexpr.kernel.lower.build_plan`) and the plan's template
(:func:`~symexpr.kernel.template.parametrise`); a template whose structure
was compiled before reuses that module with this geometry's parameters, and
only a new structure is compiled.  A backend subclasses it and provides
``supports``, ``schedule``, ``compile_module`` and ``executable``.
"""

from __future__ import annotations

import operator

import numpy as np

from symexpr.kernel.lower import build_plan, contiguous_strides
from symexpr.kernel.template import parametrise
from symexpr.runtime import forksafe

#: Geometries whose run method a function keeps (the least recently added go first).
MAX_GEOMETRIES = 256
#: Geometries whose last output arrays a function keeps for reuse: a server seeing many
#: shapes would otherwise hold one set of outputs per shape (up to MAX_GEOMETRIES).
MAX_SPARE_GEOMETRIES = 8
#: Compiled modules a function keeps by template key (each geometry also holds its own).
MAX_MODULES = 64
#: The size given to dimensions unknown at ``function()`` time when the first module is compiled then.
PROBE_SIZE = 8

_geometry_of = operator.attrgetter("shape", "strides")


class Specialisation:
    """One input geometry: its plan, the module of the plan's template, and the executable running both."""

    def __init__(self, plan, module, executable):
        self.plan = plan
        self.module = module
        self.executable = executable

    @property
    def source(self) -> str:
        return self.module.source

    @property
    def cache_hit(self) -> bool:
        """Whether this geometry's module came from the disk cache rather than the compiler."""
        return self.module.cache_hit


class ShapeDispatcher:
    """Runs a graph on inputs of any shape, compiling once per plan structure.

    Compilation happens at construction for a probe geometry (the static
    sizes, :data:`PROBE_SIZE` for unknown dims, C-contiguous), and again only
    for a new structure: a new layout class (a view instead of a contiguous
    array, a size-1 dimension where there was none), never for new sizes
    alone.  ``compilations`` counts the modules compiled or loaded.
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
        #: Free arenas shared by every geometry's executable (see :class:`~symexpr.runtime.executable.Executable`).
        self.arenas: list = []
        #: Executables of the most recently dispatched geometries, the only ones keeping spare outputs.
        self._recent: list = []
        self._compile_probe()

    # -- what a backend provides --------------------------------------------------------
    def supports(self, op, arg_dtypes) -> bool:
        """Whether the backend compiles ``op`` on ``arg_dtypes`` (else that node runs on the host)."""
        return True

    def schedule(self, plan):
        """``(segments, schedule, work)`` of ``plan``: see the llvm backend's ``schedule_plan``."""
        raise NotImplementedError

    def compile_module(self, template, segments):
        """The compiled code of ``template`` (``.source``, ``.cache_hit``, ``.entries``)."""
        raise NotImplementedError

    def executable(self, plan, module, schedule, work, params):
        """The :class:`~symexpr.runtime.executable.Executable` of one geometry."""
        raise NotImplementedError

    # -- dispatch ------------------------------------------------------------------------
    def _compile_probe(self):
        """Compile at construction: for the static shapes, with :data:`PROBE_SIZE` for unknown dims.

        A probe that planning rejects (the graph's shape checks, a size the probe
        cannot have) compiles nothing: the first call does, and reports the
        error if its own shapes are wrong.  With static shapes the probe is the
        only geometry, so its errors are raised here.
        """
        shapes = [tuple(PROBE_SIZE if d is None else d for d in v.type.shape) for v in self.fgraph.inputs]
        geometry = tuple((s, contiguous_strides(s)) for s in shapes)
        static = all(None not in v.type.shape for v in self.fgraph.inputs)
        if static:
            self._specialise(geometry)
            return
        try:
            plan = build_plan(self.fgraph, geometry, self.supports)
        except Exception:  # noqa: BLE001 - a probe's failure belongs to no call
            return
        self._specialise(geometry, remember=False, plan=plan)

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
        if all(aligned):
            self._make_recent(key, variant)
        return variant.executable.run(args)

    def _make_recent(self, key, variant) -> None:
        """Give ``key`` a fast run method; past MAX_SPARE_GEOMETRIES, the oldest gives its up, and its spares.

        Only recent geometries keep spare outputs; an older one called again
        comes back through :meth:`_dispatch_slow` (no planning: its
        specialisation is kept) and becomes recent again.
        """
        with self._lock:
            self._runs[key] = variant.executable.run
            recent = self._recent
            recent[:] = [k for k in recent if k != key] + [key]
            while len(recent) > MAX_SPARE_GEOMETRIES:
                old = recent.pop(0)
                self._runs.pop(old, None)
                found = self._variants.get(old)
                if found is not None:
                    found.executable.release_spares()

    def _specialise(self, geometry, remember=True, plan=None):
        geometry = tuple((tuple(s), tuple(st)) for s, st in geometry)
        byte_key = tuple((s, tuple(x * n for x in st)) for (s, st), n in zip(geometry, self._itemsizes))
        variant = self._variants.get(byte_key)
        if variant is None:
            plan = plan or build_plan(self.fgraph, geometry, self.supports)
            segments, schedule, work = self.schedule(plan)
            template = parametrise(plan)
            key = template.key()
            with self._lock:
                module = self._modules.pop(key, None)
                if module is None:
                    module = self.compile_module(template, segments)
                    self.compilations += 1
                self._modules[key] = module  # most recent last
                while len(self._modules) > MAX_MODULES:
                    self._modules.pop(next(iter(self._modules)))
            variant = Specialisation(plan, module, self.executable(plan, module, schedule, work, template.params))
            if remember:
                if len(self._variants) >= MAX_GEOMETRIES:
                    oldest = next(iter(self._variants))
                    self._variants.pop(oldest, None)
                    self._runs.pop(oldest, None)
                self._variants[byte_key] = variant
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
        """Source of the module the most recent call ran (LLVM IR for the llvm backend)."""
        return self._latest().source

    @property
    def plan(self):
        """The kernel-IR plan of the most recent call's geometry."""
        return self._latest().plan
