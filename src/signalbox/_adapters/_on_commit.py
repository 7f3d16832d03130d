"""Receivers that run once the transaction around the send commits."""

from __future__ import annotations

import asyncio
import time
from asyncio.events import _get_running_loop as _running_loop
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.db import connections, transaction

from signalbox import observe
from signalbox._adapters._base import Adapter, database
from signalbox.registry import ReceiverInfo


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
        alias = database(using)
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
