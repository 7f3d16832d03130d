"""``signalbox worker --burst`` inside a ``django.test.TestCase``.

A TestCase wraps each test in a transaction that is never committed, so the
rows a test sends exist only on the test's own connection. The worker then
works in that transaction, on that connection (issue 12, item 10): before,
its threads acknowledged on connections of their own, found no row and
logged "had lost their lease" (PostgreSQL), or waited for the test's write
lock forever (SQLite).
"""

from __future__ import annotations

from io import StringIO
from typing import Any

from django.core.management import call_command
from django.db import connection
from django.test import TestCase

import signalbox
from signalbox._states import State
from signalbox.models import Delivery
from tests.testapp.models import Note, Order

order_shipped = signalbox.Signal()
ran: list[Any] = []


def write_note(sender: object, order: Order, **kwargs: Any) -> None:
    ran.append(("sync", order.number))
    Note.objects.create(text=f"shipped {order.number}")


async def note_async(sender: object, order: Order, **kwargs: Any) -> None:
    ran.append(("coroutine", order.number))


def broken_query(sender: object, **kwargs: Any) -> None:
    ran.append("broken")
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM signalbox_no_such_table")


class BurstInATestCase(TestCase):
    def setUp(self) -> None:
        ran.clear()
        for receiver in (write_note, note_async, broken_query):
            self.addCleanup(order_shipped.disconnect, receiver)

    def burst(self) -> str:
        out = StringIO()
        call_command("signalbox", "worker", "--burst", stdout=out)
        return out.getvalue()

    def test_a_burst_runs_what_the_test_sent_and_logs_no_warning(self) -> None:
        signalbox.connect(order_shipped, write_note, run="background")
        signalbox.connect(order_shipped, note_async, run="background")
        order = Order.objects.create(number="T-1")
        order_shipped.send(sender=Order, order=order)

        with self.assertNoLogs(level="WARNING"):
            output = self.burst()

        assert "Worker stopped: 2 completed." in output
        assert sorted(ran) == [("coroutine", "T-1"), ("sync", "T-1")]
        assert list(Delivery.objects.values_list("state", flat=True)) == [
            State.COMPLETED,
            State.COMPLETED,
        ]
        # The receiver's own writes are in the test's transaction too.
        assert Note.objects.filter(text="shipped T-1").exists()

    def test_a_receivers_database_error_leaves_the_test_transaction_usable(
        self,
    ) -> None:
        signalbox.connect(order_shipped, broken_query, run="background", retries=1)
        order_shipped.send(sender=Order)

        output = self.burst()

        assert "Worker stopped: 1 dead." in output
        assert ran == ["broken"]
        row = Delivery.objects.get()
        assert (row.state, row.reason) == (State.DEAD, "max_attempts")
        assert "signalbox_no_such_table" in row.error
