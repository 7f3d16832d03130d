"""The ledger: every execution of a test receiver, written where nothing can hide it.

Side-effect receivers write it through a connection of their own, in
autocommit, so neither a rollback nor a killed worker can take an execution
back: a start row goes in before the receiver's work, the end is filled in
after it. ``atomic=True`` receivers write their effect row on the delivery's
own connection instead, inside its transaction, so it exists exactly when the
acknowledgement committed; they also leave an autocommit ``probe`` row per
attempt, so the attempts stay countable.

Times come from the database's clock, like the outbox's own.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from typing import Any

from django.db import connections

TABLES = {
    "postgresql": [
        """CREATE TABLE IF NOT EXISTS reliability_ledger (
            id bigserial PRIMARY KEY, kind text NOT NULL, receiver text NOT NULL,
            atomic boolean NOT NULL DEFAULT false, delivery_id bigint NOT NULL,
            attempt integer NOT NULL, send_id bigint, pid integer NOT NULL,
            started_at timestamptz NOT NULL, ended_at timestamptz,
            taken_over boolean, note text NOT NULL DEFAULT '')""",
        """CREATE TABLE IF NOT EXISTS reliability_sends (
            send_id bigint PRIMARY KEY, producer text NOT NULL, signal text NOT NULL,
            expected integer NOT NULL, delay_s double precision NOT NULL DEFAULT 0,
            written_at timestamptz NOT NULL DEFAULT clock_timestamp())""",
        """CREATE TABLE IF NOT EXISTS reliability_audit (
            id bigserial PRIMARY KEY, op text NOT NULL, delivery_id bigint NOT NULL,
            send_id bigint, old_state text, new_state text, old_attempt integer,
            new_attempt integer, new_reason text, new_scheduled_at timestamptz,
            at timestamptz NOT NULL DEFAULT clock_timestamp())""",
        """CREATE TABLE IF NOT EXISTS reliability_faults (
            id bigserial PRIMARY KEY, kind text NOT NULL,
            started_at timestamptz NOT NULL, ended_at timestamptz NOT NULL)""",
        """CREATE OR REPLACE FUNCTION reliability_audit() RETURNS trigger AS $$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                INSERT INTO reliability_audit
                    (op, delivery_id, send_id, old_state, old_attempt)
                VALUES ('delete', OLD.id, CASE WHEN jsonb_typeof(
                    OLD.payload->'kwargs'->'values'->'send_id') = 'number' THEN
                    (OLD.payload->'kwargs'->'values'->>'send_id')::numeric::bigint
                    END, OLD.state, OLD.attempt);
                RETURN OLD;
            END IF;
            IF OLD.state IS DISTINCT FROM NEW.state
               OR OLD.state IN ('completed', 'dead') THEN
                INSERT INTO reliability_audit (op, delivery_id, old_state, new_state,
                    old_attempt, new_attempt, new_reason, new_scheduled_at)
                VALUES ('update', OLD.id, OLD.state, NEW.state, OLD.attempt,
                    NEW.attempt, NEW.reason, NEW.scheduled_at);
            END IF;
            RETURN NEW;
        END $$ LANGUAGE plpgsql""",
        "DROP TRIGGER IF EXISTS reliability_audit ON signalbox_delivery",
        """CREATE TRIGGER reliability_audit AFTER UPDATE OR DELETE
            ON signalbox_delivery FOR EACH ROW EXECUTE FUNCTION reliability_audit()""",
    ],
    "sqlite": [
        """CREATE TABLE IF NOT EXISTS reliability_ledger (
            id integer PRIMARY KEY AUTOINCREMENT, kind text NOT NULL,
            receiver text NOT NULL, atomic bool NOT NULL DEFAULT 0,
            delivery_id bigint NOT NULL, attempt integer NOT NULL, send_id bigint,
            pid integer NOT NULL, started_at text NOT NULL, ended_at text,
            taken_over bool, note text NOT NULL DEFAULT '')""",
        """CREATE TABLE IF NOT EXISTS reliability_sends (
            send_id bigint PRIMARY KEY, producer text NOT NULL, signal text NOT NULL,
            expected integer NOT NULL, delay_s real NOT NULL DEFAULT 0,
            written_at text NOT NULL
                DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')))""",
        """CREATE TABLE IF NOT EXISTS reliability_audit (
            id integer PRIMARY KEY AUTOINCREMENT, op text NOT NULL,
            delivery_id bigint NOT NULL, send_id bigint, old_state text,
            new_state text, old_attempt integer, new_attempt integer,
            new_reason text, new_scheduled_at text,
            at text NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')))""",
        """CREATE TABLE IF NOT EXISTS reliability_faults (
            id integer PRIMARY KEY AUTOINCREMENT, kind text NOT NULL,
            started_at text NOT NULL, ended_at text NOT NULL)""",
        """CREATE TRIGGER IF NOT EXISTS reliability_audit_update
            AFTER UPDATE ON signalbox_delivery
            WHEN OLD.state IS NOT NEW.state OR OLD.state IN ('completed', 'dead')
            BEGIN
                INSERT INTO reliability_audit (op, delivery_id, old_state, new_state,
                    old_attempt, new_attempt, new_reason, new_scheduled_at)
                VALUES ('update', OLD.id, OLD.state, NEW.state, OLD.attempt,
                    NEW.attempt, NEW.reason, NEW.scheduled_at);
            END""",
        """CREATE TRIGGER IF NOT EXISTS reliability_audit_delete
            AFTER DELETE ON signalbox_delivery
            BEGIN
                INSERT INTO reliability_audit
                    (op, delivery_id, send_id, old_state, old_attempt)
                VALUES ('delete', OLD.id, CASE WHEN json_valid(OLD.payload) THEN
                    json_extract(OLD.payload, '$.kwargs.values.send_id') END,
                    OLD.state, OLD.attempt);
            END""",
    ],
}

