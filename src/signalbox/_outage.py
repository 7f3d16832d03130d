"""A lost database connection: told apart from other errors, and said once.

When the database goes away (a restart, a failover, a network cut), every
thread of a worker or relay that talks to it (claims, heartbeat,
acknowledgements, ``LISTEN``, receivers) finds out on its own, and again at
every retry until it is back. Logging each of those buried what mattered
under hundreds of lines and tracebacks. So a process keeps, per database
alias, one *outage* at a time: the first lost connection logs one WARNING
saying what it affected; every later one, and every traceback, goes to
DEBUG; the first statement that succeeds again logs one INFO saying how long
the database was gone and what was affected meanwhile. Each place that
retries (a :class:`Site`) waits a capped, jittered backoff between attempts.

Any other error (a bug, a constraint, a syntax error, a statement timeout)
is not an outage: a :class:`Site` logs it at ERROR with its traceback.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from dataclasses import dataclass, field

from django.db import connections
from django.db.utils import Error

from signalbox import _forks

FIRST_PAUSE = 0.1
"""Seconds a :class:`Site` waits after its first failure; doubled after each."""

LONGEST_PAUSE = 5.0
"""The most a :class:`Site` waits between two attempts."""

_LOST_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})
"""PostgreSQL's admin_shutdown (a terminated backend), crash_shutdown and
cannot_connect_now (starting up, shutting down, in recovery); class 08
(connection_exception) is lost too."""

_CONNECTION_ERRORS = frozenset({"OperationalError", "InterfaceError"})
"""The DB-API classes (or their subclasses) a lost connection is raised as."""

_LOST_MYSQL = frozenset({2002, 2003, 2006, 2013, 2055})
"""MySQL client errors: cannot connect (socket, TCP), server gone away, lost
during a query, lost at the start of one."""


def is_lost_connection(error: BaseException) -> bool:
    """Whether ``error`` says the database connection was lost or refused.

    True for a driver's ``OperationalError`` or ``InterfaceError`` (psycopg
    3, psycopg2, mysqlclient), or Django's wrapper of one, that the client
    raised about the connection itself (it carries no SQLSTATE) or that the
    server raised as it shut the session down or refused it
    (``57P01``-``57P03``, class ``08``; MySQL's 2002, 2003, 2006, 2013,
    2055); and for psycopg's bare ``DatabaseError`` without a SQLSTATE,
    which is what a statement run through libpq directly (the outbox's
    prepared statements) gets when the server went away. False for anything
    else, including operational errors a live connection reports: a
    deadlock, a serialization failure, a statement timeout, SQLite's
    "database is locked" or "no such table".
    """
    if isinstance(error, Error):
        # Django's wrapper: what went wrong is the driver's error it wraps.
        cause = error.__cause__
        return cause is not None and _driver_lost(cause)
    return _driver_lost(error)


def _driver_lost(error: BaseException) -> bool:
    kind = type(error)
    names = {base.__name__ for base in kind.__mro__}
    module = kind.__module__
    if module.startswith("psycopg"):  # psycopg 3 and psycopg2
        code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        if code is not None:
            return code in _LOST_SQLSTATES or code.startswith("08")
        # Without a SQLSTATE the client raised it: about the connection,
        # unless its class says otherwise (DataError: a value psycopg cannot
        # send, say). A bare DatabaseError is a libpq result without one.
        return bool(names & _CONNECTION_ERRORS) or kind.__name__ == "DatabaseError"
    if not names & _CONNECTION_ERRORS:
        return False
    if module.startswith("MySQLdb"):
        number = error.args[0] if error.args else None
        return number in _LOST_MYSQL or "InterfaceError" in names
    return False


@dataclass
class _Outage:
    """One stretch of time in which database ``using`` could not be reached."""

    using: str
    log: logging.Logger
    began: float = field(default_factory=time.monotonic)
    affected: list[str] = field(default_factory=list)
    failures: int = 0


class _Outages:
    """This process's open outages, by database alias."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.open: dict[str, _Outage] = {}
        # How many outages each alias has had: a thread that saw fewer may
        # hold a connection that died in the last one (see recheck()).
        self.count: dict[str, int] = {}
        # When each alias's last outage ended (monotonic; see since_back()).
        self.ended: dict[str, float] = {}
        _forks.renew_in_children(self, _Outages._forget_parent)

    def _forget_parent(self) -> None:
        self._lock = threading.Lock()
        self.open, self.count, self.ended = {}, {}, {}

    def lost(
        self, error: BaseException, using: str, affected: str, log: logging.Logger
    ) -> None:
        with self._lock:
            outage = self.open.get(using)
            first = outage is None
            if outage is None:
                outage = self.open[using] = _Outage(using, log)
                self.count[using] = self.count.get(using, 0) + 1
            outage.failures += 1
            if affected not in outage.affected:
                outage.affected.append(affected)
        if first:
            log.warning(
                "Lost the connection to database %r (%s: %s); retrying quietly "
                "until it is back.",
                using,
                affected,
                _first_line(error),
            )
        log.debug("Database %r unreachable (%s).", using, affected, exc_info=error)

    def back(self, using: str) -> None:
        if using not in self.open:  # the usual case, without the lock
            return
        with self._lock:
            outage = self.open.pop(using, None)
            if outage is not None:
                self.ended[using] = time.monotonic()
        if outage is None:
            return
        outage.log.info(
            "The connection to database %r is back after %.1f s; affected "
            "meanwhile: %s (%d failed attempts, retried).",
            using,
            time.monotonic() - outage.began,
            ", ".join(outage.affected),
            outage.failures,
        )


