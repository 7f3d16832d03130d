"""What every adapter is: a stand-in that lives exactly as long as its receiver.

It compares equal to the receiver, holds it as Django would have, and calls
it here and now, timed, when its mode says so.
"""

from __future__ import annotations

import inspect
import os
import sys
import time
import weakref
from asyncio.events import _get_running_loop as _running_loop
from collections.abc import Callable
from functools import partial
from types import FrameType
from typing import Any

from asgiref.sync import async_to_sync, iscoroutinefunction
from django.db import DEFAULT_DB_ALIAS, connections

from signalbox import _refs, conf, observe
from signalbox.registry import ReceiverInfo

_PACKAGE = os.path.dirname(__file__)


class Adapter:
    """A stand-in for one receiver.

    It compares equal to the receiver, so ``(receiver, response)`` pairs from
    ``send()`` still match the function that was connected.
    """

    def __init__(
        self, receiver: Callable[..., Any], *, weak: bool, info: ReceiverInfo
    ) -> None:
        self.info = info
        self.signalbox_key = info.key
        self.__qualname__ = getattr(receiver, "__qualname__", info.key)
        self.__module__ = getattr(receiver, "__module__", __name__)
        self._hash = hash(receiver)
        self._target: Callable[[], Any]
        self._lifetime: weakref.finalize[Any, Any] | None = None
        if weak:
            self._target = _weak_reference(receiver)
            self._lifetime = weakref.finalize(_owner(receiver), _hold, self)
            self._lifetime.atexit = False
        else:
            self._target = partial(_identity, receiver)

    def __call__(self, signal: object, sender: object, **kwargs: Any) -> Any:
        raise NotImplementedError

    @classmethod
    def fitting(cls, receiver: Callable[..., Any], info: ReceiverInfo) -> type[Adapter]:
        """The adapter class for ``receiver``: this one, or a variant of it
        that fits the receiver (a coroutine, one that said what travels)."""
        return cls

    @property
    def receiver(self) -> Callable[..., Any] | None:
        """The receiver this adapter stands for, or None once it is gone."""
        return self._target()  # type: ignore[no-any-return]

    def release(self) -> None:
        """Stop keeping this adapter alive (its receiver was disconnected)."""
        if self._lifetime is not None:
            self._lifetime.detach()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Adapter):
            return self is other
        target = self._target()
        return target is not None and target == other

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"<signalbox {self.info.run} receiver {self.info.key}>"

    def _run_now(
        self,
        receiver: Callable[..., Any],
        signal: object,
        sender: object,
        kwargs: dict[str, Any],
        *,
        after_commit: bool = False,
    ) -> Any:
        """Call the receiver here and now, timed, as an inline receiver is called.

        ``after_commit`` says the commit called it; otherwise the send did.
        """
        start = time.perf_counter_ns()
        try:
            if iscoroutinefunction(receiver):
                return async_to_sync(receiver)(signal=signal, sender=sender, **kwargs)
            return receiver(signal=signal, sender=sender, **kwargs)
        finally:
            if after_commit:
                where = observe.Where.COMMITTING_THREAD
                observe.call_ended(
                    start, signal, sender, self, where, after_commit=True
                )
            else:
                self._ran_in_send(start, signal, sender)

    def _ran_in_send(self, start: int, signal: object, sender: object) -> None:
        # Django's send() called it: besides a slow call, its time on a
        # running loop's thread counts towards the send that blocked the loop.
        elapsed = time.perf_counter_ns() - start
        if elapsed > conf.get().slow_receiver_ns or _running_loop() is not None:
            observe.sync_receiver_ran(
                signal,
                sender,
                self,
                elapsed,
                _dispatcher_frame(),
                at_once=self.info.run == "on_commit",
            )


def _dispatcher_frame() -> FrameType | None:
    """The frame that called the adapter: the first one outside this package."""
    frame = sys._getframe(1)
    while frame is not None and os.path.dirname(frame.f_code.co_filename) == _PACKAGE:
        frame = frame.f_back  # type: ignore[assignment]
    return frame


def database(using: object) -> str:
    """The alias named by a send's ``using`` argument, else the default one."""
    if isinstance(using, str) and using in connections.settings:
        return using
    return DEFAULT_DB_ALIAS


def _owner(receiver: Callable[..., Any]) -> object:
    # Django holds a bound method through WeakMethod, which lives as long as
    # the instance; an adapter for one must do the same.
    return receiver.__self__ if inspect.ismethod(receiver) else receiver


def _weak_reference(receiver: Callable[..., Any]) -> Callable[[], Any]:
    reference = _refs.weak(receiver)
    if reference is None:
        # What Django's connect(weak=True) raises for such a receiver.
        raise TypeError(
            f"cannot create weak reference to {type(receiver).__name__!r} object"
        )
    return reference


def _hold(adapter: Adapter) -> None:
    """The finalizer's callback: holding ``adapter`` as an argument was its job."""


def _identity(value: Any) -> Any:
    return value
