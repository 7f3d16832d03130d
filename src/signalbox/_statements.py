"""The SQL the ORM cannot write, or not cheaply enough, and the cursor it runs on.

Three statements decide signalbox's cost: the send's INSERT, which sits on the
caller's request path; the worker's claim; and its batched acknowledgements.
Each is written out here for the databases where it pays, and
:mod:`signalbox.outbox` falls back to the ORM everywhere else.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.backends.utils import CursorWrapper

_INSERT_HEAD = (
    "INSERT INTO signalbox_delivery (signal, receiver, engine, queue, priority, "
    "payload, max_attempts, state, attempt, handovers, leased_by, reason, error) "
    "VALUES "
)
# One row due at once; ``enqueued_at`` and ``scheduled_at`` take the
# database's clock from their column defaults.
_INSERT_ROW = {
    "postgresql": "(%s, %s, %s, %s, %s, %s::jsonb, %s, 'available', 0, 0, '', '', '')",
    "sqlite": "(%s, %s, %s, %s, %s, %s, %s, 'available', 0, 0, '', '', '')",
}
# The wake-up rides on the INSERT: PostgreSQL delivers a NOTIFY at the commit,
# and only if the transaction commits. The channel is outbox.NOTIFY_CHANNEL.
_NOTIFY_ROWS = "SELECT id, pg_notify('signalbox', '') FROM rows"


# One encoder for every send: json.dumps() with options builds a new one.
_compact = json.JSONEncoder(separators=(",", ":")).encode


def insert(
    vendor: str, rows: Sequence[tuple[str, str, str, str, int, Any, int]], ids: bool
) -> tuple[str, list[Any]] | None:
    """The INSERT of ``rows`` due at once, as (sql, params), or None where the
    ORM must write them.

    Each row is (signal, receiver, engine, queue, priority, payload,
    max_attempts).
    On PostgreSQL the statement also sends the NOTIFY and always returns the
    ids; elsewhere it returns them when ``ids`` asks.
    """
    row_sql = _INSERT_ROW.get(vendor)
    if row_sql is None:
        return None
    sql = _INSERT_HEAD + ", ".join([row_sql] * len(rows))
    if vendor == "postgresql":
        sql = f"WITH rows AS ({sql} RETURNING id) {_NOTIFY_ROWS}"
    elif ids:
        sql += " RETURNING id"
    params: list[Any] = []
    for signal, receiver, engine, queue, priority, payload, max_attempts in rows:
        params += (
            signal,
            receiver,
            engine,
            queue,
            priority,
            _compact(payload),
            max_attempts,
        )
    return sql, params


CLAIM_POSTGRESQL = """
UPDATE signalbox_delivery SET
    state = 'executing', attempt = attempt + 1, lease_token = %s, leased_by = %s,
    lease_expires_at = statement_timestamp() + %s, attempted_at = statement_timestamp()
WHERE id IN (
    SELECT id FROM signalbox_delivery
    WHERE state IN ('scheduled', 'available', 'retryable')
      AND scheduled_at <= statement_timestamp()
      AND {engine} AND {queue} AND receiver = ANY(%s)
    ORDER BY priority, scheduled_at, id
    LIMIT %s
    FOR UPDATE SKIP LOCKED
)
RETURNING id, signal, receiver, payload, attempt, max_attempts, enqueued_at
"""
"""One statement that takes due rows. ``{engine}`` and ``{queue}`` are each
``column = %s`` for one value, which lets it walk the partial "due" index in
order instead of sorting, or ``column = ANY(%s)`` for several."""

CLAIM_ONE = """
UPDATE signalbox_delivery SET
    state = 'executing', attempt = attempt + 1, lease_token = %s, leased_by = %s,
    lease_expires_at = statement_timestamp() + %s, attempted_at = statement_timestamp()
WHERE id = %s AND engine = %s AND receiver = ANY(%s)
  AND state IN ('scheduled', 'available', 'retryable')
  AND scheduled_at <= statement_timestamp()
RETURNING id, signal, receiver, payload, attempt, max_attempts, enqueued_at
"""
"""Takes one named row, if it is due; on PostgreSQL, where a row's lock
makes a concurrent claim of the same row wait and then find it taken."""

COMPLETE_ONE = """
UPDATE signalbox_delivery SET
    state = 'completed', finished_at = statement_timestamp(), lease_token = NULL,
    lease_expires_at = NULL, reason = ''
