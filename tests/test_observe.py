"""The observe warnings: slow receivers, and send() holding a running event loop.

Thresholds come from ``settings.SIGNALBOX``, which signalbox caches and
re-reads when ``setting_changed`` says it changed; the tests set small
limits through pytest-django's ``settings`` fixture and sleep a little past
them.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import Signal as DjangoSignal

import signalbox
from tests.testapp.models import Order

ticked = signalbox.Signal()
django_ticked = DjangoSignal()

OBSERVE = "signalbox.observe"
SLEEP = 0.02  # seconds: four times SLOW_RECEIVER_MS below
SIGNAL_NAMES = {
    "signalbox": "tests.test_observe.ticked",
    "django": "tests.test_observe.django_ticked",
}


@pytest.fixture(params=["signalbox", "django"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def signal(kind: str) -> DjangoSignal:
    return ticked if kind == "signalbox" else django_ticked


@pytest.fixture
def limits(settings: Any) -> None:
    settings.SIGNALBOX = {"SLOW_RECEIVER_MS": 5, "LOOP_BLOCK_MS": 20}


def observed(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == OBSERVE and r.levelno == logging.WARNING
    ]


def slow_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in observed(caplog) if "Slow signal receiver" in r.getMessage()]


def loop_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in observed(caplog) if "blocked the running event loop" in r.msg]


def sleeper(seconds: float = SLEEP) -> Callable[..., None]:
    def slow(sender: object, **kwargs: Any) -> None:
        time.sleep(seconds)

    return slow


def fast(sender: object, **kwargs: Any) -> None:
    pass


def also_fast(sender: object, **kwargs: Any) -> None:
    pass


def longer(sender: object, **kwargs: Any) -> None:
    time.sleep(0.03)


def shorter(sender: object, **kwargs: Any) -> None:
    time.sleep(0.002)


def async_sleeper(seconds: float = SLEEP) -> Callable[..., Any]:
    async def slow_coroutine(sender: object, **kwargs: Any) -> None:
        await asyncio.sleep(seconds)

    return slow_coroutine


def assert_names_slow(
    record: logging.LogRecord, signal_name: str, receiver: Callable[..., Any]
) -> None:
    message = record.getMessage()
    assert f"{__name__}.{receiver.__qualname__}" in message
    assert signal_name in message
    assert "testapp.Order" in message
    assert 'run="on_commit"' in message
    assert 'run="background"' in message
    assert record.signalbox_duration_ms >= SLEEP * 1000 * 0.9  # type: ignore[attr-defined]
    assert f"{record.signalbox_duration_ms:.1f} ms" in message  # type: ignore[attr-defined]


# -- slow receivers ---------------------------------------------------------------


def test_a_slow_receiver_logs_one_warning(
    connect: Callable[..., Any],
    signal: DjangoSignal,
    kind: str,
    limits: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    slow = connect(signal, sleeper())
    connect(signal, fast)

    signal.send(sender=Order)

    [record] = [r for r in observed(caplog) if ".fast " not in r.getMessage()]
    assert_names_slow(record, SIGNAL_NAMES[kind], slow)


def test_fast_receivers_log_nothing(
    connect: Callable[..., Any],
    signal: DjangoSignal,
    settings: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Roomier than the other tests' 5 ms: a loaded machine must not fail it.
    settings.SIGNALBOX = {"SLOW_RECEIVER_MS": 50}
    connect(signal, fast)
    connect(signal, also_fast)

    signal.send(sender=Order)
    signal.send_robust(sender=Order)

    assert observed(caplog) == []


def test_the_threshold_follows_setting_changes(
    connect: Callable[..., Any],
    signal: DjangoSignal,
    settings: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    connect(signal, sleeper())

    signal.send(sender=Order)  # the default, 250 ms
    settings.SIGNALBOX = {"SLOW_RECEIVER_MS": 1000}
    signal.send(sender=Order)
    assert observed(caplog) == []

    settings.SIGNALBOX = {"SLOW_RECEIVER_MS": 5}
    signal.send(sender=Order)
    assert len(slow_warnings(caplog)) == 1


@pytest.mark.parametrize("via", ["send", "asend"])
async def test_a_slow_coroutine_receiver_logs_one_warning(
    connect: Callable[..., Any],
    signal: DjangoSignal,
    kind: str,
    limits: None,
    caplog: pytest.LogCaptureFixture,
    via: str,
) -> None:
    slow = connect(signal, async_sleeper())

    if via == "asend":
        await signal.asend(sender=Order)
    else:
        # send() from a thread with no running loop, as sync code calls it.
        await asyncio.to_thread(signal.send, sender=Order)

    [record] = slow_warnings(caplog)
    assert_names_slow(record, SIGNAL_NAMES[kind], slow)
    assert loop_warnings(caplog) == []


@pytest.mark.django_db
def test_a_slow_model_signal_receiver_names_the_model_signal(
    connect: Callable[..., Any], limits: None, caplog: pytest.LogCaptureFixture
) -> None:
    slow = connect(post_save, sleeper(), sender=Order)

    Order.objects.create(number="1")

    [record] = observed(caplog)
    assert_names_slow(record, "django.db.models.signals.post_save", slow)


@pytest.mark.django_db(transaction=True)
def test_a_slow_on_commit_receiver_warns_once_at_the_commit(
    connect: Callable[..., Any],
    signal: DjangoSignal,
    kind: str,
    limits: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    slow = connect(signal, sleeper(), run="on_commit")

    with transaction.atomic():
        signal.send(sender=Order)
        assert observed(caplog) == []

    [record] = observed(caplog)
    assert_names_slow(record, SIGNAL_NAMES[kind], slow)


@pytest.mark.django_db(transaction=True)
def test_a_slow_on_commit_receiver_outside_a_transaction_warns_once(
    connect: Callable[..., Any],
    signal: DjangoSignal,
    kind: str,
    limits: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Run at once, it is still one slow call: one warning, not one from the
    adapter and another from the signal timing the adapter."""
    slow = connect(signal, sleeper(), run="on_commit")

    signal.send(sender=Order)

    [record] = observed(caplog)
    assert_names_slow(record, SIGNAL_NAMES[kind], slow)


