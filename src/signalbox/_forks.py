"""Fresh locks for a forked child.

``fork()`` copies a lock in whatever state it is in. When another thread of
the parent (the hand-over thread in the middle of a publish, the lease
keeper writing acknowledgements) holds one at that moment, the child's copy
stays locked for good: its first send would wait for it forever. So each
object whose lock a background thread takes renews it, with the state that
lock guards, in every child, before the child runs anything else. The
same hook gives each child a generator of its own (the retry jitter's), so
that forked processes do not draw the same numbers.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import TypeVar

_Owner = TypeVar("_Owner")


def renew_in_children(owner: _Owner, renew: Callable[[_Owner], None]) -> None:
    """Call ``renew(owner)`` in each child forked from now on, while ``owner``
    lives (it is held weakly). ``renew`` runs in the child's only thread,
    right after the fork; it must not take any lock of the parent's."""
    alive = weakref.ref(owner)

    def after_in_child() -> None:
        found = alive()
        if found is not None:
            renew(found)

    os.register_at_fork(after_in_child=after_in_child)
