"""The SQL the ORM cannot write, or not cheaply enough, and the cursor it runs on.

Three statements decide signalbox's cost: the send's INSERT, which sits on the
caller's request path; the worker's claim; and its batched acknowledgements.
Each is written out here for the databases where it pays, and
:mod:`signalbox.outbox` falls back to the ORM everywhere else.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from django.db.models import F
from django.db.models.functions import Now

from signalbox._states import State, due_sql
from signalbox.outbox._base import after

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.backends.utils import CursorWrapper

# PostgreSQL's clock in these statements: one instant per statement, as
# Django's Now() reads it there.
_NOW = "statement_timestamp()"


class _Taking(NamedTuple):
    token: uuid.UUID
    worker: str
    lease: timedelta


_INSERT_HEAD = (
    "INSERT INTO signalbox_delivery (signal, receiver, engine, queue, priority, "
    "payload, max_attempts, state, attempt, handovers, leased_by, reason, error) "
)
# One row due at once; ``enqueued_at`` and ``scheduled_at`` take the
# database's clock from their column defaults.
_INSERT_ROW = {
    "postgresql": "%s, %s, %s, %s, %s, %s::jsonb, %s, 'available', 0, 0, '', '', ''",
    "sqlite": "%s, %s, %s, %s, %s, %s, %s, 'available', 0, 0, '', '', ''",
}
INSERT_VENDORS = frozenset(_INSERT_ROW)
"""The databases whose send INSERT is written out here; the ORM writes it
elsewhere."""
# The wake-up rides on the INSERT: PostgreSQL delivers a NOTIFY at the commit,
# and only if the transaction commits. As a one-row function in FROM it runs
# once per statement, however many rows it writes, and needs no RETURNING
# (which, with the CTE that would otherwise carry it, costs about a tenth of
# the send). The channel is outbox.NOTIFY_CHANNEL.
_NOTIFY = "pg_notify('signalbox', '')"

# One encoder for every send: json.dumps() with options builds a new one.
# The codec has already refused loops (it limits depth), so the encoder need
# not track every container it enters.
compact = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode
"""A payload as the JSON text the send's INSERT carries."""


def insert(
    vendor: str,
    rows: Sequence[tuple[str, str, str, str, int, str, int]],
    ids: bool,
    wake: bool = True,
) -> tuple[str, list[Any]] | None:
    """The INSERT of ``rows`` due at once, as (sql, params) for a cursor, or
    None where the ORM must write them.

    Each row is (signal, receiver, engine, queue, priority, payload as JSON
    text, max_attempts). The statement returns the new ids, in order, when
    ``ids`` asks; on PostgreSQL it also sends the NOTIFY when ``wake`` asks.
    (On psycopg 3, :mod:`signalbox.outbox._libpq` runs the same statement cheaper.)
    """
    sql = _insert_sql(vendor, len(rows), ids, wake)
    if sql is None:
        return None
    return sql, [value for row in rows for value in row]


@functools.lru_cache(maxsize=64)
def _insert_sql(vendor: str, count: int, ids: bool, wake: bool) -> str | None:
    row = _INSERT_ROW.get(vendor)
    if row is None:
        return None
    return compose_insert([row] * count, ids, notify=vendor == "postgresql" and wake)


def compose_insert(rows: Sequence[str], ids: bool, notify: bool) -> str:
    """The send's INSERT of ``rows`` (each the SQL of one row's values), with
    PostgreSQL's NOTIFY if ``notify`` asks and ``RETURNING id`` if ``ids`` does.
    """
    values = ", ".join([f"({row})" for row in rows])
    # Every part is one of this module's constants, never data: S608 is moot.
    if not notify:
        sql = _INSERT_HEAD + "VALUES " + values
    elif len(rows) == 1:
        sql = f"{_INSERT_HEAD}SELECT {rows[0]} FROM {_NOTIFY}"  # noqa: S608
    else:
        sql = f"{_INSERT_HEAD}SELECT v.* FROM (VALUES {values}) AS v, {_NOTIFY}"  # noqa: S608
    return sql + " RETURNING id" if ids else sql


# The claim, written once. Each row: a column a claim sets, its value in SQL
# (whose %s take the token, the worker and the lease, in this order) and its
# value for the ORM (SQLite, MySQL/MariaDB). Every claim, on every vendor,
# sets exactly these; add a column here and every path sets it.
_TAKEN: tuple[tuple[str, str, Callable[[_Taking], Any]], ...] = (
    ("state", f"'{State.EXECUTING}'", lambda taking: State.EXECUTING),
    ("attempt", "attempt + 1", lambda taking: F("attempt") + 1),
    ("lease_token", "%s", lambda taking: taking.token),
    ("leased_by", "%s", lambda taking: taking.worker),
    (
        "lease_expires_at",
        f"{_NOW} + %s",
        lambda taking: after(taking.lease),
    ),
    ("attempted_at", _NOW, lambda taking: Now()),
)
_TAKEN_SQL = ", ".join(f"{column} = {sql}" for column, sql, _ in _TAKEN)

_RETURNED = (
    "id, signal, receiver, payload, attempt, max_attempts, enqueued_at, interrupted"
)
"""What a claim returns of each row, in the order ``_claims._returned`` reads."""


