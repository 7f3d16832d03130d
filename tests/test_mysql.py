"""What only MariaDB and MySQL can show: their locks, their plans, their limits.

These run in the ``SIGNALBOX_TEST_DB=mysql`` run only, against the real
server; the rest of the suite runs there too.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction

import signalbox
from signalbox import outbox
from signalbox._states import State
from signalbox.models import Delivery

pytestmark = [pytest.mark.mysql, pytest.mark.django_db(transaction=True)]

LEASE = timedelta(seconds=30)


def enqueue(count: int, **fields: Any) -> list[int]:
    rows = [
        outbox.NewDelivery(signal="s", receiver="k", payload={}, **fields)
        for _ in range(count)
    ]
    return outbox.enqueue(rows, using="default", ids=True) or []


def claim(limit: int, worker: str = "w") -> list[outbox.Claimed]:
    return outbox.claim(
        worker=worker,
        queues=["default"],
        receivers=["k"],
        limit=limit,
        lease=LEASE,
        using="default",
    )


def status(name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SHOW SESSION STATUS LIKE %s", [name])
        return int(cursor.fetchone()[1])


@pytest.fixture
def second_connection() -> Iterator[Any]:
    """A connection of its own to the test database, outside Django's."""
    import MySQLdb

    raw = MySQLdb.connect(**connection.get_connection_params())
    raw.autocommit(False)
    with raw.cursor() as cursor:
        cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        cursor.execute("SET SESSION innodb_lock_wait_timeout = 5")
    yield raw
    raw.rollback()
    raw.close()


def test_the_suite_runs_read_committed_in_utc() -> None:
    # What docs/background.md recommends, checked where it is configured.
    with connection.cursor() as cursor:
        cursor.execute("SELECT @@tx_isolation, @@session.time_zone")
        assert cursor.fetchone() == ("READ-COMMITTED", "+00:00")


def test_a_claim_walks_the_rows_it_may_take_not_the_finished_history() -> None:
    # MySQL has no partial indexes: Django built "signalbox_delivery_due"
    # over every row, and a claim walked past each finished row still kept
    # (they all sort first), locking as it went: 300 rows read here, and a
    # claim's cost grew with the history until pruning.
    finished = enqueue(300)
    Delivery.objects.filter(id__in=finished).update(state=State.COMPLETED)
    due = enqueue(5)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE TABLE signalbox_delivery")
        cursor.fetchall()
    before = status("Handler_read_next")
    claimed = claim(5)
    read = status("Handler_read_next") - before
    assert [each.id for each in claimed] == due
    assert read < 50, f"the claim read {read} index entries for 5 rows"


def test_a_table_made_without_migrations_still_claims(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # pytest-django's --nomigrations builds the table from the model, which
    # does not know migration 0004's index: naming it in the claim failed.
    from signalbox.outbox import _claim_mysql

    monkeypatch.setattr(_claim_mysql, "_WAITING_INDEXED", {})
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX signalbox_delivery_waiting ON signalbox_delivery")
    try:
        ids = enqueue(3)
        assert [each.id for each in claim(2)] == ids[:2]
        assert [each.id for each in claim(2)] == ids[2:]
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE INDEX signalbox_delivery_waiting ON signalbox_delivery "
                "(state, engine, queue, priority, scheduled_at, id)"
            )
    monkeypatch.setattr(_claim_mysql, "_WAITING_INDEXED", {})
    enqueue(1)
    assert len(claim(2)) == 1
    assert list(_claim_mysql._WAITING_INDEXED.values()) == [True]


def test_a_claim_keeps_the_order_across_states_and_priorities() -> None:
    late = enqueue(1, priority=0)
    urgent = enqueue(1, priority=-5)
    retried = enqueue(1, priority=0)
    Delivery.objects.filter(id__in=retried).update(state=State.RETRYABLE)
    planned = enqueue(1, priority=-5)
    Delivery.objects.filter(id__in=planned).update(state=State.SCHEDULED)
    future = enqueue(1, priority=-9, delay=timedelta(hours=1))
    taken = [each.id for each in claim(3)]
    assert taken == sorted(urgent + planned + late)
    assert [each.id for each in claim(5)] == retried
    assert future[0] not in taken


