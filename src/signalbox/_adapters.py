"""The objects signalbox connects to a signal in place of a receiver.

An adapter stands in for one receiver on one signal: when the signal calls
it, it runs the receiver the way the receiver asked (timed, or after the
commit). It must live exactly as long as the receiver. The signal holds the
adapter as it would have held the receiver (weakly unless ``weak=False``);
for a weak connection a finalizer on the receiver's owner holds the adapter,
and the adapter holds the receiver only weakly, so the receiver's death
releases the adapter, and the adapter's death lets Django drop the
connection.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import sys
import time
import weakref
from asyncio.events import _get_running_loop as _running_loop
from collections.abc import Callable, Coroutine
from functools import partial
from types import CodeType, FrameType
from typing import Any

from asgiref.sync import async_to_sync, iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import SynchronousOnlyOperation
from django.db import DEFAULT_DB_ALIAS, connections, transaction

from signalbox import _refs, codec, conf, engines, observe, outbox
from signalbox.engines import _handoff
from signalbox.exceptions import CodecError
from signalbox.policy import Policy
from signalbox.registry import ReceiverInfo


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
    """The frame that called the adapter: the first one outside this module."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back  # type: ignore[assignment]
    return frame


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


class OnCommitReceiver(Adapter):
    """Runs the receiver once the surrounding transaction commits.

    The database is the ``using`` argument that model signals carry, else the
    default one. Outside a transaction the receiver runs at once (Django's
    rule for ``on_commit``); after a rollback, including the rollback of the
    savepoint it was sent in, it never runs. Its exception is logged, naming
    the signal, receiver and sender, and never reaches the code that committed.
    """

    @classmethod
    def fitting(cls, receiver: Callable[..., Any], info: ReceiverInfo) -> type[Adapter]:
        """The travelling variant for a receiver that said what reaches it."""
        return TravellingOnCommitReceiver if info.travel is not None else cls

    def __call__(self, signal: object, sender: object, **kwargs: Any) -> None:
        receiver = self._target()
        if receiver is None:
            return
        committed = partial(self._committed, receiver, signal, sender, kwargs)
        self._defer(committed, kwargs.get("using"))

    def _defer(self, committed: Callable[..., None], using: object) -> None:
        """Call ``committed(after_commit=True)`` once the transaction commits,
        or ``committed(after_commit=False)`` now when none is open."""
        alias = _database(using)
        connection = connections[alias]
        if (
            _running_loop() is not None
            or connection.connection is None
            or (not connection.in_atomic_block and connection.get_autocommit())
        ):
            # No transaction is open: Django keeps the database away from a
            # thread whose event loop is running, a connection that is not
            # open holds none, and in autocommit on_commit() would run it at
            # once anyway. Run it now, without opening a connection just to
            # ask (which, on request_finished, would leak one past the request).
            committed(after_commit=False)
            return
        transaction.on_commit(
            partial(committed, after_commit=True), using=alias, robust=True
        )

    def _committed(
        self,
        receiver: Callable[..., Any],
        signal: object,
        sender: object,
        kwargs: dict[str, Any],
        *,
        after_commit: bool,
    ) -> None:
        if iscoroutinefunction(receiver) and _running_loop() is not None:
            _spawn(
                self._await_committed(receiver, signal, sender, kwargs, after_commit)
            )
            return
        try:
            self._run_now(receiver, signal, sender, kwargs, after_commit=after_commit)
        except Exception as error:  # reported here: the commit already happened
            self._failed(signal, sender, error)

    async def _await_committed(
        self,
        receiver: Callable[..., Any],
        signal: object,
        sender: object,
        kwargs: dict[str, Any],
        after_commit: bool,
    ) -> None:
        start = time.perf_counter_ns()
        try:
            await receiver(signal=signal, sender=sender, **kwargs)
        except Exception as error:  # reported here: no caller awaits this task
            self._failed(signal, sender, error)
        observe.call_ended(
            start,
            signal,
            sender,
            self,
            observe.Where.TASK,
            after_commit=after_commit,
            at_once=not after_commit,
        )

    def _failed(self, signal: object, sender: object, error: Exception) -> None:
        observe.deferred_failure(signal, sender, self.info.key, "on_commit", error)


class TravellingOnCommitReceiver(OnCommitReceiver):
    """:class:`OnCommitReceiver` for a receiver that said what reaches it.

    Its ``prepare=`` runs now, in ``send()``; the receiver gets what it
    returned (less ``exclude=``) after the commit. The database is still the
    one the send named, whatever travels.
    """

    def __call__(self, signal: object, sender: object, **kwargs: Any) -> None:
        receiver = self._target()
        if receiver is None:
            return
        travel = self.info.travel
        assert travel is not None
        label = observe.signal_label(signal)
        sent_by, passed = travel.apply(
            sender, kwargs, signal=label, receiver=self.info.key
        )
        committed = partial(self._committed, receiver, signal, sent_by, passed)
        self._defer(committed, kwargs.get("using"))


