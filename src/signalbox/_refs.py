"""References to receivers and senders that behave the way Django's do.

``weakref.WeakMethod`` reports an ``AttributeError`` ("Exception ignored in
WeakMethod._cb") when it is collected together with its target, which
happens when a signal, an instance and its class die in one garbage
collection; these references register no callbacks, so they cannot.
"""

from __future__ import annotations

import types
import weakref
from collections.abc import Callable
from typing import Any

Ref = Callable[[], Any]

# Values that may be held strongly: holding them keeps nothing else alive.
_VALUES = (type(None), str, bytes, int, float, bool)


class MethodRef:
    """A weak reference to a bound method: alive while its instance is.

    It hands back the very bound method it was made from while that object
    lives (Django returns the same object for a method connected with
    ``weak=False``), else a new, equal one bound to the same instance.
    """

    __slots__ = ("_bound", "_func", "_self")

    def __init__(self, method: types.MethodType) -> None:
        self._bound = weakref.ref(method)
        self._self = weakref.ref(method.__self__)
        self._func = method.__func__

    def __call__(self) -> types.MethodType | None:
        bound = self._bound()
        if bound is not None:
            return bound
        owner = self._self()
        return None if owner is None else types.MethodType(self._func, owner)


def weak(obj: object) -> Ref | None:
    """A weak reference to ``obj``, or None if it cannot be referenced weakly.

    Values (None, str, numbers, bytes) come back as a strong reference: they
    keep nothing alive, and they are the most common senders.
    """
    if isinstance(obj, types.MethodType):
        return MethodRef(obj)
    if isinstance(obj, _VALUES):
        return _Strong(obj)
    try:
        return weakref.ref(obj)
    except TypeError:
        return None


class _Strong:
    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __call__(self) -> object:
        return self.value


def strong(obj: object) -> Ref:
    """A reference that holds ``obj`` (for what Django holds strongly too)."""
    return _Strong(obj)


DEAD: Ref = _Strong(None)
"""A reference whose object is gone (or was never held)."""
