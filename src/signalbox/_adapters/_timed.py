"""Inline receivers of a signal that is not signalbox's: called at once, timed."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Coroutine
from functools import partial
from types import CodeType
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from signalbox import observe
from signalbox._adapters._base import Adapter
from signalbox.registry import ReceiverInfo


class TimedReceiver(Adapter):
    """An inline receiver on a signal that is not signalbox's: called at once, timed.

    (A signalbox :class:`~signalbox.Signal` times its receivers itself and gets
    the plain receiver instead.)
    """

    @classmethod
    def fitting(cls, receiver: Callable[..., Any], info: ReceiverInfo) -> type[Adapter]:
        """:class:`AsyncTimedReceiver` for a coroutine receiver, else this class."""
        return AsyncTimedReceiver if iscoroutinefunction(receiver) else cls

    def __call__(self, signal: object, sender: object, **kwargs: Any) -> Any:
        receiver = self._target()
        if receiver is None:
            return None
        return self._run_now(receiver, signal, sender, kwargs)


class AsyncTimedReceiver(Adapter):
    """:class:`TimedReceiver` for a coroutine receiver; awaited by ``asend()``."""

    def __init__(
        self, receiver: Callable[..., Any], *, weak: bool, info: ReceiverInfo
    ) -> None:
        super().__init__(receiver, weak=weak, info=info)
        markcoroutinefunction(self)

    def __call__(
        self, signal: object, sender: object, **kwargs: Any
    ) -> Coroutine[Any, Any, Any]:
        # A plain function returning the coroutine: while it is being called,
        # the frame that called it tells how it will be awaited.
        caller = sys._getframe(1).f_code
        return self._awaited(caller, signal, sender, kwargs)

    async def _awaited(
        self, caller: CodeType, signal: object, sender: object, kwargs: dict[str, Any]
    ) -> Any:
        receiver = self._target()
        if receiver is None:
            return None
        start = time.perf_counter_ns()
        try:
            return await receiver(signal=signal, sender=sender, **kwargs)
        finally:
            place = partial(observe.coroutine_place, caller)
            observe.call_ended(start, signal, sender, self, place)
