"""signalbox's own statements, prepared under names of ours and run by libpq.

The INSERT a send adds is the whole of signalbox's cost on the request path,
and the claim and acknowledgement are most of an engine's cost per delivery;
a psycopg cursor spends more Python on each than the server spends running
it (bench/outbox.py, bench/engines.py). So on a psycopg 3 connection each
statement is prepared once, under a name of ours, and run with
``PQexecPrepared`` on the connection psycopg holds (``Connection.pgconn``,
psycopg's documented low-level access): the parameters go as text, libpq
releases the GIL while it waits, and psycopg's own loaders (Django's, on a
Django connection) type the rows, as a cursor would.

A name of ours lasts as long as the session unless something deallocates it.
psycopg does, with ``DEALLOCATE ALL`` after a rollback, but only on a
connection where it prepared statements itself; so this path runs only where
it never has (Django turns its preparing off, and signalbox's statements all
come this way). Anything else that deallocates (a ``DISCARD ALL`` of the
project's own) costs one error: the name is forgotten, the statement retried
at once outside a transaction, and prepared again by the next run inside one.
"""

from __future__ import annotations

import functools
import hashlib
import re
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, timedelta
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from signalbox.outbox import _statements

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.backends.utils import CursorWrapper

_INVALID_STATEMENT_NAME = "26000"
_IDLE = 0  # psycopg.pq.TransactionStatus.IDLE, without importing psycopg here
# Unknown-typed parameters in a SELECT list resolve to text, which PostgreSQL
# assigns to varchar but not to a number or jsonb: those are cast.
_ROW = (
    "${}, ${}, ${}, ${}, ${}::smallint, ${}::jsonb, ${}::integer, "
    "'available', 0, 0, '', '', ''"
)


def insert(
    connection: BaseDatabaseWrapper,
    rows: Sequence[tuple[str, str, str, str, int, str, int]],
    ids: bool,
    wake: bool,
) -> list[int] | None:
    """Write ``rows`` (each with its payload already JSON text) through libpq.

    Returns the new ids in order when ``ids`` asks, else ``[]``; returns None,
    having done nothing, where this path does not apply (another driver, a
    connection psycopg prepares on, queries being logged, execute wrappers,
    a pooler): the caller then runs the statement through a cursor. Errors
    are Django's, as from any cursor.
    """
    raw = _fast_connection(connection)
    if raw is None:
        return None
    connection.validate_no_broken_transaction()
    if not raw.autocommit and raw.pgconn.transaction_status == _IDLE:
        # psycopg sends the BEGIN before a transaction's first statement;
        # let it, through a cursor that prepares nothing (so this path stays
        # open on the connection for the sends that follow).
        return _through_a_cursor(connection, rows, ids, wake)
    name, sql = _statement(len(rows), ids, wake)
    try:  # names and JSON (ensure_ascii) are ASCII, the same in every encoding
        params = _text(rows, "ascii")
    except UnicodeEncodeError:
        params = _text(rows, raw.info.encoding)
    with connection.wrap_database_errors, raw.lock:
        result = _execute(raw, name, sql, params)
    return [int(result.get_value(i, 0)) for i in range(result.ntuples)] if ids else []


def _text(
    rows: Sequence[tuple[str, str, str, str, int, str, int]], encoding: str
) -> list[bytes]:
    return [
        value.encode(encoding) if isinstance(value, str) else b"%d" % value
        for row in rows
        for value in row
    ]


def run(
    connection: BaseDatabaseWrapper, sql: str, params: Sequence[Any]
) -> list[tuple[Any, ...]]:
    """Run ``sql``, one of signalbox's statements (``%s`` placeholders), and
    return its rows as a cursor's ``fetchall()`` would (``[]`` for none).

    Through libpq under a prepared name of ours where :func:`insert` would go
    that way and every parameter is one :func:`_param` writes as text (ints,
    strings, UUIDs, timedeltas, lists of those, None); otherwise through
    :func:`signalbox.outbox._statements.statement_cursor`. Errors are Django's.
    """
    raw = _fast_connection(connection)
    text = _params(params, raw) if raw is not None else None
    if raw is None or text is None:
        return _fetched(_statements.statement_cursor(connection), sql, params)
    connection.validate_no_broken_transaction()
    if not raw.autocommit and raw.pgconn.transaction_status == _IDLE:
        # psycopg sends the BEGIN before a transaction's first statement;
        # let it, through a cursor that prepares nothing.
        return _fetched(connection.cursor(), sql, params)
    name, numbered = _named(sql)
    with connection.wrap_database_errors, raw.lock:
        result = _execute(raw, name, numbered, text)
        if not result.ntuples:
            return []
        loading = _loading(raw, connection)
        loading.set_pgresult(result)
        rows: list[tuple[Any, ...]] = loading.load_rows(0, result.ntuples, tuple)
        return rows


def _fetched(
    cursor: CursorWrapper, sql: str, params: Sequence[Any]
) -> list[tuple[Any, ...]]:
    with cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def _params(params: Sequence[Any], raw: Any) -> list[bytes | None] | None:
    try:
        text = [None if value is None else _param(value) for value in params]
    except _NotText:
        return None
    try:  # names, keys and ids are ASCII, the same in every encoding
        return [None if each is None else each.encode("ascii") for each in text]
    except UnicodeEncodeError:
        encoding = raw.info.encoding
        return [None if each is None else each.encode(encoding) for each in text]


class _NotText(Exception):
    """A parameter of a type :func:`_param` does not write: a cursor binds it."""


def _param(value: Any) -> str:
    """``value`` in PostgreSQL's text input form."""
    write = _WRITERS.get(type(value))
    if write is None:
        raise _NotText
    return write(value)


