"""A database outage is a few log lines, not a traceback per retry.

The errors here are real: connections refused by a closed port, a session
the server terminated, a statement the server cancelled, SQLite's own
errors. The "flaky" alias is the test database behind a port that refuses
until :func:`come_back` points it at the server again.
"""

from __future__ import annotations

import copy
import logging
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connections
from django.db.utils import (
    DatabaseError,
    IntegrityError,
    OperationalError,
    ProgrammingError,
    load_backend,
)
from django.test import override_settings
from django.utils import timezone

import signalbox
from signalbox import _outage, conf, outbox
from signalbox.engines.relay import Relay
from signalbox.engines.remote import deliver
from signalbox.models import Delivery
from signalbox.outbox import _libpq
from signalbox.outbox._conflicts import is_conflict
from signalbox.worker import Outcome, Worker
from signalbox.worker._acks import Acknowledger
from signalbox.worker._housekeeping import rescue_expired

pytestmark = pytest.mark.django_db(transaction=True)

FLAKY = "flaky"

logger = logging.getLogger("signalbox.worker")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _needs_a_server() -> None:
    if connections["default"].vendor == "sqlite":
        pytest.skip("SQLite has no server to lose")


def _wrapper(alias: str, **overrides: Any) -> Any:
    """A connection of its own to the test database, ``overrides`` applied."""
    settings = {**copy.deepcopy(connections["default"].settings_dict), **overrides}
    return load_backend(settings["ENGINE"]).DatabaseWrapper(settings, alias)


def _raised(action: Callable[[], object]) -> BaseException:
    with pytest.raises(DatabaseError) as caught:
        action()
    return caught.value


def _refused() -> BaseException:
    wrapper = _wrapper("refused", PORT=str(_closed_port()))
    return _raised(wrapper.ensure_connection)


def _terminated() -> BaseException:
    """The error of a statement on a session the server has terminated."""
    victim = _wrapper("victim")
    try:
        with victim.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            (pid,) = cursor.fetchone()
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])

        def query() -> None:
            with victim.cursor() as cursor:
                cursor.execute("SELECT 1")

        return _raised(query)
    finally:
        victim.close()


@pytest.fixture
def flaky() -> Iterator[Callable[[], None]]:
    """The alias FLAKY on this thread, refusing connections; call the result
    to bring it back. Not in ``DATABASES`` (the test case would forbid it):
    a connection made here, as Django allows."""
    _needs_a_server()
    connections[FLAKY] = wrapper = _wrapper(FLAKY, PORT=str(_closed_port()))

    def come_back() -> None:
        wrapper.settings_dict["PORT"] = connections["default"].settings_dict["PORT"]

    try:
        yield come_back
    finally:
        _outage.back(FLAKY)
        wrapper.close()
        del connections[FLAKY]


def _lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


# -- telling a lost connection from other errors -------------------------------


def test_a_refused_connection_is_lost() -> None:
    _needs_a_server()
    assert _outage.is_lost_connection(_refused())


def test_a_session_the_server_terminated_is_lost() -> None:
    if connections["default"].vendor != "postgresql":
        pytest.skip("pg_terminate_backend is PostgreSQL's")
    error = _terminated()
    assert isinstance(error, OperationalError)
    assert _outage.is_lost_connection(error)
    assert not is_conflict(error)  # not run again as a deadlock's victim is
    # The driver's own error, as a receiver using psycopg directly sees it.
    assert _outage.is_lost_connection(error.__cause__)  # type: ignore[arg-type]


def test_a_prepared_statement_on_a_terminated_session_is_lost() -> None:
    # The outbox's statements go through libpq itself, whose error for a
    # server gone away is a bare DatabaseError: "Claiming failed" was logged
    # with its traceback at ERROR, in the middle of an outage.
    if connections["default"].vendor != "postgresql":
        pytest.skip("the libpq path is PostgreSQL's")
    victim = _wrapper("victim")
    try:
        assert _libpq.run(victim, "SELECT %s::int + 1", [1]) == [(2,)]
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [_pid(victim)])
        error = _raised(lambda: _libpq.run(victim, "SELECT %s::int + 1", [1]))
    finally:
        victim.close()
    assert _outage.is_lost_connection(error)


