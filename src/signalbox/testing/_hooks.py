"""What the testing kit swaps in while it is in use, and puts back after.

The kit records sends and runs deferred receivers by wrapping a few of
signalbox's and Django's own functions for as long as a ``capture()`` (or
``drain()``) is open: a send outside one costs exactly what it costs without
the kit, which a check on every send would not.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

from django.db.backends.base.base import BaseDatabaseWrapper

from signalbox import observe

_MISSING = object()

_lock = threading.Lock()


class Swaps:
    """Attributes replaced on objects (classes, modules), put back by :meth:`undo`."""

    def __init__(self) -> None:
        self._undo: list[tuple[object, str, object]] = []

    def swap(self, owner: object, name: str, value: object) -> Any:
        """Set ``owner.<name>`` to ``value``; return what it was (as looked up)."""
        own = vars(owner).get(name, _MISSING)
        before = own if own is not _MISSING else _lookup(owner, name)
        self._undo.append((owner, name, own))
        setattr(owner, name, value)
        return before

    def undo(self) -> None:
        """Put back everything swapped, last first."""
        while self._undo:
            owner, name, own = self._undo.pop()
            if own is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, own)


def _lookup(owner: object, name: str) -> Any:
    # Inherited: found on a base class, which the swap shadows and undo uncovers.
    for base in (owner if isinstance(owner, type) else type(owner)).__mro__:
        if name in vars(base):
            return vars(base)[name]
    raise AttributeError(f"{owner!r} has no attribute {name!r} to swap")


# -- deferred receivers' failures ------------------------------------------------

_failures: contextvars.ContextVar[list[BaseException] | None] = contextvars.ContextVar(
    "signalbox_testing_failures", default=None
)
_heard = 0
_original_failure: Callable[..., None] | None = None


@contextmanager
def hearing_failures() -> Iterator[list[BaseException]]:
    """Collect the exceptions of on-commit receivers run inside the block.

    signalbox logs such an exception (no caller is left to see it) through
    :func:`signalbox.observe.deferred_failure`; inside this block it is also
    appended to the list this yields, and still logged.
    """
    global _heard, _original_failure
    with _lock:
        if _heard == 0:
            _original_failure = observe.deferred_failure
            observe.deferred_failure = _deferred_failure
        _heard += 1
    heard: list[BaseException] = []
    token = _failures.set(heard)
    try:
        yield heard
    finally:
        _failures.reset(token)
        with _lock:
            _heard -= 1
            if _heard == 0 and _original_failure is not None:
                observe.deferred_failure = _original_failure
                _original_failure = None


def _deferred_failure(
    signal: object, sender: object, key: str, run: str, error: BaseException
) -> None:
    heard = _failures.get()
    if heard is not None:
        heard.append(error)
    assert _original_failure is not None
    _original_failure(signal, sender, key, run, error)


def waiting_on_commit(connection: BaseDatabaseWrapper) -> list[Any]:
    """The connection's on-commit callbacks, ``(savepoint ids, callback,
    robust)`` each (django-stubs still describe the older pairs)."""
    return cast("list[Any]", connection.run_on_commit)
