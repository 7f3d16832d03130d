"""signalbox's statements run by libpq under prepared names of its own: the
send's INSERT, and the claims and acknowledgements of workers and engines."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import DataError, ProgrammingError, connections, transaction

from signalbox import outbox
from signalbox.models import Delivery
from signalbox.outbox import _libpq, _statements
from tests.testapp.models import Order

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True, databases=["default", "other"]),
]


def new(receiver: str = "shop.mail", **fields: object) -> outbox.NewDelivery:
    return outbox.NewDelivery(
        signal="s", receiver=receiver, payload={"kwargs": {"n": 1}}, **fields
    )


def ours() -> list[str]:
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT name FROM pg_prepared_statements WHERE name LIKE 'signalbox%%'"
        )
        return sorted(row[0] for row in cursor.fetchall())


def psycopg_prepared() -> int:
    """How many statements psycopg itself prepared on the default connection."""
    return int(connections["default"].connection._prepared._prepared_idx)


class RolledBack(Exception):
    pass


def rolled_back(*rows: outbox.NewDelivery, begun: bool = True) -> None:
    """Enqueue ``rows`` in a transaction that then rolls back."""
    with transaction.atomic():
        if begun:
            Order.objects.create(number="rolled back")
        outbox.enqueue(list(rows), using="default")
        raise RolledBack


def committed(*rows: outbox.NewDelivery) -> None:
    with transaction.atomic():
        Order.objects.create(number="committed")
        outbox.enqueue(list(rows), using="default")


def test_a_send_inside_a_transaction_runs_under_our_own_prepared_name() -> None:
    with transaction.atomic():
        Order.objects.create(number="L1")  # the transaction has begun
        outbox.enqueue([new()], using="default")
        assert outbox.enqueue([new("b"), new("c")], using="default", ids=True)
    assert ours() == ["signalbox_insert_1_w", "signalbox_insert_2_iw"]
    assert psycopg_prepared() == 0  # so psycopg never deallocates them
    assert sorted(Delivery.objects.values_list("receiver", flat=True)) == [
        "b",
        "c",
        "shop.mail",
    ]


def test_ids_come_back_in_order_and_rows_read_back_whole() -> None:
    with transaction.atomic():
        Order.objects.create(number="L2")
        ids = outbox.enqueue(
            [new("x", priority=-5, max_attempts=3), new("y", queue="mail")],
            using="default",
            ids=True,
        )
    x, y = (Delivery.objects.get(pk=pk) for pk in ids)
    assert (x.receiver, x.priority, x.max_attempts, x.payload) == (
        "x",
        -5,
        3,
        {"kwargs": {"n": 1}},
    )
    assert (y.receiver, y.queue) == ("y", "mail")


def test_a_rollback_discards_the_rows_and_keeps_the_statement() -> None:
    with transaction.atomic():
        Order.objects.create(number="L3")
        outbox.enqueue([new("kept")], using="default")
    with pytest.raises(RolledBack):
        rolled_back(new("rolled back"))
    assert ours() == ["signalbox_insert_1_w"]
    with transaction.atomic():
        Order.objects.create(number="L5")
        outbox.enqueue([new("after")], using="default")
    assert sorted(Delivery.objects.values_list("receiver", flat=True)) == [
        "after",
        "kept",
    ]


def test_a_send_that_opens_the_transaction_is_still_inside_it() -> None:
    # Nothing has run in the block yet: psycopg has not sent its BEGIN, and a
    # statement run past it would commit on its own.
    with pytest.raises(RolledBack):
        rolled_back(new("first"), begun=False)
    assert not Delivery.objects.exists()
    with transaction.atomic():
        outbox.enqueue([new("first")], using="default")
        outbox.enqueue([new("second")], using="default")
    assert Delivery.objects.count() == 2
    assert psycopg_prepared() == 0


def test_errors_are_djangos_and_leave_the_transaction_to_its_owner() -> None:
    with pytest.raises(DataError):  # Django's class; 99,999 is not a smallint
        committed(new(priority=99_999))
    with transaction.atomic():
        Order.objects.create(number="L7")
        outbox.enqueue([new("fine")], using="default")
    assert list(Delivery.objects.values_list("receiver", flat=True)) == ["fine"]


def test_a_statement_deallocated_behind_our_back_is_prepared_again() -> None:
    outbox.enqueue([new("autocommit")], using="default")
    with connections["default"].cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    # Outside a transaction the failed EXECUTE harmed nothing: retried at once.
    outbox.enqueue([new("retried")], using="default")
    with connections["default"].cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    # Inside one it aborted the caller's transaction, which must be told ...
    with pytest.raises(ProgrammingError, match="does not exist"):
        committed(new("lost with its transaction"))
    # ... and the next send prepares it again.
    with transaction.atomic():
        Order.objects.create(number="L9")
        outbox.enqueue([new("next")], using="default")
    assert sorted(Delivery.objects.values_list("receiver", flat=True)) == [
        "autocommit",
        "next",
        "retried",
    ]


def test_where_psycopg_prepares_too_the_send_goes_through_its_cursor() -> None:
    # A project's prepare=True, or statement_cursor where libpq cannot run a
    # statement: after a rollback psycopg deallocates everything on that
    # connection, so ours stay off it.
    with _statements.statement_cursor(connections["default"]) as cursor:
        cursor.execute("SELECT %s::int", [1])
    assert psycopg_prepared() == 1
    with pytest.raises(RolledBack):
        rolled_back(new("rolled back"))
    with transaction.atomic():
        Order.objects.create(number="L11")
        outbox.enqueue([new("through psycopg")], using="default")
    assert ours() == []
    assert list(Delivery.objects.values_list("receiver", flat=True)) == [
        "through psycopg"
    ]


def test_text_beyond_ascii_travels_in_the_connections_encoding() -> None:
    committed(new("accusé", queue="réception"))
    row = Delivery.objects.get()
    assert (row.receiver, row.queue) == ("accusé", "réception")


ODD_TEXT = ["a,b", "{braces}", 'say "hi"', "back\\slash", "NULL", "", "accusé 🙂"]


def test_parameters_written_as_text_read_back_as_a_cursor_binds_them() -> None:
    token = uuid.uuid4()
    sql = (
        "SELECT %s::bigint, %s::text, %s::uuid, %s::interval, %s::text[], "
        "%s::bigint[], %s::uuid[], %s::text, %s::text[], statement_timestamp()"
    )
    params = [
        -(2**40),
        "accusé",
        token,
        timedelta(days=-1, microseconds=7),
        ODD_TEXT,
        [1, None, 3],
        [token],
        None,
        [],
    ]
    with connections["default"].cursor() as cursor:
        cursor.execute(sql, params)
        expected = cursor.fetchall()
    got = _libpq.run(connections["default"], sql, params)
    assert [row[:-1] for row in got] == [row[:-1] for row in expected]
    assert got[0][4] == ODD_TEXT
    stamp = got[0][-1]
    assert isinstance(stamp, datetime)
    assert stamp.utcoffset() == UTC.utcoffset(None)
    assert [name for name in ours() if not name.startswith("signalbox_insert")]
    assert psycopg_prepared() == 0


def test_timestamps_load_as_a_django_cursor_loads_them() -> None:
    # The claim's timestamps go through psycopg's compiled loader, not
    # Django's: the values, and their tzinfo, must be the same.
    sql = (
        "SELECT t FROM unnest(ARRAY['2026-12-08 01:02:03.000004+00',"
        " '1999-12-31 23:59:59.999999-08', '0001-01-01 00:00:00+00',"
        " '9999-12-31 23:59:59.999999+00', '2000-02-29 12:00:00+05:30']::timestamptz[])"
        " AS t"
        " WHERE t::text <> %s"
    )
    with connections["default"].cursor() as cursor:
        cursor.execute(sql, ["x"])
        expected = cursor.fetchall()
    got = _libpq.run(connections["default"], sql, ["x"])
    assert got == expected
    assert [row[0].tzinfo for row in got] == [row[0].tzinfo for row in expected]


def test_a_parameter_it_cannot_write_goes_through_a_cursor() -> None:
    rows = _libpq.run(connections["default"], "SELECT %s::boolean", [True])
    assert rows == [(True,)]
    assert ours() == []


def test_a_statement_that_opens_the_transaction_is_still_inside_it() -> None:
    sql = "INSERT INTO testapp_order (number, paid) VALUES (%s, false) RETURNING number"

    def opened_then_rolled_back() -> None:
        with transaction.atomic():
            assert _libpq.run(connections["default"], sql, ["gone"]) == [("gone",)]
            raise RolledBack

    with pytest.raises(RolledBack):
        opened_then_rolled_back()
    assert not Order.objects.exists()
    with transaction.atomic():
        _libpq.run(connections["default"], sql, ["first"])
        _libpq.run(connections["default"], sql, ["second"])  # past psycopg's BEGIN
    assert sorted(Order.objects.values_list("number", flat=True)) == [
        "first",
        "second",
    ]


def test_statement_errors_are_djangos() -> None:
    with pytest.raises(DataError):
        _libpq.run(connections["default"], "SELECT %s::smallint", [99_999])
    assert _libpq.run(connections["default"], "SELECT %s::int", [1]) == [(1,)]


def test_a_worker_connection_keeps_every_statement_of_ours_off_psycopg() -> None:
    # The claim, the acknowledgements and the hand-over mark run under our
    # names too, so psycopg never prepares on a worker's connection, and its
    # rollbacks never deallocate them (nor turn the send's libpq path off).
    outbox.enqueue([new(), new()], using="default")
    first, second = (
        outbox.claim_one(
            pk,
            engine="default",
            worker="w",
            receivers=["shop.mail"],
            lease=timedelta(minutes=1),
            using="default",
        )
        for pk in Delivery.objects.order_by("id").values_list("id", flat=True)
    )
    assert first is not None
    assert second is not None
    assert outbox.complete(first, using="default")
    assert outbox.complete_many([second], using="default") == {second.id}
    with pytest.raises(RolledBack):
        rolled_back(new("rolled back"))
    assert psycopg_prepared() == 0
    assert set(Delivery.objects.values_list("state", flat=True)) == {"completed"}