def _pid(wrapper: Any) -> int:
    return int(wrapper.connection.info.backend_pid)


def test_a_cancelled_statement_is_not_lost() -> None:
    if connections["default"].vendor != "postgresql":
        pytest.skip("statement_timeout is PostgreSQL's")
    wrapper = _wrapper("timeout")

    def slow() -> None:
        with wrapper.cursor() as cursor:
            cursor.execute("SET statement_timeout = 20")
            cursor.execute("SELECT pg_sleep(1)")

    try:
        error = _raised(slow)
    finally:
        wrapper.close()
    assert isinstance(error, OperationalError)  # an operational error, alive
    assert not _outage.is_lost_connection(error)


def test_sqlite_errors_and_mistakes_are_not_lost() -> None:
    # Its own settings, not the test database's (MariaDB's OPTIONS are not
    # SQLite's).
    lite = _wrapper(
        "lite", ENGINE="django.db.backends.sqlite3", NAME=":memory:", OPTIONS={}
    )

    def query(sql: str) -> Callable[[], None]:
        def run() -> None:
            with lite.cursor() as cursor:
                cursor.execute(sql)

        return run

    try:
        missing = _raised(query("SELECT * FROM no_such_table"))
        query("CREATE TABLE t (id integer PRIMARY KEY)")()
        query("INSERT INTO t VALUES (1)")()
        twice = _raised(query("INSERT INTO t VALUES (1)"))
    finally:
        lite.close()
    assert isinstance(missing, OperationalError)
    assert isinstance(twice, IntegrityError)
    assert not _outage.is_lost_connection(missing)
    assert not _outage.is_lost_connection(twice)
    assert not _outage.is_lost_connection(ProgrammingError("not wrapped"))
    assert not _outage.is_lost_connection(ValueError("no database at all"))


# -- said once per outage ------------------------------------------------------


def test_an_outage_is_one_warning_then_one_info(
    flaky: Callable[[], None], caplog: pytest.LogCaptureFixture
) -> None:
    log = logging.getLogger("signalbox.worker")
    caplog.set_level(logging.DEBUG, logger="signalbox")
    error = _raised(connections[FLAKY].ensure_connection)
    for affected in ("claims", "claims", "LISTEN", "heartbeat and rescue"):
        assert _outage.lost(error, using=FLAKY, affected=affected, log=log)
    assert _outage.is_down(FLAKY)
    [warning] = _lines(caplog, logging.WARNING)
    assert "Lost the connection to database 'flaky' (claims: " in warning
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(debug) == 4
    assert all(r.exc_info for r in debug)
    assert not _lines(caplog, logging.INFO)
    _outage.back(FLAKY)
    _outage.back(FLAKY)
    [info] = _lines(caplog, logging.INFO)
    assert "back after" in info
    assert "claims, LISTEN, heartbeat and rescue (4 failed attempts" in info
    assert not _outage.is_down(FLAKY)
    assert not any(r.exc_info for r in caplog.records if r.levelno > logging.DEBUG)
    # The next outage is said again.
    _outage.lost(error, using=FLAKY, affected="claims", log=log)
    assert len(_lines(caplog, logging.WARNING)) == 2


def test_other_errors_keep_their_traceback_at_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    site = _outage.Site("default", "claims", logging.getLogger("signalbox.worker"))
    caplog.set_level(logging.DEBUG, logger="signalbox")
    site.failed(ProgrammingError("relation does not exist"), "Claiming failed.")
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert record.exc_info
    assert not _outage.is_down("default")


