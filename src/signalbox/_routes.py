"""The receivers a sender reached, remembered between sends.

Django rebuilds a sender's receiver list on every send, under a lock; a
:class:`~signalbox.Signal` remembers it per sender as a :class:`Route`, valid
for one epoch (any connect or disconnect starts a new one). A route holds
references as Django holds the receivers, so it never keeps one alive.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from signalbox import _refs
from signalbox._held import held_strongly

Receiver = Callable[..., Any]
"""A receiver, as Django calls it."""

ROUTES_KEPT = 512
"""Distinct senders remembered per signal before starting over."""


class Route:
    """The receivers one sender reached, as references, valid for one epoch."""

    __slots__ = ("asynchronous", "count", "epoch", "receivers", "sender", "synchronous")

    def __init__(
        self,
        epoch: object,
        receivers: list[Any],
        sender: _refs.Ref,
        synchronous: Sequence[Receiver],
        asynchronous: Sequence[Receiver],
    ) -> None:
        self.epoch = epoch
        self.receivers = receivers
        self.count = len(receivers)
        self.sender = sender
        held = held_strongly(receivers)
        self.synchronous = tuple(_reference(r, held) for r in synchronous)
        self.asynchronous = tuple(_reference(r, held) for r in asynchronous)

    def resolve(self) -> tuple[list[Receiver], list[Receiver]]:
        """The synchronous and the coroutine receivers still alive, in order."""
        # Plain loops: on CPython 3.11 a comprehension costs a frame, which is
        # more than the rest of this method.
        synchronous = []
        for ref in self.synchronous:
            receiver = ref()
            if receiver is not None:
                synchronous.append(receiver)
        asynchronous = []
        for ref in self.asynchronous:
            receiver = ref()
            if receiver is not None:
                asynchronous.append(receiver)
        return synchronous, asynchronous


def _reference(receiver: Receiver, held: frozenset[int]) -> _refs.Ref:
    # Held as Django holds it: strongly for weak=False, so remembering a
    # route makes no weak reference Django would not; weakly otherwise, so it
    # never keeps a receiver alive.
    if id(receiver) in held:
        return _refs.strong(receiver)
    return _refs.weak(receiver) or _refs.strong(receiver)
