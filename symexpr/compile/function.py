"""``function()``: compile a graph into a callable."""

from __future__ import annotations

import numpy as np

from symexpr.backends import get_backend
from symexpr.graph.basic import Constant, Variable
from symexpr.graph.fgraph import FunctionGraph
from symexpr.graph.traversal import graph_inputs
from symexpr.passes import resolve_passes

#: The backend ``function()`` uses when none is named.
DEFAULT_BACKEND = "llvm"


def _argument_label(var: Variable, position: int) -> str:
    return f"argument {var.name!r} (position {position})" if var.name else f"argument {position}"


class Function:
    """A compiled graph: call it with NumPy arrays, one per input.

    Attributes
    ----------
    inputs : tuple of Variable
        The declared inputs, in call order.
    outputs : list of Variable
        The user's output variables (before rewriting).
    fgraph : FunctionGraph
        The rewritten graph the backend compiled.
    backend : str
        Name of the backend that runs it.
    side_outputs : dict
        The last call's values of the outputs passes added to observe the
        computation (e.g. BLASST's tile counts), by name: lists of arrays.
    """

    def __init__(self, inputs, outputs, fgraph, backend_name, compiled, single):
        self.inputs = tuple(inputs)
        self.outputs = list(outputs)
        self.fgraph = fgraph
        self.backend = backend_name
        self._compiled = compiled
        self._single = single
        # Backends that always return fresh arrays skip the ownership check.
        self._fresh = getattr(compiled, "returns_fresh", False)
        #: Whether arguments may be GPU arrays (the cuda backend); elsewhere they are refused.
        self._device_arrays = getattr(compiled, "accepts_device_arrays", False)
        self._side = dict(fgraph.annotations.get("side_outputs", {}))
        self._n_outputs = len(self.outputs)
        self.side_outputs: dict = {}
        #: Every change the passes made, in order: records with ``pass_name``, ``rule``, ``before`` and ``after``.
        self.rewrite_log = list(fgraph.history)
        names = [v.name for v in self.inputs if v.name]
        self._ambiguous = {n for n in names if names.count(n) > 1}
        self._names = {v.name: i for i, v in enumerate(self.inputs) if v.name and v.name not in self._ambiguous}
        self._n_inputs = len(self.inputs)
        self._labels = [_argument_label(v, i) for i, v in enumerate(self.inputs)]
        #: Per input: the numpy dtype, the declared shape, the rank and the static dimensions as
        #: (axis, size) pairs.  An exact ndarray matching these needs no TensorType.check_value
        #: call; any other value goes through it (conversions, errors naming the argument).
        self._fast_checks = [_fast_check(v.type) for v in self.inputs]

    def __repr__(self):
        names = ", ".join(v.name or f"arg{i}" for i, v in enumerate(self.inputs))
        return f"<symexpr.Function ({names}) -> {len(self.outputs)} output(s), backend={self.backend!r}>"

    def _bind(self, args, kwargs) -> list:
        n = len(self.inputs)
        if len(args) > n:
            raise TypeError(f"function takes {n} argument{'s' if n != 1 else ''}, got {len(args) + len(kwargs)}")
        values = list(args) + [None] * (n - len(args))
        given = [True] * len(args) + [False] * (n - len(args))
        for key, value in kwargs.items():
            if key in self._ambiguous:
                raise TypeError(f"function: keyword argument {key!r} is ambiguous: several inputs are named {key!r}")
            if key not in self._names:
                names = ", ".join(self._names) or "none usable as keywords"
                raise TypeError(f"function got an unexpected keyword argument {key!r} (inputs: {names})")
            i = self._names[key]
            if given[i]:
                raise TypeError(f"function got multiple values for argument {key!r}")
            values[i], given[i] = value, True
        if not all(given):
            missing = [_argument_label(v, i) for i, v in enumerate(self.inputs) if not given[i]]
            raise TypeError(f"function takes {n} argument{'s' if n != 1 else ''}, got {sum(given)}: missing {', '.join(missing)}")
        return values

    def __call__(self, *args, **kwargs):
        values = args if not kwargs and len(args) == self._n_inputs else self._bind(args, kwargs)
        # The common case in a few attribute reads per argument: exact ndarrays of the declared
        # dtype whose shape fits.  Any other value is checked (and converted, or refused with an
        # error naming the argument) by TensorType.check_value.
        checked = list(values)
        for value, (dtype, shape, ndim, known) in zip(values, self._fast_checks):
            if (
                type(value) is not _ndarray
                or value.dtype is not dtype
                or value.ndim != ndim
                or (known and value.shape != shape and any(value.shape[i] != d for i, d in known))
            ):
                checked = [
                    var.type.check_value(v, label, self._device_arrays)
                    for var, v, label in zip(self.inputs, values, self._labels)
                ]
                break
        results = self._compiled(checked)
        if self._side:
            results = list(results)
            self.side_outputs = {name: [results[i] for i in where] for name, where in self._side.items()}
            results = results[: self._n_outputs]
        if self._fresh and len(results) == 1:
            return results[0] if self._single else results
        return self._owned(results, checked)

    def _owned(self, results, checked):
        owned = []
        seen: set[int] = {id(a) for a in checked}
        for out in results:
            if isinstance(out, np.ndarray) or not hasattr(out, "__cuda_array_interface__"):
                out = np.asarray(out)
                # The caller owns every output: never hand back an input, a constant or a view.
                if id(out) in seen or not out.flags.owndata or not out.flags.writeable:
                    out = out.copy()
            elif id(out) in seen:  # a device array (fresh from its backend) returned twice
                out = out.copy()
            seen.add(id(out))
            owned.append(out)
        return owned[0] if self._single else owned

    @property
    def source(self) -> str:
        """The generated code: LLVM IR for the llvm backend (the latest specialisation).

        Raises
        ------
        AttributeError
            If the backend generates no source (the numpy backend interprets the graph).
        """
        source = getattr(self._compiled, "source", None)
        if source is None:
            raise AttributeError(f"backend {self.backend!r} generates no source code")
        return source

    def assembly(self) -> str:
        """Host assembly of the generated code (llvm backend)."""
        if not hasattr(self._compiled, "assembly"):
            raise AttributeError(f"backend {self.backend!r} generates no assembly")
        return self._compiled.assembly()


