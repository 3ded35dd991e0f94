"""The llvm backend's per-call driver: host-step evaluation of deep view chains."""

from __future__ import annotations

import sys

import numpy as np

import symexpr as se
from symexpr.kernel.ir import HostStep


def test_host_step_input_through_a_chain_deeper_than_the_recursion_limit():
    """A host step (argmax) fed through thousands of views: evaluated without Python recursion."""
    depth = 3 * sys.getrecursionlimit()
    x = se.vector("x")
    y = x * 2
    for _ in range(depth):
        y = se.expand_dims(y, 0)[0]
    f = se.function([x], se.argmax(y), backend="llvm")
    a = np.array([0.5, 3.0, -1.0, 2.0, 3.5, 0.0], dtype=np.float32)
    assert int(f(a)) == 4
    assert int(f(a[::-1].copy())) == 1
    assert any(isinstance(s, HostStep) for s in f._compiled.plan.steps), "the test needs a host step"


def test_host_step_values_shared_between_inputs():
    """A diamond of views (one variable feeding several) is evaluated once per call and correctly."""
    x = se.vector("x")
    base = x + 1
    left, right = base, base
    for _ in range(50):
        left = se.expand_dims(left, 0)[0]
        right = se.expand_dims(right, 0)[0]
    f = se.function([x], se.argmax(left * right - 3 * left), backend="llvm")
    a = np.array([-4.0, 1.0, 0.25, 2.0], dtype=np.float32)
    b = a + 1
    assert int(f(a)) == int(np.argmax(b * b - 3 * b))
