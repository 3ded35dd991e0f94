"""Assertions for graph rewrites: does a rewrite keep results, and does it fire?

``rewrite`` is anything ``se.function(passes=[rewrite])`` accepts: a registered
pass name (``"decompose"``), a callable ``pass_(fgraph)``, or a rewrite rule
object; it is passed through unchanged.  A list or tuple is taken as a whole
pipeline (``passes=list(rewrite)``).
"""

from __future__ import annotations

import hashlib

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis.strategies import SearchStrategy

import symexpr as se
from symexpr.graph.basic import Constant, Variable
from symexpr.graph.traversal import graph_inputs, toposort
from symexpr.testing.strategies import GraphCase, _array_text, cases_for

__all__ = ["assert_rewrite_fires", "assert_rewrite_preserves", "default_tolerances"]

#: Default tolerance, in units of the dtype's machine epsilon.
TOLERANCE_ULPS = 64
#: Mismatching elements listed per output in a failure message.
_MAX_LISTED = 8


def _passes(rewrite) -> list:
    return list(rewrite) if isinstance(rewrite, (list, tuple)) else [rewrite]


def _label(rewrite) -> str:
    if isinstance(rewrite, str):
        return repr(rewrite)
    if isinstance(rewrite, (list, tuple)):
        return "[" + ", ".join(_label(r) for r in rewrite) + "]"
    name = getattr(rewrite, "name", None)
    if isinstance(name, str):
        return repr(name)
    qualname = getattr(rewrite, "__qualname__", None) or getattr(getattr(rewrite, "func", None), "__qualname__", None)
    return qualname or repr(rewrite)


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def default_tolerances(dtype, expected: np.ndarray, compute_dtype=None) -> tuple[float, float]:
    """The ``(rtol, atol)`` :func:`assert_rewrite_preserves` uses when none are given.

    Integers and bool: ``(0, 0)``, exact.  Floats: ``rtol = 64 * eps`` and
    ``atol = 64 * eps * max(1, max |expected|)`` over the finite expected values.
    ``eps`` is the machine epsilon of ``dtype`` or of ``compute_dtype`` (the least
    precise float dtype the output is computed through), whichever is larger:
    float16 ``9.8e-4``, float32 ``1.2e-7``, float64 ``2.2e-16``.  So a float32
    computation cast to float64 at the end gets float32 tolerances.  The absolute
    part, scaled to the largest value of the output, forgives the cancellation a
    reassociated sum may show next to large values.
    """
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        return 0.0, 0.0
    eps = float(np.finfo(dtype).eps)
    if compute_dtype is not None and np.dtype(compute_dtype).kind == "f":
        eps = max(eps, float(np.finfo(compute_dtype).eps))
    expected = np.asarray(expected)
    finite = np.abs(expected[np.isfinite(expected)]).astype(np.float64)
    scale = max(1.0, float(finite.max())) if finite.size else 1.0
    return TOLERANCE_ULPS * eps, TOLERANCE_ULPS * eps * scale


def _least_precise_float(outputs):
    """The float dtype with the largest epsilon among every variable ``outputs`` depend on, or None."""
    dtypes = {v.dtype for v in outputs}
    for node in toposort(outputs):
        dtypes.update(v.dtype for v in (*node.inputs, *node.outputs))
    floats = [d for d in dtypes if np.dtype(d).kind == "f"]
    return max(floats, key=lambda d: np.finfo(d).eps) if floats else None


def _listed(mask: np.ndarray, expected: np.ndarray, got: np.ndarray) -> list[str]:
    where = np.argwhere(mask)
    lines = []
    for index in where[:_MAX_LISTED]:
        key = tuple(int(i) for i in index)
        lines.append(f"at {key}: expected {expected[key]!r}, got {got[key]!r}")
    if len(where) > _MAX_LISTED:
        lines.append(f"... and {len(where) - _MAX_LISTED} more")
    return lines