_ndarray = np.ndarray


def _fast_check(type_):
    """What ``Function.__call__`` compares an exact ndarray argument with (see ``Function._fast_checks``)."""
    shape = tuple(type_.shape)
    return np.dtype(type_.dtype), shape, len(shape), tuple((i, d) for i, d in enumerate(shape) if d is not None)


def function(inputs, outputs, backend: str | None = None, passes=None) -> Function:
    """Compile a graph from ``inputs`` to ``outputs`` into a callable.

    Parameters
    ----------
    inputs : list of Variable
        Symbolic inputs (from :func:`symexpr.tensor` and friends), in call order.
    outputs : Variable or list of Variable
        One output (the call returns an array) or a list (the call returns a list).
    backend : str, optional
        A registered backend name (default ``"llvm"``, which compiles to native code with llvmlite;
        ``"numpy"`` is the reference interpreter).
    passes : None, str, callable or list, optional
        Graph passes to run before compiling; see :func:`symexpr.passes.resolve_passes`.

    Returns
    -------
    Function
        Checks each call's arguments against the declared types and returns fresh arrays.

    Raises
    ------
    TypeError, ValueError
        If the inputs are not distinct input variables or the outputs need an input
        that is not listed.

    Notes
    -----
    The user's graph is never modified: nodes are immutable, and rewrites build
    new ones.
    """
    if isinstance(inputs, Variable) or not isinstance(inputs, (list, tuple)):
        raise TypeError(f"function: inputs must be a list of input variables, got {type(inputs).__name__}")
    single = isinstance(outputs, Variable)
    out_list = [outputs] if single else outputs
    if not isinstance(out_list, (list, tuple)):
        raise TypeError(f"function: outputs must be a Variable or a list of Variables, got {type(outputs).__name__}")
    for i, var in enumerate(inputs):
        if not isinstance(var, Variable):
            raise TypeError(f"function: input {i} must be a symbolic Variable, got {type(var).__name__}")
        if isinstance(var, Constant):
            raise TypeError(f"function: input {i} is a constant ({var!r}); only symbolic inputs can be arguments")
        if var.owner is not None:
            raise TypeError(
                f"function: input {i} ({var!r}) is computed by {var.owner.op.display_name()}; "
                "inputs must be variables made by se.tensor/scalar/vector/matrix"
            )
    if len({id(v) for v in inputs}) != len(inputs):
        raise ValueError("function: the same input variable is listed more than once")
    for i, var in enumerate(out_list):
        if not isinstance(var, Variable):
            raise TypeError(f"function: output {i} must be a symbolic Variable, got {type(var).__name__}")
    declared = {id(v) for v in inputs}
    missing = [v for v in graph_inputs(out_list) if not isinstance(v, Constant) and id(v) not in declared]
    if missing:
        names = ", ".join(f"{v.name or '<unnamed>'!s} ({v.type})" for v in missing)
        raise ValueError(f"function: the outputs depend on input(s) not listed in inputs: {names}")

    backend_name = DEFAULT_BACKEND if backend is None else backend
    impl = get_backend(backend_name)
    fgraph = FunctionGraph(inputs, out_list)
    for pass_ in resolve_passes(passes):
        pass_(fgraph)
    compiled = impl.compile(fgraph)
    return Function(inputs, out_list, fgraph, backend_name, compiled, single)
