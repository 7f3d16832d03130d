"""Sending signals and connecting receivers that choose how they run.

:class:`Signal` is a drop-in subclass of :class:`django.dispatch.Signal`: the
same methods, arguments, return values and errors, in Django 5.2 and 6.x. It
adds two things: every receiver call is timed (see :mod:`signalbox.observe`),
and the receivers a sender reaches are remembered between sends, which more
than pays for the timing.

:func:`receiver` and :func:`connect` connect a receiver to *any* Django
signal with ``run=`` saying how it runs. A plain inline receiver on a
signalbox signal is connected as it is; anything else is connected through a
small adapter (:mod:`signalbox._adapters`) that Django's own bookkeeping
treats exactly as it would the receiver, so ``disconnect(receiver)`` and
duplicate detection behave as Django's do.
"""

from __future__ import annotations

import asyncio
import sys
import time
import weakref
from asyncio.events import _get_running_loop as _running_loop
from collections.abc import Callable, Hashable, Sequence
from types import MethodType
from typing import Any, TypeVar

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.dispatch import Signal as DjangoSignal
from django.utils.inspect import func_accepts_kwargs

from signalbox import _compat, _refs, conf, observe, outbox, registry
from signalbox._adapters import Adapter
from signalbox._modes import MODES, Mode, mode
from signalbox._travel import Travel
from signalbox.exceptions import ReceiverError
from signalbox.policy import Policy
from signalbox.registry import ReceiverInfo, Run

F = TypeVar("F", bound=Callable[..., Any])
Receiver = Callable[..., Any]
Responses = list[tuple[Receiver, Any]]

_ROUTES_KEPT = 512  # distinct senders remembered per signal before starting over


class _Route:
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
        held = _held_strongly(receivers)
        self.synchronous = tuple(_reference(r, held) for r in synchronous)
        self.asynchronous = tuple(_reference(r, held) for r in asynchronous)

    def resolve(self) -> tuple[list[Receiver], list[Receiver]]:
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


def _held_strongly(receivers: list[Any]) -> frozenset[int]:
    """The ids of the receivers Django holds strongly (``weak=False``)."""
    return frozenset(
        id(entry[1])
        for entry in receivers
        if not isinstance(entry[1], weakref.ReferenceType)
    )


def _reference(receiver: Receiver, held: frozenset[int]) -> _refs.Ref:
    # Held as Django holds it: strongly for weak=False, so remembering a
    # route makes no weak reference Django would not; weakly otherwise, so it
    # never keeps a receiver alive.
    if id(receiver) in held:
        return _refs.strong(receiver)
    return _refs.weak(receiver) or _refs.strong(receiver)


def _sending(robust: bool, doc: str) -> Callable[..., Responses]:
    """``Signal.send`` (or ``send_robust``, when ``robust``): one body for both.

    Made by a function rather than calling a shared method, so a send costs
    no extra call: this is the hot path.
    """

    def send(self: Signal, sender: Any, **named: Any) -> Responses:
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