_outages = _Outages()
_seen = threading.local()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def lost(
    error: BaseException, *, using: str, affected: str, log: logging.Logger
) -> bool:
    """If ``error`` is a lost connection to ``using`` (:func:`is_lost_connection`),
    note it in this process's outage of ``using`` and return True: the first
    of an outage logs one WARNING on ``log`` naming ``affected`` (what could
    not be done, e.g. ``"claims"``), every one a DEBUG line with the
    traceback. Otherwise log nothing and return False."""
    if not is_lost_connection(error):
        return False
    _outages.lost(error, using, affected, log)
    return True


def receiver_lost(error: BaseException, *, using: str, log: logging.Logger) -> bool:
    """Like :func:`lost`, for an error a receiver raised: True (and noted in
    the outage of ``using``) only if ``using`` is down, as this thread's own
    connection to it shows. A receiver's lost connection to another database,
    or one of its own making, is its own failure: False, for the caller to
    log as such."""
    if not is_lost_connection(error):
        return False
    if not is_down(using) and _answers(using):
        return False
    _outages.lost(error, using, "receivers", log)
    return True


def _answers(using: str) -> bool:
    connection = connections[using]
    if connection.in_atomic_block:  # the caller's transaction: not ours to probe
        return True
    try:
        connection.ensure_connection()
    except Exception:  # refused: it is down
        return False
    return connection.is_usable()


def back(using: str) -> None:
    """Say that a statement on ``using`` succeeded: if an outage was open, it
    ends with one INFO line (how long, what was affected). Cheap when none is."""
    _outages.back(using)


def is_down(using: str) -> bool:
    """Whether this process is in an outage of ``using`` (a lost connection was
    seen, and no statement has succeeded since)."""
    return using in _outages.open


def since_back(using: str) -> float:
    """Seconds since this process's last outage of ``using`` ended: 0 while
    one is open, infinity when there was none."""
    if is_down(using):
        return 0.0
    ended = _outages.ended.get(using)
    return math.inf if ended is None else time.monotonic() - ended


def recheck(using: str) -> None:
    """Close this thread's connection to ``using`` if it died in an outage this
    thread has not looked at yet, so that its next statement reconnects
    instead of failing (a thread idle through the outage would otherwise
    find out with its next delivery's receiver). One ``SELECT 1`` per thread
    and outage; nothing otherwise, and nothing inside ``atomic()``."""
    count = _outages.count.get(using, 0)
    seen: dict[str, int] = _seen.__dict__.setdefault("count", {})
    if seen.get(using, 0) == count:
        return
    seen[using] = count
    connection = connections[using]
    if connection.connection is None or connection.in_atomic_block:
        return
    if not connection.is_usable():
        connection.close()


class Site:
    """One place that talks to database ``using`` on its own schedule and
    tries again when that fails (the worker's claims, its heartbeat, the
    relay's passes...), named by ``affected`` in the outage's log lines."""

    def __init__(self, using: str, affected: str, log: logging.Logger) -> None:
        self.using = using
        self.affected = affected
        self.log = log
        self._pause = 0.0

    def failed(self, error: BaseException, message: str, *args: object) -> float:
        """Report ``error``; returns the seconds to wait before trying again.

        A lost connection is noted in the outage (see :func:`lost`); any other
        error is logged at ERROR as ``message % args``, with its traceback.
        The wait starts at :data:`FIRST_PAUSE` and doubles with each failure
        in a row, up to :data:`LONGEST_PAUSE`, drawn between half of that and
        all of it so that many processes do not retry in step.
        """
        if not lost(error, using=self.using, affected=self.affected, log=self.log):
            self.log.error(message, *args, exc_info=error)
        self._pause = min(max(self._pause * 2, FIRST_PAUSE), LONGEST_PAUSE)
        # The random module reseeds its generator in a forked child.
        return random.uniform(self._pause / 2, self._pause)  # noqa: S311 - jitter

    def ok(self, *, reached: bool = False) -> None:
        """Say the last attempt succeeded: the backoff starts again.

        An open outage of ``using`` ends (see :func:`back`) if ``reached``
        (the caller knows its own connection reached the database) or if this
        thread's connection to ``using`` answers a ``SELECT 1``, asked only
        while an outage is open: an attempt may have succeeded without a
        statement (nothing was due), on a connection the outage has killed,
        which is then closed.
        """
        self._pause = 0.0
        if is_down(self.using) and (reached or _reached(self.using)):
            back(self.using)


def _reached(using: str) -> bool:
    connection = connections[using]
    if connection.connection is None:
        return False
    if connection.is_usable():
        return True
    connection.close()
    return False