def _array(values: Sequence[Any]) -> str:
    return "{" + ",".join(_element(value) for value in values) + "}"


def _element(value: Any) -> str:
    if value is None:
        return "NULL"
    write = _WRITERS.get(type(value))
    if write is None or write is _array:
        raise _NotText
    text = write(value)
    if isinstance(value, str):  # quoted, so commas, braces and NULL stay text
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def _interval(value: timedelta) -> str:
    return f"{value // _MICROSECOND} microseconds"


_MICROSECOND = timedelta(microseconds=1)
_WRITERS: dict[type, Callable[[Any], str]] = {
    int: str,
    str: str,
    uuid.UUID: str,
    timedelta: _interval,
    list: _array,
}


@functools.lru_cache(maxsize=256)
def _named(sql: str) -> tuple[bytes, bytes]:
    """A name for ``sql`` (the same in every process) and its text with
    ``$n`` placeholders, which is what psycopg sends for ``%s`` too."""
    if "%%" in sql or "%(" in sql:
        raise ValueError("signalbox's statements use only %s placeholders")
    numbers = iter(range(1, sql.count("%s") + 1))
    numbered = re.sub("%s", lambda _: f"${next(numbers)}", sql)
    digest = hashlib.blake2b(sql.encode(), digest_size=8).hexdigest()
    return f"signalbox_{digest}".encode(), numbered.encode()


def _loading(raw: Any, connection: BaseDatabaseWrapper) -> Any:
    # One psycopg Transformer per connection, as a cursor keeps one for all
    # its statements: it builds each column type's loader once, not per row
    # set. It lives on the connection (see _execute's names) and is used
    # under the connection's lock.
    try:
        return raw._signalbox_loading
    except AttributeError:
        from psycopg.adapt import Transformer

        raw._signalbox_loading = Transformer(_adapting(raw, connection))
        return raw._signalbox_loading


def _adapting(raw: Any, connection: BaseDatabaseWrapper) -> Any:
    """What the rows are typed by: the connection's own adapters (Django's),
    with psycopg's timestamptz loader back where Django's would give the same.

    Django's loader (a Python subclass of psycopg's, which then sets the
    Django time zone) costs a claim more than a quarter of its Python time;
    psycopg's own, compiled when ``psycopg[binary]`` or ``[c]`` is installed,
    returns the same aware UTC datetime wherever Django's time zone and the
    session's are both UTC (``USE_TZ = True``, the default).
    """
    if connection.timezone is not UTC or (
        raw.pgconn.parameter_status(b"TimeZone") != b"UTC"
    ):
        return raw
    from psycopg.adapt import AdaptersMap
    from psycopg.types.datetime import TimestamptzLoader

    adapters = AdaptersMap(raw.adapters)
    adapters.register_loader("timestamptz", TimestamptzLoader)
    return SimpleNamespace(adapters=adapters, connection=raw)


def _fast_connection(connection: BaseDatabaseWrapper) -> Any:
    # Execute wrappers are shown every statement: only a cursor's.
    if connection.execute_wrappers or not _statements.may_prepare(connection):
        return None
    raw = connection.connection
    manager = getattr(raw, "_prepared", None)
    if getattr(raw, "pgconn", None) is None or getattr(raw, "_pipeline", True):
        return None  # not psycopg 3, or a pipeline psycopg is running
    # Where psycopg has prepared statements of its own, its next rollback
    # deallocates every statement, ours too.
    if getattr(manager, "_prepared_idx", 1) != 0:
        return None
    return raw


@functools.cache
def _psycopg() -> tuple[Any, Any]:
    # Imported on first use: a project on SQLite need not have psycopg.
    from psycopg import errors, pq

    return errors, pq


def _execute(raw: Any, name: bytes, sql: bytes, params: Sequence[bytes | None]) -> Any:
    errors, pq = _psycopg()
    # The names prepared on a connection live in an attribute of it, so they
    # go with it (a WeakKeyDictionary would build a weakref per send).
    try:
        names: set[bytes] = raw._signalbox_prepared
    except AttributeError:
        names = raw._signalbox_prepared = set()
    pgconn = raw.pgconn
    for _ in range(2):
        if name not in names:
            result = pgconn.prepare(name, sql)
            if result.status != pq.ExecStatus.COMMAND_OK:
                raise errors.error_from_result(result, encoding=raw.info.encoding)
            names.add(name)
        idle = pgconn.transaction_status == pq.TransactionStatus.IDLE
        result = pgconn.exec_prepared(name, params)
        if result.status in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
            return result
        error = errors.error_from_result(result, encoding=raw.info.encoding)
        if error.sqlstate != _INVALID_STATEMENT_NAME:
            raise error
        names.discard(name)  # deallocated behind our back (DISCARD ALL, ...)
        if not idle:
            raise error  # it aborted the caller's transaction: nothing to retry
    raise error


@functools.lru_cache(maxsize=64)
def _statement(count: int, ids: bool, wake: bool) -> tuple[bytes, bytes]:
    numbers = iter(range(1, 7 * count + 1))
    rows = [_ROW.format(*(next(numbers) for _ in range(7))) for _ in range(count)]
    sql = _statements.compose_insert(rows, ids, notify=wake)
    name = f"signalbox_insert_{count}_{'i' if ids else ''}{'w' if wake else ''}"
    return name.encode(), sql.encode()


def _through_a_cursor(
    connection: BaseDatabaseWrapper,
    rows: Sequence[tuple[str, str, str, str, int, str, int]],
    ids: bool,
    wake: bool,
) -> list[int]:
    statement = _statements.insert("postgresql", rows, ids, wake)
    assert statement is not None  # PostgreSQL always has one
    with connection.cursor() as cursor:
        cursor.execute(*statement)
        return [each[0] for each in cursor.fetchall()] if ids else []