def test_a_claim_skips_rows_another_transaction_holds_without_waiting(
    second_connection: Any,
) -> None:
    ids = enqueue(4)
    with second_connection.cursor() as cursor:  # holds the first two
        # By the primary key: on a table this small the optimizer would
        # rather scan a covering index, and lock every row it passes.
        cursor.execute(
            "SELECT id FROM signalbox_delivery FORCE INDEX (PRIMARY) "
            "WHERE id IN (%s, %s) FOR UPDATE",
            ids[:2],
        )
    assert [each.id for each in claim(10)] == ids[2:]  # at once, not in 5 s
    second_connection.rollback()
    assert [each.id for each in claim(10, worker="x")] == ids[:2]
    assert Delivery.objects.filter(attempt=1).count() == 4


def test_a_claimed_row_is_never_claimed_again_while_its_claim_commits(
    second_connection: Any,
) -> None:
    # Another worker's claim is mid-transaction: it has taken the rows
    # (state executing, not yet committed). This claim sees them locked and
    # skips them, and once that one commits they are no longer due.
    ids = enqueue(3)
    with second_connection.cursor() as cursor:
        cursor.execute(
            "UPDATE signalbox_delivery SET state = 'executing', attempt = 1 "
            "WHERE id IN (%s, %s, %s)",
            ids,
        )
    assert claim(10) == []
    second_connection.commit()
    assert claim(10) == []
    assert set(Delivery.objects.values_list("attempt", flat=True)) == {1}


def test_a_row_claimed_by_id_while_another_claim_commits_is_not_taken_twice(
    second_connection: Any,
) -> None:
    # An engine's task claims its row by id (claim_one). A duplicate message
    # whose claim meets the row locked by the first claim waits for it, then
    # finds the row executing, and takes nothing.
    import threading

    [row] = enqueue(1)
    with second_connection.cursor() as cursor:
        cursor.execute(
            "UPDATE signalbox_delivery SET state = 'executing', attempt = 1 "
            "WHERE id = %s",
            [row],
        )
    taken: list[object] = []

    def duplicate() -> None:
        try:
            taken.append(
                outbox.claim_one(
                    row,
                    engine="default",
                    worker="dup",
                    receivers=["k"],
                    lease=LEASE,
                    using="default",
                )
            )
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=duplicate)
    thread.start()
    thread.join(timeout=1)
    assert thread.is_alive()  # waiting on the first claim's lock
    second_connection.commit()
    thread.join(timeout=10)
    assert taken == [None]
    assert Delivery.objects.values_list("attempt", "leased_by").get() == (1, "")


def test_leases_come_from_the_databases_clock_to_the_microsecond() -> None:
    enqueue(1)
    lease = timedelta(seconds=7, microseconds=654_321)
    claimed = outbox.claim(
        worker="w",
        queues=["default"],
        receivers=["k"],
        limit=1,
        lease=lease,
        using="default",
    )
    assert len(claimed) == 1
    row = Delivery.objects.get()
    assert row.attempted_at is not None
    assert row.lease_expires_at is not None
    assert row.lease_expires_at - row.attempted_at == lease
    assert row.attempted_at.microsecond or row.enqueued_at.microsecond  # DATETIME(6)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT TIMESTAMPDIFF(MICROSECOND, NOW(6), lease_expires_at) "
            "FROM signalbox_delivery"
        )
        left = cursor.fetchone()[0]
    assert 0 < left <= lease / timedelta(microseconds=1)


placed = signalbox.Signal()


def placed_in_background(sender: object, **kwargs: object) -> None:
    """Never run: the send below fails."""


def test_mariadb_refuses_a_payload_nested_32_deep_at_the_send() -> None:
    # MariaDB's JSON is text under CHECK (json_valid(...)), and json_valid()
    # refuses 32 levels of nesting or more (MySQL's JSON type allows 100):
    # such a send fails in the sender's transaction, and nothing is written.
    # So no row can be too deep for the worker's parser there (the test in
    # test_regressions.py that stores one runs on SQLite and PostgreSQL).
    if "MariaDB" not in connection.mysql_server_info:  # type: ignore[attr-defined]
        pytest.skip("MySQL's JSON type nests 100 deep")
    signalbox.connect(placed, placed_in_background, run="background")
    # The payload holds the arguments three objects deep: {"sender": ...,
    # "kwargs": {"format": 1, "values": {"deep": ...}}}.
    deep: list[Any] = []
    for _ in range(28):  # 29 lists: 32 levels
        deep = [deep]
    try:
        with pytest.raises(IntegrityError), transaction.atomic():
            placed.send(sender=None, deep=deep)
        assert not Delivery.objects.exists()
        placed.send(sender=None, deep=deep[0])  # 31 levels: stored
        assert Delivery.objects.count() == 1
    finally:
        placed.disconnect(placed_in_background)
