"""A transition the database picks as a deadlock's victim runs again.

On MariaDB a worker's next claim (a locking walk of the waiting index) and
the outcome of its last delivery (an UPDATE by primary key) take their locks
in opposite orders, and InnoDB rolls one back with error 1213; CI met it once
as "could not record its outcome". A real deadlock cannot be produced on
cue, so a trigger on the outbox table refuses a chosen number of outcome
writes with the very error each server gives a deadlock's victim (1213 on
MariaDB, SQLSTATE 40P01 on PostgreSQL), through the real driver.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import OperationalError, connection, transaction

from signalbox import _outage, outbox, registry
from signalbox._states import State
from signalbox.models import Delivery
from signalbox.outbox._conflicts import ATTEMPTS, is_conflict
from signalbox.worker import Outcome, Worker

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.mysql,
    pytest.mark.django_db(transaction=True),
]

# The outcome writes: what a deadlock hit in CI.
_OUTCOMES = "('completed', 'dead', 'retryable')"

# What each server says, by vendor: a deadlock's victim, and a lock wait that
# timed out (an error of the same class that running again would not help).
_ERRORS = {
    "deadlock": {"postgresql": ("40P01", 0), "mysql": ("40001", 1213)},
    "lock timeout": {"postgresql": ("55P03", 0), "mysql": ("HY000", 1205)},
}

_POSTGRESQL = [
    "CREATE SEQUENCE signalbox_test_tries",
    """
    CREATE FUNCTION signalbox_test_conflict() RETURNS trigger AS $$
    BEGIN
        IF NEW.state IN {outcomes} THEN
            IF nextval('signalbox_test_tries') <= {refusals} THEN
                RAISE EXCEPTION 'staged refusal' USING ERRCODE = '{sqlstate}';
            END IF;
        END IF;
        RETURN NEW;
    END $$ LANGUAGE plpgsql
    """,
    """
    CREATE TRIGGER signalbox_test_conflict BEFORE UPDATE ON signalbox_delivery
    FOR EACH ROW EXECUTE FUNCTION signalbox_test_conflict()
    """,
]
_POSTGRESQL_TRIES = (
    "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM signalbox_test_tries"
)
_POSTGRESQL_DROP = [
    "DROP TRIGGER IF EXISTS signalbox_test_conflict ON signalbox_delivery",
    "DROP FUNCTION IF EXISTS signalbox_test_conflict()",
    "DROP SEQUENCE IF EXISTS signalbox_test_tries",
]

# MyISAM keeps the counts through the rollback of the refused statement, and
# is seen by the worker's own connections.
_MYSQL = [
    "CREATE TABLE signalbox_test_tries (tries INT, refusals INT) ENGINE=MyISAM",
    "INSERT INTO signalbox_test_tries VALUES (0, {refusals})",
    """
    CREATE TRIGGER signalbox_test_conflict BEFORE UPDATE ON signalbox_delivery
    FOR EACH ROW BEGIN
        IF NEW.state IN {outcomes} THEN
            UPDATE signalbox_test_tries SET tries = tries + 1;
            IF (SELECT tries FROM signalbox_test_tries) <=
               (SELECT refusals FROM signalbox_test_tries) THEN
                SIGNAL SQLSTATE '{sqlstate}' SET MYSQL_ERRNO = {errno},
                    MESSAGE_TEXT = 'staged refusal';
            END IF;
        END IF;
    END
    """,
]
_MYSQL_TRIES = "SELECT tries FROM signalbox_test_tries"
_MYSQL_DROP = [
    "DROP TRIGGER IF EXISTS signalbox_test_conflict",
    "DROP TABLE IF EXISTS signalbox_test_tries",
]


@pytest.fixture
def refuse() -> Iterator[Callable[..., Callable[[], int]]]:
    """``refuse(n, error="deadlock")``: the next ``n`` outcome writes fail
    with ``error`` (as a deadlock's victim unless told); returns a function
    that says how many outcome writes were tried."""
    postgres = connection.vendor == "postgresql"
    drop = _POSTGRESQL_DROP if postgres else _MYSQL_DROP

    def stage(refusals: int, error: str = "deadlock") -> Callable[[], int]:
        create = _POSTGRESQL if postgres else _MYSQL
        sqlstate, errno = _ERRORS[error][connection.vendor]
        with connection.cursor() as cursor:
            for sql in drop:
                cursor.execute(sql)
            for sql in create:
                sql = sql.replace("{sqlstate}", sqlstate).replace("{errno}", str(errno))
                cursor.execute(
                    sql.replace("{outcomes}", _OUTCOMES).replace(
                        "{refusals}", str(refusals)
                    )
                )

        def tries() -> int:
            with connection.cursor() as cursor:
                cursor.execute(_POSTGRESQL_TRIES if postgres else _MYSQL_TRIES)
                return int(cursor.fetchone()[0])

        return tries

    yield stage
    with connection.cursor() as cursor:
        for sql in drop:
            cursor.execute(sql)


def claimed_row(receiver: str = "k") -> outbox.Claimed:
    outbox.enqueue(
        [outbox.NewDelivery(signal="s", receiver=receiver, payload={})],
        using="default",
    )
    (claimed,) = outbox.claim(
        worker="w",
        queues=["default"],
        receivers=[receiver],
        limit=1,
        lease=timedelta(seconds=30),
        using="default",
    )
    return claimed


def test_an_outcome_refused_as_a_deadlock_victim_is_written_on_a_later_try(
    refuse: Callable[..., Callable[[], int]],
) -> None:
    claimed = claimed_row()
    tries = refuse(2)
    assert outbox.fail(
        claimed, error="boom", reason="error", retry_in=None, using="default"
    )
    assert tries() == 3
    assert Delivery.objects.get().state == State.DEAD


def test_a_completion_refused_as_a_deadlock_victim_is_written_on_a_later_try(
    refuse: Callable[..., Callable[[], int]],
) -> None:
    claimed = claimed_row()
    tries = refuse(1)
    assert outbox.complete(claimed, using="default")
    assert tries() == 2
    assert Delivery.objects.get().state == State.COMPLETED


def test_a_conflict_that_never_clears_reaches_the_caller_after_the_last_try(
    refuse: Callable[..., Callable[[], int]],
) -> None:
    claimed = claimed_row()
    tries = refuse(1000)
    with pytest.raises(OperationalError) as raised:
        outbox.complete(claimed, using="default")
    assert is_conflict(raised.value)
    # A conflict is the database's answer, not a lost connection: it is
    # logged as the error it is, never as an outage.
    assert not _outage.is_lost_connection(raised.value)
    assert tries() == ATTEMPTS
    # Nothing was written: the lease still holds the row.
    assert Delivery.objects.get().state == State.EXECUTING


def test_inside_a_transaction_the_conflict_goes_to_the_caller_at_once(
    refuse: Callable[..., Callable[[], int]],
) -> None:
    claimed = claimed_row()
    tries = refuse(1)
    # The server rolled the caller's whole transaction back: only the caller
    # can run it again.
    with pytest.raises(OperationalError) as raised, transaction.atomic():
        outbox.complete(claimed, using="default")
    assert is_conflict(raised.value)
    assert tries() == 1


def test_other_operational_errors_are_not_run_again(
    refuse: Callable[..., Callable[[], int]],
) -> None:
    claimed = claimed_row()
    tries = refuse(1, "lock timeout")
    with pytest.raises(OperationalError) as raised:
        outbox.complete(claimed, using="default")
    assert not is_conflict(raised.value)
    assert tries() == 1


def accept(**kwargs: Any) -> None:
    """A receiver that takes anything."""


def test_a_worker_records_an_outcome_through_a_deadlock(
    connect: Any,
    refuse: Callable[..., Callable[[], int]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from signalbox import Signal

    signal = Signal()
    connect(signal, accept, run="background")
    signal.send(sender=None)
    tries = refuse(2)
    with caplog.at_level(logging.DEBUG, logger="signalbox"):
        result = Worker(burst=True, concurrency=1).run()
    assert result.by_outcome == {Outcome.COMPLETED: 1}
    assert tries() == 3
    assert Delivery.objects.get().state == State.COMPLETED
    assert registry.receiver_key(accept) == Delivery.objects.get().receiver
    assert "could not record its outcome" not in caplog.text
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert errors == []
