"""Declarative graph patterns: ``Pat(ps.mul, [Pat.var("x"), Pat.const("one", 1)])``.

A pattern matches a variable and binds names to the variables it matched.
A name bound twice must match the *same* object, and since nodes are
hash-consed that is structural equality: ``Pat(ps.sub, [X, X])`` matches
``a - a`` for any subexpression ``a``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from symexpr.dtypes import SUPPORTED_DTYPES
from symexpr.graph.basic import Constant, Op, Variable
from symexpr.ops.elemwise import Elemwise
from symexpr.ops.scalar import ScalarOp


class Pat:
    """A pattern over variables.

    Parameters
    ----------
    op : None, Op class, Op instance, ScalarOp, or a tuple of these
        What computes the variable.  ``None`` matches any variable.  A
        :class:`~symexpr.ops.scalar.ScalarOp` matches an ``Elemwise`` of it; a
        ScalarOp *class* (e.g. ``Cast``) matches an ``Elemwise`` of any instance.
    inputs : list of Pat, optional
        Patterns for the node's inputs (``None``: any inputs).
    name : str, optional
        Bind the matched variable to this name.
    dtype : str or collection of str, optional
        Allowed dtypes, or dtype kinds: ``"f"`` float, ``"i"`` signed int,
        ``"u"`` unsigned int, ``"b"`` bool (NumPy's ``dtype.kind``).
    where : callable, optional
        ``where(var) -> bool``: an extra constraint on the matched variable.
    commutative : bool, optional
        Try both input orders (default: the scalar op's own ``commutative`` flag).
    """

    __slots__ = ("op", "inputs", "name", "dtype", "where", "commutative", "_const_value", "_scan")

    def __init__(self, op=None, inputs=None, name=None, dtype=None, where=None, commutative=None):
        self.op = op
        self.inputs = None if inputs is None else tuple(inputs)
        self.name = name
        self.dtype = None if dtype is None else ({dtype} if isinstance(dtype, str) else set(dtype))
        self.where = where
        self.commutative = commutative
        self._const_value = None

    def __setattr__(self, name, value):
        object.__setattr__(self, name, value)
        if name != "_scan":  # the scanner follows the fields: built again on its next use
            object.__setattr__(self, "_scan", self._build_scan)

    def __copy__(self):
        twin = object.__new__(type(self))
        for field in Pat.__slots__:
            if field != "_scan" and hasattr(self, field):
                setattr(twin, field, getattr(self, field))  # each set gives the copy its own scanner
        for field, value in getattr(self, "__dict__", {}).items():  # a subclass's own attributes
            setattr(twin, field, value)
        return twin

    def _build_scan(self, var: Variable) -> int:
        scan = _scanner(self)
        object.__setattr__(self, "_scan", scan)
        return scan(var)

    def __repr__(self):
        if self.op is None:
            return self.name or "_"
        if self.op == "any_of":
            return "(" + " | ".join(map(repr, self.inputs)) + ")"
        inner = "" if self.inputs is None else "(" + ", ".join(map(repr, self.inputs)) + ")"
        return f"{_op_text(self.op)}{inner}" + (f" as {self.name}" if self.name else "")

    # -- constructors ----------------------------------------------------------------
    @classmethod
    def var(cls, name: str | None = None, dtype=None, where=None) -> "Pat":
        """Any variable."""
        return cls(None, None, name, dtype, where)

    @classmethod
    def any_of(cls, *alternatives: "Pat", name: str | None = None) -> "Pat":
        """Matches when any alternative matches (each way, in order)."""
        return cls("any_of", alternatives, name)

    @classmethod
    def const(cls, name: str | None = None, value=None, dtype=None) -> "Pat":
        """A constant; with ``value``, one whose every element equals ``value`` (NaN matches NaN).

        ``value=0.0`` also matches ``-0.0``; use ``where`` to tell them apart.
        """
        pat = cls("const", None, name, dtype, None)
        pat._const_value = value
        return pat

    # -- matching --------------------------------------------------------------------
    def match(self, var: Variable) -> dict | None:
        """Bindings of the first match of ``var``, or ``None``."""
        return next(self.matches(var, {}), None)

    def matches(self, var: Variable, bound: dict) -> Iterator[dict]:
        """Every way ``var`` matches, each as a bindings dict extending ``bound``."""
        if self.name is not None and self.name in bound:
            if bound[self.name] is not var:
                return
        if self.dtype is not None and not _dtype_allowed(var.type.dtype, self.dtype):
            return
        op = self.op
        special = op if op.__class__ is str else None  # "any_of", "const" (never an op's __eq__)
        if special == "any_of":
            if self.name is not None:
                bound = {**bound, self.name: var}
            for alt in self.inputs:
                yield from alt.matches(var, bound)
            return
        if special == "const":
            if not isinstance(var, Constant) or (self._const_value is not None and not _all_equal(var, self._const_value)):
                return
        elif op is not None and (var.owner is None or not _op_matches(op, var.owner.op)):
            return
        if self.where is not None and not self.where(var):
            return
        if self.name is not None:
            bound = {**bound, self.name: var}
        if self.inputs is None or op is None or special == "const":
            yield bound
            return
        inputs = var.owner.inputs
        if len(inputs) != len(self.inputs):
            return
        orders = [tuple(range(len(inputs)))]
        if self._commutative(var.owner.op) and len(inputs) == 2:
            orders.append((1, 0))
        for order in orders:
            yield from _match_all(self.inputs, [inputs[i] for i in order], bound)

    def may_match(self, var: Variable) -> bool:
        """Whether :meth:`matches` might find a match for ``var`` (a quick test before running it).

        Parameters
        ----------
        var : Variable
            The variable to match.

        Returns
        -------
        bool
            False only when :meth:`matches` would yield nothing without calling
            a ``where`` predicate: the op, dtype, arity and constant checks that
            come before any predicate, in the order :meth:`matches` makes them,
            fail for every alternative and input order (bindings are not
            compared).  Skipping a pattern it rejects therefore changes nothing,
            not even which predicates run.
        """
        return self._scan(var) != _FAIL

    def _commutative(self, op: Op) -> bool:
        if self.commutative is not None:
            return self.commutative
        return isinstance(op, Elemwise) and op.scalar_op.commutative

    def root_ops(self) -> tuple | None:
        """The op kinds a match can start at (for dispatch), or ``None`` for any."""
        if self.op is None or self.op == "const":
            return None
        if self.op == "any_of":
            roots = [alt.root_ops() for alt in self.inputs]
            return None if any(r is None for r in roots) else tuple(op for r in roots for op in r)
        return self.op if isinstance(self.op, tuple) else (self.op,)


#: Results of a pattern's scanner (``Pat._scan``), ordered so that ``|`` combines alternatives:
#: no match and no ``where`` called; maybe a match, no ``where`` called; a ``where`` may be called.
_FAIL, _PASS, _STOP = 0, 1, 3


def _scanner(pat: Pat):
    """``pat._scan``: a function ``var -> _FAIL | _PASS | _STOP`` for :meth:`Pat.may_match`.

    It makes the checks :meth:`Pat.matches` makes before any ``where``, in the
    same order, over every input order and alternative the matcher could try;
    bindings are not compared.
    """
    if type(pat) is not Pat:
        return lambda var: _STOP  # a subclass may match its own way: always run it
    dtypes, op, where, pats = pat.dtype, pat.op, pat.where, pat.inputs
    tail = _PASS if where is None else _STOP

    def dtype_ok(var) -> bool:
        return dtypes is None or _dtype_allowed(var.type.dtype, dtypes)

    if op is None:
        return (lambda var: tail) if dtypes is None else (lambda var: tail if dtype_ok(var) else _FAIL)
    if op.__class__ is str and op == "any_of":

        def scan_any(var):
            if not dtype_ok(var):
                return _FAIL
            result = _FAIL
            for alt in pats:
                found = alt._scan(var)
                if found == _STOP:
                    return _STOP
                result |= found
            return result

        return scan_any
    if op.__class__ is str and op == "const":
        value = pat._const_value
        check_value = isinstance(value, (int, float, np.number))  # _all_equal cannot raise on these

        def scan_const(var):
            if not dtype_ok(var) or not isinstance(var, Constant) or (check_value and not _all_equal(var, value)):
                return _FAIL
            return tail

        return scan_const
    op_ok = _op_test(op)
    commutative = pat.commutative

    def scan_node(var):
        if not dtype_ok(var):
            return _FAIL
        owner = var.owner
        if owner is None or not op_ok(owner.op):
            return _FAIL
        if where is not None or pats is None:
            return tail
        inputs = owner.inputs
        if len(inputs) != len(pats):
            return _FAIL
        result = _scan_all(pats, inputs)
        if result == _STOP or len(inputs) != 2:
            return result
        node_op = owner.op
        if not (commutative if commutative is not None else isinstance(node_op, Elemwise) and node_op.scalar_op.commutative):
            return result
        return result | _scan_all(pats, inputs[::-1])

    return scan_node


def _op_test(want):
    """``_op_matches(want, op)`` as a function of ``op``, quicker for a scalar op or a tuple of them."""
    if isinstance(want, ScalarOp):

        def is_want(op):
            if not isinstance(op, Elemwise):
                return False
            scalar_op = op.scalar_op
            return scalar_op is want or scalar_op == want

        return is_want
    if isinstance(want, tuple) and want and all(isinstance(w, ScalarOp) for w in want):
        wants = frozenset(want)
        return lambda op: isinstance(op, Elemwise) and op.scalar_op in wants
    return lambda op: _op_matches(want, op)


def _scan_all(pats, inputs) -> int:
    """The scanners of a node's input patterns, left to right as ``_match_all`` tries them."""
    for pat, var in zip(pats, inputs):
        found = pat._scan(var)
        if found != _PASS:
            return found
    return _PASS


#: NumPy's ``dtype.kind`` of each supported dtype, by name.
_KINDS = {name: np.dtype(name).kind for name in SUPPORTED_DTYPES}


def _dtype_allowed(dtype: str, allowed: set) -> bool:
    """``dtype`` or its kind is in ``allowed`` (a pattern's ``dtype``)."""
    return dtype in allowed or (_KINDS.get(dtype) or np.dtype(dtype).kind) in allowed


def _match_all(pats, inputs, bound) -> Iterator[dict]:
    if not pats:
        yield bound
        return
    for b in pats[0].matches(inputs[0], bound):
        yield from _match_all(pats[1:], inputs[1:], b)


def _op_matches(want, op: Op) -> bool:
    if isinstance(want, ScalarOp):
        return isinstance(op, Elemwise) and (op.scalar_op is want or op.scalar_op == want)
    if isinstance(want, tuple):
        return any(_op_matches(w, op) for w in want)
    if isinstance(want, type) and issubclass(want, ScalarOp):
        return isinstance(op, Elemwise) and isinstance(op.scalar_op, want)
    if isinstance(want, type):
        return isinstance(op, want)
    return op == want


def _op_text(op) -> str:
    if isinstance(op, tuple):
        return "|".join(map(_op_text, op))
    if isinstance(op, ScalarOp):
        return op.name
    if isinstance(op, type):
        return op.__name__
    return str(op)


def _all_equal(const: Constant, value) -> bool:
    data = const.data
    if data.size == 0:
        return False
    first = data.flat[0]
    if isinstance(value, (float, np.floating)) and np.isnan(value):
        return bool(np.isnan(data).all()) if data.dtype.kind == "f" else False
    if first != value:
        return False
    return bool((data == first).all())


def dispatch_keys(op: Op) -> tuple:
    """Keys under which rules that may match ``op`` are indexed (most specific first).

    The scalar op of an Elemwise, then the op's class and its base classes, so a
    pattern on a base class (or on ``ps.Cast`` for any cast) finds its nodes.
    """
    classes = tuple(c for c in type(op).__mro__ if c is not object)
    return ((op.scalar_op,) if isinstance(op, Elemwise) else ()) + classes


def pattern_keys(pat: Pat) -> list | None:
    """Dispatch keys a pattern can match at its root (``None``: any)."""
    roots = pat.root_ops()
    if roots is None:
        return None
    keys = []
    for r in roots:
        if isinstance(r, ScalarOp):
            keys.append(r)
        elif isinstance(r, type) and issubclass(r, ScalarOp):
            keys.append(Elemwise)  # any Elemwise whose scalar op is of that class
        elif isinstance(r, type):
            keys.append(r)
        elif isinstance(r, Op):
            keys.append(dispatch_keys(r)[0])
        else:
            return None
    return keys


def root_may_match(pat: Pat, op: Op) -> bool:
    """Whether the output of a node of ``op`` may pass ``pat``'s check of the op at its root.

    Parameters
    ----------
    pat : Pat
        A rule's pattern.
    op : Op
        The op of the node whose output would be matched.

    Returns
    -------
    bool
        False when no such output can match: the root wants another op, or a
        constant.  Judged from ``op``'s class and, for an Elemwise, its scalar
        op only (a root that is an Op instance, compared by its parameters, may
        match), so the answer holds for every op that shares those.
    """
    if type(pat) is not Pat:
        return True
    want = pat.op
    if want is None:
        return True
    if isinstance(want, str):
        if want == "any_of":
            return any(root_may_match(alt, op) for alt in pat.inputs)
        return False  # "const": a constant is computed by no node
    return _class_may_match(want, op)


def _class_may_match(want, op: Op) -> bool:
    if isinstance(want, tuple):
        return any(_class_may_match(w, op) for w in want)
    if isinstance(want, (ScalarOp, type)):
        return _op_matches(want, op)
    return True
