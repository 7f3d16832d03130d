"""The driver's side of the harness's databases: SQL with a few portable macros.

``{now}`` is the database's clock, ``{send_id}`` a delivery's send id read
from its payload, and ``E(x)`` a timestamp in seconds since the epoch, so one
query reads the same on PostgreSQL and SQLite.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from django.core.management import call_command
from django.db import DatabaseError, connections

from tests.reliability import ledger


def wait_for(condition: Any, timeout: float, what: str = "a condition") -> float:
    """Wait until ``condition()`` is true; returns the seconds it took."""
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - began


def vendor(alias: str) -> str:
    return str(connections[alias].vendor)


def sql(alias: str, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run ``text`` on the driver's connection to ``alias`` (macros expanded)."""
    with connections[alias].cursor() as cursor:
        cursor.execute(_expand(alias, text), list(params))
        return list(cursor.fetchall()) if cursor.description else []


def scalar(alias: str, text: str, params: Sequence[Any] = ()) -> Any:
    rows = sql(alias, text, params)
    return rows[0][0] if rows else None


def _expand(alias: str, text: str) -> str:
    if vendor(alias) == "postgresql":
        macros = {
            "{now}": "clock_timestamp()",
            "{send_id}": (
                "(CASE WHEN jsonb_typeof(d.payload->'kwargs'->'values'->'send_id') "
                "= 'number' THEN (d.payload->'kwargs'->'values'->>'send_id')"
                "::numeric::bigint END)"
            ),
        }
        epoch = "extract(epoch from {})"
    else:
        macros = {
            "{now}": "strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now')",
            "{send_id}": (
                "(CASE WHEN json_valid(d.payload) THEN CAST(json_extract(d.payload, "
                "'$.kwargs.values.send_id') AS INTEGER) END)"
            ),
        }
        epoch = "((julianday({}) - 2440587.5) * 86400.0)"
    for macro, value in macros.items():
        text = text.replace(macro, value)
    while "E(" in text:  # E(x): x in seconds since the epoch
        start = text.index("E(")
        depth, end = 0, start + 1
        for end in range(start + 1, len(text)):
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            if depth == 0:
                break
        text = text[:start] + epoch.format(text[start + 2 : end]) + text[end + 1 :]
    return text


def prepare(alias: str) -> None:
    """Migrate ``alias`` and create the harness's tables and audit triggers."""
    call_command("migrate", database=alias, verbosity=0)
    with connections[alias].cursor() as cursor:
        for statement in ledger.TABLES[vendor(alias)]:
            cursor.execute(statement)


HARNESS_TABLES = ("reliability_ledger", "reliability_sends", "reliability_audit")
HARNESS_TABLES += ("reliability_faults",)
OUTBOX_TABLES = ("signalbox_delivery", "signalbox_workerrecord", "testapp_order")


def reset(alias: str) -> None:
    """Empty the outbox and the harness's tables before a scenario."""
    connections[alias].close()
    tables = (*OUTBOX_TABLES, *HARNESS_TABLES)
    if vendor(alias) == "postgresql":
        sql(alias, f"TRUNCATE {', '.join(tables)} RESTART IDENTITY")
    else:
        for table in tables:
            sql(alias, f"DELETE FROM {table}")


def counts_by_state(alias: str) -> dict[str, int]:
    return dict(sql(alias, "SELECT state, count(*) FROM signalbox_delivery GROUP BY 1"))


def unfinished(alias: str) -> int:
    """Rows that still have to run (rows scheduled beyond a minute excepted)."""
    return int(
        scalar(
            alias,
            "SELECT count(*) FROM signalbox_delivery WHERE state IN "
            "('scheduled', 'available', 'retryable', 'executing') AND "
            "NOT (state = 'scheduled' AND E(scheduled_at) > E({now}) + 60)",
        )
    )


def wait_drained(alias: str, timeout: float) -> float:
    """Wait until every row has finished; returns the seconds it took."""

    def drained() -> bool:
        try:
            return unfinished(alias) == 0
        except DatabaseError:
            connections[alias].close()
            return False

    return wait_for(drained, timeout, "the outbox to drain")