def taken(token: uuid.UUID, worker: str, lease: timedelta) -> dict[str, Any]:
    """A claim's changes to a row, for the ORM's ``update()``: executing, its
    attempt counted, leased to ``worker`` under ``token`` until now + ``lease``."""
    taking = _Taking(token, worker, lease)
    return {column: value(taking) for column, _, value in _TAKEN}


def taken_params(token: uuid.UUID, worker: str, lease: timedelta) -> list[Any]:
    """The parameters of a claim statement's SET, in the order it takes them."""
    return [token, worker, lease]


CLAIM_POSTGRESQL = f"""
UPDATE signalbox_delivery SET {_TAKEN_SQL}
WHERE id IN (
    SELECT id FROM signalbox_delivery
    WHERE {due_sql(_NOW)}
      AND {{engine}} AND {{queue}} AND receiver = ANY(%s)
    ORDER BY priority, scheduled_at, id
    LIMIT %s
    FOR UPDATE SKIP LOCKED
)
RETURNING {_RETURNED}
"""  # noqa: S608 (every part is this module's, never data)
"""One statement that takes due rows. ``{engine}`` and ``{queue}`` are each
``column = %s`` for one value, which lets it walk the partial "due" index in
order instead of sorting, or ``column = ANY(%s)`` for several."""

CLAIM_ONE = f"""
UPDATE signalbox_delivery SET {_TAKEN_SQL}
WHERE id = %s AND engine = %s AND receiver = ANY(%s)
  AND {due_sql(_NOW)}
RETURNING {_RETURNED}
"""  # noqa: S608 (every part is this module's, never data)
"""Takes one named row, if it is due; on PostgreSQL, where a row's lock
makes a concurrent claim of the same row wait and then find it taken."""

CLAIM_MYSQL = f"""
SELECT priority, scheduled_at, id FROM signalbox_delivery{{hint}}
WHERE {due_sql("NOW(6)", state="state = %s")}
  AND {{engine}} AND {{queue}} AND receiver IN ({{receivers}})
ORDER BY priority, scheduled_at, id
LIMIT %s
FOR UPDATE SKIP LOCKED
"""  # noqa: S608 (every part is this module's, never data)
"""One walk of a MySQL or MariaDB claim: the due rows of one waiting state,
locked, in the claim's order. ``{engine}`` and ``{queue}`` are each ``column
= %s``, which walks ``signalbox_delivery_waiting`` in order and stops after
the limit, or ``column IN (...)``, which sorts the state's rows first;
``{receivers}`` holds a ``%s`` per key. ``{hint}`` names the index where
it exists, because the optimizer prefers the "due" index, which MySQL holds
without its condition and a claim would walk past every finished row
(outbox._claim_mysql); a table made without migrations (pytest-django's
``--nomigrations``) lacks it, and naming it there would be an error."""

WAITING_INDEX = "signalbox_delivery_waiting"


def claim_mysql(
    state: str,
    engines: list[str],
    queues: list[str],
    receivers: list[str],
    indexed: bool,
) -> tuple[str, list[Any]]:
    """One walk of :data:`CLAIM_MYSQL`, as (sql, params) but for the limit;
    ``indexed`` says whether the table has :data:`WAITING_INDEX`."""

    def column(name: str, values: list[str]) -> str:
        if len(values) == 1:
            return f"{name} = %s"
        return f"{name} IN ({', '.join(['%s'] * len(values))})"

    sql = CLAIM_MYSQL.format(
        hint=f" FORCE INDEX ({WAITING_INDEX})" if indexed else "",
        engine=column("engine", engines),
        queue=column("queue", queues),
        receivers=", ".join(["%s"] * len(receivers)),
    )
    return sql, [state, *engines, *queues, *receivers]


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
WHERE d.id = held.id AND d.lease_token = held.token
RETURNING d.id
"""
"""Many acknowledgements in one statement, each under its own lease token.

It names no state: a row holds a lease token only while it is executing
(every claim sets both, every way out clears the token), and a "state =
'executing'" here let the planner walk the partial index of executing rows
for every acknowledged id. Its statistics, taken when few rows were
executing, promise one row; a worker acknowledging 3,000 deliveries of a
backlog then spent 1.6 s comparing 9 million pairs (a generic plan, as a
prepared statement gets), and drains stalled for seconds. Without it the
rows are found by primary key: 25 ms."""


def may_prepare(connection: BaseDatabaseWrapper) -> bool:
    """Whether signalbox may keep statements prepared on ``connection``: a
    psycopg 3 connection to PostgreSQL, where no ``OPTIONS["prepare_threshold"]``
    leaves preparing to psycopg, no ``DISABLE_SERVER_SIDE_CURSORS`` says a
    pooler in transaction mode sits in front (it may not keep them), and
    queries are not being logged (Django would show their SQL as ``None``).
    Where it may, the connection is opened (or reopened after a failed health
    check) on the way.
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
        return False
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    return True


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
    if not may_prepare(connection):
        return connection.cursor()
    driver: Any = connection.Database  # type: ignore[attr-defined]
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
