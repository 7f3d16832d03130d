"""Connecting and silencing receivers for one test, as blinker's helpers do."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.dispatch import Signal as DjangoSignal

from signalbox import dispatch
from signalbox.testing._hooks import Swaps


@contextmanager
def connected_to(
    receiver: Callable[..., Any], signal: DjangoSignal, **options: Any
) -> Iterator[Callable[..., Any]]:
    """Connect ``receiver`` to ``signal`` for the block, then disconnect it.

    ``options`` are :func:`signalbox.connect`'s (``run=``, ``sender=``,
    ``dispatch_uid=``, ``retries=``, ...), checked as it checks them. The
    receiver is held strongly for the block (so a closure works for the
    modes that allow one), and disconnected however the block ends.
    Yields the receiver.
    """
    dispatch.connect(signal, receiver, **options)
    try:
        yield receiver
    finally:
        signal.disconnect(
            receiver,
            sender=options.get("sender"),
            dispatch_uid=options.get("dispatch_uid"),
        )


@contextmanager
def muted(signal: DjangoSignal) -> Iterator[DjangoSignal]:
    """Silence ``signal`` for the block: its sends reach no receiver.

    ``send()`` and ``asend()`` return ``[]`` and ``has_listeners()`` is
    False, whatever is connected (connections are kept). A capture still
    records a :class:`signalbox.Signal`'s sends, each with no receiver
    reached (another signal's, which reach nobody, it leaves out). Yields
    the signal.
    """
    swaps = Swaps()
    swaps.swap(signal, "_live_receivers", _nobody)
    try:
        yield signal
    finally:
        swaps.undo()


def _nobody(sender: object) -> tuple[list[Any], list[Any]]:
    return [], []
