"""Sending: finding a sender's receivers and calling each one, timed.

This is the hot path of every send, kept apart from connecting (in
:mod:`signalbox.dispatch`, whose :class:`~signalbox.Signal` is a
:class:`SendingSignal`). Its bodies are written for speed: no call or lookup
that a send can do without.
"""

from __future__ import annotations

import asyncio
import sys
import time
from asyncio.events import _get_running_loop as _running_loop
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.dispatch import Signal as DjangoSignal

from signalbox import _compat, _refs, conf, observe, outbox
from signalbox._adapters import Adapter
from signalbox._routes import ROUTES_KEPT, Receiver, Route

Responses = list[tuple[Receiver, Any]]


def _sending(robust: bool, doc: str) -> Callable[..., Responses]:
    """``Signal.send`` (or ``send_robust``, when ``robust``): one body for both.

    Made by a function rather than calling a shared method, so a send costs
    no extra call: this is the hot path.
    """

    def send(self: SendingSignal, sender: Any, **named: Any) -> Responses:
        if (
            not self.receivers
            or self.sender_receivers_cache.get(sender) is _compat.NO_RECEIVERS
        ):
            return []
        synchronous, asynchronous = self._live_receivers(sender)
        responses = self._call_each(synchronous, sender, named, robust)
        if asynchronous:
            responses.extend(
                async_to_sync(self._await_each)(
                    asynchronous, sender, named, robust, observe.Where.ASYNC_TO_SYNC
                )
            )
        return responses

    send.__name__ = "send_robust" if robust else "send"
    send.__qualname__ = f"Signal.{send.__name__}"
    send.__doc__ = doc
    return send


