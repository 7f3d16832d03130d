"""Bugs found and fixed, each with the test that failed before the fix."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from django.test import override_settings

import signalbox
from tests import settings as test_settings


def sleepy(sender: object, **kwargs: Any) -> None:
    time.sleep(0.03)


@pytest.mark.django_db(transaction=True)
def test_a_deferred_receiver_that_runs_at_once_is_reported_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The adapter timed the receiver, and the send loop then timed the adapter
    # and warned again, advising run="on_commit" to an on_commit receiver.
    signal = signalbox.Signal()
    signalbox.connect(signal, sleepy, run="on_commit")
    with (
        override_settings(SIGNALBOX={"SLOW_RECEIVER_MS": 10}),
        caplog.at_level(logging.WARNING, logger="signalbox.observe"),
    ):
        signal.send(sender=None)
    slow = [r for r in caplog.records if "Slow signal receiver" in r.getMessage()]
    assert len(slow) == 1
    assert "test_regressions.sleepy" in slow[0].getMessage()


@pytest.mark.django_db(transaction=True)
def test_a_slow_on_commit_receiver_is_not_told_to_use_on_commit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    signal = signalbox.Signal()
    signalbox.connect(signal, sleepy, run="on_commit")
    with (
        override_settings(SIGNALBOX={"SLOW_RECEIVER_MS": 10}),
        caplog.at_level(logging.WARNING, logger="signalbox.observe"),
    ):
        signal.send(sender=None)
    [message] = [r.getMessage() for r in caplog.records]
    assert 'connect it with run="on_commit"' not in message
    assert 'run="background"' in message


def bg_receiver(sender: object, **kwargs: Any) -> None:
    pass


@pytest.mark.django_db(transaction=True)
async def test_a_background_send_from_a_running_loop_says_to_use_asend() -> None:
    from django.core.exceptions import SynchronousOnlyOperation

    signal = signalbox.Signal()
    signalbox.connect(signal, bg_receiver, run="background")
    with pytest.raises(SynchronousOnlyOperation, match=r"await signal.asend"):
        signal.send(sender=None)


@pytest.mark.django_db(transaction=True)
def test_a_delivery_that_goes_dead_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    from datetime import timedelta

    from signalbox.worker import Worker

    signal = signalbox.Signal()
    signalbox.connect(
        signal,
        always_fails,
        run="background",
        retries=1,
        backoff=signalbox.Backoff(base=timedelta(0), cap=timedelta(0)),
    )
    signal.send(sender=None)
    with caplog.at_level(logging.ERROR, logger="signalbox.worker"):
        Worker(burst=True).run()
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "is dead after attempt 1 of 1 (max_attempts)" in record.getMessage()


def always_fails(sender: object, **kwargs: Any) -> None:
    raise RuntimeError("down")


def fails_with_nul(sender: object, **kwargs: Any) -> None:
    raise ValueError("bad record: a\x00b")


@pytest.mark.django_db(transaction=True)
def test_an_error_with_a_nul_character_is_still_recorded() -> None:
    # PostgreSQL refuses NUL in text: the failure could not be recorded, the
    # row stayed executing until its lease ran out, and the traceback was lost.
    from signalbox.models import Delivery
    from signalbox.worker import Outcome, Worker

    signal = signalbox.Signal()
    signalbox.connect(signal, fails_with_nul, run="background", retries=1)
    signal.send(sender=None)
    assert Worker(burst=True).run().by_outcome == {Outcome.DEAD: 1}
    row = Delivery.objects.get()
    assert row.reason == "max_attempts"
    assert "ValueError: bad record: a\\x00b" in row.error


def test_sigterm_while_the_main_thread_holds_a_wait_lock_still_stops() -> None:
    # The handler called worker.stop(), which sets Events, from whatever
    # bytecode the main thread was at; leaving _wake.wait() it holds that
    # Event's lock, so SIGTERM hung the worker for good (1 run in 6 in the
    # reliability harness's SIGTERM scenario). Here another thread plays the
    # main thread, holding every Event's lock while the handler runs.
    import asyncio
    import signal
    import threading

    from signalbox.worker import Worker, install_signal_handlers

    worker = Worker(concurrency=1)
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    install_signal_handlers(worker)
    handle = signal.getsignal(signal.SIGTERM)
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    events = [v for v in vars(worker).values() if isinstance(v, threading.Event)]
    assert callable(handle)
    assert events

    def signalled_while_waiting() -> None:
        for event in events:
            event._cond.acquire()  # type: ignore[attr-defined]
        handle(signal.SIGTERM, None)
        for event in events:
            event._cond.release()  # type: ignore[attr-defined]

    main = threading.Thread(target=signalled_while_waiting, daemon=True)
    main.start()
    main.join(timeout=5)
    assert not main.is_alive(), "the signal handler deadlocked"
    assert worker.stopping.wait(timeout=5)
    for value in vars(worker).values():
        if isinstance(value, asyncio.AbstractEventLoop):
            value.close()


def nested_ok(sender: object, **kwargs: Any) -> None:
    pass


@pytest.mark.skipif(
    test_settings.ENGINE == "mysql",
    reason="MariaDB refuses such a payload at the send "
    "(test_mysql.py::test_mariadb_refuses_a_payload_nested_32_deep_at_the_send)",
)
@pytest.mark.django_db(transaction=True)
def test_a_payload_too_deep_to_parse_is_dead_and_spares_its_batch() -> None:
    # The claim parsed every payload of its batch; JSON nested deeper than
    # Python's parser goes raised RecursionError there, after the rows were
    # leased, so the whole batch sat executing until the lease expired, over
    # and over, and the deep row ended dead as lease_expired, never as
    # decode_error (found by the reliability harness's fuzzed payloads).
    from django.db import connection

    from signalbox import outbox
    from signalbox._states import State
    from signalbox.models import Delivery
    from signalbox.worker import Worker

    signal = signalbox.Signal()
    signalbox.connect(signal, nested_ok, run="background", retries=2)
    signal.send(sender=None, n=1)
    [key] = Delivery.objects.values_list("receiver", flat=True)
    [deep] = outbox.enqueue(
        [outbox.NewDelivery(signal="x", receiver=key, payload={}, max_attempts=2)],
        using="default",
        ids=True,
    )
    # SQLite's CHECK (json_valid) refuses more than 1,000 levels: just under.
    postgres = connection.vendor == "postgresql"
    depth = 5000 if postgres else 990
    text = '{"sender": null, "kwargs": ' + "[" * depth + "]" * depth + "}"
    cast = "::jsonb" if postgres else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE signalbox_delivery SET payload = %s{cast} WHERE id = %s",
            [text, deep],
        )
    Worker(burst=True, concurrency=2).run()
    rows = dict(Delivery.objects.values_list("id", "state"))
    assert rows.pop(deep) == State.DEAD
    assert list(rows.values()) == [State.COMPLETED]
    dead = Delivery.objects.values_list("reason", "attempt").get(id=deep)
    assert dead == ("decode_error", 1)
    assert Delivery.objects.values_list("attempt").exclude(id=deep).get() == (1,)
