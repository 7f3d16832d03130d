"""``drain()``: running a test's pending deliveries here, as a worker would.

Each delivery is claimed under a lease, its arguments decoded from the JSON
its send encoded, its receiver called and its outcome recorded by
:func:`signalbox.worker.run_delivery`, the runner every worker and engine
uses: a receiver gets exactly what a worker would give it. Everything
happens on the test's own connection, so inside a ``TestCase`` (whose
transaction never commits) the test's uncommitted rows are found, and each
receiver runs in a savepoint, as ``signalbox worker --burst`` does there.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from django.db import DEFAULT_DB_ALIAS, connections, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Q

from signalbox import conf, outbox, registry
from signalbox._adapters import OnCommitReceiver
from signalbox.exceptions import Retry, SignalboxError
from signalbox.policy import Policy
from signalbox.registry import Found
from signalbox.testing._hooks import hearing_failures, waiting_on_commit
from signalbox.worker import Outcome, run_delivery
from signalbox.worker._run import call_receiver

Until = Literal["due", "empty"]
"""When :func:`drain` stops: nothing due (``"due"``), or nothing waiting
(``"empty"``: retries and delayed rows run without waiting)."""

WORKER: Final = "signalbox.testing"
"""The worker name a drained delivery's row shows as ``leased_by``."""

MOST_RUNS: Final = 1000
"""More runs than this in one :func:`drain` means it would never end."""


@dataclass(frozen=True, slots=True)
class Ran:
    """One run of one delivery by :func:`drain`, and how it ended."""

    id: int
    """The delivery's id (its outbox row)."""
    receiver: str
    """The receiver's key."""
    signal: str
    """The signal's dotted name."""
    attempt: int
    """Which attempt this was, from 1."""
    outcome: Outcome
    """``COMPLETED``, ``RETRYING`` or ``DEAD``."""
    error: BaseException | None = None
    """What the receiver raised, if it did."""
    reason: str = ""
    """Why the row is dead: ``max_attempts``, ``not_retryable``,
    ``decode_error`` (its arguments could not be read back) or
    ``unknown_receiver``."""


class NotCommitted(SignalboxError, RuntimeError):
    """:func:`drain` was called where what it would run is not committed yet."""


class DeliveryFailed(SignalboxError, AssertionError):
    """A drained delivery died without its receiver raising (its arguments
    could not be decoded, or no receiver has its key)."""

    def __init__(self, message: str, ran: Ran) -> None:
        super().__init__(message)
        self.ran = ran


def drain(
    queue: str | None = None,
    using: str | None = None,
    *,
    until: Until = "due",
    now: datetime | timedelta | None = None,
    raise_errors: bool = True,
) -> list[Ran]:
    """Run the pending on-commit and background deliveries here; return what ran.

    First, inside a ``TestCase`` (whose transaction never commits), the
    on-commit receivers still waiting for that commit run, as a commit would
    run them. Then every due background delivery of ``queue`` (every queue
    when None) on ``using`` (when None: the default database, and each other
    one the test may use and has a connection open to) is run through the
    real codec and runner, one at a time, in this thread: rows written for
    other engines too, and retries that fall due meanwhile (a zero backoff).
    ``until="empty"`` also runs rows whose retry or ``delay=`` lies in the
    future, without waiting, until none waits; ``now`` (a datetime, or a
    timedelta from the database's now) first makes due the rows scheduled
    at or before it, and what they schedule in turn waits as usual. The database's clock
    decides what is due, and freezegun or time-machine cannot move it: pass
    ``now=`` instead (a timedelta, which no frozen clock shifts).

    With ``raise_errors`` (the default) the first receiver exception is
    re-raised as it was raised (its row is already retryable or dead, as a
    worker leaves it), and a delivery that dies without one (arguments that
    cannot be decoded, an unknown key) raises :class:`DeliveryFailed`.
    ``raise_errors=False`` returns every run with its outcome and error
    instead. Raises :class:`NotCommitted` inside a ``transaction.atomic()``
    block of the test's own: what it sent is not committed yet, and no
    worker could run it.
    """
    if until not in ("due", "empty"):
        raise ValueError(f"until={until!r}: use 'due' or 'empty'.")
    aliases = [using] if using is not None else _databases()
    ran: list[Ran] = []
    for alias in aliases:
        _require_committed(alias)
        run_on_commit(alias, raise_errors=raise_errors)
        ran += _deliveries(alias, queue, until, now, raise_errors)
    return ran