class SendingSignal(DjangoSignal):
    """Django's signal with signalbox's sending: each sender's receivers are
    remembered between sends, and every receiver call is timed (see
    :mod:`signalbox.observe`). A base class only: connecting, and starting
    this state (:meth:`_start`), are :class:`signalbox.Signal`'s."""

    def _start(self) -> None:
        """Set up what sending adds to Django's state."""
        self._background = 0  # background receivers; from two on, sends batch rows
        self._routes: dict[int, Route] = {}
        self._epoch = object()

    # -- finding receivers --------------------------------------------------

    def _forget_routes(self) -> None:
        self._epoch = object()
        self._routes.clear()

    def _live_receivers(self, sender: object) -> tuple[list[Receiver], list[Receiver]]:
        # Django rebuilds this list on every send, under a lock. The route
        # cache holds references (weak where Django's are), so it never keeps
        # a receiver alive. Any connect or disconnect starts a new epoch; a
        # replaced or resized `receivers` list, or a dead weak reference
        # (which Django's lookup clears away), sends the lookup back to Django.
        route = self._routes.get(id(sender))
        receivers = self.receivers
        if (
            route is not None
            and route.epoch is self._epoch
            and route.receivers is receivers
            and route.count == len(receivers)
            and not self._dead_receivers  # type: ignore[attr-defined]
            and route.sender() is sender
        ):
            return route.resolve()
        epoch = self._epoch
        synchronous, asynchronous = super()._live_receivers(sender)
        sender_ref = _refs.weak(sender)
        if sender_ref is not None:  # never keep a sender alive that Django would not
            if len(self._routes) >= ROUTES_KEPT:
                self._routes.clear()
            self._routes[id(sender)] = Route(
                epoch, self.receivers, sender_ref, synchronous, asynchronous
            )
        return synchronous, asynchronous

    # -- sending ------------------------------------------------------------

    send = _sending(
        robust=False,
        doc="""Send the signal to every receiver, as Django does, timing each call.

        If a receiver raises, the error propagates and later receivers do not
        run. Coroutine receivers run after the synchronous ones, concurrently,
        through one ``async_to_sync()``. Returns ``[(receiver, response), ...]``.
        """,
    )

    send_robust = _sending(
        robust=True,
        doc="""Like :meth:`send`, but an ``Exception`` from a receiver is logged
        and returned as that receiver's response instead of propagating.""",
    )

    async def asend(self, sender: Any, **named: Any) -> Responses:
        """Send from async code without blocking the event loop.

        Synchronous receivers run together in one ``sync_to_async()`` thread;
        coroutine receivers are awaited concurrently (a single one is awaited
        directly, which is much cheaper than a task). Errors propagate as in
        :meth:`send`.
        """
        return await self._asend(sender, named, robust=False)

    async def asend_robust(self, sender: Any, **named: Any) -> Responses:
        """:meth:`asend` that logs and returns exceptions like :meth:`send_robust`."""
        return await self._asend(sender, named, robust=True)

    async def _asend(
        self, sender: object, named: dict[str, Any], robust: bool
    ) -> Responses:
        if (
            not self.receivers
            or self.sender_receivers_cache.get(sender) is _compat.NO_RECEIVERS
        ):
            return []
        synchronous, asynchronous = self._live_receivers(sender)
        if not synchronous:
            return await self._await_each(asynchronous, sender, named, robust)
        call_each = sync_to_async(self._call_each)
        if _compat.SYNC_BEFORE_ASYNC:
            responses = await call_each(synchronous, sender, named, robust)
            if asynchronous:
                responses.extend(
                    await self._await_each(asynchronous, sender, named, robust)
                )
            return responses
        # Django 5.2 runs the two groups side by side, each in a task.
        if not asynchronous:
            alone: Responses = await _compat.await_alone(
                call_each(synchronous, sender, named, robust)
            )
            return alone
        synchronous_responses, asynchronous_responses = await asyncio.gather(
            call_each(synchronous, sender, named, robust),
            self._await_each(asynchronous, sender, named, robust),
        )
        return synchronous_responses + asynchronous_responses

    def _call_each(
        self,
        receivers: list[Receiver],
        sender: object,
        named: dict[str, Any],
        robust: bool,
        batched: bool = False,
    ) -> Responses:
        """Call synchronous receivers in order, timing each: the hot loop."""
        responses: Responses = []
        if not receivers:
            return responses
        if self._background > 1 and not batched:
            # Several background receivers: their rows go in one INSERT.
            with outbox.batch():
                return self._call_each(receivers, sender, named, robust, True)
        limits = conf.get()
        # When this thread's event loop is running, every duration is kept so a
        # blocked loop can be reported with each receiver's share; otherwise
        # only a slow one leaves the loop's fast path.
        timings: list[tuple[Receiver, int]] | None = None
        threshold = limits.slow_receiver_ns
        if _running_loop() is not None:
            timings, threshold = [], -1
        clock = time.perf_counter_ns
        start = last = clock()
        for receiver in receivers:
            try:
                response = receiver(signal=self, sender=sender, **named)
            except Exception as err:
                if not robust:
                    raise
                _compat.log_robust_failure(self, receiver, err)
                response = err
            responses.append((receiver, response))
            now = clock()
            if now - last > threshold:
                self._took(receiver, sender, now - last, limits, timings)
                now = clock()  # the report's own time is nobody's share
            last = now
        if timings is not None and last - start > limits.loop_block_ns:
            method = "send_robust" if robust else "send"
            observe.loop_blocked(self, sender, timings, last - start, method)
        return responses

    def _took(
        self,
        receiver: Receiver,
        sender: object,
        elapsed: int,
        limits: conf.Settings,
        timings: list[tuple[Receiver, int]] | None,
    ) -> None:
        if timings is not None:
            timings.append((receiver, elapsed))
        # An adapter times the receiver it stands for, where that runs.
        if elapsed > limits.slow_receiver_ns and not isinstance(receiver, Adapter):
            where = observe.sync_place(sys._getframe(1))  # from _call_each's caller
            observe.slow_receiver(self, sender, receiver, elapsed, where)

    async def _await_each(
        self,
        receivers: list[Receiver],
        sender: object,
        named: dict[str, Any],
        robust: bool,
        where: observe.Where = observe.Where.LOOP,
    ) -> Responses:
        """Await coroutine receivers concurrently, timing each.

        ``where`` is the loop they are awaited on, for a slow one's warning:
        the caller's (``asend()``), or async_to_sync's (``send()``).
        """
        if len(receivers) == 1:
            # One task, as Django runs it, without a task group around it.
            only = self._await_one(receivers[0], sender, named, robust, where)
            return [(receivers[0], await _compat.await_alone(only))]
        responses = await _compat.run_parallel(
            *(
                self._await_one(receiver, sender, named, robust, where)
                for receiver in receivers
            )
        )
        return list(zip(receivers, responses, strict=True))

    async def _await_one(
        self,
        receiver: Receiver,
        sender: object,
        named: dict[str, Any],
        robust: bool,
        where: observe.Where,
    ) -> Any:
        start = time.perf_counter_ns()
        try:
            response = await receiver(signal=self, sender=sender, **named)
        except Exception as err:
            if not robust:
                raise
            _compat.log_robust_failure(self, receiver, err)
            response = err
        observe.call_ended(start, self, sender, receiver, where)
        return response
