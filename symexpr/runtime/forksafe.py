"""Per-object locks that a fork()ed child gets back free.

A thread holding an object's lock at fork() time does not exist in the child,
so the child would wait for that lock forever.  Objects whose lock lives in
``self._lock`` take it from :func:`owned_lock`; after a fork every such object
gets a new one.
"""

from __future__ import annotations

import os
import threading
import weakref

_owners: weakref.WeakSet = weakref.WeakSet()


def owned_lock(owner) -> threading.Lock:
    """A new lock for ``owner._lock``, replaced by a fresh one in a fork()ed child."""
    _owners.add(owner)
    return threading.Lock()


def _after_fork_in_child() -> None:
    for owner in list(_owners):
        owner._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