_tasks: set[asyncio.Task[None]] = set()


def _spawn(coroutine: Coroutine[Any, Any, None]) -> None:
    # The loop keeps only weak references to tasks; hold each until it ends.
    task = asyncio.get_running_loop().create_task(coroutine)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


class BackgroundReceiver(Adapter):
    """Writes an outbox row in the sender's transaction; a worker runs the receiver.

    The arguments are encoded now, so a value that cannot travel raises
    :class:`~signalbox.CodecError` in the caller, before anything is written.
    The row goes to the database named by the ``using`` argument that model
    signals carry, else the default one, inside whatever transaction is open
    there: a rollback discards it, the commit hands it to the workers.
    """

    _snapshot = True  # whether model instances travel with their fields

    @classmethod
    def fitting(cls, receiver: Callable[..., Any], info: ReceiverInfo) -> type[Adapter]:
        """The travelling variant for a receiver that said what travels."""
        return TravellingBackgroundReceiver if info.travel is not None else cls

    def __call__(self, signal: object, sender: object, **kwargs: Any) -> None:
        if self._target() is None:
            return
        if _running_loop() is not None:
            raise SynchronousOnlyOperation(
                f"{self.info.key} (run='background') writes an outbox row, which "
                f"Django does not allow on a running event loop: from async "
                f"code, send with `await signal.asend(...)`."
            )
        rows = [self.delivery(signal, sender, kwargs)]
        using = _database(kwargs.get("using"))
        if engines.get(rows[0].engine).embedded:
            outbox.enqueue(rows, using=using)
        else:  # its engine is handed the row once the transaction commits
            handover = _handoff.after_commit(rows, using)
            outbox.enqueue(rows, using=using, then=handover, wake=False)

    def delivery(
        self, signal: object, sender: object, kwargs: dict[str, Any]
    ) -> outbox.NewDelivery:
        """The outbox row for one send to this receiver (not yet written)."""
        policy = self.info.policy or Policy()
        name = observe.signal_label(signal)
        key = self.info.key
        try:
            payload = {
                "sender": codec.encode_sender(sender, signal=name, receiver=key),
                "kwargs": codec.encode(
                    kwargs, signal=name, receiver=key, snapshot=self._snapshot
                ),
            }
        except CodecError as error:
            raise _advised(error, self.info) from error.__cause__
        return outbox.NewDelivery(
            signal=name,
            receiver=self.info.key,
            payload=payload,
            engine=policy.engine,
            queue=policy.queue,
            priority=policy.priority,
            max_attempts=policy.max_attempts,
            delay=policy.delay,
        )


class TravellingBackgroundReceiver(BackgroundReceiver):
    """:class:`BackgroundReceiver` for a receiver that said what travels.

    Its ``prepare=`` runs in ``send()``, in the sender's thread, before
    anything is encoded; what it returns, less ``exclude=``, is encoded (with
    or without model snapshots, as ``snapshot=`` says). The row still goes to
    the database the send named.
    """

    def __init__(
        self, receiver: Callable[..., Any], *, weak: bool, info: ReceiverInfo
    ) -> None:
        super().__init__(receiver, weak=weak, info=info)
        assert info.travel is not None  # dispatch builds this class only with one
        self._travel = info.travel
        self._snapshot = info.travel.snapshot

    def delivery(
        self, signal: object, sender: object, kwargs: dict[str, Any]
    ) -> outbox.NewDelivery:
        """The outbox row for one send, carrying what the receiver said travels."""
        sent_by, passed = self._travel.apply(
            sender, kwargs, signal=observe.signal_label(signal), receiver=self.info.key
        )
        return super().delivery(signal, sent_by, passed)


def _advised(error: CodecError, info: ReceiverInfo) -> CodecError:
    """``error``, saying how the receiver can keep the argument from travelling."""
    travel = info.travel
    if travel is not None and travel.prepare is not None:
        advice = "Its prepare= returned it; return what the receiver needs instead."
    else:
        name = re.split(r"[.\[]", error.argument or "", maxsplit=1)[0] or "sender"
        advice = (
            f"If the receiver does not need it, connect it with "
            f"exclude=[{name!r}]; to send what it needs instead (an id, a few "
            f"strings), give it prepare= (docs/background.md, 'What travels')."
        )
    return CodecError(
        f"{error} {advice}",
        signal=error.signal,
        receiver=error.receiver,
        argument=error.argument,
    )


def _database(using: object) -> str:
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
