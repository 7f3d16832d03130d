"""Coroutine receivers: awaited by asend(), run through async_to_sync by send(),
and deferred to the commit like any other receiver.

Each behaviour is checked on signalbox's :class:`~signalbox.Signal` and on a
plain :class:`django.dispatch.Signal` (where signalbox connects an adapter),
and the deferred ones against a real database.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections, transaction
from django.db.models.signals import post_save
from django.dispatch import Signal as DjangoSignal

import signalbox
from tests.testapp.models import Order

order_paid = signalbox.Signal()
django_paid = DjangoSignal()

REAL_COMMITS = pytest.mark.django_db(transaction=True)
FAILURES = "signalbox.observe.failures"
TIMEOUT = 5


class Boom(Exception):
    pass


@contextmanager
def rolled_back(using: str | None = None) -> Iterator[None]:
    """An atomic block that is rolled back: Boom is raised at its end."""
    try:
        with transaction.atomic(using=using):
            yield
            raise Boom
    except Boom:
        pass


@pytest.fixture(params=["signalbox", "django"])
def signal(request: pytest.FixtureRequest) -> DjangoSignal:
    return order_paid if request.param == "signalbox" else django_paid


@pytest.fixture
async def thread_connections() -> AsyncIterator[None]:
    """Close the connections async code opened in asgiref's sync thread.

    Otherwise PostgreSQL keeps a session open on the test database, and the
    flush after the test and the final DROP DATABASE wait for it.
    """
    yield
    await sync_to_async(connections.close_all)()


def _where() -> tuple[int, asyncio.AbstractEventLoop | None]:
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    return threading.get_ident(), loop


# -- send() -------------------------------------------------------------------


def test_send_runs_a_coroutine_receiver_through_async_to_sync(
    connect: Callable[..., Any], signal: DjangoSignal
) -> None:
    seen: list[Any] = []

    async def receiver(sender: object, **kwargs: Any) -> str:
        await asyncio.sleep(0)
        seen.append((sender, kwargs["order"], _where()[1] is not None))
        return "awaited"

    def sync_receiver(sender: object, **kwargs: Any) -> str:
        return "called"

    connect(signal, receiver)
    connect(signal, sync_receiver)

    responses = signal.send(sender=Order, order="A-1")

    assert seen == [(Order, "A-1", True)]
    assert responses == [(sync_receiver, "called"), (receiver, "awaited")]


def test_send_robust_returns_a_coroutine_receivers_error(
    connect: Callable[..., Any], signal: DjangoSignal
) -> None:
    async def fails(sender: object, **kwargs: Any) -> None:
        raise Boom("coroutine")

    connect(signal, fails)

    with pytest.raises(Boom):
        signal.send(sender=Order)
    [(receiver, error)] = signal.send_robust(sender=Order)
    assert receiver == fails
    assert isinstance(error, Boom)


# -- asend() --------------------------------------------------------------------


async def test_asend_awaits_coroutine_receivers_on_the_running_loop(
    connect: Callable[..., Any], signal: DjangoSignal
) -> None:
    here = _where()
    seen: list[Any] = []

    async def receiver(sender: object, **kwargs: Any) -> str:
        seen.append(_where())
        return "awaited"

    connect(signal, receiver)

    responses = await signal.asend(sender=Order)

    assert seen == [here]
    assert responses == [(receiver, "awaited")]


async def test_asend_awaits_coroutine_receivers_concurrently(
    connect: Callable[..., Any], signal: DjangoSignal
) -> None:
    """Each receiver waits for the other: only concurrent awaiting finishes."""
    first_in, second_in = asyncio.Event(), asyncio.Event()

    async def first(sender: object, **kwargs: Any) -> str:
        first_in.set()
        await second_in.wait()
        return "first"

    async def second(sender: object, **kwargs: Any) -> str:
        second_in.set()
        await first_in.wait()
        return "second"

    connect(signal, first)
    connect(signal, second)

    responses = await asyncio.wait_for(signal.asend(sender=Order), TIMEOUT)

    assert responses == [(first, "first"), (second, "second")]


async def test_asend_keeps_the_loop_free_while_sync_receivers_run(
    connect: Callable[..., Any], signal: DjangoSignal
) -> None:
    """A sync receiver waits for the loop to do something: it can only if the
    receiver runs in another thread."""
    here = _where()
    loop_ran = threading.Event()
    seen: list[Any] = []

    def sync_receiver(sender: object, **kwargs: Any) -> str:
        seen.append((loop_ran.wait(TIMEOUT), _where()))
        return "called"

    async def coroutine_receiver(sender: object, **kwargs: Any) -> str:
        return "awaited"

    connect(signal, sync_receiver)
    connect(signal, coroutine_receiver)
    asyncio.get_running_loop().call_later(0.01, loop_ran.set)

    responses = await signal.asend(sender=Order)

    [(loop_was_free, (thread, loop))] = seen
    assert loop_was_free
    assert thread != here[0]
    assert loop is None
    assert responses == [(sync_receiver, "called"), (coroutine_receiver, "awaited")]


async def test_asend_robust_returns_errors_of_both_kinds(
    connect: Callable[..., Any], signal: DjangoSignal
) -> None:
    async def fails(sender: object, **kwargs: Any) -> None:
        raise Boom("coroutine")

    def also_fails(sender: object, **kwargs: Any) -> None:
        raise Boom("sync")

    connect(signal, fails)
    connect(signal, also_fails)

    with pytest.raises(Boom):
        await signal.asend(sender=Order)
    responses = await signal.asend_robust(sender=Order)

    assert {str(error) for _, error in responses} == {"coroutine", "sync"}
    assert [receiver for receiver, _ in responses] == [also_fails, fails]


# -- run="on_commit" ----------------------------------------------------------------


@REAL_COMMITS
def test_an_on_commit_coroutine_runs_after_the_commit(
    connect: Callable[..., Any], signal: DjangoSignal
) -> None:
    seen: list[Any] = []

    async def receiver(sender: object, **kwargs: Any) -> None:
        await asyncio.sleep(0)
        seen.append((kwargs["tag"], _where()[1] is not None))

    connect(signal, receiver, run="on_commit")

    with transaction.atomic():
        responses = signal.send(sender=Order, tag="committed")
        assert seen == []
    assert seen == [("committed", True)]
    assert responses == [(receiver, None)]

    with rolled_back():
        signal.send(sender=Order, tag="rolled back")
    with transaction.atomic(), rolled_back():
        signal.send(sender=Order, tag="savepoint rolled back")
    assert seen == [("committed", True)]


@REAL_COMMITS
def test_an_on_commit_coroutine_on_post_save(connect: Callable[..., Any]) -> None:
    seen: list[Any] = []

    async def on_saved(sender: object, instance: Order, **kwargs: Any) -> None:
        exists = await Order.objects.filter(pk=instance.pk).aexists()
        seen.append((instance.number, kwargs["created"], exists))

    connect(post_save, on_saved, sender=Order, run="on_commit")

    with transaction.atomic():
        Order.objects.create(number="C-1")
        assert seen == []

    assert seen == [("C-1", True, True)]


@REAL_COMMITS
def test_a_failing_on_commit_coroutine_is_logged_and_breaks_nothing(
    connect: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    async def explodes(sender: object, **kwargs: Any) -> None:
        raise Boom("coroutine exploded")

    async def fine(sender: object, instance: Order, **kwargs: Any) -> None:
        seen.append(instance.number)

    connect(post_save, explodes, sender=Order, run="on_commit")
    connect(post_save, fine, sender=Order, run="on_commit")

    with transaction.atomic():
        Order.objects.create(number="C-2")

    assert seen == ["C-2"]
    assert Order.objects.filter(number="C-2").exists()
    [record] = [r for r in caplog.records if r.name == FAILURES]
    message = record.getMessage()
    assert f"{__name__}.{explodes.__qualname__}" in message
    assert "django.db.models.signals.post_save" in message
    assert "testapp.Order" in message
    assert "Boom: coroutine exploded" in message


async def test_send_from_a_running_loop_runs_on_commit_receivers_at_once(
    connect: Callable[..., Any], signal: DjangoSignal
) -> None:
    """No transaction can be open in a thread whose loop runs: sync receivers
    run before send() returns, coroutine ones become a task on that loop."""
    here = _where()
    seen: list[Any] = []
    done = asyncio.Event()

    def sync_receiver(sender: object, **kwargs: Any) -> None:
        seen.append(("sync", _where()))

    async def coroutine_receiver(sender: object, **kwargs: Any) -> None:
        await asyncio.sleep(0)
        seen.append(("coroutine", _where()))
        done.set()

    connect(signal, sync_receiver, run="on_commit")
    connect(signal, coroutine_receiver, run="on_commit")

    signal.send(sender=Order)
    assert seen == [("sync", here)]

    await asyncio.wait_for(done.wait(), TIMEOUT)
    assert seen == [("sync", here), ("coroutine", here)]


async def test_a_failing_on_commit_task_is_logged(
    connect: Callable[..., Any],
    signal: DjangoSignal,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def explodes(sender: object, **kwargs: Any) -> None:
        raise Boom("task exploded")

    connect(signal, explodes, run="on_commit")

    signal.send(sender=Order)
    for _ in range(10):
        await asyncio.sleep(0)
        if caplog.records:
            break

    [record] = [r for r in caplog.records if r.name == FAILURES]
    assert explodes.__qualname__ in record.getMessage()
    assert "Boom: task exploded" in record.getMessage()


@REAL_COMMITS
async def test_asend_runs_coroutine_sync_and_on_commit_receivers(
    connect: Callable[..., Any],
    signal: DjangoSignal,
    thread_connections: None,
) -> None:
    """asend() from async code: no transaction is open, so on_commit is now."""
    here = _where()
    seen: dict[str, Any] = {}

    async def coroutine_receiver(sender: object, **kwargs: Any) -> str:
        seen["coroutine"] = _where()
        return "awaited"

    def sync_receiver(sender: object, **kwargs: Any) -> str:
        seen["sync"] = _where()
        return "called"

    def deferred_sync(sender: object, **kwargs: Any) -> str:
        seen["deferred sync"] = _where()
        return "ignored"

    async def deferred_coroutine(sender: object, **kwargs: Any) -> str:
        seen["deferred coroutine"] = _where()
        return "ignored"

    connect(signal, coroutine_receiver)
    connect(signal, sync_receiver)
    connect(signal, deferred_sync, run="on_commit")
    connect(signal, deferred_coroutine, run="on_commit")

    responses = await asyncio.wait_for(signal.asend(sender=Order), TIMEOUT)

    assert dict(responses) == {
        coroutine_receiver: "awaited",
        sync_receiver: "called",
        deferred_sync: None,
        deferred_coroutine: None,
    }
    assert seen["coroutine"] == here
    assert seen["deferred coroutine"] == here  # back on the loop, via async_to_sync
    assert seen["sync"][0] != here[0]
    assert seen["deferred sync"][0] != here[0]


@REAL_COMMITS
async def test_on_commit_coroutine_from_the_async_orm(
    connect: Callable[..., Any], thread_connections: None
) -> None:
    """Saves that async code makes run in asgiref's thread; the coroutine
    receiver still runs on the caller's loop, at that thread's commit."""
    here = _where()
    seen: list[Any] = []

    async def on_saved(sender: object, instance: Order, **kwargs: Any) -> None:
        seen.append((instance.number, _where()))

    connect(post_save, on_saved, sender=Order, run="on_commit")

    await Order.objects.acreate(number="autocommit")
    assert seen == [("autocommit", here)]

    def save_twice_in_a_transaction() -> None:
        with transaction.atomic():
            Order.objects.create(number="first")
            Order.objects.create(number="second")
            assert len(seen) == 1

    await sync_to_async(save_twice_in_a_transaction)()
    assert seen == [("autocommit", here), ("first", here), ("second", here)]

    def roll_back() -> None:
        with rolled_back():
            Order.objects.create(number="rolled back")

    await sync_to_async(roll_back)()
    assert len(seen) == 3
    assert await Order.objects.acount() == 3
