"""The backend-neutral driver of compiled functions.

- :mod:`~symexpr.runtime.dispatch`: plans each call's input geometry and
  compiles once per plan structure (:class:`ShapeDispatcher`);
- :mod:`~symexpr.runtime.executable`: runs one geometry's plan: outputs, the
  arena, native segments through the backend's ``launch``, host steps;
- :mod:`~symexpr.runtime.cache`: the on-disk cache of compiled code;
- :mod:`~symexpr.runtime.keys`: process-independent keys (graph structure,
  compiler source);
- :mod:`~symexpr.runtime.forksafe`: locks a fork()ed child gets back free.

It sits between the kernel IR and the backends: a backend subclasses
:class:`~symexpr.runtime.dispatch.ShapeDispatcher` and provides compilation
and the launch of native segments.
"""
