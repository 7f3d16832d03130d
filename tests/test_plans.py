"""The plans PostgreSQL picks for the outbox's batch statements.

A prepared statement gets a generic plan after a few runs, chosen from the
table's statistics, which are often older than the rows the statement
touches: a worker acknowledges thousands of deliveries that were executing
nowhere when the table was last analysed. These tests analyse the table at
such a moment, force the generic plan, and read the plan: each batch
statement must find its rows by primary key (or hash them, on a small
table), never compare each of its ids with each row of a partial index.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection

from signalbox import outbox
from signalbox.outbox import _statements

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def _prepared(sql: str, name: str, types: list[str]) -> str:
    """``sql`` with its ``%s`` placeholders numbered, as PREPARE wants them."""
    numbers = iter(range(1, len(types) + 1))
    body = re.sub(r"%s", lambda _: f"${next(numbers)}", sql)
    return f"PREPARE {name}({', '.join(types)}) AS {body}"


def _generic_plan(sql: str, types: list[str], values: list[object]) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cursor.execute(_prepared(sql, "signalbox_plan", types))
        placeholders = ", ".join(["%s"] * len(values))
        cursor.execute(
            f"EXPLAIN (ANALYZE, COSTS OFF) EXECUTE signalbox_plan({placeholders})",
            values,
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("DEALLOCATE signalbox_plan")
    return plan


def test_acknowledging_many_never_walks_the_executing_rows_per_id() -> None:
    rows = [
        outbox.NewDelivery(signal="s", receiver="k", payload={}) for _ in range(600)
    ]
    outbox.enqueue(rows, using="default")
    with connection.cursor() as cursor:
        # The statistics say nothing is executing, as after a quiet spell.
        cursor.execute("ANALYZE signalbox_delivery")
    claimed = outbox.claim(
        worker="w",
        queues=["default"],
        receivers=["k"],
        limit=600,
        lease=timedelta(seconds=30),
        using="default",
    )
    ids = [each.id for each in claimed]
    tokens = [each.token for each in claimed]
    plan = _generic_plan(
        _statements.COMPLETE_MANY_POSTGRESQL, ["bigint[]", "uuid[]"], [ids, tokens]
    )
    # Not the walk of every executing row per acknowledged id, which the
    # statistics make look like one row.
    assert "signalbox_delivery_leases" not in plan, plan
    assert "Join Filter" not in plan, plan
    assert re.search(r"Update on signalbox_delivery .*rows=600", plan), plan
