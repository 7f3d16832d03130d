"""Wrapping the send path while a capture is open, and putting it back after.

The ``send`` family and ``_live_receivers`` of Django's ``Signal`` and of
:class:`signalbox.Signal`, and ``signalbox.outbox.enqueue``, are replaced
while at least one capture is open: a send outside one costs what it costs
without the kit (a check on every send would not). Each receiver a recorded
send reaches is called through a :class:`_Watch`, which notes what happened.
"""

from __future__ import annotations

import contextvars
import functools
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from asgiref.sync import sync_to_async
from django.db import connections
from django.dispatch import Signal as DjangoSignal

from signalbox import observe, outbox, registry
from signalbox._adapters import (
    Adapter,
    BackgroundReceiver,
    OnCommitReceiver,
    database,
)
from signalbox._sending import SendingSignal
from signalbox.dispatch import Signal as SignalboxSignal
from signalbox.registry import ReceiverInfo
from signalbox.testing import _drain
from signalbox.testing._hooks import Swaps, hearing_failures, waiting_on_commit
from signalbox.testing._records import Background, Happened, Reached, Sent


class Recording(Protocol):
    """What the send path records into: an open capture (``_capture.Capture``,
    which imports this module, so it is named here by what it has)."""

    background: Background
    sent: list[Sent]
    runs: list[_drain.Ran]


_lock = threading.Lock()
_captures: list[Recording] = []
_swaps: Swaps | None = None
_sending: contextvars.ContextVar[Sent | None] = contextvars.ContextVar(
    "signalbox_testing_sending", default=None
)
_reaching: contextvars.ContextVar[Reached | None] = contextvars.ContextVar(
    "signalbox_testing_reaching", default=None
)


def innermost() -> Recording | None:
    """The innermost capture open now, or None."""
    with _lock:
        return _captures[-1] if _captures else None


def open_capture(capture: Recording) -> None:
    """Start recording into ``capture`` (wrapping the send path if first)."""
    global _swaps
    with _lock:
        if not _captures:
            _swaps = _wrap()
        _captures.append(capture)


def close_capture(capture: Recording) -> None:
    """Stop recording into ``capture`` (unwrapping the send path if last)."""
    global _swaps
    with _lock:
        _captures.remove(capture)
        if not _captures and _swaps is not None:
            _swaps.undo()
            _swaps = None


def _wrap() -> Swaps:
    swaps = Swaps()
    # The send methods live on SendingSignal, signalbox.Signal's base.
    for cls in (DjangoSignal, SendingSignal):
        own = vars(cls)
        for name in ("send", "send_robust"):
            swaps.swap(cls, name, _sync_send(own[name]))
        for name in ("asend", "asend_robust"):
            swaps.swap(cls, name, _async_send(own[name]))
        swaps.swap(cls, "_live_receivers", _live_receivers(own["_live_receivers"], cls))
    swaps.swap(outbox, "enqueue", _enqueue(outbox.enqueue))
    return swaps


def _begin(signal: DjangoSignal, sender: Any, named: dict[str, Any]) -> Sent | None:
    """A record of this send in every open capture, or None if out of scope."""
    if not isinstance(signal, SignalboxSignal) and not registry.registry.connections(
        signal
    ):
        return None
    sent = Sent(signal, sender, dict(named))
    with _lock:
        for each in _captures:
            each.sent.append(sent)
    return sent


def _forget_if_unheard(sent: Sent) -> None:
    """Drop a send of another library's signal that reached no receiver: a
    model signal is sent for every model, and signalbox's receiver on it
    for one model makes the others' sends noise."""
    if sent.receivers or isinstance(sent.signal, SignalboxSignal):
        return
    with _lock:
        for each in _captures:
            if sent in each.sent:
                each.sent.remove(sent)


