"""outbox.enqueue: the one statement a send adds to the caller's transaction."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connections, transaction
from django.db.models.functions import Now
from django.test.utils import CaptureQueriesContext

import signalbox
from signalbox import outbox
from signalbox._states import State
from signalbox.models import Delivery
from tests.testapp.models import Order

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])

placed = signalbox.Signal()

PAYLOAD = {
    "sender": None,
    "kwargs": {"text": 'naïve café ✓ "quoted" \\ back', "nested": [1, {"a": None}]},
}


def new(receiver: str = "shop.mail", **fields: object) -> outbox.NewDelivery:
    return outbox.NewDelivery(signal="s", receiver=receiver, payload=PAYLOAD, **fields)


def placed_in_background(sender: object, **kwargs: object) -> None:
    """A background receiver for the tests below; the worker is not run here."""


def test_a_send_adds_exactly_one_statement_to_the_transaction() -> None:
    signalbox.connect(placed, placed_in_background, run="background")
    try:
        with transaction.atomic():
            order = Order.objects.create(number="E1")
            with CaptureQueriesContext(connections["default"]) as queries:
                placed.send(sender=Order, order=order)
        assert len(queries) == 1
        table = connections["default"].ops.quote_name("signalbox_delivery")
        sql = queries[0]["sql"]  # signalbox's own statement, or the ORM's
        assert "INSERT INTO signalbox_delivery" in sql or f"INSERT INTO {table}" in sql
    finally:
        placed.disconnect(placed_in_background)


def test_rows_read_back_as_the_orm_would_have_written_them() -> None:
    outbox.enqueue([new(queue="mail", priority=-3, max_attempts=7)], using="default")
    row = Delivery.objects.get()
    assert (row.signal, row.receiver, row.queue, row.priority) == (
        "s",
        "shop.mail",
        "mail",
        -3,
    )
    assert row.payload == PAYLOAD
    assert (row.state, row.attempt, row.max_attempts) == (State.AVAILABLE, 0, 7)
    assert (row.leased_by, row.reason, row.error, row.lease_token) == ("", "", "", None)
    assert row.enqueued_at == row.scheduled_at
    assert Delivery.objects.due().filter(scheduled_at__lte=Now()).count() == 1


def test_ids_come_back_in_order_only_when_asked() -> None:
    assert outbox.enqueue([new("a")], using="default") == []
    ids = outbox.enqueue([new("b"), new("c"), new("d")], using="default", ids=True)
    keys = dict(Delivery.objects.values_list("id", "receiver"))
    assert [keys[pk] for pk in ids] == ["b", "c", "d"]


def test_a_delayed_row_among_others_is_still_one_statement() -> None:
    rows = [new("now"), new("later", delay=timedelta(hours=1))]
    with CaptureQueriesContext(connections["default"]) as queries:
        ids = outbox.enqueue(rows, using="default", ids=True)
    assert len([q for q in queries if q["sql"].startswith("INSERT")]) == 1
    states = dict(Delivery.objects.values_list("id", "state"))
    assert [states[pk] for pk in ids] == [State.AVAILABLE, State.SCHEDULED]
    later = Delivery.objects.get(receiver="later")
    assert later.scheduled_at - later.enqueued_at >= timedelta(minutes=59)


def test_rows_go_to_the_alias_named() -> None:
    outbox.enqueue([new()], using="other")
    assert Delivery.objects.using("other").count() == 1
    assert Delivery.objects.using("default").count() == 0


def test_nothing_is_written_for_no_rows() -> None:
    with CaptureQueriesContext(connections["default"]) as queries:
        assert outbox.enqueue([], using="default", ids=True) == []
    assert len(queries) == 0


class RolledBack(Exception):
    pass


def enqueue_and_roll_back(row: outbox.NewDelivery) -> None:
    try:
        with transaction.atomic():
            outbox.enqueue([row], using="default")
            raise RolledBack
    except RolledBack:
        pass


def prepared_statements() -> list[str]:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.postgres
def test_postgresql_keeps_the_insert_prepared() -> None:
    for _ in range(3):
        outbox.enqueue([new()], using="default")
    inserts = [sql for sql in prepared_statements() if "signalbox_delivery" in sql]
    assert len(inserts) == 1
    assert Delivery.objects.count() == 3
    assert Delivery.objects.first().payload == PAYLOAD  # type: ignore[union-attr]


@pytest.mark.postgres
def test_a_rollback_discards_its_rows_and_the_sends_after_it_still_write() -> None:
    outbox.enqueue([new()], using="default")
    enqueue_and_roll_back(new("rolled-back"))
    outbox.enqueue([new("after")], using="default")
    assert sorted(Delivery.objects.values_list("receiver", flat=True)) == [
        "after",
        "shop.mail",
    ]


@pytest.mark.postgres
@pytest.mark.parametrize(
    "setting",
    [("OPTIONS", {"prepare_threshold": None}), ("DISABLE_SERVER_SIDE_CURSORS", True)],
)
def test_poolers_and_explicit_thresholds_are_left_to_django(
    setting: tuple[str, object],
) -> None:
    connection = connections["default"]
    key, value = setting
    saved = dict(connection.settings_dict)
    connection.settings_dict[key] = value
    try:
        outbox.enqueue([new()], using="default")
    finally:
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
    assert not [sql for sql in prepared_statements() if "signalbox_delivery" in sql]
    assert Delivery.objects.count() == 1


@pytest.mark.postgres
def test_the_prepared_insert_goes_through_execute_wrappers_and_djangos_errors() -> None:
    from django.db import DataError

    seen: list[str] = []

    def spy(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        seen.append(sql)
        return execute(sql, params, many, context)

    connection = connections["default"]
    with connection.execute_wrapper(spy):
        outbox.enqueue([new()], using="default")
        with pytest.raises(DataError):  # Django's class, not psycopg's
            outbox.enqueue([new(priority=99_999)], using="default")
    assert len(seen) == 2
    assert all("INSERT INTO signalbox_delivery" in sql for sql in seen)


@pytest.mark.postgres
def test_the_notify_goes_out_at_commit_and_never_after_a_rollback() -> None:
    import psycopg

    params = connections["default"].get_connection_params()
    with psycopg.connect(**params, autocommit=True) as listener:
        listener.execute(f"LISTEN {outbox.NOTIFY_CHANNEL}")
        enqueue_and_roll_back(new())
        assert list(listener.notifies(timeout=0.3)) == []
        with transaction.atomic():
            outbox.enqueue([new(), new()], using="default")
            outbox.enqueue([new()], using="default")
        received = list(listener.notifies(timeout=1.0, stop_after=1))
        assert [n.channel for n in received] == [outbox.NOTIFY_CHANNEL]