NOW = {
    "postgresql": "clock_timestamp()",
    "sqlite": "strftime('%Y-%m-%d %H:%M:%f', 'now')",
}

_local = threading.local()


def _raw(using: str) -> Any:
    """This thread's own autocommit connection to ``using``'s database."""
    held = getattr(_local, "connections", None)
    if held is None:
        held = _local.connections = {}
    if using not in held:
        wrapper = connections[using]
        if wrapper.vendor == "postgresql":
            import psycopg

            params = wrapper.get_connection_params()
            params.pop("cursor_factory", None)
            held[using] = psycopg.connect(**params, autocommit=True, connect_timeout=5)
        else:
            held[using] = sqlite3.connect(
                wrapper.settings_dict["NAME"], timeout=30, isolation_level=None
            )
    return held[using]


def vendor(using: str) -> str:
    return str(connections[using].vendor)


def _sql(using: str, sql: str) -> str:
    sql = sql.replace("{now}", NOW[vendor(using)])
    return sql.replace("%s", "?") if vendor(using) == "sqlite" else sql


def execute(using: str, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Run ``sql`` on this thread's autocommit connection; a broken one is dropped."""
    connection = _raw(using)
    try:
        cursor = connection.execute(_sql(using, sql), params)
        return list(cursor.fetchall()) if cursor.description else []
    except Exception:
        _local.connections.pop(using, None)
        with contextlib.suppress(Exception):  # broken; the next call opens another
            connection.close()
        raise


def start(
    using: str, *, kind: str, receiver: str, send_id: int | None, atomic: bool = False
) -> int:
    """Record that an execution starts now; returns the ledger row's id."""
    import signalbox

    delivery = signalbox.current_delivery()
    assert delivery is not None
    [(entry,)] = execute(
        using,
        "INSERT INTO reliability_ledger (kind, receiver, atomic, delivery_id, "
        "attempt, send_id, pid, started_at) VALUES (%s, %s, %s, %s, %s, %s, %s, "
        "{now}) RETURNING id",
        (kind, receiver, atomic, delivery.id, delivery.attempt, send_id, os.getpid()),
    )
    return int(entry)


def end(using: str, entry: int) -> None:
    """Record the end of execution ``entry``, and whether its lease was taken over.

    Taken over: the row is no longer executing under this attempt, so the
    acknowledgement about to be sent is stale and must be refused.
    """
    import signalbox

    delivery = signalbox.current_delivery()
    assert delivery is not None
    execute(
        using,
        "UPDATE reliability_ledger SET ended_at = {now}, taken_over = NOT EXISTS ("
        "SELECT 1 FROM signalbox_delivery WHERE id = %s AND state = 'executing' "
        "AND attempt = %s) WHERE id = %s",
        (delivery.id, delivery.attempt, entry),
    )


def effect_in_transaction(
    using: str, *, receiver: str, send_id: int | None, started_at: Any | None
) -> None:
    """Write the effect row of an ``atomic=True`` receiver on the delivery's connection.

    It commits with the acknowledgement, or not at all. ``started_at`` is the
    probe's start, or None for now (on SQLite, which leaves no probe).
    """
    import signalbox

    delivery = signalbox.current_delivery()
    assert delivery is not None
    clock = NOW[vendor(using)].replace("%", "%%")
    started = "%s" if started_at is not None else clock
    with connections[using].cursor() as cursor:
        cursor.execute(
            "INSERT INTO reliability_ledger (kind, receiver, atomic, delivery_id, "
            "attempt, send_id, pid, started_at, ended_at) VALUES (%s, %s, %s, %s, "
            f"%s, %s, %s, {started}, {clock})",
            [
                "effect",
                receiver,
                True,
                delivery.id,
                delivery.attempt,
                send_id,
                os.getpid(),
                *([started_at] if started_at is not None else []),
            ],
        )


def started_at(using: str, entry: int) -> Any:
    [(value,)] = execute(
        using, "SELECT started_at FROM reliability_ledger WHERE id = %s", (entry,)
    )
    return value