WHERE id = %s AND state = 'executing' AND lease_token = %s
RETURNING id
"""
"""One acknowledgement, under its lease token."""

_RELAXED = ", set_config('synchronous_commit', 'off', true)"


def relaxed(sql: str) -> str:
    """``sql``, a statement with a RETURNING clause, made to commit without
    waiting for the disk when it runs in a transaction of its own (autocommit).

    The ``set_config(..., true)`` is ``SET LOCAL``: it lasts until the end of
    the statement's implicit transaction, whose commit reads it, so one round
    trip does what ``BEGIN; SET LOCAL ...; <sql>; COMMIT`` did in four. It is
    evaluated only for the rows the statement changed; a statement that
    changed none wrote nothing to wait for. Never to be run inside someone
    else's transaction, whose commit it would relax.
    """
    return sql.rstrip() + _RELAXED


MARK_HANDED_OVER = """
UPDATE signalbox_delivery AS d SET
    handovers = CASE
        WHEN d.handed_over_at IS NULL OR d.handed_over_at < d.scheduled_at THEN 1
        ELSE d.handovers + 1
    END,
    handed_over_at = statement_timestamp()
FROM unnest(%s::bigint[], %s::integer[]) AS handed(id, attempt)
WHERE d.id = handed.id AND d.attempt = handed.attempt
  AND d.state IN ('scheduled', 'available', 'retryable')
RETURNING d.id
"""
"""Records hand-overs, each only while its row waits at the attempt it was
read at. Losing one to a database crash makes the relay hand the row over
again, which runs nothing twice: it is run relaxed."""

CLAIM_ONE_RELAXED = relaxed(CLAIM_ONE)
MARK_HANDED_OVER_RELAXED = relaxed(MARK_HANDED_OVER)
COMPLETE_ONE_RELAXED = relaxed(COMPLETE_ONE)

COMPLETE_MANY_POSTGRESQL = """
UPDATE signalbox_delivery AS d SET
    state = 'completed', finished_at = statement_timestamp(), lease_token = NULL,
    lease_expires_at = NULL, reason = ''
FROM unnest(%s::bigint[], %s::uuid[]) AS held(id, token)
WHERE d.id = held.id AND d.state = 'executing' AND d.lease_token = held.token
RETURNING d.id
"""
"""Many acknowledgements in one statement, each under its own lease token."""

CLAIM_ONE_COMPLETING = f"WITH completed AS ({COMPLETE_MANY_POSTGRESQL}){CLAIM_ONE}"
"""Records earlier completions (ids and tokens, as ``COMPLETE_MANY_POSTGRESQL``)
and takes one named row, in one statement: an engine's task in a stream of
them acknowledges the previous delivery with the next one's claim. A
redelivery of a row completed here finds it executing in the statement's
snapshot, and takes nothing."""
CLAIM_ONE_COMPLETING_RELAXED = relaxed(CLAIM_ONE_COMPLETING)


def statement_cursor(connection: BaseDatabaseWrapper) -> CursorWrapper:
    """A cursor whose statements PostgreSQL keeps prepared, where that is safe.

    Django's psycopg 3 cursors bind parameters on the client, so the server
    parses and plans every statement afresh, which for the send's INSERT
    costs more than running it (bench/outbox.py). This is a server-binding
    cursor on the same connection (so in the same transaction) that prepares
    what it runs, wrapped as Django wraps its own cursors, so errors and
    ``execute_wrapper()`` work as for any query. Django's own cursor is used
    instead with psycopg2; where ``OPTIONS["prepare_threshold"]`` says how to
    prepare (psycopg decides); where ``DISABLE_SERVER_SIDE_CURSORS`` says a
    pooler in transaction mode sits in front, which may not keep prepared
    statements; and while queries are logged (``DEBUG``,
    ``assertNumQueries``), because Django shows a prepared statement's SQL as
    ``None``.
    """
    driver: Any = getattr(connection, "Database", None)
    settings = connection.settings_dict
    if (
        connection.vendor != "postgresql"
        or getattr(driver, "__name__", "") != "psycopg"
        or connection.queries_logged
        or "prepare_threshold" in settings.get("OPTIONS", {})
        or settings.get("DISABLE_SERVER_SIDE_CURSORS")
    ):
        return connection.cursor()
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    # _prepare_cursor() is what connection.cursor() wraps its own cursors
    # with, the same in Django 5.2 and 6.x.
    wrap: Callable[[Any], CursorWrapper] = connection._prepare_cursor  # type: ignore[attr-defined]
    with connection.wrap_database_errors:
        return wrap(_preparing_cursor(driver)(connection.connection))


@functools.cache
def _preparing_cursor(driver: Any) -> type:
    """psycopg's server-binding cursor, preparing each statement it runs."""

    class PreparingCursor(driver.Cursor):  # type: ignore[misc]
        def execute(self, query: Any, params: Any = None, **options: Any) -> Any:
            # Django turns preparing off (prepare_threshold None), and psycopg
            # then ignores prepare=True: allow it for this statement only.
            connection = self.connection
            threshold = connection.prepare_threshold
            connection.prepare_threshold = 0
            try:
                return super().execute(query, params, prepare=True, **options)
            finally:
                connection.prepare_threshold = threshold

    return PreparingCursor
