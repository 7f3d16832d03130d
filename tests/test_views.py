"""Receivers through real requests: Django's test Client and its ASGI AsyncClient.

``ATOMIC_REQUESTS`` is switched on the way Django's own test suite does it,
on the connection settings Django's handler reads for every request
(overriding ``DATABASES`` would not reach the open connections), so the view
really runs inside ``transaction.atomic()`` and really commits.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.signals import request_finished
from django.db import connections
from django.db.models.signals import post_save
from django.test import AsyncClient, Client

from tests.testapp import views
from tests.testapp.models import Note, Order

REAL_COMMITS = pytest.mark.django_db(transaction=True)
BOTH = pytest.mark.django_db(transaction=True, databases=["default", "other"])


@pytest.fixture(autouse=True)
def trail() -> Iterator[list[Any]]:
    views.trail.clear()
    yield views.trail
    views.trail.clear()


@pytest.fixture
def atomic_requests(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Turn ``ATOMIC_REQUESTS`` on for the given aliases, for this test only."""

    def turn_on(*aliases: str) -> None:
        for alias in aliases or ("default",):
            monkeypatch.setitem(connections.settings[alias], "ATOMIC_REQUESTS", True)

    return turn_on


@pytest.fixture
async def thread_connections() -> AsyncIterator[None]:
    """Close the connections the ASGI client's sync thread opened: PostgreSQL
    would otherwise keep a session on the test database after the test."""
    yield
    await sync_to_async(connections.close_all)()


def marker(name: str, alias: str = "default") -> Callable[..., None]:
    """A receiver that leaves (name, whether ``alias`` was in a transaction)."""

    def receiver(sender: object, **kwargs: Any) -> None:
        views.trail.append((name, connections[alias].in_atomic_block))

    return receiver


def _on_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


# -- ATOMIC_REQUESTS ----------------------------------------------------------------


@REAL_COMMITS
def test_atomic_requests_run_on_commit_receivers_after_the_view(
    connect: Callable[..., Any],
    atomic_requests: Callable[..., None],
    trail: list[Any],
) -> None:
    atomic_requests()
    connect(views.order_placed, marker("inline"))
    connect(views.order_placed, marker("order_placed"), run="on_commit")
    connect(post_save, marker("post_save"), sender=Order, run="on_commit")

    response = Client().get("/orders/", {"number": "R-1"})

    assert response.status_code == 200
    assert response.json()["atomic"]["default"] is True  # the view was wrapped
    assert trail == [
        ("inline", True),
        "view returned",
        ("post_save", False),
        ("order_placed", False),
    ]
    assert Order.objects.filter(number="R-1").exists()


@REAL_COMMITS
def test_atomic_requests_rolled_back_by_an_error_run_nothing(
    connect: Callable[..., Any],
    atomic_requests: Callable[..., None],
    trail: list[Any],
) -> None:
    atomic_requests()
    connect(views.order_placed, marker("inline"))
    connect(views.order_placed, marker("order_placed"), run="on_commit")
    connect(post_save, marker("post_save"), sender=Order, run="on_commit")

    with pytest.raises(RuntimeError, match="the view failed"):
        Client().get("/orders/", {"number": "R-2", "fail": "1"})

    assert trail == [("inline", True)]
    assert not Order.objects.exists()


@REAL_COMMITS
def test_a_non_atomic_view_runs_on_commit_receivers_at_once(
    connect: Callable[..., Any],
    atomic_requests: Callable[..., None],
    trail: list[Any],
) -> None:
    atomic_requests()
    connect(views.order_placed, marker("order_placed"), run="on_commit")
    connect(post_save, marker("post_save"), sender=Order, run="on_commit")

    response = Client().get("/orders/non-atomic/", {"number": "R-3"})

    assert response.json()["atomic"]["default"] is False
    assert trail == [("post_save", False), ("order_placed", False), "view returned"]


@REAL_COMMITS
def test_without_atomic_requests_they_run_inside_the_view(
    connect: Callable[..., Any], trail: list[Any]
) -> None:
    connect(views.order_placed, marker("order_placed"), run="on_commit")

    response = Client().get("/orders/", {"number": "R-4"})

    assert response.json()["atomic"]["default"] is False
    assert trail == [("order_placed", False), "view returned"]


@BOTH
def test_atomic_requests_on_two_aliases_commit_each_alias_on_its_own(
    connect: Callable[..., Any],
    atomic_requests: Callable[..., None],
    trail: list[Any],
) -> None:
    """Django wraps the view in one atomic() per alias, "other" outermost here:
    the order's receiver runs at the "default" commit, while "other" is still
    open; the note's at the "other" commit."""
    atomic_requests("default", "other")

    def on_saved(sender: type[Any], **kwargs: Any) -> None:
        views.trail.append(
            (
                sender.__name__,
                kwargs["using"],
                connections["default"].in_atomic_block,
                connections["other"].in_atomic_block,
            )
        )

    connect(post_save, on_saved, sender=Order, run="on_commit")
    connect(post_save, on_saved, sender=Note, run="on_commit")

    response = Client().get("/orders/both/", {"number": "R-5"})

    assert response.json()["atomic"] == {"default": True, "other": True}
    assert trail == [
        "view returned",
        ("Order", "default", False, True),
        ("Note", "other", False, False),
    ]
    assert Note.objects.using("other").get().text == "order R-5"


