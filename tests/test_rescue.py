"""Rows taken back from a worker whose lease expired: where they go, and what
they have spent."""

from __future__ import annotations

from datetime import timedelta

import pytest

from signalbox import outbox
from signalbox._states import State
from signalbox.models import Delivery

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
