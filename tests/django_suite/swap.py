"""Make every ``django.dispatch.Signal`` of this process a ``signalbox.Signal``.

Signals that exist already (``post_save``, ``request_finished``, ...) get
their class swapped in place; signals made afterwards, whatever subclass of
Django's they are, are swapped as ``Signal.__init__`` ends. A subclass keeps
its own methods: ``ModelSignal`` becomes a class whose bases are
``ModelSignal`` and ``signalbox.Signal``.
"""

from __future__ import annotations

import gc
from typing import Any

from django.dispatch import Signal as DjangoSignal

import signalbox

_swapped: dict[type[DjangoSignal], type[DjangoSignal]] = {}


def signalbox_class(cls: type[DjangoSignal]) -> type[DjangoSignal]:
    """The class a signal of ``cls`` becomes: ``cls`` with signalbox's under it."""
    if issubclass(cls, signalbox.Signal):
        return cls
    if cls is DjangoSignal:
        return signalbox.Signal
    if cls not in _swapped:
        _swapped[cls] = type(
            cls.__name__,
            (cls, signalbox.Signal),
            {"__module__": cls.__module__, "__qualname__": cls.__qualname__},
        )
    return _swapped[cls]


def adopt(signal: DjangoSignal) -> None:
    """Turn ``signal`` into a signalbox signal, keeping its receivers."""
    if isinstance(signal, signalbox.Signal):
        return
    signal.__class__ = signalbox_class(type(signal))
    assert isinstance(signal, signalbox.Signal)
    signal.defined_in = None
    signal._start()


def not_swapped() -> list[DjangoSignal]:
    """Every Django signal of the process that is not signalbox's."""
    return [
        obj
        for obj in gc.get_objects()
        if issubclass(type(obj), DjangoSignal)
        and not issubclass(type(obj), signalbox.Signal)
    ]


def swap_every_signal() -> int:
    """Swap the signals that exist and every one made from now on.

    Returns how many existing signals were swapped.
    """
    existing = not_swapped()
    for signal in existing:
        adopt(signal)
    original = DjangoSignal.__init__

    def __init__(self: DjangoSignal, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        adopt(self)

    DjangoSignal.__init__ = __init__  # type: ignore[method-assign]
    return len(existing)