# -- request_finished ----------------------------------------------------------------


@pytest.fixture
def django_saw() -> Iterator[list[Any]]:
    """What a receiver connected with Django's own connect() is sent."""
    seen: list[Any] = []

    def plain(sender: object, **kwargs: Any) -> None:
        seen.append(sender)

    request_finished.connect(plain)
    yield seen
    request_finished.disconnect(plain)


@REAL_COMMITS
def test_request_finished_reaches_inline_and_on_commit_receivers(
    connect: Callable[..., Any],
    atomic_requests: Callable[..., None],
    django_saw: list[Any],
    trail: list[Any],
) -> None:
    atomic_requests()

    def finished(sender: object, **kwargs: Any) -> None:
        views.trail.append(("inline", sender, kwargs["signal"]))

    def after_commit(sender: object, **kwargs: Any) -> None:
        views.trail.append(("on_commit", sender, kwargs["signal"]))

    connect(request_finished, finished)
    connect(request_finished, after_commit, run="on_commit")

    Client().get("/orders/", {"number": "F-1"})

    [sender] = django_saw
    assert trail == [
        "view returned",
        ("inline", sender, request_finished),
        ("on_commit", sender, request_finished),
    ]


@REAL_COMMITS
async def test_request_finished_under_the_asgi_client(
    connect: Callable[..., Any],
    thread_connections: None,
    django_saw: list[Any],
    trail: list[Any],
) -> None:
    async def finished(sender: object, **kwargs: Any) -> None:
        views.trail.append(("coroutine", sender))

    def also_finished(sender: object, **kwargs: Any) -> None:
        views.trail.append(("sync", sender))

    connect(request_finished, finished)
    connect(request_finished, also_finished)

    response = await AsyncClient().get("/async/orders/", {"number": "F-2"})

    assert response.status_code == 200
    [sender] = django_saw
    assert trail[0] == "view returned"
    assert sorted(trail[1:], key=str) == [("coroutine", sender), ("sync", sender)]


@REAL_COMMITS
def test_an_on_commit_receiver_on_request_finished_leaves_no_connection_open(
    connect: Callable[..., Any], trail: list[Any]
) -> None:
    """Django closes the request's connections in its own request_finished
    receiver, which runs first; ASGI then drops the request's thread. An
    on_commit receiver that runs at once, as there is no transaction, has no
    reason to open a new connection there, which nobody would close."""

    def after_commit(sender: object, **kwargs: Any) -> None:
        views.trail.append("on_commit")

    connect(request_finished, after_commit, run="on_commit")
    opened: list[bool] = []

    def finish_a_request() -> None:
        # A fresh thread: no connection yet, as after close_old_connections.
        try:
            request_finished.send(sender=None)
            opened.append(connections["default"].connection is not None)
        finally:
            connections.close_all()

    thread = threading.Thread(target=finish_a_request)
    thread.start()
    thread.join()

    assert trail == ["on_commit"]
    assert opened == [False]


# -- async views ---------------------------------------------------------------------


@REAL_COMMITS
async def test_an_async_view_asends_to_every_kind_of_receiver(
    connect: Callable[..., Any], thread_connections: None, trail: list[Any]
) -> None:
    loop_thread = threading.get_ident()

    async def coroutine(sender: object, order: Order, **kwargs: Any) -> str:
        views.trail.append(("coroutine", order.number, _on_loop()))
        return "awaited"

    def sync(sender: object, order: Order, **kwargs: Any) -> str:
        views.trail.append(("sync", order.number, _on_loop()))
        return "called"

    def deferred(sender: object, order: Order, **kwargs: Any) -> None:
        views.trail.append(("on_commit", order.number, _on_loop()))

    async def deferred_coroutine(sender: object, order: Order, **kwargs: Any) -> None:
        on_loop_thread = threading.get_ident() == loop_thread
        views.trail.append(("on_commit coroutine", order.number, on_loop_thread))

    def saved(sender: object, instance: Order, **kwargs: Any) -> None:
        views.trail.append(("post_save", instance.number, _on_loop()))

    connect(views.order_placed, coroutine)
    connect(views.order_placed, sync)
    connect(views.order_placed, deferred, run="on_commit")
    connect(views.order_placed, deferred_coroutine, run="on_commit")
    connect(post_save, saved, sender=Order, run="on_commit")

    response = await AsyncClient().get("/async/orders/", {"number": "A-1"})

    assert response.status_code == 200
    assert response.json()["responses"] == 4
    # The save ran in asgiref's thread, in autocommit: its receiver at once.
    assert trail[0] == ("post_save", "A-1", False)
    assert trail[-1] == "view returned"
    assert sorted(trail[1:-1]) == [
        ("coroutine", "A-1", True),  # awaited on the loop
        ("on_commit", "A-1", False),  # in a thread, no transaction open: now
        ("on_commit coroutine", "A-1", True),  # back on the loop's thread
        ("sync", "A-1", False),  # in a thread, off the loop
    ]
    assert await Order.objects.filter(number="A-1").aexists()