def test_a_site_backs_off_doubling_to_a_cap_with_jitter(
    flaky: Callable[[], None],
) -> None:
    site = _outage.Site(FLAKY, "claims", logging.getLogger("signalbox.worker"))
    error = _raised(connections[FLAKY].ensure_connection)
    ceilings = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    for ceiling in ceilings:
        pause = site.failed(error, "unused")
        assert ceiling / 2 <= pause <= ceiling
    site.ok()
    assert site.failed(error, "unused") <= _outage.FIRST_PAUSE


def test_an_attempt_that_reached_nothing_does_not_end_the_outage(
    flaky: Callable[[], None],
) -> None:
    # A relay pass with nothing due ran no statement, and once ended every
    # outage within a tenth of a second: 48 lines for two outages.
    log = logging.getLogger("signalbox.engines")
    claims = _outage.Site(FLAKY, "claims", log)
    relay = _outage.Site(FLAKY, "relay passes", log)
    claims.failed(_raised(connections[FLAKY].ensure_connection), "unused")
    relay.ok()  # no connection: nothing shows the database is back
    assert _outage.is_down(FLAKY)
    flaky()
    relay.ok()
    assert _outage.is_down(FLAKY)
    connections[FLAKY].ensure_connection()  # this thread reached it
    relay.ok()
    assert not _outage.is_down(FLAKY)


def test_a_thread_drops_a_connection_that_died_in_an_outage() -> None:
    if connections["default"].vendor != "postgresql":
        pytest.skip("pg_terminate_backend is PostgreSQL's")
    found: dict[str, Any] = {}
    ready, terminated = threading.Event(), threading.Event()

    def idle_through_the_outage() -> None:
        try:
            with connections["default"].cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                found["pid"] = cursor.fetchone()[0]
            ready.set()
            terminated.wait(10)
            _outage.recheck("default")
            with connections["default"].cursor() as cursor:
                cursor.execute("SELECT 1")
                found["after"] = cursor.fetchone()[0]
        except Exception as error:  # reported to the test below
            found["error"] = error
        finally:
            connections.close_all()

    thread = threading.Thread(target=idle_through_the_outage)
    thread.start()
    assert ready.wait(10)
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [found["pid"]])
    log = logging.getLogger("signalbox.worker")
    try:
        assert _outage.lost(_terminated(), using="default", affected="t", log=log)
        terminated.set()
        thread.join(10)
    finally:
        _outage.back("default")
    assert found.get("after") == 1, found.get("error")


# -- at the sites: the worker, the relay, an engine's task ---------------------


def test_the_worker_claims_quietly_while_the_database_is_away(
    flaky: Callable[[], None], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="signalbox")
    worker = Worker(using=FLAKY, burst=True)
    for _ in range(3):
        assert worker._claim(10) == []
    flaky()
    assert worker._claim(10) == []
    assert [r.levelname for r in caplog.records if r.levelno >= logging.INFO] == [
        "WARNING",
        "INFO",
    ]
    assert "affected meanwhile: claims (3 failed attempts" in caplog.messages[-1]


def test_the_relay_passes_quietly_while_the_database_is_away(
    flaky: Callable[[], None], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="signalbox")
    relay = Relay(using=FLAKY)
    for _ in range(3):
        assert relay._pass() <= conf.get().poll.total_seconds()
    flaky()
    relay._pass()
    loud = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert [r.levelname for r in loud] == ["WARNING", "INFO"]
    assert "relay passes" in loud[0].getMessage()


def test_an_engine_task_runs_nothing_and_says_so_once(
    flaky: Callable[[], None], caplog: pytest.LogCaptureFixture, connect: Any
) -> None:
    connect(signalbox.Signal(), reaches_a_closed_port, run="background")
    caplog.set_level(logging.DEBUG, logger="signalbox")
    with override_settings(SIGNALBOX={"OUTBOX_DATABASES": ["default", FLAKY]}):
        for delivery_id in (1, 2, 3):
            assert deliver(delivery_id, engine="default", using=FLAKY) is None
        flaky()
        assert deliver(4, engine="default", using=FLAKY) is None  # no such row
    loud = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert [r.levelname for r in loud] == ["WARNING", "INFO"]
    assert "(engine tasks: " in loud[0].getMessage()
    assert "engine tasks (3 failed attempts" in loud[1].getMessage()