def _sync_send(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def send(self: DjangoSignal, sender: Any, **named: Any) -> Any:
        sent = _begin(self, sender, named)
        if sent is None:
            return original(self, sender, **named)
        token = _sending.set(sent)
        try:
            responses = original(self, sender, **named)
        finally:
            _sending.reset(token)
            _forget_if_unheard(sent)
        _run_inline(sent)
        return _unwrapped(responses)

    return send


def _async_send(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def asend(self: DjangoSignal, sender: Any, **named: Any) -> Any:
        sent = _begin(self, sender, named)
        if sent is None:
            return await original(self, sender, **named)
        token = _sending.set(sent)
        try:
            responses = await original(self, sender, **named)
        finally:
            _sending.reset(token)
            _forget_if_unheard(sent)
        if _inline():
            await sync_to_async(_run_inline)(sent)
        return _unwrapped(responses)

    return asend


def _live_receivers(
    original: Callable[..., Any], cls: type[DjangoSignal]
) -> Callable[..., Any]:
    def live(self: DjangoSignal, sender: Any) -> Any:
        synchronous, asynchronous = original(self, sender)
        sent = _sending.get()
        if sent is None or sent.signal is not self:
            return synchronous, asynchronous
        if cls is DjangoSignal and isinstance(self, SignalboxSignal):
            # Called by signalbox.Signal's own lookup, which caches what it
            # gets and is wrapped itself: hand it the receivers as they are.
            return synchronous, asynchronous
        return (
            [_Watch(receiver, sent) for receiver in synchronous],
            [_AsyncWatch(receiver, sent) for receiver in asynchronous],
        )

    return live


def _unwrapped(responses: Any) -> Any:
    if not isinstance(responses, list):
        return responses
    return [
        (receiver.receiver if isinstance(receiver, _Watch) else receiver, response)
        for receiver, response in responses
    ]


class _Watch:
    """Stands in for one receiver during one recorded send."""

    def __init__(self, receiver: Callable[..., Any], sent: Sent) -> None:
        self.receiver = receiver
        self.__wrapped__ = receiver  # how observe names it, if it is slow
        self.sent = sent

    def _reach(self, named: dict[str, Any]) -> Reached:
        receiver = self.receiver
        info: ReceiverInfo | None
        if isinstance(receiver, Adapter):
            info = receiver.info
            function = receiver.receiver or receiver
        else:
            info = registry.registry.info(self.sent.signal, receiver)
            function = receiver
        reached = Reached(
            receiver=function,
            key=info.key if info else observe.receiver_name(receiver),
            run=info.run if info else "inline",
        )
        if isinstance(receiver, (OnCommitReceiver, BackgroundReceiver)):
            reached.using = database(named.get("using"))
        self.sent.receivers.append(reached)
        return reached

    def __call__(self, signal: DjangoSignal, sender: Any, **named: Any) -> Any:
        reached = self._reach(named)
        token = _reaching.set(reached)
        try:
            if isinstance(self.receiver, OnCommitReceiver):
                return _deferring(self.receiver, reached, signal, sender, named)
            response = self.receiver(signal=signal, sender=sender, **named)
        except Exception as error:
            reached.happened, reached.error = Happened.RAISED, error
            raise
        finally:
            _reaching.reset(token)
        if isinstance(self.receiver, BackgroundReceiver):
            reached.happened = Happened.WRITTEN
        reached.response = response
        return response


class _AsyncWatch(_Watch):
    def __call__(
        self, signal: DjangoSignal, sender: Any, **named: Any
    ) -> Coroutine[Any, Any, Any]:
        return self._awaited(signal, sender, named)

    async def _awaited(
        self, signal: DjangoSignal, sender: Any, named: dict[str, Any]
    ) -> Any:
        reached = self._reach(named)
        try:
            reached.response = await self.receiver(
                signal=signal, sender=sender, **named
            )
        except Exception as error:
            reached.happened, reached.error = Happened.RAISED, error
            raise
        return reached.response


def _deferring(
    adapter: OnCommitReceiver,
    reached: Reached,
    signal: DjangoSignal,
    sender: Any,
    named: dict[str, Any],
) -> None:
    """Call an on-commit adapter, noting whether it ran or waits for the commit."""
    assert reached.using is not None
    pending = waiting_on_commit(connections[reached.using])
    before = len(pending)
    with hearing_failures() as heard:
        adapter(signal=signal, sender=sender, **named)
    if len(pending) > before:
        reached.happened = Happened.ON_COMMIT
        for index in range(before, len(pending)):
            sids, callback, robust = pending[index]
            pending[index] = (sids, _AfterCommit(callback, reached), robust)
    elif heard:
        reached.happened, reached.error = Happened.RAISED, heard[0]


class _AfterCommit:
    """An on-commit receiver's callback that notes, when it runs, how it went."""

    __qualname__ = "signalbox on-commit receiver"
    signalbox_on_commit = True  # what drain() runs under a TestCase

    def __init__(self, callback: Callable[[], None], reached: Reached) -> None:
        self.callback = callback
        self.reached = reached

    def __call__(self) -> None:
        with hearing_failures() as heard:
            self.callback()
        self.reached.after_commit = True
        if heard:
            self.reached.happened, self.reached.error = Happened.RAISED, heard[0]
        else:
            self.reached.happened = Happened.RAN


def _enqueue(original: Callable[..., list[int]]) -> Callable[..., list[int]]:
    @functools.wraps(original)
    def enqueue(
        rows: Any,
        *,
        using: str,
        ids: bool = False,
        then: Callable[[list[int]], None] | None = None,
        wake: bool = True,
    ) -> list[int]:
        reached = _reaching.get()
        if reached is None:
            return original(rows, using=using, ids=ids, then=then, wake=wake)

        def written(new: list[int]) -> None:
            reached.delivery_id = new[0] if new else None
            if then is not None:
                then(new)

        return original(rows, using=using, ids=ids, then=written, wake=wake)

    return enqueue


def _run_inline(sent: Sent) -> None:
    """Run the send's background deliveries now, if an open capture says inline."""
    inline = _inline()
    if not inline:
        return
    for reached in sent.receivers:
        if reached.happened is Happened.WRITTEN and reached.delivery_id is not None:
            assert reached.using is not None
            ran: list[_drain.Ran] = []
            try:
                _drain.run_one(reached.delivery_id, using=reached.using, into=ran)
            finally:
                for each in inline:
                    each.runs.extend(ran)


def _inline() -> list[Recording]:
    """The open captures that run background receivers at the send."""
    with _lock:
        return [each for each in _captures if each.background == "inline"]
