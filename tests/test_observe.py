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
from asgiref.sync import sync_to_async
from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import Signal as DjangoSignal

import signalbox
from signalbox import registry
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


# -- a Django signal's send() on a running event loop (issue 12, item 7) -------------
#
# Django calls the receivers of its own signals; signalbox sees only the ones
# connected through it (each behind an adapter), and reports the send once
# the loop gets control back, which is when the block ends.


async def loop_regains_control() -> None:
    await asyncio.sleep(0)


def sent_by_django(signal: DjangoSignal, method: str = "send") -> None:
    """Send ``signal`` (Django's class) as a model save would, from this thread."""
    getattr(signal, method)(
        sender=Order, instance=Order(number="1"), created=True, using="default"
    )


@pytest.fixture(params=["django_ticked", "post_save"])
def django_signal(request: pytest.FixtureRequest) -> DjangoSignal:
    return django_ticked if request.param == "django_ticked" else post_save


@pytest.mark.parametrize("method", ["send", "send_robust"])
async def test_a_django_signals_send_on_a_running_loop_names_each_share(
    connect: Callable[..., Any],
    django_signal: DjangoSignal,
    loop_limits: None,
    caplog: pytest.LogCaptureFixture,
    method: str,
) -> None:
    connect(django_signal, shorter, sender=Order)
    connect(django_signal, longer, sender=Order)
    django_signal.connect(fast, sender=Order)  # Django's own: not timed
    try:
        sent_by_django(django_signal, method)
        await loop_regains_control()
    finally:
        django_signal.disconnect(fast, sender=Order)

    [record] = observed(caplog)
    message = record.getMessage()
    label = registry.signal_name(django_signal)
    short = label.rpartition(".")[2]
    assert f"{label}.{method}() blocked the running event loop for at least" in message
    assert "testapp.Order" in message
    assert f"await {short}.a{method}(...)" in message
    assert "(receivers connected through signalbox)" in message
    assert record.signalbox_blocked_ms >= 30  # type: ignore[attr-defined]
    shares = re.findall(rf"{__name__}\.(\w+) [\d.]+ ms \((\d+)%\)", message)
    assert [name for name, _ in shares] == ["longer", "shorter"]


async def test_each_django_send_on_a_running_loop_is_reported_on_its_own(
    connect: Callable[..., Any], loop_limits: None, caplog: pytest.LogCaptureFixture
) -> None:
    connect(django_ticked, longer, sender=Order)
    connect(post_save, shorter, sender=Order)

    sent_by_django(django_ticked)
    sent_by_django(django_ticked)
    sent_by_django(post_save)  # 2 ms: under the limit
    await loop_regains_control()

    records = loop_warnings(caplog)
    assert len(records) == 2
    assert all(
        "tests.test_observe.django_ticked.send()" in r.getMessage() for r in records
    )