def _compare(expected: np.ndarray, got: np.ndarray, rtol, atol, compute_dtype=None) -> list[str]:
    """Why ``got`` is not ``expected`` (empty when it is)."""
    if got.dtype != expected.dtype:
        return [f"dtype {got.dtype}, expected {expected.dtype}"]
    if got.shape != expected.shape:
        return [f"shape {got.shape}, expected {expected.shape}"]
    default_rtol, default_atol = default_tolerances(expected.dtype, expected, compute_dtype)
    rtol = default_rtol if rtol is None else rtol
    atol = default_atol if atol is None else atol
    if expected.dtype.kind != "f" and rtol == 0 and atol == 0:
        bad = expected != got
        if bad.any():
            return [f"{int(bad.sum())} of {bad.size} values differ (exact comparison)"] + _listed(bad, expected, got)
        return []
    e64, g64 = expected.astype(np.float64), got.astype(np.float64)
    shown_e, shown_g = expected, got
    problems = []
    nan = np.isnan(e64) != np.isnan(g64)
    if nan.any():
        problems.append(f"NaN in different places ({int(nan.sum())} elements)")
        problems += _listed(nan, shown_e, shown_g)
    inf = (np.isposinf(e64) != np.isposinf(g64)) | (np.isneginf(e64) != np.isneginf(g64))
    inf &= ~nan
    if inf.any():
        problems.append(f"infinities in different places or of different sign ({int(inf.sum())} elements)")
        problems += _listed(inf, shown_e, shown_g)
    if rtol == 0 and atol == 0:
        # An exact comparison is bit for bit: the sign of zero must match too.
        zero_sign = (e64 == 0) & (g64 == 0) & (np.signbit(e64) != np.signbit(g64))
        if zero_sign.any():
            problems.append(f"zeros of different sign ({int(zero_sign.sum())} elements; exact comparison)")
            problems += _listed(zero_sign, shown_e, shown_g)
    both = np.isfinite(e64) & np.isfinite(g64)
    with np.errstate(all="ignore"):
        diff = np.where(both, np.abs(g64 - e64), 0.0)
        bad = both & (diff > atol + rtol * np.abs(e64))
    if bad.any():
        worst = np.unravel_index(int(np.argmax(np.where(bad, diff, -1.0))), bad.shape)
        problems.append(
            f"{int(bad.sum())} of {bad.size} values differ beyond rtol={rtol:.3g}, atol={atol:.3g} "
            f"(largest difference {diff[worst]:.6g} at {tuple(int(i) for i in worst)})"
        )
        problems += _listed(bad, shown_e, shown_g)
    return problems


def _inputs_text(case: GraphCase) -> str:
    return "\n".join(f"{v.name}: {v.type} = {_array_text(a)}" for v, a in zip(case.inputs, case.values))


def _check_preserves(rewrite, case: GraphCase, rtol, atol, backend, reference_backend="numpy") -> None:
    reference = case.function(backend=reference_backend, passes="none")
    expected = reference(*case.values)
    context = (
        f"graph before the rewrite:\n{_indent(se.pprint(reference))}\n"
        f"inputs:\n{_indent(_inputs_text(case))}"
    )
    try:
        rewritten = case.function(backend=backend, passes=_passes(rewrite))
    except Exception as exc:
        exc.add_note(f"while compiling with passes={_label(_passes(rewrite))}, backend={backend!r}\n{context}")
        raise
    try:
        got = rewritten(*case.values)
    except Exception as exc:
        exc.add_note(
            f"while running the rewritten graph (backend={backend!r}):\n{_indent(se.pprint(rewritten))}\n{context}"
        )
        raise
    problems = []
    if len(rewritten.fgraph.outputs) != len(case.outputs):
        problems.append(f"the rewritten graph has {len(rewritten.fgraph.outputs)} outputs, expected {len(case.outputs)}")
    for i, (before, after) in enumerate(zip(case.outputs, rewritten.fgraph.outputs)):
        if not before.type.is_compatible(after.type):
            problems.append(f"output {i}: the rewrite changed its type from {before.type} to {after.type}")
    for i, (e, g) in enumerate(zip(expected, got)):
        compute = [case.outputs[i]] + ([rewritten.fgraph.outputs[i]] if i < len(rewritten.fgraph.outputs) else [])
        found = _compare(np.asarray(e), np.asarray(g), rtol, atol, _least_precise_float(compute))
        if found:
            problems.append(f"output {i} ({case.outputs[i].type}, values of shape {np.shape(e)}):")
            problems += ["  " + p for p in found]
    if problems:
        raise AssertionError(
            f"rewrite {_label(rewrite)} changed the results (reference: backend 'numpy', passes='none'; "
            f"rewritten: backend {backend!r}):\n"
            + _indent("\n".join(problems), "  ")
            + f"\ngraph before the rewrite:\n{_indent(se.pprint(reference))}"
            + f"\ngraph after the rewrite:\n{_indent(se.pprint(rewritten))}"
            + f"\ninputs:\n{_indent(_inputs_text(case))}"
        )


def _is_variables(obj) -> bool:
    return isinstance(obj, Variable) or (
        isinstance(obj, (list, tuple)) and len(obj) > 0 and all(isinstance(v, Variable) for v in obj)
    )