def run_one(delivery_id: int, *, using: str, into: list[Ran]) -> None:
    """Run the delivery ``delivery_id`` now, as :func:`drain` would, append
    what ran to ``into``, then raise its receiver's error if it raised.
    Nothing runs when the row is not waiting (already run, say)."""
    owner = outbox.due_owner(delivery_id, using=using)
    if owner is None:
        outbox.bring_forward(Q(id=delivery_id), using=using)
        owner = outbox.due_owner(delivery_id, using=using)
    if owner is None:
        return
    engine, key = owner
    receivers = registry.registry.background()
    claimed = outbox.claim_one(
        delivery_id,
        engine=engine,
        worker=WORKER,
        receivers=[key],
        lease=conf.get().lease,
        using=using,
    )
    if claimed is not None:
        _run(claimed, receivers, using, raise_errors=True, into=into)


def run_on_commit(
    alias: str, *, before: Collection[object] = (), raise_errors: bool
) -> int:
    """Inside a ``TestCase``, run the on-commit receivers waiting on ``alias``
    (but those in ``before``), as the commit would; return how many ran.

    Only signalbox's on-commit receivers run: other ``on_commit()`` callbacks
    stay where they are (Django's ``captureOnCommitCallbacks`` runs those).
    Those an on-commit receiver's own sends add run too. Outside a
    ``TestCase`` a real commit runs them, and this does nothing.
    """
    connection = connections[alias]
    if not connection.in_atomic_block or not _held_by_test_case(connection):
        return 0
    skip = {id(callback) for callback in before}
    count = 0
    while True:
        pending = waiting_on_commit(connection)
        mine = [
            index
            for index, (_, callback, _) in enumerate(pending)
            if id(callback) not in skip and _is_on_commit_receiver(callback)
        ]
        if not mine:
            return count
        callbacks = [pending[index][1] for index in mine]
        for index in reversed(mine):
            del pending[index]
        for callback in callbacks:
            count += 1
            with hearing_failures() as heard:
                callback()
            if heard and raise_errors:
                error = heard[0]
                error.add_note(
                    "signalbox.testing: an on-commit receiver raised this "
                    "(signalbox also logged it, as it does after a real commit)."
                )
                raise error


def pending_on_commit(alias: str) -> list[object]:
    """The on-commit callbacks waiting on ``alias`` now (for ``before=``)."""
    return [callback for _, callback, _ in waiting_on_commit(connections[alias])]


def _is_on_commit_receiver(callback: object) -> bool:
    if getattr(callback, "signalbox_on_commit", False):
        return True
    bound = callback.func if isinstance(callback, functools.partial) else None
    return isinstance(getattr(bound, "__self__", None), OnCommitReceiver)


def _held_by_test_case(connection: BaseDatabaseWrapper) -> bool:
    """Whether every open atomic block is a test case's (none is the test's own)."""
    blocks: list[Any] = connection.atomic_blocks
    return all(block._from_testcase for block in blocks)


def _require_committed(alias: str) -> None:
    connection = connections[alias]
    if connection.in_atomic_block and not _held_by_test_case(connection):
        raise NotCommitted(
            f"drain() was called inside a transaction.atomic() block on database "
            f"{alias!r}: what was sent in it is not committed yet, so no worker "
            f"could run it. Call drain() after the block."
        )


def _databases() -> list[str]:
    """The databases that may hold this test's rows: those that hold the
    outbox, that the test may query, and that this thread has a connection
    open to (a send opens one), the default one always."""
    from django.test.testcases import _DatabaseFailure

    from signalbox.models import Delivery

    return [
        alias
        for alias in connections
        if router.allow_migrate_model(alias, Delivery)
        and not isinstance(connections[alias].cursor, _DatabaseFailure)
        and (alias == DEFAULT_DB_ALIAS or connections[alias].connection is not None)
    ]