# -- send() on a running event loop -------------------------------------------------


@pytest.fixture
def loop_limits(settings: Any) -> None:
    settings.SIGNALBOX = {"SLOW_RECEIVER_MS": 1000, "LOOP_BLOCK_MS": 20}


@pytest.mark.parametrize("method", ["send", "send_robust"])
async def test_send_on_a_running_loop_names_each_receivers_share(
    connect: Callable[..., Any],
    loop_limits: None,
    caplog: pytest.LogCaptureFixture,
    method: str,
) -> None:
    connect(ticked, shorter)
    connect(ticked, longer)

    getattr(ticked, method)(sender=Order)

    [record] = observed(caplog)
    message = record.getMessage()
    # The method that was called, and its own async twin.
    assert (
        f"tests.test_observe.ticked.{method}() blocked the running event loop"
        in message
    )
    assert "testapp.Order" in message
    assert f"await ticked.a{method}(...)" in message
    assert record.signalbox_blocked_ms >= 30  # type: ignore[attr-defined]
    # Each receiver with its time and share, the biggest share first.
    shares = re.findall(rf"{__name__}\.(\w+) [\d.]+ ms \((\d+)%\)", message)
    assert [name for name, _ in shares] == ["longer", "shorter"]
    assert int(shares[0][1]) > int(shares[1][1])


async def test_slow_receivers_and_the_blocked_loop_are_each_reported(
    connect: Callable[..., Any], limits: None, caplog: pytest.LogCaptureFixture
) -> None:
    connect(ticked, sleeper())
    connect(ticked, sleeper())

    ticked.send(sender=Order)

    assert len(slow_warnings(caplog)) == 2
    assert len(loop_warnings(caplog)) == 1


async def test_a_short_send_on_a_running_loop_logs_nothing(
    connect: Callable[..., Any], settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.SIGNALBOX = {"LOOP_BLOCK_MS": 50}
    connect(ticked, fast)
    connect(ticked, also_fast)

    ticked.send(sender=Order)

    assert observed(caplog) == []


async def test_asend_does_not_block_the_loop(
    connect: Callable[..., Any], loop_limits: None, caplog: pytest.LogCaptureFixture
) -> None:
    connect(ticked, longer)
    connect(ticked, shorter)

    await ticked.asend(sender=Order)

    assert observed(caplog) == []


def test_send_without_a_running_loop_does_not_warn_about_loops(
    connect: Callable[..., Any], loop_limits: None, caplog: pytest.LogCaptureFixture
) -> None:
    connect(ticked, longer)
    connect(ticked, shorter)

    ticked.send(sender=Order)

    assert observed(caplog) == []