async def test_a_django_send_in_a_sync_to_async_thread_does_not_block_the_loop(
    connect: Callable[..., Any],
    django_signal: DjangoSignal,
    loop_limits: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    connect(django_signal, longer, sender=Order)

    await sync_to_async(sent_by_django)(django_signal)
    await loop_regains_control()

    assert observed(caplog) == []


async def test_a_short_django_send_on_a_running_loop_logs_nothing(
    connect: Callable[..., Any],
    django_signal: DjangoSignal,
    settings: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings.SIGNALBOX = {"LOOP_BLOCK_MS": 50}
    connect(django_signal, fast, sender=Order)
    connect(django_signal, also_fast, sender=Order)

    sent_by_django(django_signal)
    await loop_regains_control()

    assert observed(caplog) == []


async def test_on_commit_receivers_of_a_django_signal_count_towards_the_block(
    connect: Callable[..., Any], loop_limits: None, caplog: pytest.LogCaptureFixture
) -> None:
    """No transaction can be open on the loop's thread: they run during the send."""
    connect(django_ticked, longer, sender=Order, run="on_commit")

    sent_by_django(django_ticked)
    await loop_regains_control()

    [record] = loop_warnings(caplog)
    assert f"{__name__}.longer" in record.getMessage()


async def test_a_signalbox_signals_adapters_are_not_reported_twice(
    connect: Callable[..., Any], loop_limits: None, caplog: pytest.LogCaptureFixture
) -> None:
    """signalbox's own send times its on-commit adapters with the rest."""
    connect(ticked, longer, run="on_commit")
    connect(ticked, shorter)

    ticked.send(sender=Order)
    await loop_regains_control()

    [record] = observed(caplog)
    message = record.getMessage()
    assert "ticked.send() blocked the running event loop for " in message
    assert "at least" not in message  # signalbox's own send timed every receiver
    assert f"{__name__}.longer" in message
    assert f"{__name__}.shorter" in message


# -- where the receiver ran, as the slow-receiver warning says (issue 12, item 8) ------


def the_slow_warning(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    [record] = slow_warnings(caplog)
    return record


def assert_ran(record: logging.LogRecord, where: str, *phrases: str) -> None:
    message = record.getMessage()
    assert record.signalbox_where == where, message  # type: ignore[attr-defined]
    for phrase in phrases:
        assert phrase in message, message


def test_send_says_the_receiver_ran_in_the_callers_thread(
    connect: Callable[..., Any],
    signal: DjangoSignal,
    limits: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    connect(signal, sleeper())

    signal.send(sender=Order)

    assert_ran(
        the_slow_warning(caplog),
        "caller",
        "It ran in the caller's thread, which waited for it;",
        'connect it with run="on_commit" or run="background"',
    )


async def test_asend_says_the_receiver_ran_in_a_sync_to_async_thread(
    connect: Callable[..., Any],
    signal: DjangoSignal,
    limits: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    connect(signal, sleeper())

    await signal.asend(sender=Order)

    record = the_slow_warning(caplog)
    assert_ran(
        record,
        "asend_thread",
        "It ran in a sync_to_async worker thread, while the caller's asend() "
        "waited for it (the event loop did not);",
        'connect it with run="on_commit" or run="background"',
    )
    assert "caller's thread" not in record.getMessage()


async def test_send_on_a_running_loop_says_the_receiver_held_the_loop(
    connect: Callable[..., Any],
    signal: DjangoSignal,
    kind: str,
    limits: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    connect(signal, sleeper())

    signal.send(sender=Order)
    await loop_regains_control()

    short = SIGNAL_NAMES[kind].rpartition(".")[2]
    assert_ran(
        the_slow_warning(caplog),
        "loop_thread",
        "on its running event loop, which could run nothing else meanwhile;",
        f"send with `await {short}.asend(...)` so that it runs off the loop",
    )


async def test_asend_says_a_coroutine_receiver_was_awaited_on_the_loop(
    connect: Callable[..., Any],
    signal: DjangoSignal,
    limits: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    connect(signal, async_sleeper())

    await signal.asend(sender=Order)

    assert_ran(
        the_slow_warning(caplog),
        "loop",
        "It ran on the caller's event loop, awaited by asend(), which waited for it;",
        'connect it with run="on_commit" or run="background"',
    )


@pytest.mark.parametrize("method", ["send", "send_robust"])
def test_send_says_a_coroutine_receiver_was_awaited_through_async_to_sync(
    connect: Callable[..., Any],
    signal: DjangoSignal,
    limits: None,
    caplog: pytest.LogCaptureFixture,
    method: str,
) -> None:
    connect(signal, async_sleeper())

    getattr(signal, method)(sender=Order)

    assert_ran(
        the_slow_warning(caplog),
        "async_to_sync",
        "It ran on an event loop of async_to_sync(), while the caller's thread "
        "waited for it;",
    )


@pytest.mark.django_db(transaction=True)
def test_an_on_commit_receiver_ran_after_the_commit_in_the_committing_thread(
    connect: Callable[..., Any],
    signal: DjangoSignal,
    limits: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    connect(signal, sleeper(), run="on_commit")

    with transaction.atomic():
        signal.send(sender=Order)

    record = the_slow_warning(caplog)
    assert_ran(
        record,
        "committing_thread",
        "It ran after the commit, in the thread that committed, which waited for it;",
        'run="on_commit" only moves it to the commit',
        'connect it with run="background"',
    )
    assert 'connect it with run="on_commit"' not in record.getMessage()


@pytest.mark.django_db(transaction=True)
def test_an_on_commit_receiver_without_a_transaction_ran_at_once(
    connect: Callable[..., Any],
    signal: DjangoSignal,
    limits: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    connect(signal, sleeper(), run="on_commit")

    signal.send(sender=Order)

    assert_ran(
        the_slow_warning(caplog),
        "caller",
        "It ran at once, with no transaction open, in the caller's thread",
        'connect it with run="background"',
    )


@pytest.mark.django_db(transaction=True)
async def test_an_on_commit_receiver_under_asend_ran_at_once_in_its_thread(
    connect: Callable[..., Any],
    signal: DjangoSignal,
    limits: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    connect(signal, sleeper(), run="on_commit")

    await signal.asend(sender=Order)

    assert_ran(
        the_slow_warning(caplog),
        "asend_thread",
        "It ran at once, with no transaction open, in a sync_to_async worker thread",
    )


async def test_an_on_commit_coroutine_sent_on_the_loop_ran_as_a_task(
    connect: Callable[..., Any],
    signal: DjangoSignal,
    limits: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    done = asyncio.Event()

    async def slow_task(sender: object, **kwargs: Any) -> None:
        await asyncio.sleep(SLEEP)
        done.set()

    connect(signal, slow_task, run="on_commit")

    signal.send(sender=Order)
    await asyncio.wait_for(done.wait(), 5)
    for _ in range(10):  # the task logs after its receiver returns
        if slow_warnings(caplog):
            break
        await asyncio.sleep(0)

    assert_ran(
        the_slow_warning(caplog),
        "task",
        "It ran at once, with no transaction open, as a task on the event loop, "
        "which nothing awaited;",
        'connect it with run="background" to move the work to a worker',
    )