def _deliveries(
    alias: str,
    queue: str | None,
    until: Until,
    now: datetime | timedelta | None,
    raise_errors: bool,
) -> list[Ran]:
    receivers = registry.registry.background()
    if not receivers:
        return []
    keys = list(receivers)
    queues = [queue] if queue is not None else _queues(receivers)
    settings = conf.get()
    engines = list(settings.engines)
    scope = Q(queue__in=queues, receiver__in=keys, engine__in=engines)
    if now is not None:
        # A timedelta counts from the database's clock, as the rows' times do.
        horizon = outbox.after(now) if isinstance(now, timedelta) else now
        outbox.bring_forward(scope, until=horizon, using=alias)
    ran: list[Ran] = []
    while True:
        if until == "empty":
            outbox.bring_forward(scope, using=alias)
        claimed = outbox.claim(
            worker=WORKER,
            queues=queues,
            receivers=keys,
            limit=1,
            lease=settings.lease,
            using=alias,
            engines=engines,
        )
        if not claimed:
            return ran
        if len(ran) >= MOST_RUNS:
            raise SignalboxError(
                f"drain() ran {MOST_RUNS} deliveries and more are due: a "
                f"receiver that keeps raising Retry, or one whose every run "
                f"sends again? The last ran {ran[-1].receiver}."
            )
        _run(claimed[0], receivers, alias, raise_errors, into=ran)


def _queues(receivers: dict[str, list[Found]]) -> list[str]:
    return sorted(
        {
            (found.info.policy or Policy()).queue
            for each in receivers.values()
            for found in each
        }
    )


def _run(
    claimed: outbox.Claimed,
    receivers: dict[str, list[Found]],
    alias: str,
    raise_errors: bool,
    *,
    into: list[Ran],
) -> None:
    caught: list[Exception] = []
    call = _calling(alias, caught)
    outcome = run_delivery(claimed, receivers, using=alias, call=call)
    error = caught[0] if caught else None
    reason, text = "", ""
    if outcome is Outcome.DEAD:
        reason, text = _why_dead(claimed.id, alias)
    ran = Ran(
        id=claimed.id,
        receiver=claimed.receiver,
        signal=claimed.signal,
        attempt=claimed.attempt,
        outcome=outcome,
        error=error,
        reason=reason,
    )
    into.append(ran)
    if raise_errors:
        _raise_for(ran, claimed, text)


def _calling(alias: str, caught: list[Exception]) -> Callable[..., Any]:
    """The ``call`` of run_delivery: in a savepoint inside a transaction
    (so a receiver's database error leaves the test's usable), noting errors."""

    def call(
        receiver: Callable[..., Any], kwargs: dict[str, Any], timeout: timedelta | None
    ) -> Any:
        try:
            if connections[alias].in_atomic_block:
                with transaction.atomic(using=alias):
                    return call_receiver(receiver, kwargs, timeout)
            return call_receiver(receiver, kwargs, timeout)
        except Retry:
            raise
        except Exception as error:
            caught.append(error)
            raise

    return call


def _why_dead(delivery_id: int, alias: str) -> tuple[str, str]:
    from signalbox.models import Delivery

    found = (
        Delivery.objects.using(alias)
        .filter(id=delivery_id)
        .values_list("reason", "error")
        .first()
    )
    return found if found is not None else ("", "")


def _raise_for(ran: Ran, claimed: outbox.Claimed, text: str) -> None:
    where = (
        f"delivery {ran.id} of {ran.signal} to {ran.receiver}, attempt "
        f"{ran.attempt} of {claimed.max_attempts}"
    )
    if ran.error is not None:
        now = "dead" if ran.outcome is Outcome.DEAD else "retryable"
        ran.error.add_note(
            f"signalbox.testing.drain(): {where}, raised this; its row is now "
            f"{now}. Pass raise_errors=False to collect outcomes instead."
        )
        raise ran.error
    if ran.outcome is Outcome.DEAD:
        raise DeliveryFailed(
            f"drain(): {where}, is dead ({ran.reason}) without its receiver "
            f"running: {text}",
            ran,
        )