@REAL_COMMITS
async def test_a_sync_view_under_asgi_with_atomic_requests(
    connect: Callable[..., Any],
    atomic_requests: Callable[..., None],
    thread_connections: None,
    trail: list[Any],
) -> None:
    atomic_requests()
    done = asyncio.Event()

    async def deferred_coroutine(sender: object, **kwargs: Any) -> None:
        views.trail.append("on_commit coroutine")
        done.set()

    connect(views.order_placed, marker("inline"))
    connect(views.order_placed, marker("on_commit"), run="on_commit")
    connect(views.order_placed, deferred_coroutine, run="on_commit")

    response = await AsyncClient().get("/orders/", {"number": "A-2"})
    await asyncio.wait_for(done.wait(), 5)

    assert response.json()["atomic"]["default"] is True
    assert trail == [
        ("inline", True),
        "view returned",
        ("on_commit", False),
        "on_commit coroutine",
    ]

    with pytest.raises(RuntimeError, match="the view failed"):
        await AsyncClient().get("/orders/", {"number": "A-3", "fail": "1"})
    assert trail[4:] == [("inline", True)]
    assert not await Order.objects.filter(number="A-3").aexists()


async def test_send_in_an_async_view_warns_that_it_blocked_the_loop(
    connect: Callable[..., Any],
    settings: Any,
    caplog: pytest.LogCaptureFixture,
    trail: list[Any],
) -> None:
    settings.SIGNALBOX = {"SLOW_RECEIVER_MS": 1000, "LOOP_BLOCK_MS": 5}

    def blocks(sender: object, **kwargs: Any) -> None:
        time.sleep(0.01)

    connect(views.order_placed, blocks)

    response = await AsyncClient().get("/async/send/")

    assert response.json() == {"responses": 1}
    [record] = [r for r in caplog.records if r.name == "signalbox.observe"]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert "tests.testapp.views.order_placed.send() blocked the running event loop" in (
        message
    )
    assert f"{__name__}.{blocks.__qualname__}" in message
    assert "await order_placed.asend(...)" in message


def loop_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "signalbox.observe" and "blocked the running event loop" in r.msg
    ]


async def test_django_signals_sent_in_an_async_view_warn_that_they_blocked_the_loop(
    connect: Callable[..., Any],
    settings: Any,
    caplog: pytest.LogCaptureFixture,
    trail: list[Any],
) -> None:
    settings.SIGNALBOX = {"SLOW_RECEIVER_MS": 1000, "LOOP_BLOCK_MS": 5}

    def blocks(sender: object, **kwargs: Any) -> None:
        time.sleep(0.01)

    connect(views.order_noted, blocks, sender=Order)
    connect(post_save, blocks, sender=Order)

    response = await AsyncClient().get("/async/send/django/")

    assert response.json() == {"responses": 2}
    messages = sorted(r.getMessage() for r in loop_warnings(caplog))
    assert len(messages) == 2
    assert messages[0].startswith(
        "django.db.models.signals.post_save.send() blocked the running event loop"
    )
    assert "await post_save.asend(...)" in messages[0]
    assert messages[1].startswith(
        "tests.testapp.views.order_noted.send() blocked the running event loop"
    )
    assert all(f"{__name__}.{blocks.__qualname__}" in m for m in messages)


@REAL_COMMITS
async def test_a_save_in_an_async_view_runs_post_save_off_the_loop(
    connect: Callable[..., Any],
    settings: Any,
    caplog: pytest.LogCaptureFixture,
    thread_connections: None,
    trail: list[Any],
) -> None:
    """``acreate()`` saves in a sync_to_async thread: post_save holds no loop."""
    settings.SIGNALBOX = {"SLOW_RECEIVER_MS": 1000, "LOOP_BLOCK_MS": 5}
    ran: list[bool] = []

    def blocks(sender: object, **kwargs: Any) -> None:
        ran.append(_on_loop())
        time.sleep(0.01)

    connect(post_save, blocks, sender=Order)

    response = await AsyncClient().get("/async/orders/", {"number": "A-9"})

    assert response.status_code == 200
    assert ran == [False]
    assert loop_warnings(caplog) == []