def assert_rewrite_preserves(
    rewrite, graph_or_strategy, rtol=None, atol=None, backend="numpy", max_examples=None, reference_backend="numpy"
):
    """Assert that ``rewrite`` does not change what a graph computes.

    Parameters
    ----------
    rewrite : str, callable, rule object, or list of them
        Passed as ``se.function(..., passes=[rewrite])`` (a list as the whole ``passes``).
    graph_or_strategy : GraphCase, hypothesis strategy, Variable or list of Variables
        A :class:`GraphCase` is checked once.  A strategy of GraphCases (such as
        :func:`~symexpr.testing.graphs` or :func:`~symexpr.testing.graphs_containing`)
        runs as a hypothesis test: every drawn case is checked and a failure is
        shrunk to a small graph.  A Variable or a list of them is a fixed graph whose
        input values are drawn (:func:`~symexpr.testing.cases_for`).
    rtol, atol : float, optional
        Tolerances for float outputs.  Defaults (:func:`default_tolerances`):
        ``rtol = 64 * eps``, ``atol = 64 * eps * max(1, max |expected|)``, with ``eps``
        the machine epsilon of the output's dtype or of the least precise float dtype
        it is computed through (before or after the rewrite), whichever is larger;
        integer and bool outputs compare exactly.
    backend : str
        Backend that runs the rewritten graph.
    max_examples : int, optional
        For a strategy: the number of examples (default: the current hypothesis profile's).
    reference_backend : str
        Backend that runs the reference, the graph without passes: NumPy (the
        oracle) by default.  Give ``backend`` to test that a rewrite is exact
        on a compiled backend, whose math functions are a few ulp from NumPy's.

    Each output must have the same dtype and shape as the reference, NaN in the same
    places, +-inf in the same places with the same sign, and the other values within
    ``|got - expected| <= atol + rtol * |expected|`` (so -0.0 equals 0.0, except with
    ``rtol=0, atol=0``: an exact comparison also requires the sign of zero to match).  A failure
    raises ``AssertionError`` showing the graph before and after the rewrite (``pprint``
    of each ``Function.fgraph``), the inputs and the mismatching values.  An exception
    from the rewrite or the rewritten graph propagates with the graph attached as a note.
    """
    if isinstance(graph_or_strategy, GraphCase):
        _check_preserves(rewrite, graph_or_strategy, rtol, atol, backend, reference_backend)
        return
    strategy = graph_or_strategy
    if _is_variables(strategy):
        strategy = cases_for(strategy)
    if not isinstance(strategy, SearchStrategy):
        raise TypeError(
            "assert_rewrite_preserves: expected a GraphCase, a hypothesis strategy of GraphCases, "
            f"a Variable or a list of Variables, got {type(graph_or_strategy).__name__}"
        )
    if max_examples is not None and (not isinstance(max_examples, int) or max_examples < 1):
        raise ValueError(f"assert_rewrite_preserves: max_examples must be a positive int, got {max_examples!r}")

    options = {
        "deadline": None,
        "report_multiple_bugs": False,
        "suppress_health_check": list(settings().suppress_health_check)
        + [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    }
    if max_examples is not None:
        options["max_examples"] = max_examples

    def rewrite_preserves_results(case):
        if not isinstance(case, GraphCase):
            raise TypeError(f"assert_rewrite_preserves: the strategy drew a {type(case).__name__}, not a GraphCase")
        _check_preserves(rewrite, case, rtol, atol, backend, reference_backend)

    # Keep hypothesis's example database apart for each rewrite and strategy.
    key = f"{_label(rewrite)}|{strategy!r}|{backend}|{rtol}|{atol}".encode()
    rewrite_preserves_results._hypothesis_internal_add_digest = hashlib.sha256(key).digest()
    settings(**options)(given(strategy)(rewrite_preserves_results))()


def _rule_name(record):
    rule = getattr(record, "rule", None)
    return rule if isinstance(rule, str) else getattr(rule, "name", None)


def assert_rewrite_fires(rewrite, graph):
    """Assert that ``rewrite`` changes ``graph``; return the compiled :class:`~symexpr.Function`.

    Parameters
    ----------
    rewrite : str, callable, rule object, or list of them
        Passed as ``se.function(..., passes=[rewrite])``.
    graph : Variable, list of Variable, or GraphCase
        The outputs (the inputs are the non-constant variables they depend on, or the
        GraphCase's inputs).

    The graph is compiled with the NumPy backend and ``passes=[rewrite]``; the
    rewrite fired when an output of the compiled ``f.fgraph`` is not the very
    object of the graph's output (nodes are hash-consed, so identity is structural
    equality).  When the Function has a ``rewrite_log`` (records with a ``.rule``)
    and ``rewrite`` has a ``.name``, a record of that rule must also be there.
    """
    if isinstance(graph, GraphCase):
        inputs, outputs = list(graph.inputs), list(graph.outputs)
    elif _is_variables(graph):
        outputs = [graph] if isinstance(graph, Variable) else list(graph)
        inputs = [v for v in graph_inputs(outputs) if not isinstance(v, Constant)]
    else:
        raise TypeError(
            f"assert_rewrite_fires: expected a Variable, a list of Variables or a GraphCase, got {type(graph).__name__}"
        )
    f = se.function(inputs, outputs, backend="numpy", passes=_passes(rewrite))
    after = list(f.fgraph.outputs)
    if len(after) == len(outputs) and all(a is b for a, b in zip(after, outputs)):
        raise AssertionError(f"rewrite {_label(rewrite)} did not change the graph:\n{_indent(se.pprint(outputs))}")
    log = getattr(f, "rewrite_log", None)
    name = getattr(rewrite, "name", None)
    if log is not None and isinstance(name, str):
        fired = [_rule_name(r) for r in log]
        if name not in fired:
            raise AssertionError(
                f"rewrite {name!r} is not in the Function's rewrite_log (rules that fired: "
                f"{', '.join(sorted({str(n) for n in fired})) or 'none'}); the graph changed to:\n"
                f"{_indent(se.pprint(f))}"
            )
    return f
