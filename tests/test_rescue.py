"""Rows taken back from a worker whose lease expired: where they go, and what
they have spent."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection

from signalbox import outbox
from signalbox._states import State
from signalbox.models import Delivery, WorkerRecord

pytestmark = pytest.mark.django_db(transaction=True)

LEASE = timedelta(seconds=30)


def enqueue(*, due_ago: float, max_attempts: int = 20) -> int:
    [pk] = outbox.enqueue(
        [
            outbox.NewDelivery(
                signal="s", receiver="k", payload={}, max_attempts=max_attempts
            )
        ],
        using="default",
        ids=True,
    )
    Delivery.objects.filter(pk=pk).update(
        scheduled_at=outbox.ago(timedelta(seconds=due_ago))
    )
    return pk


def claim(limit: int = 1) -> list[outbox.Claimed]:
    return outbox.claim(
        worker="w",
        queues=["default"],
        receivers=["k"],
        limit=limit,
        lease=LEASE,
        using="default",
    )


def expire_leases() -> None:
    Delivery.objects.executing().update(
        lease_expires_at=outbox.ago(timedelta(seconds=1))
    )


def test_a_rescued_row_keeps_its_place_ahead_of_rows_due_after_it() -> None:
    # A crashed worker's delivery was due before the backlog sent since; it
    # used to be due again from the rescue on, and so ran behind all of it.
    crashed = enqueue(due_ago=60)
    [held] = claim()
    assert held.id == crashed
    backlog = [enqueue(due_ago=30 - n) for n in range(3)]
    expire_leases()
    assert outbox.rescue(using="default") == 1
    # One at a time: a claim returns its batch by id, not in the order taken.
    assert [c.id for _ in range(4) for c in claim()] == [crashed, *backlog]


def test_a_rescued_row_keeps_its_due_time_and_its_spent_attempt() -> None:
    pk = enqueue(due_ago=60)
    due = Delivery.objects.get(pk=pk).scheduled_at
    claim()
    expire_leases()
    assert outbox.rescue(using="default") == 1
    row = Delivery.objects.get(pk=pk)
    assert (row.state, row.reason, row.attempt) == (
        State.RETRYABLE,
        "lease_expired",
        1,
    )
    assert row.scheduled_at == due  # due already: never later, never earlier
    assert row.lease_token is None
    [again] = claim()
    assert again.attempt == 2


def test_a_row_whose_worker_dies_on_every_attempt_ends_dead() -> None:
    pk = enqueue(due_ago=60, max_attempts=3)
    for _ in range(3):
        assert [c.id for c in claim()] == [pk]
        expire_leases()
        assert outbox.rescue(using="default") == 1
    row = Delivery.objects.get(pk=pk)
    assert (row.state, row.reason, row.attempt) == (State.DEAD, "lease_expired", 3)
    assert claim() == []


def test_a_row_given_back_unstarted_at_shutdown_is_not_interrupted() -> None:
    enqueue(due_ago=1)
    assert outbox.release(claim(), using="default") == 1
    row = Delivery.objects.get()
    assert (row.state, row.attempt, row.interrupted) == (State.AVAILABLE, 0, 0)


def test_a_row_given_back_running_at_shutdown_counts_an_interruption() -> None:
    enqueue(due_ago=1)
    assert outbox.release(claim(), using="default", interrupted=True) == 1
    [again] = claim()
    assert (again.attempt, again.interrupted) == (1, 1)


def test_a_rescued_row_counts_an_interruption() -> None:
    enqueue(due_ago=1)
    claim()
    expire_leases()
    assert outbox.rescue(using="default") == 1
    [again] = claim()
    assert (again.attempt, again.interrupted) == (2, 1)


# -- a worker whose process is gone (PostgreSQL's advisory locks) -------------


@pytest.fixture
def session() -> Iterator[Any]:
    """A connection of its own, as a worker's LISTEN connection is."""
    import psycopg

    params = connection.get_connection_params()
    with psycopg.connect(**params, autocommit=True) as own:
        yield own


@pytest.mark.postgres
def test_the_rows_of_a_worker_whose_session_ended_are_taken_back_at_once(
    session: Any,
) -> None:
    key = outbox.liveness_key("w")
    assert outbox.hold_liveness(session, key)
    outbox.heartbeat("w", ["default"], ["k"], using="default", liveness_key=key)
    enqueue(due_ago=1)
    [held] = claim()
    assert outbox.rescue_gone(using="default") == 0  # alive: its lock is held
    session.close()  # as a kill -9 closes it
    # The server ends the session (and frees its locks) a moment later.
    deadline = time.monotonic() + 5
    while not (taken := outbox.rescue_gone(using="default")):
        assert time.monotonic() < deadline, "the lock was never freed"
        time.sleep(0.01)
    assert taken == 1
    row = Delivery.objects.get()
    assert (row.state, row.reason, row.lease_token) == (
        State.RETRYABLE,
        "lease_expired",
        None,
    )
    assert row.interrupted == 1
    assert not outbox.complete(held, using="default")  # fenced off
    assert not WorkerRecord.objects.filter(name="w").exists()
    assert outbox.rescue_gone(using="default") == 0  # and its lock let go
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
        assert cursor.fetchone()[0] == 0


@pytest.mark.postgres
def test_a_worker_that_holds_no_liveness_lock_is_left_to_its_leases() -> None:
    # A burst worker, an older version, an engine's task: no key recorded.
    outbox.heartbeat("w", ["default"], ["k"], using="default")
    enqueue(due_ago=1)
    claim()
    assert outbox.rescue_gone(using="default") == 0
    assert Delivery.objects.get().state == State.EXECUTING


def test_no_worker_is_judged_gone_but_on_postgresql() -> None:
    outbox.heartbeat("w", ["default"], ["k"], using="default", liveness_key=1)
    enqueue(due_ago=1)
    claim()
    if connection.vendor != "postgresql":
        assert outbox.rescue_gone(using="default") == 0
        assert Delivery.objects.get().state == State.EXECUTING
