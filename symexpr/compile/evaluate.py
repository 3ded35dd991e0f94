"""``Variable.eval``: evaluate a variable with the NumPy reference backend.

The method belongs to the compiler layer, so this module adds it to
:class:`~symexpr.graph.basic.Variable` with
:func:`~symexpr.graph.basic.extend_variable` rather than the graph layer
importing :mod:`symexpr.compile`.  :mod:`symexpr.compile` imports this module.
"""

from __future__ import annotations

from symexpr.compile.function import function
from symexpr.graph.basic import Variable, extend_variable


def evaluate(variable: Variable, inputs: dict | None = None):
    """The value of ``variable``, computed by the NumPy reference backend.

    Parameters
    ----------
    variable : Variable
    inputs : dict, optional
        Maps each input variable ``variable`` depends on to its array.
    """
    inputs = inputs or {}
    return function(list(inputs), variable, backend="numpy")(*inputs.values())


class Evaluation:
    """The ``eval`` method of every :class:`~symexpr.Variable`."""

    __slots__ = ()

    def eval(self, inputs: dict | None = None):
        """Evaluate with the NumPy reference backend.

        Parameters
        ----------
        inputs : dict, optional
            Maps each input variable this one depends on to its array.
        """
        return evaluate(self, inputs)


extend_variable(Evaluation)
