"""What a Django signal holds, read from its ``receivers`` list as it stands.

Each entry's lookup key and receiver (a weak reference, or the receiver itself
for ``weak=False``) are the same in Django 5.2 and 6.x. Reading them this way,
rather than asking the signal for its live receivers, fills no ``use_caching``
cache and makes no reference Django would not make.
"""

from __future__ import annotations

import weakref
from collections.abc import Hashable
from types import MethodType
from typing import Any

from django.dispatch import Signal as DjangoSignal

from signalbox import _compat


def kept(signal: DjangoSignal, connected: Any, sender: object, uid: Hashable) -> bool:
    """Whether the signal holds ``connected`` under the key ``uid`` and ``sender``.

    Read from the end of the list, where a connection just made is. Django
    silently ignores a connection whose key is taken, so this is how a
    connect learns whether it counted.
    """
    if isinstance(sender, str):
        return True  # a model signal's lazy sender: connected once the model loads
    held = held_for(signal, (uid, _compat.make_id(sender)))
    return held is connected or (isinstance(held, MethodType) and held == connected)


def holds(signal: DjangoSignal, connected: object) -> bool:
    """Whether the signal still holds ``connected``, under whatever key."""
    for entry in list(signal.receivers):
        held = entry[1]
        if isinstance(held, weakref.ReferenceType):
            held = held()
        if held is connected:
            return True
    return False


def held_for(signal: DjangoSignal, lookup_key: tuple[Hashable, Hashable]) -> Any:
    """The receiver Django holds under ``lookup_key``, or None (gone, or none)."""
    for entry in reversed(signal.receivers):
        if entry[0] == lookup_key:
            held = entry[1]
            return held() if isinstance(held, weakref.ReferenceType) else held
    return None


def held_strongly(receivers: list[Any]) -> frozenset[int]:
    """The ids of the receivers in a ``receivers`` list that Django holds
    strongly (connected with ``weak=False``)."""
    return frozenset(
        id(entry[1])
        for entry in receivers
        if not isinstance(entry[1], weakref.ReferenceType)
    )