def test_the_worker_housekeeps_quietly_while_the_database_is_away(
    flaky: Callable[[], None], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="signalbox")
    worker = Worker(using=FLAKY, burst=True)
    for _ in range(3):
        worker.guarded(worker.rescue)
    flaky()
    worker.guarded(worker.rescue)
    loud = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert [r.levelname for r in loud] == ["WARNING", "INFO"]
    assert "(heartbeat and rescue: " in loud[0].getMessage()
    assert "heartbeat and rescue (3 failed attempts" in loud[1].getMessage()


def test_expired_leases_are_left_to_their_holders_for_a_lease_after_an_outage() -> None:
    # Every lease ran out while the database was away; the live workers
    # renew theirs within a third of a lease of being back. Taking the rows
    # back at once (the reliability scenario did, 4 s after the outage) ran
    # them twice.
    _needs_a_server()
    outbox.enqueue(
        [outbox.NewDelivery(signal="s", receiver="k", payload={})], using="default"
    )
    outbox.claim(
        worker="elsewhere",
        queues=["default"],
        receivers=["k"],
        limit=1,
        lease=timedelta(seconds=-1),  # run out already
        using="default",
    )
    _outage.lost(_refused(), using="default", affected="claims", log=logger)
    _outage.back("default")
    try:
        assert rescue_expired(using="default", log=logger) == 0
        lease = conf.get().lease.total_seconds()
        _outage._outages.ended["default"] -= lease  # a lease later
        assert rescue_expired(using="default", log=logger) == 1
    finally:
        _outage._outages.ended.pop("default", None)


def _claimed(delivery_id: int) -> outbox.Claimed:
    return outbox.Claimed(
        id=delivery_id,
        signal="s",
        receiver="r",
        payload=None,
        attempt=1,
        max_attempts=1,
        enqueued_at=timezone.now(),
        token=uuid.uuid4(),
    )


def test_deferred_completions_left_to_their_leases_say_the_outage_once(
    flaky: Callable[[], None], caplog: pytest.LogCaptureFixture
) -> None:
    # An engine task's deferred completions are not retried: every batch
    # during an outage went unwritten with a WARNING of its own.
    caplog.set_level(logging.DEBUG, logger="signalbox")
    acks = Acknowledger(FLAKY, retry=False, affected="deferred completions")
    batch = [_claimed(1), _claimed(2)]
    for _ in range(3):
        acks._write(batch)  # on this thread, which has the FLAKY alias
    flaky()
    acks._write(batch)  # rows nobody holds: written to none, but it got there
    loud = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert [r.levelname for r in loud] == ["WARNING", "INFO"]
    assert "(deferred completions: " in loud[0].getMessage()
    assert "deferred completions (3 failed attempts" in loud[1].getMessage()


ran: list[int] = []


def reaches_a_closed_port(sender: object, **kwargs: Any) -> None:
    """A receiver whose own connection (not the outbox's) is refused."""
    wrapper = _wrapper("receivers-own", PORT=str(_closed_port()))
    ran.append(1)
    wrapper.ensure_connection()


def test_a_receivers_own_lost_connection_is_its_failure(
    connect: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _needs_a_server()
    signal = signalbox.Signal()
    connect(signal, reaches_a_closed_port, run="background")
    signal.send(sender=None)
    caplog.set_level(logging.INFO, logger="signalbox")
    counts = Worker(burst=True, max_deliveries=1).run()
    assert counts.by_outcome == {Outcome.RETRYING: 1}
    assert Delivery.objects.get().state == "retryable"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("failed on attempt 1" in w for w in warnings), warnings
    assert not any("Lost the connection" in w for w in warnings), warnings