class Signal(DjangoSignal):
    """A drop-in replacement for :class:`django.dispatch.Signal`.

    Every documented behaviour of Django's class holds unchanged. In addition
    ``connect()`` takes ``run=`` (see :func:`connect`), and each receiver call
    is timed: a receiver slower than ``SIGNALBOX["SLOW_RECEIVER_MS"]`` logs a
    warning, and a synchronous :meth:`send` that holds a running event loop
    longer than ``SIGNALBOX["LOOP_BLOCK_MS"]`` logs which receivers did it.
    """

    def __init__(self, use_caching: bool = False) -> None:
        super().__init__(use_caching=use_caching)
        self.defined_in = _caller_module()
        """The module that created this signal, which names it in logs and rows."""
        self._start()

    def _start(self) -> None:
        """Set up what signalbox adds to Django's state (also for a signal
        whose class was swapped to this one after it was made)."""
        self._background = 0  # background receivers; from two on, sends batch rows
        self._routes: dict[int, _Route] = {}
        self._epoch = object()
        # Weak: the adapter must live exactly as long as its receiver.
        self._adapters: weakref.WeakValueDictionary[
            tuple[Hashable, Hashable], Adapter
        ] = weakref.WeakValueDictionary()

    # -- connecting ---------------------------------------------------------

    def connect(
        self,
        receiver: Receiver,
        sender: object = None,
        weak: bool = True,
        dispatch_uid: Hashable = None,
        *,
        run: Run = "inline",
        **options: Any,
    ) -> None:
        """Connect ``receiver`` as Django does; ``run=`` chooses how it runs.

        See :func:`connect` for the modes and their options.
        """
        connect(
            self,
            receiver,
            sender=sender,
            weak=weak,
            dispatch_uid=dispatch_uid,
            run=run,
            **options,
        )

    def disconnect(
        self,
        receiver: Receiver | None = None,
        sender: object = None,
        dispatch_uid: Hashable = None,
    ) -> bool:
        """Disconnect as Django does; return whether a receiver was disconnected."""
        adapter = None
        if self._adapters or receiver is None:
            key = (dispatch_uid or _compat.make_id(receiver), _compat.make_id(sender))
            adapter = self._adapters.pop(key, None)
        connected = adapter if adapter is not None else receiver
        if connected is None:  # by dispatch_uid alone: what does Django hold?
            connected = _held_for(self, key)
        disconnected = super().disconnect(receiver, sender, dispatch_uid)
        self._forget_routes()
        if disconnected:
            for entry in registry.registry.forget(self, connected):
                if MODES[entry.info.run].batched:
                    self._background = _batched(self)
        if adapter is not None:
            adapter.release()
        return disconnected

    def _connect_directly(
        self,
        receiver: Receiver,
        sender: object,
        weak: bool,
        dispatch_uid: Hashable,
    ) -> None:
        super().connect(receiver, sender, weak, dispatch_uid)
        self._forget_routes()
        if isinstance(receiver, Adapter):
            self._adapters.setdefault(
                (dispatch_uid or _compat.make_id(receiver), _compat.make_id(sender)),
                receiver,
            )

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
            if len(self._routes) >= _ROUTES_KEPT:
                self._routes.clear()
            self._routes[id(sender)] = _Route(
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


def receiver(
    signal: DjangoSignal | Sequence[DjangoSignal],
    *,
    sender: object = None,
    run: Run = "inline",
    dispatch_uid: Hashable = None,
    weak: bool = True,
    **options: Any,
) -> Callable[[F], F]:
    """Decorate a function to connect it to one signal or a list of signals.

    Works with any :class:`django.dispatch.Signal`, Django's own included.
    Takes the arguments of :func:`connect`; returns the function unchanged.
    """

    def decorator(func: F) -> F:
        signals = [signal] if isinstance(signal, DjangoSignal) else list(signal)
        for each in signals:
            connect(
                each,
                func,
                sender=sender,
                weak=weak,
                dispatch_uid=dispatch_uid,
                run=run,
                **options,
            )
        return func

    return decorator


def connect(
    signal: DjangoSignal,
    receiver: Receiver,
    *,
    sender: object = None,
    weak: bool = True,
    dispatch_uid: Hashable = None,
    run: Run = "inline",
    **options: Any,
) -> None:
    """Connect ``receiver`` to ``signal`` (any Django signal) and say how it runs.

    ``run="inline"`` (the default) calls it during ``send()``, exactly as
    Django does. ``run="on_commit"`` calls it once the transaction around the
    ``send()`` commits (at once outside a transaction, never after a
    rollback); the database is the ``using`` argument that model signals
    carry, else the default one; its exceptions are logged, never raised.
    Coroutine receivers work in every mode.

    Deferred receivers may say what of a send reaches them: ``prepare=`` (a
    function called in ``send()`` with the signal's keyword arguments and
    ``sender``, returning the keyword arguments to pass on) and ``exclude=``
    (argument names to drop), in both deferred modes; ``snapshot=False``
    (model instances travel without a copy of their fields) for background
    receivers only.

    ``sender``, ``weak`` and ``dispatch_uid`` mean what they mean to Django.
    Whatever the mode, the receiver lives exactly as long as it would have
    with Django's ``connect``. Raises :class:`~signalbox.ReceiverError` for an
    unknown mode or option, or a receiver the mode cannot run.
    """
    run, row = mode(run)
    info = _describe(signal, receiver, sender, dispatch_uid, run, row, options)
    if row.direct and isinstance(signal, Signal):
        signal._connect_directly(receiver, sender, weak, dispatch_uid)
        uid = dispatch_uid or _compat.make_id(receiver)
        _remember(signal, receiver, receiver, sender, uid, weak, info)
        return
    _check_callable(receiver)
    registry.registry.check(signal, receiver, info)
    if row.keyed:
        weak = False  # rows may name it long after its module let go of it
    # A receiver that says nothing about what travels gets the plain adapter,
    # so it pays nothing for the option.
    adapter_class = row.adapter.fitting(receiver, info)
    adapter = adapter_class(receiver, weak=weak, info=info)
    # Django identifies a connection by (dispatch_uid or id(receiver), sender).
    # Passing the receiver's own id as the uid gives the adapter the identity
    # the receiver would have had: disconnect(receiver) finds it, and a second
    # connect of the same receiver is ignored, as with Django.
    uid = dispatch_uid or _compat.make_id(receiver)
    try:
        if isinstance(signal, Signal):
            signal._connect_directly(adapter, sender, weak, uid)
        else:
            signal.connect(adapter, sender=sender, weak=weak, dispatch_uid=uid)
    except BaseException:
        adapter.release()
        raise
    _remember(signal, adapter, receiver, sender, uid, weak, info)


def _remember(
    signal: DjangoSignal,
    connected: Receiver,
    receiver: Receiver,
    sender: object,
    uid: Hashable,
    weak: bool,
    info: ReceiverInfo,
) -> None:
    """Record a connection in the registry, if Django kept it.

    Django silently ignores a connection whose (dispatch_uid or receiver,
    sender) is taken; such a receiver must be neither listed nor kept.
    """
    if not isinstance(signal, Signal):
        _sweep(signal, receiver)
    if _kept(signal, connected, sender, uid):
        # Held as the signal holds it, when the signal tells us of its
        # disconnect; weakly on another signal, which does not.
        weak = weak or not isinstance(signal, Signal)
        registry.registry.record(signal, connected, receiver, sender, info, weak=weak)
        if isinstance(signal, Signal) and MODES[info.run].batched:
            signal._background = _batched(signal)
    elif isinstance(connected, Adapter):
        connected.release()


def disconnect(
    signal: DjangoSignal,
    receiver: Receiver | None = None,
    sender: object = None,
    dispatch_uid: Hashable = None,
) -> bool:
    """Disconnect from any signal, as ``signal.disconnect()`` does.

    Returns whether a receiver was disconnected. On a signal that is not
    signalbox's, ``signal.disconnect()`` works too, but signalbox only hears
    of it at the receiver's next connect or death; this lets go of the
    adapter at once.
    """
    disconnected = bool(signal.disconnect(receiver, sender, dispatch_uid))
    if not isinstance(signal, Signal):
        _sweep(signal, receiver)
    return disconnected


def _sweep(signal: DjangoSignal, receiver: Receiver | None) -> None:
    """Let go of this receiver's adapters that were disconnected behind our back.

    ``post_save.disconnect(f)`` reaches Django, not signalbox, so the adapter
    it removed would live on as long as ``f``; a connect/disconnect cycle
    would grow memory each time round.
    """
    for connected, sender in registry.registry.connections(signal, receiver):
        if isinstance(sender, str):
            continue  # a model signal's lazy sender: connected once the model loads
        if isinstance(connected, Adapter) and not _holds(signal, connected):
            registry.registry.forget(signal, connected)
            connected.release()


def _kept(
    signal: DjangoSignal, connected: Receiver, sender: object, uid: Hashable
) -> bool:
    """Whether the signal holds ``connected`` under the key ``uid`` and ``sender``.

    Read from Django's own list, from the end (where a connection just made
    is), without asking for live receivers: that would fill a ``use_caching``
    signal's cache and make references Django does not make.
    """
    if isinstance(sender, str):
        return True  # a model signal's lazy sender: connected once the model loads
    held = _held_for(signal, (uid, _compat.make_id(sender)))
    return held is connected or (isinstance(held, MethodType) and held == connected)


def _holds(signal: DjangoSignal, connected: Adapter) -> bool:
    """Whether the signal still holds ``connected``, under whatever key."""
    for entry in list(signal.receivers):
        held = entry[1]
        if isinstance(held, weakref.ReferenceType):
            held = held()
        if held is connected:
            return True
    return False


def _held_for(signal: DjangoSignal, lookup_key: tuple[Hashable, Hashable]) -> Any:
    """The receiver Django holds under ``lookup_key``, or None (gone, or none)."""
    for entry in reversed(signal.receivers):
        if entry[0] == lookup_key:
            held = entry[1]
            return held() if isinstance(held, weakref.ReferenceType) else held
    return None


def _describe(
    signal: DjangoSignal,
    receiver: Receiver,
    sender: object,
    dispatch_uid: Hashable,
    run: Run,
    row: Mode,
    options: dict[str, Any],
) -> ReceiverInfo:
    options = dict(options)
    try:
        travel = Travel.from_options(run, options, row.travel)
    except ReceiverError as error:
        raise ReceiverError(str(error), receiver=receiver, signal=signal) from None
    if options and not row.policy:
        raise ReceiverError(
            f"run={run!r} takes {row.takes()}, but got {sorted(options)}.",
            receiver=receiver,
            signal=signal,
        )
    key = registry.receiver_key(receiver, dispatch_uid)
    if row.keyed:
        registry.require_findable(receiver, run, key)
    policy = Policy.from_options(options) if row.policy else None
    configured = conf.get().engines
    if policy is not None and policy.engine not in configured:
        raise ReceiverError(
            f"engine={policy.engine!r} is not in settings.SIGNALBOX['ENGINES'], "
            f"whose aliases are {sorted(configured)}.",
            receiver=receiver,
            signal=signal,
        )
    return ReceiverInfo(
        key=key,
        run=run,
        sender=registry.describe_sender(sender),
        location=registry.source_location(receiver),
        policy=policy,
        travel=travel,
        keyed=row.keyed,
    )


def _batched(signal: DjangoSignal) -> int:
    """How many receivers of ``signal`` write outbox rows (from two on, a send
    batches them)."""
    return registry.registry.count(
        signal, (run for run, row in MODES.items() if row.batched)
    )


def _check_callable(receiver: Receiver) -> None:
    # Django checks a receiver only when DEBUG is on; an adapter would hide the
    # receiver from that check, so it is made here, on the receiver itself.
    if not callable(receiver):
        raise TypeError("Signal receivers must be callable.")
    if settings.configured and settings.DEBUG and not func_accepts_kwargs(receiver):
        raise ValueError("Signal receivers must accept keyword arguments (**kwargs).")


def _caller_module() -> str | None:
    # The first frame outside the __init__ chain of Signal and its subclasses.
    try:
        frame = sys._getframe(2)
    except ValueError:  # created with no Python caller (a C-level callback)
        return None
    while frame.f_code.co_name == "__init__" and frame.f_back is not None:
        frame = frame.f_back
    return frame.f_globals.get("__name__")
