"""The worker's batching: acknowledgements many at a time, claims a batch ahead
while deliveries run fast, and bookkeeping commits that do not wait for the disk."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, connections
from django.test import override_settings

import signalbox
from signalbox import outbox
from signalbox._states import State
from signalbox.models import Delivery
from signalbox.worker import Outcome, Worker
from signalbox.worker._acks import Acknowledger
from signalbox.worker._pace import MOST_AHEAD, Pace

pytestmark = pytest.mark.django_db(transaction=True)

work = signalbox.Signal()
ran: list[Any] = []


def quick(sender: object, **kwargs: object) -> None:
    ran.append(kwargs.get("n"))


def slow(sender: object, **kwargs: object) -> None:
    time.sleep(0.03)
    ran.append(kwargs.get("n"))


def durability(sender: object, **kwargs: object) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        ran.append(cursor.fetchone()[0])  # type: ignore[index]


@pytest.fixture(autouse=True)
def clean() -> Iterator[None]:
    ran.clear()
    with override_settings(SIGNALBOX={"POLL_SECONDS": 0.02}):
        yield
    for receiver in (quick, slow, durability):
        work.disconnect(receiver)


def rows(count: int, receiver: str = "r") -> list[outbox.Claimed]:
    outbox.enqueue(
        [
            outbox.NewDelivery(signal="s", receiver=receiver, payload={})
            for _ in range(count)
        ],
        using="default",
    )
    return outbox.claim(
        worker="w",
        queues=["default"],
        receivers=[receiver],
        limit=count,
        lease=timedelta(seconds=30),
        using="default",
    )


def test_complete_many_applies_only_under_each_claims_own_token() -> None:
    first, second, third = rows(3)
    # Another worker took the second over (its lease had expired).
    Delivery.objects.filter(id=second.id).update(lease_token=uuid.uuid4())
    applied = outbox.complete_many([first, second, third], using="default")
    assert applied == {first.id, third.id}
    states = dict(Delivery.objects.values_list("id", "state"))
    assert states == {
        first.id: State.COMPLETED,
        second.id: State.EXECUTING,
        third.id: State.COMPLETED,
    }


def test_the_acknowledger_reports_what_applied_and_what_had_lost_its_lease() -> None:
    claimed = rows(3)
    Delivery.objects.filter(id=claimed[0].id).update(lease_token=uuid.uuid4())
    reports: list[tuple[list[int], set[int]]] = []
    acks = Acknowledger(
        "default",
        lambda batch, applied: reports.append(([c.id for c in batch], applied)),
        lambda: None,
    )
    acks.start()
    for each in claimed:
        acks.add(each)
    assert acks.flush(timeout=10)
    acks.close()
    assert not acks.is_alive()
    written = sorted(pk for batch, _ in reports for pk in batch)
    assert written == sorted(c.id for c in claimed)
    assert set().union(*(applied for _, applied in reports)) == {
        claimed[1].id,
        claimed[2].id,
    }


def test_the_acknowledger_writes_again_after_a_failure() -> None:
    [claimed] = rows(1)
    failures = iter([ConnectionError("the database went away")])

    def prepare() -> None:
        error = next(failures, None)
        if error is not None:
            raise error

    done = threading.Event()
    acks = Acknowledger("default", lambda batch, applied: done.set(), prepare)
    acks.start()
    acks.add(claimed)
    assert done.wait(timeout=10)
    acks.close()
    assert Delivery.objects.get().state == State.COMPLETED


def claim_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    asked: list[int] = []
    real = outbox.claim

    def spy(**options: Any) -> list[outbox.Claimed]:
        claimed = real(**options)
        if claimed:
            asked.append(options["limit"])
        return claimed

    monkeypatch.setattr(outbox, "claim", spy)
    return asked


def test_fast_deliveries_are_claimed_many_ahead_of_the_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    signalbox.connect(work, quick, run="background")
    for n in range(60):
        work.send(sender=None, n=n)
    asked = claim_sizes(monkeypatch)
    counts = Worker(burst=True, concurrency=2).run()
    assert counts.by_outcome == {Outcome.COMPLETED: 60}
    assert sorted(ran) == list(range(60))
    # More than the pool's worth ahead (what one claim's round trip is worth
    # to a no-op), never more than the most it claims ahead.
    assert 2 * 2 < max(asked) <= 2 + MOST_AHEAD
    assert Delivery.objects.completed().count() == 60


def hand_overs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the pieces the worker hands to its pool's threads."""
    sizes: list[int] = []
    real = Pace.chunks

    def spy(self: Pace, claimed: list[outbox.Claimed]) -> Any:
        pieces = real(self, claimed)
        sizes.extend(len(piece) for piece in pieces)
        return pieces

    monkeypatch.setattr(Pace, "chunks", spy)
    return sizes


def test_fast_deliveries_are_handed_to_the_pool_several_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    signalbox.connect(work, quick, run="background")
    for n in range(200):
        work.send(sender=None, n=n)
    sizes = hand_overs(monkeypatch)
    counts = Worker(burst=True, concurrency=2).run()
    assert counts.by_outcome == {Outcome.COMPLETED: 200}
    assert sorted(ran) == list(range(200))
    assert sum(sizes) == 200
    assert max(sizes) > 1


def test_slow_deliveries_are_handed_to_the_pool_one_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    signalbox.connect(work, slow, run="background")
    for n in range(8):
        work.send(sender=None, n=n)
    sizes = hand_overs(monkeypatch)
    counts = Worker(burst=True, concurrency=2).run()
    assert counts.by_outcome == {Outcome.COMPLETED: 8}
    assert sizes == [1] * 8


def test_slow_deliveries_are_not_claimed_ahead_of_the_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    signalbox.connect(work, slow, run="background")
    for n in range(12):
        work.send(sender=None, n=n)
    asked = claim_sizes(monkeypatch)
    counts = Worker(burst=True, concurrency=2).run()
    assert counts.by_outcome == {Outcome.COMPLETED: 12}
    assert max(asked) <= 2


def test_max_deliveries_counts_acknowledged_deliveries_exactly() -> None:
    signalbox.connect(work, quick, run="background")
    for n in range(10):
        work.send(sender=None, n=n)
    counts = Worker(concurrency=2, max_deliveries=5).run()
    # run() returns with its threads, and their connections, gone.
    own = ("signalbox-run", "signalbox-loop", "signalbox-heart", "signalbox-listen")
    assert not [t for t in threading.enumerate() if t.name.startswith(own)]
    assert not [t for t in threading.enumerate() if t.name == "signalbox-acks"]
    assert counts.total == 5
    assert Delivery.objects.completed().count() == 5
    assert Delivery.objects.executing().count() == 0  # the rest given back
    assert Delivery.objects.filter(state=State.AVAILABLE, attempt=0).count() == 5


@pytest.mark.postgres
def test_bookkeeping_commits_do_not_wait_for_the_disk_but_receivers_keep_it() -> None:
    signalbox.connect(work, durability, run="background")
    work.send(sender=None)
    worker = Worker(burst=True, concurrency=1)
    worker._bookkeeping()
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone() == ("off",)
    worker.run()
    assert ran == ["on"]  # the receiver's own connection
    with connection.cursor() as cursor:  # left as it was found
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone() == ("on",)


@pytest.mark.postgres
def test_synchronous_acks_keeps_the_bookkeeping_durable() -> None:
    with override_settings(SIGNALBOX={"SYNCHRONOUS_ACKS": True}):
        Worker(burst=True)._bookkeeping()
        with connections["default"].cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone() == ("on",)
